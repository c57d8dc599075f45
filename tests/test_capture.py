"""Captures, estimates and scenarios made from captures, without the real KSM.

The estimate's rules are held to the model here (the model's settled counters are held to the
real kernel by test_kernel_parity.py); test_capture_kernel.py holds them to the kernel itself.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import capture as fmt
from engine.estimate import estimate
from engine.knobs import KSM_KNOBS
from engine.scenario import ScenarioError, parse_scenario, process_name, scenario_from_capture, scenario_toml
from engine.sim import Simulation
from ksmtui.cli import main as cli

KNOBS = {k: v.default for k, v in KSM_KNOBS.items()}
SETTLED = ("pages_shared", "pages_sharing", "ksm_zero_pages", "stable_node_chains", "stable_node_dups",
           "general_profit")
PER_PROCESS = ("ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit")


def model_of(cap: fmt.Capture, path: Path, knobs: dict, full_scans: int) -> dict:
    """The model's run of the scenario a capture makes, `full_scans` passes."""
    fmt.save(cap, path)
    text = scenario_toml(cap, path.name, "t")
    sim = Simulation(parse_scenario(text, str(path), path.parent), overrides=knobs)
    sim.run(full_scans=full_scans)
    return sim.result()


# ------------------------------------------------------------------- estimate = model --

contents = st.lists(st.integers(0, 6), min_size=0, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(procs=st.lists(st.lists(contents, min_size=1, max_size=3), min_size=1, max_size=3),
       max_page_sharing=st.integers(2, 5), use_zero_pages=st.integers(0, 1))
def test_the_estimate_is_what_the_model_settles_to(tmp_path, procs, max_page_sharing, use_zero_pages):
    """Any sharing structure: duplicates within and across processes, zero pages, chains and the
    leftover page (n mod max_page_sharing == 1), with and without use_zero_pages."""
    cap = fmt.from_contents([(100 + i, f"p{i}", [(fmt.MERGEABLE, [k for k in ids]) for ids in vmas])
                             for i, vmas in enumerate(procs)])
    if not (cap.page_content >= 0).any():
        return
    knobs = {**KNOBS, "max_page_sharing": max_page_sharing, "use_zero_pages": use_zero_pages,
             "pages_to_scan": 100_000}
    est = estimate(cap, knobs)
    model = model_of(cap, tmp_path / "c.npz", knobs, est.ksm["full_scans"])
    assert {k: model["ksm"][k] for k in SETTLED} == {k: est.ksm[k] for k in SETTLED}
    assert model["ksm"]["full_scans"] == est.ksm["full_scans"]
    for pid, p in est.processes.items():
        name = process_name(p["comm"], pid)
        if name in model["processes"]:
            assert {k: model["processes"][name][k] for k in PER_PROCESS} == {k: p[k] for k in PER_PROCESS}
        else:  # no region: nothing to merge
            assert p["ksm_rmap_items"] == 0


def test_chains_and_the_leftover_page():
    """n copies, max_page_sharing M: ceil(n / M) KSM pages, but floor when n mod M == 1 (the last
    copy stays alone); a content with two or more KSM pages is a chain of that many dups."""
    cap = fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [7] * 10 + [8] * 4 + [9] * 3)])])
    e = estimate(cap, {**KNOBS, "max_page_sharing": 3}).ksm
    # 10 = 3+3+3 +1 left; 4 = 3 +1 left; 3 = 3
    assert (e["pages_shared"], e["pages_sharing"]) == (3 + 1 + 1, 6 + 2 + 2)
    assert (e["stable_node_chains"], e["stable_node_dups"]) == (1, 3)


def test_unmerged_and_unmarked_memory():
    """Pages of VMAs no one marked mergeable count only with merge_any; the kernel's zero page
    (never written) is not an anonymous page ksmd scans."""
    cap = fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [3, 3, fmt.KERNEL_ZERO_PAGE]), (fmt.NOT_MADVISED, [3, 4])])])
    plain, anyway = estimate(cap, KNOBS), estimate(cap, KNOBS, merge_any=True)
    assert (plain.rmap_items, plain.ksm["pages_sharing"]) == (2, 1)
    assert (anyway.rmap_items, anyway.ksm["pages_sharing"]) == (4, 2)


