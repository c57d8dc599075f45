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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import capture as fmt
from engine.estimate import estimate
from engine.knobs import KSM_KNOBS
from engine.scenario import ScenarioError, parse_scenario, process_name, scenario_from_capture, scenario_toml
from engine.sim import Simulation

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


# ------------------------------------------------------------- model = estimate, same capture --

SETTLED_KEYS = ("pages_shared", "pages_sharing", "ksm_zero_pages", "stable_node_chains", "stable_node_dups",
                "general_profit")
PER_PROCESS = ("ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit")
SETTLE_SCANS = 24  # chains of small max_page_sharing take a dozen scans to settle in the model


def model_and_estimate(cap: fmt.Capture, path, knobs: dict, full_scans: int = SETTLE_SCANS) -> tuple[dict, dict]:
    """(the model's settled result, the estimate's as the model names it) for the scenario the
    capture makes (`ksmtui capture --scenario`'s): sysfs counters, thp_split_page, THPs left
    whole (PMD-sized), and per process ksm_stat."""
    fmt.save(cap, path)
    sim = Simulation(scenario_from_capture(path), overrides={k: knobs[k] for k in KSM_KNOBS})
    sim.run(full_scans=full_scans)
    result = sim.result()
    est = estimate(cap, knobs)
    pmd = cap.folio_pages == cap.pmd_pages
    model = {"ksm": {k: result["ksm"][k] for k in SETTLED_KEYS},
             "thp": {k: result.get("thp", {}).get(k, 0) for k in ("thp_split_page", "anon_huge_pages")},
             "processes": {}}
    expected = {"ksm": {k: est.ksm[k] for k in SETTLED_KEYS},
                "thp": {"thp_split_page": est.thp["thp_split_page"] if est.thp else 0,
                        "anon_huge_pages": int(pmd.sum()) - (est.thp["thp_split_page"] if est.thp else 0)},
                "processes": {}}
    for pid, p in est.processes.items():
        name = process_name(p["comm"], pid)
        mine = result["processes"].get(name, dict.fromkeys(PER_PROCESS, 0))  # no region: nothing scanned
        model["processes"][name] = {k: mine[k] for k in PER_PROCESS}
        expected["processes"][name] = {k: p[k] for k in PER_PROCESS}
    return model, expected


@pytest.mark.parametrize("name,use_zero_pages", CASES)
def test_thp_lab_cases_model_and_estimate_agree(tmp_path, name, use_zero_pages):
    """The scenario a THP capture makes runs its THPs in the model (thp = "capture"), and the
    model settles to what the estimate of the same capture says, THP splits included."""
    cap = case_capture(name)
    model, expected = model_and_estimate(cap, tmp_path / "c.npz", _knobs(use_zero_pages=use_zero_pages,
                                                                         pages_to_scan=100_000))
    assert model == expected
    assert expected["ksm"]["general_profit"] == SETTLED[name][use_zero_pages][3]


def mixed_capture() -> fmt.Capture:
    """THPs and small pages side by side: absent pages before a THP (so it lies at no multiple of
    512 among the scanned pages), a THP of shared data, one of zeros and unique data, one that
    merges with small pages of another process, a THP with twin subpages, and small pages around."""
    nr, absent = 512, -1
    shared = list(range(1, nr + 1))  # 512 contents found in two processes
    unique = iter(range(10_000, 20_000))
    a = ([absent] * 3 + [7, 0, 0, 5] + [absent] * 2  # small pages and holes
         + shared  # THP 0: every subpage matches b's small pages
         + [0] * 300 + [next(unique) for _ in range(nr - 300)]  # THP 1: zeros and unique data
         + [next(unique) for _ in range(10)] + [0] * 4)
    b = ([next(unique) for _ in range(5)]
         + shared[:200]  # small pages: THP 0's first 200 subpages
         + [absent]
         + [3000, 3000] + [next(unique) for _ in range(nr - 2)]  # THP 2: two equal subpages
         + shared[200:] + [5, 7])
    c = [next(unique) for _ in range(nr)]  # THP 3: nothing in common (stays huge)
    folios_a = [-1] * 9 + [0] * nr + [1] * nr + [-1] * 14
    folios_b = [-1] * 206 + [2] * nr + [-1] * (len(shared) - 200 + 2)
    return fmt.from_contents([
        (11, "a", [(fmt.MERGEABLE, a, [-1] * len(a), folios_a)]),
        (12, "b", [(fmt.MERGEABLE, [5, 0], [-1, -1], [-1, -1]), (fmt.MERGEABLE, b, [-1] * len(b), folios_b)]),
        (13, "c", [(fmt.MERGEABLE, c, [-1] * nr, [3] * nr)]),
    ])


@pytest.mark.parametrize("use_zero_pages", [0, 1])
def test_mixed_thp_and_small_pages_model_and_estimate_agree(tmp_path, use_zero_pages):
    cap = mixed_capture()
    assert fmt.Capture.vma_folios(cap, 0) == [(4, 512), (516, 512)]  # after 4 scanned pages, not at 0 or 512
    model, expected = model_and_estimate(cap, tmp_path / "c.npz", _knobs(use_zero_pages=use_zero_pages,
                                                                         pages_to_scan=100_000))
    assert model == expected
    assert expected["thp"] == {"thp_split_page": 3, "anon_huge_pages": 1}


