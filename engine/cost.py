"""The deterministic cost model: what each step of ksmd costs, in nanoseconds.

Latency histograms and the simulated CPU time of ksmd (which drives the scan-time advisor) come
from here by default, so runs and UI snapshots are reproducible. The constants are per operation
on a 4 KiB page; page-proportional work (checksum, memcmp of equal pages) scales with the page
size. They were calibrated against cmp_and_merge_page() timed on the real kernel of this machine
(function_graph tracer; see README "Fidelity"): the KSM-page early return lands in [256, 512) ns,
an anonymous page that checksums, walks both trees and inserts lands in [2K, 8K).
"""

from __future__ import annotations

# ns per operation
CALL = 150  # cmp_and_merge_page entry: page and rmap_item in hand, folio_stable_node
KSM_EARLY = 140  # the KSM-page prologue: kpfn nid check, rmap_item head compare
CHECKSUM_4K = 900  # xxhash of one 4 KiB page, cold in cache
MEMCMP_EQUAL_4K = 450  # memcmp_pages of two identical 4 KiB pages (both mapped, full length)
MEMCMP_DIFFER = 110  # two different pages: mapped, compared to the first differing byte
TREE_STEP = 90  # one rbtree level: a cache miss on the node, ksm_get_folio or get_mergeable_page
GET_FOLIO = 40  # ksm_get_folio's keyhole check
MERGE = 2600  # try_to_merge_one_page: lock, write_protect_page (TLB flush), replace_page
INSERT = 120  # rb_link_node + rb_insert_color
SCAN_STEP = 120  # scan_get_next_rmap_item per eligible page: page walk, rmap_item lookup


class CostModel:
    """Accumulates ns as the engine works; `total_ns` only grows."""

    __slots__ = ("total_ns", "_scale", "_seq", "_seed")

    def __init__(self, page_size: int, seed: int = 0):
        self.total_ns = 0
        self._scale = page_size / 4096
        self._seq = 0
        self._seed = seed & 0xFFFFFFFF

    def charge_call(self, ksm_page: bool) -> None:
        self.total_ns += CALL + (KSM_EARLY if ksm_page else 0)

    def charge_checksum(self) -> None:
        self.total_ns += int(CHECKSUM_4K * self._scale)

    def charge_memcmp(self, equal: bool) -> None:
        self.total_ns += int(MEMCMP_EQUAL_4K * self._scale) if equal else MEMCMP_DIFFER

    def charge_tree_step(self) -> None:
        self.total_ns += TREE_STEP

    def charge_get_folio(self) -> None:
        self.total_ns += GET_FOLIO

    def charge_merge(self) -> None:
        self.total_ns += MERGE

    def charge_insert(self) -> None:
        self.total_ns += INSERT

    def charge_scan_step(self) -> None:
        self.total_ns += SCAN_STEP

    def jitter(self, ns: int) -> int:
        """Spread one call's cost by a deterministic factor in [0.75, 1.5): caches, TLB and
        interrupts make equal work take unequal time, and histograms without it would be spikes."""
        self._seq += 1
        h = ((self._seq ^ self._seed) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        u = (h >> 40) / (1 << 24)
        return int(ns * (0.75 + 0.75 * u * u))
