"""The stable and unstable trees, browsable, with a detail view of the highlighted node."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from engine.snapshot import Sharer, StableNodeView, UnstableItemView
from ksmtui.render import node_detail, sharer_label, stable_node_label, unstable_label
from ksmtui.ui.runner import EngineView
from ksmtui.ui.widgets.panels import Panel, TextView


class NodeTree(Tree):
    # Space stays pause/resume everywhere; enter expands and collapses a node.
    BINDINGS = [Binding("space", "app.toggle_pause", "Pause/run", id="pause")]


def _key(data: object) -> object:
    """A node's identity across snapshots, so expansion and the cursor survive a redraw."""
    if isinstance(data, StableNodeView):
        if data.kind == "chain":
            return ("chain", data.nid, min((d.kpfn for d in data.dups), default=-1))
        return (data.kind, data.kpfn)
    if isinstance(data, UnstableItemView):
        return ("unstable", data.process, data.address)
    return data


class TreesPanel(Panel):
    """Stable tree (chains expanded into their dups, each with its sharers) and unstable tree."""

    _detail_tree: NodeTree | None = None  # the tree whose highlighted node the detail view shows

    def compose(self) -> ComposeResult:
        with Vertical(id="trees-left"):
            yield NodeTree("stable tree", id="stable-tree")
            yield NodeTree("unstable tree", id="unstable-tree")
        with VerticalScroll(id="node-detail"):
            yield TextView("move the cursor onto a node to see it here", id="node-detail-text")

    def on_mount(self) -> None:
        for tree in self.query(NodeTree):
            tree.show_root = False
            tree.guide_depth = 2

    def key_of(self, view: EngineView) -> object:
        s = view.snapshot
        return (s.stable_tree, s.stable_tree_size, s.unstable_tree, s.unstable_tree_size)

    def draw(self, view: EngineView) -> None:
        s = view.snapshot
        stable = self.query_one("#stable-tree", NodeTree)
        stable.border_title = f"stable tree: {s.stable_tree_size} nodes ({len(s.stable_tree)} shown)"
        self._rebuild(stable, lambda root: [self._add_stable(root, n) for n in s.stable_tree])
        unstable = self.query_one("#unstable-tree", NodeTree)
        unstable.border_title = f"unstable tree: {s.unstable_tree_size} items ({len(s.unstable_tree)} shown)"
        self._rebuild(
            unstable,
            lambda root: [root.add_leaf(Text(unstable_label(item)), data=item) for item in s.unstable_tree],
        )
        tree = self._detail_tree or stable
        if tree.cursor_node is not None:
            self._show(tree.cursor_node)

    def _add_stable(self, parent: TreeNode, node: StableNodeView) -> None:
        # Children (dups, sharers) are added when the node is expanded: a tree of a hundred
        # collapsed nodes is cheap to rebuild ten times a second, one with thousands of sharers not.
        parent.add(Text(stable_node_label(node)), data=node, allow_expand=bool(node.dups or node.sharers))

    @staticmethod
    def _fill_children(branch: TreeNode) -> None:
        node = branch.data
        if branch.children or not isinstance(node, StableNodeView):
            return
        for dup in node.dups:
            branch.add(Text(stable_node_label(dup)), data=dup, allow_expand=bool(dup.sharers))
        for sharer in node.sharers:
            branch.add_leaf(Text(sharer_label(sharer)), data=sharer)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded) -> None:
        self._fill_children(event.node)

    def _rebuild(self, tree: NodeTree, fill) -> None:
        expanded = {_key(n.data) for n in _walk(tree.root) if n.is_expanded}
        cursor = _key(tree.cursor_node.data) if tree.cursor_node is not None else None
        tree.clear()
        fill(tree.root)
        for node in _walk(tree.root):  # children added by expanding are walked too
            if _key(node.data) in expanded:
                self._fill_children(node)
                node.expand()
            if cursor is not None and _key(node.data) == cursor:
                tree.move_cursor(node)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        self._detail_tree = event.control
        self._show(event.node)

    def _show(self, node: TreeNode) -> None:
        data = node.data
        if isinstance(data, Sharer):  # a sharer shows the KSM page it maps
            data = node.parent.data if node.parent is not None else None
        if isinstance(data, (StableNodeView, UnstableItemView)):
            self.query_one("#node-detail-text", TextView).show("\n".join(node_detail(data)))


def _walk(node: TreeNode):
    for child in node.children:
        yield child
        yield from _walk(child)
