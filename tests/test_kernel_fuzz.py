"""`ksmtui parity --random`: the generator, the verdicts, the command line, and a short run on the
real kernel with a fixed seed (its first four cases have chains, zero pages with and without
use_zero_pages, merge_any, forks, exits, madvise and knob changes); with --timing, the timing-shaped
generator, the timing verdict and its distribution line, and one timing case on the real kernel."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from engine.scenario import parse_scenario
from ksmtui.cli import main
from ksmtui.cli import parity as cli_parity
from ksmtui.kernel import fuzz
from ksmtui.kernel import run as kernel_run


def test_cases_are_valid_and_depend_on_seed_and_number_only():
    texts = [fuzz.random_scenario(3, case) for case in range(60)]
    assert texts == [fuzz.random_scenario(3, case) for case in range(60)]
    assert len(set(texts)) == 60 and fuzz.random_scenario(4, 0) != texts[0]
    for case, text in enumerate(texts):
        s = parse_scenario(text, f"case-{case}", Path("."))
        assert sum(p.count * sum(r.pages for r in p.regions if not r.thp) for p in s.processes) <= 4 * 3 * 24
    assert any("thp = " in text for text in texts)  # THP regions too


def test_timing_cases_are_large_eventless_valid_and_depend_on_seed_and_number_only():
    texts = [fuzz.random_timing_scenario(3, case) for case in range(40)]
    assert texts == [fuzz.random_timing_scenario(3, case) for case in range(40)]
    assert len(set(texts)) == 40 and fuzz.random_timing_scenario(4, 0) != texts[0]
    drawn = set()
    for case, text in enumerate(texts):
        s = parse_scenario(text, f"case-{case}", Path("."))
        pages = sum(p.count * sum(r.pages for r in p.regions) for p in s.processes)
        assert 8000 <= pages <= 24000 and 2 <= len(s.processes) <= 5 and not s.events
        assert 100 <= s.ksm["pages_to_scan"] <= 2000 and 10 <= s.ksm["sleep_millisecs"] <= 50
        assert 3 <= s.stop.full_scans <= 5 and s.stop.after_ms is None
        # a full scan fits in about fuzz.TIMING_FULL_SCAN_MS on the kernel, so a case takes seconds
        wakeups = -(-pages // s.ksm["pages_to_scan"])
        assert wakeups * (s.ksm["sleep_millisecs"] + fuzz.TIMING_TICKS_MS) <= fuzz.TIMING_FULL_SCAN_MS * 1.01
        fills = [r.fill.kind for p in s.processes for r in p.regions]
        assert s.processes[0].regions[0].fill.kind == "pool"  # always a saving to time
        drawn |= set(fills) | {(k, s.ksm[k]) for k in ("smart_scan", "use_zero_pages")}
    assert {"pool", "random", "zero", ("smart_scan", 0), ("smart_scan", 1), ("use_zero_pages", 0),
            ("use_zero_pages", 1)} <= drawn


def _fake_kernel(monkeypatch, results):
    """run_on_kernel answering from a list: the model's own result, altered as each entry says."""
    from engine.sim import Simulation

    def fake(scenario, sample=False):
        sim = Simulation(scenario)
        sim.run()
        out = copy.deepcopy(sim.result())
        out["notes"] = []
        out["ksm"]["stable_node_chains"] += results.pop(0)
        return out
    monkeypatch.setattr(kernel_run, "run_on_kernel", fake)
    monkeypatch.setattr(kernel_run, "unavailable_reason", lambda: None)


@pytest.mark.parametrize("answers, verdict, status", [
    ([0, 0], "agree", 0),  # one kernel run, the same counters
    ([1, 1], "differs", 1),  # the kernel gives the same other answer twice: a model fault
    ([1, 0], "kernel-unstable", 0),  # the kernel's two runs differ: not held against the model
])
def test_verdicts_and_kept_cases(monkeypatch, tmp_path, capsys, answers, verdict, status):
    _fake_kernel(monkeypatch, answers)
    assert cli_parity.fuzz(1, 5, tmp_path) == status
    out = capsys.readouterr().out
    kept = sorted(p.name for p in tmp_path.iterdir())
    if verdict == "agree":
        assert kept == [] and "1 agree, 0 differ, 0 not reproduced by the kernel itself, 0 kernel" in out
    else:
        assert kept == ["fuzz-5-0.toml", "fuzz-5-0.txt"] and f"case 0: {verdict}" in out
        assert (tmp_path / "fuzz-5-0.toml").read_text() == fuzz.random_scenario(5, 0)
        assert "stable_node_chains" in (tmp_path / "fuzz-5-0.txt").read_text()


