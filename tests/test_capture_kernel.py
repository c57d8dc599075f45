"""Captures of live processes, estimated, then settled by the real ksmd: the counters must agree.

Each test holds the machine lock (the `kernel` fixture) and leaves KSM at its defaults. Two kinds
of workload: the kernel runner's children with known contents (pools, zero pages, chains with a
leftover page, a merge-any process), and real programs (python3 interpreters that set
prctl(PR_SET_MEMORY_MERGE), so all of their anonymous memory is mergeable: heap, stacks, the
copied-on-write pages of their libraries).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import capture as fmt
from engine.estimate import estimate
from engine.knobs import KSM_KNOBS
from engine.scenario import Stop, scenario_from_capture
from engine.sim import Simulation
from ksmtui.host import sysfs
from ksmtui.host.procmem import capture, mergeable_pids
from ksmtui.kernel.run import KernelRun, run_on_kernel
from tests.engine_helpers import proc, region, scenario

pytestmark = pytest.mark.kernel

SETTLED = ("pages_shared", "pages_sharing", "ksm_zero_pages", "stable_node_chains", "stable_node_dups",
           "general_profit")
PER_PROCESS = ("ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit")
FAST = {"pages_to_scan": 5000, "sleep_millisecs": 20}


def _knobs(**ksm) -> dict:
    return {**{k: v.default for k, v in KSM_KNOBS.items()}, **FAST, **ksm}


def _model_of_capture(cap: fmt.Capture, tmp_path, knobs: dict, full_scans: int) -> dict:
    path = tmp_path / "c.npz"
    fmt.save(cap, path)
    sim = Simulation(scenario_from_capture(path), overrides={k: knobs[k] for k in KSM_KNOBS})
    sim.run(full_scans=full_scans)
    return sim.result()


def _run_ksmd(full_scans: int, pids: list[int]) -> tuple[dict, dict]:
    """Run ksmd until full_scans reads this much, then stop it: sysfs's counters and each
    process's ksm_stat."""
    sysfs.ksm_write("run", 1)
    deadline = time.monotonic() + 60
    while int(sysfs.ksm_read("full_scans")) < full_scans:
        assert time.monotonic() < deadline, "ksmd did not complete its passes in a minute"
        time.sleep(0.01)
    sysfs.ksm_write("run", 0)
    return sysfs.read_counters(), {pid: sysfs.read_ksm_stat(pid) for pid in pids}


def _per_process(stats: dict) -> dict:
    return {k: stats[k] for k in PER_PROCESS}


@pytest.mark.parametrize("use_zero_pages", [0, 1])
def test_runner_children_estimate_equals_the_kernel(kernel, tmp_path, use_zero_pages):
    ksm = {"max_page_sharing": 3, "use_zero_pages": use_zero_pages, **FAST}
    s = dataclasses.replace(scenario(
        proc("a", region("lib", 40, "pool", pool="lib"), region("z", 20, "zero"), region("x", 10, "byte", byte=0xCF),
             region("own", 16)),
        proc("b", region("lib", 40, "pool", pool="lib", order="shuffled"), region("x", 4, "byte", byte=0xCF),
             region("hidden", 8, "byte", byte=0xCF, mergeable=False)),
        proc("c", region("x", 12, "byte", byte=0x11, mergeable=False), region("z", 7, "zero", mergeable=False),
             merge_any=True),
        pools=[("lib", 40)], ksm=ksm), stop=Stop())
    with KernelRun(s) as run:
        pids = [p.pid for p in run.procs.values()]
        assert set(pids) <= set(mergeable_pids())  # `ksmtui capture --mergeable` finds them
        cap, notes = capture(pids, explicit=True, show_progress=False, key=os.urandom(fmt.KEY_BYTES))
        assert notes == []
        est = estimate(cap, _knobs(**ksm))
        run.start()
        run.run(full_scans=est.ksm["full_scans"])
        real = sysfs.read_counters()
        real_procs = {p.pid: sysfs.read_ksm_stat(p.pid) for p in run.procs.values()}
        run.run(full_scans=est.ksm["full_scans"] + 2)
        later = sysfs.read_counters()
    expected = {k: est.ksm[k] for k in SETTLED}
    assert {k: real[k] for k in SETTLED} == expected
    assert {k: later[k] for k in SETTLED} == expected
    for pid in pids:
        assert _per_process(real_procs[pid]) == _per_process(est.processes[pid]), pid
    # what the model settles to on the captured shape
    model = _model_of_capture(cap, tmp_path, _knobs(**ksm), est.ksm["full_scans"])
    assert {k: model["ksm"][k] for k in SETTLED} == expected
    # the chains and the leftover: 0xCF: 10 + 4 copies (the 8 unmarked ones do not count) at 3 a page
    assert est.ksm["stable_node_chains"] >= 1


