"""Capture files: real memory as content hashes.

A capture (written by `ksmtui capture`, read here) holds, per process, its VMAs with whether KSM may
merge them (and if not, why), and per present page of each VMA KSM could scan a content id: an
index into a table of distinct 128-bit hashes (xxh3_128). Page contents are never stored, only
their hashes, so a capture can be shared. docs/capture.md is the format's contract.

The engine reads captures (to estimate, and to fill scenario regions with `fill = "capture"`); the
code that reads /proc to make one lives in ksmtui.host.procmem. The scenario a capture makes is
engine.scenario's (scenario_toml, scenario_from_capture): this module is the file format alone and
imports nothing of the engine.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import resource
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xxhash
from numpy.typing import ArrayLike

MAGIC = "ksmtui-capture"
FORMAT_VERSION = 1
HASH = "xxh3_128"  # files before keyed hashes: the plain digest, row 0 checkable as the zero page's
# A keyed capture's table: blake2b-128 keyed with a secret of the capture's, over each distinct
# xxh3_128 digest. Only the distinct digests are keyed (once each, at the end of a capture), so
# the key costs nothing per page. The key is never written: a file holds `key_id` (a keyed digest
# of a constant) so that captures made with one key (--key-file) are known to compare; without the
# key, a guess at a page's contents (a PIN among zeros) cannot be checked against the file.
HASH_KEYED = "blake2b-128-keyed(xxh3_128)"
KEY_BYTES = 32

# content ids: >= 0 index `hashes` (0 is always the all-zero page); below 0, a present page that
# KSM does not scan
ZERO_ID = 0
KERNEL_ZERO_PAGE = -1  # maps the kernel's shared zero page (read, never written): no rmap_item

# why KSM may not merge a VMA (vma_reason); 0 and 1 are the VMAs whose pages are captured
MERGEABLE = 0  # VM_MERGEABLE ("mg" in smaps VmFlags): ksmd scans it
NOT_MADVISED = 1  # compatible, but neither madvise(MADV_MERGEABLE) nor prctl merge-any marked it
SHARED = 2  # VM_SHARED / VM_MAYSHARE
HUGETLB = 3  # VM_HUGETLB
SPECIAL = 4  # VM_PFNMAP, VM_IO, VM_MIXEDMAP or VM_DONTEXPAND (VM_SPECIAL)
DROPPABLE = 5  # VM_DROPPABLE (6.11+)
REASONS = {
    MERGEABLE: "mergeable",
    NOT_MADVISED: "not madvised (no MADV_MERGEABLE, no merge-any)",
    SHARED: "shared mapping",
    HUGETLB: "hugetlb",
    SPECIAL: "special mapping (pfnmap, io, mixedmap or dontexpand)",
    DROPPABLE: "droppable",
}
CAPTURED_REASONS = (MERGEABLE, NOT_MADVISED)

ARRAYS = {  # name: (dtype kind, ndim); the schema of docs/capture.md
    "magic": ("U", 0), "format": ("i", 0), "meta": ("U", 0), "hashes": ("u", 2),
    "proc_pid": ("i", 1), "proc_comm": ("U", 1), "proc_merge_any": ("b", 1), "proc_ksm_zero_pages": ("i", 1),
    "vma_proc": ("i", 1), "vma_start": ("u", 1), "vma_end": ("u", 1), "vma_reason": ("u", 1),
    "vma_name": ("U", 1), "vma_first": ("i", 1), "vma_count": ("i", 1),
    "page_index": ("i", 1), "page_content": ("i", 1),
}
# absent in files that predate them: page_frame all -1, proc_unit all "{}" (every unit unknown),
# page_folio all -1 and no folio_pages (no page in a large folio), vma_anon_huge_kb and
# vma_thp_eligible -1 (unknown), vma_flags "" (unknown)
OPTIONAL = {"page_frame": ("i", 1), "proc_unit": ("U", 1), "page_folio": ("i", 1), "folio_pages": ("i", 1),
            "vma_anon_huge_kb": ("i", 1), "vma_thp_eligible": ("i", 1), "vma_flags": ("U", 1)}


class CaptureError(Exception):
    """A capture file that cannot be used: one line naming the file and what is wrong."""


def zero_hash(page_size: int) -> bytes:
    return xxhash.xxh3_128_digest(bytes(page_size))


def keyed(hashes: np.ndarray, key: bytes) -> np.ndarray:
    """The (H, 16) table of digests, each keyed (HASH_KEYED): equal stays equal, distinct distinct."""
    raw = hashes.tobytes()
    base = hashlib.blake2b(key=key, digest_size=16)  # the key block compressed once, copied per row
    out = []
    for i in range(0, len(raw), 16):
        h = base.copy()
        h.update(raw[i:i + 16])
        out.append(h.digest())
    return np.frombuffer(b"".join(out), np.uint8).reshape(-1, 16)


def key_id(key: bytes) -> str:
    """What a capture says of its key: enough to tell two keys apart, nothing to hash pages with."""
    return hashlib.blake2b(b"ksmtui capture key id", key=key, digest_size=8).hexdigest()


def comparable(a: Capture, b: Capture) -> bool:
    """Whether two captures' hashes compare: both unkeyed (old files), or keyed with one key."""
    return a.meta.get("key_id") == b.meta.get("key_id")


