"""The worked traces of docs/model.md, verified live on 6.18, and the kernel's rules."""

import pytest

from engine.knobs import KnobError
from engine.sim import Simulation
from tests.engine_helpers import pick, proc, region, scans, sim_of

FLOWS = ("optimized", "legacy", "series-v1")


@pytest.mark.parametrize("flow", FLOWS)
def test_t1_ten_identical_pages_merge_on_the_second_pass(flow):
    sim = sim_of(proc("p", region("a", 10, "byte", byte=42)), flow=flow)
    c = scans(sim)
    assert pick(c, "pages_shared", "pages_sharing", "pages_volatile", "general_profit") == {
        "pages_shared": 0, "pages_sharing": 0, "pages_volatile": 10, "general_profit": -640}
    c = scans(sim)
    assert pick(c, "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "general_profit") == {
        "pages_shared": 1, "pages_sharing": 9, "pages_unshared": 0, "pages_volatile": 0,
        "general_profit": 9 * 4096 - 640}
    p = sim.process_stats()[0]
    assert (p.ksm_merging_pages, p.ksm_rmap_items, p.ksm_process_profit) == (10, 10, 40320)
    before = c["pages_scanned"]
    assert scans(sim)["pages_scanned"] == before + 10


def test_t2_new_copies_of_a_ksm_page_wait_one_pass_for_a_stable_checksum():
    from engine.scenario import Fill

    # smart_scan off: these pages were unique for three passes, and aging would skip the fourth
    sim = sim_of(proc("p", region("a", 10, "byte", byte=42), region("b", 10, "random")),
                 ksm={"smart_scan": 0},
                 events=[dict(action="write", at_full_scans=3, region="b", fill=Fill("byte", byte=42))])
    scans(sim, 3)
    c = scans(sim)
    assert pick(c, "pages_sharing", "pages_volatile") == {"pages_sharing": 9, "pages_volatile": 10}
    assert scans(sim)["pages_sharing"] == 19


def test_t2_legacy_merges_new_copies_on_their_first_visit_without_a_checksum():
    from engine.scenario import Fill

    sim = sim_of(proc("p", region("a", 10, "byte", byte=42), region("b", 10, "random")), flow="legacy",
                 ksm={"smart_scan": 0},
                 events=[dict(action="write", at_full_scans=3, region="b", fill=Fill("byte", byte=42))])
    scans(sim, 3)
    assert scans(sim)["pages_sharing"] == 19
    slot = sim.machine.mms[0].ksm_slot
    items, item = [], slot.rmap_list
    while item:
        items.append(item)
        item = item.rmap_list
    from engine.ksm import calc_checksum

    # the stable tree was searched before any checksum: the old one is still recorded
    assert all(i.oldchecksum != calc_checksum(bytes([42]) * 4096) for i in items[10:])


@pytest.mark.parametrize("flow", FLOWS)
def test_t3_cow_of_a_merged_page_is_accounted_lazily(flow):
    sim = sim_of(proc("p", region("a", 20, "byte", byte=42)), flow=flow)
    scans(sim, 2)
    vma = sim.machine.mms[0].vmas[0]
    sim.machine.write(vma, 5, b"x" * 4096)
    c = sim.ksm.counters()
    assert c["pages_sharing"] == 19 and sim.process_stats()[0].ksm_merging_pages == 20
    c = scans(sim)
    assert pick(c, "pages_sharing", "pages_volatile") == {"pages_sharing": 18, "pages_volatile": 1}
    assert sim.process_stats()[0].ksm_merging_pages == 19
    assert scans(sim)["pages_unshared"] == 1
    assert sim.data_check() == (20, 0)


@pytest.mark.parametrize("flow", FLOWS)
def test_t4_zero_pages_with_use_zero_pages_map_the_zero_page_and_free_their_items(flow):
    sim = sim_of(proc("p", region("a", 10, "zero")), ksm={"use_zero_pages": 1}, flow=flow)
    scans(sim)
    c = scans(sim)
    assert pick(c, "ksm_zero_pages", "pages_volatile", "general_profit") == {
        "ksm_zero_pages": 10, "pages_volatile": 10, "general_profit": 40320}
    scanned = c["pages_scanned"]
    c = scans(sim)
    assert pick(c, "ksm_zero_pages", "pages_volatile", "general_profit") == {
        "ksm_zero_pages": 10, "pages_volatile": 0, "general_profit": 40960}
    assert c["pages_scanned"] == scanned and sim.ksm.ksm_rmap_items == 0
    sim.machine.write(sim.machine.mms[0].vmas[0], 0, b"y" * 4096)
    assert sim.ksm.counters()["ksm_zero_pages"] == 9  # eagerly
    assert sim.process_stats()[0].ksm_zero_pages == 9


