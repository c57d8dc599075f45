"""The model held to the real kernel: each scenario runs on both, settled counters must agree.

Every test here drives the real /sys/kernel/mm/ksm through the `kernel` fixture: one at a time,
back at the kernel's defaults afterwards, skipped with the reason where KSM is not writable.
The focused scenarios are small (tens of pages, one batch per pass), so a pass takes about 20 ms
of wall time; each one exercises one behaviour of the engine.
"""

from __future__ import annotations

import dataclasses

import pytest

from engine.scenario import Fill, Stop
from engine.sim import Simulation
from ksmtui.cli import kernel as cli_kernel
from ksmtui.cli.options import Options
from ksmtui.host import sysfs
from ksmtui.kernel.parity import parity_report
from tests.engine_helpers import proc, region, scenario

# One batch per pass; the 20 ms ksmd sleeps between passes leave the controller ample time to
# pause ksmd on the pass boundary even on a loaded machine.
KNOBS = {"pages_to_scan": 1000, "sleep_millisecs": 20}


def focused(*processes, ksm=None, events=(), pools=(), full_scans=6):
    s = scenario(*processes, ksm={**KNOBS, **(ksm or {})}, events=events, pools=pools)
    return dataclasses.replace(s, stop=Stop(full_scans=full_scans))


def write(at, process, region_name, pages=None, kind="random", **kw):
    fill = Fill(kind, **{k: v for k, v in kw.items() if k in ("byte", "pool", "order", "offset")})
    extra = {k: v for k, v in kw.items() if k == "fraction"}
    return {"action": "write", "at_full_scans": at, "process": process, "region": region_name,
            "pages": pages, "fill": fill, **extra}


EMPTIED_CHAIN = focused(
    proc("a", region("z", 8, "zero"), region("x", 12, "byte", byte=0x11)),
    proc("b", region("u", 13), region("x", 11, "byte", byte=0x11)),
    ksm={"max_page_sharing": 2, "smart_scan": 0},
    events=[{"action": "exit", "at_full_scans": 2, "process": "a"}],
    full_scans=7)

