"""Issue 28: hostile captures, recordings, options and outputs. Each is one line on stderr and exit
status 2 (or works), within a 2 GB address space and seconds; strings from a process, the kernel or
a file never reach the terminal as control characters. Big or absurd files are made here, not
kept in the tree."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xxhash

from engine import capture as fmt
from engine.scenario import ScenarioError, parse_scenario
from ksmtui.cli import main as cli

ESC = "\x1b]0;PWN\x07\x1b[2J\x9b"


def no_control(text: str) -> bool:
    return not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", text)


# ------------------------------------------------------------------------ escapes --

def test_estimate_shows_a_process_name_escaped(tmp_path, capsys):
    path = tmp_path / "c.npz"
    fmt.save(fmt.from_contents([(1, ESC, [(fmt.MERGEABLE, [1, 1, 0])]), (2, "b", [(fmt.MERGEABLE, [1])])]), path)
    assert cli(["estimate", str(path)]) == 0
    out = capsys.readouterr().out
    assert no_control(out) and "\\x1b]0;PWN\\x07" in out


# ------------------------------------------------------------------- keyed hashes --

PIN_CHILD = """
import mmap, sys
m = mmap.mmap(-1, 4 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m[0:8] = b"PIN=4271"
m[4096:4104] = b"PIN=4271"
m[8192:8193] = b"x"
import ctypes
print("ready", ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
sys.stdin.read()
"""


PIN_ADDRESS: dict[int, int] = {}  # pid -> where its PIN pages are mapped


@pytest.fixture
def pin_child():
    child = subprocess.Popen([sys.executable, "-c", PIN_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        ready, address = child.stdout.readline().split()
        assert ready == b"ready"
        PIN_ADDRESS[child.pid] = int(address)
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_a_low_entropy_page_cannot_be_guessed_from_a_capture(tmp_path, pin_child):
    """The attack of issue 28: hash every PIN page and look for it. The table is keyed with a
    secret the file does not hold; the equality of the two PIN pages is still there."""
    if not Path(f"/proc/{pin_child}/mem").exists():
        pytest.skip("no /proc/PID/mem")
    out = tmp_path / "c.npz"
    assert cli(["capture", str(pin_child), "-o", str(out)]) == 0
    cap = fmt.load(out)
    table = {row.tobytes() for row in cap.hashes}
    page = bytearray(4096)
    guesses = set()
    for n in range(10_000):
        page[:8] = b"PIN=%04d" % n
        guesses.add(xxhash.xxh3_128_digest(bytes(page)))
    assert not guesses & table
    assert xxhash.xxh3_128_digest(bytes(4096)) not in table  # not even the zero page
    assert cap.meta["hash"] == fmt.HASH_KEYED and re.fullmatch("[0-9a-f]{16}", cap.meta["key_id"])
    ids = [cap.vma_contents(v) for v in range(len(cap.vma_proc))]
    assert any(len(i) >= 3 and np.bincount(i).max() >= 2 for i in ids)  # the two PIN pages: one content


def test_a_key_file_makes_captures_compare_and_different_keys_refuse(tmp_path, pin_child, capsys):
    if not Path(f"/proc/{pin_child}/mem").exists():
        pytest.skip("no /proc/PID/mem")
    key = tmp_path / "key"
    for name in ("a.npz", "b.npz"):
        assert cli(["capture", str(pin_child), "-o", str(tmp_path / name), "--key-file", str(key)]) == 0
    assert cli(["capture", str(pin_child), "-o", str(tmp_path / "c.npz")]) == 0
    assert oct(key.stat().st_mode & 0o777) == "0o600" and len(key.read_bytes()) == fmt.KEY_BYTES
    a, b, c = (fmt.load(tmp_path / n) for n in ("a.npz", "b.npz", "c.npz"))
    assert a.meta["key_id"] == b.meta["key_id"] != c.meta["key_id"]

    def region(cap) -> list[bytes]:  # the child's three PIN pages; the interpreter's own pages may change
        v = next(v for v in range(len(cap.vma_proc))
                 if cap.vma_start[v] <= PIN_ADDRESS[pin_child] < cap.vma_end[v])
        first = cap.vma_first[v]
        index = cap.page_index[first:first + cap.vma_count[v]]
        pages = (PIN_ADDRESS[pin_child] - int(cap.vma_start[v])) // 4096 + np.arange(3)
        ids = cap.page_content[first:first + cap.vma_count[v]][np.searchsorted(index, pages)]
        return [cap.hashes[i].tobytes() for i in ids]

    assert region(a) == region(b)
    assert not {r.tobytes() for r in a.hashes} & {r.tobytes() for r in c.hashes}

    def scenario(first: str, second: str) -> str:
        text = 'name = "t"\n'
        for k, (name, cap) in enumerate(((first, a if first == "a.npz" else c), (second, b))):
            v = next(v for v in range(len(cap.vma_proc)) if len(cap.vma_contents(v)) >= 3)
            text += (f'[[process]]\nname = "p{k}"\n[[process.region]]\nname = "r"\nfill = "capture"\n'
                     f'capture = "{name}"\npid = {pin_child}\nvma = "{int(cap.vma_start[v]):#x}"\n'
                     f'pages = {len(cap.vma_contents(v))}\n')
        return text

    parse_scenario(scenario("a.npz", "b.npz"), "s.toml", tmp_path)  # one key: fine
    with pytest.raises(ScenarioError, match="captured with different keys"):
        parse_scenario(scenario("c.npz", "b.npz"), "s.toml", tmp_path)
    key.write_bytes(b"short")
    assert cli(["capture", str(pin_child), "-o", str(tmp_path / "d.npz"), "--key-file", str(key)]) == 2
    assert "expected 32 bytes" in capsys.readouterr().err and not (tmp_path / "d.npz").exists()


def test_an_unkeyed_capture_of_before_still_loads_and_a_bad_key_id_does_not(tmp_path):
    path = tmp_path / "old.npz"
    fmt.save(fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [1, 2, 0])])]), path)  # "hash": "xxh3_128"
    assert fmt.load(path).meta["hash"] == fmt.HASH
    cap = fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [1, 2, 0])])],
                            meta={"hash": fmt.HASH_KEYED, "key_id": "zz"})
    fmt.save(cap, path)
    with pytest.raises(fmt.CaptureError, match="16-hex-digit key_id"):
        fmt.load(path)


# ------------------------------------------------------------------- temporaries --

def test_a_symlink_at_the_old_temporary_name_is_not_followed(tmp_path, pin_child):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "out.npz.tmp").symlink_to(victim)
    assert cli(["capture", str(pin_child), "-o", str(tmp_path / "out.npz")]) == 0
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz", "out.npz.tmp", "victim.txt"]


def test_the_output_is_the_path_given(tmp_path, pin_child, capsys):
    assert cli(["capture", str(pin_child), "-o", str(tmp_path / "plain")]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["plain"] and fmt.load(tmp_path / "plain")
    (tmp_path / "d").mkdir()
    assert cli(["capture", str(pin_child), "-o", str(tmp_path / "d")]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert not (tmp_path / "d.npz").exists() and not list((tmp_path / "d").iterdir())
    assert cli(["capture", str(pin_child), "-o", "/dev/full"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a regular file" in err and not Path("/dev/full.npz").exists()


SLOW_SAVE = """
import sys, time
import numpy as np
from ksmtui.cli import main
def slow(f, **arrays):
    f.write(b"PK" + bytes(1 << 20))
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
np.savez_compressed = slow
sys.exit(main(["capture", sys.argv[1], "-o", sys.argv[2]]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_no_temporary_survives_a_signal(tmp_path, pin_child, sig):
    child = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, str(pin_child), str(tmp_path / "c.npz")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"writing\n"
        assert [p.name for p in tmp_path.iterdir()][0].endswith(".tmp")  # there while it writes
        child.send_signal(sig)
        assert child.wait(10) == 130
    finally:
        child.kill()
        child.wait()
    assert not list(tmp_path.iterdir())


# -------------------------------------------------------------- hostile captures --

LIMIT = 2 << 30  # the address space the hostile-input runs get (RLIMIT_AS)
LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from ksmtui.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_limited(*args: str, timeout: float = 30, stdin=None) -> tuple[int, str, str]:
    """`ksmtui ARGS` in a child under a 2 GB address-space limit: (status, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-c", LIMITED.format(limit=LIMIT), *args], capture_output=True,
                       timeout=timeout, stdin=stdin)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def one_line(status: int, err: str, *words: str) -> bool:
    return status == 2 and err.count("\n") == 1 and "Traceback" not in err and all(w in err for w in words)


def npy_member(shape: tuple, dtype: str, data: bytes = b"") -> bytes:
    """An .npy member whose header claims shape, followed by data (however little)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def hostile_capture(path: Path, **members) -> Path:
    """A valid capture with members replaced: an array, or the raw bytes of an .npy member."""
    fmt.save(fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [1, 2, 0])])]), path)
    with zipfile.ZipFile(path) as z:
        kept = {i.filename: z.read(i) for i in z.infolist()}
    for name, value in members.items():
        if isinstance(value, np.ndarray):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, value, allow_pickle=False)
            value = buf.getvalue()
        kept[f"{name}.npy"] = value
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in kept.items():
            z.writestr(name, data)
    return path