PYTHON = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(67, 1, 0, 0, 0) != 0:  # PR_SET_MEMORY_MERGE
    sys.exit("prctl(PR_SET_MEMORY_MERGE): errno %d" % ctypes.get_errno())
data = b"k" * (4 << 20)  # the same data in every interpreter (a big object: its own mmap)
zeros = bytearray(bytes(1) * (2 << 20))  # written zeros: anonymous pages, not the zero page
print("ready", flush=True)
sys.stdin.read()
"""


_READ = {"x86_64": 0, "aarch64": 63}.get(platform.machine())  # read(2)'s number


def _wait_in_read_of_stdin(pid: int, timeout: float = 30.0) -> None:
    """Until the process is blocked in read(2) of its stdin (/proc/PID/syscall: the call and its
    first argument; or its wchan, the pipe's read)."""
    deadline = time.monotonic() + timeout
    while True:
        call = Path(f"/proc/{pid}/syscall").read_text().split()
        if call[:2] == [str(_READ), "0x0"] or Path(f"/proc/{pid}/wchan").read_text().endswith("pipe_read"):
            return
        assert time.monotonic() < deadline, f"pid {pid} not in read(2) of its stdin after {timeout:g} s: {call[:2]}"
        time.sleep(0.005)


def _interpreters(n: int) -> list[subprocess.Popen]:
    procs = []
    try:
        for _ in range(n):  # one at a time: their mm_slots are in this order, as the capture's
            p = subprocess.Popen([sys.executable, "-I", "-c", PYTHON], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            procs.append(p)
            line = p.stdout.readline()
            if line != b"ready\n":
                pytest.skip(f"python3 with merge-any did not start: {p.stderr.read().decode().strip()}")
    except BaseException:
        for p in procs:
            p.kill()
            p.wait()
        raise
    return procs


@pytest.mark.parametrize("max_page_sharing,use_zero_pages", [(256, 0), (4, 1)])
def test_python_interpreters_with_merge_any(kernel, tmp_path, max_page_sharing, use_zero_pages):
    """Three idle interpreters: their own memory, whatever it holds, estimated then settled."""
    knobs = _knobs(max_page_sharing=max_page_sharing, use_zero_pages=use_zero_pages)
    for name in ("max_page_sharing", "use_zero_pages", "pages_to_scan", "sleep_millisecs"):
        sysfs.ksm_write(name, knobs[name])
    procs = _interpreters(3)
    try:
        pids = [p.pid for p in procs]
        for pid in pids:  # what they allocate on the way to it would change their memory after the capture
            _wait_in_read_of_stdin(pid)
        cap, notes = capture(pids, explicit=True, show_progress=False, key=os.urandom(fmt.KEY_BYTES))
        assert notes == []
        est = estimate(cap, knobs)
        assert est.pages > 3 * 1536 and est.ksm["pages_sharing"] + est.ksm["ksm_zero_pages"] > 3 * 1000
        real, real_procs = _run_ksmd(est.ksm["full_scans"] + 1, pids)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert {k: real[k] for k in SETTLED} == {k: est.ksm[k] for k in SETTLED}
    for pid in pids:
        assert _per_process(real_procs[pid]) == _per_process(est.processes[pid]), pid
    model = _model_of_capture(cap, tmp_path, knobs, est.ksm["full_scans"])
    assert {k: model["ksm"][k] for k in SETTLED} == {k: est.ksm[k] for k in SETTLED}
    # and the captured shape realised on the real KSM (`ksmtui kernel` on the scenario): the same
    shaped = run_on_kernel(scenario_from_capture(tmp_path / "c.npz"), full_scans=est.ksm["full_scans"])
    assert {k: shaped["ksm"][k] for k in SETTLED} == {k: est.ksm[k] for k in SETTLED}
    assert shaped["data_check"]["mismatches"] == 0


FORKED = """
import mmap, os, sys
m = mmap.mmap(-1, 64 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
for i in range(64):  # 48 pages of this process's own, 16 of 4 contents every process has
    m[i * 4096:(i + 1) * 4096] = os.urandom(4096) if i < 48 else (b"common %d" % (i % 4)).ljust(4096, b".")
m.madvise(mmap.MADV_MERGEABLE)
child = os.fork() if sys.argv[1] == "fork" else 0
if child or sys.argv[1] != "fork":
    print("ready", child, flush=True)
sys.stdin.read()
"""


def test_pages_shared_since_fork(kernel, tmp_path):
    """A parent and its forked child map the same physical pages: a content held by one such page
    only never merges (ksmd meets the page itself in the unstable tree); one also held elsewhere
    merges as if every mapping were a copy."""
    knobs = _knobs()
    for name in ("pages_to_scan", "sleep_millisecs"):
        sysfs.ksm_write(name, knobs[name])
    procs, pids = [], []
    try:
        for mode in ("fork", "alone"):
            p = subprocess.Popen([sys.executable, "-I", "-c", FORKED, mode], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
            procs.append(p)
            _, child = p.stdout.readline().split()
            pids += [p.pid] + ([int(child)] if int(child) else [])
        cap, notes = capture(pids, explicit=True, show_progress=False, key=os.urandom(fmt.KEY_BYTES))
        assert notes == [] and cap.meta["pfns"]
        est = estimate(cap, knobs)
        assert any("shared since fork" in n for n in est.notes)
        assert (est.ksm["pages_shared"], est.ksm["pages_sharing"]) == (4, 3 * 16 - 4)
        real, real_procs = _run_ksmd(est.ksm["full_scans"] + 1, pids)
    finally:
        for pid in pids[1:2]:  # the forked child is not ours to wait for
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in procs:
            p.kill()
            p.wait()
    assert {k: real[k] for k in SETTLED} == {k: est.ksm[k] for k in SETTLED}
    for pid in pids:
        assert _per_process(real_procs[pid]) == _per_process(est.processes[pid]), pid
    model = _model_of_capture(cap, tmp_path, knobs, est.ksm["full_scans"])
    assert {k: model["ksm"][k] for k in SETTLED} == {k: est.ksm[k] for k in SETTLED}


GROUP_CHILD = r"""
import mmap, sys
page = mmap.PAGESIZE
group, me = sys.argv[1], sys.argv[2]
with open("/proc/self/comm", "w") as f:
    f.write(group)
pages = [f"everyone {i} ".encode() for i in range(6)] + [f"{group} {i} ".encode() for i in range(5)] \
    + [b""] * 3 + [f"{group} {me} own {i} ".encode() for i in range(2)]
buf = mmap.mmap(-1, len(pages) * page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i, head in enumerate(pages):
    buf[i * page:(i + 1) * page] = (head * page)[:page] if head else bytes(page)
buf.madvise(mmap.MADV_MERGEABLE)
print("ready", flush=True)
for line in sys.stdin:  # "m": mergeable again, "u": not
    buf.madvise(mmap.MADV_MERGEABLE if line.strip() == "m" else mmap.MADV_UNMERGEABLE)
    print("done", flush=True)
"""


# (max_page_sharing, use_zero_pages): what isolation costs, in pages. At 256, each of the 6 contents
# all four hold saves 3 pages, 1 + 1 isolated; at 3, 4 copies save 4 - ceil(4 / 3) = 2 either way,
# and so do the 12 zero pages (8, or 4 + 4); the zero page of use_zero_pages is everyone's
ISOLATION_COST = {(3, 0): 0, (256, 1): 6}


@pytest.mark.parametrize("max_page_sharing,use_zero_pages", list(ISOLATION_COST))
def test_isolated_estimate_equals_ksmd_on_one_group_at_a_time(kernel, max_page_sharing, use_zero_pages):
    """Two groups (by comm) of two processes: pages all four hold, pages each group's two hold,
    zero pages, pages of their own. The estimate isolated by comm equals, counter by counter, the
    real ksmd run with one group's memory mergeable at a time, summed; the unrestricted estimate
    equals the real ksmd with both groups."""
    from ksmtui.cli.estimate import _groups

    knobs = _knobs(max_page_sharing=max_page_sharing, use_zero_pages=use_zero_pages)
    for name in ("max_page_sharing", "use_zero_pages", "pages_to_scan", "sleep_millisecs"):
        sysfs.ksm_write(name, knobs[name])
    children: dict[str, list[subprocess.Popen]] = {"ksmgrp-a": [], "ksmgrp-b": []}

    def tell(group: str, what: str) -> None:
        for p in children[group]:
            p.stdin.write(f"{what}\n".encode())
            p.stdin.flush()
            assert p.stdout.readline() == b"done\n"

    def settle(passes: int) -> dict:
        start = int(sysfs.ksm_read("full_scans"))
        sysfs.ksm_write("run", 1)
        deadline = time.monotonic() + 60
        while int(sysfs.ksm_read("full_scans")) < start + passes + 1:
            assert time.monotonic() < deadline, "ksmd did not complete its passes in a minute"
            time.sleep(0.01)
        sysfs.ksm_write("run", 0)
        counters = sysfs.read_counters()
        sysfs.unmerge_all()  # every mm leaves ksmd's list: the next group starts from nothing
        return counters

    try:
        for i in range(2):
            for group in children:
                p = subprocess.Popen([sys.executable, "-I", "-c", GROUP_CHILD, group, str(i)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                children[group].append(p)
                assert p.stdout.readline() == b"ready\n"
        pids = [p.pid for p in children["ksmgrp-a"] + children["ksmgrp-b"]]
        cap, notes = capture(pids, explicit=True, show_progress=False, key=os.urandom(fmt.KEY_BYTES))
        assert notes == []
        names, of = _groups(cap, "comm")
        assert sorted(names) == ["ksmgrp-a", "ksmgrp-b"]
        free = estimate(cap, knobs)
        isolated = estimate(cap, knobs, salt=of)
        both = settle(free.ksm["full_scans"])
        summed = dict.fromkeys(SETTLED, 0)
        for on, off in (("ksmgrp-a", "ksmgrp-b"), ("ksmgrp-b", "ksmgrp-a")):
            tell(off, "u")
            tell(on, "m")
            alone = settle(isolated.ksm["full_scans"])
            for k in SETTLED:
                summed[k] += alone[k]
    finally:
        for p in (p for group in children.values() for p in group):
            p.kill()
            p.wait()
    assert {k: both[k] for k in SETTLED} == {k: free.ksm[k] for k in SETTLED}
    assert summed == {k: isolated.ksm[k] for k in SETTLED}
    assert free.saved_pages - isolated.saved_pages == ISOLATION_COST[max_page_sharing, use_zero_pages]
