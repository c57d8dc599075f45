"""`ksmtui parity SCENARIO`: the model and the real kernel side by side on one scenario (exit 1 if a
settled counter differs); `ksmtui parity --random N`: differential fuzzing over random scenarios
(ksmtui/kernel/fuzz.py)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from engine.scenario import Scenario
from ksmtui.cli.common import load
from ksmtui.cli.kernel import guarded, kernel_result
from ksmtui.cli.options import Options, Parser, UsageError, parse_args, positive, seed
from ksmtui.host.sysfs import KernelUnsupported


def main(argv: list[str]) -> int:
    if any(a == "--random" or a.startswith("--random=") for a in argv):
        return fuzz_main(argv)
    opts = parse_args("parity", argv)
    return cmd_parity(load(opts), opts)


def cmd_parity(scenario: Scenario, opts: Options) -> int:
    from ksmtui.cli.common import cost_profile
    from ksmtui.kernel.parity import run_parity, timing_caveat
    from ksmtui.kernel.run import unavailable_reason, unsupported_reason

    if opts.repeat > 1 and not opts.timing:
        raise UsageError("--repeat: only with --timing")
    costs = cost_profile(opts.costs)

    def body() -> int:
        reason = unavailable_reason() or unsupported_reason(scenario, dict(opts.overrides))
        if reason:
            raise KernelUnsupported(reason)
        got = run_parity(scenario, costs, lambda: kernel_result(scenario, opts), timing=opts.timing,
                         repeat=opts.repeat, flow=opts.flow, seed=opts.seed, overrides=dict(opts.overrides),
                         full_scans=opts.full_scans, after_ms=opts.after_ms)
        caveat = timing_caveat(scenario)
        if opts.json:
            print(json.dumps({"ok": got.ok, "model": got.model, "kernel": got.kernel, "caveat": caveat}))
        else:
            print(got.text + (f"\ncaveat: {caveat}" if caveat else ""))
        return 0 if got.ok else 1
    return guarded(body)


def fuzz_parser() -> Parser:
    p = Parser(prog="ksmtui parity", description=(
        "Differential fuzzing: N random scenarios, each run in the model and on this machine's KSM; "
        "every difference in the settled counters and ksm_stat is reported. With --timing the cases "
        "are timing-shaped (8,000 to 24,000 pages, no events) and the time to 50/90/100%% of the saving "
        "and ksmd's CPU are judged too (5%% and 15%%). Exit status 0 when all agree, 1 when the model "
        "differs (counters, or with --timing a figure beyond its tolerance), 2 on bad input."))
    p.add_argument("--random", type=positive, metavar="N", required=True, help="the number of cases")
    p.add_argument("--seed", type=seed, default=0, help="seed of the cases (default 0)")
    p.add_argument("--keep", metavar="DIR", help="save each case that differs (TOML and report) in DIR")
    p.add_argument("--timing", action="store_true",
                   help="timing-shaped cases; judge time to 50/90/100%% of the saving and ksmd's CPU")
    p.add_argument("--repeat", type=positive, default=1, metavar="R",
                   help="with --timing: run the kernel R times a case and judge the median of each figure")
    return p


def fuzz_main(argv: list[str]) -> int:
    """`ksmtui parity --random N [--timing [--repeat R]] [--seed S] [--keep DIR]`."""
    opts = fuzz_parser().parse_args(argv)
    if opts.repeat > 1 and not opts.timing:
        raise UsageError("--repeat: only with --timing")
    keep = Path(opts.keep) if opts.keep else None
    if keep is not None:
        try:
            keep.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(f"--keep: cannot create {keep}: {err.strerror}") from None
    return fuzz(opts.random, opts.seed, keep, timing=opts.timing, repeat=opts.repeat)


def fuzz(n: int, seed: int, keep: Path | None, timing: bool = False, repeat: int = 1) -> int:
    """Exit status: 0 when every case agrees (or only the kernel disagrees with itself), 1 when the
    model differs from the kernel or a kernel run failed (the case goes on to the next); with timing,
    1 too when a case's time or CPU is beyond its tolerance, as `ksmtui parity --timing` judges (the
    summary shows the kernel's own spread beside when repeated)."""
    from engine.scenario import ScenarioError
    from ksmtui.kernel.fuzz import random_scenario, random_timing_scenario, run_case, timing_line, timing_summary
    from ksmtui.kernel.run import unavailable_reason

    def body() -> int:
        reason = unavailable_reason()
        if reason:
            raise KernelUnsupported(reason)
        counts = {"agree": 0, "differs": 0, "kernel-unstable": 0, "kernel-error": 0}
        timings: list[dict] = []
        progress = sys.stderr.isatty()
        t0 = time.monotonic()
        for case in range(n):
            text = random_timing_scenario(seed, case) if timing else random_scenario(seed, case)
            name = f"fuzz-{'timing-' if timing else ''}{seed}-{case}.toml"
            try:
                got = run_case(text, name, timing=timing, repeat=repeat)
            except ScenarioError as err:  # a generator fault, not a model one: say so and stop
                print(f"ksmtui parity: internal error: case {case} is not a valid scenario: {err}",
                      file=sys.stderr)
                return 1
            counts[got["verdict"]] += 1
            if got["timing"] is not None:
                timings.append(got["timing"])
            timing_missed = got["timing"] is not None and not got["timing"]["ok"]
            if progress:  # the kernel runs wait their turn for the machine lock: say where it is
                sys.stderr.write(f"\r\033[Kcase {case + 1}/{n}: {counts['agree']} agree, {counts['differs']} differ, "
                                 f"{counts['kernel-unstable']} not reproduced by the kernel")
                sys.stderr.flush()
            if progress and (timing or got["verdict"] != "agree"):
                sys.stderr.write("\r\033[K")
            if got["verdict"] != "agree" or timing_missed:
                # counters that agree are not repeated: the timing report alone says what missed
                shown = got["report"] if got["verdict"] != "agree" else got["timing"]["report"]
                print(f"case {case}: {got['verdict']}{'; timing missed' if timing_missed else ''}\n{shown}\n",
                      flush=True)
                if keep is not None:
                    (keep / name).write_text(text)
                    (keep / name).with_suffix(".txt").write_text(got["report"] + "\n")
            if got["timing"] is not None:  # every case's errors: the distribution, not just the misses
                print(f"case {case}: {got['verdict']}; {timing_line(got['timing'])}", flush=True)
        if progress:
            sys.stderr.write("\r\033[K")
        print(f"parity --random {n} --seed {seed}{f' --timing --repeat {repeat}' if timing else ''}: "
              f"{counts['agree']} agree, {counts['differs']} differ, "
              f"{counts['kernel-unstable']} not reproduced by the kernel itself, "
              f"{counts['kernel-error']} kernel runs failed ({time.monotonic() - t0:.0f} s)")
        if timing and timings:
            print(timing_summary(timings, repeat))
        missed = sum(not t["ok"] for t in timings)
        # a case whose kernel run failed was not judged: it is no agreement either
        return 1 if counts["differs"] or counts["kernel-error"] or missed else 0
    return guarded(body)
