"""Processes: one row per process with its /proc/PID/ksm_stat, sortable as in top.

The table knows nothing of where its rows come from: the model's processes (`ProcessRow.of`) and
host mode's real /proc/PID/ksm_stat readings fill the same `ProcessRow`s, where None is a field
the kernel does not expose (ksm_stat grew field by field: ksm_rmap_items in 6.1, ksm_zero_pages
in 6.10, ...) and shows as "n/a", never as a number of the model's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.snapshot import ProcessStats
from ksmtui.text.units import MIB

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
    unit: str | None = None  # host mode: the VM, container, unit and cgroup (Unit.describe); None: not recorded

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


Cell = tuple[str, Style | None]  # the text and its own style (red: a loss), over the row's
RED = Style(color="red")
ALERT = Style(color="red", bold=True)


def clip(text: str, room: int) -> str:
    """text in `room` columns: whole, or up to its last space that leaves room for "…" (a word is
    left out, never cut)."""
    if len(text) <= room:
        return text
    cut = text.rfind(" ", 0, room)
    return (text[:cut].rstrip(" ·") if cut > 0 else "") + "…"


def _count(v: int | None) -> Cell:
    return ("n/a" if v is None else f"{v:,}"), None


def _flag(v: bool | None) -> Cell:
    return ("n/a" if v is None else "yes" if v else "no"), None


def _mib(v: int | None) -> Cell:
    return ("n/a" if v is None else f"{v / MIB:,.1f}"), RED if v is not None and v < 0 else None


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    value: Callable[[ProcessRow], Any]  # what it sorts by (None sorts last)
    cell: Callable[[ProcessRow], Cell]
    right: bool = True  # numbers align right


class ProcessTable(ScrollView, can_focus=True):
    """Rows keyed by pid. `<` and `>` pick the sort column, R reverses it (as in top); a click on
    a header sorts by it; Enter (or a click on the cursor's row) posts Selected. The cursor stays
    on its process across updates, whatever the order.

    Drawn line by line (Textual's Line API) from cells formatted once per changed row: only the
    rows on screen are drawn, and an update that changes nothing draws nothing. (A DataTable
    renders every cell through Rich again after any update: 40 ms for 32 rows.)"""

    COMPONENT_CLASSES = {"processes--header", "processes--cursor", "processes--even-row"}
    DEFAULT_CSS = """
    ProcessTable { background: $surface; color: $foreground; }
    ProcessTable > .processes--header { text-style: bold; background: $panel; color: $foreground; }
    ProcessTable > .processes--even-row { background: $surface-lighten-1 50%; }
    ProcessTable > .processes--cursor {
        background: $block-cursor-blurred-background;
        color: $block-cursor-blurred-foreground;
        text-style: $block-cursor-blurred-text-style;
    }
    ProcessTable:focus > .processes--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    """

    # Not in the footer: the table's legend says them, and the footer keeps its keys as focus moves.
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "cursor_page(-1)", "Page up", show=False),
        Binding("pagedown", "cursor_page(1)", "Page down", show=False),
        Binding("home", "cursor_to(0)", "First", show=False),
        Binding("end", "cursor_to(-1)", "Last", show=False),
        Binding("enter", "select", "Select", show=False),
        Binding("less_than_sign", "sort_column(-1)", "Sort ←", key_display="<", show=False, id="processes.sort_left"),
        Binding("greater_than_sign", "sort_column(1)", "Sort →", key_display=">", show=False,
                id="processes.sort_right"),
        Binding("R", "sort_reverse", "Reverse", show=False, id="processes.sort_reverse"),
    ]

    cursor_row = reactive(0, layout=False, always_update=False, init=False)

    class Selected(Message):
        """Enter on a row, or a click on the cursor's row."""

        def __init__(self, pid: int) -> None:
            super().__init__()
            self.pid = pid

    def __init__(self, page_size: int = 4096, units: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        # Above page_size / sizeof(rmap_item) rmap_items per merging page, a process's rmap_items
        # cost more memory than its merged pages save (ksm_process_profit turns negative).
        self.ratio_limit = page_size // SIZEOF_RMAP_ITEM
        self.columns_spec = (
            Column("pid", "pid", lambda r: r.pid, lambda r: (str(r.pid), None)),
            Column("comm", "comm", lambda r: r.comm, lambda r: (r.comm, None), right=False),
            Column("ksm_rmap_items", "rmap_items", lambda r: r.ksm_rmap_items, lambda r: _count(r.ksm_rmap_items)),
            Column("ksm_merging_pages", "merging_pages", lambda r: r.ksm_merging_pages,
                   lambda r: _count(r.ksm_merging_pages)),
            Column("ksm_zero_pages", "zero_pages", lambda r: r.ksm_zero_pages, lambda r: _count(r.ksm_zero_pages)),
            Column("ksm_process_profit", "profit MiB", lambda r: r.ksm_process_profit,
                   lambda r: _mib(r.ksm_process_profit)),
            Column("ratio", "rmap/merging", rmap_ratio, self._ratio_cell),
            # Last: the numbers come first on a narrow terminal.
            Column("ksm_merge_any", "merge_any", lambda r: r.ksm_merge_any, lambda r: _flag(r.ksm_merge_any),
                   right=False),
            Column("ksm_mergeable", "mergeable", lambda r: r.ksm_mergeable, lambda r: _flag(r.ksm_mergeable),
                   right=False),
        ) + ((Column("unit", "belongs to", lambda r: r.unit,
                     lambda r: ("-" if r.unit is None else r.unit, None), right=False),) if units else ())
        self.sort_index = 5  # ksm_process_profit, biggest first
        self.sort_reverse = True
        self._rows: dict[int, ProcessRow] = {}
        self._cells: dict[int, tuple[ProcessRow, tuple[Cell, ...]]] = {}  # by pid: the row they are of
        self._order: list[int] = []
        self._scroll_tries = 0  # looks again after a refresh (_scroll_to_cursor)
        self._widths: list[int] = []

    def on_mount(self) -> None:
        self._refill()  # the header, before (or without) any row

    def _ratio_cell(self, row: ProcessRow) -> Cell:
        ratio = rmap_ratio(row)
        if ratio is None:
            return "n/a", None
        if not row.ksm_merging_pages and not row.ksm_rmap_items:
            return "-", None  # nothing scanned and nothing merging: no ratio to speak of
        label = "∞" if ratio == float("inf") else f"{ratio:,.1f}"
        if ratio > self.ratio_limit:
            return f"{label} !", ALERT
        return label, None

    def header(self) -> list[str]:
        """The column labels, the sort column's with its arrow."""
        arrow = "▼" if self.sort_reverse else "▲"
        return [c.label + arrow * (i == self.sort_index) for i, c in enumerate(self.columns_spec)]

    # --- the data ---

    @property
    def row_count(self) -> int:
        return len(self._order)

    def row_cells(self, index: int) -> list[str]:
        """The texts of the index-th row shown."""
        return [text for text, _ in self._cells[self._order[index]][1]]

    @property
    def cursor_pid(self) -> int | None:
        return self._order[self.cursor_row] if 0 <= self.cursor_row < len(self._order) else None

    def show_rows(self, rows: Iterable[ProcessRow]) -> None:
        """Show these processes (any not among them has gone), sorted, the cursor on its pid."""
        new = {r.pid: r for r in rows}
        if new == self._rows:
            return
        self._rows = new
        self._refill()

    def _sorted(self) -> list[int]:
        value = self.columns_spec[self.sort_index].value
        rows = sorted(self._rows.values(), key=lambda r: r.pid)
        known = [r for r in rows if value(r) is not None]
        # A stable sort (reverse too): equal rows stay in pid order from one update to the next.
        known.sort(key=value, reverse=self.sort_reverse)
        return [r.pid for r in known] + [r.pid for r in rows if value(r) is None]

    def _refill(self) -> None:
        at = self.cursor_pid
        old = self._cells
        self._cells = {}
        for pid, row in self._rows.items():
            kept = old.get(pid)
            self._cells[pid] = kept if kept is not None and kept[0] == row else (
                row, tuple(col.cell(row) for col in self.columns_spec))
        self._widths = [len(label) for label in self.header()]
        for _, cells in self._cells.values():
            self._widths = [max(w, len(text)) for w, (text, _) in zip(self._widths, cells, strict=False)]
        order = self._sorted()
        self._order = order
        self.virtual_size = Size(sum(w + 2 for w in self._widths), len(order) + 1)
        self._set_cursor(order.index(at) if at in order else self.cursor_row)
        self.refresh()

    # --- drawing ---

    def _starts(self) -> list[int]:
        """Where each column starts in the table's full width (a cell is its width plus a space each side)."""
        starts, x = [], 0
        for w in self._widths:
            starts.append(x)
            x += w + 2
        return starts

    def shown_columns(self) -> tuple[list[int], int | None]:
        """The columns on screen at the horizontal scroll: whole ones, from the first that starts at or
        after scroll_x, and the room left for a text column (left-aligned, the last one: what a
        process belongs to) that does not fit whole, else None. A number is never shown in part."""
        width = self.scrollable_content_region.width
        starts = self._starts()
        first = next((i for i, x in enumerate(starts) if x >= int(self.scroll_x)), len(starts) - 1)
        whole: list[int] = []
        room = width
        for i in range(first, len(starts)):
            if self._widths[i] + 2 > room:
                rest = room - 2
                last_text = i == len(starts) - 1 and not self.columns_spec[i].right
                return whole, rest if last_text and rest >= len(self.header()[i]) else None
            whole.append(i)
            room -= self._widths[i] + 2
        return whole, None

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if y == 0:
            base = self.get_component_rich_style("processes--header")
            texts: list[Cell] = [(label, None) for label in self.header()]
        else:
            index = int(self.scroll_y) + y - 1
            if index >= len(self._order):
                return Strip.blank(width, self.rich_style)
            texts = list(self._cells[self._order[index]][1])
            base = (self.get_component_rich_style("processes--cursor") if index == self.cursor_row
                    else self.get_component_rich_style("processes--even-row") if index % 2
                    else self.rich_style)
        whole, room = self.shown_columns()
        segments = []
        for i in whole:
            col, w, (text, style) = self.columns_spec[i], self._widths[i], texts[i]
            cell = f" {text:>{w}} " if col.right else f" {text:<{w}} "
            segments.append(Segment(cell, base + style if style else base))
        if room is not None:  # the last column, text, in part: up to a whole word
            text, style = texts[-1]
            segments.append(Segment(f" {clip(text, room)} ", base + style if style else base))
        return Strip(segments).crop(0, width).extend_cell_length(width, base)

    def action_scroll_right(self) -> None:
        """A column further right, whole (Right scrolls by columns: a cell is never shown in part)."""
        starts = self._starts()
        now = next((i for i, x in enumerate(starts) if x >= int(self.scroll_x)), len(starts) - 1)
        if self.shown_columns()[0][-1:] != [len(starts) - 1]:  # the last column not yet on screen
            self.scroll_to(x=starts[min(now + 1, len(starts) - 1)], animate=False, immediate=True)

    def action_scroll_left(self) -> None:
        starts = self._starts()
        now = next((i for i, x in enumerate(starts) if x >= int(self.scroll_x)), len(starts) - 1)
        self.scroll_to(x=starts[max(now - 1, 0)], animate=False, immediate=True)

    def watch_cursor_row(self) -> None:
        self.refresh()

    # --- the cursor ---

    def _set_cursor(self, row: int) -> None:
        if not self._order:
            self.cursor_row = 0
            return
        self.cursor_row = max(0, min(len(self._order) - 1, row))
        self._scroll_to_cursor()

    def _scroll_to_cursor(self) -> None:
        row = self.cursor_row
        shown = max(1, self.scrollable_content_region.height - 1)  # rows under the header
        top = int(self.scroll_y)
        target = row if row < top else row - shown + 1 if row >= top + shown else None
        if target is None:
            self._scroll_tries = 0
            return
        self.scroll_to(y=target, animate=False, immediate=True)
        # Rows just added, or the scrollbar they bring, are laid out on the next refresh, which can
        # clamp or undo this scroll: look again then (a few times at most).
        if int(self.scroll_y) != target or self._scroll_tries == 0:
            if self._scroll_tries < 3:
                self._scroll_tries += 1
                self.call_after_refresh(self._scroll_to_cursor)
                return
        self._scroll_tries = 0

    def action_cursor(self, step: int) -> None:
        self._set_cursor(self.cursor_row + step)

    def action_cursor_page(self, direction: int) -> None:
        self._set_cursor(self.cursor_row + direction * max(1, self.scrollable_content_region.height - 1))

    def action_cursor_to(self, row: int) -> None:
        self._set_cursor(row if row >= 0 else len(self._order) - 1)

    def action_select(self) -> None:
        if self.cursor_pid is not None:
            self.post_message(self.Selected(self.cursor_pid))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:  # a header: sort by it (again: reverse)
            x = offset.x
            whole, room = self.shown_columns()
            for index in whole + ([len(self._widths) - 1] if room is not None else []):
                if x < self._widths[index] + 2:
                    self.sort_by(index)
                    return
                x -= self._widths[index] + 2
            return
        row = int(self.scroll_y) + offset.y - 1
        if row < len(self._order):
            if row == self.cursor_row:
                self.action_select()
            self._set_cursor(row)

    # --- sorting ---

    def sort_by(self, index: int) -> None:
        if index == self.sort_index:
            self.sort_reverse = not self.sort_reverse
        self.sort_index = index
        self._refill()

    def action_sort_column(self, step: int) -> None:
        self.sort_index = (self.sort_index + step) % len(self.columns_spec)
        self._refill()

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._refill()