@dataclass
class Capture:
    """A capture in memory. Pages are in scan order: processes as captured, VMAs by address, pages
    by address; VMA v's pages are page_index/page_content[vma_first[v] : vma_first[v] + vma_count[v]]."""

    meta: dict
    hashes: np.ndarray  # uint8 (H, 16); row 0 is the all-zero page's hash
    proc_pid: np.ndarray  # int64 (P,)
    proc_comm: np.ndarray  # str (P,)
    proc_merge_any: np.ndarray  # bool (P,): prctl(PR_SET_MEMORY_MERGE) set
    proc_ksm_zero_pages: np.ndarray  # int64 (P,): KSM zero pages mapped at capture time (ksm_stat)
    vma_proc: np.ndarray  # int32 (V,): index into proc_*
    vma_start: np.ndarray  # uint64 (V,)
    vma_end: np.ndarray  # uint64 (V,)
    vma_reason: np.ndarray  # uint8 (V,): MERGEABLE, NOT_MADVISED, ...
    vma_name: np.ndarray  # str (V,): the mapping's name in /proc/PID/maps ("" for anonymous)
    vma_first: np.ndarray  # int64 (V,)
    vma_count: np.ndarray  # int64 (V,): pages stored (present pages KSM could scan, kernel zero page included)
    page_index: np.ndarray  # int64 (N,): page number within its VMA
    page_content: np.ndarray  # int32 (N,): content id, or KERNEL_ZERO_PAGE
    # int32 (N,): -1, or the same id for pages that map one physical non-KSM page (shared since
    # fork); all -1 where PFNs were not visible (not root), or in a file that predates it
    page_frame: np.ndarray
    # str (P,): a JSON object per process, its operator unit (cgroup, systemd unit, container, VM:
    # the fields of ksmtui.host.units.Unit.to_json, each only where known); "{}" where nothing is
    proc_unit: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=str))
    # int32 (N,): -1, or the large folio (a THP: /proc/kpageflags KPF_THP) the page is a subpage
    # of, an index into folio_pages; all -1 where PFNs were not visible, or in an older file
    page_folio: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    folio_pages: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))  # int32 (F,): its size in pages
    # per VMA from smaps: AnonHugePages (kB of PMD-mapped THPs) and THPeligible (-1: unknown), and
    # its VmFlags mnemonics ("" unknown): hg/nh (MADV_(NO)HUGEPAGE), lo (VM_LOCKED)
    vma_anon_huge_kb: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    vma_thp_eligible: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    vma_flags: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=str))
    path: Path | None = None
    _pages: dict[int, bytes] = field(default_factory=dict, repr=False, compare=False)  # content id -> synthetic page
    _fork_only: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def page_size(self) -> int:
        return int(self.meta["page_size"])

    def __post_init__(self) -> None:
        if not len(self.proc_unit):  # not given (from_contents, files that predate it): unknown
            self.proc_unit = np.full(len(self.proc_pid), "{}", dtype="<U2")
        if not len(self.page_folio):  # no THP information: every page a small page
            self.page_folio = np.full(len(self.page_content), -1, np.int32)
        if not len(self.vma_anon_huge_kb):
            self.vma_anon_huge_kb = np.full(len(self.vma_proc), -1, np.int64)
        if not len(self.vma_thp_eligible):
            self.vma_thp_eligible = np.full(len(self.vma_proc), -1, np.int8)
        if not len(self.vma_flags):
            self.vma_flags = np.full(len(self.vma_proc), "", dtype="<U1")

    @property
    def pmd_pages(self) -> int:
        """Subpages of a PMD-sized THP (HPAGE_PMD_NR): a page table page of 8-byte entries."""
        return self.page_size // 8

    def units(self) -> list[dict]:
        """Each process's unit as its JSON object ({} where unknown, or not an object)."""
        out = []
        for text in self.proc_unit.tolist():
            try:
                obj = json.loads(text)
            except ValueError:
                obj = None
            out.append(obj if isinstance(obj, dict) else {})
        return out

    def page_proc(self) -> np.ndarray:
        """The process index of every stored page."""
        return np.repeat(self.vma_proc, self.vma_count)

    def page_reason(self) -> np.ndarray:
        return np.repeat(self.vma_reason, self.vma_count)

    def vma_index(self, pid: int, start: int) -> int | None:
        procs = np.flatnonzero(self.proc_pid == pid)
        if not len(procs):
            return None
        hits = np.flatnonzero((self.vma_proc == procs[0]) & (self.vma_start == np.uint64(start)))
        return int(hits[0]) if len(hits) else None

    def fork_only(self) -> np.ndarray:
        """Per stored page: its content is held by one physical page only, mapped several times."""
        if self._fork_only is None:
            scanned = self.page_content >= 0
            only = np.zeros(len(self.page_content), bool)
            only[scanned] = one_physical_page(self.page_content[scanned], self.page_frame[scanned], len(self.hashes))
            self._fork_only = only
        return self._fork_only

    def by_reason(self) -> dict[str, dict]:
        """Memory by why KSM may or may not merge it: VMAs, bytes mapped, and (for the VMAs whose
        pages are captured) present pages ksmd would scan."""
        scanned = np.bincount(np.repeat(np.arange(len(self.vma_count)), self.vma_count)[self.page_content >= 0],
                              minlength=len(self.vma_count))
        out = {}
        for reason, name in REASONS.items():
            sel = self.vma_reason == reason
            if sel.any():
                out[name] = {"vmas": int(sel.sum()),
                             "mapped_bytes": int((self.vma_end[sel] - self.vma_start[sel]).sum()),
                             "pages": int(scanned[sel].sum()) if reason in CAPTURED_REASONS else None}
        return out

    def vma_contents(self, v: int) -> np.ndarray:
        """The content ids of VMA v's pages that KSM scans (the kernel's zero page left out)."""
        ids = self.page_content[self.vma_first[v]:self.vma_first[v] + self.vma_count[v]]
        return ids[ids >= 0]

    def vma_folios(self, v: int) -> list[tuple[int, int]]:
        """The large folios among VMA v's pages that KSM scans, as (first page, pages) counted in
        those pages (vma_contents' order): each run of consecutive pages (by address) of one
        folio. A PMD-mapped THP is one run of pmd_pages; a folio also mapped elsewhere (shared
        since fork, or a PTE-mapped one cut by munmap or mprotect) gives a run per place."""
        first, count = int(self.vma_first[v]), int(self.vma_count[v])
        scanned = self.page_content[first:first + count] >= 0
        folio = self.page_folio[first:first + count][scanned]
        index = self.page_index[first:first + count][scanned]
        if not len(folio) or folio.max() < 0:
            return []
        breaks = np.flatnonzero((folio[1:] != folio[:-1]) | (np.diff(index) != 1)) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [len(folio)]))
        return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True) if folio[s] >= 0]


