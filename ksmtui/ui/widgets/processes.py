"""The Processes table, as in top: one row per process, keyed by pid, sortable by any column
(< and > move the sort column, R reverses it, a click on a header sorts by it), scrollable, rows
appearing and vanishing as processes start and exit. Rows are dicts keyed by /proc/PID/ksm_stat's
field names (plus "comm"); the columns say how to show and how to order them.

    table = ProcessesTable(KSM_STAT_COLUMNS, sort="ksm_process_profit")
    table.show_rows({"1234": {"comm": "qemu", "ksm_rmap_items": 10, ...}, ...})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

MIB = 1 << 20


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    cell: Callable[[str, Mapping], str | Text]  # (pid, row) -> what the cell shows
    order: Callable[[str, Mapping], object]  # (pid, row) -> the sort key (numbers, then strings)
    right: bool = True


def _field(name: str) -> Column:
    return Column(name, name.removeprefix("ksm_"), lambda pid, r: f"{r[name]:,}" if name in r else "-",
                  lambda pid, r: r.get(name, -1))


def _flag(name: str, label: str) -> Column:
    return Column(name, label, lambda pid, r: r.get(name, "-"), lambda pid, r: r.get(name, ""), right=False)


def _ratio(row: Mapping) -> float | None:
    merging = row.get("ksm_merging_pages")
    return row.get("ksm_rmap_items", 0) / merging if merging else None


def _ratio_cell(pid: str, row: Mapping) -> str | Text:
    ratio = _ratio(row)
    if ratio is None:
        return "-"
    # ksm.rst: above 64 rmap_items per merging page the process costs KSM more than it saves
    return Text(f"{ratio:,.1f} !", style="bold red") if ratio > 64 else f"{ratio:,.1f}"


KSM_STAT_COLUMNS: tuple[Column, ...] = (
    Column("pid", "pid", lambda pid, r: pid, lambda pid, r: int(pid)),
    Column("comm", "comm", lambda pid, r: r.get("comm", ""), lambda pid, r: r.get("comm", ""), right=False),
    _flag("ksm_merge_any", "merge_any"),
    _flag("ksm_mergeable", "mergeable"),
    _field("ksm_rmap_items"),
    _field("ksm_merging_pages"),
    _field("ksm_zero_pages"),
    Column("ksm_process_profit", "profit MiB",
           lambda pid, r: f"{r['ksm_process_profit'] / MIB:,.2f}" if "ksm_process_profit" in r else "-",
           lambda pid, r: r.get("ksm_process_profit", -(1 << 62))),
    Column("ratio", "rmap/merging", _ratio_cell, lambda pid, r: _ratio(r) or -1.0),
    Column("error", "note", lambda pid, r: r.get("error", ""), lambda pid, r: r.get("error", ""), right=False),
)


class ProcessesTable(DataTable):
    """Rows of processes by pid; `show_rows` replaces them all (updates cells in place)."""

    BINDINGS = [
        Binding("less_than_sign", "sort_column(-1)", "Sort ◀", key_display="<"),
        Binding("greater_than_sign", "sort_column(1)", "Sort ▶", key_display=">"),
        Binding("R", "reverse", "Reverse", key_display="R"),
    ]

    class Picked(Message):
        """Enter on a row: the user wants that process's details."""

        def __init__(self, pid: str) -> None:
            super().__init__()
            self.pid = pid

    def __init__(self, columns: Sequence[Column], sort: str, reverse: bool = True, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._columns = {c.key: c for c in columns}
        self.sort_key = sort
        self.reverse = reverse  # as top: largest first
        self._rows: dict[str, Mapping] = {}

    def on_mount(self) -> None:
        for c in self._columns.values():
            self.add_column(self._label(c), key=c.key)

    def _label(self, c: Column) -> Text:
        mark = (" ▼" if self.reverse else " ▲") if c.key == self.sort_key else ""
        return Text(c.label + mark, style="bold" if mark else "", justify="right" if c.right else "left")

    def _cell(self, c: Column, pid: str, row: Mapping) -> Text:
        value = c.cell(pid, row)
        text = value if isinstance(value, Text) else Text(value)
        text.justify = "right" if c.right else "left"
        return text

    @property
    def selected_pid(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def show_rows(self, rows: Mapping[str, Mapping]) -> None:
        selected = self.selected_pid
        for pid in [p for p in self._rows if p not in rows]:
            self.remove_row(pid)
        for pid, row in rows.items():
            if pid not in self._rows:
                self.add_row(*(self._cell(c, pid, row) for c in self._columns.values()), key=pid)
            elif row != self._rows[pid]:
                for c in self._columns.values():
                    self.update_cell(pid, c.key, self._cell(c, pid, row))
        self._rows = dict(rows)
        self._sort(selected)

    def _sort(self, selected: str | None) -> None:
        if not self._rows:
            return
        column = self._columns[self.sort_key]
        order = {pid: column.order(pid, row) for pid, row in self._rows.items()}
        # Ties in pid order, so the same rows always show in the same order.
        ranked = sorted(self._rows, key=lambda pid: (order[pid], -int(pid) if self.reverse else int(pid)),
                        reverse=self.reverse)
        rank = {pid: i for i, pid in enumerate(ranked)}
        self.sort("pid", key=lambda cell: rank[cell.plain])
        if selected in self._rows:
            self.move_cursor(row=self.get_row_index(selected), animate=False, scroll=False)

    def sort_by(self, key: str, reverse: bool | None = None) -> None:
        self.sort_key = key
        if reverse is not None:
            self.reverse = reverse
        for c in self._columns.values():
            self.columns[c.key].label = self._label(c)  # type: ignore[index]
        self.refresh()
        self._sort(self.selected_pid)

    def action_sort_column(self, step: int) -> None:
        keys = list(self._columns)
        self.sort_by(keys[(keys.index(self.sort_key) + step) % len(keys)])

    def action_reverse(self) -> None:
        self.sort_by(self.sort_key, not self.reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value
        self.sort_by(key, not self.reverse if key == self.sort_key else True)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.Picked(event.row_key.value))
