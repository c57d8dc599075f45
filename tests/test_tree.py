"""engine/tree.py is lib/rbtree.c: the red-black invariants hold after any sequence of operations,
and the shapes are the kernel's for sequences worked out by hand from lib/rbtree.c."""

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tree import RB_BLACK, RB_RED, RbNode, RbRoot, rb_first, rb_next


class Item(RbNode):
    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        super().__init__()
        self.key = key


def insert(root: RbRoot, item: Item) -> None:
    """The walk ksm.c makes: down from rb_node, then link where it fell off."""
    parent, left = None, False
    node = root.rb_node
    while node is not None:
        parent = node
        if item.key < node.key:
            node, left = node.rb_left, True
        else:
            node, left = node.rb_right, False
    root.link(item, parent, left)


def black_height(node, parent=None) -> int:
    """Checks every invariant below node; returns its black height."""
    if node is None:
        return 1
    assert node.rb_parent is parent
    assert node.rb_color in (RB_RED, RB_BLACK)
    if node.rb_color == RB_RED:
        for child in (node.rb_left, node.rb_right):
            assert child is None or child.rb_color == RB_BLACK, "red node with a red child"
    left = black_height(node.rb_left, node)
    right = black_height(node.rb_right, node)
    assert left == right, "paths with different numbers of black nodes"
    return left + (node.rb_color == RB_BLACK)


def check(root: RbRoot, live: list[Item]) -> None:
    assert root.rb_node is None or root.rb_node.rb_color == RB_BLACK
    black_height(root.rb_node)
    keys = [n.key for n in root]
    assert keys == sorted(it.key for it in live)
    assert root.count == len(live)


def shape(node):
    if node is None:
        return None
    return (node.key, "rb"[node.rb_color], shape(node.rb_left), shape(node.rb_right))


ops = st.lists(st.tuples(st.sampled_from(["insert", "erase", "replace"]), st.integers(0, 60)), max_size=120)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_invariants_hold_after_any_sequence(sequence):
    root = RbRoot()
    live: list[Item] = []
    for op, k in sequence:
        if op == "insert" or not live:
            item = Item(k)
            insert(root, item)
            live.append(item)
        elif op == "erase":
            root.erase(live.pop(k % len(live)))
        else:  # replace by an equal key, as a stable node chain takes its dup's place
            i = k % len(live)
            old, new = live[i], Item(live[i].key)
            before = shape(root.rb_node)
            root.replace(old, new)
            live[i] = new
            assert shape(root.rb_node) == before  # links and colour handed over, no rebalancing
            assert old.rb_parent is old.rb_left is old.rb_right is None
        check(root, live)


def test_ascending_inserts_rebalance_like_lib_rbtree():
    root = RbRoot()
    for k in (1, 2, 3):
        insert(root, Item(k))
    # case 3 (left rotate at gparent): 2 black on top, 1 and 3 red
    assert shape(root.rb_node) == (2, "b", (1, "r", None, None), (3, "r", None, None))
    insert(root, Item(4))
    # case 1 (colour flip) up to the root, which turns black again
    assert shape(root.rb_node) == (2, "b", (1, "b", None, None), (3, "b", None, (4, "r", None, None)))
    insert(root, Item(5))
    assert shape(root.rb_node) == (2, "b", (1, "b", None, None),
                                   (4, "b", (3, "r", None, None), (5, "r", None, None)))


def test_erase_takes_the_successor_and_rebalances_like_lib_rbtree():
    root = RbRoot()
    items = {k: Item(k) for k in (1, 2, 3, 4, 5)}
    for k in (1, 2, 3, 4, 5):
        insert(root, items[k])
    root.erase(items[2])  # two children: the successor 3 (leftmost of the right subtree) moves up
    assert shape(root.rb_node) == (3, "b", (1, "b", None, None), (4, "b", None, (5, "r", None, None)))
    root.erase(items[1])  # a black leaf: case 4 rotates left at the root
    assert shape(root.rb_node) == (4, "b", (3, "b", None, None), (5, "b", None, None))


def test_rb_first_and_rb_next_visit_in_order():
    root = RbRoot()
    assert rb_first(root) is None
    for k in (5, 3, 8, 1, 4, 9, 7):
        insert(root, Item(k))
    node, seen = rb_first(root), []
    while node is not None:
        seen.append(node.key)
        node = rb_next(node)
    assert seen == [1, 3, 4, 5, 7, 8, 9]
