"""`ksmtui parity --random N`: a differential fuzzer, the model against the real kernel.

Each case is a random scenario (a TOML text, so a kept case replays with `ksmtui parity FILE`),
derived from the seed and the case's number alone. It runs in the model and on the real KSM;
when a settled counter or a process's ksm_stat differs, it runs on the kernel a second time: if
the two kernel runs differ too, the kernel does not reproduce the case itself (a fork racing ksmd,
say) and the case is not held against the model.

Scenarios are small (a few hundred pages, one batch per pass, but for regions of THPs: 512 or 1024
pages) so that a case takes about a
second on the kernel; the machine lock is taken per kernel run, never for the whole fuzzing run.

With --timing the cases are shaped for time instead (random_timing_scenario): 8,000 to 24,000
pages, many wake-ups a pass, no events, and the time to 50/90/100% of the saving and ksmd's CPU
are judged beside the counters, as `ksmtui parity SCENARIO --timing` judges them (run_parity).
"""

from __future__ import annotations

import math
import random
import statistics
from pathlib import Path

from engine.scenario import parse_scenario
from ksmtui.host.costs import load_profile
from ksmtui.kernel.parity import (
    PROCESS_SETTLED,
    SETTLED,
    TIMING_JUDGED,
    kernel_spread,
    parity_report,
    run_parity,
    timing_errors,
)

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


# timing cases: the target is stated for scans of at least 8,000 pages
TIMING_PAGES = (8_000, 24_000)
TIMING_PAGES_TO_SCAN = (100, 2000)
TIMING_SLEEP_MS = (10, 50)
# a full scan lasts at most about this long on the kernel: pages_to_scan is drawn from where
# pages / pages_to_scan wake-ups of ~sleep_millisecs + 2 ticks (at HZ 250) fit, so that a case
# takes seconds, not minutes
TIMING_FULL_SCAN_MS = 2000
TIMING_TICKS_MS = 8


def random_timing_scenario(seed: int, case: int) -> str:
    """The TOML text of timing case number `case` of the run seeded `seed`: 2 to 5 processes over
    8,000 to 24,000 pages, each of 1 or 2 regions of pool-shared (the saving), unique or zero pages;
    random pages_to_scan, sleep_millisecs, smart_scan, use_zero_pages and max_page_sharing; no
    events (a `set` or a write wakes or pauses the kernel's ksmd: timing_caveat), 3 to 5 full scans."""
    rng = random.Random(f"timing {seed} {case}")
    total = rng.randint(*TIMING_PAGES)
    sleep_ms = rng.randint(*TIMING_SLEEP_MS)
    lowest = max(TIMING_PAGES_TO_SCAN[0],
                 math.ceil(total * (sleep_ms + TIMING_TICKS_MS) / TIMING_FULL_SCAN_MS))
    # log-uniform: small batches (many wake-ups a pass) as often as large ones
    pages_to_scan = round(math.exp(rng.uniform(math.log(lowest), math.log(TIMING_PAGES_TO_SCAN[1]))))
    pool = rng.randint(100, 2000)
    lines = [f'name = "fuzz-timing-{seed}-{case}"', f"seed = {rng.randrange(1 << 16)}", "", "[ksm]",
             f"pages_to_scan = {pages_to_scan}", f"sleep_millisecs = {sleep_ms}",
             f"max_page_sharing = {rng.choice((2, 8, 256, 256))}",
             f"use_zero_pages = {rng.randint(0, 1)}", f"smart_scan = {rng.randint(0, 1)}",
             "", "[[pool]]", 'name = "shared"', f"pages = {pool}"]
    weights = [rng.uniform(1, 3) for _ in range(rng.randint(2, 5))]
    shares = _split(total, weights)
    for p, pages in enumerate(shares):
        lines += ["", "[[process]]", f'name = "p{p}"']
        parts = _split(pages, [rng.uniform(1, 3) for _ in range(rng.randint(1, 2))])
        for r, region_pages in enumerate(parts):
            # the first region of all is pool-shared, so that every case has a saving to time
            kind = "pool" if p == r == 0 else rng.choice(("pool", "pool", "pool", "unique", "unique", "zero"))
            lines += ["", "[[process.region]]", f'name = "r{r}"', f"pages = {region_pages}"]
            if kind == "pool":
                lines += ['fill = "pool"', 'pool = "shared"', f'order = "{rng.choice(("sequential", "shuffled"))}"',
                          f"offset = {rng.randrange(pool)}"]
            elif kind == "zero":
                lines.append('fill = "zero"')
    lines += ["", "[stop]", f"full_scans = {rng.randint(3, 5)}", ""]
    return "\n".join(lines)


def _split(total: int, weights: list[float]) -> list[int]:
    """total split in proportion to weights, every part at least 1, the sum exact."""
    parts = [max(1, int(total * w / sum(weights))) for w in weights]
    parts[-1] += total - sum(parts)
    return parts


def settled(result: dict) -> dict:
    """What a finished pass settles, the part of a result the model is held to."""
    return {"ksm": {k: result["ksm"].get(k) for k in SETTLED},
            "processes": {name: {k: stat.get(k) for k in PROCESS_SETTLED}
                          for name, stat in result["processes"].items()},
            "mismatches": result["data_check"]["mismatches"]}


