"""`ksmtui host` and `ksmtui replay`: the sampler against the real kernel, recordings, bad input,
the tracing state left as found, and the host UI fed from a recording."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ksmtui.cli import main
from ksmtui.host import sampler as host
from ksmtui.host import sysfs, units
from ksmtui.host.recording import Recorder, read_recording
from ksmtui.host.sampler import HostSample, HostSampler, HostTrace
from ksmtui.host.units import Unit
from ksmtui.host.view import HostHistory
from ksmtui.ui.widgets.host import outcome_lines, savings_lines, scan_lines
from tests.host_helpers import CHILDREN, PREDICTED, SHARED, ZEROS, merging

ROOT = os.geteuid() == 0
# As host mode does: tracefs mounted where it is missing (unmounted when the tests end), so that a
# fresh machine runs the tracepoint tests rather than skipping them.
TRACE = ROOT and (sysfs.mount_tracefs() or True) and HostTrace.unavailable_reason() is None
KSMTUI = [sys.executable, "-m", "ksmtui"]


def instances() -> set[str]:
    return {p.name for p in (sysfs.TRACEFS / "instances").glob(f"{host.INSTANCE_PREFIX}*")}


def sample(t: float, **ksm) -> HostSample:
    counters = {"full_scans": 0, "pages_scanned": 0, "pages_shared": 0, "pages_sharing": 0, "general_profit": 0}
    counters.update(ksm)
    return HostSample(time=t, ksm=counters, knobs={"run": 1, "pages_to_scan": 100}, vmstat={"cow_ksm": 0},
                      ksmd={"pid": 40, "cpu_ns": int(t * 1e7)}, processes={}, trace=None, trace_note="not root")


# ------------------------------------------------------------------- the real kernel --

@pytest.mark.kernel
def test_real_processes_merge_as_predicted_while_host_mode_samples(kernel, tmp_path):
    """Counters and the process table equal sysfs and ksm_stat; the tracepoints count the merges
    the children's pages predict; the recording replays to the same screens."""
    if not TRACE:
        pytest.skip(HostTrace.unavailable_reason() or "not root")
    rec = tmp_path / "merge.jsonl"
    recorder = Recorder(str(rec), 0.2)
    live = HostHistory()
    with merging(lambda s: (recorder.add(s), live.add(s))) as (pids, samples):
        last = samples[-1]
        assert last.knobs["run"] == 0  # ksmd stopped: what sysfs says now is what the sample saw
        assert last.ksm == {name: int(sysfs.ksm_read(name)) for name in last.ksm}
        assert set(last.ksm) >= {"pages_shared", "pages_sharing", "general_profit", "full_scans"}
        assert {k: last.ksm[k] for k in PREDICTED["ksm"]} == PREDICTED["ksm"]
        for pid in pids:
            row = last.processes[str(pid)]
            want = sysfs.read_ksm_stat(pid)
            del want["pid"]
            assert {k: v for k, v in row.items() if k not in ("comm", "unit")} == want
            assert row["unit"]["cgroup"] == units.identify(os.getpid()).cgroup  # the children are in ours
            assert row["ksm_zero_pages"] == ZEROS and row["ksm_mergeable"] == "yes"
        assert sum(last.processes[str(p)]["ksm_merging_pages"] for p in pids) == SHARED * CHILDREN
        # why not merging: the madvised pages are candidates, the interpreter's heap is not madvised
        reasons = {r: kb for r, _, kb in host.why_not_merging(pids[0])}
        # (pages merged into the zero page have no Rss: they count with the ones never touched)
        assert reasons[host.CANDIDATES] == SHARED * 4 and reasons[host.NOT_RESIDENT] >= ZEROS * 4
        assert reasons[host.NOT_MADVISED] > 0
    recorder.close()
    header, replayed = read_recording(str(rec))
    assert header["version"] == 1 and [s.to_json() for s in replayed] == [s.to_json() for s in samples]
    again = HostHistory()
    for s in replayed:
        again.add(s)
    a, b = live.view(), again.view()
    for lines in (savings_lines, outcome_lines, lambda v: scan_lines(v, 60)):
        assert lines(a) == lines(b)
    merges = b.trace_totals["merges"]
    assert {k: merges[k] for k in PREDICTED["merges"]} == PREDICTED["merges"]


