"""No data lost, counters always equal to the structures: random operation sequences in every flow."""

from hypothesis import given
from hypothesis import strategies as st

from engine.check import check_invariants
from engine.knobs import KnobError
from tests.engine_helpers import proc, region, sim_of

POOL = [bytes([b]) * 4096 for b in (1, 2, 3)] + [bytes(4096)]

knob_values = st.sampled_from([
    ("use_zero_pages", 0), ("use_zero_pages", 1), ("max_page_sharing", 2), ("max_page_sharing", 3),
    ("max_page_sharing", 256), ("merge_across_nodes", 0), ("merge_across_nodes", 1), ("smart_scan", 0),
    ("smart_scan", 1), ("run", 0), ("run", 1), ("run", 2), ("flow", "legacy"), ("flow", "optimized"),
    ("flow", "series-v1"), ("stable_node_chains_prune_millisecs", 0), ("pages_to_scan", 3),
    ("pages_to_scan", 0),
])

ops = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 9), st.integers(0, 1), st.integers(0, 15), st.integers(0, 4)),
    st.tuples(st.just("fork"), st.integers(0, 9)),
    st.tuples(st.just("exit"), st.integers(0, 9)),
    st.tuples(st.just("madvise"), st.integers(0, 9), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("prctl"), st.integers(0, 9), st.booleans()),
    st.tuples(st.just("set"), knob_values),
    st.tuples(st.just("migrate"), st.integers(0, 9), st.integers(0, 1), st.integers(0, 15), st.integers(0, 1)),
    st.tuples(st.just("pages"), st.integers(1, 40)),
    st.tuples(st.just("batch")),
)


def apply(sim, op, fresh, pool=POOL):
    machine = sim.machine
    alive = [mm for mm in machine.mms if mm.alive]
    kind = op[0]
    if kind == "pages":
        for _ in range(op[1]):
            sim.step_page()
        return
    if kind == "batch":
        sim.step_batch()
        return
    if kind == "set":
        try:
            sim.set_knob(*op[1])
        except KnobError:
            pass  # EBUSY: the kernel refuses too
        return
    if not alive:
        return
    mm = alive[op[1] % len(alive)]
    if kind == "write":
        data = next(fresh) if op[4] == 4 else pool[op[4]]
        vma = mm.vmas[op[2]]
        machine.write(vma, op[3] % len(vma.pte), data)
    elif kind == "fork":
        machine.fork(mm, f"{mm.name}.{len(machine.mms)}")
    elif kind == "exit" and len(alive) > 1:
        machine.exit(mm)
    elif kind == "madvise":
        machine.madvise(mm.vmas[op[2]], op[3])
    elif kind == "prctl":
        machine.prctl_set_memory_merge(mm, op[2])
    elif kind == "migrate":
        vma = mm.vmas[op[2]]
        machine.migrate(vma, [op[3] % len(vma.pte)], op[4])


# How ksmd starts: scanning, with nothing to scan per wake-up, or not running at all (the runs that
# once hung: a wake-up that scans nothing must still move the clock on).
starts = st.sampled_from([{"pages_to_scan": 7}, {"pages_to_scan": 0}, {"pages_to_scan": 7, "run": 0}])


@given(flow=st.sampled_from(["optimized", "legacy", "series-v1"]), start=starts, program=st.lists(ops, max_size=60))
def test_no_data_lost_and_counters_match_structures(flow, start, program):
    sim = sim_of(
        proc("a", region("x", 8, "pool", pool="p", order="shuffled"), region("y", 8, "byte", byte=2), node=0),
        proc("b", region("x", 8, "pool", pool="p"), region("y", 8, "zero"), node=1),
        proc("c", region("x", 8, "byte", byte=1), region("y", 8, "random", mergeable=False), merge_any=True),
        pools=[("p", 3)], numa_nodes=2, flow=flow, ksm={**start, "max_page_sharing": 3},
    )
    fresh = (bytes([7, n % 256, n // 256]) * 1365 + b"f" for n in range(10**6))
    for op in program:
        apply(sim, op, fresh)
        check_invariants(sim)
        assert sim.data_check()[1] == 0
    # whatever happened, a run to a stop ends (at it, or with the note when ksmd can make no
    # progress), ksmd settles and run=2 gives everything back
    before_ns = sim.now_ns
    reason = sim.run(full_scans=sim.full_scans + 2)
    assert reason.startswith(("full_scans reached", "no progress possible")), reason
    assert sim.now_ns > before_ns or reason.startswith("no progress possible")
    check_invariants(sim)
    for _ in range(4):
        sim.step_full_scan()
        check_invariants(sim)
    sim.set_knob("run", 2)
    check_invariants(sim)
    assert sim.data_check()[1] == 0
    c = sim.ksm.counters()
    assert (c["pages_shared"], c["pages_sharing"], c["ksm_zero_pages"]) == (0, 0, 0)


# 64-byte pages: a THP is 8 of them (PTRS_PER_PTE = 64 / 8), so small regions hold several
SMALL_PAGE = 64
THP_POOL = [bytes([b]) * SMALL_PAGE for b in (1, 2, 3)] + [bytes(SMALL_PAGE)]


@given(flow=st.sampled_from(["optimized", "legacy"]), uzp=st.integers(0, 1), program=st.lists(ops, max_size=60))
def test_no_data_lost_with_thp_regions(flow, uzp, program):
    """Huge pages split under ksmd, their zero-filled subpages sent to the zero page, written,
    forked, migrated, unmerged: every page still reads back what was last written there."""
    sim = sim_of(
        proc("a", region("x", 16, "pool", pool="p", order="shuffled", thp=True), region("y", 16, "zero", thp=0.5)),
        proc("b", region("x", 16, "pool", pool="p", thp=True), region("y", 20, "byte", byte=2, thp=True)),
        proc("c", region("x", 9, "zero", thp=True), region("y", 8, "random")),
        pools=[("p", 3)], numa_nodes=2, flow=flow, page_size=SMALL_PAGE,
        ksm={"pages_to_scan": 7, "max_page_sharing": 3, "use_zero_pages": uzp, "smart_scan": 0},
    )
    assert sim.machine.hpage_pmd_nr == 8 and len(sim.machine.folios) == 2 + 1 + 2 + 2 + 1
    fresh = (bytes([7, n % 256, n // 256]) * 21 + b"f" for n in range(10**6))
    for op in program:
        apply(sim, op, fresh, THP_POOL)
        check_invariants(sim)
        assert sim.data_check()[1] == 0
    for _ in range(4):
        sim.step_full_scan()
        check_invariants(sim)
        assert sim.data_check()[1] == 0
    sim.set_knob("run", 2)
    check_invariants(sim)
    assert sim.data_check()[1] == 0