def meta_with(**fields) -> np.ndarray:
    meta = {"page_size": 4096, "kernel": "x", "captured_at": "", "hash": fmt.HASH, "knobs": {}, "numa_nodes": 1}
    meta.update(fields)
    return np.array(json.dumps(meta))


HOSTILE_CAPTURES = {
    "format-shape-2": ({"format": np.array([1, 1])}, "format: expected a version number"),
    "format-inf": ({"format": np.array(np.inf)}, "format: expected a version number"),
    "format-zero": ({"format": np.array(0)}, "format: expected a version number >= 1"),
    "format-negative": ({"format": np.array(-3)}, "format: expected a version number >= 1"),
    "meta-deep": ({"meta": np.array("[" * 100_000 + "]" * 100_000)}, "meta: nested too deeply"),
    "meta-list": ({"meta": np.array("[1]")}, "meta: expected a JSON object"),
    "page-size-1e400": ({"meta": np.array('{"page_size": 1e400}')}, "meta.page_size: expected a power of two"),
    "page-size-2-33": ({"meta": meta_with(page_size=2**33)}, "meta.page_size: expected a power of two"),
    "page-size-2-40": ({"meta": meta_with(page_size=2**40)}, "meta.page_size: expected a power of two"),
    "knobs-lots": ({"meta": meta_with(knobs="lots")}, "meta.knobs: expected an object"),
    "knobs-list": ({"meta": meta_with(knobs=["run", 1])}, "meta.knobs: expected an object"),
    "kernel-number": ({"meta": meta_with(kernel=5)}, "meta.kernel: expected a string"),
    "max-page-sharing-1": ({"meta": meta_with(knobs={"max_page_sharing": 1})}, "meta.knobs.max_page_sharing: expected "
                                                                               "an integer >= 2"),
    "shape-1e15": ({"page_index": npy_member((10**15,), "<i8", bytes(64))}, "claims shape (1000000000000000,)"),
    "shape-1e7-by-1e7": ({"hashes": npy_member((10**7, 10**7), "|u1", bytes(64))}, "claims shape (10000000, 10000000)"),
    "header-garbage": ({"page_index": b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}    \n"}, "array 'page_index'"),
    "objects": ({"proc_comm": npy_member((1,), "|O", bytes(8))}, "holds Python objects"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_CAPTURES))
def test_a_hostile_capture_is_one_line(tmp_path, name):
    members, message = HOSTILE_CAPTURES[name]
    path = hostile_capture(tmp_path / f"{name}.npz", **members)
    status, out, err = run_limited("estimate", str(path))
    assert one_line(status, err, str(path), message), err[-2000:]


def test_a_sound_capture_still_estimates_under_the_limit(tmp_path):
    """The memory check refuses what cannot fit, not what can: 200,000 pages under 2 GB."""
    path = tmp_path / "ok.npz"
    ids = np.arange(200_000) % 5_000
    fmt.save(fmt.from_contents([(1, "a", [(fmt.MERGEABLE, ids)]), (2, "b", [(fmt.MERGEABLE, ids)])]), path)
    status, out, err = run_limited("estimate", str(path), "--json")
    assert status == 0, err
    assert json.loads(out)["ksm"]["pages_shared"] == 5_000


def test_a_capture_larger_than_memory_is_refused_before_it_is_read(tmp_path):
    """400 MB of zeros in a 0.4 MB member: honest sizes, too large to estimate in 2 GB."""
    path = hostile_capture(tmp_path / "bomb.npz")
    with zipfile.ZipFile(path) as z:
        kept = {i.filename: z.read(i) for i in z.infolist() if i.filename != "page_frame.npy"}
    n = 100_000_000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for member, data in kept.items():
            z.writestr(member, data)
        with z.open("page_frame.npy", "w", force_zip64=True) as f:
            f.write(npy_member((n,), "<i4"))
            chunk = bytes(1 << 22)
            for _ in range(n * 4 // len(chunk)):
                f.write(chunk)
            f.write(bytes(n * 4 % len(chunk)))
    assert path.stat().st_size < 2 << 20
    status, out, err = run_limited("estimate", str(path))
    assert one_line(status, err, str(path), "too large for this machine"), err[-2000:]


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    status, out, err = run_limited("estimate", str(fifo), timeout=10)
    assert one_line(status, err, "not a regular file")


# ------------------------------------------------------------ hostile recordings --

RECORDINGS = Path(__file__).parent / "hostile" / "recordings"
RECORDING_ERRORS = {  # fixture: what the one line says
    "counter-10e400": '"ksm": expected an object of names to integers (within 64 bits)',
    "time-1e400": '"time": expected seconds since the epoch, got inf',
    "time-infinity": '"time": expected seconds since the epoch, got inf',
    "time-nan": '"time": expected seconds since the epoch, got nan',
    "process-field-wrong-type": '"processes.7.ksm_rmap_items": expected an integer',
    "pid-superscript": '"processes": expected pids (as strings of digits)',
    "event-malformed": '"trace.events": expected [seconds, event, text] items',
    "event-time-string": '"trace.events": expected [seconds, event, text] items',
    "version-true": "expected a format version >= 1, got True",
    "interval-negative": '"interval": expected seconds between samples (> 0), got -5',
    "interval-string": '"interval": expected seconds between samples',
    "interval-nan": '"interval": expected seconds between samples (> 0), got nan',
    "kernel-number": '"kernel": expected a string',
    "ksmd-float": '"ksmd": expected an object of names to integers',
}


def test_every_hostile_recording_fixture_has_its_message():
    assert sorted(p.stem for p in RECORDINGS.glob("*.jsonl")) == sorted(RECORDING_ERRORS)


@pytest.mark.parametrize("name", sorted(RECORDING_ERRORS))
def test_a_hostile_recording_is_one_line(name):
    path = RECORDINGS / f"{name}.jsonl"
    status, out, err = run_limited("replay", str(path))
    assert one_line(status, err, str(path), RECORDING_ERRORS[name]), err[-2000:]


HEADER = '{"format":"ksmtui-host-recording","version":1,"kernel":"6.1","interval":1}\n'
SAMPLE = '{"time":1,"ksm":{},"knobs":{},"vmstat":{},"ksmd":{},"processes":{},"trace":null}\n'


@pytest.mark.parametrize("text,message", [
    ('{"format":' + "[" * 100_000 + "]" * 100_000 + "}\n" + SAMPLE, "line 1: JSON nested too deeply"),
    (HEADER + '{"time":1,"x":' + "[" * 100_000 + "]" * 100_000 + "}\n", "line 2: JSON nested too deeply"),
    (HEADER + SAMPLE.replace('"ksm":{}', '"ksm":{"a":' + "7" * 5000 + "}"), "line 2: not JSON this reads"),
], ids=["header-deep", "sample-deep", "int-5000-digits"])  # short ids: the test's id is in the child's environment
def test_recordings_too_deep_or_too_long_to_parse_are_one_line(tmp_path, text, message):
    path = tmp_path / "r.jsonl"
    path.write_text(text)
    status, out, err = run_limited("replay", str(path))
    assert one_line(status, err, str(path), message), err[-2000:]


def test_replay_of_a_device_a_fifo_or_a_huge_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.jsonl"
    with open(huge, "wb") as f:
        f.truncate(1 << 40)  # sparse: a terabyte of nothing
    for path, message in (("/dev/zero", "not a regular file"), (fifo, "not a regular file"),
                          (huge, "too large for this machine")):
        status, out, err = run_limited("replay", str(path), timeout=10)
        assert one_line(status, err, str(path), message), err[-2000:]


# ------------------------------------------------------------------------- outputs --

@pytest.mark.parametrize("args", [["list"], ["check", "default"], ["run", "default", "--full-scans", "1", "--json"],
                                  ["estimate", "CAPTURE"]], ids=lambda a: a[0])
def test_stdout_on_a_full_disk_is_one_line(tmp_path, args):
    path = tmp_path / "c.npz"
    fmt.save(fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [1, 1, 0])])]), path)
    args = [str(path) if a == "CAPTURE" else a for a in args]
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "ksmtui", *args], stdout=full, stderr=subprocess.PIPE, timeout=60)
    err = p.stderr.decode()
    assert one_line(p.returncode, err, "cannot write the output: No space left on device"), err


