"""The binary search trees behind root_stable_tree[] and root_unstable_tree[].

The kernel uses red-black trees and walks them by hand (`new = &root->rb_node; while (*new)`),
comparing live page contents at each step. ksm.c walks these trees the same way: it reads
`root.rb_node`, follows `rb_left`/`rb_right`, and links a new entry where the walk fell off.

Model simplification: balancing is a treap (priority from a deterministic hash) instead of
red-black colouring. Both keep the walk O(log n); the shape differs, so the order in which a walk
meets stale stable nodes can differ from the kernel's, which changes no settled counter.
"""

from __future__ import annotations

from typing import Iterator

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


class RbNode:
    """struct rb_node, embedded: rmap_items and stable nodes are their own tree nodes, so
    rb_entry() is the node itself and a walk reaches the entry without another hop."""

    __slots__ = ("rb_left", "rb_right", "rb_parent", "prio")

    def __init__(self) -> None:
        self.rb_left: RbNode | None = None
        self.rb_right: RbNode | None = None
        self.rb_parent: RbNode | None = None
        self.prio = 0


class RbRoot:
    __slots__ = ("rb_node", "count", "_seq")

    def __init__(self) -> None:
        self.rb_node: RbNode | None = None
        self.count = 0
        self._seq = 0

    def _next_prio(self) -> int:
        self._seq += 1
        return (self._seq * _GOLDEN) & _MASK

    def link(self, node: RbNode, parent: RbNode | None, left: bool) -> None:
        """rb_link_node + rb_insert_color: hang node where a walk fell off, then rebalance."""
        node.prio = self._next_prio()
        node.rb_parent = parent
        node.rb_left = node.rb_right = None
        if parent is None:
            self.rb_node = node
        elif left:
            parent.rb_left = node
        else:
            parent.rb_right = node
        self.count += 1
        while node.rb_parent is not None and node.rb_parent.prio < node.prio:
            self._rotate_up(node)

    def erase(self, node: RbNode) -> None:
        """rb_erase: rotate the node down to a leaf, then cut it off."""
        while node.rb_left is not None or node.rb_right is not None:
            left, right = node.rb_left, node.rb_right
            child = left if right is None or (left is not None and left.prio > right.prio) else right
            self._rotate_up(child)
        self._set_child(node.rb_parent, node, None)
        node.rb_parent = None
        self.count -= 1

    def replace(self, old: RbNode, new: RbNode) -> None:
        """rb_replace_node: new takes old's place, links and all (its priority too)."""
        # a priority is drawn and not used, as when new had a node of its own: the trees keep
        # the shapes, and the walks the simulated cost, they had then
        self._next_prio()
        new.rb_left, new.rb_right, new.rb_parent, new.prio = old.rb_left, old.rb_right, old.rb_parent, old.prio
        for child in (new.rb_left, new.rb_right):
            if child is not None:
                child.rb_parent = new
        self._set_child(old.rb_parent, old, new)
        old.rb_left = old.rb_right = old.rb_parent = None

    def reset(self) -> None:
        """The unstable tree is simply forgotten at the start of each full scan."""
        self.rb_node = None
        self.count = 0

    def __iter__(self) -> Iterator[RbNode]:
        """Entries in tree order (in-order walk)."""
        stack: list[RbNode] = []
        node = self.rb_node
        while stack or node is not None:
            while node is not None:
                stack.append(node)
                node = node.rb_left
            node = stack.pop()
            yield node
            node = node.rb_right

    def _set_child(self, parent: RbNode | None, old: RbNode, new: RbNode | None) -> None:
        if parent is None:
            self.rb_node = new
        elif parent.rb_left is old:
            parent.rb_left = new
        else:
            parent.rb_right = new
        if new is not None:
            new.rb_parent = parent

    def _rotate_up(self, node: RbNode) -> None:
        parent = node.rb_parent
        grand = parent.rb_parent
        if parent.rb_left is node:
            parent.rb_left = node.rb_right
            if node.rb_right is not None:
                node.rb_right.rb_parent = parent
            node.rb_right = parent
        else:
            parent.rb_right = node.rb_left
            if node.rb_left is not None:
                node.rb_left.rb_parent = parent
            node.rb_left = parent
        parent.rb_parent = node
        self._set_child(grand, parent, node)
