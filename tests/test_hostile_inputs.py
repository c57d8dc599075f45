"""Issue 28: hostile captures, recordings, options and outputs. Each is one line on stderr and exit
status 2 (or works), within a 2 GB address space and seconds; strings from a process, the kernel or
a file never reach the terminal as control characters. Big or absurd files are made here, not
kept in the tree."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
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
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def pin_child():
    child = subprocess.Popen([sys.executable, "-c", PIN_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n"
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
    assert {r.tobytes() for r in a.hashes} == {r.tobytes() for r in b.hashes}
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