# The disk fills once the first sample is written: room is left for half a sample more (a sample's
# size is the processes KSM knows on this machine, which others change: the limit cannot be set
# beforehand from a probe's size)
FILLING = """
import os, resource, signal, sys
from ksmtui.host import recording
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
add = recording.Recorder.add
def add_then_fill(self, sample):
    before = os.path.getsize(self.path)
    add(self, sample)
    if recording.Recorder.add is add_then_fill:
        after = os.path.getsize(self.path)
        limit = after + (after - before) // 2
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        recording.Recorder.add = add
recording.Recorder.add = add_then_fill
from ksmtui.cli import main
sys.exit(main(["host", "--json", "--count", "1000", "--interval", "0.05", "--no-trace", "--record", sys.argv[1]]))
"""


def test_host_record_onto_a_filling_disk_stops_with_one_line_and_the_recording_replays(tmp_path):
    if not Path("/sys/kernel/mm/ksm/run").exists():
        pytest.skip("no /sys/kernel/mm/ksm")
    from ksmtui.host.recording import read_recording

    path = tmp_path / "r.jsonl"
    p = subprocess.run([sys.executable, "-c", FILLING, str(path)], capture_output=True, timeout=60)
    err = p.stderr.decode().removeprefix("ksmtui host: note: no tracepoints: tracing off (--no-trace)\n")
    assert one_line(p.returncode, err, f"--record {path}: File too large; the recording holds the"), err
    notes: list[str] = []
    header, samples = read_recording(str(path), notes)
    held = int(err.split("the recording holds the ")[1].split()[0])
    # the first whole; then a second only if it is under half the first's size, and so on
    assert held == len(samples) and 1 <= held <= 3 and len(p.stdout.decode().splitlines()) >= held, err