@pytest.mark.skipif(not TRACE, reason="the tracepoints need root and tracefs")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_leaves_tracing_as_it_was_found(sig):
    # Only this process's instance: others' test runs create and remove theirs meanwhile.
    proc = subprocess.Popen([*KSMTUI, "host", "--json", "--interval", "0.1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    mine = f"{host.INSTANCE_PREFIX}{proc.pid}"
    try:
        first = json.loads(proc.stdout.readline())
        assert first["trace"] is not None
        assert mine in instances()
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert mine not in instances()
    assert proc.returncode in (130, 128 + signal.SIGTERM)
    assert "Traceback" not in proc.stderr.read()


@pytest.mark.skipif(not TRACE, reason="the tracepoints need root and tracefs")
def test_host_mode_mounts_a_missing_tracefs_and_unmounts_it_when_done():
    """As trace-cmd does: tracefs unmounted, host mode mounts it, traces, and unmounts it on close.
    Only where tracefs can be unmounted (nothing holds it open) and so remounted afterwards."""
    def mounted() -> bool:
        return os.path.ismount(sysfs.TRACEFS)

    with sysfs.machine_lock():
        was, ours = mounted(), sysfs.mount_tracefs()  # ours: the tests mounted it (above)
        if ours:
            sysfs.unmount_tracefs()
        elif subprocess.run(["umount", str(sysfs.TRACEFS)], capture_output=True).returncode != 0:
            pytest.skip("tracefs is in use here: it cannot be unmounted to test the mounting")
        try:
            assert not mounted()
            with HostSampler(0.1) as sampler:
                assert mounted() and sampler.trace_note == ""
                assert sampler.sample().trace is not None
            assert not mounted()
        finally:
            if not mounted():  # as found: by the tests (unmounted when they end) or by the machine
                assert sysfs.mount_tracefs() if ours else subprocess.run(
                    ["mount", "-t", "tracefs", "nodev", str(sysfs.TRACEFS)]).returncode == 0
        assert mounted() == was


@pytest.mark.skipif(not TRACE, reason="the tracepoints need root and tracefs")
def test_an_instance_left_by_a_killed_host_is_removed_next_time():
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names an instance no live process owns, as after a SIGKILL
    stale = sysfs.TRACEFS / "instances" / f"{host.INSTANCE_PREFIX}{dead.pid}"
    stale.mkdir()
    try:
        with HostSampler(trace=True):
            assert stale.name not in instances()
    finally:
        if stale.exists():
            stale.rmdir()


@pytest.mark.skipif(not ROOT or not shutil.which("setpriv"), reason="needs root to become nobody")
def test_without_root_the_counters_work_and_the_trace_says_why():
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *KSMTUI, "host", "--json",
                          "--count", "1"], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["trace"] is None and "root" in s["trace_note"]
    assert "pages_sharing" in s["ksm"] and "cow_ksm" in s["vmstat"]
    # other users' processes: their ksm_stat is not readable, and their rows say so
    assert any(r.get("error") == "ksm_stat: Permission denied" for r in s["processes"].values())
    assert out.stderr.strip() == "ksmtui host: note: no tracepoints: the ksm tracepoints need root (tracefs)"


# ------------------------------------------------------------------------- sampling --

def test_json_lines_have_every_counter_and_the_processes(capsys, monkeypatch):
    monkeypatch.setattr(HostTrace, "unavailable_reason", staticmethod(lambda: "tracefs is not mounted"))
    assert main(["host", "--json", "--count", "2", "--interval", "0.05"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    s = json.loads(lines[0])
    assert set(s["ksm"]) == {n for n in os.listdir(sysfs.KSM_DIR) if n not in host.KSM_KNOBS}
    assert s["trace"] is None and s["trace_note"] == "tracefs is not mounted"
    for pid, row in s["processes"].items():
        assert pid.isdigit() and "comm" in row


def test_no_ksm_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sysfs, "KSM_DIR", tmp_path / "nope")
    assert main(["host", "--json"]) == 2
    err = capsys.readouterr().err
    assert err == f"ksmtui host: error: {tmp_path / 'nope'} does not exist: this kernel has no KSM (CONFIG_KSM)\n"


def fake_proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    rows = {
        "10": "ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit 0\n"
              "ksm_merge_any: no\nksm_mergeable: no\n",  # KSM does not know it: no row
        "11": "ksm_rmap_items 12\nksm_zero_pages 4\nksm_merging_pages 8\nksm_process_profit 61440\n"
              "ksm_merge_any: no\nksm_mergeable: yes\n",
        "12": "",  # a kernel thread
    }
    for pid, text in rows.items():
        (proc / pid).mkdir(parents=True)
        (proc / pid / "ksm_stat").write_text(text)
        (proc / pid / "comm").write_text(f"p{pid}\n")
    (proc / "13").mkdir()
    (proc / "13" / "ksm_stat").mkdir()  # unreadable as a file: the row says why
    (proc / "13" / "comm").write_text("p13\n")
    (proc / "14").mkdir()  # exited between listdir and the read: no ksm_stat, no row, no error
    (proc / "vmstat").write_text("nr_free_pages 1\ncow_ksm 3\nksm_swpin_copy 0\n")
    return proc


def test_processes_known_to_ksm_unreadable_ones_say_so_exited_ones_vanish(tmp_path, monkeypatch):
    monkeypatch.setattr(host, "PROC", str(fake_proc(tmp_path)))
    assert host.read_processes() == {
        "11": {"comm": "p11", "ksm_rmap_items": 12, "ksm_zero_pages": 4, "ksm_merging_pages": 8,
               "ksm_process_profit": 61440, "ksm_merge_any": "no", "ksm_mergeable": "yes"},
        "13": {"comm": "p13", "error": "ksm_stat: Is a directory"},
    }


def test_without_tracefs_the_panels_that_need_it_say_why(monkeypatch, tmp_path):
    monkeypatch.setattr(sysfs, "TRACEFS", tmp_path / "tracing")
    with HostSampler(0.1) as sampler:
        s = sampler.sample()
    reason = ("the ksm tracepoints need root (tracefs)" if not ROOT
              else f"tracefs is not mounted at {tmp_path / 'tracing'}")
    assert s.trace is None and s.trace_note == reason
    history = HostHistory()
    history.add(s)
    assert outcome_lines(history.view())[0] == f"merge outcomes need the ksm tracepoints: {reason}."


def test_why_not_merging_sorts_memory_by_what_ksm_can_do(tmp_path, monkeypatch):
    smaps = tmp_path / "1" / "smaps"
    smaps.parent.mkdir()
    vma = "{range} rw-p 00000000 00:00 0\nSize: {size} kB\nRss: {rss} kB\nAnonymous: {anon} kB\nVmFlags: {flags}\n"
    smaps.write_text(
        vma.format(range="1000-2000", size=400, rss=300, anon=300, flags="rd wr mr mw me ac mg")
        + vma.format(range="2000-3000", size=100, rss=100, anon=0, flags="rd mr mw me sh ms")
        + vma.format(range="3000-4000", size=2048, rss=2048, anon=0, flags="rd wr mr mw me ht")
        + vma.format(range="4000-5000", size=50, rss=40, anon=40, flags="rd wr mr mw me ac")
        + vma.format(range="5000-6000", size=30, rss=30, anon=10, flags="rd wr mr mw me mg")
    )
    monkeypatch.setattr(host, "PROC", str(tmp_path))
    assert host.why_not_merging(1) == [
        ("hugetlb (VM_HUGETLB)", 1, 2048),
        (host.CANDIDATES, 2, 310),
        (host.NOT_RESIDENT, 1, 100),
        ("shared mapping (VM_SHARED)", 1, 100),
        (host.NOT_MADVISED, 1, 40),
        (host.FILE_PAGES, 1, 20),
    ]


# ----------------------------------------------------------------------- recordings --

def write_recording(path: Path, samples: list[HostSample]) -> None:
    r = Recorder(str(path), 1.0)
    for s in samples:
        r.add(s)
    r.close()


def test_a_recording_reads_back_as_it_was_written(tmp_path):
    samples = [sample(100.0), sample(101.0, pages_scanned=500)]
    write_recording(tmp_path / "r.jsonl", samples)
    header, back = read_recording(str(tmp_path / "r.jsonl"))
    assert header["format"] == "ksmtui-host-recording" and header["version"] == 1
    assert back == samples


def test_rows_with_their_units_read_back_and_rows_of_older_recordings_have_none(tmp_path):
    rows = {"7": {"comm": "qemu", "ksm_rmap_items": 3, "unit": {"cgroup": "/qemu.slice/100.scope", "vmid": "100"}},
            "8": {"comm": "old", "ksm_rmap_items": 1}}
    write_recording(tmp_path / "r.jsonl", [dataclasses.replace(sample(100.0), processes=rows)])
    back = read_recording(str(tmp_path / "r.jsonl"))[1][0].processes
    assert back == rows
    assert [Unit.from_json(int(p), r["comm"], r.get("unit")) for p, r in back.items()] == [
        Unit(7, "qemu", "/qemu.slice/100.scope", vmid="100"), Unit(8, "old")]


@pytest.mark.parametrize("damage,where", [
    (lambda text: text.replace('"ksm":{', '"ksm":{"x":', 1), "line 2: not JSON"),
    (lambda text: text.replace('"version":1', '"version":7', 1), "line 1: format version 7 is newer"),
    (lambda text: '{"hello": 1}\n' + text, "line 1: expected the header"),
    (lambda text: text.replace('"processes":{}', '"processes":[]', 1), 'line 2: "processes": expected pids'),
    (lambda text: text.replace('"vmstat":', '"vmstats":', 1), "line 2: sample without 'vmstat'"),
    (lambda text: text.replace('"processes":{}', '"processes":{"9":{"comm":"x","unit":{"vm":1}}}', 1),
     'line 2: "processes.9.unit": expected an object of names to strings'),
    (lambda text: "", "line 1: empty file"),
    (lambda text: text.splitlines(keepends=True)[0], "line 2: no samples after the header"),
])
def test_a_bad_recording_is_one_line_naming_the_file_and_where(tmp_path, capsys, damage, where):
    path = tmp_path / "r.jsonl"
    write_recording(path, [sample(100.0), sample(101.0)])
    path.write_text(damage(path.read_text()))
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ksmtui replay: error: {path}: {where}") and err.count("\n") == 1


def test_a_recording_cut_mid_line_replays_what_came_before_with_a_note(tmp_path):
    path = tmp_path / "r.jsonl"
    write_recording(path, [sample(100.0), sample(101.0), sample(102.0)])
    path.write_text(path.read_text()[:-10])
    notes: list[str] = []
    header, samples = read_recording(str(path), notes)
    assert [s.time for s in samples] == [100.0, 101.0]
    assert notes == [f"{path}: line 4 was cut short (the recording was stopped while writing it); "
                     "replaying the 2 samples before it"]


def test_replay_of_a_missing_file(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "none.jsonl")]) == 2
    assert capsys.readouterr().err == f"ksmtui replay: error: {tmp_path / 'none.jsonl'}: no such file\n"


