"""Capture live processes' memory as content hashes (engine.capture is the file format).

For each process: /proc/PID/smaps gives the VMAs and their VmFlags (whether KSM may merge them,
and if not why, as vma_ksm_compatible() in mm/ksm.c decides); /proc/PID/pagemap which pages are
present and anonymous; /proc/PID/mem their contents, read in bounded chunks and hashed (xxh3_128)
at once. Only present pages are read: reading an absent page through /proc/PID/mem would fault it
in. Reading does not unshare a KSM page or COW a page (no write, no pin), so a capture leaves the
memory as ksmd sees it.

Which present pages ksmd scans: anonymous ones (folio_test_anon), KSM pages included, not the
kernel's shared zero page. Where pagemap shows PFNs (root), the zero page is recognised by its
KPF_ZERO_PAGE flag in /proc/kpageflags; without PFNs, an all-zero page that is not exclusively
mapped is taken for it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xxhash

from engine import capture as fmt
from ksmtui.host import sysfs, units

PM_PRESENT = 1 << 63
PM_FILE = 1 << 61  # file page or shared anonymous: not an anonymous page ksmd scans
PM_MMAP_EXCLUSIVE = 1 << 56
PM_PFN = (1 << 55) - 1
KPF_COMPOUND_HEAD = 1 << 15
KPF_COMPOUND_TAIL = 1 << 16
KPF_KSM = 1 << 21
KPF_THP = 1 << 22  # an anonymous (or file) large folio's subpage, PMD-mapped or not
KPF_ZERO_PAGE = 1 << 24

PAGEMAP_CHUNK = 65536  # pagemap entries read at a time (512 KiB)
RUN_PAGES = 256  # pages of contents read at a time (1 MiB of 4 KiB pages)

_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")


class CaptureDenied(Exception):
    """No right to read a process's memory (root or ptrace rights needed)."""


class NoSuchProcess(Exception):
    """A pid that does not exist (or exited before it could be read)."""


@dataclass
class Vma:
    start: int
    end: int
    name: str
    flags: set[str] = field(default_factory=set)
    anon_kb: int = -1  # smaps "Anonymous:" (KSM pages included); -1 if not shown
    anon_huge_kb: int = -1  # smaps "AnonHugePages:" (PMD-mapped THPs); -1 if not shown
    thp_eligible: int = -1  # smaps "THPeligible:"; -1 if not shown

    @property
    def may_hold_thp(self) -> bool:
        """Whether its pages' folios are worth looking up: it maps THPs now, or may get them.
        (A large folio mapped by PTEs where THP is no longer eligible is missed: rare.)"""
        return self.anon_huge_kb > 0 or self.thp_eligible == 1

    @property
    def reason(self) -> int:
        """vma_ksm_compatible() and VM_MERGEABLE, from smaps' VmFlags mnemonics."""
        f = self.flags
        if "mg" in f:
            return fmt.MERGEABLE
        if f & {"sh", "ms"}:
            return fmt.SHARED
        if "ht" in f:
            return fmt.HUGETLB
        if f & {"pf", "io", "mm", "de"}:
            return fmt.SPECIAL
        if "dp" in f:
            return fmt.DROPPABLE
        return fmt.NOT_MADVISED


def read_vmas(pid: int) -> list[Vma]:
    vmas: list[Vma] = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = _HEADER.match(line)
            if m:
                vmas.append(Vma(int(m.group(1), 16), int(m.group(2), 16), m.group(4).strip()))
            elif line.startswith("VmFlags:") and vmas:
                vmas[-1].flags = set(line.split()[1:])
            elif line.startswith("Anonymous:") and vmas:
                vmas[-1].anon_kb = int(line.split()[1])
            elif line.startswith("AnonHugePages:") and vmas:
                vmas[-1].anon_huge_kb = int(line.split()[1])
            elif line.startswith("THPeligible:") and vmas:
                vmas[-1].thp_eligible = int(line.split()[1])
    return vmas


def _ksm_stat(pid: int) -> dict[str, int | str]:
    try:
        return sysfs.parse_ksm_stat(Path(f"/proc/{pid}/ksm_stat").read_text())
    except OSError:
        return {}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        raise NoSuchProcess(f"pid {pid}: no such process") from None
    except ProcessLookupError:
        raise NoSuchProcess(f"pid {pid}: no such process") from None


