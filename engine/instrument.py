"""What the UI and a single step show of ksmd that mm/ksm.c does not keep, kept beside
engine/ksm.py rather than in it, so that ksm.py reads like ksm.c.

ObservedKsm is the Ksm a simulation runs: it overrides the functions that change what it keeps,
calls the kernel's version, and counts the difference. Only functions that run on merges, stale
nodes and full-scan starts are overridden, so an ordinary page costs nothing more; the one change
made inside a function that runs for every page, an rmap_item leaving a stable node in
remove_rmap_item_from_tree(), reaches it through Ksm.on_rmap_hlist_del, ksm.py's one hook.

  hlist_lens   KSM pages (regular nodes and dups, stale ones included until pruned, as
               pages_shared counts them) by rmap_hlist_len: the sharers-per-page panel
  chains       the stable_node chains in the trees: the dups-per-chain panel
  pass_done,   eligible pages visited in this full scan (scanned or skipped), and how many there
  pass_total   were when it began: the scan's progress bar

trace_step() records one traced cmp_and_merge_page() call (the UI's single step): which deciding
functions ran (TRACED), each with what it returned and the memcmp_pages inside it, and the tree
walks: every node each walk met, with what memcmp_pages said there, and the stale nodes pruned.
It shadows methods with instance attributes for that one call only, so untraced runs execute
nothing of it. The stable tree walks are seen level by level (walk_step, then memcmp_pages); the
unstable tree walk is inline in unstable_tree_search_insert() for speed, and changes nothing until
it links the new item, so the trace walks it first, the same way, comparing contents without
counting or charging them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from engine.ksm import BUSY, Ksm, RmapItem, StableNode
from engine.tree import RB_RED, RbNode, RbRoot

if TYPE_CHECKING:
    from engine.machine import Machine

# One node a walk met: (walk, depth, red, ret, node). walk is the walking function, or "pruned"
# for a stale node removed (depth -1); ret is memcmp_pages(page, node's page) as -1, 0 or 1, or
# None where it was not called (a pruned node; an unstable item whose page was gone, or the page
# itself).
WalkEntry = tuple[str, int, bool, int | None, RbNode]


class ObservedKsm(Ksm):
    def __init__(self, machine: Machine, knobs: Mapping[str, int | str], flow: str, latency: str = "model",
                 seed: int = 0):
        super().__init__(machine, knobs, flow, latency, seed)
        self.hlist_lens: dict[int, int] = {}
        self.chains: dict[StableNode, None] = {}
        self.pass_total = 0
        self._pass_start = 0  # pages scanned and skipped before this full scan

    @property
    def pass_done(self) -> int:
        """Every eligible page the scan visits is either skipped or scanned, and a scan's pages are
        counted when its wake-up's ksm_do_scan() returns: between wake-ups, this is exact."""
        return self.ksm_pages_scanned + self.ksm_pages_skipped - self._pass_start

    def _count_eligible(self) -> int:
        total = 0
        for slot in self.registered_slots():
            if slot.mm.alive:
                for vma in slot.mm.vmas:
                    if vma.vm_mergeable:
                        # present pages only (a pfn above ZERO_PFN): counted in C, as array.count
                        # boxes every entry, a fifth of the KSM-page path's cost on a slow Python
                        total += int(np.count_nonzero(np.frombuffer(vma.pte, np.int64) > 0))
        return total

    def _hlist_len_changed(self, old: int | None, new: int | None) -> None:
        lens = self.hlist_lens
        if old is not None:
            lens[old] -= 1
            if not lens[old]:
                del lens[old]
        if new is not None:
            lens[new] = lens.get(new, 0) + 1

    def advisor_start_scan(self) -> None:
        # a full scan begins (ksm.c's trace_ksm_start_scan is beside this call)
        super().advisor_start_scan()
        self._pass_start = self.ksm_pages_scanned + self.ksm_pages_skipped
        self.pass_total = self._count_eligible()

    def alloc_stable_node_chain(self, dup: StableNode, root: RbRoot[StableNode]) -> StableNode:
        chain = super().alloc_stable_node_chain(dup, root)
        self.chains[chain] = None
        return chain

    def free_stable_node_chain(self, chain: StableNode, root: RbRoot[StableNode]) -> None:
        super().free_stable_node_chain(chain, root)
        del self.chains[chain]

    def stable_node_dup(self, chain: StableNode, root: RbRoot[StableNode],
                        prune: bool) -> tuple[int | None, StableNode | None, StableNode]:
        tree_pfn, found, node = super().stable_node_dup(chain, root, prune)
        if node is not chain:  # it collapsed into its one dup
            del self.chains[chain]
        return tree_pfn, found, node

    def remove_node_from_stable_tree(self, node: StableNode) -> None:
        self._hlist_len_changed(node.rmap_hlist_len, None)
        super().remove_node_from_stable_tree(node)

    def on_rmap_hlist_del(self, node: StableNode) -> None:
        self._hlist_len_changed(node.rmap_hlist_len + 1, node.rmap_hlist_len)

    def stable_tree_insert(self, kpfn: int) -> StableNode:
        node = super().stable_tree_insert(kpfn)
        self._hlist_len_changed(None, 0)
        return node

    def stable_tree_append(self, item: RmapItem, node: StableNode) -> None:
        self._hlist_len_changed(node.rmap_hlist_len, node.rmap_hlist_len + 1)
        super().stable_tree_append(item, node)


