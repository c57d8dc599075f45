"""`ksmtui host --why PID` (ksmtui.host.register): what registering any process would save, on real
child processes: one registered (madvised), one not, mapping pages equal to the registered one's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ksmtui.cli import main as cli
from ksmtui.host.register import inspect

PAGES = 48

# Each page is a 16-byte seed repeated (doubled in place by mmap.move): no page-sized bytes object
# ever exists in the heap, so no heap page can equal a mapped one and the arithmetic below is exact.
CHILD = r"""
import mmap, sys
page, n, register = mmap.PAGESIZE, int(sys.argv[1]), sys.argv[2] == "1"
buf = mmap.mmap(-1, n * page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(n):
    at = i * page
    buf[at:at + 16] = b"why-pid %07d\n" % i
    size = 16
    while size < page:
        buf.move(at + size, at, size)
        size *= 2
if register:
    buf.madvise(mmap.MADV_MERGEABLE)
print("ready", flush=True)
sys.stdin.read()
"""


def child(register: bool) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(PAGES), "1" if register else "0"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


@pytest.mark.kernel
def test_registering_a_process_with_the_registered_ones_pages_saves_them(kernel, capsys):
    if os.geteuid() != 0:
        pytest.skip("--why captures other processes' memory: root")
    registered, unknown = child(True), child(False)
    try:
        r = inspect(unknown.pid)
        assert r.others == [registered.pid], f"foreign processes registered with KSM: {r.others}"
        assert not r.registered and r.comm.startswith("python")
        assert r.pages >= PAGES  # its heap too: merge-any scans every VMA KSM may merge
        assert r.others_saved == 0  # the registered one's pages are all different
        # its pages pair with the registered one's, and its own heap saves what it saves alone
        assert r.gain == r.together - r.others_saved == PAGES + r.alone

        mine = inspect(registered.pid)  # registered: the other is not, so it is alone
        assert mine.registered and mine.others == [] and mine.others_saved == 0
        assert mine.together == mine.alone

        assert cli(["host", "--why", str(unknown.pid)]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"pid {unknown.pid} (python") and "registered with KSM now: no" in out
        assert f"{r.gain:,} pages" in out
        assert cli(["host", "--why", str(unknown.pid), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["gain"] == r.gain
    finally:
        for p in (registered, unknown):
            assert p.stdin is not None
            p.stdin.close()
            p.wait(timeout=10)
    assert cli(["host", "--why", str(unknown.pid)]) == 2  # gone
    assert capsys.readouterr().err == f"ksmtui host: error: --why {unknown.pid}: pid {unknown.pid}: no such process\n"


def test_a_kernel_thread_or_a_gone_pid_is_one_line_and_status_2(capsys):
    assert cli(["host", "--why", "2"]) == 2  # kthreadd
    assert capsys.readouterr().err == "ksmtui host: error: --why 2: pid 2 is a kernel thread: it has no user memory " \
        "KSM could merge\n"
    assert cli(["host", "--why", "1", "--record", "x.jsonl"]) == 2
    assert capsys.readouterr().err == "ksmtui host: error: argument --why: only with --json\n"