def mergeable_pids() -> list[int]:
    """Processes registered with KSM (madvised or merge-any), in pid order."""
    pids = []
    for pid in all_pids():
        stat = _ksm_stat(pid)
        if "yes" in (stat.get("ksm_mergeable"), stat.get("ksm_merge_any")) or _has_mergeable_vma(pid):
            pids.append(pid)
    return pids


def _has_mergeable_vma(pid: int) -> bool:
    try:
        return any(v.reason == fmt.MERGEABLE for v in read_vmas(pid))
    except OSError:
        return False


def all_pids() -> list[int]:
    """Every user process but this one (kernel threads have no memory to capture)."""
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me:
            try:
                if (entry / "maps").stat() and Path(entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return sorted(pids)


class PageFlags:
    """What pagemap alone does not say, from /proc/kpageflags (root): whether a page is the
    kernel's zero page, and whether a page mapped more than once is a KSM page or one shared
    since fork (before copy-on-write: the same physical page in several processes)."""

    def __init__(self):
        self.flags: dict[int, int] = {}
        try:
            self.kpageflags = os.open("/proc/kpageflags", os.O_RDONLY)
        except OSError:
            self.kpageflags = None

    def _flags(self, pfn: int) -> int:
        flags = self.flags.get(pfn)
        if flags is None:
            flags = self.flags[pfn] = int.from_bytes(os.pread(self.kpageflags, 8, pfn * 8), "little")
        return flags

    def is_zero_page(self, entry: int) -> bool:
        pfn = entry & PM_PFN
        if not pfn or self.kpageflags is None:  # no PFNs for us: the zero page is never exclusive
            return not entry & PM_MMAP_EXCLUSIVE
        return bool(self._flags(pfn) & KPF_ZERO_PAGE)

    def shared_frame(self, entry: int) -> int:
        """The pfn of a non-KSM page mapped more than once, else -1 (also when PFNs are hidden)."""
        pfn = entry & PM_PFN
        if entry & PM_MMAP_EXCLUSIVE or not pfn or self.kpageflags is None or self._flags(pfn) & KPF_KSM:
            return -1
        return pfn

    def folio_heads(self, pfns: np.ndarray) -> np.ndarray:
        """Per pfn: the pfn of the head of the large folio (KPF_THP) it is a subpage of, else -1
        (also where PFNs are hidden). A folio's subpages are consecutive frames, head first, so
        each run of consecutive pfns is read at once."""
        out = np.full(len(pfns), -1, np.int64)
        if self.kpageflags is None or not len(pfns):
            return out
        for group in np.split(np.arange(len(pfns)), np.flatnonzero(np.diff(pfns) != 1) + 1):
            lo, n = int(pfns[group[0]]), len(group)
            if not lo:
                continue
            flags = np.zeros(n, np.uint64)
            raw = os.pread(self.kpageflags, 8 * n, 8 * lo)
            flags[:len(raw) // 8] = np.frombuffer(raw[:len(raw) // 8 * 8], "<u8")
            thp = (flags & np.uint64(KPF_THP | KPF_ZERO_PAGE)) == np.uint64(KPF_THP)  # not the huge zero folio
            if not thp.any():
                continue
            at = np.arange(n)
            last_head = np.maximum.accumulate(np.where((flags & np.uint64(KPF_COMPOUND_HEAD)) != 0, at, -1))
            heads = np.where(last_head >= 0, lo + last_head, -1)
            if thp[0] and last_head[0] < 0:  # the run starts inside a folio: its head is before it
                heads[last_head < 0] = self._head_before(lo)
            out[group[thp]] = heads[thp]
        return out

    def _head_before(self, pfn: int) -> int:
        span = min(pfn, 8192)  # a PMD's worth of pages at most: 512 of 4 KiB, 8192 of 64 KiB
        raw = os.pread(self.kpageflags, 8 * span, 8 * (pfn - span))
        flags = np.frombuffer(raw[:len(raw) // 8 * 8], "<u8")
        heads = np.flatnonzero((flags & np.uint64(KPF_COMPOUND_HEAD)) != 0)
        return pfn - span + int(heads[-1]) if len(heads) else -1

    def folio_pages(self, head: int, most: int) -> int:
        """The size in pages of the large folio whose head is at pfn `head` (at most `most`)."""
        raw = os.pread(self.kpageflags, 8 * (most - 1), 8 * (head + 1))
        flags = np.frombuffer(raw[:len(raw) // 8 * 8], "<u8")
        tails = np.flatnonzero((flags & np.uint64(KPF_COMPOUND_TAIL)) == 0)
        return 1 + (int(tails[0]) if len(tails) else len(flags))

    def close(self):
        if self.kpageflags is not None:
            os.close(self.kpageflags)


@dataclass
class ProcCapture:
    pid: int
    comm: str
    merge_any: bool
    ksm_zero_pages: int
    # vma, page indexes, digests, zero page?, frame, folio head pfn (-1: not in a large folio)
    vmas: list[tuple[Vma, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    unit: dict = field(default_factory=dict)  # units.Unit.to_json(): what is known of its cgroup, unit, container, VM
    pages: int = 0
    notes: list[str] = field(default_factory=list)


class Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.last = 0.0

    def __call__(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.enabled and (force or now - self.last > 0.2):
            self.last = now
            sys.stderr.write(f"\r\033[K{text}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _open(pid: int, what: str, comm: str) -> int:
    try:
        return os.open(f"/proc/{pid}/{what}", os.O_RDONLY)
    except PermissionError:
        raise CaptureDenied(f"pid {pid} ({comm}): cannot read /proc/{pid}/{what}: permission denied "
                            "(capturing needs root, or ptrace rights over the process)") from None
    except (FileNotFoundError, ProcessLookupError):
        raise NoSuchProcess(f"pid {pid} ({comm}): exited before it could be read") from None


PF_KTHREAD = 0x00200000  # include/linux/sched.h: the flags field of /proc/PID/stat


def is_kernel_thread(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2:].split()  # after the comm, which may hold spaces and parentheses
    return len(fields) > 6 and int(fields[6]) & PF_KTHREAD != 0


def capture_process(pid: int, pageflags: PageFlags, page_size: int, progress: Progress, label: str) -> ProcCapture:
    comm = _comm(pid)
    if is_kernel_thread(pid):
        raise NoSuchProcess(f"pid {pid} ({comm}) is a kernel thread: it has no user memory to capture")
    stat = _ksm_stat(pid)
    try:
        vmas = read_vmas(pid)
    except PermissionError:
        raise CaptureDenied(f"pid {pid} ({comm}): cannot read /proc/{pid}/smaps: permission denied "
                            "(capturing needs root, or ptrace rights over the process)") from None
    except (FileNotFoundError, ProcessLookupError):
        raise NoSuchProcess(f"pid {pid} ({comm}): exited before it could be read") from None
    pagemap = _open(pid, "pagemap", comm)
    try:
        mem = _open(pid, "mem", comm)
    except BaseException:
        os.close(pagemap)
        raise
    unit = units.identify(pid)
    out = ProcCapture(pid, comm, stat.get("ksm_merge_any") == "yes", int(stat.get("ksm_zero_pages", 0)), [],
                      unit.to_json() if unit is not None else {})
    zero_digest = fmt.zero_hash(page_size)
    try:
        for vma in vmas:
            if vma.reason not in fmt.CAPTURED_REASONS or vma.anon_kb == 0:
                # no anonymous page to read: pagemap of a huge reservation is not walked for nothing
                out.vmas.append((vma, *_concat([])))
                continue
            parts: list[tuple] = []  # (page indexes, digests, kernel zero page?, shared frame) per run
            gone = False
            for first, n in _chunks(pagemap, vma, page_size):
                try:
                    raw = os.pread(pagemap, 8 * n, 8 * (vma.start // page_size + first))
                except OSError as e:
                    if e.errno in (errno.ESRCH, errno.ENOENT):
                        gone = True
                        break
                    raise
                if not raw:  # the mm is gone: pagemap reads nothing
                    gone = True
                    break
                entries = np.frombuffer(raw, dtype=np.uint64)
                anon = np.flatnonzero((entries & np.uint64(PM_PRESENT | PM_FILE)) == np.uint64(PM_PRESENT))
                for run in np.split(anon, np.flatnonzero(np.diff(anon) != 1) + 1):
                    for s in range(0, len(run), RUN_PAGES):
                        part = run[s:s + RUN_PAGES]
                        if not len(part):
                            continue
                        got = _read_run(mem, vma.start + (first + int(part[0])) * page_size, len(part), page_size)
                        if got is None:
                            gone = True
                            break
                        parts.append(_hash_run(got, first + part, entries[part], pageflags, zero_digest,
                                               vma.may_hold_thp))
                        if None in got:
                            out.notes.append(f"pid {pid} ({comm}): memory at {vma.start:#x} changed during the capture")
                    if gone:
                        break
                    out.pages += len(run)
                    progress(f"{label}: {out.pages:,} pages")
                if gone:
                    break
            out.vmas.append((vma, *_concat(parts)))
            if gone:
                out.notes.append(f"pid {pid} ({comm}) exited during the capture; kept what was read before")
                break
        else:
            try:
                if [(v.start, v.end) for v in read_vmas(pid)] != [(v.start, v.end) for v in vmas]:
                    out.notes.append(f"pid {pid} ({comm}): its mappings changed during the capture")
            except OSError:
                out.notes.append(f"pid {pid} ({comm}) exited at the end of the capture")
    finally:
        os.close(pagemap)
        os.close(mem)
    return out


# PAGEMAP_SCAN (Linux 6.7+, include/uapi/linux/fs.h): the ranges of a VMA whose pages are present,
# from a walk of the page tables that skips what they do not map (a 60 TB reservation with two
# pages touched is two ranges, found at once, where reading its pagemap is 120 GB of entries).
PAGEMAP_SCAN = 0xC0606610  # _IOWR('f', 16, struct pm_scan_arg): 12 u64 fields, 96 bytes
PAGE_IS_PRESENT = 1 << 3
SCAN_REGIONS = 512  # struct page_region {start, end, categories} per ioctl


def present_ranges(pagemap: int, start: int, end: int) -> list[tuple[int, int]] | None:
    """[start, end) address ranges of present pages within [start, end), or None where the kernel
    has no PAGEMAP_SCAN (the caller reads the whole pagemap then)."""
    vec = (ctypes.c_uint64 * (3 * SCAN_REGIONS))()
    out: list[tuple[int, int]] = []
    at = start
    while at < end:
        arg = (ctypes.c_uint64 * 12)(96, 0, at, end, 0, ctypes.addressof(vec), SCAN_REGIONS, 0, 0,
                                     PAGE_IS_PRESENT, 0, PAGE_IS_PRESENT)
        try:
            n = fcntl.ioctl(pagemap, PAGEMAP_SCAN, arg)
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                return None
            raise
        out += [(vec[3 * i], vec[3 * i + 1]) for i in range(n)]
        if arg[4] <= at:  # walk_end: no progress (cannot happen; never loop on it)
            break
        at = arg[4]
    return out


def _chunks(pagemap: int, vma: Vma, page_size: int):
    """(first page index, pages) of the VMA whose pagemap entries to read: its present ranges
    where PAGEMAP_SCAN says which they are, else all of it, PAGEMAP_CHUNK pages at a time."""
    npages = (vma.end - vma.start) // page_size
    ranges = present_ranges(pagemap, vma.start, vma.end) if npages > PAGEMAP_CHUNK else None
    if ranges is None:
        ranges = [(vma.start, vma.end)]
    for lo, hi in ranges:
        a, b = (lo - vma.start) // page_size, (hi - vma.start) // page_size
        for first in range(a, b, PAGEMAP_CHUNK):
            yield first, min(PAGEMAP_CHUNK, b - first)


def _concat(parts: list[tuple]) -> tuple:
    if not parts:
        return (np.empty(0, np.int64), np.empty(0, "V16"), np.empty(0, bool), np.empty(0, np.int64),
                np.empty(0, np.int64))
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _hash_run(pages: list[bytes | None], indexes: np.ndarray, entries: np.ndarray, pageflags: PageFlags,
              zero_digest: bytes, thp: bool = False) -> tuple:
    """The pages read in one run as arrays (41 bytes a page, not Python objects): page indexes,
    xxh3_128 digests, whether each maps the kernel's zero page, its shared frame (or -1), the pfn
    of its large folio's head (or -1; looked up only where `thp`)."""
    ok = [k for k, page in enumerate(pages) if page is not None]
    digests = [xxhash.xxh3_128_digest(page) for page in pages if page is not None]
    entries = entries[ok]
    kzero = np.zeros(len(ok), bool)
    for j, d in enumerate(digests):
        if d == zero_digest:
            kzero[j] = pageflags.is_zero_page(int(entries[j]))
    frames = np.full(len(ok), -1, np.int64)
    for j in np.flatnonzero((entries & np.uint64(PM_MMAP_EXCLUSIVE)) == 0).tolist():
        frames[j] = pageflags.shared_frame(int(entries[j]))
    heads = np.full(len(ok), -1, np.int64)
    if thp:
        heads = pageflags.folio_heads((entries & np.uint64(PM_PFN)).astype(np.int64))
        heads[kzero] = -1
    return indexes[ok], np.frombuffer(b"".join(digests), "V16"), kzero, frames, heads


def _read_run(mem: int, addr: int, n: int, page_size: int) -> list[bytes | None] | None:
    """n pages from addr; None for a page that is no longer mapped, None for all if the process is
    gone (its mm released: /proc/PID/mem then reads nothing, where an unmapped page is EIO)."""
    try:
        data = os.pread(mem, n * page_size, addr)
    except OSError as e:
        if e.errno in (errno.ESRCH, errno.ENOENT):
            return None
        data = b"?"
    if not data:
        return None
    if len(data) == n * page_size:
        return [data[i * page_size:(i + 1) * page_size] for i in range(n)]
    pages: list[bytes | None] = []  # a short or failed read: one page at a time, to find which
    for i in range(n):
        try:
            page = os.pread(mem, page_size, addr + i * page_size)
        except OSError as e:
            if e.errno in (errno.ESRCH, errno.ENOENT):
                return None
            pages.append(None)  # EIO: unmapped since pagemap was read
            continue
        if not page:
            return None
        pages.append(page if len(page) == page_size else None)
    return pages


def content_ids(digests: bytes, page_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes (H, 16) uint8 with the zero page's first, content id per digest)."""
    zero = fmt.zero_hash(page_size)
    words = np.frombuffer(zero + digests, dtype=">u8").reshape(-1, 2)
    hi, lo = words[:, 0], words[:, 1]
    order = np.lexsort((lo, hi))
    hs, ls = hi[order], lo[order]
    new = np.ones(len(order), bool)
    new[1:] = (hs[1:] != hs[:-1]) | (ls[1:] != ls[:-1])
    rank = np.cumsum(new) - 1
    ids = np.empty(len(order), np.int64)
    ids[order] = rank
    uniq = np.stack([hs[new], ls[new]], axis=1).astype(">u8")
    z = ids[0]  # the zero page's id: swap it with 0
    perm = np.arange(len(uniq))
    perm[[0, z]] = perm[[z, 0]]
    ids = perm[ids]
    uniq = uniq[perm.argsort()]
    hashes = np.frombuffer(uniq.tobytes(), np.uint8).reshape(-1, 16)
    return hashes, ids[1:].astype(np.int32)


THP_DIR = Path("/sys/kernel/mm/transparent_hugepage")
THP_SETTINGS = ("enabled", "defrag", "use_zero_page", "shrink_underused", "khugepaged/defrag",
                "khugepaged/max_ptes_none", "khugepaged/max_ptes_shared", "khugepaged/max_ptes_swap",
                "khugepaged/pages_to_scan", "khugepaged/scan_sleep_millisecs")


def thp_settings() -> dict[str, int | str]:
    """The host's THP settings that decide whether khugepaged collapses back what ksmd splits
    (docs/thp.md, finding 12): the mode in use of a [bracketed] choice, numbers as numbers, and
    each mTHP size's mode (hugepages-64kB/enabled...); those the kernel does not have are left out."""
    out: dict[str, int | str] = {}
    names = list(THP_SETTINGS) + sorted(f"{d.name}/enabled" for d in THP_DIR.glob("hugepages-*kB"))
    for name in names:
        try:
            text = (THP_DIR / name).read_text().strip()
        except OSError:
            continue
        chosen = re.search(r"\[(\w+)\]", text)
        out[name] = chosen.group(1) if chosen else int(text) if text.isdigit() else text
    return out


def capture(pids: list[int], explicit: bool, show_progress: bool, key: bytes) -> tuple[fmt.Capture, list[str]]:
    """Capture the processes (in the order given: the order ksmd will be taken to visit them).
    explicit: the pids were named by the user, so a missing one or a refusal is an error;
    otherwise (--all, --mergeable) such processes are skipped with a note. key: the secret the
    hash table is keyed with (engine.capture.HASH_KEYED), never written to the capture."""
    page_size = os.sysconf("SC_PAGE_SIZE")
    pageflags = PageFlags()
    progress = Progress(show_progress)
    procs: list[ProcCapture] = []
    notes: list[str] = []
    denied = 0
    try:
        for k, pid in enumerate(pids):
            label = f"capture: [{k + 1}/{len(pids)}] pid {pid}"
            try:
                pc = capture_process(pid, pageflags, page_size, progress, label)
            except NoSuchProcess as e:
                if explicit:
                    raise
                notes.append(f"{e}; skipped")
                continue
            except CaptureDenied:
                if explicit:
                    raise
                denied += 1
                continue
            procs.append(pc)
            notes += pc.notes
        # folio sizes while the folios are still there (a split between the reads is possible:
        # the capture is not atomic, nor is anything else read from /proc)
        folio_heads = {h for pc in procs for v in pc.vmas for h in np.unique(v[5][v[5] >= 0]).tolist()}
        sizes = {h: pageflags.folio_pages(h, page_size // 8) for h in folio_heads}
    finally:
        progress.done()
        pageflags.close()
    if denied:
        notes.append(f"{denied} process{'es' * (denied != 1)} skipped: no permission to read their memory")
    if not procs:
        raise CaptureDenied("no process could be captured" + (f" ({notes[-1]})" if notes else ""))
    rows = [(p, *v) for p, pc in enumerate(procs) for v in pc.vmas]
    hashes, ids = content_ids(b"".join(r[3].tobytes() for r in rows), page_size)
    hashes = fmt.keyed(hashes, key)
    counts = np.array([len(r[2]) for r in rows], np.int64)
    kzero = np.concatenate([r[4] for r in rows]) if rows else np.empty(0, bool)
    ids[kzero] = fmt.KERNEL_ZERO_PAGE
    pfns = np.concatenate([r[5] for r in rows]) if rows else np.empty(0, np.int64)
    frames = np.full(len(pfns), -1, np.int32)  # pfns become small ids: a capture says no address
    shared = pfns >= 0
    frames[shared] = np.unique(pfns[shared], return_inverse=True)[1]
    heads = np.concatenate([r[6] for r in rows]) if rows else np.empty(0, np.int64)
    folios = np.full(len(heads), -1, np.int32)  # heads become folio numbers in scan order, as frames do
    large = heads >= 0
    distinct, first, inverse = np.unique(heads[large], return_index=True, return_inverse=True)
    rank = np.empty(len(distinct), np.int64)
    rank[np.argsort(first)] = np.arange(len(distinct))
    folios[large] = rank[inverse]
    distinct = distinct[np.argsort(first)]
    folio_pages = np.array([max(sizes[h], 2) for h in distinct.tolist()], np.int32)
    knobs = {}
    try:
        knobs = sysfs.read_knobs()
    except OSError:
        pass
    meta = {
        "page_size": page_size, "kernel": os.uname().release, "machine": os.uname().machine,
        "captured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "hash": fmt.HASH_KEYED,
        "key_id": fmt.key_id(key), "knobs": knobs, "numa_nodes": sysfs.numa_nodes(),
        "pfns": pageflags.kpageflags is not None, "notes": notes, "thp": thp_settings(),
    }
    cap = fmt.Capture(
        meta=meta, hashes=hashes,
        proc_pid=np.array([p.pid for p in procs], np.int64),
        proc_comm=np.array([p.comm for p in procs], dtype=str),
        proc_merge_any=np.array([p.merge_any for p in procs], bool),
        proc_ksm_zero_pages=np.array([p.ksm_zero_pages for p in procs], np.int64),
        vma_proc=np.array([r[0] for r in rows], np.int32),
        vma_start=np.array([r[1].start for r in rows], np.uint64),
        vma_end=np.array([r[1].end for r in rows], np.uint64),
        vma_reason=np.array([r[1].reason for r in rows], np.uint8),
        vma_name=np.array([r[1].name for r in rows], dtype=str),
        vma_first=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if rows else np.empty(0, np.int64),
        vma_count=counts,
        page_index=np.concatenate([r[2] for r in rows]) if rows else np.empty(0, np.int64),
        page_content=ids,
        page_frame=frames,
        page_folio=folios,
        folio_pages=folio_pages,
        vma_anon_huge_kb=np.array([r[1].anon_huge_kb for r in rows], np.int64),
        vma_thp_eligible=np.array([r[1].thp_eligible for r in rows], np.int8),
        vma_flags=np.array([" ".join(sorted(r[1].flags)) for r in rows], dtype=str),
        proc_unit=np.array([json.dumps(p.unit, sort_keys=True) for p in procs], dtype=str),
    )
    return cap, notes