def test_replay_of_a_capture_says_it_is_one_and_what_reads_it(tmp_path, capsys):
    from engine.capture import from_contents, save

    path = tmp_path / "c.npz"
    save(from_contents([(1, "a", [])]), path)
    assert main(["replay", str(path)]) == 2
    assert capsys.readouterr().err == (f"ksmtui replay: error: {path}: a capture (ksmtui capture, .npz), "
                                       f"not a host recording: `ksmtui estimate {path}` reads it\n")


def test_a_recording_cut_mid_line_replays_the_samples_before_the_cut(tmp_path):
    """A host killed mid-write leaves a last line without its end: what came before is kept, with a
    note saying where it was cut (shown on the replay's screen and on stderr)."""
    path = tmp_path / "r.jsonl"
    samples = [sample(100.0), sample(101.0), sample(102.0)]
    write_recording(path, samples)
    path.write_text(path.read_text()[:-10])
    notes: list[str] = []
    header, back = read_recording(str(path), notes)
    assert back == samples[:2]
    assert notes == [f"{path}: line 4 was cut short (the recording was stopped while writing it); "
                     "replaying the 2 samples before it"]
    write_recording(path, samples)
    notes.clear()
    assert read_recording(str(path), notes)[1] == samples and notes == []


# ---------------------------------------------------------------- what the view derives --