# ------------------------------------------------------------------- live capture --

SPARSE_CHILD = """
import mmap, sys
NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Python < 3.13 lacks the name (0x4000 on x86 and arm64)
m = mmap.mmap(-1, 60 << 40, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | NORESERVE)
m[0:5] = b"first"
m[(60 << 40) - 4096:(60 << 40) - 4091] = b"last!"
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_60_tb_sparse_mapping_captures_in_seconds(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", SPARSE_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        line = child.stdout.readline()
        if line != b"ready\n":
            pytest.skip(f"no 60 TB mapping here: {child.stderr.read().decode()[-200:]}")
        out = tmp_path / "c.npz"
        # CPU time, not wall time: a busy machine stretches the one, not the other (a walk of 60 TB
        # of pages would take hours of either)
        start = time.process_time()
        assert cli(["capture", str(child.pid), "-o", str(out)]) == 0
        took = time.process_time() - start
    finally:
        child.kill()
        child.wait()
    cap = fmt.load(out)
    big = next(v for v in range(len(cap.vma_proc)) if int(cap.vma_end[v] - cap.vma_start[v]) >= 60 << 40)
    first = int(cap.vma_first[big])
    assert cap.page_index[first:first + int(cap.vma_count[big])].tolist() == [0, (60 << 40) // 4096 - 1]
    assert took < 2, f"{took:.1f} s of CPU"


def test_a_kernel_thread_is_named_as_such(capsys):
    assert cli(["capture", "2"]) == 2
    assert capsys.readouterr().err == ("ksmtui capture: error: pid 2 (kthreadd) is a kernel thread: it has no user "
                                       "memory to capture\n")