def test_a_failed_kernel_run_is_reported_and_the_next_case_runs(monkeypatch, tmp_path, capsys):
    _fake_kernel(monkeypatch, [0])
    fake = kernel_run.run_on_kernel
    calls = []

    def failing_first(scenario, sample=False):
        calls.append(scenario.name)
        if len(calls) == 1:
            raise kernel_run.KernelError("echo 3 > /sys/kernel/mm/ksm/max_page_sharing: Device or resource busy")
        return fake(scenario, sample)
    monkeypatch.setattr(kernel_run, "run_on_kernel", failing_first)
    assert cli_parity.fuzz(2, 5, tmp_path) == 1
    out = capsys.readouterr().out
    assert "case 0: kernel-error" in out and "Device or resource busy" in out
    assert "1 agree, 0 differ, 0 not reproduced by the kernel itself, 1 kernel runs failed" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fuzz-5-0.toml", "fuzz-5-0.txt"]


def _fake_timed_kernel(monkeypatch, runs):
    """run_on_kernel, sampled, answering from a list of (time factor, CPU factor, wait): the model's
    own result on the reference costs with that wait for a CPU (ksmd's, as schedstat gives it), its
    times to the saving and ksmd's CPU multiplied by the factors."""
    from dataclasses import replace

    from engine.cost import REFERENCE
    from engine.sim import Simulation
    from engine.timeline import saving_timing

    def fake(scenario, sample=False):
        assert sample
        time_factor, cpu_factor, wait = runs.pop(0)
        sim = Simulation(scenario, costs=replace(REFERENCE, wait_per_cpu=wait))
        sim.record_series()
        sim.run()
        out = copy.deepcopy(sim.result())
        out["notes"] = []
        t = saving_timing(sim.series or [])
        for key in ("time_to_50_ms", "time_to_90_ms", "time_to_100_ms"):
            t[key] *= time_factor
        t["ksmd_cpu_to_100_ms"] *= cpu_factor
        out["timing"] = {**t, "wait_per_cpu": wait}
        return out
    monkeypatch.setattr(kernel_run, "run_on_kernel", fake)
    monkeypatch.setattr(kernel_run, "unavailable_reason", lambda: None)


def test_timing_is_judged_per_case_and_summarised(monkeypatch, tmp_path, capsys):
    # case 0: the kernel's two runs 0% and 2% slower, CPU the model's: the medians hold; case 1:
    # 10% slower (the model 9.1% early, beyond 5%) and 10% more CPU (within 15%): a miss
    _fake_timed_kernel(monkeypatch, [(1.0, 1.0, 0.0), (1.02, 1.0, 0.0), (1.1, 1.1, 0.0), (1.1, 1.1, 0.0)])
    assert cli_parity.fuzz(2, 7, tmp_path, timing=True, repeat=2) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert [line.split(";")[0] for line in lines if line.startswith("case 0:")] == ["case 0: agree"]
    case0 = next(line for line in lines if line.startswith("case 0: agree;"))
    assert "timing held: time_to_50 -1.0%, time_to_90 -1.0%, time_to_100 -1.0%, ksmd_cpu_to_100 +0.0%" in case0
    assert "the kernel's own spread: time_to_50 2.0%, time_to_90 2.0%, time_to_100 2.0%, ksmd_cpu_to_100 0.0%" in case0
    # the miss: its timing report (not the agreeing counters again), kept, and its line
    assert "case 1: agree; timing missed\ntiming (model: costs: reference costs" in out
    assert "time_to_100_ms" in out and "<-- beyond 5%" in out and "pages_shared" not in out
    assert "timing missed: time_to_50 -9.1% (beyond), time_to_90 -9.1% (beyond), time_to_100 -9.1% (beyond), " \
           "ksmd_cpu_to_100 -9.1%;" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fuzz-timing-7-1.toml", "fuzz-timing-7-1.txt"]
    assert (tmp_path / "fuzz-timing-7-1.toml").read_text() == fuzz.random_timing_scenario(7, 1)
    assert "parity --random 2 --seed 7 --timing --repeat 2: 2 agree, 0 differ" in out
    summary = lines[-1]
    assert summary.startswith("timing held in 1 of 2 cases: time_to_50 within 5% in 1/2 "
                              "(error: median 5.0%, worst -9.1%); ")
    assert "ksmd_cpu_to_100 within 15% in 2/2 (error: median 4.5%, worst -9.1%)" in summary
    assert summary.endswith("The kernel's own spread over its 2 runs of a case, median/worst: time_to_50 1.0%/2.0%, "
                            "time_to_90 1.0%/2.0%, time_to_100 1.0%/2.0%, ksmd_cpu_to_100 0.0%/0.0%")