FOCUSED = {
    "duplicates_across_processes": focused(
        proc("a", region("lib", 48, "pool", pool="lib"), region("own", 16)),
        proc("b", region("own", 16), region("lib", 48, "pool", pool="lib", order="shuffled")),
        pools=[("lib", 48)]),
    "zero_pages_as_ksm_page": focused(proc("a", region("z", 40, "zero"), region("r", 8))),
    "zero_pages_use_zero_pages": focused(proc("a", region("z", 40, "zero"), region("r", 8)),
                                         ksm={"use_zero_pages": 1}),
    "chain_with_leftover": focused(
        proc("a", region("x", 10, "byte", byte=0xCF), region("y", 7, "byte", byte=0x11)),
        ksm={"max_page_sharing": 3}),
    "chains_across_processes": focused(
        proc("p", region("x", 9, "byte", byte=0x2A), region("r", 5), count=3),
        ksm={"max_page_sharing": 4}),
    "non_mergeable_region": focused(
        proc("a", region("hidden", 12, "byte", byte=7, mergeable=False), region("shown", 12, "byte", byte=7))),
    "merge_any": focused(
        proc("any", region("x", 12, "byte", byte=9, mergeable=False), region("r", 6, mergeable=False),
             merge_any=True),
        proc("plain", region("x", 12, "byte", byte=9))),
    "fork_then_cow": focused(
        proc("a", region("x", 20, "byte", byte=3), region("lib", 20, "pool", pool="lib"), region("r", 10)),
        proc("b", region("lib", 20, "pool", pool="lib")),
        pools=[("lib", 20)],
        events=[{"action": "fork", "at_full_scans": 3, "process": "a", "child": "a2"},
                write(5, "a2", "x", pages=5), write(5, "a", "lib", pages=(0, 4))],
        full_scans=9),
    "writes_after_merging": focused(
        proc("a", region("x", 24, "byte", byte=0x5A), region("lib", 16, "pool", pool="lib")),
        proc("b", region("lib", 16, "pool", pool="lib")),
        pools=[("lib", 16)],
        events=[write(3, "a", "x", pages=6), write(4, "b", "lib", kind="byte", byte=0x5A, fraction=0.5),
                write(5, "a", "x", pages=(10, 12), kind="zero")],
        full_scans=9),
    "madvise_unmergeable": focused(
        proc("a", region("x", 16, "byte", byte=1), region("y", 16, "byte", byte=1)),
        events=[{"action": "madvise", "at_full_scans": 3, "process": "a", "region": "x",
                 "advice": "unmergeable"},
                {"action": "madvise", "at_full_scans": 6, "process": "a", "region": "x",
                 "advice": "mergeable"}],
        full_scans=10),
    "exit": focused(
        proc("a", region("lib", 24, "pool", pool="lib")),
        proc("b", region("lib", 24, "pool", pool="lib"), region("z", 6, "zero")),
        proc("c", region("lib", 24, "pool", pool="lib", offset=12)),
        pools=[("lib", 24)], ksm={"use_zero_pages": 1},
        events=[{"action": "exit", "at_full_scans": 3, "process": "b"}],
        full_scans=7),
    "knobs_changed_mid_run": focused(
        proc("a", region("z", 12, "zero"), region("x", 12, "byte", byte=0xEE), region("u", 20)),
        events=[{"action": "set", "at_full_scans": 3, "knob": "use_zero_pages", "value": 1},
                write(3, "a", "x", pages=(0, 6), kind="zero"),
                {"action": "set", "at_full_scans": 4, "knob": "max_page_sharing", "value": 2},
                {"action": "set", "at_full_scans": 4, "knob": "smart_scan", "value": 0},
                write(5, "a", "u", pages=4)],
        full_scans=9),
    "smart_scan_unique_pages": focused(proc("a", region("u", 30)), full_scans=12),
    # issue 10: a's zero pages form a chain at max_page_sharing 2; a exits; the walks of b's
    # unique pages pass the emptied chain and free it, in the kernel's tree shape (a treap's
    # walks never passed it and kept 2 chains)
    "emptied_chain_freed_by_later_walks": EMPTIED_CHAIN,
    # found by `parity --random`: with no mergeable region left, ksmd's next pass frees the
    # process's rmap_items and lets go of its mm; the run waits for that pass
    "every_region_unmergeable": focused(
        proc("a", region("z", 12, "zero"), region("x", 10, "pool", pool="p")), pools=[("p", 10)],
        ksm={"use_zero_pages": 1},
        events=[{"action": "madvise", "at_full_scans": 1, "process": "a", "region": r, "advice": "unmergeable"}
                for r in ("z", "x")],
        full_scans=4),
    # found by `parity --random` too: the last registered process exits while ksmd holds its
    # rmap_items; ksmd's next pass frees them
    "last_registered_process_exits": focused(
        proc("a", region("x", 16)), proc("b", region("y", 8, mergeable=False)),
        events=[{"action": "exit", "at_full_scans": 2, "process": "a"}],
        full_scans=5),
    # and: a merge-any process whose only region is madvised unmergeable has nothing left to scan
    "merge_any_region_madvised_unmergeable": focused(
        proc("a", region("x", 11, "byte", byte=0x5A), merge_any=True),
        events=[{"action": "madvise", "at_full_scans": 2, "process": "a", "region": "x", "advice": "unmergeable"}],
        full_scans=5),
}


@pytest.mark.kernel
@pytest.mark.parametrize("name", list(FOCUSED))
def test_focused_scenario_matches_the_kernel(kernel, name):
    s = FOCUSED[name]
    sim = Simulation(s)
    sim.run()
    model = sim.result()
    real = kernel.run_on_kernel(s)
    text, ok = parity_report(model, real)
    assert real["data_check"]["mismatches"] == 0, text
    assert real["data_check"]["pages_checked"] == model["data_check"]["pages_checked"], text
    assert ok, text


def _w(at, reg, pages=None, kind="random", **fill):
    return {"action": "write", "at_full_scans": at, "process": "a", "region": reg, "pages": pages,
            "fill": Fill(kind, **fill)}