def test_the_sharing_matrix_follows_ksm_pages():
    """With max_page_sharing 2, a content in a, b, c, d (in that order) makes two KSM pages:
    a+b and c+d; a and c share none."""
    cap = fmt.from_contents([(p, str(p), [(fmt.MERGEABLE, [5])]) for p in (1, 2, 3, 4)])
    procs = estimate(cap, {**KNOBS, "max_page_sharing": 2}).processes
    assert procs[1]["shares_with"] == {2: 1} and procs[3]["shares_with"] == {4: 1}
    procs = estimate(cap, KNOBS).processes
    assert procs[1]["shares_with"] == {2: 1, 3: 1, 4: 1} and procs[1]["ksm_pages"] == 1


def test_cost_counts_passes_and_batches():
    cap = fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [0] * 100 + [2] * 50 + list(range(3, 53)))])])
    cost = estimate(cap, {**KNOBS, "pages_to_scan": 100, "sleep_millisecs": 20, "use_zero_pages": 1}).cost
    assert cost["full_scans"] == 3
    # 200 pages, then 100 once the zero pages map the zero page; the batch meeting the end stops
    assert [p["batches"] for p in cost["passes"]] == [3, 3, 2]
    assert cost["wall_s"] >= 8 * 0.020
    assert set(cost["costs"]["paths"].values()) == {"cost model"}
    measured = estimate(cap, KNOBS, measured={"unique": 9000.0}, measured_source="bench").cost
    assert measured["ns_per_page"]["unique"] == 9000 and measured["costs"]["paths"]["merge"] == "measured (unique)"


def test_sixteen_thousand_pages_estimate_in_numpy_time():
    """Not timed (no timed assertions): a shape check on a big-ish synthetic capture."""
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 5000, size=16384)
    cap = fmt.from_contents([(p, "vm", [(fmt.MERGEABLE, ids[p::4])]) for p in range(4)])
    e = estimate(cap, KNOBS)
    assert e.ksm["pages_shared"] + e.ksm["pages_sharing"] <= 16384


# ----------------------------------------------------------------------- the file format --

def test_round_trip(tmp_path):
    cap = fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [1, 2, 0]), (fmt.SHARED, [])])])
    fmt.save(cap, tmp_path / "c.npz")
    back = fmt.load(tmp_path / "c.npz")
    assert back.page_content.tolist() == [1, 2, 0] and back.vma_reason.tolist() == [0, 2]


def _capture_file(tmp_path) -> Path:
    path = tmp_path / "c.npz"
    fmt.save(fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [1, 2, 0])])]), path)
    return path


def _rewrite(path: Path, drop: tuple[str, ...] = (), **replace) -> None:
    arrays = {k: v for k, v in np.load(path).items() if k not in drop}
    arrays.update(replace)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def test_a_file_from_before_page_frame_loads_as_nothing_shared_since_fork(tmp_path):
    path = tmp_path / "c.npz"
    fmt.save(fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [5, 5, 6], [3, 3, -1])])]), path)
    assert fmt.load(path).fork_only().tolist() == [True, True, False]
    _rewrite(path, drop=("page_frame",))
    old = fmt.load(path)
    assert old.page_frame.tolist() == [-1, -1, -1] and old.page_frame.dtype == np.int32
    assert old.fork_only().tolist() == [False, False, False]


def test_units_round_trip_and_an_old_file_has_every_unit_unknown(tmp_path):
    path = tmp_path / "c.npz"
    vm = {"cgroup": "/machine.slice/machine-qemu\\x2d1\\x2dwin10.scope", "vm": "win10"}
    fmt.save(fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [5])]), (2, "b", [(fmt.MERGEABLE, [5])])],
                               units=[vm, {}]), path)
    assert fmt.load(path).units() == [vm, {}]
    _rewrite(path, drop=("proc_unit",))
    assert fmt.load(path).units() == [{}, {}]
    _rewrite(path, proc_unit=np.array(["{}"]))
    with pytest.raises(fmt.CaptureError, match="proc_\\* arrays differ in length"):
        fmt.load(path)


