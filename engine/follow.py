"""A capture over time (`ksmtui capture --follow`): the same processes' pages sampled again and
again, as content ids and the moments they changed, with the host's KSM counters at each sample.

Hashes only, never contents, and not even hashes in the file: the follower hashes each page
(xxh3_128, as a capture does) and numbers the distinct digests it meets in order, 0 being the
all-zero page. Content id k in one file says "equal to every other page with id k in this file"
and nothing else; ids of two files do not compare.

The file is an .npz of plain arrays (no pickles), with a version:

| array | shape | what |
|---|---|---|
| `magic`, `format`, `meta` | 0-d | "ksmtui-follow", the version, JSON (page size, kernel, knobs, command,
  every_ms, notes) |
| `sample_t` | (S,) float64 | seconds since the follow began, at each sample's start |
| `sample_cost` | (S,) float64 | seconds the sample took (reading every page of every process) |
| `sample_ksmd_ns` | (S,) int64 | ksmd's on-CPU time (schedstat), ns |
| `counter_NAME` | (S,) int64 | /sys/kernel/mm/ksm/NAME at the sample, for NAME in COUNTERS |
| `proc_pid`, `proc_ppid` | (P,) int64 | processes followed, in the order first seen |
| `proc_comm` | (P,) str | |
| `proc_merge_any` | (P,) bool | ksm_stat's ksm_merge_any when first seen |
| `proc_first`, `proc_last` | (P,) int64 | first and last sample that saw it |
| `page_proc` | (N,) int32 | the process of each page ever seen |
| `page_vpn` | (N,) int64 | its virtual page number (address / page size) |
| `page_vma` | (N,) str | the name of its VMA ("[heap]", a library's path, "" for anonymous) |
| `change_sample`, `change_page`, `change_content`, `change_frame` | (C,) | page `change_page` holds
  `change_content` from sample `change_sample` on: a content id >= 0, or ABSENT (not present, not
  anonymous, or the kernel's zero page: nothing ksmd scans); `change_frame` is OWN_FRAME while the page
  is mapped once (or is a KSM page), else the number of the physical page it shares with other
  mappings since a fork (numbered in order met: no address is kept) |

A page's first sample is always a change (from ABSENT); a page whose process exits goes ABSENT.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.capture import atomic_write

MAGIC = "ksmtui-follow"
FORMAT_VERSION = 1
ABSENT = -1
ZERO_CONTENT = 0
OWN_FRAME = -1
COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "pages_scanned",
            "pages_skipped", "full_scans", "ksm_zero_pages")

ARRAYS = {  # name: (dtype kind, ndim)
    "sample_t": ("f", 1), "sample_cost": ("f", 1), "sample_ksmd_ns": ("i", 1),
    **{f"counter_{c}": ("i", 1) for c in COUNTERS},
    "proc_pid": ("i", 1), "proc_ppid": ("i", 1), "proc_comm": ("U", 1), "proc_merge_any": ("b", 1),
    "proc_first": ("i", 1), "proc_last": ("i", 1),
    "page_proc": ("i", 1), "page_vpn": ("i", 1), "page_vma": ("U", 1),
    "change_sample": ("i", 1), "change_page": ("i", 1), "change_content": ("i", 1), "change_frame": ("i", 1),
}


class FollowError(Exception):
    """A follow file that cannot be read: one line naming the file and what is wrong."""


@dataclass
class Follow:
    meta: dict
    sample_t: np.ndarray
    sample_cost: np.ndarray
    sample_ksmd_ns: np.ndarray
    counters: dict[str, np.ndarray]
    proc_pid: np.ndarray
    proc_ppid: np.ndarray
    proc_comm: np.ndarray
    proc_merge_any: np.ndarray
    proc_first: np.ndarray
    proc_last: np.ndarray
    page_proc: np.ndarray
    page_vpn: np.ndarray
    page_vma: np.ndarray
    change_sample: np.ndarray
    change_page: np.ndarray
    change_content: np.ndarray
    change_frame: np.ndarray
    path: Path | None = field(default=None, compare=False)

    @property
    def samples(self) -> int:
        return len(self.sample_t)

    def contents(self, frames: bool = False) -> np.ndarray:
        """(S, N) int32: every page's content id at every sample (ABSENT where it had none); with
        frames, its frame (OWN_FRAME, or the shared frame's number) instead."""
        grid = np.full((self.samples, len(self.page_proc)), ABSENT if not frames else OWN_FRAME, np.int32)
        order = np.lexsort((self.change_sample, self.change_page))
        s, p = self.change_sample[order], self.change_page[order]
        c = (self.change_frame if frames else self.change_content)[order]
        # each change holds until the page's next change (or the end)
        nxt = np.r_[s[1:], self.samples]
        nxt[np.r_[p[1:] != p[:-1], True]] = self.samples
        for k in range(len(s)):
            grid[s[k]:nxt[k], p[k]] = c[k]
        return grid


def save(follow: Follow, path: Path) -> None:
    arrays = {
        "magic": np.array(MAGIC), "format": np.array(FORMAT_VERSION, dtype=np.int64),
        "meta": np.array(json.dumps(follow.meta, sort_keys=True)),
        **{f"counter_{c}": np.asarray(follow.counters[c], np.int64) for c in COUNTERS},
        **{name: getattr(follow, name) for name in ARRAYS if not name.startswith("counter_")},
    }
    atomic_write(Path(path), lambda f: np.savez_compressed(f, **arrays))


def load(path: str | Path) -> Follow:
    path = Path(path)
    where = str(path)
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise FollowError(f"{where}: not a regular file, expected a follow file")
        if not zipfile.is_zipfile(path):
            raise FollowError(f"{where}: not a ksmtui follow file (not an .npz file)")
        with np.load(path, allow_pickle=False) as z:
            if "magic" not in z.files or str(z["magic"]) != MAGIC:
                raise FollowError(f"{where}: not a ksmtui follow file (no {MAGIC!r} marker)")
            version = int(z["format"]) if "format" in z.files else 0
            if not 1 <= version <= FORMAT_VERSION:
                raise FollowError(f"{where}: format version {version}: this ksmtui reads 1..{FORMAT_VERSION}")
            missing = [name for name in ARRAYS if name not in z.files]
            if missing:
                raise FollowError(f"{where}: damaged follow file: array {missing[0]!r} is missing")
            arrays = {name: z[name] for name in ARRAYS}
            meta = json.loads(str(z["meta"]))
    except FollowError:
        raise
    except FileNotFoundError:
        raise FollowError(f"{where}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise FollowError(f"{where}: not a readable ksmtui follow file ({e})") from None
    for name, (kind, ndim) in ARRAYS.items():
        a = arrays[name]
        if a.dtype.kind != kind or a.ndim != ndim:
            raise FollowError(f"{where}: damaged follow file: array {name!r} is {a.dtype}, {a.ndim}-d; "
                              f"expected kind {kind!r}, {ndim}-d")
    s, p, n = len(arrays["sample_t"]), len(arrays["proc_pid"]), len(arrays["page_proc"])
    sizes = {"sample": s, "proc": p, "page": n, "change": len(arrays["change_sample"])}
    for name, a in arrays.items():
        prefix = "sample" if name.startswith(("sample_", "counter_")) else name.split("_")[0]
        if len(a) != sizes[prefix]:
            raise FollowError(f"{where}: damaged follow file: array {name!r} has {len(a)} rows, "
                              f"expected {sizes[prefix]}")
    for name, hi in (("page_proc", p), ("change_page", n), ("change_sample", s), ("proc_first", s), ("proc_last", s)):
        a = arrays[name]
        if len(a) and (a.min() < 0 or a.max() >= hi):
            raise FollowError(f"{where}: damaged follow file: array {name!r} holds an index outside 0..{hi - 1}")
    if not isinstance(meta, dict) or not isinstance(meta.get("page_size"), int):
        raise FollowError(f"{where}: damaged follow file: meta has no page_size")
    counters = {c: arrays.pop(f"counter_{c}") for c in COUNTERS}
    return Follow(meta=meta, counters=counters, path=path.resolve(), **arrays)