def one_physical_page(ids: np.ndarray, frames: np.ndarray, top: int) -> np.ndarray:
    """Pages whose content's every copy maps one physical non-KSM page (shared since fork). ksmd
    never merges such a content: the unstable tree search meets the page itself and stops
    (unstable_tree_search_insert: page == tree_page); a content also held by another physical
    page merges as if every mapping were a copy of its own (the page is write-protected with all
    its mappings and replaced under each in turn)."""
    shared = frames >= 0
    if not shared.any():
        return np.zeros(len(ids), bool)
    copies = np.bincount(ids, minlength=top)
    in_frames = np.bincount(ids[shared], minlength=top)
    lo = np.full(top, np.iinfo(np.int64).max)
    hi = np.full(top, -1)
    np.minimum.at(lo, ids[shared], frames[shared])
    np.maximum.at(hi, ids[shared], frames[shared])
    only = (copies >= 2) & (in_frames == copies) & (lo == hi)
    return only[ids]


# -------------------------------------------------------------------------------- writing --

def save(capture: Capture, path: Path) -> None:
    """Write atomically: a capture file is complete or absent. The path is written as given (no
    suffix added); the temporary is a new file of a random name beside it (O_EXCL: never a file or
    link someone placed there), removed on any failure or exception (KeyboardInterrupt, and the
    signals the command turns into one)."""
    arrays = {
        "magic": np.array(MAGIC), "format": np.array(FORMAT_VERSION, dtype=np.int64),
        "meta": np.array(json.dumps(capture.meta, sort_keys=True)),
        **{name: getattr(capture, name) for name in (*ARRAYS, *OPTIONAL) if name not in ("magic", "format", "meta")},
    }
    atomic_write(Path(path), lambda f: np.savez_compressed(f, **arrays))


