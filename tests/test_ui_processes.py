"""The Processes table: rows keyed by pid, sorted as in top, the cursor kept on its process."""

from __future__ import annotations

import re

from textual.app import App, ComposeResult

from ksmtui.ui.widgets.processes import ProcessRow, ProcessTable
from tests.ui_helpers import batches, drive, make_app, press, wait_for


class TableApp(App[None]):
    selected: list[int]

    def compose(self) -> ComposeResult:
        self.selected = []
        yield ProcessTable()

    def on_process_table_selected(self, event: ProcessTable.Selected) -> None:
        self.selected.append(event.pid)


def row(pid: int, comm: str, rmap: int | None, merging: int | None, profit: int | None = 0) -> ProcessRow:
    return ProcessRow(pid, comm, False, True, rmap, merging, 0, profit)


def on_table(test) -> None:
    """drive() a TableApp, its table focused: `await test(pilot, table)`."""

    async def focused(pilot) -> None:
        table = pilot.app.query_one(ProcessTable)
        table.focus()
        await pilot.pause()
        await test(pilot, table)

    drive(TableApp(), focused, (120, 20))


def cells(table: ProcessTable, column: int) -> list[str]:
    return [table.row_cells(r)[column] for r in range(table.row_count)]


def test_rows_sort_by_profit_first_and_the_keys_of_top_pick_and_reverse_the_column():
    async def test(pilot, table):
        assert table.row_count == 0 and table.render_line(0).text.split() == " ".join(table.header()).split()  # no rows
        table.show_rows([row(10, "a", 5, 1, 100), row(20, "b", 9, 9, 300), row(30, "c", 1, 1, 200)])
        assert cells(table, 0) == ["20", "30", "10"]  # ksm_process_profit, biggest first
        await pilot.press("less_than_sign")  # the column left of profit: zero_pages, all equal: pid order
        assert table.columns_spec[table.sort_index].key == "ksm_zero_pages"
        assert cells(table, 0) == ["10", "20", "30"]
        await pilot.press("less_than_sign")  # merging_pages
        assert cells(table, 0) == ["20", "10", "30"]
        await pilot.press("R")
        assert cells(table, 0) == ["10", "30", "20"]
        assert table.header()[3] == "merging_pages▲"

    on_table(test)


def test_the_cursor_stays_on_its_process_as_rows_move_appear_and_vanish():
    async def test(pilot, table):
        table.show_rows([row(10, "a", 1, 1, 100), row(20, "b", 1, 1, 300), row(30, "c", 1, 1, 200)])
        await pilot.press("down")
        assert table.cursor_pid == 30
        table.show_rows([row(10, "a", 1, 1, 900), row(20, "b", 1, 1, 300), row(30, "c", 1, 1, 200),
                         row(40, "d", 1, 1, 250)])
        assert cells(table, 0) == ["10", "20", "40", "30"] and table.cursor_pid == 30
        table.show_rows([row(10, "a", 1, 1, 900), row(20, "b", 1, 1, 300)])  # 30 exits: the row below it
        assert cells(table, 0) == ["10", "20"] and table.cursor_pid == 20

    on_table(test)


def test_what_the_kernel_does_not_expose_says_so_and_a_costly_ratio_is_flagged():
    async def test(pilot, table):
        table.show_rows([row(10, "old", None, None, None), row(20, "costly", 130, 2, -4096), row(30, "fine", 64, 1)])
        by_pid = {cells(table, 0)[r]: table.row_cells(r) for r in range(table.row_count)}
        assert by_pid["10"][2] == "n/a" and by_pid["10"][5] == "n/a" and by_pid["10"][6] == "n/a"
        assert by_pid["20"][6] == "65.0 !"  # above 4096 / 64 rmap_items per merging page
        assert by_pid["30"][6] == "64.0"
        assert cells(table, 0)[-1] == "10"  # unknown sorts last

    on_table(test)


def test_the_processes_tab_shows_each_simulated_process_and_takes_the_sort_keys():
    async def test(pilot):
        await batches(pilot, 8)
        await press(pilot, "6")
        table = pilot.app.query_one(ProcessTable)
        assert pilot.app.focused is table
        procs = {p.pid: p for p in pilot.app.view.snapshot.processes}
        assert sorted(table._order) == sorted(procs)
        first = table.row_cells(0)
        p = procs[int(str(first[0]))]
        assert str(first[1]) == p.name and str(first[2]) == f"{p.ksm_rmap_items:,}"
        assert str(first[3]) == f"{p.ksm_merging_pages:,}"
        await press(pilot, "greater_than_sign")  # from profit to the ratio
        assert table.columns_spec[table.sort_index].key == "ratio"

    drive(make_app(), test)


