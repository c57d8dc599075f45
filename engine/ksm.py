"""ksmd: the model of mm/ksm.c, its functions in ksm.c's order.

A few terms, as in ksm.c. ksmd walks every registered mm (an mm_slot each, in a circular list
headed by ksm_mm_head) page by page, with one cursor, ksm_scan. Each anonymous page it meets gets
an rmap_item, kept in an address-sorted list per mm. Two trees index page contents:

- the stable tree holds KSM pages: merged, write-protected, so their contents never change and
  the tree stays sorted. A content shared by more than max_page_sharing mappings is held by a
  chain: a tree entry whose dups are several KSM pages of the same content.
- the unstable tree holds pages whose checksum did not change since the last pass. Their
  contents can still change under the tree, so it may be "corrupted"; it is thrown away and
  rebuilt at each full scan (seqnr), which bounds the damage to one pass.

cmp_and_merge_page() decides, for one page, between the two: merge into a KSM page found in the
stable tree, or find an identical page in the unstable tree and make both one new KSM page, or
insert the page into the unstable tree for later pages to find. Before Linux 6.11 ("legacy") it
searched the stable tree first and computed the checksum after; since 6.11 ("optimized") KSM pages
skip the checksum and anonymous pages checksum first, try the zero page, and only then search.
Each version has its own complete body here, to be read beside the kernel's.

Model simplifications, each said once here: there are no locks, so every trylock succeeds and
-EBUSY never happens (the paths are kept); no swap; an anon_vma is a flag. Transparent huge pages
are met as 6.18 meets them (docs/thp.md): ksmd scans a THP subpage by subpage, and
try_to_merge_one_page splits it (engine/machine.py split_huge_page) the first time one of its
subpages is about to merge; the legacy flow splits the same way but, as 6.10 did, without sending
zero-filled subpages to the zero page (read in the source, not run on a 6.10 kernel). Every
counter keeps the kernel's name and update points. What the model adds is its cost
(engine/cost.py: each step of ksmd charges its simulated time, which drives the clock and the
advisor) and a count of what every call did (path, outcome, latency, work: engine/vocabulary.py),
kept in ksm_do_scan() and the four counted operations. What only the UI and a single step show
(sharers per KSM page, chains, pass progress, traces of calls and tree walks) is
engine/instrument.py's, which wraps these functions instead of running through them.

mm/ksm.c function                 where it is here
--------------------------------  ----------------------------------------------------------------
ksm_mm_slot, ksm_scan,            MmSlot, KsmScan, StableNode, RmapItem
  ksm_stable_node, ksm_rmap_item
set_advisor_defaults              Ksm.set_advisor_defaults
advisor_start_scan                Ksm.advisor_start_scan
ewma, prev_scan_time              ewma; prev_scan_time inline in Ksm.scan_time_advisor
scan_time_advisor                 Ksm.scan_time_advisor
advisor_stop_scan                 Ksm.advisor_stop_scan
is_stable_node_chain, _dup        is_stable_node_chain, is_stable_node_dup
stable_node_chain_add_dup         Ksm.stable_node_chain_add_dup
__stable_node_dup_del             Ksm._stable_node_dup_del
stable_node_dup_del               Ksm.stable_node_dup_del
alloc_rmap_item                   inline in get_next_rmap_item
free_rmap_item                    Ksm.free_rmap_item
mm_slot_free + list_del,          Ksm._drop_slot; Ksm.registered_slots
  list_for_each_entry (mm_slot.h)
break_ksm                         Ksm.break_ksm (the fault: engine/machine.py unshare)
find_mergeable_vma                Ksm.find_mergeable_vma
break_cow                         Ksm.break_cow
get_mergeable_page                Ksm.get_mergeable_page (inline in unstable_tree_search_insert)
get_kpfn_nid                      Ksm.get_kpfn_nid
alloc_stable_node_chain           Ksm.alloc_stable_node_chain
free_stable_node_chain            Ksm.free_stable_node_chain
remove_node_from_stable_tree      Ksm.remove_node_from_stable_tree
ksm_get_folio                     Ksm.ksm_get_folio (inline in walk_step)
remove_rmap_item_from_tree        Ksm.remove_rmap_item_from_tree
remove_trailing_rmap_items        Ksm.remove_trailing_rmap_items
unmerge_ksm_pages                 Ksm.unmerge_ksm_pages
folio_stable_node                 ksm_mapping.get (page->mapping of KSM pages)
remove_stable_node                Ksm.remove_stable_node
remove_stable_node_chain          Ksm.remove_stable_node_chain
remove_all_stable_nodes           Ksm.remove_all_stable_nodes
unmerge_and_remove_all_rmap_items Ksm.unmerge_and_remove_all_rmap_items (run=2)
calc_checksum                     calc_checksum (the hash), Ksm.calc_checksum (counted, charged)
memcmp_pages (mm/util.c)          Ksm.memcmp_pages (inline in unstable_tree_search_insert)
write_protect_page, replace_page, Ksm.try_to_merge_one_page
  try_to_merge_one_page
split_huge_page (huge_memory.c)   engine/machine.py Machine.split_huge_page
try_to_merge_with_zero_page       Ksm.try_to_merge_with_zero_page
try_to_merge_with_ksm_page        Ksm.try_to_merge_with_ksm_page
try_to_merge_two_pages            Ksm.try_to_merge_two_pages
__is_page_sharing_candidate       Ksm.is_page_sharing_candidate (offset 0: is_page_sharing_candidate)
stable_node_dup                   Ksm.stable_node_dup
stable_node_dup_any (6.10)        Ksm.stable_node_dup_any
__stable_node_chain (chain,       Ksm.stable_node_chain; Ksm.walk_step is a walk's call of it
  chain_prune)
stable_tree_search                Ksm.stable_tree_search (its labels out, replace, chain_append:
                                    Ksm._migrated_out, Ksm._replace, Ksm._chain_append)
stable_tree_insert                Ksm.stable_tree_insert
unstable_tree_search_insert       Ksm.unstable_tree_search_insert
stable_tree_append                Ksm.stable_tree_append
cmp_and_merge_page                Ksm.cmp_and_merge_page -> cmp_and_merge_page_v6_10 / _v6_11
get_next_rmap_item                Ksm.get_next_rmap_item
skip_age                          skip_age
should_skip_rmap_item             Ksm.should_skip_rmap_item
scan_get_next_rmap_item           Ksm.scan_get_next_rmap_item
ksm_do_scan                       Ksm.ksm_do_scan
ksmd_should_run                   Ksm.ksmd_should_run
ksm_scan_thread                   engine/sim.py: one round is Simulation._wake (ksmd_should_run),
                                    _scan (ksm_do_scan), _end_batch (sleep_millisecs)
ksm_madvise, ksm_enable_merge_any engine/machine.py madvise, prctl_set_memory_merge
__ksm_enter                       Ksm.ksm_enter
__ksm_exit                        Ksm.ksm_exit
ksm_fork,                         Ksm.ksm_fork, Ksm.ksm_might_unmap_zero_page
  ksm_might_unmap_zero_page         (include/linux/ksm.h)
ksm_process_profit                Ksm.ksm_process_profit
*_store (sysfs)                   Ksm.set_knob
*_show (sysfs)                    Ksm.counters, Ksm.general_profit
rb_link_node + rb_insert_color,   engine/tree.py RbRoot.link, RbRoot.erase, RbRoot.replace
  rb_erase, rb_replace_node         (lib/rbtree.c)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, TypedDict, cast

import xxhash

try:
    import cython  # the compiled build reads the few declarations made here (the rest: ksm.pxd)
except ImportError:
    from engine import _cython_shim as cython

from engine.cost import CostModel
from engine.knobs import KSM_KNOBS, KnobError
from engine.tree import RbNode, RbRoot
from engine.vocabulary import N_BUCKETS, OUTCOMES, PATHS, WORK

if TYPE_CHECKING:
    from engine.machine import MM, VMA, Machine

STABLE_NODE_CHAIN = -1024
SEQNR_MASK = 0x0FF
U8_MAX = 0xFF  # rmap_item->age saturates here
UNSTABLE_FLAG = 0x100
STABLE_FLAG = 0x200
SIZEOF_RMAP_ITEM = 64  # x86-64; the size general_profit charges per rmap_item

KSM_RUN_MERGE = 1
KSM_RUN_UNMERGE = 2

# the path of a call (engine/vocabulary.py PATHS) as ksm_do_scan counts it: an index
KSM_PAGE, ANON_PAGE, ZERO_PAGE = (PATHS.index(p) for p in ("ksm_page", "anon_page", "zero_page"))
N_OUTCOMES = len(OUTCOMES)
OUTCOME_INDEX = {o: i for i, o in enumerate(OUTCOMES)}

# stable_node->head values (the kernel uses magic addresses)
STABLE_NODE_DUP_HEAD = "dup"
MIGRATE_NODES = "migrate_nodes"

EBUSY = 16
EFAULT = 14
BUSY = -EBUSY  # ERR_PTR(-EBUSY) from stable_tree_search

# the scan-time advisor (scan_time_advisor)
KSM_ADVISOR_MIN_CPU = 10  # percent of a CPU the advisor's pages_to_scan never goes below
EWMA_WEIGHT = 30  # percent of the newest scan's change in the moving average

NSEC_PER_MSEC = 1_000_000
MSEC_PER_SEC = 1000


class KsmKnobs(TypedDict):
    """/sys/kernel/mm/ksm's tunables, as this ksmd holds them (engine/knobs.py KSM_KNOBS)."""

    run: int
    pages_to_scan: int
    sleep_millisecs: int
    max_page_sharing: int
    use_zero_pages: int
    merge_across_nodes: int
    smart_scan: int
    stable_node_chains_prune_millisecs: int
    advisor_mode: str
    advisor_target_scan_time: int
    advisor_max_cpu: int
    advisor_min_pages_to_scan: int
    advisor_max_pages_to_scan: int


