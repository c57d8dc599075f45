"""Deterministic page contents for scenario fills and writes.

Contents are immutable `bytes` objects. A frame holds a reference to one, so a pool page mapped a
million times costs its bytes once; equality and memcmp order are those of the bytes themselves.
The same generators serve the model and the real-kernel runner, so both see the same equality
structure (which pages are identical, which are zero, which are unique).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.capture import Capture, CaptureError, capture_pages
from engine.capture import load as load_capture
from engine.scenario import Event, Fill, Scenario

_M64 = (1 << 64) - 1


def _stream_seed(seed: int, *tags: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed & _M64, *tags])


def _mix(x: int) -> int:
    """splitmix64's finaliser: consecutive counters become unrelated 64-bit values."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class RandomPages:
    """An endless stream of unique, seeded pages.

    Each page is a random 16-byte head (a mixed counter, so no two pages of a stream are equal)
    over a random body drawn once per stream. Like fully random pages, two of them differ in
    their first bytes and never equal a pool page; making one costs a copy, not 4 KiB of random
    numbers, which is what lets a workload rewrite a lot of memory every simulated millisecond.
    """

    def __init__(self, seed: int, page_size: int, stream: int = 0):
        rng = np.random.Generator(np.random.PCG64(_stream_seed(seed, 1, stream)))
        self._body = rng.bytes(page_size)[16:]
        self._key = _mix(seed & _M64 ^ (stream << 32))
        self._n = 0

    def next(self) -> bytes:
        self._n += 1
        return _mix(self._key + self._n).to_bytes(8, "little") + self._n.to_bytes(8, "little") + self._body

    def take(self, n: int) -> list[bytes]:
        return [self.next() for _ in range(n)]


POOL_BLOCK = 256  # pool pages drawn at a time


def pool_pages(seed: int, pool_index: int, pages: int, page_size: int) -> list[bytes]:
    """The distinct contents of one pool: page j is the same wherever it is used.

    Drawn a block at a time, so the peak is the pool plus one block, not twice the pool; the
    generator's 32-bit draws run on across calls, so the bytes are those of one long draw."""
    rng = np.random.Generator(np.random.PCG64(_stream_seed(seed, 2, pool_index)))
    out: list[bytes] = []
    while len(out) < pages:
        n = min(POOL_BLOCK, pages - len(out))
        block = rng.bytes(n * page_size)
        out += [block[i * page_size : (i + 1) * page_size] for i in range(n)]
    return out


def pool_order(seed: int, salt: int, pool_pages_n: int, npages: int, offset: int, shuffled: bool) -> list[int]:
    """Which pool page each of npages gets: sequential from offset, or a seeded random choice."""
    if not shuffled:
        return [(offset + i) % pool_pages_n for i in range(npages)]
    rng = np.random.Generator(np.random.PCG64(_stream_seed(seed, 3, salt)))
    return rng.integers(0, pool_pages_n, size=npages).tolist()


def byte_page(value: int, page_size: int) -> bytes:
    return bytes([value]) * page_size


def file_pages(path: Path, page_size: int) -> list[bytes]:
    """The file's bytes page by page, the last page zero-padded (an empty file gives one zero page)."""
    data = path.read_bytes()
    if not data:
        return [bytes(page_size)]
    pad = (-len(data)) % page_size
    data += bytes(pad)
    return [data[i : i + page_size] for i in range(0, len(data), page_size)]


def sample(seed: int, salt: int, npages: int, fraction: float) -> list[int]:
    """A seeded sample of round(fraction * npages) page indexes (at least one), in ascending order."""
    k = max(1, round(fraction * npages))
    rng = np.random.Generator(np.random.PCG64(_stream_seed(seed, 4, salt)))
    return sorted(rng.choice(npages, size=min(k, npages), replace=False).tolist())


class ScenarioContents:
    """The pages of one run, in run order. The model and the real-kernel runner both draw from
    here, fill by fill and write by write in the same order, so every page holds the same bytes
    in both: one random stream for the whole run, one salt per pool fill and per sampled write."""

    def __init__(self, scenario: Scenario, seed: int):
        self.seed = seed
        self.page_size = scenario.page_size
        self._random = RandomPages(seed, scenario.page_size)
        self._pools = {p.name: (i, p.pages) for i, p in enumerate(scenario.pools)}
        self._pool_pages: dict[str, list[bytes]] = {}
        self._files: dict[Path, list[bytes]] = {}
        self._captures: dict[Path, Capture] = {}
        self._salt = 0

    def _next_salt(self) -> int:
        self._salt += 1
        return self._salt

    def pages(self, fill: Fill, n: int) -> Iterator[bytes]:
        """n pages of a fill. Random pages are drawn as the iterator is consumed; a pool order's
        salt is taken at the call."""
        ps = self.page_size
        if fill.kind == "random":
            return (self._random.next() for _ in range(n))
        if fill.kind == "zero":
            return itertools.repeat(bytes(ps), n)
        if fill.kind == "byte":
            return itertools.repeat(byte_page(fill.byte, ps), n)
        # The loader (engine.scenario) sets the keys that go with each kind.
        if fill.kind == "pool":
            assert fill.pool is not None
            index, size = self._pools[fill.pool]
            pages = self._pool_pages.get(fill.pool)
            if pages is None:
                pages = self._pool_pages[fill.pool] = pool_pages(self.seed, index, size, ps)
            order = pool_order(self.seed, self._next_salt(), size, n, fill.offset, fill.order == "shuffled")
            return (pages[j] for j in order)
        if fill.kind == "file":
            assert fill.path is not None
            pages = self._files.get(fill.path)
            if pages is None:
                pages = self._files[fill.path] = file_pages(fill.path, ps)
            return (pages[i % len(pages)] for i in range(n))
        if fill.kind == "capture":
            return iter(self._capture_pages(fill)[:n])
        raise ValueError(f"unknown fill {fill.kind!r}")

    def _capture_pages(self, fill: Fill) -> list[bytes]:
        """The region's captured pages as synthetic contents: equal where the captured pages were
        equal, zero where they were zero (engine.capture.synthetic_page)."""
        assert fill.capture is not None and fill.pid is not None and fill.vma is not None
        cap = self._captures.get(fill.capture)
        if cap is None:
            cap = self._captures[fill.capture] = load_capture(fill.capture)
        v = cap.vma_index(fill.pid, fill.vma)
        if v is None:  # the loader found it: the file was replaced since
            raise CaptureError(f"{fill.capture}: process {fill.pid} has no VMA starting at {fill.vma:#x}")
        return capture_pages(cap, v)

    def indexes(self, ev: Event, npages: int) -> list[int]:
        """Which pages of a region an event touches: a seeded sample, the first N, or a range."""
        if ev.fraction is not None:
            return sample(self.seed, self._next_salt(), npages, ev.fraction)
        if ev.pages is None:
            return list(range(npages))
        if isinstance(ev.pages, int):
            return list(range(min(ev.pages, npages)))
        start, end = ev.pages
        return list(range(start, min(end, npages)))
