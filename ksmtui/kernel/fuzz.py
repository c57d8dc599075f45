"""`ksmtui parity --random N`: a differential fuzzer, the model against the real kernel.

Each case is a random scenario (a TOML text, so a kept case replays with `ksmtui parity FILE`),
derived from the seed and the case's number alone. It runs in the model and on the real KSM;
when a settled counter or a process's ksm_stat differs, it runs on the kernel a second time: if
the two kernel runs differ too, the kernel does not reproduce the case itself (a fork racing ksmd,
say) and the case is not held against the model.

Scenarios are small (at most a few hundred pages, one batch per pass) so that a case takes about a
second on the kernel; the machine lock is taken per kernel run, never for the whole fuzzing run.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from engine.scenario import ScenarioError, parse_scenario
from engine.sim import Simulation
from ksmtui.kernel.parity import PROCESS_SETTLED, SETTLED, parity_report

BYTES = (0x11, 0x2A, 0x5A, 0xCF)  # a few contents, so byte regions of different processes match


def _region(rng: random.Random, name: str, pools: dict[str, int], mergeable: bool) -> list[str]:
    pages = rng.randint(1, 24)
    lines = ["", "[[process.region]]", f'name = "{name}"', f"pages = {pages}"]
    kind = rng.choice(("random", "zero", "byte", "byte", "pool", "pool"))
    if kind == "zero":
        lines.append('fill = "zero"')
    elif kind == "byte":
        lines += ['fill = "byte"', f"byte = {rng.choice(BYTES)}"]
    elif kind == "pool" and pools:
        pool = rng.choice(sorted(pools))
        lines += ['fill = "pool"', f'pool = "{pool}"', f'order = "{rng.choice(("sequential", "shuffled"))}"',
                  f"offset = {rng.randrange(pools[pool])}"]
    if not mergeable:
        lines.append("mergeable = false")
    return lines


def _fill(rng: random.Random, pools: dict[str, int]) -> list[str]:
    kind = rng.choice(("random", "random", "zero", "byte", "pool"))
    if kind == "zero":
        return ['fill = "zero"']
    if kind == "byte":
        return ['fill = "byte"', f"byte = {rng.choice(BYTES)}"]
    if kind == "pool" and pools:
        pool = rng.choice(sorted(pools))
        return ['fill = "pool"', f'pool = "{pool}"', f"offset = {rng.randrange(pools[pool])}"]
    return []


def random_scenario(seed: int, case: int) -> str:
    """The TOML text of case number `case` of the fuzzing run seeded `seed`."""
    rng = random.Random(seed * 1_000_003 + case)
    lines = [f'name = "fuzz-{seed}-{case}"', f"seed = {rng.randrange(1 << 16)}", "", "[ksm]",
             "pages_to_scan = 1000", "sleep_millisecs = 20",
             f"max_page_sharing = {rng.choice((2, 3, 4, 256))}",
             f"use_zero_pages = {rng.randint(0, 1)}", f"smart_scan = {rng.randint(0, 1)}"]
    pools = {f"pool{i}": rng.randint(4, 32) for i in range(rng.randint(0, 2))}
    for name, pages in pools.items():
        lines += ["", "[[pool]]", f'name = "{name}"', f"pages = {pages}"]
    regions: dict[str, list[str]] = {}  # alive process -> its region names
    for p in range(rng.randint(1, 4)):
        name = f"p{p}"
        merge_any = rng.random() < 0.15
        lines += ["", "[[process]]", f'name = "{name}"'] + (["merge_any = true"] if merge_any else [])
        regions[name] = [f"r{r}" for r in range(rng.randint(1, 3))]
        for r in regions[name]:
            lines += _region(rng, r, pools, mergeable=merge_any or rng.random() > 0.1)
    at = 0
    forks = 0
    for _ in range(rng.randint(0, 5)):
        at += rng.randint(0, 2)
        if at == 0:
            at = 1
        name = rng.choice(sorted(regions))
        action = rng.choice(("write", "write", "write", "fork", "exit", "madvise", "set"))
        if action == "exit" and len(regions) == 1:
            action = "write"
        ev = ["", "[[event]]", f'action = "{action}"', f"at_full_scans = {at}"]
        if action == "write":
            region = rng.choice(regions[name])
            ev += [f'process = "{name}"', f'region = "{region}"']
            ev += [f"fraction = {rng.choice((0.25, 0.5, 1))}"] if rng.random() < 0.5 else ["pages = 1"]
            ev += _fill(rng, pools)
        elif action == "fork":
            child = f"{name}c{forks}"
            forks += 1
            ev += [f'process = "{name}"', f'child = "{child}"']
            regions[child] = list(regions[name])
        elif action == "exit":
            ev.append(f'process = "{name}"')
            del regions[name]
        elif action == "madvise":
            ev += [f'process = "{name}"', f'region = "{rng.choice(regions[name])}"',
                   f'advice = "{rng.choice(("unmergeable", "mergeable"))}"']
        else:
            knob, value = rng.choice((("use_zero_pages", 0), ("use_zero_pages", 1), ("smart_scan", 0),
                                      ("smart_scan", 1)))
            ev += [f'knob = "{knob}"', f"value = {value}"]
        lines += ev
    lines += ["", "[stop]", f"full_scans = {at + rng.randint(3, 5)}", ""]
    return "\n".join(lines)


def settled(result: dict) -> dict:
    """What a finished pass settles, the part of a result the model is held to."""
    return {"ksm": {k: result["ksm"].get(k) for k in SETTLED},
            "processes": {name: {k: stat.get(k) for k in PROCESS_SETTLED}
                          for name, stat in result["processes"].items()},
            "mismatches": result["data_check"]["mismatches"]}


def run_case(text: str, file: str) -> dict:
    """One case: the model, the kernel, and the kernel again if they differ."""
    from ksmtui.kernel.run import KernelError, run_on_kernel

    scenario = parse_scenario(text, file, Path("."))
    sim = Simulation(scenario)
    sim.run()
    model = sim.result()
    try:
        kernel = run_on_kernel(scenario)
    except KernelError as err:  # the kernel refused a step (another user's KSM pages: EBUSY)
        return {"verdict": "kernel-error", "report": f"the kernel run failed: {err}"}
    report, ok = parity_report(model, kernel)
    verdict = "agree"
    if not ok:
        again = run_on_kernel(scenario)
        verdict = "differs" if settled(again) == settled(kernel) else "kernel-unstable"
        if verdict == "kernel-unstable":
            report += "\nthe kernel did not reproduce this case: a second kernel run gave\n"
            report += parity_report(model, again)[0]
    return {"verdict": verdict, "report": report}


def build_parser():
    from ksmtui.cli import Parser, _positive, _seed

    p = Parser(prog="ksmtui parity", description=(
        "Differential fuzzing: N random scenarios, each run in the model and on this machine's KSM; "
        "every difference in the settled counters and ksm_stat is reported. Exit status 0 when all "
        "agree, 1 when the model differs, 2 on bad input."))
    p.add_argument("--random", type=_positive, metavar="N", required=True, help="the number of cases")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the cases (default 0)")
    p.add_argument("--keep", metavar="DIR", help="save each case that differs (TOML and report) in DIR")
    return p


def main(argv: list[str]) -> int:
    """`ksmtui parity --random N [--seed S] [--keep DIR]`."""
    from ksmtui.cli import UsageError

    try:
        opts = build_parser().parse_args(argv)
        keep = Path(opts.keep) if opts.keep else None
        if keep is not None:
            try:
                keep.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UsageError(f"--keep: cannot create {keep}: {err.strerror}") from None
    except UsageError as err:
        print(f"ksmtui parity: error: {err}", file=sys.stderr)
        return 2
    return fuzz(opts.random, opts.seed, keep)


def fuzz(n: int, seed: int, keep: Path | None) -> int:
    """Exit status: 0 when every case agrees (or only the kernel disagrees with itself), 1 when the
    model differs from the kernel or a kernel run failed (the case goes on to the next)."""
    from ksmtui.kernel.run import KernelUnsupported, _guarded, unavailable_reason

    def body() -> int:
        reason = unavailable_reason()
        if reason:
            raise KernelUnsupported(reason)
        counts = {"agree": 0, "differs": 0, "kernel-unstable": 0, "kernel-error": 0}
        progress = sys.stderr.isatty()
        t0 = time.monotonic()
        for case in range(n):
            text = random_scenario(seed, case)
            name = f"fuzz-{seed}-{case}.toml"
            try:
                got = run_case(text, name)
            except ScenarioError as err:  # a generator fault, not a model one: say so and stop
                print(f"ksmtui parity: internal error: case {case} is not a valid scenario: {err}",
                      file=sys.stderr)
                return 1
            counts[got["verdict"]] += 1
            if progress:  # the kernel runs wait their turn for the machine lock: say where it is
                sys.stderr.write(f"\r\033[Kcase {case + 1}/{n}: {counts['agree']} agree, {counts['differs']} differ, "
                                 f"{counts['kernel-unstable']} not reproduced by the kernel")
                sys.stderr.flush()
            if got["verdict"] != "agree":
                if progress:
                    sys.stderr.write("\r\033[K")
                print(f"case {case}: {got['verdict']}\n{got['report']}\n", flush=True)
                if keep is not None:
                    (keep / name).write_text(text)
                    (keep / name).with_suffix(".txt").write_text(got["report"] + "\n")
        if progress:
            sys.stderr.write("\r\033[K")
        print(f"parity --random {n} --seed {seed}: {counts['agree']} agree, {counts['differs']} differ, "
              f"{counts['kernel-unstable']} not reproduced by the kernel itself, "
              f"{counts['kernel-error']} kernel runs failed ({time.monotonic() - t0:.0f} s)")
        # a case whose kernel run failed was not judged: it is no agreement either
        return 1 if counts["differs"] or counts["kernel-error"] else 0
    return _guarded(body)
