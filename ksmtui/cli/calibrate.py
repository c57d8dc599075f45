"""`ksmtui calibrate [--repeat N] [--json]`: measure this machine's ksmd (ksmtui/bench/calibrate.py)
and save the cost profile run, sweep, estimate, parity and the UI use from then on."""

from __future__ import annotations

import json
import os
import shutil
import sys

from ksmtui.cli.options import Parser, positive


def main(argv: list[str]) -> int:
    p = Parser(prog="ksmtui calibrate", description=(
        "Measure this machine's ksmd on eleven workloads (real processes, under the machine lock), fit the "
        "cost model's groups to its CPU time, read the kernel's HZ, and save the profile in "
        "~/.cache/ksmtui/ksmd-profile.json: every model run uses it from then on (--costs reference pins "
        "the built-in one)."))
    # ksmd's CPU for the same workload moves by 13% to 20% either way from one run to the next on
    # this project's VM (docs/timing.md): 5 runs keep the median's error to a few percent
    p.add_argument("--repeat", type=positive, default=5, metavar="N",
                   help="rounds of kernel runs, one per workload each (median; default 5)")
    p.add_argument("--json", action="store_true", help="print the profile and the measurements as one JSON object")
    opts = p.parse_args(argv)

    from ksmtui.bench.calibrate import calibrate
    from ksmtui.cli.kernel import guarded
    from ksmtui.host import costs
    from ksmtui.host.sysfs import KernelUnavailable
    from ksmtui.kernel.run import unavailable_reason

    def say(text: str) -> None:
        if sys.stderr.isatty():  # one line, cut to the terminal: a wrapped one would not be rewritten
            sys.stderr.write(f"\r\033[K{text[:shutil.get_terminal_size().columns - 1]}")
            sys.stderr.flush()

    def body() -> int:
        reason = unavailable_reason()
        if reason:
            raise KernelUnavailable(reason)
        profile, rows = calibrate(opts.repeat, say)
        say("")
        path = costs.save_profile(profile)
        if opts.json:
            print(json.dumps({"profile": profile.to_json(), "workloads": rows, "saved": str(path)}))
            return 0
        print(f"costs: {profile.label}; hz {profile.hz}; ksmd waited {profile.wait_per_cpu:.2f} ns for a CPU "
              f"per ns it ran (load average {os.getloadavg()[0]:.1f}); saved in {path}")
        print("group scales (x engine/cost.py BASE_NS): "
              + ", ".join(f"{g} {s:.2f}" for g, s in profile.scales.items()))
        # the runs' range beside the median: ksmd's cost drifts with the machine (docs/timing.md),
        # and a wide range says this profile is a snapshot of a moving target
        print(f"  {'workload':<34}{'ksmd CPU ms (median)':>22}{'runs ms':>16}{'fitted model ms':>18}")
        for r in rows:
            runs = sorted(r["kernel_ns"])
            spread = f"{runs[0] / 1e6:,.1f}-{runs[-1] / 1e6:,.1f}"
            print(f"  {r['what']:<34}{runs[len(runs) // 2] / 1e6:>22,.2f}{spread:>16}{r['fitted_ns'] / 1e6:>18,.2f}")
        return 0
    return guarded(body)
