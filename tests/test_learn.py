"""Scenarios learned from a workload followed over time (issue 29): the follow file's format, the
learner on two real runs kept in tests/data (hackbench and python3 interpreters, both under
merge-any with ksmd at its defaults), the built-in hackbench it made, and, on the real KSM, the
whole procedure on python3 interpreters."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine import follow as ffmt
from engine.learn import compare, learn, learn_toml, real_steady, replay
from engine.scenario import load_scenario, parse_scenario
from ksmtui.cli import main

DATA = Path(__file__).parent / "data"
HACKBENCH = DATA / "follow-hackbench.npz"
PYTHON3 = DATA / "follow-python3.npz"
ROOT = Path(__file__).resolve().parent.parent


def _follow() -> ffmt.Follow:
    """Two processes, three samples: page 0 never changes, page 1 changes at sample 2, page 2
    appears at sample 1 and is shared with the other process's page 3 since a fork."""
    return ffmt.Follow(
        meta={"page_size": 4096, "knobs": {"pages_to_scan": 100, "sleep_millisecs": 20}},
        sample_t=np.array([0.0, 0.5, 1.0]), sample_cost=np.array([0.01, 0.01, 0.01]),
        sample_ksmd_ns=np.array([0, 10, 20]),
        counters={c: np.arange(3, dtype=np.int64) for c in ffmt.COUNTERS},
        proc_pid=np.array([10, 11]), proc_ppid=np.array([1, 10]), proc_comm=np.array(["a", "a"]),
        proc_merge_any=np.array([True, True]), proc_first=np.array([0, 1]), proc_last=np.array([2, 2]),
        page_proc=np.array([0, 0, 0, 1], np.int32), page_vpn=np.array([5, 6, 7, 7]),
        page_vma=np.array(["[heap]", "[heap]", "", ""]),
        change_sample=np.array([0, 0, 2, 1, 1]), change_page=np.array([0, 1, 1, 2, 3]),
        change_content=np.array([1, 2, 3, 4, 4]), change_frame=np.array([-1, -1, -1, 0, 0]),
    )


def test_a_follow_file_round_trips_and_says_what_each_page_held_when(tmp_path):
    path = tmp_path / "f.npz"
    ffmt.save(_follow(), path)
    f = ffmt.load(path)
    assert f.samples == 3 and f.meta["page_size"] == 4096
    assert f.contents().tolist() == [[1, 2, ffmt.ABSENT, ffmt.ABSENT], [1, 2, 4, 4], [1, 3, 4, 4]]
    assert f.contents(frames=True)[2].tolist() == [-1, -1, 0, 0]
    with zipfile.ZipFile(path) as z:  # content ids, frames numbered in order met: no page, hash or address
        assert {n.removesuffix(".npy") for n in z.namelist()} == {"magic", "format", "meta", *ffmt.ARRAYS}


