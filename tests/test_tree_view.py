"""What the Trees tab is given: windows of the red-black trees with each entry's place, searches,
and the walks of a single step with what memcmp_pages() said at every level."""

from __future__ import annotations

from engine.ksm import RmapItem
from engine.sim import Simulation
from engine.tree import RB_RED, rb_first, rb_next
from tests.engine_helpers import proc, region, scenario, sim_of


def many_unique(pages=150, **ksm):
    return sim_of(proc("a", region("u", pages), region("x", 12, "byte", byte=7)),
                  ksm={"smart_scan": 0, **ksm})


def places(root):
    """(depth, side, red) of every entry in tree order, from the live tree."""
    out = []
    node = rb_first(root)
    while node is not None:
        depth, p = 0, node.rb_parent
        side = "" if p is None else "L" if p.rb_left is node else "R"
        while p is not None:
            depth, p = depth + 1, p.rb_parent
        out.append((depth, side, node.rb_color == RB_RED))
        node = rb_next(node)
    return out


def test_windows_page_through_the_tree_with_each_entrys_place():
    sim = many_unique()
    sim.step_full_scan()
    sim.step_full_scan()
    live = places(sim.ksm.root_unstable_tree[0])
    assert len(live) > 100
    first = sim.snapshot(tree_limit=100)
    second = sim.snapshot(tree_limit=100, unstable_offset=100)
    rows = first.unstable_tree + second.unstable_tree
    assert (first.unstable_offset, second.unstable_offset) == (0, 100)
    assert [(r.depth, r.side, r.red) for r in rows] == live
    assert sum(r.depth == 0 for r in rows) == 1  # one root, black
    assert not next(r for r in rows if r.depth == 0).red
    past = sim.snapshot(tree_limit=100, unstable_offset=10_000)  # past the end: the last page
    assert past.unstable_offset == 100 and past.unstable_tree == second.unstable_tree


def test_search_by_kpfn_and_by_process_address_in_both_trees():
    sim = many_unique()
    sim.step_full_scan()
    sim.step_full_scan()
    snap = sim.snapshot(tree_limit=100, unstable_offset=100)
    item = snap.unstable_tree[7]
    found = sim.tree_find("q", process=item.process, address=item.address)
    assert (found.tree, found.rank) == ("unstable", 107)
    assert sim.tree_find("q", kpfn=item.kpfn).rank == 107
    node = sim.snapshot().stable_tree[0]
    assert (sim.tree_find("k", kpfn=node.kpfn).tree, sim.tree_find("k", kpfn=node.kpfn).rank) == ("stable", 0)
    sharer = node.sharers[-1]
    assert sim.tree_find("r", process=sharer.process, address=sharer.address).tree == "stable"
    missing = sim.tree_find("nope", process="nobody", address=0)
    assert (missing.tree, missing.rank) == (None, -1) and missing.seq > found.seq


def test_a_single_steps_walks_follow_the_tree_level_by_level():
    sim = many_unique()
    sim.step_full_scan()
    sim.step_full_scan()
    sim.step_full_scan()  # the third pass rebuilds the unstable tree from empty
    walks, before = [], None
    for _ in range(60):
        root = sim.ksm.root_unstable_tree[0]
        # the tree as the walk saw it: the insertion after it may rotate it
        before = root.rb_node, {(i.mm.name, i.address): (i, i.rb_left, i.rb_right) for i in _items(root)}
        sim.step_page()
        walks = [w for w in sim.last_walk if w.walk == "unstable_tree_search_insert"]
        if len(walks) >= 4:
            break
    assert len(walks) >= 4
    assert [w.depth for w in walks] == list(range(len(walks)))
    assert all(w.ret in (-1, 1) for w in walks[:-1])
    node, links = before
    for step, nxt in zip(walks, walks[1:], strict=False):  # each level's answer names the next level's node
        here, left, right = links[(step.node.process, step.node.address)]
        assert node is here
        node = left if step.ret < 0 else right
        assert (node.mm.name, node.address) == (nxt.node.process, nxt.node.address)
    sim.step_pages(5)
    assert sim.last_walk == ()  # running on: the walks were the single step's


def test_a_walk_that_meets_a_stale_stable_node_prunes_it():
    s = scenario(proc("a", region("x", 6, "byte", byte=1), region("u", 40)),
                 proc("b", region("x", 6, "byte", byte=2), region("u", 40)),
                 ksm={"smart_scan": 0}, events=[{"action": "exit", "at_full_scans": 3, "process": "b"}])
    sim = Simulation(s)
    for _ in range(3):
        sim.step_full_scan()
    pruned = []
    for _ in range(200):
        sim.step_page()
        pruned = [w for w in sim.last_walk if w.walk == "pruned"]
        if pruned:
            break
    assert pruned and pruned[0].depth == -1 and pruned[0].ret is None
    assert sim.ksm.counters()["pages_shared"] == 1  # b's KSM page went with b


def test_tracing_a_step_changes_nothing_it_does():
    a, b = many_unique(), many_unique()
    for _ in range(400):
        a.step_page()
    b.step_pages(400)
    assert a.ksm.counters() == b.ksm.counters() and a.ksm.cost.total_ns == b.ksm.cost.total_ns


def _items(root):
    node = rb_first(root)
    while node is not None:
        assert isinstance(node, RmapItem)
        yield node
        node = rb_next(node)
