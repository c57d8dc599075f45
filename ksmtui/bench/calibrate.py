"""`ksmtui calibrate`: this machine's ksmd costs, measured, into the cost profile every model run uses.

The real ksmd has no per-function timing here (cmp_and_merge_page is inlined, no kprobes), so the
profile is fitted: each workload below runs on the real KSM (its own processes, under the machine
lock) and ksmd's CPU time (/proc/PID/schedstat) is read over a window of full scans; the same
workload runs in the model once per cost group (engine/cost.py GROUPS) with only that group's
constants (BASE_NS) switched on, which gives the modelled ns of each group in that window (the
model's work does not depend on its costs: no timed events, no advisor). ksmd's CPU of each
workload = sum over groups of scale x modelled ns: the scales are the non-negative least squares
solution over the workloads' relative errors (median of `repeat` kernel runs each), and the profile
is BASE_NS times their group's scale. The workloads set the groups apart: settled pages in big and
in small batches (scan, wake-up), a first pass over new pages (checksum), unique pages with
smart_scan off at three sizes (the unstable tree walk, and the share of its entries a wake-up
reads cold, which grows with the tree), unique pages beside settled ones (their walks of the
stable tree: a stable level's own step), pages merging (merge) in big and in small batches (cold
tree entries again), and pages merging into stable_node chains (the dups' walk). The time ksmd
waited runnable for a CPU over all of them, per ns it ran (schedstat), is the profile's
wait_per_cpu: on a busy machine a scan lasts that much longer than its CPU time, which moves every
later wake-up.

HZ comes from the kernel's configuration (/proc/config.gz, /boot/config-RELEASE); without one, from
ksmd's measured period at sleep_millisecs 1 (msecs_to_jiffies(1) + 1 ticks).
"""

from __future__ import annotations

import gzip
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.cost import BASE_NS, GROUPS, CostProfile
from engine.knobs import ENGINE_KNOBS, KSM_KNOBS
from engine.scenario import Fill, Pool, Process, Region, Scenario, Stop

PAGES = 8000


@dataclass(frozen=True)
class Workload:
    name: str
    what: str
    scenario: Scenario
    start: int  # full scans before the window
    end: int  # full scans at its end


def _scenario(name: str, processes: list[Process], pools: tuple[Pool, ...] = (), **ksm: int) -> Scenario:
    knobs = {k: v.default for k, v in KSM_KNOBS.items()}
    knobs.update(ksm)
    return Scenario(name=f"calibrate-{name}", description=name, processes=tuple(processes), seed=1, ksm=knobs,
                    engine={k: v.default for k, v in ENGINE_KNOBS.items()}, pools=pools, events=(), stop=Stop())


