"""Processes: one row per process with its /proc/PID/ksm_stat, sortable as in top.

The table knows nothing of where its rows come from: the model's processes (`ProcessRow.of`) and
host mode's real /proc/PID/ksm_stat readings fill the same `ProcessRow`s, where None is a field
the kernel does not expose (ksm_stat grew field by field: ksm_rmap_items in 6.1, ksm_zero_pages
in 6.10, ...) and shows as "n/a", never as a number of the model's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from engine.snapshot import ProcessStats

MIB = 1 << 20
# sizeof(struct ksm_rmap_item) on x86-64, as general_profit and ksm_process_profit charge it.
SIZEOF_RMAP_ITEM = 64


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One process's /proc/PID/ksm_stat; None: the kernel does not expose that field."""

    pid: int
    comm: str
    ksm_merge_any: bool | None = None
    ksm_mergeable: bool | None = None
    ksm_rmap_items: int | None = None
    ksm_merging_pages: int | None = None
    ksm_zero_pages: int | None = None
    ksm_process_profit: int | None = None  # bytes

    @classmethod
    def of(cls, p: ProcessStats) -> ProcessRow:
        return cls(p.pid, p.name, p.ksm_merge_any, p.ksm_mergeable, p.ksm_rmap_items,
                   p.ksm_merging_pages, p.ksm_zero_pages, p.ksm_process_profit)


def rmap_ratio(row: ProcessRow) -> float | None:
    """ksm_rmap_items per ksm_merging_page (inf: rmap_items and nothing merged)."""
    if row.ksm_rmap_items is None or row.ksm_merging_pages is None:
        return None
    if row.ksm_merging_pages == 0:
        return float("inf") if row.ksm_rmap_items else 0.0
    return row.ksm_rmap_items / row.ksm_merging_pages


def _count(v: int | None) -> Text:
    return Text("n/a" if v is None else f"{v:,}", justify="right")


def _flag(v: bool | None) -> Text:
    return Text("n/a" if v is None else "yes" if v else "no")


def _mib(v: int | None) -> Text:
    return Text("n/a" if v is None else f"{v / MIB:,.1f}", justify="right", style="red" if v is not None and v < 0 else "")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    value: Callable[[ProcessRow], Any]  # what it sorts by (None sorts last)
    cell: Callable[[ProcessRow], Text]


