"""The red-black trees behind root_stable_tree[] and root_unstable_tree[]: lib/rbtree.c, transcribed.

The kernel walks these trees by hand (`new = &root->rb_node; while (*new)`), comparing live page
contents at each step, then hangs the new entry where the walk fell off (rb_link_node) and
rebalances (rb_insert_color). ksm.c does the same with `root.rb_node`, `rb_left` and `rb_right`,
and calls link(), erase() and replace() where mm/ksm.c calls rb_link_node + rb_insert_color,
rb_erase and rb_replace_node. Since the rebalancing is the kernel's, case for case, the same
operations in the same order give the kernel's shape, so the walks meet (and prune) the same
stale nodes in the same order.

The parent and colour the kernel packs into __rb_parent_color are two fields here.
"""

from __future__ import annotations

from typing import Generic, Iterator, Self, TypeVar

try:
    import cython  # the compiled build reads the declarations made here (the rest: tree.pxd)
except ImportError:
    from engine import _cython_shim as cython

RB_RED = 0
RB_BLACK = 1


class RbNode:
    """struct rb_node, embedded: rmap_items and stable nodes are their own tree nodes, so
    rb_entry() is the node itself and a walk reaches the entry without another hop."""

    __slots__ = ("rb_left", "rb_right", "rb_parent", "rb_color", "touched")

    def __init__(self) -> None:
        # linked to nodes of its own kind: a stable tree holds stable nodes, an unstable one rmap_items
        self.rb_left: Self | None = None
        self.rb_right: Self | None = None
        self.rb_parent: Self | None = None
        self.rb_color = RB_RED
        # the model's, not struct rb_node's: the wake-up (CostModel.wakeups) in which ksmd last
        # read this entry; the first read in a wake-up misses the caches (engine/cost.py TREE_COLD)
        self.touched = 0


N = TypeVar("N", bound=RbNode)


def rb_first(root: RbRoot[N]) -> N | None:
    node = root.rb_node
    if node is None:
        return None
    while node.rb_left is not None:
        node = node.rb_left
    return node


def rb_next(node: N) -> N | None:
    if node.rb_right is not None:
        node = node.rb_right
        while node.rb_left is not None:
            node = node.rb_left
        return node
    parent = node.rb_parent
    while parent is not None and node is parent.rb_right:
        node, parent = parent, parent.rb_parent
    return parent


