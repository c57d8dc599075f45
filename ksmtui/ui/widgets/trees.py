"""The stable and unstable trees as the red-black trees they are, a page of a hundred entries at a
time, with search, the last single step's walks, and a detail view of the highlighted node.

Each row is one tree entry in tree order (in-order), indented by its depth, with the side it hangs
on ("L"/"R" of its parent) and its colour, so the page reads as the tree turned on its side: the
left subtree above a node, the right one below. After a single step (s) the entries that step's
walks met are marked with what memcmp_pages() said there, and the walk view lists the walks and
the stale nodes they pruned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Input, Tree
from textual.widgets.tree import TreeNode

from engine.snapshot import Sharer, StableNodeView, StepInfo, UnstableItemView, WalkStep
from ksmtui.text.render import node_detail, rmap_text, sharer_label, stable_node_label, unstable_label
from ksmtui.ui.runner import TREE_LIMIT, EngineView, TreeFind, TreePage, TreeQuery, send_command
from ksmtui.ui.widgets.panels import Panel, TextView

_TREES = {"stable-tree": "stable", "unstable-tree": "unstable"}


class NodeTree(Tree):
    # Space stays pause/resume everywhere; enter expands and collapses a node.
    BINDINGS = [
        Binding("space", "app.toggle_pause", "Pause/run", id="pause"),
        Binding("greater_than_sign", "page(1)", "Next 100", key_display=">"),
        Binding("less_than_sign", "page(-1)", "Previous 100", key_display="<"),
        Binding("slash", "search", "Search", key_display="/"),
    ]

    def action_page(self, pages: int) -> None:
        assert self.id is not None  # made as stable-tree or unstable-tree
        send_command(self.app, TreePage(_TREES[self.id], pages))

    def action_search(self) -> None:
        search = self.screen.query_one("#tree-search", Input)
        search.display = True
        search.focus()


def _key(data: object) -> object:
    """A node's identity across snapshots, so expansion and the cursor survive a redraw."""
    if isinstance(data, StableNodeView):
        if data.kind == "chain":
            return ("chain", data.nid, min((d.kpfn for d in data.dups), default=-1))
        return (data.kind, data.kpfn)
    if isinstance(data, UnstableItemView):
        return ("unstable", data.process, data.address)
    return data


def compared(ret: int | None) -> str:
    """What memcmp_pages() said at a node, and where the walk went from there."""
    if ret is None:
        return "not compared"
    return "< left" if ret < 0 else "> right" if ret > 0 else "= equal"


def _short(node: StableNodeView | UnstableItemView) -> str:
    if isinstance(node, UnstableItemView):
        return rmap_text(node.process, node.address)
    return f"chain of {node.rmap_hlist_len}" if node.kind == "chain" else f"kpfn {node.kpfn:#x}"


def row_label(node: StableNodeView | UnstableItemView, walked: WalkStep | None, nid: bool = True,
              shift: int = 0, short: bool = False) -> Text:
    """A tree row: indentation by depth (less `shift`, see row_shift), side, colour, the entry, and
    the last walk's mark. `short`, for a narrow tree: the mark without "memcmp", an unstable item
    without its kpfn (the detail view has both)."""
    text = Text(" " * max(node.depth - shift, 0))
    text.append(node.side or "·", "dim")
    if node.depth >= 0:
        text.append(" R " if node.red else " B ", "bold red" if node.red else "bold")
    else:
        text.append("   ")
    if isinstance(node, UnstableItemView):
        text.append(f"{node.process}:{node.address:#x}" if short else unstable_label(node, nid))
    else:
        text.append(stable_node_label(node, nid))
    if walked is not None:
        text.append(f"  ◀ {'' if short else 'memcmp '}{compared(walked.ret)}", "bold reverse yellow")
    return text


def row_shift(rows: list[Text], depths: list[int], room: int) -> int:
    """How many columns of indentation every row of a page gives up so that the widest fits in
    `room` (a deep tree on a narrow terminal): the page keeps its shape, shifted left, and no row
    runs past the edge; the rows shallower than the shift lose their indentation."""
    return max(0, max((min(len(row) - room, depth) for row, depth in zip(rows, depths, strict=True)), default=0))


def walk_lines(steps: tuple[WalkStep, ...], last: StepInfo | None = None) -> list[str]:
    """The walk view: each walk of the last single step, level by level, then what it pruned; a
    step that walked no tree (a KSM page's early return, a zero page, a checksum that changed)
    says so, with where it was and how it ended."""
    if not steps and last is not None:
        return [f"the last step walked no tree: {rmap_text(last.process, last.address)}",
                f"  {last.path} → {last.outcome}", "s steps the next page"]
    if not steps:
        return ["single-step (s) to see the walks of one cmp_and_merge_page() call"]
    lines: list[str] = []
    walk = None
    for step in steps:
        if step.walk != walk:
            walk = step.walk
            lines.append(f"{walk}" if walk != "pruned" else "pruned (stale)")
        if step.walk == "pruned":
            lines.append(f"      {_short(step.node)}")
        else:
            lines.append(f"  {step.depth:>2} {'R' if step.red else 'B'} {_short(step.node)} {compared(step.ret)}")
    return lines


