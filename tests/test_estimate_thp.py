"""The estimate on THP-backed memory (docs/thp.md): which huge pages merging splits, and what the
split leaves, against what 6.18's ksmd settled to in tests/thp_lab.py's cases.

The table below is the settled state thp_lab measured (docs/thp-experiments.md, khugepaged kept
away, every run the same); test_thp_lab_cases_on_the_kernel measures it again for each case,
capturing the live processes first, and holds the estimate of that capture to it.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import thp_lab

from engine import capture as fmt
from engine.estimate import estimate
from engine.knobs import KSM_KNOBS

# case -> use_zero_pages -> (pages_shared, pages_sharing, ksm_zero_pages, general_profit,
#   thp_split_page, per process (ksm_rmap_items, ksm_merging_pages, ksm_zero_pages, huge pages kept))
SETTLED = {
    "all-match": {u: (512, 512, 0, 2031616, 2, [(512, 512, 0, 0)] * 2) for u in (0, 1)},
    "stable-match": {u: (512, 1024, 0, 4096000, 3, [(512, 512, 0, 0)] * 3) for u in (0, 1)},
    "one-match-zero-rest": {u: (1, 1, 0, 3968, 2, [(1, 1, 0, 0)] * 2) for u in (0, 1)},
    "no-match": {u: (0, 0, 0, -65536, 0, [(512, 0, 0, 1)] * 2) for u in (0, 1)},
    "all-zero": {u: (0, 0, 0, 0, 2, [(0, 0, 0, 0)] * 2) for u in (0, 1)},
    "unique-zero-rest": {u: (0, 0, 0, -32832, 1, [(1, 0, 0, 0), (512, 0, 0, 1)]) for u in (0, 1)},
    "twins-inside": {u: (1, 1, 0, -61440, 1, [(512, 2, 0, 0), (512, 0, 0, 1)]) for u in (0, 1)},
    "one-zero-each": {0: (0, 0, 0, -65472, 1, [(512, 0, 0, 1), (511, 0, 0, 0)]),
                      1: (0, 0, 0, -65408, 2, [(511, 0, 0, 0)] * 2)},
    "zero-small-then-thp": {0: (4, 1020, 0, 4112384, 1, [(512, 512, 0, 0)] * 2 + [(0, 0, 0, 0)]),
                            1: (0, 0, 1024, 4194304, 1, [(0, 0, 512, 0)] * 2 + [(0, 0, 0, 0)])},
    "zero-ksm-then-thp": {0: (1, 127, 0, 512000, 1, [(64, 64, 0, 0)] * 2 + [(0, 0, 0, 0)]),
                          1: (0, 0, 128, 524288, 1, [(0, 0, 64, 0)] * 2 + [(0, 0, 0, 0)])},
    "one-match-unique-rest": {u: (1, 1, 0, -61440, 2, [(512, 1, 0, 0)] * 2) for u in (0, 1)},
}
CASES = [(name, u) for name in SETTLED for u in (0, 1)]


def _knobs(**ksm) -> dict:
    return {**{k: v.default for k, v in KSM_KNOBS.items()}, **ksm}


def case_capture(name: str) -> fmt.Capture:
    """thp_lab's case as a capture: one VMA a process, its THPs one folio each (the processes thp_lab
    runs with small pages: no folio), a content id per distinct string, zero-filled pages 0, ""
    absent."""
    contents: dict[str, int] = {}
    procs = []
    folio = 0
    for pid, (p, thps) in enumerate(thp_lab.CASES[name].items(), start=1):
        ids, folios = [], []
        for thp in thps:
            present = [c for c in thp if c != ""]
            ids += [0 if c is None else contents.setdefault(c, len(contents) + 1) for c in present]
            huge = p not in thp_lab.SMALL.get(name, ())
            folios += [folio if huge else -1] * len(present)
            folio += huge
        procs.append((pid, p, [(fmt.MERGEABLE, ids, [-1] * len(ids), folios)]))
    return fmt.from_contents(procs)


def settled_of(est, cap: fmt.Capture) -> tuple:
    per = []
    for pid in cap.proc_pid.tolist():
        p = est.processes[pid]
        kept = p["thp"]["huge_pages"] - p["thp"]["split"] if "thp" in p else 0
        per.append((p["ksm_rmap_items"], p["ksm_merging_pages"], p["ksm_zero_pages"], kept))
    k = est.ksm
    return (k["pages_shared"], k["pages_sharing"], k["ksm_zero_pages"], k["general_profit"],
            est.thp["thp_split_page"] if est.thp else 0, per)


@pytest.mark.parametrize("name,use_zero_pages", CASES)
def test_thp_lab_cases(name, use_zero_pages):
    cap = case_capture(name)
    est = estimate(cap, _knobs(use_zero_pages=use_zero_pages))
    assert settled_of(est, cap) == SETTLED[name][use_zero_pages]


def test_split_zero_subpages_are_freed_and_counted_apart():
    cap = case_capture("one-match-zero-rest")
    est = estimate(cap, _knobs(use_zero_pages=0))
    assert est.thp == {"huge_pages": 2, "split": 2, "thp_split_page": 2, "split_zero_pages": 1022}
    assert est.processes[1]["thp"] == {"huge_pages": 1, "split": 1, "thp_split_page": 1, "split_zero_pages": 511}
    assert est.ksm["full_scans"] == 3
    assert any("khugepaged" in n for n in est.notes)
    assert json.dumps(est.as_json())  # the --json output holds it


def test_without_thp_information_every_page_is_small():
    """An old capture (no page_folio): the estimate is what it always was, and says nothing of THP."""
    cap = case_capture("one-match-zero-rest")
    cap.page_folio[:] = -1
    est = estimate(cap, _knobs(use_zero_pages=0))
    assert est.thp is None and "thp" not in est.processes[1]
    # shared 0, and the zeros (4 KSM pages at 256)
    assert (est.ksm["pages_shared"], est.ksm["pages_sharing"]) == (5, 1019)


def test_one_zero_folios_split_all_but_the_first_unless_a_small_zero_page_exists():
    # three folios of 4 pages, one zero subpage each, nothing else shared; use_zero_pages=0
    procs = [(1, "a", [(fmt.MERGEABLE, [0, 1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9], [-1] * 12, [0] * 4 + [1] * 4 + [2] * 4)])]
    est = estimate(fmt.from_contents(procs), _knobs(use_zero_pages=0))
    assert (est.thp["split"], est.thp["split_zero_pages"]) == (2, 2)
    assert est.processes[1]["ksm_rmap_items"] == 10  # the first folio's zero subpage keeps its rmap_item
    small = procs[0][2] + [(fmt.MERGEABLE, [0], [-1], [-1])]
    est = estimate(fmt.from_contents([(1, "a", small)]), _knobs(use_zero_pages=0))
    assert (est.thp["split"], est.ksm["pages_shared"], est.processes[1]["ksm_rmap_items"]) == (3, 0, 10)


# --------------------------------------------------------------------- on the real kernel --

def _settle(scans: int = 6, timeout: float = 30) -> None:
    from ksmtui.host import sysfs

    sysfs.ksm_write("run", 1)
    deadline = time.monotonic() + timeout
    while int(sysfs.ksm_read("full_scans")) < scans:
        assert time.monotonic() < deadline, f"ksmd did not complete {scans} full scans in {timeout:.0f} s"
        time.sleep(0.01)
    sysfs.ksm_write("run", 0)


@pytest.mark.kernel
@pytest.mark.parametrize("name,use_zero_pages", CASES)
def test_thp_lab_cases_on_the_kernel(kernel, name, use_zero_pages):
    """Live processes with THPs (khugepaged kept away: MADV_NOHUGEPAGE once they are in), captured,
    estimated, then settled by the real ksmd: the estimate of the capture is what ksmd settles to,
    and the capture saw the THPs as they were."""
    from ksmtui.host import sysfs
    from ksmtui.host.procmem import capture

    if "[never]" in thp_lab.Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text():
        pytest.skip("THP is never on this host")
    children = [thp_lab.Child(p, thps, p not in thp_lab.SMALL.get(name, ()), True)
                for p, thps in thp_lab.CASES[name].items()]
    knobs = {"pages_to_scan": 1 << 20, "sleep_millisecs": 10, "smart_scan": 0, "use_zero_pages": use_zero_pages}
    try:
        for c in children:
            c.start()  # one after the other: ksmd scans them in this order, as the capture lists them
        cap, notes = capture([c.proc.pid for c in children], explicit=True, show_progress=False, key=b"k" * 32)
        huge = sum(1 for c in children if c.huge)
        assert len(cap.folio_pages) == huge, "the capture sees each THP as one folio"
        est = estimate(cap, _knobs(**knobs))
        for knob, value in knobs.items():
            sysfs.ksm_write(knob, value)
        _settle()
        real = sysfs.read_counters()
        per = [(s["ksm_rmap_items"], s["ksm_merging_pages"], s["ksm_zero_pages"], s["AnonHugePages"] // 2048)
               for s in (c.state() for c in children)]
    finally:
        for c in children:
            if c.proc.poll() is None:
                c.stop()
    expected = settled_of(est, cap)
    assert (real["pages_shared"], real["pages_sharing"], real["ksm_zero_pages"], real["general_profit"]) == expected[:4]
    assert per == expected[5]
    assert expected == SETTLED[name][use_zero_pages]


def test_case_capture_matches_thp_lab():
    """case_capture follows thp_lab's cases (a guard: a case changed there changes the table here)."""
    assert set(thp_lab.CASES) == set(SETTLED)
    cap = case_capture("zero-ksm-then-thp")
    assert len(cap.folio_pages) == 1 and np.count_nonzero(cap.page_folio == -1) == 128