def atomic_write(path: Path, write, mode: int | None = None) -> None:
    """write(f) into a new temporary beside path (of a name no reader globs for), then rename it
    over path, with `mode` if given (mkstemp makes it 0600). Refuses a path that exists and is not
    a regular file (a directory, /dev/full): renaming over it would replace it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL,
                                    "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file", str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# from_contents' VMA: (reason, content ids[, page_frame ids[, page_folio ids]])
VmaContents = tuple[int, ArrayLike] | tuple[int, ArrayLike, ArrayLike] | tuple[int, ArrayLike, ArrayLike, ArrayLike]


def from_contents(processes: Sequence[tuple[int, str, Sequence[VmaContents]]], page_size: int = 4096,
                  hashes: np.ndarray | None = None, meta: dict | None = None,
                  units: Sequence[dict] | None = None) -> Capture:
    """A capture built from content ids rather than live memory (tests, benchmarks, tools):
    processes are (pid, comm, VMAs), a VMA is (reason, content ids of its pages, dense from
    address 0[, their page_frame ids[, their page_folio ids: -1, or a large folio's id, one
    numbering for the whole capture, a folio as many pages as it has ids]]). Content k > 0 gets a
    made-up hash unless `hashes` is given; units: each process's unit object (default: unknown)."""
    vma_proc, starts, ends, reasons, counts, index, content, frames, folios = [], [], [], [], [], [], [], [], []
    top = 1
    for p, (_, _, vmas) in enumerate(processes):
        address = 0x10000000
        for vma in vmas:
            reason, ids = vma[0], np.asarray(vma[1], np.int32)
            frames.append(np.asarray(vma[2], np.int32) if len(vma) >= 3 else np.full(len(ids), -1, np.int32))
            folios.append(np.asarray(vma[3], np.int32) if len(vma) == 4 else np.full(len(ids), -1, np.int32))
            size = max(len(ids), 1) * page_size
            vma_proc.append(p)
            starts.append(address)
            ends.append(address + size)
            reasons.append(reason)
            counts.append(len(ids))
            index.append(np.arange(len(ids), dtype=np.int64))
            content.append(ids)
            top = max(top, int(ids.max()) + 1 if len(ids) else 1)
            address += size + page_size  # a hole between VMAs, as mmap leaves them
    if hashes is None:
        made = np.arange(top, dtype=">u8")
        hashes = np.zeros((top, 16), np.uint8)
        hashes[:, 8:] = np.frombuffer(made.tobytes(), np.uint8).reshape(-1, 8)
        hashes[:, 0] = 0xA5
        hashes[0] = np.frombuffer(zero_hash(page_size), np.uint8)
    counts_a = np.array(counts, np.int64)
    folio = np.concatenate(folios) if folios else np.empty(0, np.int32)
    return Capture(
        meta={"page_size": page_size, "kernel": "synthetic", "captured_at": "", "hash": HASH, "knobs": {},
              "numa_nodes": 1, **(meta or {})},
        hashes=hashes,
        proc_pid=np.array([pid for pid, _, _ in processes], np.int64),
        proc_comm=np.array([comm for _, comm, _ in processes], dtype=str),
        proc_merge_any=np.zeros(len(processes), bool),
        proc_ksm_zero_pages=np.zeros(len(processes), np.int64),
        vma_proc=np.array(vma_proc, np.int32), vma_start=np.array(starts, np.uint64),
        vma_end=np.array(ends, np.uint64), vma_reason=np.array(reasons, np.uint8),
        vma_name=np.array([""] * len(vma_proc), dtype=str),
        vma_first=(np.cumsum(counts_a) - counts_a).astype(np.int64), vma_count=counts_a,
        page_index=np.concatenate(index) if index else np.empty(0, np.int64),
        page_content=np.concatenate(content) if content else np.empty(0, np.int32),
        page_frame=np.concatenate(frames) if frames else np.empty(0, np.int32),
        page_folio=folio,
        folio_pages=np.bincount(folio[folio >= 0], minlength=int(folio.max(initial=-1)) + 1).astype(np.int32),
        proc_unit=np.array([json.dumps(u, sort_keys=True) for u in units] if units is not None else [], dtype=str),
    )