class RbRoot(Generic[N]):
    """struct rb_root, plus the number of entries (the model's, for the counters and the UI)."""

    __slots__ = ("rb_node", "count")

    def __init__(self) -> None:
        self.rb_node: N | None = None
        self.count = 0

    # typed: the unstable tree links a node for every anonymous page scanned (engine/ksm.py)
    @cython.locals(node=RbNode, parent=RbNode)
    def link(self, node: N, parent: N | None, left: bool) -> None:
        """rb_link_node(node, parent, rb_link) + rb_insert_color(node, root)."""
        node.rb_parent = parent
        node.rb_color = RB_RED
        node.rb_left = node.rb_right = None
        if parent is None:
            self.rb_node = node
        elif left:
            parent.rb_left = node
        else:
            parent.rb_right = node
        self.count += 1
        self._insert_color(node)

    @cython.locals(node=RbNode, parent=RbNode, gparent=RbNode, tmp=RbNode)
    def _insert_color(self, node: N) -> None:
        """__rb_insert without augmentation."""
        parent = node.rb_parent
        while True:
            if parent is None:
                node.rb_parent, node.rb_color = None, RB_BLACK
                return
            if parent.rb_color == RB_BLACK:
                return
            gparent = parent.rb_parent
            assert gparent is not None  # a red parent is never the root
            tmp = gparent.rb_right
            if parent is not tmp:  # parent == gparent->rb_left
                if tmp is not None and tmp.rb_color == RB_RED:
                    # Case 1 - color flips, then recurse at gparent
                    tmp.rb_parent, tmp.rb_color = gparent, RB_BLACK
                    parent.rb_parent, parent.rb_color = gparent, RB_BLACK
                    node = gparent
                    parent = node.rb_parent
                    node.rb_color = RB_RED
                    continue
                tmp = parent.rb_right
                if node is tmp:
                    # Case 2 - left rotate at parent
                    parent.rb_right = tmp = node.rb_left
                    node.rb_left = parent
                    if tmp is not None:
                        tmp.rb_parent, tmp.rb_color = parent, RB_BLACK
                    parent.rb_parent, parent.rb_color = node, RB_RED
                    parent = node
                    tmp = node.rb_right
                # Case 3 - right rotate at gparent
                gparent.rb_left = tmp
                parent.rb_right = gparent
                if tmp is not None:
                    tmp.rb_parent, tmp.rb_color = gparent, RB_BLACK
                self._rotate_set_parents(gparent, parent, RB_RED)
                return
            tmp = gparent.rb_left
            if tmp is not None and tmp.rb_color == RB_RED:
                # Case 1 - color flips
                tmp.rb_parent, tmp.rb_color = gparent, RB_BLACK
                parent.rb_parent, parent.rb_color = gparent, RB_BLACK
                node = gparent
                parent = node.rb_parent
                node.rb_color = RB_RED
                continue
            tmp = parent.rb_left
            if node is tmp:
                # Case 2 - right rotate at parent
                parent.rb_left = tmp = node.rb_right
                node.rb_right = parent
                if tmp is not None:
                    tmp.rb_parent, tmp.rb_color = parent, RB_BLACK
                parent.rb_parent, parent.rb_color = node, RB_RED
                parent = node
                tmp = node.rb_left
            # Case 3 - left rotate at gparent
            gparent.rb_right = tmp
            parent.rb_left = gparent
            if tmp is not None:
                tmp.rb_parent, tmp.rb_color = gparent, RB_BLACK
            self._rotate_set_parents(gparent, parent, RB_RED)
            return

    def erase(self, node: N) -> None:
        """rb_erase: __rb_erase_augmented without augmentation, then ____rb_erase_color."""
        child, tmp = node.rb_right, node.rb_left
        if tmp is None:
            # Case 1: at most one child (the right one); a lone child is red and node black
            parent, color = node.rb_parent, node.rb_color
            self._change_child(node, child, parent)
            if child is not None:
                child.rb_parent, child.rb_color = parent, color
                rebalance = None
            else:
                rebalance = parent if color == RB_BLACK else None
        elif child is None:
            # still case 1, the child is node->rb_left
            parent = node.rb_parent
            tmp.rb_parent, tmp.rb_color = parent, node.rb_color
            self._change_child(node, tmp, parent)
            rebalance = None
        else:
            successor = child
            tmp = child.rb_left
            if tmp is None:
                # Case 2: node's successor is its right child
                parent = successor
                child2 = successor.rb_right
            else:
                # Case 3: node's successor is leftmost under node's right child subtree
                while True:
                    parent = successor
                    successor = tmp
                    tmp = tmp.rb_left
                    if tmp is None:
                        break
                child2 = successor.rb_right
                parent.rb_left = child2
                successor.rb_right = child
                child.rb_parent = successor
            tmp = node.rb_left
            assert tmp is not None  # node has both children here
            successor.rb_left = tmp
            tmp.rb_parent = successor
            pparent, color = node.rb_parent, node.rb_color
            self._change_child(node, successor, pparent)
            if child2 is not None:
                successor.rb_parent, successor.rb_color = pparent, color
                child2.rb_parent, child2.rb_color = parent, RB_BLACK
                rebalance = None
            else:
                was_black = successor.rb_color == RB_BLACK
                successor.rb_parent, successor.rb_color = pparent, color
                rebalance = parent if was_black else None
        node.rb_left = node.rb_right = node.rb_parent = None
        self.count -= 1
        if rebalance is not None:
            self._erase_color(rebalance)

    def _erase_color(self, parent: N) -> None:
        """____rb_erase_color without augmentation."""
        node: N | None = None
        while True:
            sibling = parent.rb_right
            if node is not sibling:  # node == parent->rb_left
                # node's side is a black node short: the sibling's side has one, so both exist below
                assert sibling is not None
                if sibling.rb_color == RB_RED:
                    # Case 1 - left rotate at parent
                    parent.rb_right = tmp1 = sibling.rb_left
                    assert tmp1 is not None
                    sibling.rb_left = parent
                    tmp1.rb_parent, tmp1.rb_color = parent, RB_BLACK
                    self._rotate_set_parents(parent, sibling, RB_RED)
                    sibling = tmp1
                tmp1 = sibling.rb_right
                if tmp1 is None or tmp1.rb_color == RB_BLACK:
                    tmp2 = sibling.rb_left
                    if tmp2 is None or tmp2.rb_color == RB_BLACK:
                        # Case 2 - sibling color flip
                        sibling.rb_parent, sibling.rb_color = parent, RB_RED
                        if parent.rb_color == RB_RED:
                            parent.rb_color = RB_BLACK
                        else:
                            node, up = parent, parent.rb_parent
                            if up is not None:
                                parent = up
                                continue
                        return
                    # Case 3 - right rotate at sibling
                    sibling.rb_left = tmp1 = tmp2.rb_right
                    tmp2.rb_right = sibling
                    parent.rb_right = tmp2
                    if tmp1 is not None:
                        tmp1.rb_parent, tmp1.rb_color = sibling, RB_BLACK
                    tmp1 = sibling
                    sibling = tmp2
                # Case 4 - left rotate at parent + color flips
                parent.rb_right = tmp2 = sibling.rb_left
                sibling.rb_left = parent
                tmp1.rb_parent, tmp1.rb_color = sibling, RB_BLACK
                if tmp2 is not None:
                    tmp2.rb_parent = parent
                self._rotate_set_parents(parent, sibling, RB_BLACK)
                return
            sibling = parent.rb_left
            assert sibling is not None
            if sibling.rb_color == RB_RED:
                # Case 1 - right rotate at parent
                parent.rb_left = tmp1 = sibling.rb_right
                assert tmp1 is not None
                sibling.rb_right = parent
                tmp1.rb_parent, tmp1.rb_color = parent, RB_BLACK
                self._rotate_set_parents(parent, sibling, RB_RED)
                sibling = tmp1
            tmp1 = sibling.rb_left
            if tmp1 is None or tmp1.rb_color == RB_BLACK:
                tmp2 = sibling.rb_right
                if tmp2 is None or tmp2.rb_color == RB_BLACK:
                    # Case 2 - sibling color flip
                    sibling.rb_parent, sibling.rb_color = parent, RB_RED
                    if parent.rb_color == RB_RED:
                        parent.rb_color = RB_BLACK
                    else:
                        node, up = parent, parent.rb_parent
                        if up is not None:
                            parent = up
                            continue
                    return
                # Case 3 - left rotate at sibling
                sibling.rb_right = tmp1 = tmp2.rb_left
                tmp2.rb_left = sibling
                parent.rb_left = tmp2
                if tmp1 is not None:
                    tmp1.rb_parent, tmp1.rb_color = sibling, RB_BLACK
                tmp1 = sibling
                sibling = tmp2
            # Case 4 - right rotate at parent + color flips
            parent.rb_left = tmp2 = sibling.rb_right
            sibling.rb_right = parent
            tmp1.rb_parent, tmp1.rb_color = sibling, RB_BLACK
            if tmp2 is not None:
                tmp2.rb_parent = parent
            self._rotate_set_parents(parent, sibling, RB_BLACK)
            return

    def replace(self, victim: N, new: N) -> None:
        """rb_replace_node: new takes victim's place, links and colour, with no rebalancing."""
        parent = victim.rb_parent
        new.rb_left, new.rb_right, new.rb_parent, new.rb_color = (
            victim.rb_left, victim.rb_right, parent, victim.rb_color)
        if victim.rb_left is not None:
            victim.rb_left.rb_parent = new
        if victim.rb_right is not None:
            victim.rb_right.rb_parent = new
        self._change_child(victim, new, parent)
        victim.rb_left = victim.rb_right = victim.rb_parent = None

    def reset(self) -> None:
        """root_unstable_tree[nid] = RB_ROOT: the unstable tree is forgotten at each full scan."""
        self.rb_node = None
        self.count = 0

    def __iter__(self) -> Iterator[N]:
        """Entries in tree order, as rb_first() / rb_next() visit them."""
        node = rb_first(self)
        while node is not None:
            nxt = rb_next(node)  # taken first: the caller may erase node
            yield node
            node = nxt

    def _change_child(self, old: N, new: N | None, parent: N | None) -> None:
        """__rb_change_child."""
        if parent is None:
            self.rb_node = new
        elif parent.rb_left is old:
            parent.rb_left = new
        else:
            parent.rb_right = new

    def _rotate_set_parents(self, old: N, new: N, color: int) -> None:
        """__rb_rotate_set_parents: new takes old's parent and colour; old hangs under new."""
        parent = old.rb_parent
        new.rb_parent, new.rb_color = parent, old.rb_color
        old.rb_parent, old.rb_color = new, color
        self._change_child(old, new, parent)