class TreesPanel(Panel[EngineView]):
    """Stable tree (chains expanded into their dups, each with its sharers) and unstable tree."""

    DEFAULT_CSS = """
    TreesPanel #trees-right { width: 1fr; min-width: 26; }
    Screen.-wide TreesPanel #trees-right { min-width: 36; }
    TreesPanel #node-detail { height: 1fr; }
    TreesPanel #tree-walk {
        height: 1fr; border: solid $panel-lighten-1; border-title-color: $text-muted; padding: 0 1;
    }
    """

    _detail_tree: Tree | None = None  # the tree whose highlighted node the detail view shows
    _found_seq = 0  # the last search answer acted on

    def compose(self) -> ComposeResult:
        with Vertical(id="trees-left"):
            yield Input(placeholder="kpfn (0x1a2b) or process:address; Esc closes", id="tree-search")
            yield NodeTree("stable tree", id="stable-tree")
            yield NodeTree("unstable tree", id="unstable-tree")
        with Vertical(id="trees-right"):
            with VerticalScroll(id="node-detail"):
                yield TextView("move the cursor onto a node to see it here", id="node-detail-text")
            with VerticalScroll(id="tree-walk"):
                yield TextView(walk_lines(())[0], id="tree-walk-text")

    def on_mount(self) -> None:
        for tree in self.query(NodeTree):
            tree.show_root = False
            tree.guide_depth = 2
        self.query_one("#tree-search", Input).display = False
        self.query_one("#node-detail").border_title = "node"
        self.query_one("#tree-walk").border_title = "last step's walks"

    def key_of(self, view: EngineView) -> object:
        s = view.snapshot
        return (s.stable_tree, s.stable_tree_size, s.stable_offset, s.unstable_tree, s.unstable_tree_size,
                s.unstable_offset, s.last_walk, s.tree_found, self._last_step(view))

    def draw(self, view: EngineView) -> None:
        s = view.snapshot
        if ((s.stable_tree_size + s.migrate_nodes and not s.stable_tree)
                or (s.unstable_tree_size and not s.unstable_tree)):
            return  # a view taken while the tab was hidden carries no excerpt: keep the rows until one comes
        walked = {_key(step.node): step for step in s.last_walk if step.walk != "pruned"}
        nid = int(s.knobs.get("numa_nodes", 1)) > 1  # one node: every nid is 0, said by no row
        stable = self.query_one("#stable-tree", NodeTree)
        stable.border_title, stable.border_subtitle = self._title(
            "stable tree", "nodes", s.stable_offset, len(s.stable_tree), s.stable_tree_size + s.migrate_nodes)
        labels = self._labels(stable, s.stable_tree, walked, nid)

        def add_stable(root: TreeNode) -> None:
            for n, label in zip(s.stable_tree, labels, strict=True):
                self._add_stable(root, n, label)

        self._rebuild(stable, add_stable)
        unstable = self.query_one("#unstable-tree", NodeTree)
        unstable.border_title, unstable.border_subtitle = self._title(
            "unstable tree", "items", s.unstable_offset, len(s.unstable_tree), s.unstable_tree_size)
        items = self._labels(unstable, s.unstable_tree, walked, nid)
        self._rebuild(unstable, lambda root: [root.add_leaf(label, data=item)
                                              for item, label in zip(s.unstable_tree, items, strict=True)])
        self.query_one("#tree-walk-text", TextView).show("\n".join(walk_lines(s.last_walk, self._last_step(view))))
        found = s.tree_found
        if found is not None and found.seq != self._found_seq:
            self._found_seq = found.seq
            self._go_to(found.tree, found.rank - (s.stable_offset if found.tree == "stable" else s.unstable_offset),
                        found.query)
        tree = self._detail_tree or stable
        if tree.cursor_node is not None:
            self._show(tree.cursor_node)

    @staticmethod
    def _labels(tree: NodeTree, entries, walked: dict, nid: bool) -> list[Text]:
        """The rows of a page, shifted left as far as the widest needs to fit the tree (row_shift);
        a row too wide even without its indentation takes its short form."""
        room = tree.scrollable_content_region.width - 2  # the icon column (▶ and a space) takes 2
        labels = [row_label(n, walked.get(_key(n)), nid) for n in entries]
        if room <= 0:  # not laid out yet
            return labels
        short = [len(label) - max(n.depth, 0) > room for n, label in zip(entries, labels, strict=True)]
        labels = [row_label(n, walked.get(_key(n)), nid, short=s) if s else label
                  for n, label, s in zip(entries, labels, short, strict=True)]
        shift = row_shift(labels, [n.depth for n in entries], room)
        return [row_label(n, walked.get(_key(n)), nid, shift, s) for n, s in zip(entries, short, strict=True)] \
            if shift else labels

    @staticmethod
    def _last_step(view: EngineView) -> StepInfo | None:
        """The last single step, while it is the last thing ksmd did (as the Overview shows it)."""
        step = view.snapshot.last_step
        return step if step is not None and step.pages_scanned == view.snapshot.counters["pages_scanned"] else None

    @staticmethod
    def _title(name: str, what: str, offset: int, shown: int, total: int) -> tuple[str, str]:
        """The tree's title (which entries of how many) and, on the bottom border, its keys: both
        whole in the 80-column tab, where one line of both did not fit."""
        if not shown:
            return f"{name}: {total:,} {what}", ""
        keys = "< > pages · / search" if total > TREE_LIMIT else "/ search"
        return f"{name}: {offset + 1:,}-{offset + shown:,} of {total:,} {what}", keys

    def _go_to(self, tree_name: str | None, row: int, query: str) -> None:
        if tree_name is None:
            self.app.notify(f"not in the trees: {query}", severity="warning")
            return
        tree = self.query_one(f"#{tree_name}-tree", NodeTree)
        tree.last_line  # noqa: B018 - lays the rows out, so that the cursor can be put on one
        tree.move_cursor_to_line(row)
        tree.focus()

    def _add_stable(self, parent: TreeNode, node: StableNodeView, label: Text) -> None:
        # Children (dups, sharers) are added when the node is expanded: a tree of a hundred
        # collapsed nodes is cheap to rebuild ten times a second, one with thousands of sharers not.
        parent.add(label, data=node, allow_expand=bool(node.dups or node.sharers))

    def _fill_children(self, branch: TreeNode) -> None:
        node = branch.data
        if branch.children or not isinstance(node, StableNodeView):
            return
        view = getattr(self.app, "view", None)
        nid = view is None or int(view.snapshot.knobs.get("numa_nodes", 1)) > 1
        for dup in node.dups:
            branch.add(Text(stable_node_label(dup, nid)), data=dup, allow_expand=bool(dup.sharers))
        for sharer in node.sharers:
            branch.add_leaf(Text(sharer_label(sharer)), data=sharer)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded) -> None:
        self._fill_children(event.node)

    def _rebuild(self, tree: NodeTree, fill: Callable[[TreeNode], object]) -> None:
        expanded = {_key(n.data) for n in _walk(tree.root) if n.is_expanded}
        cursor = _key(tree.cursor_node.data) if tree.cursor_node is not None else None
        line, scroll = tree.cursor_line, tree.scroll_y
        tree.clear()
        fill(tree.root)
        for node in _walk(tree.root):  # children added by expanding are walked too
            if _key(node.data) in expanded:
                self._fill_children(node)
                node.expand()
        # the rows' lines exist once laid out: only then can the cursor go back on its node
        last = tree.last_line
        target = next((n for n in _walk(tree.root) if cursor is not None and _key(n.data) == cursor), None)
        if target is not None:
            tree.cursor_line = target.line
        elif line >= 0:
            tree.cursor_line = min(line, last)  # its node left the window: the same row
        tree.scroll_to(y=scroll, animate=False)
        if target is not None:
            tree.scroll_to_node(target, animate=False)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        self._detail_tree = event.control
        self._show(event.node)

    def _show(self, node: TreeNode) -> None:
        data = node.data
        if isinstance(data, Sharer):  # a sharer shows the KSM page it maps
            data = node.parent.data if node.parent is not None else None
        if isinstance(data, (StableNodeView, UnstableItemView)):
            text = self.query_one("#node-detail-text", TextView)
            # the detail's width less its scrollbar, shown or not (showing it must not wrap a line)
            width = self.query_one("#node-detail").content_region.width
            lines = node_detail(data, width - 2 if width > 2 else None)
            if data.depth >= 0:
                side = {"L": "left", "R": "right"}.get(data.side, "root")
                lines.append(f"rb_node    depth {data.depth}, {'red' if data.red else 'black'}, {side}")
            text.show("\n".join(lines))

    # --- the search box ---

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            query = TreeQuery.parse(event.value)
        except ValueError as err:
            self.app.notify(str(err), severity="error")
            return
        event.input.display = False
        send_command(self.app, TreeFind(query))

    def on_key(self, event: events.Key) -> None:
        search = self.query_one("#tree-search", Input)
        if event.key == "escape" and search.has_focus:
            event.stop()
            search.display = False
            self.query_one("#stable-tree", NodeTree).focus()


def _walk(node: TreeNode) -> Iterator[TreeNode]:
    for child in node.children:
        yield child
        yield from _walk(child)
