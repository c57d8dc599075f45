"""Host mode's grouped Processes view: one row per VM, container, systemd unit, cgroup or comm with
the totals of its processes (ksmtui.host.units.group_totals); Enter posts the group picked.

A DataTable: groups are few (a host's VMs, containers, units), unlike the processes, whose own
table draws line by line."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ksmtui.text.units import MIB

COLUMNS = ("group", "processes", "rmap_items", "merging_pages", "zero_pages", "profit MiB", "unreadable")


def group_cells(name: str, g: dict) -> tuple:
    """A group's row: its name (already escaped: group_key) and totals, the numbers right-aligned."""
    profit = g["ksm_process_profit"]
    numbers = (f"{len(g['processes']):,}", f"{g['ksm_rmap_items']:,}", f"{g['ksm_merging_pages']:,}",
               f"{g['ksm_zero_pages']:,}", f"{profit / MIB:,.1f}", f"{g['unreadable']:,}")
    return (Text(name), *(Text(n, justify="right", style="red" if i == 4 and profit < 0 else "")
                          for i, n in enumerate(numbers)))


class GroupTable(DataTable):
    """Groups, the biggest profit first (then by name); the cursor stays on its group across updates."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._names: list[str] = []
        self._plain: list[tuple[str, ...]] = []  # the rows' texts, to tell an update that changes nothing

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    @property
    def cursor_group(self) -> str | None:
        return self._names[self.cursor_row] if 0 <= self.cursor_row < len(self._names) else None

    def show_groups(self, totals: dict[str, dict]) -> None:
        names = sorted(totals, key=lambda name: (-totals[name]["ksm_process_profit"], name))
        rows = [group_cells(name, totals[name]) for name in names]
        plain = [tuple(str(cell) for cell in row) for row in rows]
        if plain == self._plain:
            return
        at = self.cursor_group
        self._names, self._plain = names, plain
        self.clear()
        for name, row in zip(names, rows, strict=True):
            self.add_row(*row, key=name)
        if at in names:
            self.move_cursor(row=names.index(at), animate=False)