def run_case(text: str, file: str, timing: bool = False, repeat: int = 1) -> dict:
    """One case: the model (this machine's cost profile), the kernel (`repeat` times, sampled, with
    timing), and the kernel again if the counters differ. The verdict is the counters'; with timing,
    "timing" holds each judged figure's error and the kernel's own spread (timing_summary reads them)."""
    from ksmtui.kernel.run import KernelError, run_on_kernel

    scenario = parse_scenario(text, file, Path("."))
    # this machine's profile: where events run on the clock, the model's clock should be the kernel's
    try:
        got = run_parity(scenario, load_profile(), lambda: run_on_kernel(scenario, sample=timing),
                         timing=timing, repeat=repeat)
    except KernelError as err:  # the kernel refused a step (another user's KSM pages: EBUSY)
        return {"verdict": "kernel-error", "report": f"the kernel run failed: {err}", "timing": None}
    report = got.text
    verdict = "agree"
    if not got.counters_ok:
        # a second kernel run: one of the repeats when there are, else one more
        again = got.kernels[1] if len(got.kernels) > 1 else run_on_kernel(scenario)
        verdict = "differs" if settled(again) == settled(got.kernel) else "kernel-unstable"
        if verdict == "kernel-unstable":
            report += "\nthe kernel did not reproduce this case: a second kernel run gave\n"
            report += parity_report(got.model, again)[0]
    out: dict = {"verdict": verdict, "report": report, "timing": None}
    if timing:
        out["timing"] = {"ok": got.timing_ok, "report": got.timing_text,
                         "errors": timing_errors(got.model["timing"], got.kernel["timing"]),
                         "spread": kernel_spread([k["timing"] for k in got.kernels]),
                         "at_kernel_wait": _at_kernel_wait(got.model, got.kernel),
                         "about": _about(scenario)}
    return out


def _at_kernel_wait(model: dict, kernel: dict) -> dict | None:
    """The times' errors of the model run again at the wait for a CPU ksmd met (not judged): the
    pacing apart from the load, which the profile's mean wait cannot know."""
    loaded = model.get("timing_at_kernel_wait")
    if loaded is None:
        return None
    return {key: err for key, err in timing_errors(loaded, kernel["timing"]).items() if key.startswith("time_to_")}


def _about(scenario) -> str:
    pages = sum(p.count * sum(r.pages for r in p.regions) for p in scenario.processes)
    return (f"{pages:,} pages, pages_to_scan {scenario.ksm['pages_to_scan']}, "
            f"sleep_millisecs {scenario.ksm['sleep_millisecs']}")


def _pct(rel: float | None) -> str:
    return "-" if rel is None else f"{rel:+.1%}"


def timing_line(timing: dict) -> str:
    """One case's timing in a line: each figure's error, the times' at the kernel's wait, and the
    kernel's spread when repeated."""
    line = f"{timing['about']}; timing {'held' if timing['ok'] else 'missed'}: " + ", ".join(
        f"{_short(key)} {_pct(rel)}{' (beyond)' if off else ''}" for key, (rel, off) in timing["errors"].items())
    if timing["at_kernel_wait"] is not None:
        line += "; at ksmd's wait: " + ", ".join(
            f"{_short(key)} {_pct(rel)}" for key, (rel, _) in timing["at_kernel_wait"].items())
    spread = timing["spread"]
    if any(v is not None for v in spread.values()):
        line += "; the kernel's own spread: " + ", ".join(
            f"{_short(key)} {'-' if v is None else f'{v:.1%}'}" for key, v in spread.items())
    return line


def _short(key: str) -> str:
    return key.removesuffix("_ms")


def _distribution(errors: list[dict], tolerances: tuple[tuple[str, float], ...]) -> str:
    """For each figure: in how many cases it was within its tolerance, the median |error|, the worst."""
    parts = []
    for key, tol in tolerances:
        errs = [e[key] for e in errors]
        rels = [rel for rel, _ in errs if rel is not None]
        text = f"{_short(key)} within {tol:.0%} in {sum(not off for _, off in errs)}/{len(errs)}"
        if rels:
            worst = max(rels, key=abs)
            text += f" (error: median {statistics.median(abs(r) for r in rels):.1%}, worst {worst:+.1%})"
        parts.append(text)
    return "; ".join(parts)


def timing_summary(timings: list[dict], runs: int) -> str:
    """The distribution over the cases: for each judged figure, how many cases held its target, the
    median and the worst error; beside, the times of the model at the wait ksmd met (not judged) and
    the kernel's own spread between its runs of a case."""
    held = sum(t["ok"] for t in timings)
    line = f"timing held in {held} of {len(timings)} cases: " + _distribution([t["errors"] for t in timings],
                                                                             TIMING_JUDGED)
    loaded = [t["at_kernel_wait"] for t in timings if t["at_kernel_wait"] is not None]
    if loaded:
        line += ". The model at ksmd's measured wait (not judged): " + _distribution(
            loaded, tuple((key, tol) for key, tol in TIMING_JUDGED if key in loaded[0]))
    spreads = {key: [s for t in timings if (s := t["spread"][key]) is not None] for key, _ in TIMING_JUDGED}
    if runs > 1 and any(spreads.values()):
        line += f". The kernel's own spread over its {runs} runs of a case, median/worst: " + ", ".join(
            f"{_short(key)} {statistics.median(v):.1%}/{max(v):.1%}" for key, v in spreads.items() if v)
    else:
        line += ". The kernel's own spread: not measured (one run a case; --repeat 3 shows it)"
    return line