@pytest.mark.parametrize("damage,message", [
    (lambda p: p.write_text("not a zip"), "not a ksmtui follow file (not an .npz file)"),
    (lambda p: np.savez(p, magic=np.array("something else")), "not a ksmtui follow file (no 'ksmtui-follow' marker)"),
    (lambda p: np.savez(p, magic=np.array(ffmt.MAGIC), format=np.array(9)), "format version 9: this ksmtui reads 1..1"),
])
def test_a_damaged_follow_file_is_one_line_and_status_2(tmp_path, capsys, damage, message):
    path = tmp_path / "f.npz"
    damage(path)
    with pytest.raises(ffmt.FollowError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ffmt.load(path)
    assert main(["capture", "--learn", str(path), "-o", str(tmp_path / "s.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize("argv,message", [
    (["capture", "--follow", "5"], "expected PID..., --mergeable or --run COMMAND"),
    (["capture", "--run", "true"], "--run follows the command: expected --follow SECONDS with it"),
    (["capture", "--follow", "0", "1"], "expected seconds"),
    (["capture", "--follow", "5", "--every", "1", "1"], "expected milliseconds"),
    (["capture", "--follow", "5", "--all"], "not --all"),
])
def test_bad_follow_options_are_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_the_roles_of_pages_are_learned():
    le = learn(ffmt.load(HACKBENCH))
    total = {"forked": 0, "equal": 0, "unique": 0}
    for roles in le.roles.values():
        for k in total:
            total[k] += getattr(roles, k)
    # hackbench -g 1: one parent, 40 children forked from it; what ksmd scans is mostly still
    # shared since the fork, 5 contents every process wrote alike, one flipping page per child
    assert len(le.roles) == 41
    assert total == {"forked": 677, "equal": 204, "unique": 104}
    assert sorted(le.equal_copies.values()) == [40, 41, 41, 41, 41]
    assert le.recurring and all(len(v) == 2 for v in le.recurring)


def _replayed(path: Path, learned: str | None = None) -> dict[str, float]:
    f = ffmt.load(path)
    scenario = parse_scenario(learned or learn_toml(f, "learned"), "learned.toml", path.parent)
    model, _ = replay(scenario, f)
    return {name: diff for name, _, _, diff in compare(real_steady(f), model)}


@pytest.fixture(scope="module")
def learned_hackbench() -> str:
    """What the learner makes of the hackbench run (its pacing replays the run: seconds, so once)."""
    return learn_toml(ffmt.load(HACKBENCH), "hackbench")


def test_learned_hackbench_replays_the_real_counters(learned_hackbench):
    diff = _replayed(HACKBENCH, learned_hackbench)
    for name in ("pages_shared", "pages_sharing", "pages_volatile"):
        assert abs(diff[name]) <= 0.10, (name, diff)
    for name in ("skipped_per_scanned", "skipped_per_pass", "ksmd_cpu_per_s"):
        assert abs(diff[name]) <= 0.20, (name, diff)


def test_learned_python3_interpreters_replay_the_real_counters():
    diff = _replayed(PYTHON3)
    for name in ("pages_shared", "pages_sharing", "pages_volatile"):
        assert abs(diff[name]) <= 0.10, (name, diff)
    for name in ("skipped_per_scanned", "skipped_per_pass", "full_scans_per_s"):
        assert abs(diff[name]) <= 0.20, (name, diff)
    # The cost model's unique-page visits (checksum, stable search, unstable walk and insert)
    # cost more than this kernel's did here: ksmd's modelled CPU is ~50% high on this workload.
    assert 0 < diff["ksmd_cpu_per_s"] <= 0.60, diff


def test_the_builtin_hackbench_is_what_the_learner_makes_of_the_real_run(learned_hackbench):
    """Only its header comment, description, seed and stop were edited by hand."""
    learned = parse_scenario(learned_hackbench, "learned.toml", DATA)
    builtin = load_scenario(ROOT / "scenarios" / "hackbench.toml")
    assert builtin.ksm == learned.ksm and builtin.pools == learned.pools
    assert builtin.processes == learned.processes and builtin.events == learned.events


@pytest.mark.parametrize("samples,message", [(3, "3 samples: a steady window needs at least 4"),
                                             (5, "no page of a VMA ksmd scans was present")])
def test_a_follow_with_nothing_to_learn_says_so(tmp_path, capsys, samples, message):
    f = _follow()
    for name in ("change_page", "change_sample", "change_content", "change_frame"):
        setattr(f, name, getattr(f, name)[:0])
    f.sample_t, f.sample_cost = np.arange(samples) / 2, np.full(samples, 0.01)
    f.sample_ksmd_ns = np.zeros(samples, np.int64)
    f.counters = {c: np.zeros(samples, np.int64) for c in ffmt.COUNTERS}
    f.proc_last = np.full(2, samples - 1)
    path = tmp_path / "f.npz"
    ffmt.save(f, path)
    assert main(["capture", "--learn", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.kernel
def test_run_of_a_missing_command_is_one_line_and_ksm_is_put_back(kernel, tmp_path, capsys):
    assert main(["capture", "--follow", "5", "-o", str(tmp_path / "f.npz"), "--run", "/nonexistent/cmd"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--run: /nonexistent/cmd: No such file or directory" in err
    assert int(kernel.ksm_read("run")) == 0 and not (tmp_path / "f.npz").exists()


@pytest.mark.kernel
def test_the_procedure_on_python3_interpreters(kernel, tmp_path, capsys):
    """Follow four interpreters under merge-any with ksmd at its defaults, learn, replay."""
    workload = ROOT / "tests" / "pyworkload.py"
    command = f"for k in 1 2 3 4; do {sys.executable} {workload} 24 $k & done; wait"
    out = tmp_path / "py.npz"
    assert main(["capture", "--follow", "30", "--every", "250", "-o", str(out), "--scenario",
                 "--run", "sh", "-c", command]) == 0
    assert int(kernel.ksm_read("run")) == 0 and int(kernel.ksm_read("pages_sharing")) == 0  # put back
    f = ffmt.load(out)
    assert sum(c == "python3" or c.startswith("python") for c in f.proc_comm.tolist()) == 4
    assert load_scenario(out.with_suffix(".toml")).processes
    diff = _replayed(out)
    for name in ("pages_shared", "pages_sharing", "pages_volatile"):
        assert abs(diff[name]) <= 0.10, (name, diff)
    assert abs(diff["skipped_per_scanned"]) <= 0.20, diff