def _match(ret: tuple[RmapItem, int] | None) -> str:
    return "no match" if ret is None else f"match {ret[0].mm.name}:{ret[0].address:#x}"


# The functions of cmp_and_merge_page() that decide a page's fate, and what their results mean.
TRACED: dict[str, Callable[..., str]] = {
    "calc_checksum": lambda ret: f"checksum {ret:#x}",
    "try_to_merge_with_zero_page": lambda ret: "merged with the zero page" if ret == 0 else "not merged",
    "stable_tree_search": lambda ret: "miss" if ret is None else "busy" if ret == BUSY else f"found kpfn {ret:#x}",
    "try_to_merge_with_ksm_page": lambda ret: "merged" if ret else "failed",
    "unstable_tree_search_insert": _match,
    "try_to_merge_two_pages": lambda ret: "failed" if ret is None else f"new KSM page kpfn {ret:#x}",
    "stable_tree_insert": lambda ret: "inserted" if ret is not None else "failed",
    "stable_tree_append": lambda ret: "appended",
}
STABLE_WALKS = ("stable_tree_search", "stable_tree_insert")
UNSTABLE_WALK = "unstable_tree_search_insert"


class StepTrace:
    """What one traced call did: calls, (function, what it decided, memcmp_pages inside) in
    order; walks, WalkEntry in order."""

    def __init__(self, ksm: Ksm):
        self.ksm = ksm
        self.calls: list[tuple[str, str, int]] = []
        self.walks: list[WalkEntry] = []
        self._levels: list[tuple[StableNode, bool, int | None]] = []  # the stable walk under way

    def shadows(self) -> dict[str, Callable[..., object]]:
        """The instance attributes that stand in for ksm's methods during the call."""
        ksm = self.ksm
        out: dict[str, Callable[..., object]] = {name: self._recorded(name, getattr(ksm, name)) for name in TRACED}
        for name in STABLE_WALKS:
            out[name] = self._stable_walk(name, out[name])
        out[UNSTABLE_WALK] = self._unstable_walk(out[UNSTABLE_WALK])
        out["walk_step"] = self._walk_step(ksm.walk_step)
        out["memcmp_pages"] = self._memcmp_pages(ksm.memcmp_pages)
        out["remove_node_from_stable_tree"] = self._pruned(ksm.remove_node_from_stable_tree)
        out["free_stable_node_chain"] = self._pruned(ksm.free_stable_node_chain)
        return out

    def _recorded(self, name: str, method: Callable[..., object]) -> Callable[..., object]:
        def recorded(*args: object) -> object:
            i = len(self.calls)
            self.calls.append((name, "", 0))  # in call order: the calls made inside come after it
            before = self.ksm.work["memcmp_pages"]
            ret = method(*args)
            self.calls[i] = (name, TRACED[name](ret), self.ksm.work["memcmp_pages"] - before)
            return ret
        return recorded

    def _stable_walk(self, walk: str, method: Callable[..., object]) -> Callable[..., object]:
        """The levels of the walk's last run from the root (a stale node makes it walk again)
        are its trace, once it is over."""
        def walked(*args: object) -> object:
            self._levels = []
            ret = method(*args)
            self.walks.extend((walk, depth, red, cmp, node) for depth, (node, red, cmp) in enumerate(self._levels))
            self._levels = []
            return ret
        return walked

    def _walk_step(self, method: Callable[..., tuple[int | None, StableNode | None, StableNode]]
                   ) -> Callable[..., tuple[int | None, StableNode | None, StableNode]]:
        def step(rb: StableNode, root: RbRoot[StableNode], prune: bool) -> tuple[int | None, StableNode | None,
                                                                                StableNode]:
            if rb.rb_parent is None:
                self._levels = []  # at the root: the walk starts (again)
            tree_pfn, dup, node = method(rb, root, prune)
            if tree_pfn is None:
                self._levels = []  # a stale node: the walk starts again
            else:
                self._levels.append((node, node.rb_color == RB_RED, None))  # node: the dup if it collapsed
            return tree_pfn, dup, node
        return step

    def _memcmp_pages(self, method: Callable[[int, int], int]) -> Callable[[int, int], int]:
        def memcmp_pages(a: int, b: int) -> int:
            ret = method(a, b)
            if self._levels:  # the stable walks compare once per level, right after walk_step
                node, red, _ = self._levels[-1]
                self._levels[-1] = (node, red, ret)
            return ret
        return memcmp_pages

    def _unstable_walk(self, method: Callable[..., object]) -> Callable[..., object]:
        def walked(item: RmapItem, pfn: int) -> object:
            self.walks.extend(self.unstable_walk(pfn))
            return method(item, pfn)
        return walked

    def unstable_walk(self, pfn: int) -> list[WalkEntry]:
        """The levels unstable_tree_search_insert(item, pfn) is about to walk, as it walks them."""
        ksm = self.ksm
        content = ksm.machine.content
        page = content[pfn]
        levels: list[WalkEntry] = []
        tree_item = ksm.root_unstable_tree[ksm.get_kpfn_nid(pfn)].rb_node
        while tree_item is not None:
            red = tree_item.rb_color == RB_RED
            tree_pfn = ksm.get_mergeable_page(tree_item)
            if tree_pfn is None or tree_pfn == pfn:
                levels.append((UNSTABLE_WALK, len(levels), red, None, tree_item))
                break
            tree_page = content[tree_pfn]
            ret = -1 if page < tree_page else 1 if page > tree_page else 0
            levels.append((UNSTABLE_WALK, len(levels), red, ret, tree_item))
            if ret == 0:
                break
            tree_item = tree_item.rb_left if ret < 0 else tree_item.rb_right
        return levels

    def _pruned(self, method: Callable[..., None]) -> Callable[..., None]:
        def pruned(node: StableNode, *args: object) -> None:
            self.walks.append(("pruned", -1, node.rb_color == RB_RED, None, node))
            method(node, *args)
        return pruned


@contextmanager
def trace_step(ksm: Ksm) -> Iterator[StepTrace]:
    """Trace the calls made inside: the instance attributes that shadow ksm's methods are there
    only meanwhile."""
    step = StepTrace(ksm)
    shadows = step.shadows()
    # shadows already there (engine/sim.py PacedKsm.record_series's) come back after
    kept = {name: vars(ksm)[name] for name in shadows if name in vars(ksm)}
    for name, fn in shadows.items():
        setattr(ksm, name, fn)
    try:
        yield step
    finally:
        for name in shadows:
            delattr(ksm, name)
        for name, fn in kept.items():
            setattr(ksm, name, fn)
