"""Host mode's grouped Processes view: one row per VM, container, systemd unit, cgroup or comm with
the totals of its processes (ksmtui.host.units.group_totals); Enter posts the group picked.

A DataTable: groups are few (a host's VMs, containers, units), unlike the processes, whose own
table draws line by line. It fits the terminal: "unreadable" only when a process's ksm_stat could
not be read (never as root), and a group name too long for what the numbers leave is cut at a word
or a path's "/" with "…"."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ksmtui.text.units import MIB

COLUMNS = ("group", "processes", "rmap_items", "merging_pages", "zero_pages", "profit MiB", "unreadable")
LEAST_NAME = 12  # the name's column is never narrower than this (the table scrolls instead)


def group_cells(name: str, g: dict) -> tuple:
    """A group's row: its name (already escaped: group_key) and totals, the numbers right-aligned."""
    profit = g["ksm_process_profit"]
    numbers = (f"{len(g['processes']):,}", f"{g['ksm_rmap_items']:,}", f"{g['ksm_merging_pages']:,}",
               f"{g['ksm_zero_pages']:,}", f"{profit / MIB:,.1f}", f"{g['unreadable']:,}")
    return (Text(name), *(Text(n, justify="right", style="red" if i == 4 and profit < 0 else "")
                          for i, n in enumerate(numbers)))


def clip_name(name: str, room: int) -> str:
    """name in `room` columns: whole, or up to its last space or "/" that leaves room for "…"."""
    if len(name) <= room:
        return name
    cut = max(name.rfind(" ", 0, room), name.rfind("/", 0, room - 1) + 1)
    return (name[:cut].rstrip() if cut > 0 else "") + "…"


class GroupTable(DataTable):
    """Groups, the biggest profit first (then by name); the cursor stays on its group across updates."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._names: list[str] = []
        self._plain: list[tuple[str, ...]] = []  # the rows' texts, to tell an update that changes nothing
        self._totals: dict[str, dict] = {}
        self._layout: tuple = ()  # the columns and the name's width the rows were laid out for

    @property
    def cursor_group(self) -> str | None:
        return self._names[self.cursor_row] if 0 <= self.cursor_row < len(self._names) else None

    def on_resize(self) -> None:
        self.show_groups(self._totals)

    def show_groups(self, totals: dict[str, dict]) -> None:
        self._totals = totals
        names = sorted(totals, key=lambda name: (-totals[name]["ksm_process_profit"], name))
        rows = [group_cells(name, totals[name]) for name in names]
        columns = COLUMNS if any(totals[n]["unreadable"] for n in names) else COLUMNS[:-1]
        rows = [row[: len(columns)] for row in rows]
        # what the numbers leave of the width (each cell has a space either side) is the name's
        numbers = sum(max([len(c), *(len(str(r[i])) for r in rows)]) + 2 for i, c in enumerate(columns) if i)
        room = max(LEAST_NAME, self.size.width - numbers - 2 - 1) if self.size.width else 10**6
        rows = [(Text(clip_name(str(row[0]), room)), *row[1:]) for row in rows]
        plain = [tuple(str(cell) for cell in row) for row in rows]
        if plain == self._plain and self._layout == (columns, room):
            return
        at = self.cursor_group
        self._names, self._plain = names, plain
        if self._layout != (columns, room):  # a column keeps the width of its widest cell ever: anew
            self.clear(columns=True)
            self.add_columns(*columns)
        self._layout = (columns, room)
        self.clear()
        for name, row in zip(names, rows, strict=True):
            self.add_row(*row, key=name)
        if at in names:
            self.move_cursor(row=names.index(at), animate=False)
