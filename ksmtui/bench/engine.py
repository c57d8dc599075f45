"""`ksmtui bench`: how fast the engine scans, per workload and path, beside the real ksmd.

Five workloads isolate the paths of cmp_and_merge_page():
  (a) settled   every page already merged: the KSM-page fast path (early return)
  (b) unique    unique unchanging memory, smart_scan off: the anon path in full (checksum, zero
                page, stable tree search, unstable tree insert)
  (c) changing  every page rewritten between two visits: the anon path's early return
  (d) fleet     VMs sharing an OS image, with private, zero and hot pages: all paths mixed
  (e) chains    16 distinct contents, so max_page_sharing 256 makes stable_node chains of dups:
                the KSM-page early return on a machine whose stable tree is chains

Each runs in a fresh process: built (timed), its first full scan timed, warmed up to its steady
state (peak RSS growth measured there), then timed over whole full scans: the process's CPU time
over pages_scanned is the model's ns per page, as ksmd's CPU time over pages_scanned is the
kernel's (CPU time, not wall time, so that other work on the machine does not count). The real
ksmd runs the same workload right after, in the same repetition, so each ratio compares two
measurements taken moments apart. Then: a snapshot of a 100k-page machine, and the engine's
throughput under the UI.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from engine import engine_kind
from engine.knobs import ENGINE_KNOBS, KSM_KNOBS
from engine.scenario import Event, Fill, Pool, Process, Region, RunConfig, Scenario, Stop
from engine.snapshot import OUTCOMES, PATHS, Snapshot

if TYPE_CHECKING:
    from engine.sim import Simulation
    from ksmtui.ui.runner import EngineView

WORKLOADS = {
    "settled": "(a) settled, all merged",
    "unique": "(b) unique, smart_scan off",
    "changing": "(c) changing every scan",
    "fleet": "(d) mixed fleet",
    "chains": "(e) settled, in chains",
}
# the path each workload's ratio to ksmd is held to, and the target for that path (issue 26's,
# for the compiled engine: issue 16 held the interpreted one to 5x and 2x)
TARGETS = {"settled": ("KSM page", 3.0), "chains": ("KSM page", 3.0), "unique": ("anon", 1.5)}
FIRST_SCAN_TARGET_S = 30.0  # a 1M-page machine's first full scan
CHAIN_CONTENTS = 16  # chains: at max_page_sharing 256, a content on N pages is N / 256 dups
MAX_PAGES = 1 << 20
PAGES_TO_SCAN = 1000  # big batches: the per-wake-up cost is not what is measured
SLEEP_MS = 20
# workloads without timed events scan in bigger batches without sleeping, as the real ksmd is
# measured at scale (a 1M-page pass at 1000 pages every 20 ms would take 21 s of wall time)
STEADY = {"pages_to_scan": 20_000, "sleep_millisecs": 0}
SYSFS_RUN = "/sys/kernel/mm/ksm/run"


def interpreter_loop_s() -> float:
    """CPU seconds this interpreter takes for `s = 0; for i in range(10**7): s += i`: how fast the
    machine runs Python, so that figures from two machines can be told apart (an interpreted
    engine's ratio to ksmd moves with it). Run as `python -c` runs it, at module level: its
    variables are a dict's, as the issue's figures were measured (in a function they are 2x faster)."""
    loop = compile("s = 0\nfor i in range(10**7):\n    s += i\n", "<loop>", "exec")
    start = time.process_time()
    exec(loop, {})
    return time.process_time() - start


def engine_line(loop_s: float) -> str:
    return (f"engine {engine_kind()}; this Python runs `s = 0; for i in range(10**7): s += i` in "
            f"{loop_s:.2f} s of CPU")


def _scenario(name: str, processes: Iterable[Process], pools: Iterable[Pool] = (), events: Iterable[Event] = (),
              **ksm: int) -> Scenario:
    knobs = {k: v.default for k, v in KSM_KNOBS.items()}
    batch = STEADY if name in TARGETS else {"pages_to_scan": PAGES_TO_SCAN, "sleep_millisecs": SLEEP_MS}
    knobs.update(batch, **ksm)
    return Scenario(
        name=f"bench-{name}", description=WORKLOADS[name], processes=tuple(processes), seed=1,
        ksm=knobs, engine={k: v.default for k, v in ENGINE_KNOBS.items()}, pools=tuple(pools),
        events=tuple(events), stop=Stop(),
    )


def _scan_period_ms(pages: int) -> int:
    """A write period no longer than one full scan, so every page changes between two visits:
    a pass takes ceil(pages / pages_to_scan) batches plus the empty batch that ends it."""
    return max(1, -(-pages // PAGES_TO_SCAN)) * SLEEP_MS


def workload(name: str, pages: int) -> Scenario:
    """The scenario of one workload, `pages` pages in all."""
    if name == "settled":  # four copies of every content: pages_shared = pages / 4
        each = max(1, pages // 4)
        image = Region("image", each, fill=Fill("pool", pool="image"))
        return _scenario(name, [Process("guest", (image,), count=4)], pools=[Pool("image", each)])
    if name == "chains":  # 4 processes, each page one of 16 contents
        each = max(1, pages // 4)
        image = Region("image", each, fill=Fill("pool", pool="contents"))
        return _scenario(name, [Process("guest", (image,), count=4)], pools=[Pool("contents", CHAIN_CONTENTS)],
                         max_page_sharing=256)
    if name == "unique":
        return _scenario(name, [Process("app", (Region("heap", pages),))], smart_scan=0)
    if name == "changing":
        period = _scan_period_ms(pages)
        rewrite = Event(0, "write", at_ms=period, repeat_ms=period, process="app", region="heap", pages=pages)
        return _scenario(name, [Process("app", (Region("heap", pages),))], events=[rewrite], smart_scan=0)
    if name == "fleet":
        each = max(8, pages // 4)
        shared, private, zero = each // 2, each // 4, each // 10
        hot = each - shared - private - zero
        regions = (
            Region("os", shared, fill=Fill("pool", pool="os-image")),
            Region("private", private),
            Region("free", zero, fill=Fill("zero")),
            Region("hot", hot),
        )
        period = _scan_period_ms(4 * each)
        rewrite = Event(0, "write", at_ms=period, repeat_ms=period, process="vm-*", region="hot", pages=hot)
        return _scenario(name, [Process("vm", regions, count=4)], pools=[Pool("os-image", shared)],
                         events=[rewrite], use_zero_pages=1)
    raise ValueError(name)


def distinct_bytes(scenario: Scenario) -> int:
    """Bytes of the distinct page contents a scenario starts with (one copy of each)."""
    ps = scenario.page_size
    total = sum(pool.pages for pool in scenario.pools) * ps
    constant = set()
    for p in scenario.processes:
        for r in p.regions:
            if r.fill.kind == "random":
                total += p.count * r.pages * ps
            elif r.fill.kind in ("zero", "byte"):
                constant.add(r.fill.byte if r.fill.kind == "byte" else 0)
    return total + len(constant) * ps


def simulation(scenario: Scenario, flow: str | None) -> Simulation:
    from engine.sim import Simulation

    return Simulation(scenario, flow=flow)


def warm_up(sim: Simulation, name: str) -> None:
    """Scan until the workload is in the steady state that is measured."""
    if name in ("settled", "chains"):  # first visit records the checksum, the next merges, one more settles
        for _ in range(10):
            sim.step_full_scan()
            c = sim.snapshot(tree_limit=0).counters
            if c["full_scans"] >= 3 and not c["pages_volatile"] and not c["pages_unshared"]:
                return
        raise RuntimeError("the settled workload did not settle in 10 full scans")
    while sim.full_scans < (3 if name == "fleet" else 2):  # the first full scan counts when timed apart
        sim.step_full_scan()


@dataclass
class Measure:
    workload: str
    pages: int
    build_s: float
    scanned: int
    cpu_s: float
    by_path: dict  # path -> calls in the measured window
    by_outcome: dict  # outcome -> calls in the measured window
    first_scan_s: float = 0.0  # CPU time of the first full scan of the new machine
    grown: int = 0  # peak RSS growth from building to the steady state (in a fresh process)
    distinct: int = 0  # bytes of the distinct contents it started with
    profile: str = ""
    engine: str = ""  # engine_kind() of the process that measured

    @property
    def ns_per_page(self) -> float:
        return self.cpu_s * 1e9 / self.scanned if self.scanned else 0.0

    @property
    def pages_per_s(self) -> float:
        return self.scanned / self.cpu_s if self.cpu_s else 0.0


def _calls(snapshot: Snapshot) -> tuple[dict[str, int], dict[str, int]]:
    """Calls so far by path, and by outcome."""
    by_outcome = {o: sum(snapshot.outcomes[p][o] for p in PATHS) for o in OUTCOMES}
    return {p: sum(snapshot.outcomes[p].values()) for p in PATHS}, by_outcome


def _delta(after: dict, before: dict) -> dict:
    return {k: n - before[k] for k, n in after.items()}


def measure(name: str, pages: int, flow: str | None, min_time: float, profile: bool) -> Measure:
    """Build, scan once, warm up, then time whole full scans for at least min_time seconds (one at
    least). `grown` means something only in a fresh process (see measure_fresh)."""
    import engine.sim  # noqa: F401  (imports are not the machine's memory)

    base = peak_rss()
    scenario = workload(name, pages)
    start = time.process_time()
    sim = simulation(scenario, flow)
    build_s = time.process_time() - start
    start = time.process_time()
    sim.step_full_scan()
    first_scan_s = time.process_time() - start
    warm_up(sim, name)
    grown = peak_rss() - base
    before = sim.snapshot(tree_limit=0)
    cpu = 0.0
    while cpu == 0.0 or cpu < min_time:
        start = time.process_time()
        sim.step_full_scan()
        cpu += time.process_time() - start
    after = sim.snapshot(tree_limit=0)
    (paths0, outcomes0), (paths1, outcomes1) = _calls(before), _calls(after)
    m = Measure(name, pages, build_s, after.counters["pages_scanned"] - before.counters["pages_scanned"], cpu,
                _delta(paths1, paths0), _delta(outcomes1, outcomes0), first_scan_s, grown, distinct_bytes(scenario),
                engine=engine_kind())
    if profile:  # one more full scan, apart: the profiler's overhead must not count above
        from engine import compiled

        if compiled():  # cProfile sees no function inside the compiled engine: profile its source
            m.profile = ("the interpreted engine's (cProfile sees no function inside the compiled one):\n"
                         + in_fresh_process("profile_scan", name, pages, flow, pure=True)["profile"])
        else:
            m.profile = _profile(sim.step_full_scan, 15)
    return m


def profile_scan(name: str, pages: int, flow: str | None) -> dict:
    """cProfile of one full scan at the steady state (in a fresh process)."""
    sim = simulation(workload(name, pages), flow)
    warm_up(sim, name)
    return {"profile": _profile(sim.step_full_scan, 15)}


def peak_rss() -> int:
    """This process's peak resident set (VmHWM), in bytes. Not getrusage's ru_maxrss: Linux carries
    that across exec, so a probe started by a big parent would inherit the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure_fresh(name: str, pages: int, flow: str | None, min_time: float, profile: bool) -> Measure:
    """measure() in a fresh process: its peak RSS is this machine's alone, and a 1M-page machine's
    memory is given back before the real ksmd's processes take theirs."""
    return Measure(**in_fresh_process("_measure_dict", name, pages, flow, min_time, profile))


def _measure_dict(name: str, pages: int, flow: str | None, min_time: float, profile: bool) -> dict:
    return asdict(measure(name, pages, flow, min_time, profile))


def memory_sites(name: str, pages: int, flow: str | None, top: int = 8) -> dict:
    """In a fresh process, under tracemalloc: what holds the memory at the steady state, by line."""
    import engine.sim  # noqa: F401  (imports are not the machine's memory)

    tracemalloc.start()
    sim = simulation(workload(name, pages), flow)
    warm_up(sim, name)
    stats = tracemalloc.take_snapshot().statistics("lineno")
    _, peak = tracemalloc.get_traced_memory()
    sites = [[f"{os.path.relpath(s.traceback[0].filename)}:{s.traceback[0].lineno}", s.size, s.count]
             for s in stats[:top]]
    return {"sites": sites, "held": sum(s.size for s in stats), "peak": peak, "pages": pages}


class FreshProcessError(RuntimeError):
    """A measurement in a fresh process failed (a 1M-page machine out of memory, say)."""


def in_fresh_process(function: str, *args: object, pure: bool = False) -> dict:
    """function(*args) in a fresh process; pure: on the interpreted engine (KSMTUI_PURE)."""
    code = f"import json; from ksmtui.bench.engine import {function}; print(json.dumps({function}{args!r}))"
    env = {**os.environ, "KSMTUI_PURE": "1"} if pure else None
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        last = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise FreshProcessError(f"{function}{args!r} failed in a fresh process: {last}")
    return json.loads(out.stdout)


def snapshot_cost(pages: int, flow: str | None, profile: bool, repeat: int = 20) -> tuple[float, float, str]:
    """Mean and worst ms of a default snapshot (trees excerpted) of a warmed-up fleet, and its profile."""
    sim = simulation(workload("fleet", pages), flow)
    warm_up(sim, "fleet")
    times = []
    for _ in range(repeat):
        start = time.process_time()
        sim.snapshot()
        times.append(time.process_time() - start)
    return sum(times) / len(times) * 1e3, max(times) * 1e3, _profile(sim.snapshot, 10) if profile else ""


def _profile(call: Callable[[], object], lines: int) -> str:
    profiler = cProfile.Profile()
    profiler.runcall(call)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(lines)
    return out.getvalue().strip("\n")


def ui_overhead(pages: int, seconds: float, flow: str | None,
                repeat: int = 3) -> list[tuple[float, float, float, float]]:
    """Engine throughput (pages scanned per wall second) on the same stretch of the fleet's run:
    under the UI (Textual's headless driver, 160x50, the Overview drawn as the app draws it), then
    headless from the same page to the same page; the UI's drawings per second and its thread's
    share of the wall time (the engine's loss, less the cost of handing the GIL over). `repeat`
    pairs: this machine's noise is larger than the effect. The run has no stop condition: the UI
    pauses a run that reaches its stop, and idle time is not overhead."""
    scenario = replace(workload("fleet", pages), stop=Stop(full_scans=1 << 62))
    pairs = []
    for _ in range(repeat):
        first, last, ui_s, draws, ui_cpu = asyncio.run(_ui_stretch(scenario, seconds, flow))
        sim = simulation(scenario, flow)

        while sim.ksm.ksm_pages_scanned < first:  # the snapshot's pages_scanned, without a snapshot
            sim.step_pages(100)
        start = time.perf_counter()
        while sim.ksm.ksm_pages_scanned < last:
            sim.step_pages(100)
        headless_s = time.perf_counter() - start
        pairs.append(((last - first) / headless_s, (last - first) / ui_s, draws / ui_s, ui_cpu / ui_s))
    return pairs


async def _ui_stretch(scenario: Scenario, seconds: float, flow: str | None) -> tuple[int, int, float, int, float]:
    """pages_scanned at two views the UI got `seconds` apart (a second after it started), the wall time
    between them, the drawings in between and the CPU time of the UI's thread (this one)."""
    from ksmtui.ui.apps.model import KsmApp

    app = KsmApp(scenario, RunConfig(flow=flow))

    async def next_view(after: EngineView | None) -> tuple[EngineView, float]:  # the next view, when (to 5 ms)
        while app.view is after or app.view is None:
            await asyncio.sleep(0.005)
        return app.view, time.perf_counter()

    async with app.run_test(size=(160, 50)):
        await asyncio.sleep(1.0)  # past the first drawings, which lay the whole screen out
        first, start = await next_view(app.view)
        draws, cpu = app.draws, time.thread_time()
        await asyncio.sleep(seconds)
        last, end = await next_view(app.view)
        draws, cpu = app.draws - draws, time.thread_time() - cpu
    if last.state != "running":
        raise RuntimeError(f"the run stopped under the UI: {last.state}, {last.note}")
    return first.snapshot.counters["pages_scanned"], last.snapshot.counters["pages_scanned"], end - start, draws, cpu


def kernel_writable() -> bool:
    return os.access(SYSFS_RUN, os.W_OK)


def _share(counts: dict, top: int = 3) -> str:
    """The largest shares, like "ksm 71% anon 29%"."""
    total = sum(counts.values())
    if not total:
        return "-"
    largest = sorted((n, k) for k, n in counts.items() if n)[::-1][:top]
    return " ".join(f"{k.removesuffix('_page')} {n * 100 / total:.0f}%" for n, k in largest)


@dataclass
class Row:
    """One workload at one size: a model measure and, where measured, the real ksmd's ns per page,
    per repetition (the pair of a repetition measured moments apart)."""
    workload: str
    pages: int
    model: list[Measure]
    ksmd: list[float | None]

    def ratios(self) -> list[float]:
        return [m.ns_per_page / k for m, k in zip(self.model, self.ksmd, strict=False) if k]


def _spread(values: list[float], fmt: str) -> str:
    """The median, and the range when there are several: "2.1x (1.9-2.4)"."""
    if not values:
        return "-"
    ordered = sorted(values)
    median = fmt.format(statistics.median(ordered))
    return median if len(ordered) == 1 else f"{median} ({fmt.format(ordered[0])}-{fmt.format(ordered[-1])})"


def rows(results: list[Row], kernel: bool) -> list[str]:
    from ksmtui.text.report import table

    head: list[object] = ["workload", "pages", "calls by path", "outcomes", "build s", "first scan s", "ns/page"]
    if kernel:
        head += ["ksmd ns/page", "model/ksmd", "target"]
    out: list[list[object]] = [head]
    for r in results:
        m = r.model[0]
        row = [WORKLOADS[r.workload], r.pages, _share(m.by_path), _share(m.by_outcome, top=2),
               _spread([x.build_s for x in r.model], "{:.2f}"), _spread([x.first_scan_s for x in r.model], "{:.2f}"),
               _spread([x.ns_per_page for x in r.model], "{:,.0f}")]
        if kernel:
            path, target = TARGETS.get(r.workload, ("", 0.0))
            row += [_spread([k for k in r.ksmd if k], "{:,.0f}"), _spread(r.ratios(), "{:.1f}x"),
                    f"{path} {target:g}x" if target else ""]
        out.append(row)
    return table(out, left=4)


def memory_lines(results: list[Row]) -> list[str]:
    out = [("memory (peak RSS growth in a fresh process, building and scanning to the steady state; "
            "target 1.25 x the distinct contents + 100 B/page):")]
    for r in results:
        grown = max(m.grown for m in r.model)
        m = r.model[0]
        bound = 1.25 * m.distinct + 100 * m.pages
        out.append(f"  {WORKLOADS[r.workload]:<28} {r.pages:>9,} pages {grown / m.pages:>7,.0f} B/page "
                   f"({grown / 2**20:,.0f} MiB; target 1.25 x {m.distinct / 2**20:,.0f} MiB + 100 B/page "
                   f"= {bound / 2**20:,.0f} MiB: {grown / bound:.2f} of it)")
    return out


def measure_kernel(name: str, pages: int) -> tuple[float | None, str]:
    """The real ksmd's ns per scanned page on one workload, realised by ksmtui.kernel.run in real
    processes under the machine lock (held for this one case), or None and why not."""
    try:
        from ksmtui.kernel.run import (
            KernelError,
            KernelUnavailable,
            KernelUnsupported,
            machine_lock,
            measure_ksmd,
        )
    except ImportError:
        return None, "this build has no ksmtui.kernel.run.measure_ksmd"
    with machine_lock():
        try:
            return measure_ksmd(workload(name, pages))["ns_per_page"], ""
        except (KernelError, KernelUnavailable, KernelUnsupported) as e:
            return None, str(e)


def say(text: str) -> None:
    """What the bench is doing, on the terminal only: a long run should not look hung."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{text}")
        sys.stderr.flush()