# docs/model.md's worked traces T1-T8 (verified live there on 6.18.44), pass by pass
WORKED_TRACES = {
    "T1_identical_pages": (focused(proc("a", region("x", 10, "byte", byte=0x2A))), 3),
    "T2_T3_late_copies_then_cow": (focused(
        proc("a", region("x", 10, "byte", byte=0x2A), region("y", 10)),
        events=[_w(3, "y", kind="byte", byte=0x2A), _w(6, "x", pages=1)]), 9),
    "T4_use_zero_pages": (focused(proc("a", region("z", 10, "zero")), ksm={"use_zero_pages": 1},
                                  events=[_w(4, "z", pages=1)]), 5),
    "T5_chain_leftover": (focused(proc("a", region("x", 10, "byte", byte=0x2A)),
                                  ksm={"max_page_sharing": 3}), 4),
    "T6_chain_collapse": (focused(
        proc("a", region("x", 6, "byte", byte=0x2A)), ksm={"max_page_sharing": 3},
        events=[_w(2, "x", pages=(i, i + 1), kind="byte", byte=i + 1) for i in range(3)]), 6),
    "T7_smart_scan_schedule": (focused(proc("a", region("u", 20))), 24),
    "T8_zero_ksm_page_then_use_zero_pages": (focused(
        proc("a", region("z", 10, "zero"), region("y", 10)),
        events=[{"action": "set", "at_full_scans": 3, "knob": "use_zero_pages", "value": 1},
                _w(3, "y", kind="zero")]), 6),
}

_EVERY_PASS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "pages_scanned",
               "pages_skipped", "stable_node_chains", "stable_node_dups", "ksm_zero_pages", "general_profit")


@pytest.mark.kernel
@pytest.mark.parametrize("name", list(WORKED_TRACES))
def test_worked_trace_matches_the_kernel_after_every_pass(kernel, name):
    """Stricter than the end state: every counter, timing-dependent ones included, after each pass."""
    s, passes = WORKED_TRACES[name]
    for _ in range(3):
        if _every_pass_agrees(kernel, s, passes):
            return
    pytest.fail("ksmd ran past the end of a pass before it could be paused or an event performed, three times")


def _every_pass_agrees(kernel, s, passes) -> bool:
    """False when ksmd could not be caught at a pass's end: KernelRun pauses it (run=0) once it sees
    full_scans reach the pass, and one wake-up here scans a whole pass (pages_to_scan 1000), so on a
    loaded machine a late pause finds the next pass done too (and an event, its next pass begun).
    That is the test's miss, not the model's."""
    sim = Simulation(s)
    with kernel.KernelRun(s) as run:
        run.start()
        for k in range(1, passes + 1):
            sim.step_full_scan()
            run.run(full_scans=k)
            if int(sysfs.ksm_read("full_scans")) != k:
                return False
            got = sysfs.read_counters()
            got["pages_scanned"] -= run.scanned0
            got["pages_skipped"] -= run.skipped0
            want = sim.ksm.counters()
            assert {c: got[c] for c in _EVERY_PASS} == {c: want[c] for c in _EVERY_PASS}, f"after pass {k}"
            stat = sysfs.read_ksm_stat(run.procs["a"].pid)
            mm = sim.machine.mms[0]
            assert (stat["ksm_rmap_items"], stat["ksm_merging_pages"], stat["ksm_zero_pages"]) == \
                (mm.ksm_rmap_items, mm.ksm_merging_pages, mm.ksm_zero_pages), f"after pass {k}"
        return not run.notes  # an event that landed in the next pass: the same miss