def test_the_cursor_scrolls_into_view_a_click_on_a_header_sorts_and_enter_selects():
    async def test(pilot, table):
        table.show_rows([row(pid, f"p{pid}", 1, 1, pid) for pid in range(1, 101)])
        assert table.cursor_pid == 100 and table.scroll_y == 0  # profit, biggest first
        await pilot.press("end")
        assert table.cursor_pid == 1
        # the last row at the bottom, once the table has scrolled (on its next refresh)
        await wait_for(pilot, lambda: table.scroll_y == 100 + 1 - 20, "the table scrolled to the last row", 10)
        await pilot.press("enter")
        assert pilot.app.selected == [1]
        await pilot.click(ProcessTable, offset=(2, 0))  # the pid column's header
        assert table.columns_spec[table.sort_index].key == "pid" and table.header()[0] == "pid▼"
        assert cells(table, 0)[:2] == ["100", "99"] and table.cursor_pid == 1
        await pilot.click(ProcessTable, offset=(2, 0))  # again: the other way
        assert cells(table, 0)[:2] == ["1", "2"] and table.cursor_pid == 1 and table.scroll_y == 0

    on_table(test)


def test_reached_from_the_tab_strip_the_table_has_the_focus_and_right_scrolls_its_columns():
    """At 80 columns the table is wider than the screen: arriving on Processes by the tab strip's
    arrows (or a click), one key (Right) scrolls it, instead of Tab first and then Right."""
    from textual.widgets import Tabs

    async def test(pilot):
        await batches(pilot, 2)
        pilot.app.query_one(Tabs).focus()
        await press(pilot, "left")  # from Overview, wrapping round to the last tab: Processes
        table = pilot.app.query_one(ProcessTable)
        assert pilot.app.query_one("TabbedContent").active == "processes" and pilot.app.focused is table
        assert table.max_scroll_x > 0  # merge_any and mergeable do not fit
        await press(pilot, "right")
        assert pilot.app.query_one("TabbedContent").active == "processes" and table.scroll_x > 0

    drive(make_app(), test, (80, 24))



def test_at_80_columns_only_whole_columns_show_and_right_moves_a_column_at_a_time():
    """The table is wider than 80 columns: it shows the columns that fit whole (a header cut to
    "rmap/me" read as another word), and Right brings the next one in, to the last."""
    from tests.ui_helpers import screen_text

    async def test(pilot):
        await batches(pilot, 2)
        await press(pilot, "6")
        table = pilot.app.query_one(ProcessTable)
        labels = table.header()

        def header_on_screen() -> list[str]:
            lines = screen_text(pilot.app).split("\n")
            legend = next(i for i, line in enumerate(lines) if "! above" in line)
            return re.split(r" {2,}", lines[legend + 1].strip("│ "))  # cells are 2 spaces apart at least

        seen = header_on_screen()
        assert seen == labels[: len(seen)] and len(seen) < len(labels)  # whole, and not all of them
        for _ in range(len(labels)):
            await press(pilot, "right")
            shown = header_on_screen()
            assert shown == labels[labels.index(shown[0]):][: len(shown)]
        assert shown[-1] == "mergeable"
        await press(pilot, "left")
        assert header_on_screen()[0] == labels[labels.index(shown[0]) - 1]  # a column back

    drive(make_app(), test, (80, 24))


def test_a_long_text_in_the_last_column_is_cut_at_a_word_and_says_so():
    class UnitsApp(App[None]):
        def compose(self) -> ComposeResult:
            yield ProcessTable(units=True)

    async def test(pilot):
        table = pilot.app.query_one(ProcessTable)
        unit = "vm guest-one · unit machine-qemu.scope · cgroup /machine.slice/machine-qemu.scope"
        table.show_rows([ProcessRow(7, "qemu", True, True, 10, 5, 0, 4096, unit)])
        await pilot.pause()
        whole, room = table.shown_columns()
        assert whole == list(range(len(table.columns_spec) - 1)) and room is not None and room < len(unit)
        line = "".join(seg.text for seg in table.render_line(1))
        shown = line.rstrip()[line.index("vm guest-one"):]
        assert shown.endswith("…") and unit.startswith(shown[:-1]) and unit[len(shown) - 1] == " "

    drive(UnitsApp(), test, (140, 10))
