"""Pilot tests of the Trees tab: the trees as trees, paging, search, the last step's walks, and a
cursor that stays on its node through redraws and tab switches."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static

from engine.scenario import parse_scenario
from ksmtui.ui.apps.model import KsmApp
from ksmtui.ui.runner import TreePage
from ksmtui.ui.widgets.trees import compared, row_label
from tests.ui_helpers import SCENARIO, batches, drive, press, screen_text, settle

# more private pages, so that the unstable tree holds more than a page of entries
BIG = SCENARIO.replace("pages = 16", "pages = 40").replace("full_scans = 30", "full_scans = 1000")


pytestmark = pytest.mark.usefixtures("no_cursor_blink")


def big_app() -> KsmApp:
    return KsmApp(parse_scenario(BIG, "big.toml", Path(".")), paused=True)


def rows(pilot, tree_id: str):
    return [n for n in pilot.app.query_one(f"#{tree_id}").root.children]


def text_of(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def test_rows_show_depth_side_and_colour_as_the_tree_has_them():
    async def test(pilot):
        await batches(pilot, 12)
        await press(pilot, "2")
        stable = rows(pilot, "stable-tree")
        roots = [n for n in stable if n.data.depth == 0]
        assert len(roots) == 1 and not roots[0].data.red and roots[0].data.side == ""
        for node in stable:
            label = str(node.label)
            view = node.data
            assert label.startswith(" " * view.depth + (view.side or "·") + (" R " if view.red else " B "))
        # in-order rows of a binary tree: a left child sits above its parent, one level deeper
        for above, below in zip(stable, stable[1:], strict=False):
            if above.data.side == "L" and above.data.depth == below.data.depth + 1:
                break
        else:
            pytest.fail("no left child right above its parent")

    drive(big_app(), test)


def test_paging_moves_the_window_a_hundred_entries_at_a_time():
    async def test(pilot):
        await batches(pilot, 12)
        await press(pilot, "2")
        snap = pilot.app.view.snapshot
        assert snap.unstable_tree_size > 100
        tree = pilot.app.query_one("#unstable-tree")
        tree.focus()
        first = [n.data for n in rows(pilot, "unstable-tree")]
        await press(pilot, "greater_than_sign")
        assert pilot.app.view.snapshot.unstable_offset == 100
        second = [n.data for n in rows(pilot, "unstable-tree")]
        assert len(first) == 100 and second and not set(first) & set(second)
        assert tree.border_title.startswith(f"unstable tree: 101-{100 + len(second)} of")
        await press(pilot, "greater_than_sign", "greater_than_sign")  # past the end: the last page
        assert pilot.app.view.snapshot.unstable_offset == (snap.unstable_tree_size - 1) // 100 * 100
        await press(pilot, "less_than_sign", "less_than_sign", "less_than_sign")
        assert pilot.app.view.snapshot.unstable_offset == 0

    drive(big_app(), test)


def test_search_by_process_address_and_by_kpfn_puts_the_cursor_on_the_entry():
    async def test(pilot):
        await batches(pilot, 12)
        await press(pilot, "2")
        pilot.app.send(TreePage("unstable", 1))
        await settle(pilot)
        wanted = rows(pilot, "unstable-tree")[5].data
        pilot.app.send(TreePage("unstable", -1))
        await settle(pilot)
        pilot.app.query_one("#stable-tree").focus()
        await press(pilot, "slash")
        search = pilot.app.query_one("#tree-search", Input)
        assert search.display and search.has_focus
        await pilot.press(*f"{wanted.process}:{wanted.address:#x}")
        await press(pilot, "enter")
        tree = pilot.app.query_one("#unstable-tree")
        assert not search.display and tree.has_focus and pilot.app.view.snapshot.unstable_offset == 100
        assert tree.cursor_node.data == wanted
        assert f"rmap       {wanted.process}:{wanted.address:#x}" in text_of(pilot.app, "#node-detail-text")
        node = [n.data for n in rows(pilot, "stable-tree") if n.data.kind == "regular"][3]
        await press(pilot, "slash")
        await pilot.press(*f"{node.kpfn:#x}")
        await press(pilot, "enter")
        stable = pilot.app.query_one("#stable-tree")
        assert stable.has_focus and stable.cursor_node.data == node

    drive(big_app(), test)


def test_a_bad_or_missing_search_says_so_and_escape_closes_the_box():
    async def test(pilot):
        await batches(pilot, 4)
        await press(pilot, "2")
        pilot.app.query_one("#stable-tree").focus()
        await press(pilot, "slash")
        await pilot.press(*"vm-0:zz")
        await press(pilot, "enter")
        assert pilot.app.query_one("#tree-search", Input).display  # still open to be corrected
        await press(pilot, "escape")
        assert not pilot.app.query_one("#tree-search", Input).display
        await press(pilot, "slash")
        await pilot.press(*"nobody:0x1000")
        await press(pilot, "enter")
        notes = [n.message for n in pilot.app._notifications]
        assert any("expected a kpfn (0x1a2b or 6699) or process:address, got 'vm-0:zz'" in m for m in notes)
        assert any("not in the trees: nobody:0x1000" in m for m in notes)

    drive(big_app(), test)


def test_a_single_step_marks_its_walks_with_what_memcmp_said():
    async def test(pilot):
        await batches(pilot, 9)
        await press(pilot, "2")
        for _ in range(200):  # until a step walks the unstable tree more than one level deep
            await press(pilot, "s")
            walk = pilot.app.view.snapshot.last_walk
            if sum(w.walk == "unstable_tree_search_insert" for w in walk) > 1:
                break
        else:
            pytest.fail("no step walked the unstable tree")
        shown = text_of(pilot.app, "#tree-walk-text")
        assert "unstable_tree_search_insert" in shown and ("< left" in shown or "> right" in shown)
        marked = [str(n.label) for n in rows(pilot, "unstable-tree") if "◀ memcmp" in str(n.label)]
        assert marked  # the root at least is in the first page
        await press(pilot, "b")  # running on: the marks were the single step's
        assert "single-step (s)" in text_of(pilot.app, "#tree-walk-text")

    drive(big_app(), test)


def test_the_cursor_and_the_expanded_nodes_survive_redraws_and_tab_switches():
    async def test(pilot):
        await batches(pilot, 12)
        await press(pilot, "2")
        tree = pilot.app.query_one("#stable-tree")
        tree.focus()
        await press(pilot, "down", "down", "down", "down", "down")
        chosen = tree.cursor_node.data
        tree.cursor_node.expand()
        await pilot.pause()
        await batches(pilot, 2)  # redraws (the sharers' checksums and counts move on)
        assert tree.cursor_node.data.kpfn == chosen.kpfn and tree.cursor_node.is_expanded
        await press(pilot, "1", "3", "2")
        tree = pilot.app.query_one("#stable-tree")
        assert tree.cursor_node.data.kpfn == chosen.kpfn and tree.cursor_node.is_expanded

    drive(big_app(), test)


def test_a_step_that_walked_no_tree_says_so():
    async def test(pilot):
        await press(pilot, "2")
        assert "single-step (s)" in text_of(pilot.app, "#tree-walk-text")
        await press(pilot, "s")  # the first pass only stores checksums: no tree is walked
        step = pilot.app.view.snapshot.last_step
        assert not pilot.app.view.snapshot.last_walk
        assert text_of(pilot.app, "#tree-walk-text").split("\n") == [
            f"the last step walked no tree: {step.process}: {step.address:#x}",  # wraps after the colon
            f"  {step.path} → {step.outcome}", "s steps the next page"]

    drive(big_app(), test)


def test_at_80_columns_titles_keys_and_rows_are_whole():
    """The 80-column Trees tab: the title (which entries of how many) on the top border, the keys on
    the bottom one, both whole (one line of both was cut to "…"), and no row runs past the tree's
    edge (a deep page shifts left instead); on one NUMA node no row says "nid 0"."""

    async def test(pilot):
        await batches(pilot, 12)
        await press(pilot, "2")
        screen = screen_text(pilot.app)
        snap = pilot.app.view.snapshot
        assert snap.unstable_tree_size > 100
        assert f"─ unstable tree: 1-100 of {snap.unstable_tree_size:,} items ─" in screen
        assert "─ < > pages · / search ─" in screen and "…" not in screen.split("\n")[4]
        for tree_id in ("stable-tree", "unstable-tree"):
            tree = pilot.app.query_one(f"#{tree_id}")
            assert tree.max_scroll_x == 0, f"{tree_id}: a row wider than the tree"
            assert not any("nid" in str(n.label) for n in rows(pilot, tree_id))

    drive(big_app(), test, (80, 24))


def test_at_80_columns_a_walk_marked_on_a_deep_row_keeps_it_inside_the_tree():
    """The 10th single step of the tenth pass walks the unstable tree: its marks ("◀ memcmp < left")
    made a row run past the 80-column tree's edge; the page shifts left, or the row goes short."""
    from tests.ui_helpers import make_app

    async def test(pilot):
        await batches(pilot, 9)
        await press(pilot, "2", *["s"] * 10)
        assert any(step.walk == "unstable_tree_search_insert" for step in pilot.app.view.snapshot.last_walk)
        marked = [n for n in rows(pilot, "unstable-tree") if "◀" in str(n.label)]
        assert marked and all(pilot.app.query_one(f"#{t}").max_scroll_x == 0 for t in ("stable-tree", "unstable-tree"))
        # the short form of a row, for a tree narrower still: no "memcmp", no kpfn (the detail has it)
        item = marked[0].data
        step = next(st for st in pilot.app.view.snapshot.last_walk
                    if getattr(st.node, "address", None) == item.address and st.node.process == item.process)
        short = str(row_label(item, step, nid=False, short=True)).strip()
        colour = "R" if item.red else "B"
        assert short == f"{item.side} {colour} {item.process}:{item.address:#x}  ◀ {compared(step.ret)}"

    drive(make_app(), test, (80, 24))