@pytest.mark.kernel
@pytest.mark.parametrize("error", [RuntimeError("a child died"), KeyboardInterrupt()])
def test_a_run_that_fails_midway_leaves_the_kernel_at_its_defaults(kernel, monkeypatch, capsys, error):
    s = FOCUSED["fork_then_cow"]  # merged pages, a forked child and tuned knobs when it fails

    def fail(self, ev):
        raise error
    monkeypatch.setattr(kernel.KernelRun, "_perform", fail)
    if isinstance(error, KeyboardInterrupt):
        assert cli_kernel.cmd_kernel(s, Options(command="kernel", json=True)) == 130
        assert capsys.readouterr().err.count("\n") == 1
    else:
        with pytest.raises(RuntimeError):
            kernel.run_on_kernel(s)
    assert sysfs.merged_pages() == 0
    assert sysfs.read_knobs() == {k: v for k, v in sysfs.KERNEL_DEFAULTS.items()
                                   if (sysfs.KSM_DIR / k).exists()}


@pytest.mark.kernel
def test_measure_ksmd_reports_the_cost_per_scanned_page(kernel):
    s = focused(proc("a", region("x", 64, "byte", byte=1), region("u", 64)))
    got = kernel.measure_ksmd(s, warmup_full_scans=2, window_full_scans=2, min_window_s=0.05)
    assert got["pages_scanned"] >= 2 * 64  # two passes over the settled KSM pages at least
    assert got["cpu_ns"] > 0 and got["ns_per_page"] == pytest.approx(got["cpu_ns"] / got["pages_scanned"], rel=0.01)
    assert sysfs.merged_pages() == 0


def _builtin_ids():
    from engine.scenario import builtin_scenarios
    return [name for name, _ in builtin_scenarios()]


@pytest.mark.kernel
@pytest.mark.parametrize("name", _builtin_ids())
def test_builtin_scenario_matches_the_kernel(kernel, name):
    from engine.scenario import load_scenario
    from ksmtui.kernel.parity import timing_caveat

    s = load_scenario(name)
    why_not = kernel.unsupported_reason(s) or timing_caveat(s)
    if why_not:
        pytest.skip(f"{name}: {why_not}")
    sim = Simulation(s)
    sim.run()
    real = kernel.run_on_kernel(s)
    text, ok = parity_report(sim.result(), real)
    assert real["data_check"]["mismatches"] == 0, text
    assert ok, text


# Transparent huge pages (docs/thp.md): one THP per process, khugepaged kept away by the runner.
# Each case with use_zero_pages 0 and 1; the model's splits, failed splits and THPs left must be
# the kernel's too.
THP_KNOBS = {"pages_to_scan": 2000, "sleep_millisecs": 20, "smart_scan": 0}


def thp_cases(tmp_path) -> dict:
    one = tmp_path / "one-match-zero-rest.bin"
    one.write_bytes(b"shared page 0 ".ljust(4096, b"#") + bytes(511 * 4096))
    shapes = {
        # every subpage has its twin in the other process: both THPs split, 512 KSM pages
        "all_match": [region("r", 512, "pool", pool="lib", thp=True)],
        # subpage 0 in both, the rest zero-filled: split, the 511 zero subpages to the zero page
        "one_match_zero_rest": [region("r", 512, "file", thp=True, path=one)],
        # nothing matches: both stay huge
        "no_match": [region("r", 512, thp=True)],
    }
    return {f"{name}_uzp{uzp}": focused(proc("a", *regions), proc("b", *regions), pools=[("lib", 512)],
                                        ksm={**THP_KNOBS, "use_zero_pages": uzp}, full_scans=5)
            for name, regions in shapes.items() for uzp in (0, 1)}


THP_NAMES = [f"{n}_uzp{u}" for n in ("all_match", "one_match_zero_rest", "no_match") for u in (0, 1)]


@pytest.mark.kernel
@pytest.mark.parametrize("name", THP_NAMES)
def test_thp_scenario_matches_the_kernel(kernel, name, tmp_path):
    s = thp_cases(tmp_path)[name]
    sim = Simulation(s)
    sim.run()
    model = sim.result()
    real = kernel.run_on_kernel(s)
    text, ok = parity_report(model, real)
    assert real["data_check"]["mismatches"] == 0, text
    assert ok, text
    assert model["thp"] == real["thp"], text
    want_split = {"all_match": 2, "one_match_zero_rest": 2, "no_match": 0}[name.rsplit("_", 1)[0]]
    assert model["thp"]["thp_split_page"] == want_split
