"""`ksmtui parity --random`: the generator, the verdicts, the command line, and a short run on the
real kernel with a fixed seed (its first four cases have chains, zero pages with and without
use_zero_pages, merge_any, forks, exits, madvise and knob changes)."""

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


def _fake_kernel(monkeypatch, results):
    """run_on_kernel answering from a list: the model's own result, altered as each entry says."""
    from engine.sim import Simulation

    def fake(scenario):
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

    def failing_first(scenario):
        calls.append(scenario.name)
        if len(calls) == 1:
            raise kernel_run.KernelError("echo 3 > /sys/kernel/mm/ksm/max_page_sharing: Device or resource busy")
        return fake(scenario)
    monkeypatch.setattr(kernel_run, "run_on_kernel", failing_first)
    assert cli_parity.fuzz(2, 5, tmp_path) == 1
    out = capsys.readouterr().out
    assert "case 0: kernel-error" in out and "Device or resource busy" in out
    assert "1 agree, 0 differ, 0 not reproduced by the kernel itself, 1 kernel runs failed" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fuzz-5-0.toml", "fuzz-5-0.txt"]


@pytest.mark.parametrize("argv, expected", [
    (["--random", "0"], "argument --random: expected an integer >= 1, got '0'"),
    (["--random", "2", "--seed", "x"], "argument --seed: expected an integer"),
    (["--random", "2", "fleet"], "unrecognized arguments: fleet"),
    (["--random", "2", "--keep", "/proc/no/such"], "--keep: cannot create /proc/no/such"),
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
