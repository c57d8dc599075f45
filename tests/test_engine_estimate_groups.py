"""The estimate by group (engine.estimate's groups, salt and zero_only): hand-computed cases, and
properties on random captures (per-group sums equal the whole; the isolated estimate equals the
estimates of each group's processes alone, summed). The kernel holds the isolated estimate to a
real ksmd run in test_capture_kernel.py."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import capture as fmt
from engine.estimate import estimate
from engine.knobs import KSM_KNOBS

KNOBS = {k: v.default for k, v in KSM_KNOBS.items()}
PS = 4096

# two VMs of two processes each; content 0 is the zero page
PROCS = [
    (11, "a1", [1, 1, 2, 3, 0, 0]),
    (12, "a2", [2, 4]),
    (21, "b1", [1, 2, 5, 0]),
    (22, "b2", [5]),
]
VM = np.array([0, 0, 1, 1])


def _cap(procs=PROCS) -> fmt.Capture:
    return fmt.from_contents([(pid, comm, [(fmt.MERGEABLE, ids)]) for pid, comm, ids in procs])


def test_groups_by_hand():
    e = estimate(_cap(), KNOBS, groups=(["a", "b"], VM))
    # contents 1, 2, 0: three copies each (one KSM page, two sharing); 5: two copies
    assert (e.ksm["pages_shared"], e.ksm["pages_sharing"]) == (4, 7)
    a, b = e.groups["a"], e.groups["b"]
    assert a["processes"] == [11, 12] and b["processes"] == [21, 22]
    assert (a["ksm_rmap_items"], a["ksm_merging_pages"]) == (8, 6)
    assert (b["ksm_rmap_items"], b["ksm_merging_pages"]) == (5, 5)
    assert a["ksm_process_profit"] == 6 * PS - 8 * 64 and b["ksm_process_profit"] == 5 * PS - 5 * 64
    # KSM pages of 1, 2 and 0 are mapped by both VMs; 5's by b alone
    assert (a["ksm_pages"], b["ksm_pages"]) == (3, 4)
    assert a["shares_with"] == {"b": 3} and b["shares_with"] == {"a": 3}


def test_isolation_by_hand():
    free = estimate(_cap(), KNOBS)
    alone = estimate(_cap(), KNOBS, salt=VM)
    # a alone: 1, 2 and 0 twice each; b alone: 5 twice (1, 2 and 0 once)
    assert (alone.ksm["pages_shared"], alone.ksm["pages_sharing"]) == (4, 4)
    assert (free.saved_pages, alone.saved_pages) == (7, 4)
    assert alone.ksm["general_profit"] == 4 * PS - 13 * 64
    zp = {**KNOBS, "use_zero_pages": 1}
    # the zero page of use_zero_pages is everyone's: three zero pages merge either way
    assert estimate(_cap(), zp).saved_pages == 2 + 2 + 1 + 3
    salted = estimate(_cap(), zp, salt=VM).ksm
    assert (salted["pages_shared"], salted["pages_sharing"], salted["ksm_zero_pages"]) == (3, 3, 3)


def test_zero_pages_only_by_hand():
    # use_zero_pages: each of the three zero pages maps the zero page; every other page keeps its rmap_item
    z1 = estimate(_cap(), {**KNOBS, "use_zero_pages": 1}, zero_only=True)
    assert (z1.saved_pages, z1.ksm["pages_shared"], z1.rmap_items) == (3, 0, 10)
    assert z1.ksm["general_profit"] == 3 * PS - 10 * 64
    # without: the three zero pages become one KSM page, two mappers sharing it
    z0 = estimate(_cap(), KNOBS, zero_only=True)
    assert (z0.saved_pages, z0.ksm["pages_shared"], z0.rmap_items) == (2, 1, 13)


def _random_capture(draw_procs, groups_of):
    procs = [(100 + i, f"p{i}", ids) for i, ids in enumerate(draw_procs)]
    return _cap(procs), np.array(groups_of[:len(procs)])


procs_st = st.lists(st.lists(st.integers(0, 5), min_size=0, max_size=30), min_size=1, max_size=5)
groups_st = st.lists(st.integers(0, 2), min_size=5, max_size=5)


@settings(max_examples=60, deadline=None)
@given(procs=procs_st, of=groups_st, M=st.integers(2, 4), zero=st.integers(0, 1))
def test_group_sums_equal_the_whole(procs, of, M, zero):
    cap, group = _random_capture(procs, of)
    knobs = {**KNOBS, "max_page_sharing": M, "use_zero_pages": zero}
    names = [f"g{g}" for g in range(3)]
    e = estimate(cap, knobs, groups=(names, group))
    g = e.groups.values()
    assert sum(x["ksm_rmap_items"] for x in g) == e.rmap_items
    assert sum(x["ksm_zero_pages"] for x in g) == e.ksm["ksm_zero_pages"]
    assert sum(x["ksm_merging_pages"] for x in g) == e.ksm["pages_shared"] + e.ksm["pages_sharing"]
    assert sum(x["ksm_process_profit"] for x in g) == sum(p["ksm_process_profit"] for p in e.processes.values())
    assert sorted(pid for x in g for pid in x["processes"]) == sorted(cap.proc_pid.tolist())
    # grouped by process, the group matrix is the process matrix
    by_pid = estimate(cap, knobs, groups=([str(p) for p in cap.proc_pid.tolist()], np.arange(len(cap.proc_pid))))
    for pid, p in e.processes.items():
        x = by_pid.groups[str(pid)]
        assert x["ksm_pages"] == p["ksm_pages"]
        assert x["shares_with"] == {str(q): n for q, n in p["shares_with"].items()}
    # a group's KSM pages are at least any of its processes', and pairs are symmetric
    for name, x in e.groups.items():
        for other, n in x["shares_with"].items():
            assert e.groups[other]["shares_with"][name] == n <= min(x["ksm_pages"], e.groups[other]["ksm_pages"])


@settings(max_examples=60, deadline=None)
@given(procs=procs_st, of=groups_st, M=st.integers(2, 4), zero=st.integers(0, 1))
def test_isolated_is_each_group_alone_summed(procs, of, M, zero):
    cap, group = _random_capture(procs, of)
    knobs = {**KNOBS, "max_page_sharing": M, "use_zero_pages": zero}
    isolated = estimate(cap, knobs, salt=group)
    total = dict.fromkeys(("pages_shared", "pages_sharing", "ksm_zero_pages", "stable_node_chains",
                           "stable_node_dups", "general_profit"), 0)
    per_pid = {}
    for g in np.unique(group).tolist():
        members = [(pid, comm, ids) for (pid, comm, ids), k in zip(
            [(100 + i, f"p{i}", ids) for i, ids in enumerate(procs)], group.tolist(), strict=False) if k == g]
        alone = estimate(_cap(members), knobs)
        for k in total:
            total[k] += alone.ksm[k]
        per_pid.update(alone.processes)
    assert {k: isolated.ksm[k] for k in total} == total
    for pid, p in isolated.processes.items():
        assert {k: p[k] for k in ("ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages")} == \
            {k: per_pid[pid][k] for k in ("ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages")}
    # pages_sharing of n copies is n - ceil(n / M), and ceil is subadditive: isolation never saves more
    assert isolated.saved_pages <= estimate(cap, knobs).saved_pages