class ProcessTable(DataTable):
    """Rows keyed by pid. `<` and `>` pick the sort column, R reverses it (as in top); a click on
    a header sorts by it. The cursor stays on its process across updates, whatever the order."""

    # Not in the footer: the table's legend says them, and the footer keeps its keys as focus moves.
    BINDINGS = [
        Binding("less_than_sign", "sort_column(-1)", "Sort ←", key_display="<", show=False, id="processes.sort_left"),
        Binding("greater_than_sign", "sort_column(1)", "Sort →", key_display=">", show=False,
                id="processes.sort_right"),
        Binding("R", "sort_reverse", "Reverse", show=False, id="processes.sort_reverse"),
    ]

    def __init__(self, page_size: int = 4096, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        # Above page_size / sizeof(rmap_item) rmap_items per merging page, a process's rmap_items
        # cost more memory than its merged pages save (ksm_process_profit turns negative).
        self.ratio_limit = page_size // SIZEOF_RMAP_ITEM
        self.columns_spec = (
            Column("pid", "pid", lambda r: r.pid, lambda r: Text(str(r.pid), justify="right")),
            Column("comm", "comm", lambda r: r.comm, lambda r: Text(r.comm)),
            Column("ksm_rmap_items", "rmap_items", lambda r: r.ksm_rmap_items, lambda r: _count(r.ksm_rmap_items)),
            Column("ksm_merging_pages", "merging_pages", lambda r: r.ksm_merging_pages,
                   lambda r: _count(r.ksm_merging_pages)),
            Column("ksm_zero_pages", "zero_pages", lambda r: r.ksm_zero_pages, lambda r: _count(r.ksm_zero_pages)),
            Column("ksm_process_profit", "profit MiB", lambda r: r.ksm_process_profit,
                   lambda r: _mib(r.ksm_process_profit)),
            Column("ratio", "rmap/merging", rmap_ratio, self._ratio_cell),
            # Last: the numbers come first on a narrow terminal.
            Column("ksm_merge_any", "merge_any", lambda r: r.ksm_merge_any, lambda r: _flag(r.ksm_merge_any)),
            Column("ksm_mergeable", "mergeable", lambda r: r.ksm_mergeable, lambda r: _flag(r.ksm_mergeable)),
        )
        self.sort_index = 5  # ksm_process_profit, biggest first
        self.sort_reverse = True
        self._rows: dict[int, ProcessRow] = {}
        self._order: list[int] = []

    def on_mount(self) -> None:
        for col in self.columns_spec:
            self.add_column(self._header(col), key=col.key)

    def _ratio_cell(self, row: ProcessRow) -> Text:
        ratio = rmap_ratio(row)
        if ratio is None:
            return Text("n/a", justify="right")
        label = "∞" if ratio == float("inf") else f"{ratio:,.1f}"
        if ratio > self.ratio_limit:
            return Text(f"{label} !", justify="right", style="bold red")
        return Text(label, justify="right")

    def _header(self, col: Column) -> Text:
        if self.columns_spec[self.sort_index] is col:
            return Text(col.label + ("▼" if self.sort_reverse else "▲"), style="bold")
        return Text(col.label)

    # --- the data ---

    def show_rows(self, rows: Iterable[ProcessRow]) -> None:
        """Show these processes (any not among them has gone), sorted, the cursor on its pid."""
        self._rows = {r.pid: r for r in rows}
        self._refill()

    def _sorted(self) -> list[int]:
        value = self.columns_spec[self.sort_index].value
        rows = sorted(self._rows.values(), key=lambda r: r.pid)
        known = [r for r in rows if value(r) is not None]
        # A stable sort (reverse too): equal rows stay in pid order from one update to the next.
        known.sort(key=value, reverse=self.sort_reverse)
        return [r.pid for r in known] + [r.pid for r in rows if value(r) is None]

    def _refill(self, headers: bool = False) -> None:
        if not self.columns:
            return  # not mounted yet: on_mount adds the columns, the next update the rows
        order = self._sorted()
        if order == self._order and not headers:
            for pid in order:  # same rows in the same order: only the cells that changed
                row = self._rows[pid]
                for col in self.columns_spec:
                    cell = col.cell(row)
                    if self.get_cell(str(pid), col.key) != cell:
                        self.update_cell(str(pid), col.key, cell)
            return
        at = self._order[self.cursor_row] if self._order and 0 <= self.cursor_row < len(self._order) else None
        row_index = self.cursor_row
        scroll_y = self.scroll_y
        self.clear(columns=headers)
        if headers:
            for col in self.columns_spec:
                self.add_column(self._header(col), key=col.key)
        for pid in order:
            row = self._rows[pid]
            self.add_row(*(col.cell(row) for col in self.columns_spec), key=str(pid))
        self._order = order
        if order:
            self.scroll_y = scroll_y
            self.move_cursor(row=order.index(at) if at in order else min(row_index, len(order) - 1), animate=False)

    @property
    def cursor_pid(self) -> int | None:
        return self._order[self.cursor_row] if 0 <= self.cursor_row < len(self._order) else None

    # --- sorting ---

    def action_sort_column(self, step: int) -> None:
        self.sort_index = (self.sort_index + step) % len(self.columns_spec)
        self._refill(headers=True)

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._refill(headers=True)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        index = [c.key for c in self.columns_spec].index(str(event.column_key.value))
        if index == self.sort_index:
            self.sort_reverse = not self.sort_reverse
        self.sort_index = index
        self._refill(headers=True)
