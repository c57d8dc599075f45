"""What the engine shows the world: immutable snapshots, copied out of the live structures.

The UI, the headless CLI and the tests read only these. Taking one is cheap (tree excerpts are
bounded), so the UI can take ten a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

# the vocabulary of a call's counts, named here too for the readers of snapshots
from engine.vocabulary import N_BUCKETS as N_BUCKETS
from engine.vocabulary import OUTCOMES as OUTCOMES
from engine.vocabulary import PATHS as PATHS
from engine.vocabulary import bucket_bounds as bucket_bounds
from engine.vocabulary import bucket_of as bucket_of

COUNTERS = (
    "pages_shared",
    "pages_sharing",
    "pages_unshared",
    "pages_volatile",
    "pages_scanned",
    "pages_skipped",
    "full_scans",
    "stable_node_chains",
    "stable_node_dups",
    "ksm_zero_pages",
    "general_profit",
)


def frozen(d: Mapping) -> Mapping:
    return MappingProxyType(dict(d))


@dataclass(frozen=True, slots=True)
class Sharer:
    process: str
    address: int


@dataclass(frozen=True, slots=True)
class StableNodeView:
    kind: str  # "regular", "chain", "dup" or "migrating"
    kpfn: int  # -1 for a chain
    nid: int
    checksum: int  # of the KSM page's content; 0 for a chain
    rmap_hlist_len: int  # sharers; for a chain, its number of dups
    sharers: tuple[Sharer, ...]  # at most a few dozen, in hlist order
    dups: tuple["StableNodeView", ...] = ()  # for a chain, its dups in list order
    # where it hangs in its red-black tree: depth (0 the root; -1 for a dup or a migrating node,
    # which are in no tree), which child of its parent ("L", "R", "" for the root) and its colour
    depth: int = -1
    side: str = ""
    red: bool = False


@dataclass(frozen=True, slots=True)
class UnstableItemView:
    process: str
    address: int
    kpfn: int
    nid: int
    checksum: int  # oldchecksum of the rmap_item
    depth: int = 0  # in the unstable tree, as for StableNodeView
    side: str = ""
    red: bool = False


@dataclass(frozen=True, slots=True)
class WalkStep:
    """One node a tree walk of the last single step met, or one stale node that step pruned."""

    walk: str  # "stable_tree_search", "stable_tree_insert", "unstable_tree_search_insert" or "pruned"
    depth: int  # the node's level in that walk (-1 for a pruned node)
    red: bool  # its colour when the walk met it
    # memcmp_pages(page, the node's page): < 0 the walk went left, > 0 right, 0 equal; None when
    # it was not compared (a pruned node; an unstable item whose page was gone, or the page itself)
    ret: int | None
    node: "StableNodeView | UnstableItemView"


@dataclass(frozen=True, slots=True)
class TreeFound:
    """The answer to a tree search: which tree holds the entry and its in-order rank there."""

    seq: int  # one more per search, so a view tells a new answer from the last one
    query: str
    tree: str | None  # "stable" or "unstable"; None: not found
    rank: int


@dataclass(frozen=True, slots=True)
class Cursor:
    """ksm_scan: where ksmd is. process None means at ksm_mm_head (between full scans)."""

    process: str | None
    region: str | None
    address: int
    seqnr: int
    pass_done: int  # eligible pages visited in this pass (scanned or skipped)
    pass_total: int  # eligible pages in this pass, counted as in the pass start


@dataclass(frozen=True, slots=True)
class ProcessStats:
    name: str
    pid: int
    node: int
    alive: bool
    mapped_pages: int
    ksm_rmap_items: int
    ksm_zero_pages: int
    ksm_merging_pages: int
    ksm_process_profit: int
    ksm_merge_any: bool
    ksm_mergeable: bool


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One cmp_and_merge_page() call, as single-stepping shows it."""

    process: str
    address: int
    path: str  # one of PATHS
    outcome: str  # one of OUTCOMES
    latency_ns: int
    pages_scanned: int = 0  # the counter right after the call: a later scan makes the step old news
    trace: tuple[tuple[str, str, int], ...] = ()  # (function, what it decided, memcmp_pages inside), in order


@dataclass(frozen=True, slots=True)
class Snapshot:
    scenario: str
    description: str
    flow: str
    seed: int
    page_size: int
    sim_ns: int
    finished: bool  # the scenario's [stop] condition was reached
    stop_reason: str | None
    counters: Mapping[str, int]  # COUNTERS, kernel names and meanings
    knobs: Mapping[str, int | str]  # every [ksm] and [engine] knob
    cursor: Cursor
    outcomes: Mapping[str, Mapping[str, int]]  # path -> outcome -> calls, since start
    latency: Mapping[str, tuple[int, ...]]  # path -> N_BUCKETS counts, since start
    latency_recent: Mapping[str, tuple[int, ...]]  # path -> counts over the last few wake-ups
    work: Mapping[str, int]  # calc_checksum, stable_tree_search, unstable_tree_search_insert, memcmp_pages: all paths
    sharers_per_page: Mapping[int, int]  # rmap_hlist_len -> number of KSM pages (regular and dup)
    dups_per_chain: Mapping[int, int]  # dups -> number of chains
    stable_tree: tuple[StableNodeView, ...]  # in tree order, a window from stable_offset on
    stable_tree_size: int  # entries linked in the stable trees (regular nodes + chains)
    unstable_tree: tuple[UnstableItemView, ...]  # in tree order, bounded excerpt
    unstable_tree_size: int
    migrate_nodes: int
    processes: tuple[ProcessStats, ...]
    last_step: StepInfo | None
    events_done: int
    events_pending: int
    # path -> work as above
    work_by_path: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    stable_offset: int = 0  # in-order rank of stable_tree[0] (the migrating nodes come last)
    unstable_offset: int = 0
    last_walk: tuple[WalkStep, ...] = ()  # the tree walks of the last single step (s)
    tree_found: TreeFound | None = None  # the last tree search's answer
    # what THPs went through, modelled (Simulation.thp: thp_split_page, thp_split_page_failed,
    # anon_huge_pages); empty unless the scenario maps THPs
    thp: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    costs: str = "reference costs"  # the cost profile's label (engine/cost.py): what the times are
    ksmd_cpu_ns: int = 0  # ksmd's CPU time so far, modelled

    @property
    def sim_ms(self) -> int:
        return self.sim_ns // 1_000_000