class MmSlot:
    """ksm_mm_slot: one registered mm, linked in the circular list headed by ksm_mm_head."""

    __slots__ = ("mm", "rmap_list", "prev", "next")

    def __init__(self, mm: MM):
        self.mm = mm
        self.rmap_list: RmapItem | None = None  # address-sorted singly linked list
        self.prev: MmSlot = self
        self.next: MmSlot = self


class KsmScan:
    """ksm_scan: the cursor, the one instance of it."""

    __slots__ = ("mm_slot", "address", "rmap_list", "seqnr")

    def __init__(self, head: MmSlot):
        self.mm_slot = head
        self.address = 0
        # where the next expected rmap_item hangs: its .rmap_list (ksm.c's rmap_item **)
        self.rmap_list: MmSlot | RmapItem = head
        self.seqnr = 0


class StableNode(RbNode):
    """ksm_stable_node in its four roles: regular node, chain, dup, migrating node."""

    __slots__ = ("head", "hlist", "dups", "kpfn", "chain_prune_time", "rmap_hlist_len", "nid", "chain")

    def __init__(self, kpfn: int, nid: int):
        super().__init__()  # linked in a stable tree as a regular node or a chain
        self.head: str | None = None  # STABLE_NODE_DUP_HEAD, MIGRATE_NODES or None
        # regular/dup: its rmap_items, oldest first (hlist_add_head order reversed)
        self.hlist: dict[RmapItem, None] = {}
        # chain: its dups, head of the list first (the kernel keeps them in the same hlist field;
        # here each list has one type). Set by alloc_stable_node_chain.
        self.dups: list[StableNode]
        self.kpfn = kpfn
        self.chain_prune_time = 0
        self.rmap_hlist_len = 0
        self.nid = nid
        self.chain: StableNode | None = None  # a dup's chain (the kernel reaches it via hlist_dup)


class RmapItem(RbNode):
    """ksm_rmap_item: one scanned virtual page. `address` is page aligned; flags live apart."""

    __slots__ = (
        "rmap_list", "mm", "vma", "address", "flags", "oldchecksum", "age", "remaining_skips",
        "head", "nid",
    )

    def __init__(self, vma: VMA, address: int):
        super().__init__()  # unstable: linked in the current pass's tree
        self.rmap_list: RmapItem | None = None
        self.mm = vma.mm
        # the VMA holding address, found once: VMAs never move or split in this model (exit
        # empties mm.vmas and clears mm.alive, madvise only flips vm_mergeable), and the
        # unstable tree walk looks it up at every level
        self.vma = vma
        self.address = address
        self.flags = 0  # SEQNR_MASK | UNSTABLE_FLAG | STABLE_FLAG
        self.oldchecksum = 0
        self.age = 0
        self.remaining_skips = 0
        self.head: StableNode | None = None  # stable: the node whose hlist holds this item
        self.nid = 0  # unstable: which unstable tree


def ewma(prev: int, curr: int) -> int:
    """The exponentially weighted moving average of the advisor's change factor."""
    return ((100 - EWMA_WEIGHT) * prev + EWMA_WEIGHT * curr) // 100


def is_stable_node_chain(node: StableNode) -> bool:
    return node.rmap_hlist_len == STABLE_NODE_CHAIN


def is_stable_node_dup(node: StableNode) -> bool:
    return node.head == STABLE_NODE_DUP_HEAD


def calc_checksum(data: bytes) -> int:
    """xxhash of the page, kept in a u32: the low 32 bits of XXH64(seed 0) on 64-bit kernels."""
    return xxhash.xxh64_intdigest(data) & 0xFFFFFFFF


def skip_age(age: int) -> int:
    """How many visits smart scan skips a page of this age: the age says how often merging it was
    already tried in vain, and the younger the page the fewer visits it is skipped for."""
    if age <= 3:
        return 1
    if age <= 5:
        return 2
    if age <= 8:
        return 4
    return 8


def bit_length(ns: int) -> int:
    """ns.bit_length() (ns >= 0), ksm_do_scan's latency bucket: compiled, a C loop on a C
    integer, as the method would want ns made a Python int, one per page."""
    if not cython.compiled:
        return ns.bit_length()
    length = 0
    while ns:
        ns >>= 1
        length += 1
    return length