@pytest.mark.parametrize("damage,message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated or corrupt capture"),
    (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(100)), "truncated or corrupt capture"),
    (lambda p: p.write_text("name = 'a scenario'\n"), "not a ksmtui capture"),
    (lambda p: _rewrite(p, format=np.array(2)), "format version 2 is newer than this ksmtui reads (1)"),
    (lambda p: _rewrite(p, magic=np.array("something else")), "not a ksmtui capture"),
    (lambda p: _rewrite(p, page_content=np.array([1, 2, 99], np.int32)), "page_content: a content id outside"),
    (lambda p: _rewrite(p, vma_count=np.array([5])), "do not tile the page arrays"),
    (lambda p: p.unlink(), "no such file"),
])
def test_bad_capture_files_are_one_line(tmp_path, capsys, damage, message):
    path = _capture_file(tmp_path)
    damage(path)
    with pytest.raises(fmt.CaptureError, match=re.escape(message)):
        fmt.load(path)
    assert cli(["estimate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and message.split(" (")[0] in err


def test_a_corrupt_member_is_one_line(tmp_path):
    """A member whose deflated bytes are damaged (the zip directory intact)."""
    path = _capture_file(tmp_path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("page_content.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 5: start + 25] = bytes(20)
    path.write_bytes(bytes(data))
    with pytest.raises(fmt.CaptureError, match="corrupt|damaged"):
        fmt.load(path)


# ------------------------------------------------------------------ scenarios from captures --

def test_scenario_fill_capture_errors(tmp_path):
    path = _capture_file(tmp_path)
    base = (f'name = "t"\n[[process]]\nname = "a"\n[[process.region]]\nname = "r"\nfill = "capture"\n'
            f'capture = "{path.name}"\n')
    for extra, message in [
        ('pages = 3\npid = 1\nvma = "0x10000000"\n', None),
        ('pages = 2\npid = 1\nvma = "0x10000000"\n', "process[0].region[0].pages: the VMA at 0x10000000 of process 1 "
                                                     "has 3 pages"),
        ('pages = 3\npid = 2\nvma = "0x10000000"\n', "process[0].region[0].pid: c.npz has no process 2"),
        ('pages = 3\npid = 1\nvma = "0x20000000"\n', "process[0].region[0].vma: process 1 in c.npz has no VMA "
                                                     "starting at 0x20000000"),
        ('pages = 3\npid = 1\nvma = "near the top"\n', "process[0].region[0].vma: expected the VMA's start address in "
                                                       "hex"),
    ]:
        text = base + extra
        if message is None:
            s = parse_scenario(text, "s.toml", tmp_path)
            assert s.processes[0].regions[0].fill.pid == 1
        else:
            with pytest.raises(ScenarioError, match=re.escape(message)):
                parse_scenario(text, "s.toml", tmp_path)
    with pytest.raises(ScenarioError, match="capture: .*missing.npz: no such file"):
        parse_scenario(base.replace(path.name, "missing.npz") + 'pages = 3\npid = 1\nvma = '
                                                                '"0x10000000"\n', "s.toml", tmp_path)


def test_captured_contents_keep_equality_and_zero(tmp_path):
    from engine.contents import ScenarioContents

    cap = fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [1, 2, 1, 0, fmt.KERNEL_ZERO_PAGE])])])
    fmt.save(cap, tmp_path / "c.npz")
    s = scenario_from_capture(tmp_path / "c.npz")
    region = s.processes[0].regions[0]
    pages = list(ScenarioContents(s, 0).pages(region.fill, region.pages))
    assert len(pages) == 4 and pages[0] == pages[2] != pages[1] and pages[3] == bytes(4096) != pages[0]


def test_a_capture_replaced_after_loading_is_a_capture_error(tmp_path):
    from engine.contents import ScenarioContents

    path = _capture_file(tmp_path)
    s = scenario_from_capture(path)
    fmt.save(fmt.from_contents([(2, "b", [(fmt.MERGEABLE, [1, 2, 0])])]), path)
    region = s.processes[0].regions[0]
    with pytest.raises(fmt.CaptureError, match="c.npz: process 1 has no VMA starting at 0x10000000"):
        ScenarioContents(s, 0).pages(region.fill, region.pages)


# ------------------------------------------------------------------------- live capture --