# -------------------------------------------------------------------------------- reading --

# What loading and estimating a capture holds at its peak, per byte of its arrays (measured:
# `ksmtui estimate` of 2 million pages, 48 MB of arrays, peaks 282 MB above the interpreter)
MEMORY_PER_ARRAY_BYTE = 8
MAX_PAGE_SIZE = 1 << 20  # no architecture has larger base pages (64 KiB is the largest in use)


def load(path: str | Path) -> Capture:
    """A capture from a file, every array checked against the schema; CaptureError otherwise.
    The arrays' shapes are read from their headers and held to the file and to the memory this
    process may use before any is read: a few KB cannot claim terabytes."""
    path = Path(path)
    where = str(path)

    def bad(what: str) -> CaptureError:
        return CaptureError(f"{where}: damaged capture: {what}")

    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise CaptureError(f"{where}: not a regular file, expected a capture file")
            head = f.read(4)
        if head != b"PK\x03\x04":
            raise CaptureError(f"{where}: not a ksmtui capture (not an .npz file)")
        if not zipfile.is_zipfile(path):
            raise CaptureError(f"{where}: truncated or corrupt capture (its zip directory is missing)")
        _check_sizes(path, where)
        with np.load(path, allow_pickle=False) as z:
            if "magic" not in z.files or str(z["magic"]) != MAGIC:
                raise CaptureError(f"{where}: not a ksmtui capture (no {MAGIC!r} marker)")
            if "format" not in z.files:
                raise CaptureError(f"{where}: not a ksmtui capture (no format version)")
            fmt_a = z["format"]
            if fmt_a.dtype.kind != "i" or fmt_a.ndim != 0 or int(fmt_a) < 1:
                raise bad(f"format: expected a version number >= 1, got {fmt_a.dtype} {fmt_a.shape}"
                          + (f" {int(fmt_a)}" if fmt_a.dtype.kind == "i" and fmt_a.ndim == 0 else ""))
            version = int(fmt_a)
            if version > FORMAT_VERSION:
                raise CaptureError(f"{where}: format version {version} is newer than this ksmtui reads "
                                   f"({FORMAT_VERSION}); upgrade ksmtui")
            missing = [name for name in ARRAYS if name not in z.files]
            if missing:
                raise CaptureError(f"{where}: damaged capture: array {missing[0]!r} is missing")
            arrays = {name: z[name] for name in (*ARRAYS, *(k for k in OPTIONAL if k in z.files))}
    except CaptureError:
        raise
    except FileNotFoundError:
        raise CaptureError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise CaptureError(f"{where}: is a directory, expected a capture file") from None
    except PermissionError:
        raise CaptureError(f"{where}: permission denied") from None
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise CaptureError(f"{where}: truncated or corrupt capture ({e})") from None
    except MemoryError:
        raise CaptureError(f"{where}: too large for the memory this process may use") from None
    except (OSError, ValueError, KeyError, TypeError, OverflowError) as e:
        raise CaptureError(f"{where}: not a readable ksmtui capture ({e})") from None
    for name, (kind, ndim) in (*ARRAYS.items(), *OPTIONAL.items()):
        if name not in arrays:
            continue
        a = arrays[name]
        if a.dtype.kind != kind or a.ndim != ndim:
            raise CaptureError(f"{where}: damaged capture: array {name!r} is {a.dtype}, {a.ndim}-d; "
                               f"expected kind {kind!r}, {ndim}-d")
    meta = _meta(str(arrays["meta"]), bad)
    if "page_frame" not in arrays:
        arrays["page_frame"] = np.full(len(arrays["page_content"]), -1, np.int32)
    if "proc_unit" not in arrays:
        arrays["proc_unit"] = np.full(len(arrays["proc_pid"]), "{}")
    cap = Capture(meta=meta, path=path.resolve(),
                  **{k: a for k, a in arrays.items() if k not in ("magic", "format", "meta")})
    _check(cap, where, meta["page_size"])
    return cap