def workloads(pages: int = PAGES) -> list[Workload]:
    each = pages // 4
    pool = (Pool("image", each // 4),)  # 16 copies of every content: no chains at max_page_sharing 256
    shared = [Process("guest", (Region("image", each, fill=Fill("pool", pool="image")),), count=4)]
    few = (Pool("image", each // 8),)  # 32 copies: chains of 16 dups at max_page_sharing 2, of 4 at 8

    def unique(n: int) -> list[Process]:
        return [Process("app", (Region("heap", n),))]

    return [
        Workload("settled", "settled pages, big batches", _scenario("settled", shared, pool, pages_to_scan=2000,
                                                                    sleep_millisecs=10), 3, 8),
        # at the sleep operators use: what a wake-up costs, its scheduling and its cold start
        Workload("wakeups", "settled pages, 100 a wake-up", _scenario("wakeups", shared, pool, pages_to_scan=100,
                                                                      sleep_millisecs=20), 3, 5),
        Workload("first", "a first pass over new pages", _scenario("first", unique(pages), pages_to_scan=2000,
                                                                   sleep_millisecs=10), 0, 1),
        Workload("unique", "unique pages, smart_scan off", _scenario("unique", unique(pages), smart_scan=0,
                                                                     pages_to_scan=2000, sleep_millisecs=10), 2, 6),
        # a tree's cost per level depends on its size (the caches): one smaller, one larger
        Workload("unique-small", "unique pages, a quarter as many",
                 _scenario("unique-small", unique(pages // 4), smart_scan=0, pages_to_scan=2000,
                           sleep_millisecs=10), 2, 6),
        Workload("unique-large", "unique pages, 4 times as many",
                 _scenario("unique-large", unique(pages * 4), smart_scan=0, pages_to_scan=2000,
                           sleep_millisecs=10), 2, 4),
        Workload("merging", "pages merging (3 passes)", _scenario("merging", shared, pool, pages_to_scan=2000,
                                                                  sleep_millisecs=10), 0, 3),
        # the same in small batches, 20 ms apart: every batch finds the trees cold
        Workload("merging-small", "pages merging, 100 a wake-up",
                 _scenario("merging-small", shared, pool, pages_to_scan=100, sleep_millisecs=20), 0, 2),
        # a stable tree walked by unique pages, level after level, without merging: what a stable
        # level costs apart from an unstable one (settled pages beside unique ones, as in most
        # settled passes)
        Workload("mixed", "unique pages beside settled ones",
                 _scenario("mixed", [replace(shared[0], count=3), *unique(each)], pool, smart_scan=0,
                           pages_to_scan=2000, sleep_millisecs=10), 2, 4),
        # stable_node chains: ksm_get_folio over every dup of a chain
        Workload("chains", "pages merging into chains of 16",
                 _scenario("chains", shared, few, max_page_sharing=2, pages_to_scan=2000, sleep_millisecs=10), 0, 3),
        Workload("chains-short", "pages merging into chains of 4",
                 _scenario("chains-short", shared, few, max_page_sharing=8, pages_to_scan=2000,
                           sleep_millisecs=10), 0, 3),
    ]


def _window_cpu(w: Workload, profile: CostProfile) -> int:
    from engine.sim import Simulation

    sim = Simulation(w.scenario, costs=profile)
    sim.run(full_scans=w.start) if w.start else None
    cpu0 = sim.ksm.ksmd_cpu_ns
    sim.run(full_scans=w.end)
    return sim.ksm.ksmd_cpu_ns - cpu0


def modelled(w: Workload) -> dict[str, int]:
    """The model's ksmd CPU ns in the window, per group: only that group's BASE_NS constants on."""
    out = {}
    for group, names in GROUPS.items():
        ns = {k: (v if k in names else 0) for k, v in BASE_NS.items()}
        out[group] = _window_cpu(w, CostProfile(ns, label=f"group {group}"))
    return out


def measured(w: Workload) -> tuple[int, int]:
    """ksmd's (CPU ns, ns waiting for a CPU) in the window, on the real KSM (takes the machine lock)."""
    from ksmtui.host.sysfs import ksmd_pid, ksmd_sched_ns
    from ksmtui.kernel.run import KernelRun

    pid = ksmd_pid()
    marks: dict[str, tuple[int, int]] = {}

    def until(run: KernelRun) -> bool:  # read at the pass boundaries without pausing ksmd
        if run.full_scans >= w.start and "start" not in marks:
            marks["start"] = ksmd_sched_ns(pid)
        if run.full_scans >= w.end:
            marks["end"] = ksmd_sched_ns(pid)
            return True
        return False

    with KernelRun(w.scenario) as run:
        if w.start == 0:
            marks["start"] = ksmd_sched_ns(pid)
        run.start()
        run.run(until=until)
    return marks["end"][0] - marks["start"][0], marks["end"][1] - marks["start"][1]


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares, by dropping the most negative variable until none is: the
    system is small (10 x 6) and well separated by the workloads."""
    free = list(range(a.shape[1]))
    x = np.zeros(a.shape[1])
    while free:
        sol, *_ = np.linalg.lstsq(a[:, free], b, rcond=None)
        if (sol >= 0).all():
            x[free] = sol
            break
        free.pop(int(np.argmin(sol)))
    return x


def config_hz() -> int | None:
    """CONFIG_HZ of the running kernel, from its configuration, or None."""
    release = os.uname().release
    for path in (Path("/proc/config.gz"), Path(f"/boot/config-{release}")):
        try:
            text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        m = re.search(r"^CONFIG_HZ=(\d+)$", text, re.M)
        if m:
            return int(m.group(1))
    return None


def measured_hz() -> int:
    """HZ from ksmd's period at sleep_millisecs 1: msecs_to_jiffies(1) = 1 tick, the timer one
    more, so ksmd wakes every 2 ticks (when its scan takes less than one)."""
    from ksmtui.kernel.run import KernelRun

    scenario = _scenario("hz", [Process("app", (Region("heap", 400),))],
                         pages_to_scan=25, sleep_millisecs=1)
    with KernelRun(scenario) as run:
        run.start()
        run.run(full_scans=1)
        t0, s0 = time.monotonic(), run.full_scans
        run.run(full_scans=s0 + 2)
        t1 = time.monotonic()
    wakeups = 2 * (400 // 25 + 1)
    tick_s = (t1 - t0) / wakeups / 2
    return round(1 / tick_s)


def calibrate(repeat: int = 5, say: Callable[[str], None] = print) -> tuple[CostProfile, list[dict]]:
    """Measure, fit, and return (profile, one row per workload: modelled by group, kernel runs)."""
    ws = workloads()
    rows: list[dict] = []
    for w in ws:
        say(f"{w.what}: the model")
        rows.append({"workload": w.name, "what": w.what, "model_ns": modelled(w), "kernel_ns": [], "wait_ns": []})
    # round by round, not workload by workload: ksmd's cost drifts (the same workload 27% cheaper
    # 40 minutes later), and every workload's median should see the same stretch of it, or the fit
    # reads the drift as one group's cost
    for i in range(repeat):
        for w, row in zip(ws, rows, strict=True):
            say(f"{w.what}: the real ksmd, run {i + 1}/{repeat} (waits for the machine lock)")
            cpu, wait = measured(w)
            row["kernel_ns"].append(cpu)
            row["wait_ns"].append(wait)
    scales = fit(rows)
    hz = config_hz() or measured_hz()
    label = f"this machine ({os.uname().release}), measured {time.strftime('%Y-%m-%d %H:%M')}"
    wait_per_cpu = sum(sum(r["wait_ns"]) for r in rows) / max(sum(sum(r["kernel_ns"]) for r in rows), 1)
    return CostProfile.scaled(scales, hz, label, round(wait_per_cpu, 3)), rows


def fit(rows: list[dict]) -> dict[str, float]:
    """The group scales, by non-negative least squares on each workload's relative error (the
    small workloads count as much as the big ones); sets each row's "fitted_ns"."""
    groups = list(GROUPS)
    a = np.array([[r["model_ns"][g] for g in groups] for r in rows], dtype=float)
    b = np.array([statistics.median(r["kernel_ns"]) for r in rows], dtype=float)
    scales = nnls(a / b[:, None], np.ones(len(b)))
    for r, fitted in zip(rows, (a @ scales).tolist(), strict=True):
        r["fitted_ns"] = fitted
    return dict(zip(groups, (round(float(x), 4) for x in scales), strict=True))
