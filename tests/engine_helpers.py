"""Small builders for engine tests: scenarios in a line, scans by the pass."""

from __future__ import annotations

from engine.check import check_invariants
from engine.scenario import Event, Fill, Pool, Process, Region, Scenario
from engine.sim import Simulation


def region(name: str, pages: int, kind: str = "random", mergeable: bool = True, thp: float = 0.0,
           **fill) -> Region:
    return Region(name, pages, mergeable, Fill(kind, **fill), thp)


def scenario(*processes: Process, ksm: dict | None = None, events=(), pools=(), numa_nodes: int = 1,
             page_size: int = 4096) -> Scenario:
    knobs = {"pages_to_scan": 100_000, **(ksm or {})}
    return Scenario("test", tuple(processes), ksm=knobs, engine={"numa_nodes": numa_nodes},
                    events=tuple(Event(i, **e) for i, e in enumerate(events)),
                    pools=tuple(Pool(n, p) for n, p in pools), page_size=page_size)


def proc(name: str, *regions: Region, **kw) -> Process:
    return Process(name, tuple(regions), **kw)


def sim_of(*processes: Process, flow: str = "optimized", **kw) -> Simulation:
    return Simulation(scenario(*processes, **kw), flow=flow)


def scans(sim: Simulation, n: int = 1) -> dict:
    """Complete n full passes (with pages_to_scan large, one wake-up each) and check invariants."""
    for _ in range(n):
        sim.step_full_scan()
        check_invariants(sim)
    return sim.ksm.counters()


def pick(counters: dict, *names: str) -> dict:
    return {n: counters[n] for n in names}
