"""ksmd: the model of mm/ksm.c.

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
-EBUSY never happens (the paths are kept); no THP (nothing to split); no swap; an anon_vma is a
flag. Every counter keeps the kernel's name and update points.

mm/ksm.c function                 where it is here
--------------------------------  ----------------------------------------------------------------
ksm_scan_thread                   engine/sim.py: one round is Simulation._wake (ksmd_should_run),
                                    _scan (ksm_do_scan), _end_batch (sleep_millisecs)
ksmd_should_run                   Ksm.ksmd_should_run
ksm_do_scan                       Ksm.ksm_do_scan
scan_get_next_rmap_item           Ksm.scan_get_next_rmap_item
get_next_rmap_item                Ksm.get_next_rmap_item
remove_trailing_rmap_items        Ksm.remove_trailing_rmap_items
should_skip_rmap_item, skip_age   Ksm.should_skip_rmap_item, skip_age
cmp_and_merge_page                Ksm.cmp_and_merge_page -> cmp_and_merge_page_v6_10 / _v6_11
calc_checksum                     calc_checksum (the hash), Ksm.calc_checksum (counted, charged)
memcmp_pages                      Ksm.memcmp_pages (inline in unstable_tree_search_insert)
stable_tree_search                Ksm.stable_tree_search (+ _replace, _chain_append, _migrated_out)
stable_tree_insert                Ksm.stable_tree_insert
stable_tree_append                Ksm.stable_tree_append
unstable_tree_search_insert       Ksm.unstable_tree_search_insert
get_mergeable_page                Ksm.get_mergeable_page (inline in unstable_tree_search_insert)
find_mergeable_vma                Ksm.find_mergeable_vma
try_to_merge_one_page             Ksm.try_to_merge_one_page (write_protect_page + replace_page)
try_to_merge_with_ksm_page        Ksm.try_to_merge_with_ksm_page
try_to_merge_two_pages            Ksm.try_to_merge_two_pages
try_to_merge_with_zero_page       Ksm.try_to_merge_with_zero_page
break_cow, break_ksm              Ksm.break_cow, Ksm.break_ksm (the fault: engine/machine.py unshare)
unmerge_ksm_pages                 Ksm.unmerge_ksm_pages
unmerge_and_remove_all_rmap_items Ksm.unmerge_and_remove_all_rmap_items (run=2)
remove_rmap_item_from_tree        Ksm.remove_rmap_item_from_tree
remove_node_from_stable_tree      Ksm.remove_node_from_stable_tree
remove_stable_node                Ksm._remove_stable_node
remove_all_stable_nodes           Ksm.remove_all_stable_nodes
stable_node_chain_remove          Ksm.stable_node_chain_remove
rb_link_node + rb_insert_color,   engine/tree.py RbRoot.link, RbRoot.erase, RbRoot.replace
  rb_erase, rb_replace_node         (lib/rbtree.c)
ksm_get_folio                     Ksm.ksm_get_folio (inline in _walk_step)
is_page_sharing_candidate         Ksm.is_page_sharing_candidate
stable_node_dup_del               Ksm.stable_node_dup_del
stable_node_chain_add_dup         Ksm.stable_node_chain_add_dup
alloc_stable_node_chain           Ksm.alloc_stable_node_chain
free_stable_node_chain            Ksm.free_stable_node_chain
stable_node_dup                   Ksm.stable_node_dup
__stable_node_chain (chain,       Ksm.stable_node_chain
  chain_prune)
stable_node_dup_any               Ksm.stable_node_dup_any
get_kpfn_nid                      Ksm.get_kpfn_nid
__ksm_enter, ksm_madvise          Ksm.ksm_enter (called by engine/machine.py madvise and prctl)
ksm_fork, __ksm_exit              Ksm.ksm_fork, Ksm.ksm_exit
ksm_might_unmap_zero_page         Ksm.ksm_might_unmap_zero_page
advisor_start_scan                Ksm.advisor_start_scan
advisor_stop_scan                 Ksm.advisor_stop_scan
scan_time_advisor, ewma           Ksm.scan_time_advisor, ewma
set_advisor_defaults              Ksm.set_knob (advisor_mode)
run_store and the other *_store   Ksm.set_knob
general_profit_show               Ksm.general_profit
ksm_process_profit                Ksm.ksm_process_profit
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import xxhash

from engine.cost import (
    CALL,
    GET_FOLIO,
    KSM_EARLY,
    MEMCMP_DIFFER,
    MERGEABLE_PAGE,
    SCAN_STEP,
    TREE_STEP,
    CostModel,
)
from engine.knobs import KSM_KNOBS, KnobError
from engine.tree import RB_RED, RbNode, RbRoot
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


def calc_checksum(data: bytes) -> int:
    """xxhash of the page, kept in a u32: the low 32 bits of XXH64(seed 0) on 64-bit kernels."""
    return xxhash.xxh64_intdigest(data) & 0xFFFFFFFF


def skip_age(age: int) -> int:
    """How many visits smart scan skips a page of this age (visits without a merge)."""
    if age <= 3:
        return 1
    if age <= 5:
        return 2
    if age <= 8:
        return 4
    return 8


def ewma(prev: int, curr: int) -> int:
    return ((100 - EWMA_WEIGHT) * prev + EWMA_WEIGHT * curr) // 100


class MmSlot:
    """ksm_mm_slot: one registered mm, linked in the circular list headed by ksm_mm_head."""

    __slots__ = ("mm", "rmap_list", "prev", "next")

    def __init__(self, mm: "MM | None"):
        self.mm = mm
        self.rmap_list: RmapItem | None = None  # address-sorted singly linked list
        self.prev: MmSlot = self
        self.next: MmSlot = self


class RmapItem(RbNode):
    """ksm_rmap_item: one scanned virtual page. `address` is page aligned; flags live apart."""

    __slots__ = (
        "rmap_list", "mm", "vma", "address", "flags", "oldchecksum", "age", "remaining_skips",
        "head", "nid",
    )

    def __init__(self, vma: "VMA", address: int):
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


class StableNode(RbNode):
    """ksm_stable_node in its four roles: regular node, chain, dup, migrating node."""

    __slots__ = ("head", "hlist", "kpfn", "chain_prune_time", "rmap_hlist_len", "nid", "chain")

    def __init__(self, kpfn: int, nid: int):
        super().__init__()  # linked in a stable tree as a regular node or a chain
        self.head: str | None = None  # STABLE_NODE_DUP_HEAD, MIGRATE_NODES or None
        # regular/dup: its rmap_items, oldest first (hlist_add_head order reversed);
        # chain: its dups, head of the list first
        self.hlist: dict | list = {}
        self.kpfn = kpfn
        self.chain_prune_time = 0
        self.rmap_hlist_len = 0
        self.nid = nid
        self.chain: StableNode | None = None  # a dup's chain (the kernel reaches it via hlist_dup)


def is_stable_node_chain(node: StableNode) -> bool:
    return node.rmap_hlist_len == STABLE_NODE_CHAIN


def is_stable_node_dup(node: StableNode) -> bool:
    return node.head == STABLE_NODE_DUP_HEAD


class KsmScan:
    __slots__ = ("mm_slot", "address", "rmap_list", "seqnr")

    def __init__(self, head: MmSlot):
        self.mm_slot = head
        self.address = 0
        self.rmap_list: MmSlot | RmapItem = head  # whose .rmap_list is the next expected item
        self.seqnr = 0


class Ksm:
    def __init__(self, machine: "Machine", knobs: dict, flow: str, latency: str = "model", seed: int = 0):
        self.machine = machine
        self.page_size = machine.page_size
        self.page_shift = machine.page_size.bit_length() - 1
        self.flow = flow  # picks cmp_and_merge_page's body: legacy is 6.10's, the others 6.11's
        self.latency = latency
        self.knobs = dict(knobs)
        self.zero_checksum = calc_checksum(machine.zero_page)
        self.now_ns = 0  # the simulated clock (jiffies), advanced by the simulation

        self.ksm_mm_head = MmSlot(None)
        self.ksm_scan = KsmScan(self.ksm_mm_head)
        self.nr_node_ids = machine.numa_nodes
        self.root_stable_tree = [RbRoot() for _ in range(self.nr_node_ids)]
        self.root_unstable_tree = [RbRoot() for _ in range(self.nr_node_ids)]
        self.migrate_nodes: dict[StableNode, None] = {}

        self.ksm_pages_shared = 0
        self.ksm_pages_sharing = 0
        self.ksm_pages_unshared = 0
        self.ksm_rmap_items = 0
        self.ksm_stable_node_chains = 0
        self.ksm_stable_node_dups = 0
        self.ksm_pages_scanned = 0
        self.ksm_pages_skipped = 0
        self.ksm_zero_pages = 0
        # for the chain-length panels, kept as nodes change instead of walking every tree:
        # how many KSM pages (regular nodes and dups) have each rmap_hlist_len, and the chains
        self.hlist_lens: dict[int, int] = {}
        self.chains: dict[StableNode, None] = {}

        self.cost = CostModel(machine.page_size, seed)
        self.ksmd_cpu_ns = 0  # ksmd's runtime, from the cost model: drives the advisor
        self.advisor_ctx = {"start_scan": 0, "scan_time": 0, "change": 0, "cpu_time": 0}
        # per-pass progress for the UI: eligible pages visited, and how many there were at pass start
        self.pass_done = 0
        self.pass_total = 0
        # what every call did and cost
        self.outcomes = {p: dict.fromkeys(OUTCOMES, 0) for p in PATHS}
        self.latency_hist = {p: [0] * N_BUCKETS for p in PATHS}
        # operations done, by the path of the call that did them; `work` is the current call's
        self.work_by_path = {p: dict.fromkeys(WORK, 0) for p in ("ksm_page", "anon_page", "zero_page")}
        self.work = self.work_by_path["anon_page"]
        self.last_call: tuple | None = None  # (mm, address, path, outcome, ns)
        # set to a list while the UI single-steps: (walk, depth, red, ret, node) of every node the
        # tree walks met, and the stale nodes pruned; None otherwise, so the walks pay nothing
        self.walk_trace: list | None = None

    # ------------------------------------------------------------------ knobs and counters --

    @property
    def merge_across_nodes(self) -> bool:
        return bool(self.knobs["merge_across_nodes"])

    @property
    def max_page_sharing(self) -> int:
        return self.knobs["max_page_sharing"]

    def get_kpfn_nid(self, pfn: int) -> int:
        return 0 if self.knobs["merge_across_nodes"] else self.machine.frame_nid[pfn]

    def counters(self) -> dict[str, int]:
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

    def ksm_process_profit(self, mm: "MM") -> int:
        return (mm.ksm_merging_pages + mm.ksm_zero_pages) * self.page_size - mm.ksm_rmap_items * SIZEOF_RMAP_ITEM

    def set_knob(self, name: str, value) -> None:
        """echo VALUE > /sys/kernel/mm/ksm/NAME, with the kernel's refusals as KnobError."""
        value = KSM_KNOBS[name].parse(value)
        old = self.knobs[name]
        if name == "run":
            if value != old:
                self.knobs["run"] = value
                if value & KSM_RUN_UNMERGE:
                    self.unmerge_and_remove_all_rmap_items()
            return
        if name == "pages_to_scan" and self.knobs["advisor_mode"] != "none":
            raise KnobError("EINVAL: pages_to_scan is set by the advisor while advisor_mode is not none")
        if name in ("max_page_sharing", "merge_across_nodes") and value != old:
            if self.ksm_pages_shared or not self.remove_all_stable_nodes():
                raise KnobError(f"EBUSY: {name} can only change while no KSM pages exist (write run=2 first)")
        self.knobs[name] = value
        if name == "advisor_mode" and value != old:
            if value == "scan-time":
                self.advisor_ctx = {"start_scan": self.now_ns, "scan_time": 0, "change": 0, "cpu_time": 0}
                self.knobs["pages_to_scan"] = self.knobs["advisor_min_pages_to_scan"]
            else:
                self.knobs["pages_to_scan"] = KSM_KNOBS["pages_to_scan"].default

    # ---------------------------------------------------------------- mm registration --

    def ksm_enter(self, mm: "MM") -> None:
        """__ksm_enter: a new slot goes just before the cursor, so it is scanned next pass."""
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

    def _slot_del(self, slot: MmSlot) -> None:
        slot.prev.next = slot.next
        slot.next.prev = slot.prev
        slot.prev = slot.next = slot

    def _drop_slot(self, slot: MmSlot, clear_merge_any: bool) -> None:
        self._slot_del(slot)
        mm = slot.mm
        mm.ksm_slot = None
        mm.mmf_vm_mergeable = False
        if clear_merge_any:
            mm.mmf_vm_merge_any = False

    def ksm_fork(self, child: "MM", parent: "MM") -> None:
        if parent.mmf_vm_mergeable:
            # 6.18 / stable 6.6+: the child's own counters start at 0, its zero pages count globally
            child.ksm_merging_pages = 0
            child.ksm_rmap_items = 0
            self.ksm_zero_pages += child.ksm_zero_pages
            self.ksm_enter(child)

    def ksm_exit(self, mm: "MM") -> None:
        slot = mm.ksm_slot
        if slot is None or slot is self.ksm_scan.mm_slot:
            return  # ksmd is on it and will clean up when it moves on
        if slot.rmap_list is None:
            self._drop_slot(slot, clear_merge_any=True)
            return
        # move it just after the cursor, so ksmd reaches it next and frees its rmap_items
        self._slot_del(slot)
        cursor = self.ksm_scan.mm_slot
        slot.prev, slot.next = cursor, cursor.next
        cursor.next.prev = slot
        cursor.next = slot

    def ksm_might_unmap_zero_page(self, mm: "MM") -> None:
        """A KSM zero page's PTE is going (COW, unshare, zap); the caller saw it is one.
        KSM zero pages are accounted eagerly, unlike KSM pages."""
        mm.ksm_zero_pages -= 1
        self.ksm_zero_pages -= 1

    def registered_slots(self):
        slot = self.ksm_mm_head.next
        while slot is not self.ksm_mm_head:
            nxt = slot.next
            yield slot
            slot = nxt

    # ------------------------------------------------------------- stable node helpers --

    def is_page_sharing_candidate(self, node: StableNode, offset: int = 0) -> bool:
        return node.rmap_hlist_len != 0 and node.rmap_hlist_len + offset < self.max_page_sharing

    def ksm_get_folio(self, node: StableNode) -> int | None:
        """The keyhole check: the node lives while its kpfn is still a KSM page pointing back at it."""
        self.cost.charge_get_folio()
        pfn = node.kpfn
        if self.machine.ksm_mapping.get(pfn) is node:
            return pfn
        self.remove_node_from_stable_tree(node)
        return None

    def remove_node_from_stable_tree(self, node: StableNode) -> None:
        if self.walk_trace is not None:
            self.walk_trace.append(("pruned", -1, node.rb_color == RB_RED, None, node))
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
        self._hlist_len_changed(node.rmap_hlist_len, None)
        node.rmap_hlist_len -= n
        node.hlist = {}
        if node.head == MIGRATE_NODES:
            del self.migrate_nodes[node]
        else:
            self.stable_node_dup_del(node)

    def stable_node_dup_del(self, dup: StableNode) -> None:
        if is_stable_node_dup(dup):
            dup.chain.hlist.remove(dup)
            dup.chain = None
            dup.head = None
            self.ksm_stable_node_dups -= 1
        else:
            self.root_stable_tree[dup.nid].erase(dup)

    def stable_node_chain_add_dup(self, dup: StableNode, chain: StableNode) -> None:
        dup.head = STABLE_NODE_DUP_HEAD
        dup.chain = chain
        chain.hlist.insert(0, dup)
        self.ksm_stable_node_dups += 1

    def alloc_stable_node_chain(self, dup: StableNode, root: RbRoot) -> StableNode:
        chain = StableNode(-1, dup.nid)
        chain.hlist = []
        chain.rmap_hlist_len = STABLE_NODE_CHAIN
        chain.chain_prune_time = self.now_ns
        root.replace(dup, chain)
        self.ksm_stable_node_chains += 1
        self.chains[chain] = None
        # dup is no longer in the tree: its rb linkage was handed to the chain
        self.stable_node_chain_add_dup(dup, chain)
        return chain

    def free_stable_node_chain(self, chain: StableNode, root: RbRoot) -> None:
        if self.walk_trace is not None:
            self.walk_trace.append(("pruned", -1, chain.rb_color == RB_RED, None, chain))
        root.erase(chain)
        self.ksm_stable_node_chains -= 1
        del self.chains[chain]

    def stable_node_dup(self, chain: StableNode, root: RbRoot, prune: bool):
        """Pick a dup of a chain. Returns (tree pfn, dup, node) where node may be the collapsed dup."""
        legacy = self.flow == "legacy"
        if prune and self.now_ns >= chain.chain_prune_time + self.knobs["stable_node_chains_prune_millisecs"] * 1_000_000:
            chain.chain_prune_time = self.now_ns
        else:
            prune = False
        found = None
        tree_pfn = None
        nr = 0
        for dup in list(chain.hlist):
            pfn = self.ksm_get_folio(dup)
            if pfn is None:
                continue  # stale: it just removed itself from the chain
            nr += 1
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
            # 6.11 collapses a chain whenever one dup is left; 6.10 only on a due prune
            collapse = (prune and nr == 1) if legacy else len(chain.hlist) == 1
            if collapse:
                root.replace(chain, found)
                found.head = None
                found.chain = None
                chain.hlist = []
                self.ksm_stable_node_chains -= 1
                del self.chains[chain]
                self.ksm_stable_node_dups -= 1
                node = found
            elif chain.hlist[0] is not found and self.is_page_sharing_candidate(found, 1):
                chain.hlist.remove(found)
                chain.hlist.insert(0, found)
        elif not legacy:
            self.free_stable_node_chain(chain, root)  # every dup was stale: the chain is empty
            node = None
        return tree_pfn, found, node

    def stable_node_chain(self, node: StableNode, root: RbRoot, prune: bool):
        """__stable_node_chain: chain() / chain_prune(). Returns (tree pfn, dup, node)."""
        if not is_stable_node_chain(node):
            if self.flow == "legacy" and not self.is_page_sharing_candidate(node):
                return None, None, node  # dup NULL: reached max_page_sharing
            return self.ksm_get_folio(node), node, node
        return self.stable_node_dup(node, root, prune)

    def stable_node_dup_any(self, node: StableNode, root: RbRoot) -> StableNode | None:
        """6.10: any dup will do to keep walking; an empty chain is freed here."""
        if not is_stable_node_chain(node):
            return node
        if not node.hlist:
            self.free_stable_node_chain(node, root)
            return None
        return node.hlist[0]

    def _walk_step(self, node: StableNode, root: RbRoot, prune: bool):
        """One tree entry of a stable tree walk: (tree pfn or None to restart, dup, node)."""
        if node.rmap_hlist_len >= 0 and (self.flow != "legacy" or self.is_page_sharing_candidate(node)):
            # the common case, a regular node: ksm_get_folio inline, the walk's hottest step
            self.cost.total_ns += GET_FOLIO
            if self.machine.ksm_mapping.get(node.kpfn) is node:
                return node.kpfn, node, node
            self.remove_node_from_stable_tree(node)
            return None, node, node
        tree_pfn, dup, node = self.stable_node_chain(node, root, prune)
        if self.flow == "legacy" and dup is None:
            if node is None:
                return None, None, None
            anyone = self.stable_node_dup_any(node, root)
            if anyone is None:
                return None, None, None
            tree_pfn = self.ksm_get_folio(anyone)
            return tree_pfn, None, node
        return tree_pfn, dup, node

    # ------------------------------------------------------------------ the trees --

    def memcmp_pages(self, a: int, b: int) -> int:
        self.work["memcmp_pages"] += 1
        prefix = self.machine.frame_prefix
        if prefix[a] != prefix[b]:
            self.cost.total_ns += MEMCMP_DIFFER
            return -1 if prefix[a] < prefix[b] else 1
        content = self.machine.content
        x, y = content[a], content[b]
        if x == y:
            self.cost.charge_memcmp_equal()
            return 0
        self.cost.total_ns += MEMCMP_DIFFER
        return -1 if x < y else 1

    def stable_tree_search(self, pfn: int):
        """Returns a KSM page's pfn to merge with, BUSY, or None."""
        self.work["stable_tree_search"] += 1
        machine = self.machine
        page_node = machine.ksm_mapping.get(pfn)
        if page_node is not None and page_node.head != MIGRATE_NODES:
            return pfn  # KSM page forked

        nid = self.get_kpfn_nid(pfn)
        root = self.root_stable_tree[nid]
        while True:  # "again"
            parent, left = None, False
            rb = root.rb_node
            restart = False
            while rb is not None:
                self.cost.total_ns += TREE_STEP
                tree_pfn, dup, node = self._walk_step(rb, root, True)
                if tree_pfn is None:
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
                    if self.walk_trace is not None:
                        self.trace_walk("stable_tree_search", rb, 0)
                    if page_node is not None and machine.mapcount[pfn] > 1:
                        return self._chain_append(page_node, dup, node, root, nid, pfn)
                    if dup is None or not self.is_page_sharing_candidate(dup):
                        # every copy is full: let the page find a match in the unstable tree,
                        # so that a new dup of this content can be made
                        return None
                    tree_pfn = self.ksm_get_folio(dup)
                    if tree_pfn is None:
                        restart = True
                        break
                    if self.get_kpfn_nid(dup.kpfn) != dup.nid:
                        return self._replace(page_node, dup, node, root, nid, pfn)
                    return tree_pfn
            if restart:
                continue
            break

        if self.walk_trace is not None and parent is not None:
            self.trace_walk("stable_tree_search", parent, -1 if left else 1)
        if page_node is None:
            return None
        del self.migrate_nodes[page_node]
        page_node.head = None
        page_node.nid = nid
        root.link(page_node, parent, left)
        return self._migrated_out(page_node, pfn)

    def _migrated_out(self, page_node: StableNode, pfn: int):
        # series v1 patch 4 (never merged): the migrated page is returned even when it is full
        if self.flow == "series-v1" or self.is_page_sharing_candidate(page_node):
            return pfn
        return None

    def _replace(self, page_node, dup, node, root, nid, pfn):
        """The equal dup lives on another node than its tree: move it to migrate_nodes."""
        result = None
        if dup is node:
            if page_node is not None:
                del self.migrate_nodes[page_node]
                page_node.head = None
                page_node.nid = nid
                root.replace(dup, page_node)
                result = self._migrated_out(page_node, pfn)
            else:
                root.erase(dup)
        else:
            dup.chain.hlist.remove(dup)
            dup.chain = None
            self.ksm_stable_node_dups -= 1
            if page_node is not None:
                del self.migrate_nodes[page_node]
                page_node.nid = nid
                self.stable_node_chain_add_dup(page_node, node)
                result = self._migrated_out(page_node, pfn)
        dup.head = MIGRATE_NODES
        self.migrate_nodes[dup] = None
        return result

    def _chain_append(self, page_node, dup, node, root, nid, pfn):
        """A migrated KSM page still mapped more than once joins its content's chain as a dup."""
        if dup is None:  # 6.10: the limit was reached, any dup stands for the chain
            dup = self.stable_node_dup_any(node, root) if node is not None else None
        if dup is node:
            node = self.alloc_stable_node_chain(dup, root)
        del self.migrate_nodes[page_node]
        page_node.nid = nid
        self.stable_node_chain_add_dup(page_node, node)
        return self._migrated_out(page_node, pfn)

    def stable_tree_insert(self, kpfn: int) -> StableNode:
        nid = self.get_kpfn_nid(kpfn)
        root = self.root_stable_tree[nid]
        while True:
            parent, left, need_chain = None, False, False
            rb = root.rb_node
            node = None
            restart = False
            while rb is not None:
                self.cost.total_ns += TREE_STEP
                tree_pfn, _dup, node = self._walk_step(rb, root, False)
                if tree_pfn is None:
                    restart = True
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
        if self.walk_trace is not None and parent is not None:
            self.trace_walk("stable_tree_insert", parent, 0 if need_chain else -1 if left else 1)
        new = StableNode(kpfn, nid)
        self._hlist_len_changed(None, 0)
        self.machine.ksm_mapping[kpfn] = new
        if not need_chain:
            root.link(new, parent, left)
        else:
            if not is_stable_node_chain(node):
                node = self.alloc_stable_node_chain(node, root)
            self.stable_node_chain_add_dup(new, node)
        return new

    def get_mergeable_page(self, item: RmapItem) -> int | None:
        """The anon page now at an unstable item's address, if its VMA is still mergeable."""
        vma = item.vma
        if not item.mm.alive or not vma.vm_mergeable or not vma.anon_vma:
            return None
        pfn = vma.pte[(item.address - vma.vm_start) >> self.page_shift]
        return pfn if pfn > 0 else None

    def find_mergeable_vma(self, mm: "MM", address: int) -> "VMA | None":
        vma = mm.find_vma(address)
        if vma is None or not vma.vm_mergeable or not vma.anon_vma:
            return None
        return vma

    def unstable_tree_search_insert(self, item: RmapItem, pfn: int):
        """Returns (tree_item, tree_pfn) on a match, else inserts item (or not) and returns None.

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
        parent, left = None, False
        compared = equal = uncompared = 0  # levels that called memcmp_pages, found it equal, did not
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
            # ret = memcmp_pages(page, tree_page), the pages' first bytes first
            tree_key = prefix[tree_pfn]
            parent = tree_item
            if key < tree_key or (key == tree_key and page < content[tree_pfn]):
                tree_item, left = tree_item.rb_left, True
            elif key > tree_key or page != content[tree_pfn]:
                tree_item, left = tree_item.rb_right, False
            else:
                equal = 1
                # an equal page that migrated to another node goes in the right tree next pass
                if self.merge_across_nodes or self.machine.frame_nid[tree_pfn] == nid:
                    found = tree_item, tree_pfn
                break
        else:
            if self.walk_trace is not None and parent is not None:
                self.trace_walk("unstable_tree_search_insert", parent, -1 if left else 1)
            item.flags = UNSTABLE_FLAG | (self.ksm_scan.seqnr & SEQNR_MASK)
            item.nid = nid
            root.link(item, parent, left)
            self.ksm_pages_unshared += 1
            self.cost.charge_insert()
        if self.walk_trace is not None and tree_item is not None:  # it stopped at tree_item
            self.trace_walk("unstable_tree_search_insert", tree_item, 0 if equal else None)
        work["memcmp_pages"] += compared
        self.cost.total_ns += ((compared + uncompared) * (TREE_STEP + MERGEABLE_PAGE)
                               + (compared - equal) * MEMCMP_DIFFER)
        if equal:
            self.cost.charge_memcmp_equal()
        return found

    def trace_walk(self, walk: str, last: RbNode, ret: int | None) -> None:
        """Record the walk that ended at `last` with `ret`: a walk from the root is the path of
        last's ancestors, and at each of them memcmp_pages() said which child came next."""
        path = [last]
        while path[-1].rb_parent is not None:
            path.append(path[-1].rb_parent)
        path.reverse()
        trace = self.walk_trace
        for depth, (node, below) in enumerate(zip(path, path[1:])):
            trace.append((walk, depth, node.rb_color == RB_RED, -1 if node.rb_left is below else 1, node))
        trace.append((walk, len(path) - 1, last.rb_color == RB_RED, ret, last))

    def _hlist_len_changed(self, old: int | None, new: int | None) -> None:
        lens = self.hlist_lens
        if old is not None:
            lens[old] -= 1
            if not lens[old]:
                del lens[old]
        if new is not None:
            lens[new] = lens.get(new, 0) + 1

    def stable_tree_append(self, item: RmapItem, node: StableNode) -> None:
        self._hlist_len_changed(node.rmap_hlist_len, node.rmap_hlist_len + 1)
        node.rmap_hlist_len += 1
        item.head = node
        item.flags = STABLE_FLAG
        node.hlist[item] = None
        if len(node.hlist) > 1:
            self.ksm_pages_sharing += 1
        else:
            self.ksm_pages_shared += 1
        item.mm.ksm_merging_pages += 1

    def remove_rmap_item_from_tree(self, item: RmapItem) -> None:
        flags = item.flags
        if flags & STABLE_FLAG:
            node = item.head
            if self.ksm_get_folio(node) is None:
                return  # the node was stale: removing it un-accounted this item too
            del node.hlist[item]
            if node.hlist:
                self.ksm_pages_sharing -= 1
            else:
                self.ksm_pages_shared -= 1
            item.mm.ksm_merging_pages -= 1
            self._hlist_len_changed(node.rmap_hlist_len, node.rmap_hlist_len - 1)
            node.rmap_hlist_len -= 1
            item.head = None
            item.flags = 0
        elif flags & UNSTABLE_FLAG:
            # an item inserted this pass is in the live tree; one from last pass sits in a tree
            # that was already thrown away
            age = (self.ksm_scan.seqnr - (flags & SEQNR_MASK)) & 0xFF
            assert age <= 1, "unstable rmap_item older than one pass"
            if age == 0:
                self.root_unstable_tree[item.nid].erase(item)
            self.ksm_pages_unshared -= 1
            item.flags = 0

    def remove_all_stable_nodes(self) -> bool:
        """Drop every stable node whose KSM page is gone; False (EBUSY) if one is still mapped."""
        ok = True
        for root in self.root_stable_tree:
            # always the root entry, as the kernel takes it, and on to the next nid at a busy one
            while root.rb_node is not None:
                if self.stable_node_chain_remove(root.rb_node, root):
                    ok = False
                    break
        for node in list(self.migrate_nodes):
            ok &= self._remove_stable_node(node)
        return ok

    def stable_node_chain_remove(self, node: StableNode, root: RbRoot) -> bool:
        """True (busy) at the first node whose page is still mapped."""
        if not is_stable_node_chain(node):
            return not self._remove_stable_node(node)
        for dup in list(node.hlist):
            if not self._remove_stable_node(dup):
                return True
        self.free_stable_node_chain(node, root)
        return False

    def _remove_stable_node(self, node: StableNode) -> bool:
        if self.machine.ksm_mapping.get(node.kpfn) is node:
            return False  # its page is still mapped somewhere: EBUSY
        self.remove_node_from_stable_tree(node)
        return True

    # ------------------------------------------------------------------ merging --

    def try_to_merge_one_page(self, vma: "VMA", index: int, pfn: int, kpfn: int | None) -> bool:
        """Write-protect the page and map kpfn in its place (kpfn None: make it a KSM page)."""
        machine = self.machine
        if pfn == kpfn:
            return True
        self.cost.charge_merge()
        if kpfn is None:
            machine.ksm_mapping[pfn] = None  # KSM page with no stable node yet
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

    def try_to_merge_with_ksm_page(self, item: RmapItem, pfn: int, kpfn: int | None) -> bool:
        vma = self.find_mergeable_vma(item.mm, item.address)
        if vma is None:
            return False
        index = (item.address - vma.vm_start) >> self.page_shift
        if not self.try_to_merge_one_page(vma, index, pfn, kpfn):
            return False
        self.remove_rmap_item_from_tree(item)
        return True

    def try_to_merge_two_pages(self, item, pfn, tree_item, tree_pfn) -> int | None:
        """The scanned page becomes the KSM page; the tree item's address is mapped onto it."""
        if not self.try_to_merge_with_ksm_page(item, pfn, None):
            return None
        if self.try_to_merge_with_ksm_page(tree_item, tree_pfn, pfn):
            return pfn
        self.break_cow(item)
        return None

    def break_cow(self, item: RmapItem) -> None:
        vma = self.find_mergeable_vma(item.mm, item.address)
        if vma is not None:
            self.break_ksm(vma, (item.address - vma.vm_start) >> self.page_shift)

    def break_ksm(self, vma: "VMA", index: int) -> None:
        """A write fault without the write (FAULT_FLAG_UNSHARE) on a KSM page or KSM zero page:
        the address gets a private copy. One fault does it here: nothing can race it."""
        self.machine.unshare(vma, index)

    def unmerge_ksm_pages(self, vma: "VMA") -> None:
        """break_ksm on every page of the VMA (MADV_UNMERGEABLE, prctl off, run=2). The
        rmap_items are left alone: ksmd cleans them up lazily."""
        for index in range(len(vma.pte)):
            self.break_ksm(vma, index)

    def try_to_merge_with_zero_page(self, item: RmapItem, pfn: int) -> int:
        """0 when done with this page (merged, or its VMA went away); -EFAULT to carry on."""
        if self.knobs["use_zero_pages"] and item.oldchecksum == self.zero_checksum:
            vma = self.find_mergeable_vma(item.mm, item.address)
            if vma is None:
                return 0
            index = (item.address - vma.vm_start) >> self.page_shift
            if self.try_to_merge_one_page(vma, index, pfn, 0):
                return 0
        return -EFAULT

    def calc_checksum(self, pfn: int) -> int:
        """calc_checksum(page) as ksmd calls it: counted and charged (the hash: calc_checksum())."""
        self.work["calc_checksum"] += 1
        self.cost.charge_checksum()
        return calc_checksum(self.machine.content[pfn])

    def cmp_and_merge_page(self, pfn: int, item: RmapItem) -> str:
        """mm/ksm.c's cmp_and_merge_page(): the body of the kernel version the flow models.
        Returns the call's outcome (engine/snapshot.py OUTCOMES). ksm_do_scan() takes the body
        from cmp_and_merge_page_body() once per wake-up rather than through here per page."""
        return self.cmp_and_merge_page_body()(pfn, item)

    def cmp_and_merge_page_body(self):
        return self.cmp_and_merge_page_v6_10 if self.flow == "legacy" else self.cmp_and_merge_page_v6_11

    def cmp_and_merge_page_v6_11(self, pfn: int, item: RmapItem) -> str:
        """cmp_and_merge_page() since 6.11: KSM pages skip the checksum; anon pages checksum
        first, try the zero page, and only then search the stable tree."""
        machine = self.machine
        stable_node = machine.ksm_mapping.get(pfn)
        if stable_node is not None:
            # with merge_across_nodes every nid is 0, the kpfn's too: nothing can have moved
            if (not self.knobs["merge_across_nodes"] and stable_node.head != MIGRATE_NODES
                    and machine.frame_nid[stable_node.kpfn] != stable_node.nid):
                self.stable_node_dup_del(stable_node)
                stable_node.head = MIGRATE_NODES
                self.migrate_nodes[stable_node] = None
            if stable_node.head != MIGRATE_NODES and item.head is stable_node:
                return "already_merged"
            # max_page_sharing_bypass only silences a warning in stable_tree_append: not modelled
        else:
            self.remove_rmap_item_from_tree(item)
            # a page whose checksum changed since the last visit is volatile:
            # don't waste time searching for it in either tree
            checksum = self.calc_checksum(pfn)
            if item.oldchecksum != checksum:
                item.oldchecksum = checksum
                return "checksum_changed"
            if not self.try_to_merge_with_zero_page(item, pfn):
                return "zero_merged"

        # the outcome tells a migrated KSM page coming back from one merely forked
        migrating = stable_node is not None and stable_node.head == MIGRATE_NODES
        # start by searching for the page in the stable tree
        kpfn = self.stable_tree_search(pfn)
        if kpfn == pfn and stable_node is not None and item.head is stable_node:
            return "migrated_returned" if migrating else "already_merged"

        self.remove_rmap_item_from_tree(item)

        if kpfn is not None:
            if kpfn == BUSY or not self.try_to_merge_with_ksm_page(item, pfn, kpfn):
                return "stable_busy"
            self.stable_tree_append(item, machine.ksm_mapping[kpfn])
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
            return "unstable_merge_failed"
        # the pages were merged: a new node in the stable tree, both rmap_items on it
        # (stable_tree_insert cannot fail here, so there is no break_cow of both)
        stable_node = self.stable_tree_insert(kpfn)
        self.stable_tree_append(tree_item, stable_node)
        self.stable_tree_append(item, stable_node)
        return "unstable_merged"

    def cmp_and_merge_page_v6_10(self, pfn: int, item: RmapItem) -> str:
        """cmp_and_merge_page() before 6.11: the stable tree first, the checksum after."""
        machine = self.machine
        stable_node = machine.ksm_mapping.get(pfn)
        if stable_node is not None:
            if (not self.knobs["merge_across_nodes"] and stable_node.head != MIGRATE_NODES
                    and machine.frame_nid[stable_node.kpfn] != stable_node.nid):
                self.stable_node_dup_del(stable_node)
                stable_node.head = MIGRATE_NODES
                self.migrate_nodes[stable_node] = None
            if stable_node.head != MIGRATE_NODES and item.head is stable_node:
                return "already_merged"

        migrating = stable_node is not None and stable_node.head == MIGRATE_NODES
        # we first start with searching the page inside the stable tree
        kpfn = self.stable_tree_search(pfn)
        if kpfn == pfn and stable_node is not None and item.head is stable_node:
            return "migrated_returned" if migrating else "already_merged"

        self.remove_rmap_item_from_tree(item)

        if kpfn is not None:
            if kpfn == BUSY or not self.try_to_merge_with_ksm_page(item, pfn, kpfn):
                return "stable_busy"
            self.stable_tree_append(item, machine.ksm_mapping[kpfn])
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
            return "unstable_merge_failed"
        stable_node = self.stable_tree_insert(kpfn)
        self.stable_tree_append(tree_item, stable_node)
        self.stable_tree_append(item, stable_node)
        return "unstable_merged"

    # --------------------------------------------------------------------- the scan --

    def get_next_rmap_item(self, owner, vma: "VMA", address: int) -> RmapItem:
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
        item = RmapItem(vma, address)
        self.ksm_rmap_items += 1
        mm.ksm_rmap_items += 1
        item.rmap_list = owner.rmap_list
        owner.rmap_list = item
        return item

    def free_rmap_item(self, item: RmapItem) -> None:
        self.ksm_rmap_items -= 1
        item.mm.ksm_rmap_items -= 1

    def remove_trailing_rmap_items(self, owner) -> None:
        item = owner.rmap_list
        owner.rmap_list = None
        while item is not None:
            nxt = item.rmap_list
            self.remove_rmap_item_from_tree(item)
            self.free_rmap_item(item)
            item = nxt

    def should_skip_rmap_item(self, pfn: int, item: RmapItem) -> bool:
        """Smart scan: pages that keep not merging are visited ever more rarely. Its first two
        tests (smart_scan on, not a KSM page) are at its one call, the scan's page loop."""
        age = item.age
        if age != U8_MAX:
            item.age = age + 1
        # younger pages are never skipped: they need a chance to go through the merge phases
        if age < 3:
            return False
        if item.remaining_skips == 0:
            item.remaining_skips = skip_age(age)
            return False
        self.ksm_pages_skipped += 1
        item.remaining_skips -= 1
        self.remove_rmap_item_from_tree(item)
        return True

    def _count_eligible(self) -> int:
        total = 0
        for slot in self.registered_slots():
            if slot.mm.alive:
                for vma in slot.mm.vmas:
                    if vma.vm_mergeable:
                        pte = vma.pte
                        total += len(pte) - pte.count(-1) - pte.count(0)
        return total

    def scan_get_next_rmap_item(self):
        """Yields each (rmap_item, pfn) to look at, in the kernel's order; ends with the full pass.

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
            if not self.merge_across_nodes:
                for node in list(self.migrate_nodes):
                    self.ksm_get_folio(node)  # prunes the stale ones
            for root in self.root_unstable_tree:
                root.reset()
            slot = head.next
            ksm_scan.mm_slot = slot
            self.pass_done = 0
            self.pass_total = self._count_eligible()
            ksm_scan.address = 0
            ksm_scan.rmap_list = slot

        ps = self.page_size
        shift = self.page_shift
        smart_scan = self.knobs["smart_scan"]
        ksm_mapping = self.machine.ksm_mapping
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
                            self.cost.total_ns += SCAN_STEP
                            owner = ksm_scan.rmap_list
                            item = owner.rmap_list
                            if item is None or item.address != address:  # else found without a call
                                item = self.get_next_rmap_item(owner, vma, address)
                            ksm_scan.rmap_list = item
                            self.pass_done += 1
                            # should_skip_rmap_item's guards: smart scan on; KSM pages are
                            # never aged nor skipped
                            if (smart_scan and pfn not in ksm_mapping
                                    and self.should_skip_rmap_item(pfn, item)):
                                address += ps
                                continue
                            ksm_scan.address = address + ps
                            yield item, pfn
                        address += ps
                ksm_scan.address = address
            else:
                ksm_scan.address = 0
                ksm_scan.rmap_list = slot
            self.remove_trailing_rmap_items(ksm_scan.rmap_list)
            nxt = slot.next
            ksm_scan.mm_slot = nxt
            if ksm_scan.address == 0:
                # no mergeable VMA left (or the mm is exiting): ksmd lets go of the mm
                # (6.18 keeps MMF_VM_MERGE_ANY so a prctl'd process stays opted in)
                self._drop_slot(slot, clear_merge_any=False)
            slot = nxt
            if slot is head:
                break
            ksm_scan.address = 0
            ksm_scan.rmap_list = slot
        self.advisor_stop_scan()
        ksm_scan.seqnr += 1

    def ksmd_should_run(self) -> bool:
        return bool(self.knobs["run"] & KSM_RUN_MERGE) and self.ksm_mm_head.next is not self.ksm_mm_head

    def ksm_do_scan(self, scan_npages: int) -> int:
        """Up to scan_npages cmp_and_merge_page() calls, fewer when the pass ends: how many.

        The whole loop runs in this one frame, as in the kernel: a Python call costs more than
        the kernel's KSM-page early return, so no per-page call sits between the wake-up and
        cmp_and_merge_page(). Each call is charged its cost-model time (or its wall time with
        latency "wall") and counted by path and outcome.
        """
        cost = self.cost
        machine = self.machine
        ksm_mapping = machine.ksm_mapping
        content = machine.content
        zero_page = machine.zero_page
        outcomes = self.outcomes
        latency_hist = self.latency_hist
        work_by_path = self.work_by_path
        cmp_and_merge_page = self.cmp_and_merge_page_body()
        wall = self.latency == "wall"
        factors = cost.factors
        done = 0
        start = cost.total_ns
        for item, pfn in self.scan_get_next_rmap_item() if scan_npages > 0 else ():
            call_start = cost.total_ns
            if ksm_mapping.get(pfn) is not None:
                path = "ksm_page"
                cost.total_ns = call_start + CALL + KSM_EARLY
            else:
                path = "zero_page" if content[pfn] == zero_page else "anon_page"
                cost.total_ns = call_start + CALL
            self.work = work_by_path[path]
            if wall:
                wall_call = time.perf_counter_ns()
                outcome = cmp_and_merge_page(pfn, item)
                ns = time.perf_counter_ns() - wall_call
            else:
                outcome = cmp_and_merge_page(pfn, item)
                if not factors:
                    cost.refill()
                ns = int((cost.total_ns - call_start) * factors.pop())  # cost.jitter(), inline
            self.ksmd_cpu_ns += cost.total_ns - start
            outcomes[path][outcome] += 1
            bucket = ns.bit_length()  # bucket_of(ns), without a call per page
            latency_hist[path][bucket if bucket < N_BUCKETS else N_BUCKETS - 1] += 1
            done += 1
            if done == scan_npages:
                break
            start = cost.total_ns
        else:  # the pass ended: what scanning its tail cost is ksmd's too
            self.ksmd_cpu_ns += cost.total_ns - start
        if done:
            self.ksm_pages_scanned += done
            self.last_call = (item.mm, item.address, path, outcome, ns)
        return done

    # ------------------------------------------------------------------ run = 2 --

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
        self.remove_all_stable_nodes()
        for root in self.root_unstable_tree:
            root.reset()
        self.ksm_scan.mm_slot = head
        self.ksm_scan.seqnr = 0

    # ------------------------------------------------------------------ advisor --

    def advisor_start_scan(self) -> None:
        if self.knobs["advisor_mode"] == "scan-time":
            self.advisor_ctx["start_scan"] = self.now_ns

    def advisor_stop_scan(self) -> None:
        if self.knobs["advisor_mode"] == "scan-time":
            self.scan_time_advisor()

    def scan_time_advisor(self) -> None:
        """At the end of a full scan: the next pages_to_scan, aiming for the target scan time
        within the CPU bounds (ksmd's CPU time comes from the cost model)."""
        ctx = self.advisor_ctx
        k = self.knobs
        scan_time = (self.now_ns - ctx["start_scan"]) // NSEC_PER_MSEC // MSEC_PER_SEC or 1
        cpu_time = self.ksmd_cpu_ns
        cpu_time_diff_ms = (cpu_time - ctx["cpu_time"]) // NSEC_PER_MSEC
        cpu_percent = cpu_time_diff_ms * 100 // (scan_time * 1000) or 1
        last_scan_time = ctx["scan_time"] or scan_time  # prev_scan_time
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

    # ------------------------------------------------------------- a traced step --

    @contextmanager
    def traced(self):
        """Record which of the deciding functions (TRACED) the calls made inside run, in order,
        each with what it returned and the memcmp_pages done within it: (name, result, memcmps).
        Instance attributes shadow the methods only while tracing: untraced runs execute nothing of it."""
        trace: list[list] = []

        def wrap(name: str, method):
            def traced(*args):
                entry = [name, "", 0]
                trace.append(entry)
                before = self.work["memcmp_pages"]
                ret = method(*args)
                entry[1], entry[2] = TRACED[name](ret), self.work["memcmp_pages"] - before
                return ret
            return traced

        for name in TRACED:
            setattr(self, name, wrap(name, getattr(self, name)))
        try:
            yield trace
        finally:
            for name in TRACED:
                delattr(self, name)


# The functions of cmp_and_merge_page() that decide a page's fate, and what their results mean.
TRACED = {
    "calc_checksum": lambda ret: f"checksum {ret:#x}",
    "try_to_merge_with_zero_page": lambda ret: "merged with the zero page" if ret == 0 else "not merged",
    "stable_tree_search": lambda ret: "miss" if ret is None else "busy" if ret == BUSY else f"found kpfn {ret:#x}",
    "try_to_merge_with_ksm_page": lambda ret: "merged" if ret else "failed",
    "unstable_tree_search_insert": lambda ret: "no match" if ret is None
    else f"match {ret[0].mm.name}:{ret[0].address:#x}",
    "try_to_merge_two_pages": lambda ret: "failed" if ret is None else f"new KSM page kpfn {ret:#x}",
    "stable_tree_insert": lambda ret: "inserted" if ret is not None else "failed",
    "stable_tree_append": lambda ret: "appended",
}