def _check_sizes(path: Path, where: str) -> None:
    """Each array's claimed shape against its member's size, and all of them against memory."""
    total = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            if name not in ARRAYS and name not in OPTIONAL:
                continue
            with zf.open(info) as f:
                try:
                    version = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(f)
                except (ValueError, SyntaxError, TypeError) as e:
                    raise CaptureError(f"{where}: damaged capture: array {name!r}: {e}") from None
            if dtype.hasobject:
                raise CaptureError(f"{where}: damaged capture: array {name!r} holds Python objects")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > info.file_size:
                raise CaptureError(f"{where}: damaged capture: array {name!r} claims shape {shape} "
                                   f"({nbytes:,} bytes) in a {info.file_size:,}-byte member")
            total += nbytes
    room = memory_room()
    if room is not None and total * MEMORY_PER_ARRAY_BYTE > room:
        raise CaptureError(f"{where}: too large for this machine: its arrays hold {total / 2**30:,.2f} GiB "
                           f"(about {total * MEMORY_PER_ARRAY_BYTE / 2**30:,.1f} GiB to load and estimate), "
                           f"{room / 2**30:,.1f} GiB available")


def memory_room() -> int | None:
    """Bytes this process may still take: MemAvailable, or less under an address-space limit."""
    room = None
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    room = int(line.split()[1]) * 1024
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            with open("/proc/self/status", "rb") as f:
                used = next(int(line.split()[1]) * 1024 for line in f if line.startswith(b"VmSize:"))
            room = min(room if room is not None else limit, max(0, limit - used))
    except (OSError, StopIteration, ValueError):
        pass
    return room


def _meta(text: str, bad) -> dict:
    """The meta JSON, as the rest of the code reads it: each field of the type it is used as."""
    try:
        meta = json.loads(text)
    except RecursionError:
        raise bad("meta: nested too deeply") from None
    except ValueError as e:
        raise bad(f"meta: {e}") from None
    if not isinstance(meta, dict):
        raise bad("meta: expected a JSON object")
    ps = meta.get("page_size")
    if isinstance(ps, bool) or not isinstance(ps, int) or not 64 <= ps <= MAX_PAGE_SIZE or ps & (ps - 1):
        raise bad(f"meta.page_size: expected a power of two 64..{MAX_PAGE_SIZE}, got {str(ps)[:40]}")
    knobs = meta.get("knobs", {})
    if not isinstance(knobs, dict) or not all(isinstance(v, (int, str)) and not isinstance(v, bool)
                                              for v in knobs.values()):
        raise bad("meta.knobs: expected an object of knob names to integers or strings")
    for key in ("kernel", "captured_at", "hash"):
        if not isinstance(meta.get(key, ""), str):
            raise bad(f"meta.{key}: expected a string")
    thp = meta.get("thp", {})
    if not isinstance(thp, dict) or not all(isinstance(v, (int, str)) and not isinstance(v, bool)
                                            for v in thp.values()):
        raise bad("meta.thp: expected an object of THP setting names to integers or strings")
    nodes = meta.get("numa_nodes", 1)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= 1 << 16:
        raise bad("meta.numa_nodes: expected a count of NUMA nodes")
    return meta


