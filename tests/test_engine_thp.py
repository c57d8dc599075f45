"""Transparent huge pages in the model, held to what 6.18's ksmd was measured doing with them.

docs/thp-experiments.md has, for each case of tests/thp_lab.py (processes with one THP each and
known subpage contents, khugepaged kept away), the kernel's counters after every full scan: the
global ones, thp_split_page, and per process ksm_stat, AnonHugePages and what each subpage had
become. The model runs the same pages (fill = "file", byte for byte) and must show the same
numbers after every scan.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest

from engine.check import check_invariants
from engine.machine import SPLIT_ZERO_PFN, ZERO_PFN
from engine.scenario import Fill, Region, Scenario, Stop
from engine.sim import Simulation
from tests.engine_helpers import proc, region, scenario
from tests.thp_lab import CASES, PAGE, SMALL, SUBPAGES

DOC = Path(__file__).resolve().parent.parent / "docs" / "thp-experiments.md"
GLOBAL = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "ksm_zero_pages", "general_profit")


def measured() -> dict[tuple[str, int], list[dict]]:
    """(case, use_zero_pages) -> one row per full scan, from the khugepaged-kept-away section."""
    text = DOC.read_text().split("## khugepaged allowed")[0]
    out: dict[tuple[str, int], list[dict]] = {}
    for case, uzp, body in re.findall(r"^### (\S+), use_zero_pages=(\d)\n(.*?)(?=^### |\Z)", text, re.M | re.S):
        rows = []
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not line.startswith("| ") or not cells[0].lstrip("-").isdigit():
                continue
            procs = []
            for cell in cells[8:]:
                rmap, merging, zero, huge, kinds = (c.strip() for c in cell.split("/"))
                procs.append((int(rmap), int(merging), int(zero), int(huge),
                              # the model's region leaves out the pages a process never touched
                              {k: int(n) for n, k in (part.split() for part in kinds.split(", ")) if k != "absent"}))
            rows.append({"scan": int(cells[0]), "ksm": dict(zip(GLOBAL, map(int, cells[1:7]), strict=True)),
                         "split": int(cells[7]), "procs": procs})
        out[(case, int(uzp))] = rows
    return out


MEASURED = measured()


def page_bytes(text: str | None) -> bytes:
    if text is None:
        return bytes(PAGE)
    return (text.encode() * (PAGE // len(text) + 1))[:PAGE]


def lab_scenario(case: str, uzp: int, tmp: Path) -> Scenario:
    processes = []
    for name, thps in CASES[case].items():
        pages = [p for thp in thps for p in thp if p != ""]  # "": a small page left absent
        path = tmp / f"{case}-{name}.bin"
        path.write_bytes(b"".join(page_bytes(p) for p in pages))
        huge = name not in SMALL.get(case, ())
        processes.append(proc(name, Region("r", len(pages), True, Fill("file", path=path), 1.0 if huge else 0.0)))
    s = scenario(*processes, ksm={"pages_to_scan": 1 << 20, "smart_scan": 0, "use_zero_pages": uzp})
    return dataclasses.replace(s, stop=Stop(full_scans=5))


def kinds(sim: Simulation, mm) -> tuple[int, dict[str, int]]:
    """(AnonHugePages kB, what each page is) of the process's one region, as thp_lab.py reads them."""
    m = sim.machine
    vma = mm.vmas[0]
    out: Counter = Counter()
    huge = 0
    for pfn in vma.pte:
        if pfn in (ZERO_PFN, SPLIT_ZERO_PFN):
            out["zero"] += 1
        elif pfn in m.ksm_mapping:
            out["ksm"] += 1
        elif m.frame_folio[pfn]:
            head = m.folios[m.frame_folio[pfn]].pfns[0] == pfn
            out["thp-head" if head else "thp-tail"] += 1
            huge += head
        else:
            out["small"] += 1
    return huge * SUBPAGES * PAGE // 1024, dict(out)


@pytest.mark.parametrize("case,uzp", sorted(MEASURED))
def test_the_model_scans_thps_as_the_kernel_did(case, uzp, tmp_path):
    rows = MEASURED[(case, uzp)]
    sim = Simulation(lab_scenario(case, uzp, tmp_path))
    for row in rows:
        if row["scan"] > 0:
            sim.step_full_scan()
            check_invariants(sim)
        counters = sim.ksm.counters()
        got = {"ksm": {c: counters[c] for c in GLOBAL}, "split": sim.machine.thp_split_page,
               "procs": [(mm.ksm_rmap_items, mm.ksm_merging_pages, mm.ksm_zero_pages, *kinds(sim, mm))
                         for mm in sim.machine.mms]}
        want = {k: row[k] for k in ("ksm", "split", "procs")}
        assert got == want, f"{case}, use_zero_pages={uzp}, after scan {row['scan']}"
    assert sim.data_check()[1] == 0


def test_every_documented_case_is_checked():
    assert len(MEASURED) == 2 * len(CASES)


def test_thp_regions_start_pmd_aligned_and_non_thp_regions_do_not_move():
    s = scenario(proc("a", region("small", 3), region("huge", 1100, thp=0.5), region("after", 2)))
    sim = Simulation(s)
    small, huge, after = sim.machine.mms[0].vmas
    assert small.vm_start == 0x7F0000000000
    assert huge.vm_start % (2 << 20) == 0 and huge.vm_start > small.vm_end
    assert after.vm_start == huge.vm_end + PAGE
    # two whole extents in 1100 pages, half of them huge: the second
    assert [f.index for f in sim.machine.folios.values()] == [512]


def test_a_write_to_a_thp_subpage_keeps_it_huge_and_a_write_after_the_split_maps_a_new_page():
    s = scenario(proc("a", region("r", 512, "zero", thp=True)), proc("b", region("r", 512, "zero", thp=True)),
                 ksm={"use_zero_pages": 1},
                 events=[{"action": "write", "at_full_scans": 1, "process": "a", "region": "r", "pages": 1,
                          "fill": Fill("byte", byte=1)},
                         {"action": "write", "at_full_scans": 3, "process": "b", "region": "r", "pages": (5, 6),
                          "fill": Fill("byte", byte=2)}])
    sim = Simulation(dataclasses.replace(s, stop=Stop(full_scans=4)))
    sim.step_full_scan()
    sim._run_due_events()
    assert len(sim.machine.folios) == 2  # written in place: still huge
    sim.run()
    check_invariants(sim)
    assert sim.data_check() == (1024, 0)
    assert sim.machine.mms[1].vmas[0].pte[5] > 0  # wp_page_copy of the zero page