class Ksm:
    def __init__(self, machine: Machine, knobs: Mapping[str, int | str], flow: str, latency: str = "model",
                 seed: int = 0):
        """ksm_init and ksm.c's static state: the trees, the cursor, the counters."""
        self.machine = machine
        self.page_size = machine.page_size
        self.page_shift = machine.page_size.bit_length() - 1
        self.flow = flow  # picks cmp_and_merge_page's body: legacy is 6.10's, the others 6.11's
        self.latency = latency
        # every knob is filled in by the caller, each value parsed for its knob (KSM_KNOBS)
        self.knobs = cast(KsmKnobs, dict(knobs))
        # the checksum of an empty page depends on page size and endianness
        self.zero_checksum = calc_checksum(machine.zero_page)
        self.now_ns = 0  # the simulated clock (jiffies), advanced by the simulation
        # page->mapping of the machine's KSM pages: the stable nodes this ksmd puts there
        self.ksm_mapping = cast("dict[int, StableNode | None]", machine.ksm_mapping)

        self.ksm_mm_head = MmSlot(cast("MM", None))  # the head's mm is never read
        self.ksm_scan = KsmScan(self.ksm_mm_head)
        self.nr_node_ids = machine.numa_nodes
        self.root_stable_tree: list[RbRoot[StableNode]] = [RbRoot() for _ in range(self.nr_node_ids)]
        self.root_unstable_tree: list[RbRoot[RmapItem]] = [RbRoot() for _ in range(self.nr_node_ids)]
        self.migrate_nodes: dict[StableNode, None] = {}  # recently migrated nodes, pending placement

        self.ksm_pages_shared = 0
        self.ksm_pages_sharing = 0
        self.ksm_pages_unshared = 0
        self.ksm_rmap_items = 0
        self.ksm_stable_node_chains = 0
        self.ksm_stable_node_dups = 0
        self.ksm_pages_scanned = 0
        self.ksm_pages_skipped = 0
        self.ksm_zero_pages = 0

        self.cost = CostModel(machine.page_size, seed)
        self.ksmd_cpu_ns = 0  # ksmd's runtime, from the cost model: drives the advisor
        self.advisor_ctx = {"start_scan": 0, "scan_time": 0, "change": 0, "cpu_time": 0}
        # what every call did and cost, by the path of the call (ksm_do_scan): flat, the path's
        # index first, as counting a call must allocate nothing (compiled, they are C arrays);
        # outcomes and latency_hist give them as dicts by name
        outcome_calls: list[int] = [0] * (len(PATHS) * N_OUTCOMES)
        latency_calls: list[int] = [0] * (len(PATHS) * N_BUCKETS)
        self.outcome_calls = outcome_calls
        self.latency_calls = latency_calls
        # operations done, by the path of the call that did them; `work` is the current call's
        self.work_by_path = {p: dict.fromkeys(WORK, 0) for p in PATHS}
        self.work = self.work_by_path["anon_page"]
        self.last_call: tuple[MM, int, str, str, int] | None = None  # (mm, address, path, outcome, ns)
        # the pages ksmd holds a reference to while it merges two (try_to_merge_two_pages): the
        # scanned page and the unstable tree's; otherwise only the page being merged
        self.page_refs: tuple[int, ...] = ()

    @property
    def outcomes(self) -> dict[str, dict[str, int]]:
        """Calls since the start, by path and outcome."""
        calls = list(self.outcome_calls)
        return {p: dict(zip(OUTCOMES, calls[i * N_OUTCOMES:(i + 1) * N_OUTCOMES], strict=True))
                for i, p in enumerate(PATHS)}

    @property
    def latency_hist(self) -> dict[str, list[int]]:
        """Calls since the start, by path and latency bucket (engine/vocabulary.py bucket_of)."""
        calls = list(self.latency_calls)
        return {p: calls[i * N_BUCKETS:(i + 1) * N_BUCKETS] for i, p in enumerate(PATHS)}

    @property
    def merge_across_nodes(self) -> bool:
        return bool(self.knobs["merge_across_nodes"])

    @property
    def max_page_sharing(self) -> int:
        return self.knobs["max_page_sharing"]

    # ---------------------------------------------------------------------------- advisor --

    def set_advisor_defaults(self) -> None:
        if self.knobs["advisor_mode"] == "scan-time":
            # the kernel zeroes start_scan: its first scan time would count from boot; here from now
            self.advisor_ctx = {"start_scan": self.now_ns, "scan_time": 0, "change": 0, "cpu_time": 0}
            self.knobs["pages_to_scan"] = self.knobs["advisor_min_pages_to_scan"]
        else:
            self.knobs["pages_to_scan"] = cast(int, KSM_KNOBS["pages_to_scan"].default)

    def advisor_start_scan(self) -> None:
        if self.knobs["advisor_mode"] == "scan-time":
            self.advisor_ctx["start_scan"] = self.now_ns

    def scan_time_advisor(self) -> None:
        """At the end of a full scan, the next pages_to_scan: scaled by how the last scan time
        compares with the target (pages_to_scan * scan_time / target), times a change factor
        smoothed over scans (ewma) against perturbations, held between the CPU bounds (the cost
        per page of the last scan, at KSM_ADVISOR_MIN_CPU and advisor_max_cpu percent) and under
        advisor_max_pages_to_scan. ksmd's CPU time is the cost model's."""
        ctx = self.advisor_ctx
        k = self.knobs
        scan_time = (self.now_ns - ctx["start_scan"]) // NSEC_PER_MSEC // MSEC_PER_SEC or 1
        cpu_time = self.ksmd_cpu_ns
        cpu_time_diff_ms = (cpu_time - ctx["cpu_time"]) // NSEC_PER_MSEC
        cpu_percent = cpu_time_diff_ms * 100 // (scan_time * 1000) or 1
        # prev_scan_time: the current scan time stands in for a previous one not yet known
        last_scan_time = ctx["scan_time"] or scan_time
        # scan time as a percentage of the target scan time
        factor = k["advisor_target_scan_time"] * 100 // scan_time or 1
        # scan time as a percentage of the last scan time, smoothed
        change = scan_time * 100 // last_scan_time or 1
        change = ewma(ctx["change"], change)
        pages = k["pages_to_scan"] * 100 // factor
        pages = pages * change // 100
        per_page_cost = k["pages_to_scan"] // cpu_percent or 1
        pages = min(pages, per_page_cost * k["advisor_max_cpu"])
        pages = max(pages, per_page_cost * KSM_ADVISOR_MIN_CPU)
        pages = min(pages, k["advisor_max_pages_to_scan"])
        ctx["change"], ctx["scan_time"], ctx["cpu_time"] = change, scan_time, cpu_time
        k["pages_to_scan"] = pages

    def advisor_stop_scan(self) -> None:
        if self.knobs["advisor_mode"] == "scan-time":
            self.scan_time_advisor()

    # --------------------------------------------------------------- chains, dups, slots --

    def stable_node_chain_add_dup(self, dup: StableNode, chain: StableNode) -> None:
        dup.head = STABLE_NODE_DUP_HEAD
        dup.chain = chain
        chain.dups.insert(0, dup)
        self.ksm_stable_node_dups += 1

    def _stable_node_dup_del(self, dup: StableNode) -> None:
        """__stable_node_dup_del."""
        chain = dup.chain
        assert chain is not None, "a dup hangs off a chain"
        chain.dups.remove(dup)
        dup.chain = None
        self.ksm_stable_node_dups -= 1

    def stable_node_dup_del(self, dup: StableNode) -> None:
        if is_stable_node_dup(dup):
            self._stable_node_dup_del(dup)
            dup.head = None
        else:
            self.root_stable_tree[dup.nid].erase(dup)

    def free_rmap_item(self, item: RmapItem) -> None:
        self.ksm_rmap_items -= 1
        item.mm.ksm_rmap_items -= 1

    def _slot_del(self, slot: MmSlot) -> None:
        slot.prev.next = slot.next
        slot.next.prev = slot.prev
        slot.prev = slot.next = slot

    def _drop_slot(self, slot: MmSlot, clear_merge_any: bool) -> None:
        """hash_del + list_del + mm_slot_free: the mm leaves ksmd's lists."""
        self._slot_del(slot)
        mm = slot.mm
        mm.ksm_slot = None
        mm.mmf_vm_mergeable = False
        if clear_merge_any:
            mm.mmf_vm_merge_any = False

    def registered_slots(self) -> Iterator[MmSlot]:
        """list_for_each_entry over ksm_mm_head: every registered mm's slot, in scan order."""
        slot = self.ksm_mm_head.next
        while slot is not self.ksm_mm_head:
            nxt = slot.next
            yield slot
            slot = nxt

    # -------------------------------------------------------------- faults, VMAs, pages --

    def break_ksm(self, vma: VMA, index: int) -> None:
        """Break COW on a KSM page (or KSM zero page) by unsharing it: a fault with
        FAULT_FLAG_UNSHARE gives the address an exclusive anonymous copy. One fault does it here:
        nothing can race it, so there is no loop."""
        self.machine.unshare(vma, index)

    def find_mergeable_vma(self, mm: MM, address: int) -> VMA | None:
        vma = mm.find_vma(address)
        if vma is None or not vma.vm_mergeable or not vma.anon_vma:
            return None
        return vma

    def break_cow(self, item: RmapItem) -> None:
        vma = self.find_mergeable_vma(item.mm, item.address)
        if vma is not None:
            self.break_ksm(vma, (item.address - vma.vm_start) >> self.page_shift)

    def get_mergeable_page(self, item: RmapItem) -> int | None:
        """The anon page now at an unstable item's address, if its VMA is still mergeable."""
        vma = item.vma
        if not item.mm.alive or not vma.vm_mergeable or not vma.anon_vma:
            return None
        pfn = vma.pte[(item.address - vma.vm_start) >> self.page_shift]
        return pfn if pfn > 0 else None

    def get_kpfn_nid(self, pfn: int) -> int:
        """Which tree of root_stable_tree[] and root_unstable_tree[]: with merge_across_nodes
        there is one of each, at 0; without, one per NUMA node."""
        return 0 if self.knobs["merge_across_nodes"] else self.machine.frame_nid[pfn]

    def alloc_stable_node_chain(self, dup: StableNode, root: RbRoot[StableNode]) -> StableNode:
        chain = StableNode(-1, dup.nid)
        chain.dups = []
        chain.rmap_hlist_len = STABLE_NODE_CHAIN
        chain.chain_prune_time = self.now_ns
        self.ksm_stable_node_chains += 1
        # the chain takes the old node's place in the tree (its first dimension), and the old
        # node becomes the chain's first dup (the second dimension): every dup of a chain is a
        # write-protected page of the same content
        root.replace(dup, chain)
        self.stable_node_chain_add_dup(dup, chain)
        return chain

    def free_stable_node_chain(self, chain: StableNode, root: RbRoot[StableNode]) -> None:
        root.erase(chain)
        self.ksm_stable_node_chains -= 1

    def remove_node_from_stable_tree(self, node: StableNode) -> None:
        items = node.hlist
        n = len(items)
        for i, item in enumerate(items):
            # the oldest item (first in our order, last in the hlist) is the one counted as shared
            if i:
                self.ksm_pages_sharing -= 1
            else:
                self.ksm_pages_shared -= 1
            item.mm.ksm_merging_pages -= 1
            item.head = None
            item.flags = 0
        node.rmap_hlist_len -= n
        node.hlist = {}
        if node.head is MIGRATE_NODES:
            del self.migrate_nodes[node]
        else:
            self.stable_node_dup_del(node)

    def ksm_get_folio(self, node: StableNode) -> int | None:
        """Is the node's page still its KSM page? The node holds no reference to the page (that
        would keep a freed page from being reclaimed until ksmd came by): it looks through a
        keyhole instead, the page's mapping still pointing back at this node. A stale node is
        removed from the stable tree."""
        self.cost.charge_get_folio()
        if node.touched != self.cost.wakeups:  # a chain's dups are entries of their own
            node.touched = self.cost.wakeups
            self.cost.total_ns += self.cost.tree_cold
        pfn = node.kpfn
        if self.ksm_mapping.get(pfn) is node:
            return pfn
        self.remove_node_from_stable_tree(node)
        return None

    def remove_rmap_item_from_tree(self, item: RmapItem) -> None:
        flags = item.flags
        if flags & STABLE_FLAG:
            node = item.head
            assert node is not None, "STABLE_FLAG: listed from a stable node"
            if self.ksm_get_folio(node) is None:
                return  # the node was stale: removing it un-accounted this item too
            del node.hlist[item]
            if node.hlist:
                self.ksm_pages_sharing -= 1
            else:
                self.ksm_pages_shared -= 1
            item.mm.ksm_merging_pages -= 1
            node.rmap_hlist_len -= 1
            self.on_rmap_hlist_del(node)
            item.head = None
            item.flags = 0
        elif flags & UNSTABLE_FLAG:
            # the unstable tree was reset at the start of this pass, so an item from an earlier
            # pass is in no tree; one inserted by this pass is (an exiting mm's, say) and must go
            age = (self.ksm_scan.seqnr - (flags & SEQNR_MASK)) & 0xFF
            assert age <= 1, "unstable rmap_item older than one pass"
            if age == 0:
                self.root_unstable_tree[item.nid].erase(item)
            self.ksm_pages_unshared -= 1
            item.flags = 0

    def on_rmap_hlist_del(self, node: StableNode) -> None:
        """The one instrumentation hook here: an rmap_item just left node's hlist in
        remove_rmap_item_from_tree(). That function runs for nearly every anonymous page scanned,
        so wrapping it would slow every run by a few percent; engine/instrument.py overrides this
        instead, and wraps the other functions that change an hlist (they run only on merges and
        stale nodes)."""

    def remove_trailing_rmap_items(self, owner: MmSlot | RmapItem) -> None:
        item = owner.rmap_list
        owner.rmap_list = None
        while item is not None:
            nxt = item.rmap_list
            self.remove_rmap_item_from_tree(item)
            self.free_rmap_item(item)
            item = nxt

    def unmerge_ksm_pages(self, vma: VMA) -> None:
        """break_ksm on every page of the VMA (MADV_UNMERGEABLE, prctl off, run=2). The rmap_items
        are left for ksmd's next pass to clean up: ksmd may be in cmp_and_merge_page() on one of
        them, and rmap_items are not copied at fork either."""
        for index in range(len(vma.pte)):
            self.break_ksm(vma, index)

    def remove_stable_node(self, node: StableNode) -> bool:
        """False (EBUSY) while the node's page is still mapped: merge_across_nodes and
        max_page_sharing are then refused."""
        if self.ksm_mapping.get(node.kpfn) is node:
            return False
        self.remove_node_from_stable_tree(node)
        return True

    def remove_stable_node_chain(self, node: StableNode, root: RbRoot[StableNode]) -> bool:
        """True (busy) at the first node whose page is still mapped."""
        if not is_stable_node_chain(node):
            return not self.remove_stable_node(node)
        for dup in list(node.dups):
            if not self.remove_stable_node(dup):
                return True
        self.free_stable_node_chain(node, root)
        return False

    def remove_all_stable_nodes(self) -> bool:
        """Drop every stable node whose KSM page is gone; False (EBUSY) if one is still mapped."""
        ok = True
        for root in self.root_stable_tree:
            # always the root entry, as the kernel takes it, and on to the next nid at a busy one
            while root.rb_node is not None:
                if self.remove_stable_node_chain(root.rb_node, root):
                    ok = False
                    break
        for node in list(self.migrate_nodes):
            ok &= self.remove_stable_node(node)
        return ok

    def unmerge_and_remove_all_rmap_items(self) -> None:
        """run=2: break every KSM page and KSM zero page, free every rmap_item, forget the trees."""
        head = self.ksm_mm_head
        slot = head.next
        self.ksm_scan.mm_slot = slot
        while slot is not head:
            mm = slot.mm
            if mm.alive:
                for vma in mm.vmas:
                    if vma.vm_mergeable and vma.anon_vma:
                        self.unmerge_ksm_pages(vma)
            self.remove_trailing_rmap_items(slot)
            nxt = slot.next
            if not mm.alive:
                self._drop_slot(slot, clear_merge_any=True)
            slot = nxt
            self.ksm_scan.mm_slot = slot
        # clean up stable nodes, but don't worry if some are still busy
        self.remove_all_stable_nodes()
        for root in self.root_unstable_tree:
            root.reset()
        self.ksm_scan.mm_slot = head
        self.ksm_scan.seqnr = 0

    # --------------------------------------------------------------------- comparing pages --

    def calc_checksum(self, pfn: int) -> int:
        """calc_checksum(page) as ksmd calls it: counted and charged (the hash: calc_checksum())."""
        self.work["calc_checksum"] += 1
        self.cost.charge_checksum()
        return calc_checksum(self.machine.content[pfn])

    def memcmp_pages(self, a: int, b: int) -> int:
        """mm/util.c's memcmp_pages, counted and charged: the first 8 bytes decide most pairs."""
        self.work["memcmp_pages"] += 1
        prefix = self.machine.frame_prefix
        if prefix[a] != prefix[b]:
            self.cost.total_ns += self.cost.memcmp_differ
            return -1 if prefix[a] < prefix[b] else 1
        content = self.machine.content
        x, y = content[a], content[b]
        if x == y:
            self.cost.charge_memcmp_equal()
            return 0
        self.cost.total_ns += self.cost.memcmp_differ
        return -1 if x < y else 1

    # -------------------------------------------------------------------------- merging --

    def try_to_merge_one_page(self, vma: VMA, index: int, pfn: int, kpfn: int | None) -> bool:
        """Write-protect the page and map kpfn in its place (kpfn None: make it a KSM page).
        write_protect_page's check that nothing but the mappings holds the page always passes
        here (engine/machine.py), and the page is mapped once or already write-protected."""
        machine = self.machine
        if pfn == kpfn:
            return True  # KSM page forked
        self.cost.charge_merge()
        fid = machine.frame_folio[pfn]
        if fid:
            # the folio is large: split it. With two of ksmd's references on it (two subpages of
            # one THP met in the unstable tree), the split's refcount check fails.
            refs = self.page_refs or (pfn,)
            extra_ref = sum(machine.frame_folio[r] == fid for r in refs) > 1
            if not machine.split_huge_page(pfn, refs, extra_ref, remap_zero=self.flow != "legacy"):
                return False
        if vma.pte[index] != pfn:
            # write_protect_page finds no pte of the page at the address: the split mapped the
            # zero page there instead (a zero-filled subpage), -EFAULT
            return False
        if kpfn is None:
            # the page becomes a KSM page with no stable node yet: stable_tree_insert() gives it one
            self.ksm_mapping[pfn] = None
            return True
        if kpfn == 0:
            if machine.content[pfn] != machine.zero_page:
                return False
            vma.pte[index] = 0
            vma.mm.ksm_zero_pages += 1
            self.ksm_zero_pages += 1
        else:
            if machine.content[pfn] != machine.content[kpfn]:
                return False
            vma.pte[index] = kpfn
            machine.mapcount[kpfn] += 1
        machine.put_frame(pfn)
        return True

    def try_to_merge_with_zero_page(self, item: RmapItem, pfn: int) -> int:
        """0 when done with this page (merged, or its VMA went away); -EFAULT to carry on."""
        # same checksum as an empty page: merge it with the zero page if use_zero_pages says so
        if self.knobs["use_zero_pages"] and item.oldchecksum == self.zero_checksum:
            vma = self.find_mergeable_vma(item.mm, item.address)
            if vma is None:
                return 0  # the VMA is out of date: nothing more to do
            index = (item.address - vma.vm_start) >> self.page_shift
            if self.try_to_merge_one_page(vma, index, pfn, 0):
                return 0
        return -EFAULT

    def try_to_merge_with_ksm_page(self, item: RmapItem, pfn: int, kpfn: int | None) -> bool:
        """As try_to_merge_two_pages, with no new KSM page: kpfn already is one."""
        vma = self.find_mergeable_vma(item.mm, item.address)
        if vma is None:
            return False
        index = (item.address - vma.vm_start) >> self.page_shift
        if not self.try_to_merge_one_page(vma, index, pfn, kpfn):
            return False
        self.remove_rmap_item_from_tree(item)
        return True

    def try_to_merge_two_pages(self, item: RmapItem, pfn: int, tree_item: RmapItem, tree_pfn: int) -> int | None:
        """The scanned page becomes the KSM page; the tree item's address is mapped onto it."""
        self.page_refs = (pfn, tree_pfn)
        try:
            if not self.try_to_merge_with_ksm_page(item, pfn, None):
                return None
            if self.try_to_merge_with_ksm_page(tree_item, tree_pfn, pfn):
                return pfn
        finally:
            self.page_refs = ()
        # a KSM page with only one PTE pointing to it: break it
        self.break_cow(item)
        return None

    def is_page_sharing_candidate(self, node: StableNode, offset: int = 0) -> bool:
        """__is_page_sharing_candidate: room for offset + 1 more sharers, and at least one mapping
        left (else the other sharer's page is about to be freed: no point merging with it)."""
        return node.rmap_hlist_len != 0 and node.rmap_hlist_len + offset < self.max_page_sharing

    # ---------------------------------------------------------------------- the stable tree --

    def stable_node_dup(self, chain: StableNode, root: RbRoot[StableNode],
                        prune: bool) -> tuple[int | None, StableNode | None, StableNode]:
        """Pick a dup of a chain: (tree pfn, dup, node), node the dup itself if the chain
        collapsed into it; with no live dup left, (None, None, chain) (6.11 freed the chain)."""
        legacy = self.flow == "legacy"
        if prune and (self.now_ns >= chain.chain_prune_time
                      + self.knobs["stable_node_chains_prune_millisecs"] * 1_000_000):
            chain.chain_prune_time = self.now_ns
        else:
            prune = False
        found = None
        tree_pfn = None
        nr = 0
        # every dup is looked at while pruning, to drop the stale ones (ksm_get_folio() removes a
        # stale dup from the chain: the walk is over a copy)
        for dup in list(chain.dups):
            pfn = self.ksm_get_folio(dup)
            if pfn is None:
                continue
            nr += 1
            # the best candidate: the fullest dup that still has room
            if legacy:
                if self.is_page_sharing_candidate(dup) and (found is None or dup.rmap_hlist_len > found.rmap_hlist_len):
                    found, tree_pfn = dup, pfn
                    if not prune:
                        break
            elif found is None or (
                self.is_page_sharing_candidate(dup)
                and (not self.is_page_sharing_candidate(found) or dup.rmap_hlist_len > found.rmap_hlist_len)
            ):
                found, tree_pfn = dup, pfn
                if not prune and self.is_page_sharing_candidate(found):
                    break
        node = chain
        if found is not None:
            # one dup left, below the limit: drop the chain, the dup takes its place in the tree
            # (6.11 collapses whenever one dup is left; 6.10 only on a due prune)
            collapse = (prune and nr == 1) if legacy else len(chain.dups) == 1
            if collapse:
                root.replace(chain, found)
                found.head = None
                found.chain = None
                chain.dups = []
                self.ksm_stable_node_chains -= 1
                self.ksm_stable_node_dups -= 1
                node = found
            elif chain.dups[0] is not found and self.is_page_sharing_candidate(found, 1):
                # it can take one more merge after this one: at the head, the next search (without
                # pruning) finds it first
                chain.dups.remove(found)
                chain.dups.insert(0, found)
        elif not legacy:
            self.free_stable_node_chain(chain, root)  # every dup was stale: the chain is empty
        return tree_pfn, found, node

    def stable_node_dup_any(self, node: StableNode, root: RbRoot[StableNode]) -> StableNode | None:
        """6.10: any dup will do to keep walking; an empty chain is freed here."""
        if not is_stable_node_chain(node):
            return node
        if not node.dups:
            self.free_stable_node_chain(node, root)
            return None
        return node.dups[0]

    def stable_node_chain(self, node: StableNode, root: RbRoot[StableNode],
                          prune: bool) -> tuple[int | None, StableNode | None, StableNode]:
        """__stable_node_chain: chain() / chain_prune(). Returns (tree pfn, dup, node)."""
        if not is_stable_node_chain(node):
            if self.flow == "legacy" and not self.is_page_sharing_candidate(node):
                return None, None, node  # dup NULL: reached max_page_sharing
            return self.ksm_get_folio(node), node, node
        return self.stable_node_dup(node, root, prune)

    def walk_step(self, node: StableNode, root: RbRoot[StableNode],
                  prune: bool) -> tuple[int | None, StableNode | None, StableNode]:
        """One tree entry of a stable tree walk, chain_prune() or chain() and what the walk does
        with it: (tree pfn, or None to walk again from the root; dup; node)."""
        if node.rmap_hlist_len >= 0 and (self.flow != "legacy" or self.is_page_sharing_candidate(node)):
            # the common case, a regular node: ksm_get_folio inline, the walk's hottest step
            self.cost.total_ns += self.cost.get_folio
            if self.ksm_mapping.get(node.kpfn) is node:
                return node.kpfn, node, node
            self.remove_node_from_stable_tree(node)
            return None, node, node
        tree_pfn, dup, node = self.stable_node_chain(node, root, prune)
        if self.flow == "legacy" and dup is None:
            # every dup is full (or the chain is empty and goes): any dup's page, all of the
            # same write-protected content, will do to carry on the walk
            anyone = self.stable_node_dup_any(node, root)
            if anyone is None:
                return None, None, node
            return self.ksm_get_folio(anyone), None, node
        return tree_pfn, dup, node

    def stable_tree_search(self, pfn: int) -> int | None:
        """A KSM page's pfn to merge with, BUSY (its page being migrated), or None."""
        self.work["stable_tree_search"] += 1
        machine = self.machine
        page_node = self.ksm_mapping.get(pfn)
        if page_node is not None and page_node.head is not MIGRATE_NODES:
            return pfn  # KSM page forked

        nid = self.get_kpfn_nid(pfn)
        root = self.root_stable_tree[nid]
        while True:  # again:
            parent: StableNode | None = None
            left = False
            rb = root.rb_node
            restart = False
            while rb is not None:
                self.cost.total_ns += self.cost.stable_step
                if rb.touched != self.cost.wakeups:
                    rb.touched = self.cost.wakeups
                    self.cost.total_ns += self.cost.tree_cold
                tree_pfn, dup, node = self.walk_step(rb, root, True)
                if tree_pfn is None:
                    # a stale node was erased and the tree may have rebalanced under the walk:
                    # start again (giving up would insert a false negative)
                    restart = True
                    break
                rb = node  # a collapse put the dup where the chain was
                ret = self.memcmp_pages(pfn, tree_pfn)
                parent = rb
                if ret < 0:
                    rb, left = rb.rb_left, True
                elif ret > 0:
                    rb, left = rb.rb_right, False
                else:
                    # a migrated KSM page mapped at most once can merge into another KSM page
                    # with room for one more: no need to add its node to the chain
                    if page_node is not None and machine.mapcount[pfn] > 1:
                        return self._chain_append(page_node, dup, node, root, nid, pfn)
                    if dup is None or not self.is_page_sharing_candidate(dup):
                        # every copy is full: let the page find a match in the unstable tree,
                        # so that a new dup of this content can be made
                        return None
                    tree_pfn = self.ksm_get_folio(dup)
                    if tree_pfn is None:
                        restart = True  # the tree may have rebalanced: walk again
                        break
                    if self.get_kpfn_nid(dup.kpfn) != dup.nid:
                        return self._replace(page_node, dup, node, root, nid, pfn)
                    return tree_pfn
            if not restart:
                break

        if page_node is None:
            return None
        del self.migrate_nodes[page_node]
        page_node.head = None
        page_node.nid = nid
        root.link(page_node, parent, left)
        return self._migrated_out(page_node, pfn)

    def _migrated_out(self, page_node: StableNode, pfn: int) -> int | None:
        """stable_tree_search's out: label, for a migrated KSM page now placed in its tree."""
        # series v1 patch 4 (never merged): the migrated page is returned even when it is full
        if self.flow == "series-v1" or self.is_page_sharing_candidate(page_node):
            return pfn
        return None

    def _replace(self, page_node: StableNode | None, dup: StableNode, node: StableNode,
                    root: RbRoot[StableNode], nid: int, pfn: int) -> int | None:
        """stable_tree_search's replace: label. The equal dup lives on another node than its tree:
        it moves to migrate_nodes, and a migrated page of this tree's node takes its place. After
        a collapse, node is the dup, as if there had been no chain."""
        result = None
        if dup is node:  # no chain
            if page_node is not None:
                del self.migrate_nodes[page_node]
                page_node.head = None
                page_node.nid = nid
                root.replace(dup, page_node)
                result = self._migrated_out(page_node, pfn)
            else:
                root.erase(dup)
        else:
            self._stable_node_dup_del(dup)
            if page_node is not None:
                del self.migrate_nodes[page_node]
                page_node.nid = nid
                self.stable_node_chain_add_dup(page_node, node)
                result = self._migrated_out(page_node, pfn)
        dup.head = MIGRATE_NODES
        self.migrate_nodes[dup] = None
        return result

    def _chain_append(self, page_node: StableNode, dup: StableNode | None, node: StableNode,
                     root: RbRoot[StableNode], nid: int, pfn: int) -> int | None:
        """stable_tree_search's chain_append: label. A migrated KSM page still mapped more than
        once joins its content's chain of this node as a dup."""
        if dup is None:  # 6.10: the limit was reached, any dup stands for the chain
            dup = self.stable_node_dup_any(node, root)
        if dup is node:  # no chain yet: make one
            node = self.alloc_stable_node_chain(node, root)
        del self.migrate_nodes[page_node]
        page_node.nid = nid
        self.stable_node_chain_add_dup(page_node, node)
        return self._migrated_out(page_node, pfn)

    def stable_tree_insert(self, kpfn: int) -> StableNode:
        nid = self.get_kpfn_nid(kpfn)
        root = self.root_stable_tree[nid]
        while True:  # again:
            parent: StableNode | None = None
            left, need_chain = False, False
            rb = root.rb_node
            restart = False
            while rb is not None:
                self.cost.total_ns += self.cost.stable_step
                if rb.touched != self.cost.wakeups:
                    rb.touched = self.cost.wakeups
                    self.cost.total_ns += self.cost.tree_cold
                tree_pfn, _dup, node = self.walk_step(rb, root, False)
                if tree_pfn is None:
                    restart = True  # a stale node was erased: walk again, as in the search
                    break
                rb = node
                ret = self.memcmp_pages(kpfn, tree_pfn)
                parent = rb
                if ret < 0:
                    rb, left = rb.rb_left, True
                elif ret > 0:
                    rb, left = rb.rb_right, False
                else:
                    need_chain = True
                    break
            if not restart:
                break
        new = StableNode(kpfn, nid)
        new.touched = self.cost.wakeups  # just written: cached
        self.ksm_mapping[kpfn] = new
        if not need_chain:
            root.link(new, parent, left)
        else:
            assert parent is not None  # the equal node
            chain = parent
            if not is_stable_node_chain(chain):
                chain = self.alloc_stable_node_chain(chain, root)
            self.stable_node_chain_add_dup(new, chain)
        return new

    # -------------------------------------------------------------------- the unstable tree --

    def unstable_tree_search_insert(self, item: RmapItem, pfn: int) -> tuple[RmapItem, int] | None:
        """Search the unstable tree for a page identical to this one: (tree_item, tree_pfn) on a
        match; else insert item and return None. One walk does both.

        Its walk is the model's hottest loop, a level per bit of the tree's size for every
        anonymous page scanned: get_mergeable_page() and memcmp_pages() are inline, and the
        levels' cost is charged once the walk is over.
        """
        work = self.work
        work["unstable_tree_search_insert"] += 1
        nid = self.get_kpfn_nid(pfn)
        root = self.root_unstable_tree[nid]
        content = self.machine.content
        page = content[pfn]
        prefix = self.machine.frame_prefix
        key = prefix[pfn]
        shift = self.page_shift
        found = None
        parent: RmapItem | None = None
        left = False
        compared = equal = uncompared = 0  # levels that called memcmp_pages, found it equal, did not
        cold = 0  # levels whose entry this wake-up had not read yet
        wakeup = self.cost.wakeups
        tree_item = root.rb_node  # the rmap_items are the tree's nodes
        while tree_item is not None:
            # tree_page = get_mergeable_page(tree_rmap_item)
            tree_pfn = 0
            vma = tree_item.vma
            if tree_item.mm.alive and vma.vm_mergeable and vma.anon_vma:
                tree_pfn = vma.pte[(tree_item.address - vma.vm_start) >> shift]
            if tree_pfn <= 0 or tree_pfn == pfn:
                # its page is gone: the walk ends, the page goes in no tree; or it is this
                # very page: don't substitute a KSM page for a forked page
                uncompared = 1
                break
            compared += 1
            if tree_item.touched != wakeup:
                tree_item.touched = wakeup
                cold += 1
            # ret = memcmp_pages(page, tree_page), the pages' first bytes first
            tree_key = prefix[tree_pfn]
            parent = tree_item
            if key < tree_key or (key == tree_key and page < content[tree_pfn]):
                tree_item, left = tree_item.rb_left, True
            elif key > tree_key or page != content[tree_pfn]:
                tree_item, left = tree_item.rb_right, False
            else:
                equal = 1
                # a tree page that migrated to another node goes in the right tree next pass:
                # merge with it only across nodes
                if self.merge_across_nodes or self.machine.frame_nid[tree_pfn] == nid:
                    found = tree_item, tree_pfn
                break
        else:
            item.flags = UNSTABLE_FLAG | (self.ksm_scan.seqnr & SEQNR_MASK)
            item.nid = nid
            item.touched = wakeup  # the page being scanned: cached
            root.link(item, parent, left)
            self.ksm_pages_unshared += 1
            self.cost.charge_insert()
        work["memcmp_pages"] += compared
        c = self.cost
        c.total_ns += ((compared + uncompared) * (c.tree_step + c.mergeable_page) + (compared - equal) * c.memcmp_differ
                       + cold * c.tree_cold)
        if equal:
            self.cost.charge_memcmp_equal()
        return found

    def stable_tree_append(self, item: RmapItem, node: StableNode) -> None:
        """Another rmap_item on the list of a stable node, all of them sharing its KSM page."""
        node.rmap_hlist_len += 1
        item.head = node
        item.flags = STABLE_FLAG
        node.hlist[item] = None
        if len(node.hlist) > 1:
            self.ksm_pages_sharing += 1
        else:
            self.ksm_pages_shared += 1
        item.mm.ksm_merging_pages += 1

    # --------------------------------------------------------------- cmp_and_merge_page --

    def cmp_and_merge_page(self, pfn: int, item: RmapItem) -> str:
        """First see if the page can merge into the stable tree; if not, and its checksum is as
        at the last visit, see if it can go into the unstable tree, or merge with a page already
        there, both moving to the stable tree. The body is the kernel version's the flow models;
        the outcome is one of engine/vocabulary.py OUTCOMES. ksm_do_scan() calls the body
        directly rather than through here per page.

        The kernel's first step, stable_node = page_stable_node(page), reads a field of the
        page; here it is a dict lookup, which ksm_do_scan() has made already to tell the call's
        path, so the body is given its result rather than look it up again."""
        return self.cmp_and_merge_page_body()(pfn, item, self.ksm_mapping.get(pfn))

    def cmp_and_merge_page_body(self) -> Callable[[int, RmapItem, StableNode | None], str]:
        return self.cmp_and_merge_page_v6_10 if self.flow == "legacy" else self.cmp_and_merge_page_v6_11

    def split_after_same_folio(self, pfn: int, tree_pfn: int) -> None:
        """Both pages were subpages of one THP: holding both, ksmd could not split it. With the
        tree page put, the split succeeds; nothing merges in this call (docs/thp.md finding 7)."""
        fid = self.machine.frame_folio[pfn]
        if fid and fid == self.machine.frame_folio[tree_pfn]:
            self.machine.split_huge_page(pfn, (pfn,), remap_zero=self.flow != "legacy")

    def cmp_and_merge_page_v6_11(self, pfn: int, item: RmapItem, stable_node: StableNode | None) -> str:
        """cmp_and_merge_page() since 6.11: KSM pages skip the checksum; anon pages checksum
        first, try the zero page, and only then search the stable tree."""
        machine = self.machine
        if stable_node is not None:
            # with merge_across_nodes every nid is 0, the kpfn's too: nothing can have moved
            if (not self.knobs["merge_across_nodes"] and stable_node.head is not MIGRATE_NODES
                    and machine.frame_nid[stable_node.kpfn] != stable_node.nid):
                self.stable_node_dup_del(stable_node)
                stable_node.head = MIGRATE_NODES
                self.migrate_nodes[stable_node] = None
            if stable_node.head is not MIGRATE_NODES and item.head is stable_node:
                return "already_merged"
            # a KSM fork may go over the sharing limit: max_page_sharing_bypass only silences a
            # warning in stable_tree_append, not modelled
        else:
            self.remove_rmap_item_from_tree(item)
            # a page whose checksum changed since the last visit is volatile:
            # don't insert it in the unstable tree, don't waste time searching for it there
            checksum = self.calc_checksum(pfn)
            if item.oldchecksum != checksum:
                item.oldchecksum = checksum
                return "checksum_changed"
            if not self.try_to_merge_with_zero_page(item, pfn):
                return "zero_merged"

        # the outcome tells a migrated KSM page coming back from one merely forked
        migrating = stable_node is not None and stable_node.head is MIGRATE_NODES
        # start by searching for the page in the stable tree
        kpfn = self.stable_tree_search(pfn)
        if kpfn == pfn and stable_node is not None and item.head is stable_node:
            return "migrated_returned" if migrating else "already_merged"

        self.remove_rmap_item_from_tree(item)

        if kpfn is not None:
            if kpfn == BUSY or not self.try_to_merge_with_ksm_page(item, pfn, kpfn):
                return "stable_busy"
            # the page was merged: its rmap_item joins the stable tree
            kpage_node = self.ksm_mapping[kpfn]
            assert kpage_node is not None  # a KSM page found in the stable tree has its node
            self.stable_tree_append(item, kpage_node)
            if kpfn != pfn:
                return "stable_merged"
            return "migrated_returned" if migrating else "fork_appended"

        # a KSM page gets here only as a migrated node that is not a sharing candidate
        found = self.unstable_tree_search_insert(item, pfn)
        if found is None:
            return "unstable_inserted" if item.flags & UNSTABLE_FLAG else "unstable_aborted"
        tree_item, tree_pfn = found
        kpfn = self.try_to_merge_two_pages(item, pfn, tree_item, tree_pfn)
        if kpfn is None:
            self.split_after_same_folio(pfn, tree_pfn)
            return "unstable_merge_failed"
        # the pages were merged: a new node in the stable tree, both rmap_items on it
        # (stable_tree_insert cannot fail here, so there is no break_cow of both)
        stable_node = self.stable_tree_insert(kpfn)
        self.stable_tree_append(tree_item, stable_node)
        self.stable_tree_append(item, stable_node)
        return "unstable_merged"

    def cmp_and_merge_page_v6_10(self, pfn: int, item: RmapItem, stable_node: StableNode | None) -> str:
        """cmp_and_merge_page() before 6.11: the stable tree first, the checksum after."""
        machine = self.machine
        if stable_node is not None:
            if (not self.knobs["merge_across_nodes"] and stable_node.head is not MIGRATE_NODES
                    and machine.frame_nid[stable_node.kpfn] != stable_node.nid):
                self.stable_node_dup_del(stable_node)
                stable_node.head = MIGRATE_NODES
                self.migrate_nodes[stable_node] = None
            if stable_node.head is not MIGRATE_NODES and item.head is stable_node:
                return "already_merged"

        migrating = stable_node is not None and stable_node.head is MIGRATE_NODES
        # we first start with searching the page inside the stable tree
        kpfn = self.stable_tree_search(pfn)
        if kpfn == pfn and stable_node is not None and item.head is stable_node:
            return "migrated_returned" if migrating else "already_merged"

        self.remove_rmap_item_from_tree(item)

        if kpfn is not None:
            if kpfn == BUSY or not self.try_to_merge_with_ksm_page(item, pfn, kpfn):
                return "stable_busy"
            kpage_node = self.ksm_mapping[kpfn]
            assert kpage_node is not None  # a KSM page found in the stable tree has its node
            self.stable_tree_append(item, kpage_node)
            if kpfn != pfn:
                return "stable_merged"
            return "migrated_returned" if migrating else "fork_appended"

        # a page whose checksum changed since the last visit is volatile:
        # don't insert it in the unstable tree, don't search for it there
        checksum = self.calc_checksum(pfn)
        if item.oldchecksum != checksum:
            item.oldchecksum = checksum
            return "checksum_changed"

        # same checksum as an empty page: merge it with the zero page if use_zero_pages says so
        if self.knobs["use_zero_pages"] and checksum == self.zero_checksum:
            vma = self.find_mergeable_vma(item.mm, item.address)
            if vma is None:
                return "zero_merged"  # the VMA is out of date: nothing more to do
            index = (item.address - vma.vm_start) >> self.page_shift
            if self.try_to_merge_one_page(vma, index, pfn, 0):
                return "zero_merged"
            # it failed: the page was not really empty, carry on

        found = self.unstable_tree_search_insert(item, pfn)
        if found is None:
            return "unstable_inserted" if item.flags & UNSTABLE_FLAG else "unstable_aborted"
        tree_item, tree_pfn = found
        kpfn = self.try_to_merge_two_pages(item, pfn, tree_item, tree_pfn)
        if kpfn is None:
            self.split_after_same_folio(pfn, tree_pfn)
            return "unstable_merge_failed"
        stable_node = self.stable_tree_insert(kpfn)
        self.stable_tree_append(tree_item, stable_node)
        self.stable_tree_append(item, stable_node)
        return "unstable_merged"

    # ------------------------------------------------------------------------- the scan --

    def get_next_rmap_item(self, owner: MmSlot | RmapItem, vma: VMA, address: int) -> RmapItem:
        """The item for address at the cursor's place in the sorted list; items below it die."""
        mm = vma.mm
        while (item := owner.rmap_list) is not None:
            if item.address == address:
                return item
            if item.address > address:
                break
            owner.rmap_list = item.rmap_list
            self.remove_rmap_item_from_tree(item)
            self.free_rmap_item(item)
        item = RmapItem(vma, address)  # alloc_rmap_item
        self.ksm_rmap_items += 1
        mm.ksm_rmap_items += 1
        item.rmap_list = owner.rmap_list
        owner.rmap_list = item
        return item

    def should_skip_rmap_item(self, pfn: int, item: RmapItem) -> bool:
        """Smart scan: pages that keep not merging are visited ever more rarely. Its first two
        tests (smart_scan on; not a KSM page, which must still be processed every time) are at
        its one call, the scan's page loop."""
        age = item.age
        if age != U8_MAX:
            item.age = age + 1
        # younger pages are never skipped: they need a chance to go through the merge phases
        if age < 3:
            return False
        # not allowed to skip any more: don't, and set how many visits the next skip lasts
        if item.remaining_skips == 0:
            item.remaining_skips = skip_age(age)
            return False
        self.ksm_pages_skipped += 1
        item.remaining_skips -= 1
        self.remove_rmap_item_from_tree(item)
        return True

    @cython.locals(ksm_scan=KsmScan, head=MmSlot, slot=MmSlot, nxt=MmSlot, item=RmapItem,
                   address=cython.longlong, start=cython.longlong, end=cython.longlong, ps=cython.longlong,
                   shift=cython.int, i=cython.Py_ssize_t)
    def scan_get_next_rmap_item(self) -> Iterator[int]:
        """Yields each page (its pfn) to look at, in the kernel's order; ends with the full pass.
        The page's rmap_item is the cursor's, ksm_scan.rmap_list: the kernel returns the item and
        sets the page through its argument; here a pair would be a tuple made per page.

        The kernel's function returns per page and finds its place again from ksm_scan at the
        next call; here the cursor stays in its VMA between pages, because a Python call and the
        VMA lookup cost more than the KSM-page early return they surround. ksm_scan is updated
        before each yield exactly as the kernel's return leaves it, so a wake-up may stop taking
        pages at any yield. Between two yields only cmp_and_merge_page() runs, and it changes
        none of what the generator holds (the mm list, an mm's VMAs, their bounds and flags:
        only scenario events do, between wake-ups); the rmap_list cursor is read back each time.
        """
        ksm_scan = self.ksm_scan
        head = self.ksm_mm_head
        if head.next is head:
            return
        slot = ksm_scan.mm_slot
        if slot is head:
            self.advisor_start_scan()
            # stale nodes in the stable tree get pruned as walks meet them; those moved out to
            # migrate_nodes would pile up: prune them before each full scan
            if not self.merge_across_nodes:
                for node in list(self.migrate_nodes):
                    self.ksm_get_folio(node)
            for root in self.root_unstable_tree:
                root.reset()
            slot = head.next
            ksm_scan.mm_slot = slot
            ksm_scan.address = 0
            ksm_scan.rmap_list = slot

        ps = self.page_size
        shift = self.page_shift
        smart_scan = self.knobs["smart_scan"]
        ksm_mapping = self.ksm_mapping
        while True:  # next_mm
            mm = slot.mm
            if mm.alive:
                address = ksm_scan.address
                vmas = mm.vmas
                for i in range(mm.first_vma(address), len(vmas)):  # for_each_vma from vma_iter_init
                    vma = vmas[i]
                    if vma.vm_end <= address or not vma.vm_mergeable:
                        continue
                    if address < vma.vm_start:
                        address = vma.vm_start
                    if not vma.anon_vma:
                        address = vma.vm_end
                        continue
                    pte = vma.pte
                    start = vma.vm_start
                    end = vma.vm_end
                    while address < end:
                        pfn = pte[(address - start) >> shift]
                        if pfn > 0:
                            self.cost.total_ns += self.cost.scan_step
                            owner = ksm_scan.rmap_list
                            item = owner.rmap_list
                            if item is None or item.address != address:  # else found without a call
                                item = self.get_next_rmap_item(owner, vma, address)
                            ksm_scan.rmap_list = item
                            # should_skip_rmap_item's guards: smart scan on; KSM pages are
                            # never aged nor skipped
                            if (smart_scan and pfn not in ksm_mapping
                                    and self.should_skip_rmap_item(pfn, item)):
                                address += ps
                                continue
                            ksm_scan.address = address + ps
                            yield pfn
                        address += ps
                ksm_scan.address = address
            else:
                ksm_scan.address = 0
                ksm_scan.rmap_list = slot
            # nuke the rmap_items above the cursor: no mergeable VMA has those addresses
            self.remove_trailing_rmap_items(ksm_scan.rmap_list)
            nxt = slot.next
            ksm_scan.mm_slot = nxt
            if ksm_scan.address == 0:
                # a whole pass over the mm found no mergeable VMA (or the mm is exiting): ksmd
                # removes it from its lists, as __ksm_exit would (6.18 keeps MMF_VM_MERGE_ANY
                # so a prctl'd process stays opted in)
                self._drop_slot(slot, clear_merge_any=False)
            slot = nxt
            if slot is head:
                break
            ksm_scan.address = 0
            ksm_scan.rmap_list = slot
        self.advisor_stop_scan()
        ksm_scan.seqnr += 1

    def ksm_do_scan(self, scan_npages: int) -> int:
        """The ksm scanner's main worker: up to scan_npages cmp_and_merge_page() calls, fewer
        when the pass ends; returns how many.

        The whole loop runs in this one frame, as in the kernel: a Python call costs more than
        the kernel's KSM-page early return, so no per-page call sits between the wake-up and
        cmp_and_merge_page(). For the same reason the model's count of each call is kept here:
        its path (the kind of page, decided before the call), its cost-model time (or its wall
        time with latency "wall"), latency bucket and outcome, in flat arrays indexed by the
        path: nothing is allocated or looked up by name per page but the outcome's index.
        """
        cost = self.cost
        machine = self.machine
        ksm_scan = self.ksm_scan
        ksm_mapping = self.ksm_mapping
        content = machine.content
        zero_page = machine.zero_page
        work_by_path = [self.work_by_path[p] for p in PATHS]  # by the path's index
        n_buckets = N_BUCKETS
        cmp_and_merge_page = self.cmp_and_merge_page_body()
        wall = self.latency == "wall"
        legacy = self.flow == "legacy"
        factors = cost.factors
        ksm_call, anon_call = cost.call + cost.ksm_early, cost.call
        done = 0
        start = cost.total_ns
        for pfn in self.scan_get_next_rmap_item() if scan_npages > 0 else ():
            # the page's rmap_item: the generator leaves the cursor on it
            item: RmapItem = ksm_scan.rmap_list  # type: ignore[assignment]
            call_start = cost.total_ns
            stable_node = ksm_mapping.get(pfn)  # page_stable_node(page), given to the call
            if stable_node is not None:
                path = KSM_PAGE
                cost.total_ns = call_start + ksm_call
            else:
                path = ZERO_PAGE if content[pfn] == zero_page else ANON_PAGE
                cost.total_ns = call_start + anon_call
            self.work = work_by_path[path]
            if wall:
                wall_call = time.perf_counter_ns()
                outcome = cmp_and_merge_page(pfn, item, stable_node)
                ns = time.perf_counter_ns() - wall_call
            else:  # a C call (cpdef: an override still wins), not a bound method's
                if legacy:
                    outcome = self.cmp_and_merge_page_v6_10(pfn, item, stable_node)
                else:
                    outcome = self.cmp_and_merge_page_v6_11(pfn, item, stable_node)
                if not factors:
                    cost.refill()
                factor = factors.pop()
                ns = int((cost.total_ns - call_start) * factor)  # cost.jitter(), inline
            if machine.held_frames:  # ksmd's put_page of a page a split unmapped
                machine.release_held_frames()
            self.ksmd_cpu_ns += cost.total_ns - start
            self.outcome_calls[path * N_OUTCOMES + OUTCOME_INDEX[outcome]] += 1
            bucket = bit_length(ns)  # bucket_of(ns), without a Python call per page
            self.latency_calls[path * n_buckets + (bucket if bucket < n_buckets else n_buckets - 1)] += 1
            done += 1
            if done == scan_npages:
                break
            start = cost.total_ns
        else:  # the pass ended: what scanning its tail cost is ksmd's too
            self.ksmd_cpu_ns += cost.total_ns - start
        if done:
            self.ksm_pages_scanned += done
            self.last_call = (item.mm, item.address, PATHS[path], outcome, ns)
        return done

    def ksmd_should_run(self) -> bool:
        return bool(self.knobs["run"] & KSM_RUN_MERGE) and self.ksm_mm_head.next is not self.ksm_mm_head

    # ------------------------------------------------------------------ mm registration --

    def ksm_enter(self, mm: MM) -> None:
        """__ksm_enter (madvise MERGEABLE, prctl). While merging (or stopped), the new slot goes
        just behind the cursor, so the area settles a little before ksmd reaches it (and a
        fork+exec wastes no rmap_list); while unmerging (run=2), at the end of the list, ahead
        of the cursor, or the KSM pages of newly forked mms would be missed."""
        slot = MmSlot(mm)
        mm.ksm_slot = slot
        if self.knobs["run"] & KSM_RUN_UNMERGE:
            anchor = self.ksm_mm_head
        else:
            anchor = self.ksm_scan.mm_slot
        slot.prev, slot.next = anchor.prev, anchor
        anchor.prev.next = slot
        anchor.prev = slot
        mm.mmf_vm_mergeable = True

    def ksm_exit(self, mm: MM) -> None:
        """__ksm_exit: an mm ksmd never got to is dropped at once; one at the cursor or with
        rmap_items is left on the list for ksmd to free when it comes by."""
        slot = cast("MmSlot | None", mm.ksm_slot)  # the slot ksm_enter gave it
        if slot is None or slot is self.ksm_scan.mm_slot:
            return
        if slot.rmap_list is None:
            self._drop_slot(slot, clear_merge_any=True)
            return
        # move it just after the cursor, so ksmd reaches it next and frees its rmap_items
        self._slot_del(slot)
        cursor = self.ksm_scan.mm_slot
        slot.prev, slot.next = cursor, cursor.next
        cursor.next.prev = slot
        cursor.next = slot

    def ksm_fork(self, child: MM, parent: MM) -> None:
        if parent.mmf_vm_mergeable:
            # 6.18 / stable 6.6+: the child's own counters start at 0, its zero pages count globally
            child.ksm_merging_pages = 0
            child.ksm_rmap_items = 0
            self.ksm_zero_pages += child.ksm_zero_pages
            self.ksm_enter(child)

    def ksm_might_unmap_zero_page(self, mm: MM) -> None:
        """A KSM zero page's PTE is going (COW, unshare, zap); the caller saw it is one.
        KSM zero pages are accounted eagerly, unlike KSM pages."""
        mm.ksm_zero_pages -= 1
        self.ksm_zero_pages -= 1

    def ksm_process_profit(self, mm: MM) -> int:
        return (mm.ksm_merging_pages + mm.ksm_zero_pages) * self.page_size - mm.ksm_rmap_items * SIZEOF_RMAP_ITEM

    # ---------------------------------------------------------------------------- sysfs --

    def set_knob(self, name: str, value: object) -> None:
        """echo VALUE > /sys/kernel/mm/ksm/NAME, with the kernel's refusals as KnobError."""
        value = KSM_KNOBS[name].parse(value)
        knobs = cast("dict[str, int | str]", self.knobs)  # a knob named at run time
        old = knobs[name]
        if name == "run":
            # 1 sets ksmd running, 0 stops it; 2 stops it and unmerges everything, breaking COW,
            # but leaves the mm_slots on the list for when ksmd runs again
            if value != old:
                knobs["run"] = value
                if self.knobs["run"] & KSM_RUN_UNMERGE:
                    self.unmerge_and_remove_all_rmap_items()
            return
        if name == "pages_to_scan" and self.knobs["advisor_mode"] != "none":
            raise KnobError("EINVAL: pages_to_scan is set by the advisor while advisor_mode is not none")
        if name in ("max_page_sharing", "merge_across_nodes") and value != old:
            if self.ksm_pages_shared or not self.remove_all_stable_nodes():
                raise KnobError(f"EBUSY: {name} can only change while no KSM pages exist (write run=2 first)")
        knobs[name] = value
        if name == "advisor_mode" and value != old:
            self.set_advisor_defaults()

    def counters(self) -> dict[str, int]:
        """The read-only files of /sys/kernel/mm/ksm."""
        # pages_volatile is computed without locking and may come out negative: concealed
        volatile = self.ksm_rmap_items - self.ksm_pages_shared - self.ksm_pages_sharing - self.ksm_pages_unshared
        return {
            "pages_shared": self.ksm_pages_shared,
            "pages_sharing": self.ksm_pages_sharing,
            "pages_unshared": self.ksm_pages_unshared,
            "pages_volatile": max(volatile, 0),
            "pages_scanned": self.ksm_pages_scanned,
            "pages_skipped": self.ksm_pages_skipped,
            "full_scans": self.ksm_scan.seqnr,
            "stable_node_chains": self.ksm_stable_node_chains,
            "stable_node_dups": self.ksm_stable_node_dups,
            "ksm_zero_pages": self.ksm_zero_pages,
            "general_profit": self.general_profit(),
        }

    def general_profit(self) -> int:
        return (self.ksm_pages_sharing + self.ksm_zero_pages) * self.page_size - self.ksm_rmap_items * SIZEOF_RMAP_ITEM
