"""Follow processes over time: their pages' contents sampled again and again (engine.follow is the
file), with the host's KSM counters and ksmd's CPU time at the same moments.

Each sample reads every present anonymous page of every followed process through procmem's
capture_process (pagemap, then /proc/PID/mem, hashed at once: no content is kept), so its cost is
that of a capture: about 1 ms per 1,000 pages on this machine. It is measured and kept per sample
(`sample_cost`); a sample that takes longer than the period delays the next one, never overlaps it.

Which processes: the roots given and all their descendants (a merge-any process's children inherit
merge-any), found anew at each sample from /proc/PID/stat's ppid; with `mergeable`, every process
registered with KSM as well.

`merge_any_workload` runs a command the way the cover letter's measurement did: under
prctl(PR_SET_MEMORY_MERGE), set in the child before exec (the flag survives exec and is inherited
by every fork), with ksmd at the kernel's defaults and nothing else merged, under the machine lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from engine import capture as cfmt
from engine import follow as ffmt
from ksmtui.host import procmem, sysfs

PR_SET_MEMORY_MERGE = 67
SMAPS_EVERY = 20  # samples between two reads of a process's smaps when its maps did not change


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            out[int(entry)] = int(stat[stat.rfind(")") + 2:].split()[1])
    return out


def descendants(roots: Sequence[int], ppids: dict[int, int]) -> list[int]:
    """The roots still alive and every process below them, in pid order."""
    children: dict[int, list[int]] = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = [r for r in roots if r in ppids]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    return sorted(seen)


class Follower:
    """Takes samples; `result()` is the Follow of all of them."""

    def __init__(self, roots: Sequence[int], mergeable: bool = False):
        self.roots = list(roots)
        self.mergeable = mergeable
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.zero = cfmt.zero_hash(self.page_size)
        self.ids: dict[bytes, int] = {self.zero: ffmt.ZERO_CONTENT}  # digest -> content id; never written
        self.procs: dict[int, int] = {}  # pid -> process index
        self.proc_rows: list[list] = []  # pid, ppid, comm, merge_any, first, last
        self.pages: dict[tuple[int, int], int] = {}  # (process index, vpn) -> page index
        self.page_rows: list[tuple[int, int, str]] = []
        self.last: list[tuple[int, int]] = []  # page index -> (content, frame) it holds now
        self.changes: list[tuple[int, int, int, int]] = []
        self.frames: dict[int, int] = {}  # pfn -> frame number; never written
        self.t: list[float] = []
        self.cost: list[float] = []
        self.ksmd_ns: list[int] = []
        self.counters: dict[str, list[int]] = {c: [] for c in ffmt.COUNTERS}
        self.t0: float | None = None
        self.ksmd = sysfs.ksmd_pid()
        self.pageflags = procmem.PageFlags()
        self.vma_cache: dict[int, tuple[bytes, list[procmem.Vma], int]] = {}

    def pids(self, ppids: dict[int, int]) -> list[int]:
        pids = set(descendants(self.roots, ppids))
        if self.mergeable:
            pids.update(procmem.mergeable_pids())
        pids.discard(os.getpid())
        return sorted(pids)

    def _vmas(self, pid: int) -> list[procmem.Vma]:
        """The VMAs ksmd scans (VM_MERGEABLE: ksm_do_scan skips every other) that hold anonymous
        pages. smaps (VmFlags, Anonymous:) walks
        every page table and costs ~5 ms a process here, so it is read again only when
        /proc/PID/maps (cheap) says the layout changed, or every SMAPS_EVERY samples: a library's
        VMA that had no anonymous page (no copy-on-write yet) is not read until then."""
        maps = Path(f"/proc/{pid}/maps").read_bytes()
        cached = self.vma_cache.get(pid)
        s = len(self.t)
        if cached is None or cached[0] != maps or s - cached[2] >= SMAPS_EVERY:
            vmas = [v for v in procmem.read_vmas(pid) if v.reason == cfmt.MERGEABLE and v.anon_kb != 0]
            cached = self.vma_cache[pid] = (maps, vmas, s)
        return cached[1]

    def _read(self, pid: int) -> list[tuple[procmem.Vma, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                           np.ndarray]] | None:
        """(vma, page indexes, digests, kernel zero page?, shared pfn or -1, folio head or -1) of
        every present anonymous page, or None
        if the process is gone or cannot be read. procmem's readers, without the per-capture extras
        (units, the second smaps read)."""
        try:
            vmas = self._vmas(pid)
            pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
        except OSError:
            return None
        try:
            mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        except OSError:
            os.close(pagemap)
            return None
        out = []
        ps = self.page_size
        try:
            for vma in vmas:
                for first, n in procmem._chunks(pagemap, vma, ps):
                    raw = os.pread(pagemap, 8 * n, 8 * (vma.start // ps + first))
                    if not raw:  # [vsyscall] (above the user address space), or the mm is gone
                        break
                    entries = np.frombuffer(raw, dtype=np.uint64)
                    anon = np.flatnonzero((entries & np.uint64(procmem.PM_PRESENT | procmem.PM_FILE))
                                          == np.uint64(procmem.PM_PRESENT))
                    if not len(anon):
                        continue
                    for run in np.split(anon, np.flatnonzero(np.diff(anon) != 1) + 1):
                        for s in range(0, len(run), procmem.RUN_PAGES):
                            part = run[s:s + procmem.RUN_PAGES]
                            got = procmem._read_run(mem, vma.start + (first + int(part[0])) * ps, len(part), ps)
                            if got is None:
                                return None
                            out.append((vma, *procmem._hash_run(got, first + part, entries[part],
                                                                self.pageflags, self.zero)))
        except OSError:
            return None
        finally:
            os.close(pagemap)
            os.close(mem)
        return out

    def sample(self) -> float:
        """One sample; returns the seconds it took."""
        start = time.monotonic()
        if self.t0 is None:
            self.t0 = start
        s = len(self.t)
        self.t.append(start - self.t0)
        counters = sysfs.read_counters()
        for c in ffmt.COUNTERS:
            self.counters[c].append(int(counters.get(c, 0)))
        self.ksmd_ns.append(sysfs.ksmd_cpu_ns(self.ksmd))
        ppids = _ppids()
        self.pageflags.flags.clear()  # a page's KSM flag is as of this sample
        seen: set[int] = set()
        for pid in self.pids(ppids):
            runs = self._read(pid)
            if runs is None:
                self.vma_cache.pop(pid, None)
                continue
            p = self.procs.get(pid)
            if p is None or self.proc_rows[p][5] < s - 1:  # new, or a pid reused after a gap
                stat = procmem._ksm_stat(pid)
                try:
                    comm = procmem._comm(pid)
                except procmem.NoSuchProcess:
                    continue
                p = self.procs[pid] = len(self.proc_rows)
                self.proc_rows.append([pid, ppids.get(pid, 0), comm, stat.get("ksm_merge_any") == "yes", s, s])
            self.proc_rows[p][5] = s
            for vma, index, digests, kzero, pfns, _folio in runs:
                vpn0 = vma.start // self.page_size
                raw = digests.tobytes()
                for k in range(len(index)):
                    key = (p, vpn0 + int(index[k]))
                    page = self.pages.get(key)
                    if page is None:
                        page = self.pages[key] = len(self.page_rows)
                        self.page_rows.append((p, key[1], vma.name))
                        self.last.append((ffmt.ABSENT, ffmt.OWN_FRAME))
                    if kzero[k]:
                        content = ffmt.ABSENT  # the kernel's zero page: not anonymous, ksmd never sees it
                    else:
                        content = self.ids.setdefault(raw[16 * k:16 * k + 16], len(self.ids))
                    pfn = int(pfns[k])
                    frame = ffmt.OWN_FRAME if pfn < 0 else self.frames.setdefault(pfn, len(self.frames))
                    seen.add(page)
                    if (content, frame) != self.last[page]:
                        self.last[page] = (content, frame)
                        self.changes.append((s, page, content, frame))
        for page, (content, _) in enumerate(self.last):
            if content != ffmt.ABSENT and page not in seen:
                self.last[page] = (ffmt.ABSENT, ffmt.OWN_FRAME)
                self.changes.append((s, page, ffmt.ABSENT, ffmt.OWN_FRAME))
        took = time.monotonic() - start
        self.cost.append(took)
        return took

    def result(self, meta: dict) -> ffmt.Follow:
        self.pageflags.close()
        rows = self.proc_rows
        ch = np.array(self.changes, np.int64).reshape(-1, 4)
        return ffmt.Follow(
            meta={"page_size": self.page_size, "kernel": os.uname().release, "machine": os.uname().machine,
                  "knobs": sysfs.read_knobs(), **meta},
            sample_t=np.array(self.t, np.float64), sample_cost=np.array(self.cost, np.float64),
            sample_ksmd_ns=np.array(self.ksmd_ns, np.int64),
            counters={c: np.array(v, np.int64) for c, v in self.counters.items()},
            proc_pid=np.array([r[0] for r in rows], np.int64), proc_ppid=np.array([r[1] for r in rows], np.int64),
            proc_comm=np.array([r[2] for r in rows], dtype=str).reshape(-1),
            proc_merge_any=np.array([r[3] for r in rows], bool),
            proc_first=np.array([r[4] for r in rows], np.int64), proc_last=np.array([r[5] for r in rows], np.int64),
            page_proc=np.array([r[0] for r in self.page_rows], np.int32).reshape(-1),
            page_vpn=np.array([r[1] for r in self.page_rows], np.int64).reshape(-1),
            page_vma=np.array([r[2] for r in self.page_rows], dtype=str).reshape(-1),
            change_sample=ch[:, 0].copy(), change_page=ch[:, 1].copy(), change_content=ch[:, 2].copy(),
            change_frame=ch[:, 3].copy(),
        )


def follow(follower: Follower, seconds: float, every_ms: int, alive=None, progress=None) -> None:
    """Sample every every_ms for seconds, or until alive() says the workload has ended."""
    start = time.monotonic()
    while True:
        took = follower.sample()
        n = len(follower.t)
        if progress is not None:
            progress(f"follow: {n} samples, {len(follower.page_rows):,} pages, {took * 1000:.0f} ms a sample")
        if time.monotonic() - start >= seconds or (alive is not None and not alive()):
            return
        wait = start + n * every_ms / 1000 - time.monotonic()
        if wait > 0:
            time.sleep(wait)


def _merge_any() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) != 0:
        os.write(2, f"prctl(PR_SET_MEMORY_MERGE): errno {ctypes.get_errno()}\n".encode())
        os._exit(126)


def foreign_mergeable() -> list[int]:
    """Processes registered with KSM now, other than ours: they would be in the counters too."""
    return procmem.mergeable_pids()


@contextlib.contextmanager
def ksm_at_defaults(pages_to_scan: int = 100, sleep_millisecs: int = 20) -> Iterator[None]:
    """Under the machine lock: nothing merged, ksmd running with these knobs; on the way out, all
    unmerged and the knobs and run the machine had put back."""
    with sysfs.machine_lock():
        knobs = sysfs.read_knobs()
        try:
            sysfs.unmerge_all()
            sysfs.ksm_write("pages_to_scan", pages_to_scan)
            sysfs.ksm_write("sleep_millisecs", sleep_millisecs)
            sysfs.ksm_write("run", 1)
            yield
        finally:
            sysfs.unmerge_all()
            for name, value in sysfs._ordered_knobs(knobs):
                if name != "run":
                    sysfs.ksm_write(name, value)
            sysfs.ksm_write("run", knobs.get("run", 0))


def start_merge_any(argv: Sequence[str]) -> subprocess.Popen:
    """The command, merge-any from its first instruction, in a process group of its own."""
    return subprocess.Popen(list(argv), preexec_fn=_merge_any, start_new_session=True,
                            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    """The workload and everything it started, gone."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):  # children left in the group
        os.killpg(proc.pid, signal.SIGKILL)
