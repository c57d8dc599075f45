"""The state the hot paths keep instead of recomputing it, checked against a recount: jitter
factors made in blocks, pool pages drawn in blocks, mapped-page counts, page prefixes, the VMA
an rmap_item caches, and ksmd's page loop giving the same run however it is sliced."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.contents import _stream_seed, pool_pages
from engine.cost import JITTER_BLOCK, CostModel
from engine.machine import NO_PFN
from tests.engine_helpers import proc, region, sim_of
from tests.test_engine_properties import apply, ops


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


def check_kept_state(sim) -> None:
    machine = sim.machine
    for mm in machine.mms:
        mapped = sum(len(v.pte) - v.pte.count(NO_PFN) for v in mm.vmas)
        assert mm.mapped_pages == mapped, f"{mm.name}: mapped_pages {mm.mapped_pages} != {mapped}"
        for vma in mm.vmas:
            for pfn in vma.pte:
                if pfn > 0:
                    data = machine.content[pfn]
                    assert machine.frame_prefix[pfn] == int.from_bytes(data[:8], "big"), f"frame {pfn}"
    for slot in sim.ksm.registered_slots():
        item = slot.rmap_list
        while item is not None:
            if slot.mm.alive:
                assert item.vma in slot.mm.vmas and item.vma.vm_start <= item.address < item.vma.vm_end
            item = item.rmap_list


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=st.sampled_from(["optimized", "legacy"]), program=st.lists(ops, max_size=40))
def test_kept_state_matches_a_recount(flow, program):
    sim = sim_of(
        proc("a", region("x", 8, "pool", pool="p", order="shuffled"), region("y", 8, "byte", byte=2), node=0),
        proc("b", region("x", 8, "pool", pool="p"), region("y", 8, "zero"), node=1),
        proc("c", region("x", 8, "byte", byte=1), region("y", 8, "random", mergeable=False), merge_any=True),
        pools=[("p", 3)], numa_nodes=2, flow=flow, ksm={"pages_to_scan": 7, "max_page_sharing": 3},
    )
    fresh = (bytes([7, n % 256, n // 256]) * 1365 + b"f" for n in range(10**6))
    for op in program:
        apply(sim, op, fresh)
        check_kept_state(sim)
    sim.step_full_scan()
    check_kept_state(sim)


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
    while sim.full_scans < 6:  # to a wake-up that ended on pages_to_scan, not on a pass end
        before = sim.ksm.ksm_pages_scanned
        sim.step_batch()
        full = sim.ksm.ksm_pages_scanned - before == 23
    while not full:
        before = sim.ksm.ksm_pages_scanned
        sim.step_batch()
        full = sim.ksm.ksm_pages_scanned - before == 23
    pages, by_batch = sim.ksm.ksm_pages_scanned, state(sim)

    sim = sliced_sim()
    for _ in range(pages):
        sim.step_page()
    assert state(sim) == by_batch
    sim = sliced_sim()
    while sim.ksm.ksm_pages_scanned < pages:
        sim.step_pages(min(10, pages - sim.ksm.ksm_pages_scanned))
    assert state(sim) == by_batch