def test_ksmtui_run_of_a_thp_capture_settles_to_its_estimate(tmp_path, capsys):
    """The command line end to end: the scenario file a THP capture makes, run headless."""
    from ksmtui.cli import main as cli

    cap = mixed_capture()
    cap.meta["knobs"] = {"pages_to_scan": 100_000, "sleep_millisecs": 20, "max_page_sharing": 256,
                         "use_zero_pages": 0, "smart_scan": 1}
    fmt.save(cap, tmp_path / "m.npz")
    text = scenario_toml(cap, "m.npz", "mixed")
    assert text.count('thp = "capture"') == 3  # a's VMA, b's second one and c's; not b's first
    (tmp_path / "m.toml").write_text(text)
    assert cli(["run", str(tmp_path / "m.toml"), "--full-scans", "6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    est = estimate(cap, _knobs(**cap.meta["knobs"]))
    assert {k: out["ksm"][k] for k in SETTLED_KEYS} == {k: est.ksm[k] for k in SETTLED_KEYS}
    assert out["thp"]["thp_split_page"] == est.thp["thp_split_page"] == 3
    for pid, p in est.processes.items():
        assert {k: out["processes"][process_name(p["comm"], pid)][k] for k in PER_PROCESS} == \
            {k: p[k] for k in PER_PROCESS}


def test_thp_capture_regions_and_their_errors(tmp_path):
    """thp = "capture" is written only where the VMA had large folios, takes them from the capture,
    needs fill = "capture", and an old capture (no folios) makes the scenario it always made."""
    from ksmtui.kernel.run import unmappable_folio

    cap = mixed_capture()
    fmt.save(cap, tmp_path / "m.npz")
    s = scenario_from_capture(tmp_path / "m.npz")
    assert [r.folios for p in s.processes for r in p.regions] == [((4, 512), (516, 512)), (), ((205, 512),),
                                                                  ((0, 512),)]
    assert "captured large folio of 512 pages at page 4" in unmappable_folio(s)
    fmt.save(case_capture("all-match"), tmp_path / "a.npz")
    assert unmappable_folio(scenario_from_capture(tmp_path / "a.npz")) is None  # at 0: the runner maps it
    cap.page_folio[:] = -1
    assert 'thp = "capture"' not in scenario_toml(cap, "m.npz", "old")
    text = 'name = "t"\n[[process]]\nname = "a"\n[[process.region]]\nname = "r"\npages = 600\nthp = "capture"\n'
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.toml", tmp_path)
    assert str(info.value) == ('s.toml: process[0].region[0].thp: thp = "capture" takes the huge pages of a captured '
                               'VMA; expected fill = "capture", got fill = "random"')


# Random captures of small pages, holes and large folios (pages of 256 bytes: 32-page THPs, so
# that many fit in a quick run). max_page_sharing 256, the default: with a small one (2 or 3) the
# settled global counters still agree but which process holds a chain's leftover page can differ
# (the estimate ranks copies in scan order, while a THP's merges wait for its split), and rarely
# (1 capture in 200, use_zero_pages=0) a folio with one zero-filled subpage is split where the
# estimate says it stays (thp_splits' note: a split later in the same scan).
_segment = st.tuples(st.sampled_from(["small", "thp", "hole"]), st.integers(1, 10),
                     st.lists(st.sampled_from(["zero", "shared", "unique"]), min_size=1, max_size=3),
                     st.lists(st.integers(0, 5), min_size=32, max_size=32))


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(procs=st.lists(st.lists(st.lists(_segment, min_size=1, max_size=4), min_size=1, max_size=2),
                      min_size=1, max_size=3),
       use_zero_pages=st.integers(0, 1))
def test_random_thp_captures_model_and_estimate_agree(tmp_path, procs, use_zero_pages):
    nr = 32
    folio, fresh = 0, iter(range(100, 1 << 20))
    built = []
    for p, vmas in enumerate(procs):
        out = []
        for segments in vmas:
            ids: list[int] = []
            folios: list[int] = []
            for kind, n, mix, picks in segments:
                if kind == "hole":
                    ids += [-1] * n
                    folios += [-1] * n
                    continue
                size = nr if kind == "thp" else n
                for pick in picks[:size]:
                    what = mix[pick % len(mix)]
                    ids.append(0 if what == "zero" else 1 + pick if what == "shared" else next(fresh))
                folios += [folio if kind == "thp" else -1] * size
                folio += kind == "thp"
            out.append((fmt.MERGEABLE, ids, [-1] * len(ids), folios))
        built.append((10 + p, f"p{p}", out))
    cap = fmt.from_contents(built, page_size=256)
    if not (cap.page_content >= 0).any():
        return
    model, expected = model_and_estimate(cap, tmp_path / "c.npz", _knobs(use_zero_pages=use_zero_pages,
                                                                         pages_to_scan=100_000))
    assert model == expected


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