def test_zero_pages_without_use_zero_pages_merge_into_one_ksm_page():
    sim = sim_of(proc("p", region("a", 10, "zero")))
    c = scans(sim, 2)
    assert pick(c, "pages_shared", "pages_sharing", "ksm_zero_pages") == {
        "pages_shared": 1, "pages_sharing": 9, "ksm_zero_pages": 0}


@pytest.mark.parametrize("flow", FLOWS)
def test_t5_max_page_sharing_three_leaves_the_odd_page_unshared(flow):
    sim = sim_of(proc("p", region("a", 10, "byte", byte=42)), ksm={"max_page_sharing": 3}, flow=flow)
    c = scans(sim, 2)
    assert pick(c, "pages_shared", "pages_sharing", "pages_unshared", "stable_node_chains", "stable_node_dups") == {
        "pages_shared": 3, "pages_sharing": 6, "pages_unshared": 1, "stable_node_chains": 1,
        "stable_node_dups": 3}
    assert sim.process_stats()[0].ksm_merging_pages == 9


@pytest.mark.parametrize("n", range(1, 14))
@pytest.mark.parametrize("m", (2, 3, 5))
def test_selftest_assert_ksm_pages_count_formula(n, m):
    sim = sim_of(proc("p", region("a", n, "byte", byte=7)), ksm={"max_page_sharing": m})
    c = scans(sim, 2)
    if n % m in (0, 1):
        expect = (n // m, (n // m) * (m - 1))
    else:
        expect = (n // m + 1, n - (n // m + 1))
    assert (c["pages_shared"], c["pages_sharing"]) == expect


def _t6(flow):
    sim = sim_of(proc("p", region("a", 6, "byte", byte=42)), ksm={"max_page_sharing": 3}, flow=flow)
    c = scans(sim, 2)
    assert pick(c, "pages_shared", "pages_sharing", "stable_node_chains", "stable_node_dups") == {
        "pages_shared": 2, "pages_sharing": 4, "stable_node_chains": 1, "stable_node_dups": 2}
    vma = sim.machine.mms[0].vmas[0]
    for i in range(3):  # the three pages of the first KSM copy
        sim.machine.write(vma, i, bytes([42]) * 4095 + bytes([i]))
    c = scans(sim)
    assert pick(c, "pages_shared", "pages_sharing", "stable_node_chains", "stable_node_dups", "pages_volatile") == {
        "pages_shared": 1, "pages_sharing": 2, "stable_node_chains": 1, "stable_node_dups": 1,
        "pages_volatile": 3}
    return sim, scans(sim)


def test_t6_optimized_collapses_a_chain_left_with_one_full_dup():
    sim, c = _t6("optimized")
    assert pick(c, "stable_node_chains", "stable_node_dups", "pages_unshared") == {
        "stable_node_chains": 0, "stable_node_dups": 0, "pages_unshared": 3}
    c = scans(sim)
    assert c["pages_skipped"] == 3 and c["pages_unshared"] == 0  # age 4: smart scan skips them


def test_t6_legacy_keeps_a_chain_whose_lone_dup_is_full():
    _, c = _t6("legacy")
    assert pick(c, "stable_node_chains", "stable_node_dups", "pages_unshared") == {
        "stable_node_chains": 1, "stable_node_dups": 1, "pages_unshared": 3}


def test_t7_smart_scan_schedule_for_pages_that_never_merge():
    sim = sim_of(proc("p", region("a", 20, "random")))
    scanned_at = []
    for k in range(25):
        before = sim.ksm.counters()
        after = scans(sim)
        if after["pages_scanned"] - before["pages_scanned"] == 20:
            scanned_at.append(k)
        else:
            assert after["pages_skipped"] - before["pages_skipped"] == 20
            assert after["pages_unshared"] == 0 and after["pages_volatile"] == 20
    assert scanned_at == [0, 1, 2, 3, 5, 8, 13, 22]


def test_smart_scan_off_visits_every_page_every_pass():
    sim = sim_of(proc("p", region("a", 20, "random")), ksm={"smart_scan": 0})
    assert scans(sim, 10)["pages_scanned"] == 200


def _t8(flow):
    from engine.scenario import Fill

    sim = sim_of(proc("p", region("a", 10, "zero"), region("b", 10, "random")), flow=flow,
                 events=[dict(action="set", at_full_scans=2, knob="use_zero_pages", value=1),
                         dict(action="write", at_full_scans=2, region="b", fill=Fill("zero"))])
    c = scans(sim, 2)
    assert pick(c, "pages_shared", "pages_sharing") == {"pages_shared": 1, "pages_sharing": 9}
    return sim


def test_t8_optimized_prefers_the_zero_page_to_an_all_zero_ksm_page():
    sim = _t8("optimized")
    assert scans(sim)["pages_volatile"] == 10
    c = scans(sim)
    assert pick(c, "ksm_zero_pages", "pages_sharing") == {"ksm_zero_pages": 10, "pages_sharing": 9}


def test_t8_legacy_merges_zero_pages_into_the_all_zero_ksm_page_first():
    sim = _t8("legacy")
    c = scans(sim, 2)
    assert pick(c, "ksm_zero_pages", "pages_sharing") == {"ksm_zero_pages": 0, "pages_sharing": 19}


def test_optimized_never_searches_the_stable_tree_for_fast_changing_pages():
    from engine.scenario import Fill

    for flow, searched in (("optimized", False), ("legacy", True)):
        sim = sim_of(proc("p", region("a", 50, "random")), flow=flow, ksm={"sleep_millisecs": 100},
                     events=[dict(action="write", at_ms=0, repeat_ms=50, region="a", fill=Fill("random"))])
        scans(sim, 5)
        assert sim.ksm.counters()["pages_shared"] == 0
        assert (sim.ksm.work_by_path["anon_page"]["stable_tree_search"] > 0) is searched
        assert sim.ksm.outcomes["anon_page"]["checksum_changed"] == sim.ksm.counters()["pages_scanned"]


@pytest.mark.parametrize("flow", FLOWS)
def test_ksm_pages_already_merged_compute_no_checksum(flow):
    sim = sim_of(proc("p", region("a", 100, "byte", byte=3)), flow=flow)
    scans(sim, 2)
    before = sim.ksm.work_by_path["anon_page"]["calc_checksum"]
    scans(sim, 3)
    assert sim.ksm.work_by_path["anon_page"]["calc_checksum"] == before
    assert sim.ksm.work_by_path["ksm_page"]["calc_checksum"] == 0
    assert sim.ksm.outcomes["ksm_page"]["already_merged"] == 300


@pytest.mark.parametrize("flow", FLOWS)
def test_duplicates_across_processes_merge(flow):
    sim = sim_of(proc("vm", region("os", 64, "pool", pool="img"), region("own", 32), count=4),
                 pools=[("img", 64)], flow=flow)
    c = scans(sim, 2)
    assert pick(c, "pages_shared", "pages_sharing", "pages_unshared") == {
        "pages_shared": 64, "pages_sharing": 192, "pages_unshared": 128}
    assert [p.ksm_merging_pages for p in sim.process_stats()] == [64] * 4


@pytest.mark.parametrize("flow", FLOWS)
def test_regions_that_are_not_mergeable_are_not_scanned_unless_merge_any(flow):
    sim = sim_of(proc("a", region("x", 10, "byte", byte=1, mergeable=False)),
                 proc("b", region("x", 10, "byte", byte=1, mergeable=False), merge_any=True), flow=flow)
    c = scans(sim, 2)
    assert pick(c, "pages_shared", "pages_sharing") == {"pages_shared": 1, "pages_sharing": 9}
    a, b = sim.process_stats()
    assert (a.ksm_rmap_items, a.ksm_mergeable, b.ksm_merge_any, b.ksm_mergeable) == (0, False, True, True)


@pytest.mark.parametrize("flow", FLOWS)
def test_fork_shares_ksm_pages_and_the_child_starts_its_counters_at_zero(flow):
    sim = sim_of(proc("parent", region("a", 10, "byte", byte=9)), flow=flow)
    scans(sim, 2)
    sim.machine.fork(sim.machine.mms[0], "child")
    child = [p for p in sim.process_stats() if p.name == "child"][0]
    assert (child.ksm_merging_pages, child.ksm_rmap_items) == (0, 0)
    c = scans(sim)
    assert pick(c, "pages_shared", "pages_sharing") == {"pages_shared": 1, "pages_sharing": 19}
    assert sim.ksm.outcomes["ksm_page"]["fork_appended"] == 10
    assert [p.ksm_merging_pages for p in sim.process_stats()] == [10, 10]


@pytest.mark.parametrize("flow", FLOWS)
def test_fork_then_cow_unshares_only_what_was_written(flow):
    from engine.scenario import Fill

    sim = sim_of(proc("parent", region("a", 20, "random")), flow=flow,
                 events=[dict(action="fork", at_full_scans=1, process="parent", child="child"),
                         dict(action="write", at_full_scans=2, process="child", region="a", pages=5,
                              fill=Fill("random"))])
    c = scans(sim, 6)
    # pages still shared by fork are the same physical page: the unstable walk never merges them
    # ("don't substitute a ksm page for a forked page") and does not insert the second mapping
    assert c["pages_shared"] == 0 and sim.data_check() == (40, 0)
    assert sim.ksm.outcomes["anon_page"]["unstable_aborted"] > 0


@pytest.mark.parametrize("flow", FLOWS)
def test_exit_frees_the_items_when_ksmd_comes_by(flow):
    sim = sim_of(proc("a", region("x", 10, "byte", byte=1)), proc("b", region("x", 10, "byte", byte=1)),
                 flow=flow, events=[dict(action="exit", at_full_scans=2, process="b")])
    assert scans(sim, 2)["pages_sharing"] == 19
    c = scans(sim)
    assert pick(c, "pages_shared", "pages_sharing") == {"pages_shared": 1, "pages_sharing": 9}
    assert sim.ksm.ksm_rmap_items == 10 and sim.machine.mms[1].ksm_slot is None


@pytest.mark.parametrize("flow", FLOWS)
def test_madvise_unmergeable_breaks_ksm_pages_at_once_and_counters_follow_lazily(flow):
    sim = sim_of(proc("p", region("a", 10, "byte", byte=5)), flow=flow)
    scans(sim, 2)
    vma = sim.machine.mms[0].vmas[0]
    sim.machine.madvise(vma, False)
    assert not any(sim.machine.is_ksm_page(p) for p in vma.pte)
    c = sim.ksm.counters()
    assert c["pages_sharing"] == 9  # not yet
    c = scans(sim)
    assert pick(c, "pages_shared", "pages_sharing", "pages_volatile") == {
        "pages_shared": 0, "pages_sharing": 0, "pages_volatile": 0}
    assert sim.ksm.ksm_rmap_items == 0 and sim.data_check() == (10, 0)


@pytest.mark.parametrize("flow", FLOWS)
def test_run_2_unmerges_everything_and_resets_full_scans(flow):
    sim = sim_of(proc("p", region("a", 10, "byte", byte=5), region("z", 5, "zero")), flow=flow,
                 ksm={"use_zero_pages": 1})
    scans(sim, 3)
    sim.set_knob("run", 2)
    c = sim.ksm.counters()
    assert pick(c, "pages_shared", "pages_sharing", "ksm_zero_pages", "full_scans") == {
        "pages_shared": 0, "pages_sharing": 0, "ksm_zero_pages": 0, "full_scans": 0}
    assert sim.ksm.ksm_rmap_items == 0 and sim.data_check() == (15, 0)
    assert sim.stuck  # run=2 stops ksmd
    sim.set_knob("run", 1)
    assert scans(sim, 2)["pages_sharing"] == 9


def test_max_page_sharing_and_merge_across_nodes_refuse_change_while_pages_are_shared():
    sim = sim_of(proc("p", region("a", 10, "byte", byte=5)))
    scans(sim, 2)
    with pytest.raises(KnobError, match="EBUSY"):
        sim.set_knob("max_page_sharing", 3)
    with pytest.raises(KnobError, match="EBUSY"):
        sim.set_knob("merge_across_nodes", 0)
    sim.set_knob("max_page_sharing", 256)  # the same value is fine
    sim.set_knob("run", 2)
    sim.set_knob("max_page_sharing", 3)
    sim.set_knob("run", 1)
    assert scans(sim, 2)["stable_node_dups"] == 3


def test_knob_values_out_of_range_are_einval():
    sim = sim_of(proc("p", region("a", 1)))
    for knob, value in (("max_page_sharing", 1), ("run", 3), ("use_zero_pages", 2), ("flow", "v2")):
        with pytest.raises(KnobError, match="expected"):
            sim.set_knob(knob, value)


def test_advisor_scan_time_sets_pages_to_scan_and_refuses_manual_changes():
    sim = sim_of(proc("p", region("a", 10)))
    sim.set_knob("advisor_mode", "scan-time")
    assert sim.ksm.knobs["pages_to_scan"] == 500
    with pytest.raises(KnobError, match="EINVAL"):
        sim.set_knob("pages_to_scan", 50)
    sim.set_knob("advisor_mode", "none")
    assert sim.ksm.knobs["pages_to_scan"] == 100


@pytest.mark.parametrize("scan_s,last_s,cpu_percent,expected,change", [
    # a pass of 400 s against a target of 200 s: pages = 1000 * 100 / factor 50 = 2000, capped at
    # advisor_max_cpu: per_page_cost 1000 / 40 = 25, 25 * 70 = 1750
    (400, 400, 40, 1750, 100),
    # the same pass after one of 200 s: change 400 * 100 / 200 = 200, averaged with the last 100 as
    # (70 * 100 + 30 * 200) / 100 = 130; pages = 2000 * 130 / 100 = 2600, under the cap 50 * 70
    (400, 200, 20, 2600, 130),
    # a pass of 100 s against 200 s: pages = 1000 * 100 / factor 200 = 500, just at the minimum CPU
    # (per_page_cost 1000 / 20 = 50, 50 * KSM_ADVISOR_MIN_CPU 10 = 500)
    (100, 100, 20, 500, 100),
])
def test_advisor_moves_pages_to_scan_toward_the_target_scan_time(scan_s, last_s, cpu_percent, expected, change):
    """scan_time_advisor at the end of a pass: the kernel's arithmetic, worked by hand."""
    sim = sim_of(proc("p", region("a", 4)), ksm={"advisor_mode": "scan-time", "advisor_target_scan_time": 200})
    ksm = sim.ksm
    ksm.knobs["pages_to_scan"] = 1000
    ksm.advisor_ctx = {"start_scan": 0, "scan_time": last_s, "change": 100, "cpu_time": 0}
    ksm.ksmd_cpu_ns = scan_s * 1_000_000_000 * cpu_percent // 100
    ksm.now_ns = scan_s * 1_000_000_000  # set last: the clock of a paced ksmd runs on with its CPU
    ksm.advisor_stop_scan()
    assert ksm.knobs["pages_to_scan"] == expected
    assert ksm.advisor_ctx == {"start_scan": 0, "scan_time": scan_s, "change": change, "cpu_time": ksm.ksmd_cpu_ns}


@pytest.mark.parametrize("flow", FLOWS)
def test_merge_across_nodes_zero_keeps_nodes_apart(flow):
    procs = (proc("a", region("x", 1, "byte", byte=42), node=0), proc("b", region("x", 1, "byte", byte=42), node=1))
    for across, expect in ((1, (1, 1)), (0, (0, 0))):
        sim = sim_of(*procs, flow=flow, numa_nodes=2, ksm={"merge_across_nodes": across})
        c = scans(sim, 3)
        assert (c["pages_shared"], c["pages_sharing"]) == expect


def _migrated_full_ksm_page(flow):
    sim = sim_of(proc("p", region("a", 3, "byte", byte=42), node=0), flow=flow, numa_nodes=2,
                 ksm={"merge_across_nodes": 0, "max_page_sharing": 3},
                 events=[dict(action="migrate", at_full_scans=2, region="a", to_node=1)])
    c = scans(sim, 2)
    assert (c["pages_shared"], c["pages_sharing"]) == (1, 2)
    return sim


def test_optimized_sends_a_full_migrated_ksm_page_to_the_unstable_tree():
    sim = _migrated_full_ksm_page("optimized")
    c = scans(sim)
    assert sim.ksm.outcomes["ksm_page"]["unstable_inserted"] == 1
    assert pick(c, "pages_shared", "pages_sharing", "pages_unshared") == {
        "pages_shared": 1, "pages_sharing": 1, "pages_unshared": 1}
    c = scans(sim)
    assert (c["pages_sharing"], c["pages_unshared"]) == (2, 0)
    assert sim.ksm.root_stable_tree[1].count == 1 and not sim.ksm.migrate_nodes


def test_series_v1_returns_the_migrated_ksm_page_itself():
    sim = _migrated_full_ksm_page("series-v1")
    c = scans(sim)
    assert sim.ksm.outcomes["ksm_page"]["migrated_returned"] == 1
    assert pick(c, "pages_shared", "pages_sharing", "pages_unshared") == {
        "pages_shared": 1, "pages_sharing": 2, "pages_unshared": 0}
    assert sim.ksm.root_stable_tree[1].count == 1


def test_same_seed_same_run():
    from engine.scenario import Fill
    from engine.sim import Simulation
    from tests.engine_helpers import scenario

    workload = scenario(proc("p", region("a", 200, "pool", pool="x", order="shuffled"), region("b", 100), count=3),
                        pools=[("x", 20)], events=[dict(action="write", at_ms=10, repeat_ms=40, region="b",
                                                        fraction=0.3, fill=Fill("random"))])

    def run(seed):
        sim = Simulation(workload, seed=seed)
        sim.run(full_scans=6)
        r = sim.result()
        return r["seed"], r["ksm"], r["latency_ns"], r["outcomes"]

    assert run(0) == run(0)
    assert run(0)[1:] != run(1)[1:]  # the seed does decide: the pool's order, the sampled writes


def test_a_wake_up_takes_its_work_plus_one_sleep():
    """The scan's time, then sleep_millisecs in jiffies (HZ 250: 5 ticks) from the tick the scan
    ended in, and one tick more (the timer wheel): every 24 ms while a scan takes under 4 ms."""
    sim = sim_of(proc("p", region("a", 1000, "random")), ksm={"pages_to_scan": 100, "sleep_millisecs": 20})
    sim.step_batch()
    cpu = sim.ksm.ksmd_cpu_ns
    assert sim.scan_end_ns == cpu < 4_000_000 and sim.now_ns == 24_000_000
    sim.step_batch()
    assert sim.scan_end_ns == 24_000_000 + sim.ksm.ksmd_cpu_ns - cpu and sim.now_ns == 48_000_000


def test_step_pages_is_bounded_and_crosses_wake_ups():
    sim = sim_of(proc("p", region("a", 50, "random")), ksm={"pages_to_scan": 7})
    assert sim.step_pages(20) == 20
    assert sim.ksm.counters()["pages_scanned"] == 20
    assert sim.last_step is None  # only step_page shows a single step


def test_check_stop_names_the_condition():
    sim = sim_of(proc("p", region("a", 5)))
    assert sim.check_stop(sim.stop_rule(full_scans=1)) is None
    assert sim.run(full_scans=1) == "full_scans reached 1" == sim.check_stop(sim.stop_rule(full_scans=1))
    assert sim.check_stop(sim.stop_rule(after_ms=1)).startswith("after_ms reached")


@pytest.mark.parametrize("flow,searched", [("legacy", 1), ("optimized", 0), ("series-v1", 0)])
def test_cmp_and_merge_page_runs_the_body_of_the_flows_kernel(flow, searched):
    """6.10 searches the stable tree before the checksum; 6.11 leaves a new (volatile) page at
    the checksum. Whatever the flow was at construction, the current one decides."""
    sim = sim_of(proc("p", region("a", 1)), flow="legacy" if flow != "legacy" else "optimized")
    sim.set_knob("flow", flow)
    pfn = next(sim.ksm.scan_get_next_rmap_item())
    item = sim.ksm.ksm_scan.rmap_list  # the page's rmap_item: the cursor is left on it
    assert sim.ksm.cmp_and_merge_page(pfn, item) == "checksum_changed"
    work = sim.ksm.work_by_path["anon_page"]
    assert (work["stable_tree_search"], work["calc_checksum"]) == (searched, 1)


def test_later_walks_free_a_chain_its_process_emptied_by_exiting():
    """Issue 10's case, the counts the kernel (6.18.44) gives: the walks of b's unique pages pass
    the zero-content chain a left behind and free it, in the red-black tree's shape."""
    from tests.test_kernel_parity import EMPTIED_CHAIN

    sim = Simulation(EMPTIED_CHAIN)
    sim.run()
    c = sim.ksm.counters()
    assert (c["stable_node_chains"], c["stable_node_dups"]) == (1, 5)
