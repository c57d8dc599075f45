"""Deterministic page contents for scenario fills and writes.

Contents are immutable `bytes` objects. A frame holds a reference to one, so a pool page mapped a
million times costs its bytes once; equality and memcmp order are those of the bytes themselves.
The same generators serve the model and the real-kernel runner, so both see the same equality
structure (which pages are identical, which are zero, which are unique).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Random pages are drawn in blocks: one numpy call per block instead of one per page.
_BLOCK_PAGES = 256


def _stream_seed(seed: int, *tags: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, *tags])


class RandomPages:
    """An endless stream of unique, seeded random pages (never all-zero in practice: 2^-32768)."""

    def __init__(self, seed: int, page_size: int, stream: int = 0):
        self._rng = np.random.Generator(np.random.PCG64(_stream_seed(seed, 1, stream)))
        self._page_size = page_size
        self._block = b""
        self._pos = 0

    def next(self) -> bytes:
        ps = self._page_size
        if self._pos >= len(self._block):
            self._block = self._rng.bytes(ps * _BLOCK_PAGES)
            self._pos = 0
        page = self._block[self._pos : self._pos + ps]
        self._pos += ps
        return page

    def take(self, n: int) -> list[bytes]:
        return [self.next() for _ in range(n)]


def pool_pages(seed: int, pool_index: int, pages: int, page_size: int) -> list[bytes]:
    """The distinct contents of one pool: page j is the same wherever it is used."""
    rng = np.random.Generator(np.random.PCG64(_stream_seed(seed, 2, pool_index)))
    block = rng.bytes(pages * page_size)
    return [block[i * page_size : (i + 1) * page_size] for i in range(pages)]


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
