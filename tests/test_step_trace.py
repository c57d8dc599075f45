"""A single step's trace: the deciding functions of cmp_and_merge_page() in the flow's order,
and a traced run that is the same run as an untraced one."""

from __future__ import annotations

from engine.scenario import load_scenario
from engine.sim import Simulation


def stepped(flow: str, n: int) -> Simulation:
    sim = Simulation(load_scenario("default"), flow=flow)
    sim.step_pages(2000)
    for _ in range(n):
        sim.step_page()
    return sim


def test_each_flow_traces_its_own_order():
    legacy_sim, optimized_sim = stepped("legacy", 0), stepped("optimized", 0)
    for _ in range(2000):  # to the first page both flows insert into a non-empty unstable tree
        legacy, optimized = legacy_sim.step_page(), optimized_sim.step_page()
        assert (legacy.process, legacy.address) == (optimized.process, optimized.address)
        if legacy.outcome == optimized.outcome == "unstable_inserted" and optimized.trace[-1][2] > 0:
            break
    else:
        raise AssertionError("no page inserted into a non-empty unstable tree by both flows in 2000 steps")
    assert [t[0] for t in legacy.trace][:2] == ["stable_tree_search", "calc_checksum"]  # before 6.11
    assert [t[0] for t in optimized.trace][:3] == ["calc_checksum", "try_to_merge_with_zero_page", "stable_tree_search"]
    assert optimized.trace[-1][0] == "unstable_tree_search_insert" and optimized.trace[-1][2] > 0  # memcmp_pages


def test_a_traced_step_is_the_same_run_and_leaves_no_tracing_behind():
    traced = stepped("optimized", 50)
    plain = Simulation(load_scenario("default"), flow="optimized")
    plain.step_pages(2050)
    assert traced.snapshot(tree_limit=0).counters == plain.snapshot(tree_limit=0).counters
    assert traced.ksm.work_by_path == plain.ksm.work_by_path
    assert "calc_checksum" not in vars(traced.ksm)  # the methods are the class's again