def test_timing_that_holds_exits_0_and_says_the_spread_was_not_measured(monkeypatch, tmp_path, capsys):
    _fake_timed_kernel(monkeypatch, [(1.04, 0.9, 0.0)])  # the model 3.8% early, 11.1% over: within both
    assert cli_parity.fuzz(1, 7, tmp_path, timing=True) == 0
    out = capsys.readouterr().out
    assert list(tmp_path.iterdir()) == [] and "timing missed" not in out
    assert out.splitlines()[-1] == (
        "timing held in 1 of 1 cases: time_to_50 within 5% in 1/1 (error: median 3.8%, worst -3.8%); "
        "time_to_90 within 5% in 1/1 (error: median 3.8%, worst -3.8%); time_to_100 within 5% in 1/1 "
        "(error: median 3.8%, worst -3.8%); ksmd_cpu_to_100 within 15% in 1/1 (error: median 11.1%, worst +11.1%). "
        "The model at ksmd's measured wait (not judged): time_to_50 within 5% in 1/1 "
        "(error: median 3.8%, worst -3.8%); time_to_90 within 5% in 1/1 (error: median 3.8%, worst -3.8%); "
        "time_to_100 within 5% in 1/1 (error: median 3.8%, worst -3.8%). "
        "The kernel's own spread: not measured (one run a case; --repeat 3 shows it)")


def test_a_miss_the_load_explains_shows_as_such(monkeypatch, tmp_path, capsys):
    # the kernel is the model itself, but its ksmd waited as long for a CPU as it ran (the profile
    # says 0): judged, the model is early; run again at ksmd's wait, it is exact
    _fake_timed_kernel(monkeypatch, [(1.0, 1.0, 1.0)])
    assert cli_parity.fuzz(1, 7, tmp_path, timing=True) == 1
    out = capsys.readouterr().out
    case = next(line for line in out.splitlines() if line.startswith("case 0: agree;") and " pages, " in line)
    judged, loaded = case.split("; at ksmd's wait: ")
    assert "timing missed: time_to_50 -" in judged and "time_to_100 -" in judged and "ksmd_cpu_to_100 +0.0%" in judged
    assert loaded == "time_to_50 +0.0%, time_to_90 +0.0%, time_to_100 +0.0%"
    assert "The model at ksmd's measured wait (not judged): time_to_50 within 5% in 1/1 (error: median 0.0%, " \
           "worst +0.0%)" in out.splitlines()[-1]


@pytest.mark.parametrize("argv, expected", [
    (["--random", "0"], "argument --random: expected an integer >= 1, got '0'"),
    (["--random", "2", "--seed", "x"], "argument --seed: expected an integer"),
    (["--random", "2", "fleet"], "unrecognized arguments: fleet"),
    (["--random", "2", "--keep", "/proc/no/such"], "--keep: cannot create /proc/no/such"),
    (["--random", "2", "--repeat", "3"], "--repeat: only with --timing"),
    (["--random", "2", "--timing", "--repeat", "0"], "argument --repeat: expected an integer >= 1, got '0'"),
])
def test_bad_input_is_one_line_and_status_2(capsys, argv, expected):
    assert main(["parity", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ksmtui parity: error:") and expected in err


@pytest.mark.kernel
def test_four_random_cases_agree_with_the_kernel(capsys):
    reason = kernel_run.unavailable_reason()
    if reason:
        pytest.skip(reason)
    # the lock is taken per kernel run inside, never for the whole fuzzing run
    status = main(["parity", "--random", "4", "--seed", "0"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "parity --random 4 --seed 0: " in out and " 0 differ" in out


def test_one_timing_case_on_the_kernel_reports_its_timing(kernel, capsys):
    # seed 43's case 0 is one of the quickest (11,799 pages, pages_to_scan 1556, sleep_millisecs 10,
    # 3 full scans: ~0.4 s of scanning); whether the kernel agrees in time is not asserted: the
    # machine's load moves ksmd's time by more than 5% (docs/timing.md)
    assert "pages_to_scan = 1556" in fuzz.random_timing_scenario(43, 0)
    status = main(["parity", "--random", "1", "--timing", "--seed", "43"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert status in (0, 1) and "parity --random 1 --seed 43 --timing --repeat 1: 1 agree, 0 differ" in out, out
    case = next(line for line in lines if line.startswith("case 0: agree; 11,799 pages"))
    assert ("timing held: " in case) == (status == 0) and "time_to_100 " in case and "ksmd_cpu_to_100 " in case
    assert lines[-1].startswith("timing held in ") and "ksmd_cpu_to_100 within 15% in " in lines[-1]
