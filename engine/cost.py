"""The deterministic cost model: what each step of ksmd costs, in nanoseconds.

Latency histograms and the simulated CPU time of ksmd (which drives the scan-time advisor) come
from here by default, so runs and UI snapshots are reproducible. The constants are per operation
on a 4 KiB page; page-proportional work (checksum, memcmp of equal pages) scales with the page
size.

Calibrated against the real ksmd of this project's machines (Linux 6.18, x86-64 VM): ksmd's
on-CPU time (schedstat) per scanned page on workloads where every call takes the same path, less
the scan overhead measured on passes where smart scan skips every page. That kernel inlines
cmp_and_merge_page and has no kprobes or function tracer, so per-call times are these means
spread by `jitter`, not measured distributions. Measured: scan ~420 ns/page; KSM-page early
return < 100 ns beyond the scan; checksum changed ~890 ns; zero-page merge ~3.1 us; unique page
(checksum, stable search, unstable walk, insert) ~9.6 us at 100k pages, ~450 ns per unstable
tree level; ~20 us per wake-up.
"""

from __future__ import annotations

import numpy as np

# ns per operation
CALL = 50  # cmp_and_merge_page entry: page and rmap_item in hand, folio_stable_node
KSM_EARLY = 40  # the KSM-page prologue: kpfn nid check, rmap_item head compare
CHECKSUM_4K = 840  # xxh64 of a 4 KiB page another CPU wrote (cold in cache)
MEMCMP_EQUAL_4K = 500  # memcmp_pages of two identical 4 KiB pages, both mapped, full length
MEMCMP_DIFFER = 100  # two different pages: mapped, compared to the first differing byte
TREE_STEP = 250  # one rbtree level: a cache miss on the node and on the page it names
GET_FOLIO = 40  # ksm_get_folio's keyhole check (stable tree levels)
MERGEABLE_PAGE = 110  # get_mergeable_page on top: mmap_read_lock, VMA lookup, folio walk
MERGE = 2200  # try_to_merge_one_page: lock, write_protect_page (TLB flush), replace_page
INSERT = 120  # rb_link_node + rb_insert_color
SCAN_STEP = 420  # scan_get_next_rmap_item per eligible page: page range walk, rmap_item lookup
WAKEUP = 20_000  # one ksm_scan_thread round: wake-up, ksm_thread_mutex, lru_add_drain, schedule


JITTER_BLOCK = 4096  # jitter factors made at a time


class CostModel:
    """Accumulates ns as the engine works; `total_ns` only grows."""

    __slots__ = ("total_ns", "_checksum_ns", "_memcmp_equal_ns", "_seq", "_seed", "factors")

    def __init__(self, page_size: int, seed: int = 0):
        self.total_ns = 0
        scale = page_size / 4096
        self._checksum_ns = int(CHECKSUM_4K * scale)
        self._memcmp_equal_ns = int(MEMCMP_EQUAL_4K * scale)
        self._seq = 0  # jitter factors made so far
        self._seed = seed & 0xFFFFFFFF
        # the next jitter factors, the next one last; refilled in place, so ksm_do_scan can pop
        # from it directly (a call to jitter() per page costs a tenth of a KSM-page visit)
        self.factors: list[float] = []

    def charge_checksum(self) -> None:
        self.total_ns += self._checksum_ns

    def charge_memcmp_equal(self) -> None:
        self.total_ns += self._memcmp_equal_ns

    def charge_get_folio(self) -> None:
        self.total_ns += GET_FOLIO

    def charge_merge(self) -> None:
        self.total_ns += MERGE

    def charge_insert(self) -> None:
        self.total_ns += INSERT

    def jitter(self, ns: int) -> int:
        """Spread one call's cost by a deterministic factor in [0.75, 1.5): caches, TLB and
        interrupts make equal work take unequal time, and histograms without it would be spikes."""
        factors = self.factors
        if not factors:
            self.refill()
        return int(ns * factors.pop())

    def refill(self) -> None:
        self.factors.extend(self._next_factors())

    def _next_factors(self) -> list[float]:
        """The factors of the next JITTER_BLOCK calls, made at once: per call, the 64-bit hash
        below costs Python more than a whole KSM-page early return. The n-th call's factor is
        0.75 + 0.75 u^2, u the top 24 bits of (n ^ seed) * golden ratio (mod 2^64) over 2^24;
        numpy does the same IEEE double operations in the same order, so the values are exact."""
        seq = np.arange(self._seq + 1, self._seq + 1 + JITTER_BLOCK, dtype=np.uint64)
        self._seq += JITTER_BLOCK
        h = (seq ^ np.uint64(self._seed)) * np.uint64(0x9E3779B97F4A7C15)
        u = (h >> np.uint64(40)).astype(np.float64) / float(1 << 24)
        return (0.75 + (0.75 * u) * u)[::-1].tolist()
