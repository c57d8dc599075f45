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

Those constants are the reference profile. A machine's own profile (`ksmtui calibrate` measures
it: ksmtui/bench/calibrate.py) scales BASE_NS (the same, with the tree group in the real ksmd's
proportions, a stable level's step apart, and a cost for the tree entries a wake-up finds cold)
by group, one factor per kind of work ksmd's CPU does (GROUPS), fitted to the real ksmd's
schedstat on workloads that set the groups apart; it also carries the machine's HZ
(engine/timeline.py paces ksmd in its jiffies). The engine never reads a
file: the caller hands a CostProfile to the Simulation, and every output names it (`label`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

# ns per operation
CALL = 50  # cmp_and_merge_page entry: page and rmap_item in hand, folio_stable_node
KSM_EARLY = 40  # the KSM-page prologue: kpfn nid check, rmap_item head compare
CHECKSUM_4K = 840  # xxh64 of a 4 KiB page another CPU wrote (cold in cache)
MEMCMP_EQUAL_4K = 500  # memcmp_pages of two identical 4 KiB pages, both mapped, full length
MEMCMP_DIFFER = 100  # two different pages: mapped, compared to the first differing byte
TREE_STEP = 250  # one rbtree level: a cache miss on the node and on the page it names
STABLE_STEP = TREE_STEP  # the same, in the stable tree (the reference machine's were not told apart)
GET_FOLIO = 40  # ksm_get_folio's keyhole check (stable tree levels)
MERGEABLE_PAGE = 110  # get_mergeable_page on top: mmap_read_lock, VMA lookup, folio walk
MERGE = 2200  # try_to_merge_one_page: lock, write_protect_page (TLB flush), replace_page
INSERT = 120  # rb_link_node + rb_insert_color
SCAN_STEP = 420  # scan_get_next_rmap_item per eligible page: page range walk, rmap_item lookup
WAKEUP = 20_000  # one ksm_scan_thread round: wake-up, ksm_thread_mutex, lru_add_drain, schedule
# A tree entry (an rmap_item or stable node, and the page it names) that ksmd reads for the first
# time in a wake-up misses the caches: during the sleep, other work has evicted it. Later reads in
# the same wake-up, and entries it inserted itself, find it cached. So small batches pay the trees'
# top levels again and again, and a big tree has more entries per batch that only one walk reads
# (a measured profile's; the reference has none). The model keeps no cache capacity: within a
# wake-up an entry stays cached.
TREE_COLD = 0

DEFAULT_HZ = 250  # CONFIG_HZ of the machine the reference constants were measured on

REFERENCE_NS = {
    "call": CALL, "ksm_early": KSM_EARLY, "checksum_4k": CHECKSUM_4K, "memcmp_equal_4k": MEMCMP_EQUAL_4K,
    "memcmp_differ": MEMCMP_DIFFER, "tree_step": TREE_STEP, "stable_step": STABLE_STEP, "get_folio": GET_FOLIO,
    "mergeable_page": MERGEABLE_PAGE, "merge": MERGE, "insert": INSERT, "scan_step": SCAN_STEP,
    "wakeup": WAKEUP, "tree_cold": TREE_COLD,
}
# What a calibration scales, group by group: the reference constants, but for the proportions
# within the tree group, which perf measured on the real ksmd (cpu-clock samples by kernel
# function over the model's operation counts; Linux 6.18, x86-64 VM): an unstable level's
# get_mergeable_page (vma_lookup, the page table walk, the pte lock) costs about twice the
# reference's beside the checksum, an rb-tree step at most a quarter, ksm_get_folio and a
# differing memcmp about the same; and a cold tree entry at about its misses' cost. A stable
# level's rb-tree step is a group of its own: unique pages walking a settled stable tree cost the
# real ksmd about half what these proportions say beside their unstable walks (calibrated on this
# project's machine, its scale came to 0 to 0.06: little beyond ksm_get_folio and the memcmp).
BASE_NS = {**REFERENCE_NS, "tree_step": 120, "stable_step": 120, "mergeable_page": 300, "get_folio": 60,
           "memcmp_differ": 80, "tree_cold": 300}
# what a calibration can tell apart on the real ksmd, which has no per-function timing here: the
# constants of a group scale together
GROUPS = {
    "wakeup": ("wakeup",),
    "scan": ("scan_step", "call", "ksm_early"),
    "checksum": ("checksum_4k",),
    "tree": ("tree_step", "get_folio", "mergeable_page", "memcmp_differ", "memcmp_equal_4k", "insert"),
    "stable": ("stable_step",),
    "merge": ("merge",),
    "cold": ("tree_cold",),
}
REFERENCE_LABEL = "reference costs"


class CostProfileError(ValueError):
    pass


@dataclass(frozen=True)
class CostProfile:
    """ns per operation (REFERENCE_NS's keys) and the HZ ksmd sleeps in; `label` names it in
    every output ("reference costs", or "this machine, measured DATE"). wait_per_cpu: how long
    ksmd waited runnable for a CPU per ns it ran while calibrating (schedstat), the share of a busy
    machine's CPU other tasks took from it; its scans last that much longer on the clock."""

    ns: Mapping[str, int] = field(default_factory=lambda: dict(REFERENCE_NS))
    hz: int = DEFAULT_HZ
    label: str = REFERENCE_LABEL
    scales: Mapping[str, float] = field(default_factory=dict)  # by group, as fitted (informative)
    wait_per_cpu: float = 0.0

    @classmethod
    def scaled(cls, scales: Mapping[str, float], hz: int, label: str, wait_per_cpu: float = 0.0) -> CostProfile:
        """BASE_NS, each group times its scale (a group without one: the reference's constants)."""
        ns = dict(REFERENCE_NS)
        for group, factor in scales.items():
            for name in GROUPS[group]:
                ns[name] = max(0, round(BASE_NS[name] * factor))
        return cls(ns, hz, label, dict(scales), wait_per_cpu)

    def to_json(self) -> dict:
        return {"hz": self.hz, "label": self.label, "ns": dict(self.ns), "scales": dict(self.scales),
                "wait_per_cpu": self.wait_per_cpu}

    @classmethod
    def from_json(cls, data: object, where: str) -> CostProfile:
        """One clear CostProfileError naming `where` and what was expected, on any bad field."""
        if not isinstance(data, dict):
            raise CostProfileError(f"{where}: expected a JSON object")
        ns = data.get("ns")
        if isinstance(ns, dict) and "tree_cold" not in ns:
            # calibrated before cold tree entries were measured (its "cold", a share of each
            # wake-up's first work, is no longer modelled)
            ns = {k: v for k, v in ns.items() if k != "cold"} | {"tree_cold": 0}
        if isinstance(ns, dict) and "stable_step" not in ns and "tree_step" in ns:
            ns = ns | {"stable_step": ns["tree_step"]}  # calibrated before a stable level had its own
        if not isinstance(ns, dict) or set(ns) != set(REFERENCE_NS) or \
                not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ns.values()):
            raise CostProfileError(f"{where}: ns: expected a non-negative integer for each of "
                                   f"{', '.join(REFERENCE_NS)}")
        hz, label = data.get("hz"), data.get("label")
        if not isinstance(hz, int) or isinstance(hz, bool) or not 1 <= hz <= 10_000:
            raise CostProfileError(f"{where}: hz: expected an integer 1..10000")
        if not isinstance(label, str) or not label:
            raise CostProfileError(f"{where}: label: expected a string")
        scales = data.get("scales", {})
        if not isinstance(scales, dict):
            raise CostProfileError(f"{where}: scales: expected an object")
        wait = data.get("wait_per_cpu", 0.0)
        if not isinstance(wait, (int, float)) or isinstance(wait, bool) or not 0 <= wait <= 1000:
            raise CostProfileError(f"{where}: wait_per_cpu: expected a number 0..1000")
        return cls(dict(ns), hz, label, {str(k): float(v) for k, v in scales.items()}, float(wait))


REFERENCE = CostProfile()


JITTER_BLOCK = 4096  # jitter factors made at a time


class CostModel:
    """Accumulates ns as the engine works; `total_ns` only grows."""

    __slots__ = ("total_ns", "_checksum_ns", "_memcmp_equal_ns", "_seq", "_seed", "factors", "call", "ksm_early",
                 "memcmp_differ", "tree_step", "stable_step", "get_folio", "mergeable_page", "merge", "insert",
                 "scan_step", "wakeup", "tree_cold", "wakeups")

    def __init__(self, page_size: int, seed: int = 0, profile: CostProfile = REFERENCE):
        self.total_ns = 0
        scale = page_size / 4096
        ns = profile.ns
        self._checksum_ns = int(ns["checksum_4k"] * scale)
        self._memcmp_equal_ns = int(ns["memcmp_equal_4k"] * scale)
        # the other constants, as attributes ksm.py reads where it charges them
        self.call, self.ksm_early, self.memcmp_differ = ns["call"], ns["ksm_early"], ns["memcmp_differ"]
        self.tree_step, self.get_folio, self.mergeable_page = ns["tree_step"], ns["get_folio"], ns["mergeable_page"]
        self.stable_step = ns["stable_step"]
        self.merge, self.insert, self.scan_step, self.wakeup = ns["merge"], ns["insert"], ns["scan_step"], ns["wakeup"]
        self.tree_cold = ns["tree_cold"]
        # which wake-up ksmd is in (engine/sim.py counts them; from 1, as an entry's `touched` 0 is
        # never): a tree entry last read or written in an earlier one is cold again (RbNode.touched)
        self.wakeups = 1
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
        self.total_ns += self.get_folio

    def charge_merge(self) -> None:
        self.total_ns += self.merge

    def charge_insert(self) -> None:
        self.total_ns += self.insert

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