def _check(c: Capture, where: str, page_size: int) -> None:
    def bad(what: str) -> CaptureError:
        return CaptureError(f"{where}: damaged capture: {what}")

    if c.hashes.shape[1:] != (16,) or len(c.hashes) < 1:
        raise bad("hashes: expected (H, 16) bytes")
    if c.meta.get("hash", HASH) == HASH:
        if "key_id" in c.meta or c.hashes[0].tobytes() != zero_hash(page_size):
            raise bad("hashes: expected (H, 16) bytes starting with the zero page's hash")
    elif c.meta["hash"] != HASH_KEYED or not (isinstance(c.meta.get("key_id"), str)
                                                and re.fullmatch(r"[0-9a-f]{16}", c.meta["key_id"])):
        raise bad(f"meta.hash: expected {HASH!r}, or {HASH_KEYED!r} with a 16-hex-digit key_id")
    p = len(c.proc_pid)
    if not (len(c.proc_comm) == len(c.proc_merge_any) == len(c.proc_ksm_zero_pages) == len(c.proc_unit) == p):
        raise bad("proc_* arrays differ in length")
    v = len(c.vma_proc)
    if not all(len(a) == v for a in (c.vma_start, c.vma_end, c.vma_reason, c.vma_name, c.vma_first, c.vma_count)):
        raise bad("vma_* arrays differ in length")
    if v and (c.vma_proc.min() < 0 or c.vma_proc.max() >= p or np.any(np.diff(c.vma_proc) < 0)):
        raise bad("vma_proc: expected process indexes in capture order")
    if np.any(c.vma_end <= c.vma_start) or np.any(c.vma_reason > max(REASONS)):
        raise bad("vma_start/vma_end/vma_reason out of range")
    if not (len(c.vma_anon_huge_kb) == len(c.vma_thp_eligible) == len(c.vma_flags) == v):
        raise bad("vma_anon_huge_kb/vma_thp_eligible/vma_flags: expected one per VMA")
    if v and (c.vma_anon_huge_kb.min() < -1 or c.vma_thp_eligible.min() < -1 or c.vma_thp_eligible.max() > 1):
        raise bad("vma_anon_huge_kb/vma_thp_eligible: expected -1 (unknown) or a value")
    n = len(c.page_index)
    if len(c.page_content) != n or len(c.page_frame) != n or len(c.page_folio) != n or np.any(c.vma_count < 0):
        raise bad("page arrays differ in length")
    if n and (c.page_folio.min() < -1 or c.page_folio.max() >= len(c.folio_pages)):
        raise bad("page_folio: expected -1 or an index into folio_pages")
    if len(c.folio_pages) and c.folio_pages.min() < 2:
        raise bad("folio_pages: expected a large folio's size (2 pages or more)")
    ends = np.cumsum(c.vma_count)
    if (ends[-1] if v else 0) != n or np.any(c.vma_first != ends - c.vma_count):
        raise bad("vma_first/vma_count do not tile the page arrays")
    if n:
        if c.page_frame.min() < -1:
            raise bad("page_frame: expected -1 or a frame id")
        if c.page_content.min() < KERNEL_ZERO_PAGE or c.page_content.max() >= len(c.hashes):
            raise bad("page_content: a content id outside the hash table")
        vma_pages = ((c.vma_end - c.vma_start) // np.uint64(page_size)).astype(np.int64)
        if c.page_index.min() < 0 or np.any(c.page_index >= np.repeat(vma_pages, c.vma_count)):
            raise bad("page_index: a page outside its VMA")


# ------------------------------------------------------------------- pages of a capture --

def synthetic_page(digest: bytes, page_size: int) -> bytes:
    """A page standing for a captured non-zero content: equal digests give equal pages, different
    digests different ones (the head is the digest), so the equality structure is the captured
    memory's while the bytes say nothing of it. Content id 0 is the zero page itself (capture_pages)."""
    body = (digest * (page_size // 16 + 1))[: page_size - 16]
    return digest + bytes(b ^ 0x5A for b in body)


def capture_pages(capture: Capture, v: int) -> list[bytes]:
    """The synthetic pages of VMA v, in address order: one bytes object per distinct content. A
    page whose content KSM cannot merge because only one physical page holds it (shared since
    fork, which a scenario cannot express) gets a content of its own: unmerged, as in the kernel."""
    first, count = int(capture.vma_first[v]), int(capture.vma_count[v])
    ids = capture.page_content[first:first + count]
    alone = capture.fork_only()[first:first + count]
    cache = capture._pages
    ps = capture.page_size
    out = []
    for i, (k, own) in enumerate(zip(ids.tolist(), alone.tolist(), strict=False)):
        if k < 0:
            continue
        if own:
            out.append(synthetic_page(xxhash.xxh3_128_digest(f"fork-shared {v} {i}".encode()), ps))
            continue
        page = cache.get(k)
        if page is None:
            page = cache[k] = bytes(ps) if k == ZERO_ID else synthetic_page(capture.hashes[k].tobytes(), ps)
        out.append(page)
    return out