def test_pass_progress_and_duration_from_full_scans_without_the_tracepoints():
    h = HostHistory()
    # one pass of 1,000 pages every 2 s, sampled every second
    for i in range(7):
        h.add(sample(100.0 + i, full_scans=i // 2, pages_scanned=500 * i, pages_sharing=100 * (i // 2)))
    v = h.view()
    assert v.pass_pages == 1000 and v.pass_done == 0
    assert [(p.number, p.seconds, p.exact) for p in v.passes] == [(2, 2.0, False), (3, 2.0, False)]
    assert v.scan_rate == 500.0
    assert v.eta_s == 2.0
    assert v.ksmd_cpu == pytest.approx(0.01)


def test_convergence():
    h = HostHistory()
    sharing = [0, 1000, 1500, 1750, 1875, 1880, 1881]
    for i, n in enumerate(sharing):
        h.add(sample(100.0 + i, full_scans=i, pages_scanned=100 * i, pages_sharing=n))
        if i == 3:
            assert h.view().convergence() == "convergence: - (2 of 3 passes seen)"
        if i == 4:
            assert h.view().convergence() == "converging: +125 last pass; settles in ~3 passes (~3 s, est.)"
        if i == 5:
            assert h.view().convergence() == "settling: +5 last pass (< 1%); settled if the next pass moves < 1% too"
    assert h.view().convergence() == "settled: pages_sharing moved < 1% in each of 2 passes"


def test_a_sample_reads_known_and_new_pids_and_every_pid_every_full_every_samples(tmp_path, monkeypatch):
    proc = fake_proc(tmp_path)
    monkeypatch.setattr(host, "PROC", str(proc))
    known = "ksm_rmap_items 1\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit -64\n" \
            "ksm_merge_any: no\nksm_mergeable: yes\n"
    with HostSampler(0.1, trace=False) as sampler:
        assert set(sampler.sample().processes) == {"11", "13"}
        (proc / "15").mkdir()
        (proc / "15" / "ksm_stat").write_text(known)
        (proc / "15" / "comm").write_text("new\n")
        (proc / "10" / "ksm_stat").write_text(known)  # an old pid that registers with ksmd later
        assert set(sampler.sample().processes) == {"11", "13", "15"}  # a new pid shows at once
        for _ in range(2, host.FULL_EVERY):
            assert "10" not in sampler.sample().processes
        assert "10" in sampler.sample().processes  # the full look, every FULL_EVERY samples
        (proc / "12" / "ksm_stat").write_text(known)
        assert "12" in sampler._processes({"counts": {"ksm_enter": 1}})  # the tracepoint says: look now
        (proc / "11" / "ksm_stat").unlink()
        assert "11" not in sampler.sample().processes  # it exited


def test_a_row_carries_its_unit_read_when_new_and_at_every_full_look(tmp_path, monkeypatch):
    proc = fake_proc(tmp_path)
    (proc / "11" / "cgroup").write_text("0::/machine.slice/machine-qemu\\x2d1\\x2dg1.scope/libvirt/emulator\n")
    (proc / "11" / "cmdline").write_bytes(b"qemu-system-x86_64\0-name\0guest=g1.lab,debug-threads=on\0")
    monkeypatch.setattr(host, "PROC", str(proc))
    with HostSampler(0.1, trace=False) as sampler:
        rows = sampler.sample().processes
        assert rows["11"]["unit"] == {"cgroup": "/machine.slice/machine-qemu\\x2d1\\x2dg1.scope/libvirt/emulator",
                                      "unit": "machine-qemu\\x2d1\\x2dg1.scope", "slice": "machine.slice",
                                      "vm": "g1.lab"}
        assert "unit" not in rows["13"]  # no /proc/13/cgroup: gone as far as the unit goes
        (proc / "11" / "cgroup").write_text("0::/system.slice/other.service\n")  # moved
        for _ in range(1, host.FULL_EVERY):
            assert sampler.sample().processes["11"]["unit"]["slice"] == "machine.slice"
        assert sampler.sample().processes["11"]["unit"]["slice"] == "system.slice"  # the full look


def test_events_the_kernel_dropped_are_said():
    h = HostHistory()
    trace = {"counts": {"ksm_merge_with_ksm_page": 5}, "merges": {"stable": 5}, "errors": {}, "passes": [],
             "advisor": [], "events": [], "lost": 7}
    for t in (100.0, 101.0):
        h.add(HostSample(time=t, ksm={"pages_shared": 1}, knobs={}, vmstat={}, ksmd={}, processes={}, trace=trace))
    lines = outcome_lines(h.view())
    assert "lost: 14 events the kernel dropped (ring buffer full): the counts are short" in lines
    assert lines[1].split()[-2:] == ["10", "5"]  # stable-tree merges: since the first sample, last sample


# ------------------------------------------------------------------- alerts and CSV --

RECORDING = Path(__file__).parent / "data" / "host-merge.jsonl"


def test_alerts_hold_for_negative_profit_and_for_ksmd_above_its_cpu_limit_only():
    from ksmtui.host.alerts import alerts, ksmd_cpu

    s = read_recording(str(RECORDING))[1][4]  # general_profit -2,304: the rmap_items before the first merge
    assert [a["alert"] for a in alerts(s, None)] == ["negative_profit"]
    assert alerts(s, None)[0]["text"] == "general_profit -2 KiB: KSM costs more memory than it saves"
    calm = dataclasses.replace(s, ksm={**s.ksm, "general_profit": 0})
    assert alerts(calm, 0.69) == [] and alerts(calm, None) == []  # under advisor_max_cpu (70), or no figure
    [cpu] = alerts(calm, 0.71)
    assert cpu == {"alert": "ksmd_cpu", "value": 71.0, "limit": 70.0,
                   "text": "ksmd CPU 71.0% of a CPU, above 70% (advisor_max_cpu)"}
    assert alerts(calm, 0.71, alert_cpu=80) == [] and alerts(calm, 0.71, alert_cpu=-1) == []  # 80%; off
    assert alerts(calm, 0.06, alert_cpu=5)[0]["text"] == "ksmd CPU 6.0% of a CPU, above 5% (--alert-cpu)"
    later = dataclasses.replace(s, time=s.time + 2, ksmd={**s.ksmd, "cpu_ns": s.ksmd["cpu_ns"] + 500_000_000})
    assert ksmd_cpu(s, later) == 0.25 and ksmd_cpu(None, later) is None
    assert ksmd_cpu(s, dataclasses.replace(later, ksmd={"pid": 1, "cpu_ns": 0})) is None  # another ksmd


def test_csv_rows_beside_json_lines_on_this_host(tmp_path, capsys, monkeypatch):
    import csv

    monkeypatch.setattr(HostTrace, "unavailable_reason", staticmethod(lambda: "tracefs is not mounted"))
    out = tmp_path / "s.csv"
    assert main(["host", "--json", "--csv", str(out), "--count", "3", "--interval", "0.05"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(lines) == 3
    for row, s in zip(rows, lines, strict=True):
        assert all(row[name] == str(v) for name, v in s["ksm"].items() if name != "general_profit")
        assert row["general_profit_bytes"] == str(s["ksm"]["general_profit"])  # the unit in the name
        assert row["advisor_max_cpu_pct"] == str(s["knobs"]["advisor_max_cpu"]) and row["run"] == str(s["knobs"]["run"])
        assert row["why_not"] == "; ".join(r["reason"] for r in s["why_not"])
        assert row["alerts"] == "; ".join(a["alert"] for a in s["alerts"])
        assert row["trace_ksm_merge_one_page"] == ""  # not traced: empty, not 0
    assert rows[0]["ksmd_cpu_pct"] == "" and rows[1]["ksmd_cpu_pct"] != ""  # a share needs two samples


def test_csv_of_a_path_that_cannot_be_written_is_one_line(tmp_path, capsys):
    assert main(["host", "--csv", str(tmp_path / "no" / "s.csv"), "--no-ui", "--count", "1"]) == 2
    assert capsys.readouterr().err == f"ksmtui host: error: --csv: {tmp_path / 'no' / 's.csv'}: No such file or " \
                                      "directory\n"


def test_a_killed_csv_run_leaves_whole_rows(tmp_path):
    import csv

    out = tmp_path / "s.csv"
    proc = subprocess.Popen([*KSMTUI, "host", "--csv", str(out), "--no-ui", "--interval", "0.05", "--no-trace"],
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while (not out.exists() or out.read_text().count("\n") < 4) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    text = out.read_text()
    rows = list(csv.reader(text.splitlines()))
    assert text.endswith("\n") and len(rows) >= 4 and {len(r) for r in rows} == {len(rows[0])}


def test_replay_exports_a_recording_as_csv_with_its_alerts(tmp_path):
    import csv

    out = tmp_path / "r.csv"
    assert main(["replay", str(RECORDING), "--csv", str(out)]) == 0
    samples = read_recording(str(RECORDING))[1]
    rows = list(csv.DictReader(out.open()))
    assert [r["pages_sharing"] for r in rows] == [str(s.ksm["pages_sharing"]) for s in samples]
    assert [r["alerts"] for r in rows] == ["negative_profit" if s.ksm["general_profit"] < 0 else "" for s in samples]
    assert main(["replay", str(RECORDING), "--csv", str(out), "--alert-cpu", "0"]) == 0
    rows = list(csv.DictReader(out.open()))
    # above 0% of a CPU: every sample but the first (no share yet) and the last (ksmd idle, run=0)
    assert [r["alerts"].endswith("ksmd_cpu") for r in rows] == [False] + [True] * 10 + [False]
    assert rows[-1]["ksmd_cpu_pct"] == "0.00"