SECRET = "ksmtui-secret-7c1e0b9a-do-not-leak"
CHILD = f"""
import mmap, sys
m = mmap.mmap(-1, 8 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(8):
    m[i * 4096:(i + 1) * 4096] = ({SECRET!r} * 200).encode()[:4096] if i < 6 else bytes(4096)
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def secret_child():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n"
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_a_capture_holds_no_page_contents(tmp_path, secret_child, capsys):
    """The secret, planted in the captured process's memory, is nowhere in the file: not in its
    bytes, not in any decompressed member, not in any array."""
    if not Path(f"/proc/{secret_child}/mem").exists():
        pytest.skip("no /proc/PID/mem")
    out = tmp_path / "c.npz"
    assert cli(["capture", str(secret_child), "-o", str(out)]) == 0
    needle = SECRET.encode()
    raw = out.read_bytes()
    assert needle not in raw and needle[:12] not in raw
    with zipfile.ZipFile(out) as z:
        for name in z.namelist():
            member = z.read(name)
            assert needle[:12] not in member and needle[:12] not in zlib.compress(member)
    with np.load(out) as z:
        for name in z.files:
            a = z[name]
            assert needle[:12] not in np.ascontiguousarray(a).tobytes()
            assert SECRET[:12] not in str(a.tolist())
    cap = fmt.load(out)
    # and the pages are there: six equal ones and two zero ones in the mmap
    per_vma = [cap.vma_contents(v) for v in range(len(cap.vma_proc))]
    assert any(len(ids) >= 8 and np.bincount(ids).max() >= 6 and (ids == 0).sum() >= 2 for ids in per_vma)
    # its unit is the child's own cgroup (the one we are in), as /proc says it
    from ksmtui.host.units import identify
    assert cap.units() == [identify(secret_child).to_json()] and "cgroup" in cap.units()[0]


def test_capture_errors_are_one_line(tmp_path, capsys):
    assert cli(["capture", "999999999", "-o", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert err == "ksmtui capture: error: pid 999999999: no such process\n"
    assert cli(["capture", "-o", str(tmp_path / "x.npz")]) == 2
    assert "expected PID..., --mergeable or --all" in capsys.readouterr().err
    assert cli(["capture", "12x"]) == 2
    assert "expected a process id" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_capture_without_permission_is_one_line(secret_child):
    """An unprivileged user may not read another user's process: one line, exit 2. The command
    runs in a forked child that drops root (nobody cannot run this venv's interpreter)."""
    import os
    import pwd

    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    nobody = pwd.getpwnam("nobody")
    out = Path(tempfile.mkdtemp(prefix="ksmtui-test-")) / "x.npz"  # under /tmp: nobody can get there
    out.parent.chmod(0o777)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            sys.stderr = os.fdopen(write, "w")  # pytest captures sys.stderr above fd 2
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            code = cli(["capture", str(secret_child), "-o", str(out)])
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2, err
    assert err.count("\n") == 1 and "permission denied" in err and "Traceback" not in err
    assert not out.exists()
    out.parent.rmdir()


def test_capture_writes_a_scenario_that_runs(tmp_path, secret_child, capsys):
    """The child's mmap is marked mergeable by no one: a scenario needs --merge-any, and says so."""
    out = tmp_path / "w.npz"
    assert cli(["capture", str(secret_child), "-o", str(out), "--scenario"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no process has memory KSM may merge (--merge-any" in err
    assert not out.exists() and not out.with_suffix(".toml").exists()
    assert cli(["capture", str(secret_child), "-o", str(out), "--scenario", "--merge-any"]) == 0
    assert "wrote " + str(out.with_suffix(".toml")) in capsys.readouterr().out
    assert cli(["check", str(out.with_suffix(".toml"))]) == 0
    assert capsys.readouterr().out.startswith("ok: w (1 process, ")


def test_a_process_that_exits_mid_capture_is_a_note(monkeypatch, secret_child):
    """Killed between reading its pagemap and its memory: the capture keeps what it read."""
    import os
    import signal

    from ksmtui.host import procmem as live

    real = live._read_run

    def read_after_exit(mem, addr, n, page_size):
        os.kill(secret_child, signal.SIGKILL)
        os.waitpid(secret_child, 0)
        return real(mem, addr, n, page_size)

    monkeypatch.setattr(live, "_read_run", read_after_exit)
    cap, notes = live.capture([secret_child], explicit=True, show_progress=False, key=bytes(32))
    assert any(f"pid {secret_child} (python" in n and "exited during the capture" in n for n in notes)
    assert cap.proc_pid.tolist() == [secret_child]


def test_estimate_uses_the_ksmd_costs_bench_measured(tmp_path, monkeypatch, capsys):
    from ksmtui.host import costs as ksmd_costs

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = _capture_file(tmp_path)
    assert cli(["estimate", str(path)]) == 0
    assert "costs: reference costs (run `ksmtui calibrate`" in capsys.readouterr().out
    saved = ksmd_costs.save({"settled": 450.0, "unique": 9000.0, "changing": 1300.0}, 20000)
    assert saved == tmp_path / "cache" / "ksmtui" / "ksmd-costs.json"
    ksmd_costs.save({"unique": 15000.0}, 1 << 20)  # a bigger machine's trees: kept beside
    assert cli(["estimate", str(path), "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]
    assert cost["ns_per_page"]["unique"] == 9000 and cost["ns_per_page"]["first_visit"] == 1300
    assert cost["costs"]["paths"]["zero_merge"] == "cost model"
    assert "ksmtui bench on this machine: changing at 20,000 pages" in cost["costs"]["measured"]
    assert ksmd_costs.load(1 << 21)[0]["unique"] == 15000.0


def test_a_content_held_by_one_physical_page_never_merges():
    """Pages shared since fork (same frame id): alone they stay unmerged; with a copy elsewhere
    they merge like separate copies."""
    cap = fmt.from_contents([
        (1, "parent", [(fmt.MERGEABLE, [3, 4], [0, 1])]),
        (2, "child", [(fmt.MERGEABLE, [3, 4], [0, 1])]),
        (3, "other", [(fmt.MERGEABLE, [4])]),
    ])
    e = estimate(cap, KNOBS)
    assert (e.ksm["pages_shared"], e.ksm["pages_sharing"], e.rmap_items) == (1, 2, 5)
    assert e.processes[1]["ksm_merging_pages"] == 1 and "shared since fork" in e.notes[0]


def test_the_scenario_of_fork_shared_pages_settles_alike(tmp_path):
    """A scenario cannot share a page by fork: such a content gets a page of its own per mapping,
    which KSM leaves unmerged just the same."""
    cap = fmt.from_contents([
        (1, "parent", [(fmt.MERGEABLE, [3, 4, 5], [0, 1, -1])]),
        (2, "child", [(fmt.MERGEABLE, [3, 4, 6], [0, 1, -1])]),
        (3, "other", [(fmt.MERGEABLE, [4, 5])]),
    ])
    est = estimate(cap, KNOBS)
    model = model_of(cap, tmp_path / "c.npz", {**KNOBS, "pages_to_scan": 1000}, est.ksm["full_scans"])
    assert {k: model["ksm"][k] for k in SETTLED} == {k: est.ksm[k] for k in SETTLED}


@pytest.mark.parametrize(("settings", "says"), [
    (["run=0"], "ksmd is not running (run 0): nothing is scanned and nothing merges."),
    (["run=2"], "ksmd unmerges every KSM page and stops (run 2): nothing stays merged."),
    (["pages_to_scan=0"], "scans nothing (pages_to_scan 0): nothing merges."),
])
def test_estimate_says_nothing_merges_when_ksmd_does_not_scan(tmp_path, capsys, settings, says):
    path = _capture_file(tmp_path)
    assert cli(["estimate", str(path), *(a for s in settings for a in ("--set", s))]) == 0
    out = capsys.readouterr().out
    assert says in out and "KSM would settle to this state" in out
    knob = settings[0].split("=")[0]
    assert f"getting there: never ({knob} {settings[0].split('=')[1]})" in out
    assert "full scans" not in out and "settled state," not in out
    assert cli(["estimate", str(path), "--json", *(a for s in settings for a in ("--set", s))]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]
    assert cost["wall_s"] is None and cost["full_scans"] == 0 and says.rstrip(".") in cost["not_merging"]


def test_estimate_with_the_advisor_times_the_passes_where_it_starts_and_says_so(tmp_path, capsys):
    path = _capture_file(tmp_path)
    assert cli(["estimate", str(path), "--set", "advisor_mode=scan-time", "--set", "pages_to_scan=100"]) == 0
    out = capsys.readouterr().out
    assert "at pages_to_scan 500 and" in out and "at pages_to_scan 100" not in out
    assert "advisor_mode scan-time sets pages_to_scan as ksmd goes" in out and "assume it stays at 500" in out
    cost = estimate(fmt.load(path), {**KNOBS, "advisor_mode": "scan-time", "advisor_min_pages_to_scan": 1}).cost
    assert [p["batches"] for p in cost["passes"]] == [4, 4]  # 3 pages, one a batch, and the batch meeting the end


def test_estimate_at_run_1_says_how_long_getting_there_takes(tmp_path, capsys):
    path = _capture_file(tmp_path)
    assert cli(["estimate", str(path), "--set", "run=1"]) == 0
    out = capsys.readouterr().out
    assert "settled state, as" in out and "getting there: 2 full scans" in out and "nothing merges" not in out
