"""`ksmtui parity --random N`: a differential fuzzer, the model against the real kernel.

Each case is a random scenario (a TOML text, so a kept case replays with `ksmtui parity FILE`),
derived from the seed and the case's number alone. It runs in the model and on the real KSM;
when a settled counter or a process's ksm_stat differs, it runs on the kernel a second time: if
the two kernel runs differ too, the kernel does not reproduce the case itself (a fork racing ksmd,
say) and the case is not held against the model.

Scenarios are small (a few hundred pages, one batch per pass, but for regions of THPs: 512 or 1024
pages) so that a case takes about a
second on the kernel; the machine lock is taken per kernel run, never for the whole fuzzing run.
"""

from __future__ import annotations

import random
from pathlib import Path

from engine.scenario import parse_scenario
from engine.sim import Simulation
from ksmtui.host.costs import load_profile
from ksmtui.kernel.parity import PROCESS_SETTLED, SETTLED, parity_report

BYTES = (0x11, 0x2A, 0x5A, 0xCF)  # a few contents, so byte regions of different processes match
# regions backed by transparent huge pages (docs/thp.md), drawn from a generator of their own so
# that every other draw of a case stays what it was before THP
THP_SHARE = 0.15
HPAGE_PMD_NR = 512  # 2 MiB of 4 KiB pages


def _region(rng: random.Random, name: str, pools: dict[str, int], mergeable: bool,
            thp_rng: random.Random) -> list[str]:
    pages = rng.randint(1, 24)
    thp = []
    if thp_rng.random() < THP_SHARE:  # one or two PMD-sized extents, all or half of them huge
        pages = HPAGE_PMD_NR * thp_rng.randint(1, 2)
        thp = [f"thp = {thp_rng.choice(('true', '0.5'))}"]
    lines = ["", "[[process.region]]", f'name = "{name}"', f"pages = {pages}", *thp]
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
    thp_rng = random.Random(f"thp {seed} {case}")
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
            lines += _region(rng, r, pools, mergeable=merge_any or rng.random() > 0.1, thp_rng=thp_rng)
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
    # this machine's profile: where events run on the clock, the model's clock should be the kernel's
    sim = Simulation(scenario, costs=load_profile())
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
