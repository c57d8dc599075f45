"""What the hot paths keep or batch instead of recomputing, against the plain formula: jitter
factors made in blocks, pool pages drawn in blocks, and ksmd's page loop giving the same run
however it is sliced. (Mapped-page counts, page prefixes and the VMA an rmap_item caches are
invariants in engine/check.py, checked after every step of the property tests.)"""

import numpy as np

from engine.contents import _stream_seed, pool_pages
from engine.cost import JITTER_BLOCK, CostModel
from tests.engine_helpers import proc, region, sim_of


def jitter_by_formula(n: int, seed: int, ns: int) -> int:
    """The n-th call's jitter, as the cost model documents it, in plain Python integers."""
    h = ((n ^ (seed & 0xFFFFFFFF)) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    u = (h >> 40) / (1 << 24)
    return int(ns * (0.75 + 0.75 * u * u))


def test_jitter_made_in_blocks_equals_the_formula_call_by_call():
    for seed in (0, 1, 32, 0xFFFFFFFF, 1 << 40):
        cost = CostModel(4096, seed)
        for n in range(1, 2 * JITTER_BLOCK + 3):  # across block boundaries
            ns = (n * 7919) % 3_000_000 + 1
            assert cost.jitter(ns) == jitter_by_formula(n, seed, ns), (seed, n)


def test_pool_pages_drawn_in_blocks_are_one_long_draw():
    for seed, index, pages, page_size in ((7, 0, 1000, 4096), (3, 2, 1, 65536), (1, 1, 513, 64)):
        rng = np.random.Generator(np.random.PCG64(_stream_seed(seed, 2, index)))
        whole = rng.bytes(pages * page_size)
        expected = [whole[i * page_size:(i + 1) * page_size] for i in range(pages)]
        assert pool_pages(seed, index, pages, page_size) == expected


def sliced_sim():
    return sim_of(
        proc("vm", region("os", 40, "pool", pool="os"), region("heap", 30), region("free", 10, "zero"), count=3),
        pools=[("os", 40)], ksm={"pages_to_scan": 23, "use_zero_pages": 1},
        events=[{"action": "write", "at_ms": 50, "repeat_ms": 120, "process": "vm-*", "region": "heap",
                 "fraction": 0.5}],
    )


def state(sim) -> tuple:
    snap = sim.snapshot()
    return sim.ksm.counters(), sim.now_ns, snap.outcomes, snap.latency, snap.work_by_path


def test_the_page_loop_gives_one_run_however_it_is_sliced():
    """step_batch, step_page and step_pages(k) call ksm_do_scan in different slices; the run
    (counters, clock, outcomes, latency histograms, work) must not depend on that."""
    sim = sliced_sim()
    for _ in range(10_000):  # past 6 full scans, to a wake-up that ended on pages_to_scan, not on a pass end
        before = sim.ksm.ksm_pages_scanned
        sim.step_batch()
        if sim.full_scans >= 6 and sim.ksm.ksm_pages_scanned - before == 23:
            break
    else:
        raise AssertionError("no full wake-up after 6 full scans in 10,000 wake-ups")
    pages, by_batch = sim.ksm.ksm_pages_scanned, state(sim)

    sim = sliced_sim()
    for _ in range(pages):
        sim.step_page()
    assert state(sim) == by_batch
    sim = sliced_sim()
    for _ in range(pages):  # each call scans at least one page
        if sim.ksm.ksm_pages_scanned >= pages:
            break
        sim.step_pages(min(10, pages - sim.ksm.ksm_pages_scanned))
    assert state(sim) == by_batch
