"""`ksmtui sweep --ui`: a sweep's runs in the terminal, once they are done.

Above, one point per setting (knobs, flow, controller; its seeds are one option) at its mean ksmd
CPU and mean saving (general_profit), a ┊ from the lowest to the highest saving of its seeds, the
Pareto front marked; both axes start at 0, so that a few per cent look like a few per cent. Below,
one row per setting with its mean saving over time, every row on the same time and saving scales so
that rows compare at a glance. The highlighted row is the highlighted point. The renderers are pure
functions of the sweep's JSON document (ksmtui/sweep/run.py); the app only lays them out.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from ksmtui.sweep.run import mark_front
from ksmtui.text.units import MIB

BLOCKS = "▁▂▃▄▅▆▇█"
POINT, FRONT, SELECTED, SPREAD = "·", "●", "◆", "┊"
_RANK = {" ": 0, SPREAD: 1, POINT: 2, FRONT: 3, SELECTED: 4}
LABEL = 11  # width of the saving labels left of the plot


def front_lines(points: Sequence[tuple], selected: int | None, width: int, height: int) -> list[str]:
    """Saving (up) against ksmd CPU ms (right), both from 0, one cell per point: · a setting, ●
    one on the front, ◆ the selected one, ┊ from the lowest to the highest saving of its seeds;
    where points share a cell the most marked one shows. points: (cpu ms, saving bytes, on the
    front) or (cpu ms, saving bytes, on the front, lowest saving, highest saving)."""
    plot_w, plot_h = max(width - LABEL - 2, 8), max(height - 2, 2)
    grid = [[" "] * plot_w for _ in range(plot_h)]
    xs = [p[0] for p in points]
    ys = [y for p in points for y in (p[1], *p[3:5])]
    # from 0: the saving (general_profit) may be negative, ksmd CPU never is
    x0, x1, y0, y1 = 0.0, max(max(xs), 0.0), min(min(ys), 0), max(max(ys), 0)

    def col(x: float) -> int:
        return round((x - x0) / (x1 - x0) * (plot_w - 1)) if x1 > x0 else 0

    def row(y: float) -> int:
        return plot_h - 1 - round((y - y0) / (y1 - y0) * (plot_h - 1)) if y1 > y0 else plot_h - 1

    def put(r: int, c: int, mark: str) -> None:
        if _RANK[mark] > _RANK[grid[r][c]]:
            grid[r][c] = mark

    for point in points:
        if len(point) == 5:
            for r in range(row(point[4]), row(point[3]) + 1):
                put(r, col(point[0]), SPREAD)
    for i, (x, y, front, *_) in enumerate(points):
        put(row(y), col(x), SELECTED if i == selected else FRONT if front else POINT)
    labels = {0: f"{y1 / MIB:,.2f} MiB", plot_h - 1: f"{y0 / MIB:,.2f} MiB"}
    lines = [f"{labels.get(r, ''):>{LABEL}} │{''.join(cells)}" for r, cells in enumerate(grid)]
    lines.append(f"{'':>{LABEL}} └{'─' * plot_w}")
    left, right = f"{x0:,.1f} ms", f"{x1:,.1f} ms ksmd CPU"
    lines.append(f"{'':>{LABEL}}  {left}{right:>{max(plot_w - len(left), len(right) + 1)}}")
    return lines


def mean_series(series: Sequence[Sequence[Sequence[int]]], end_ms: int, width: int) -> list[list[int]]:
    """The mean saving of several runs (each held after it ended) at the `width` times saving_cells
    samples over 0..end_ms."""
    out, at_index = [], [0] * len(series)
    for k in range(width):
        at = end_ms * k // max(width - 1, 1)
        values = []
        for j, s in enumerate(series):
            while at_index[j] + 1 < len(s) and s[at_index[j] + 1][0] <= at:
                at_index[j] += 1
            values.append(s[at_index[j]][1])
        out.append([at, sum(values) // len(values)])
    return out


def saving_cells(series: Sequence[Sequence[int]], end_ms: int, low: int, high: int, width: int) -> str:
    """A run's saving over 0..end_ms in `width` cells, on the scale low..high shared by all rows:
    each cell the saving at its time (held after the run ended), a block from ▁ (low) to █ (high)."""
    out, i = [], 0
    for k in range(width):
        at = end_ms * k // max(width - 1, 1)
        while i + 1 < len(series) and series[i + 1][0] <= at:
            i += 1
        value = series[i][1]
        out.append(BLOCKS[(value - low) * (len(BLOCKS) - 1) // (high - low)] if high > low else BLOCKS[0])
    return "".join(out)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _range(s: dict | None, scale: float, digits: int) -> str:
    """lowest-highest over the seeds ("" when they all agree)."""
    if s is None or s["min"] == s["max"]:
        return ""
    return f"{s['min'] / scale:,.{digits}f}-{s['max'] / scale:,.{digits}f}"


SORTS = ("grid order", "saving", "ksmd CPU")


class SweepApp(App):
    """The settings of one sweep document (ksmtui sweep's JSON object), a row each."""

    TITLE = "ksmtui sweep"
    BINDINGS = [
        Binding("s", "sort", "Sort"),
        Binding("f", "front_only", "Front only"),
        Binding("q", "quit", "Quit"),
    ]
    CSS = """
    #front { height: 14; padding: 0 1; border: round $primary; }
    #runs { height: 1fr; border: round $primary; }
    """
    SPARK_WIDTH = 24

    def __init__(self, document: dict):
        super().__init__()
        self.document = document
        self.runs = document["runs"]
        self.groups = document.get("groups") or mark_front(self.runs)
        seeds = max(len(g["seeds"]) for g in self.groups)
        self.sub_title = (f"{document['scenario']}: {len(self.runs)} runs, {len(self.groups)} settings"
                          + (f" x up to {seeds} seeds" if seeds > 1 else "") + f", {document['stop']}"
                          + ("" if document["complete"] else " (interrupted)")
                          + (f"; costs: {document['costs']}" if document.get("costs") else ""))
        self.sort, self.front_only = 0, False
        self.shown: list[int] = list(range(len(self.groups)))

    def compose(self) -> ComposeResult:
        yield Static(id="front")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.fill_table()

    def fill_table(self) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        knobs = self.document["knobs"]
        ctl = any("controller" in g for g in self.groups)
        spread = any(len(g["seeds"]) > 1 for g in self.groups)  # the ranges, where there are any
        table.add_columns(*knobs, "flow", *(["controller"] * ctl), "seeds", "front", "mean saving over time",
                          "saving MiB", *(["lowest-highest"] * spread), "t100 ms", "cpu ms",
                          *(["lowest-highest"] * spread), "cpu %")
        end = max(r["series"][-1][0] for r in self.runs)
        curves = [mean_series([self.runs[i]["series"] for i in g["members"]], end, self.SPARK_WIDTH)
                  for g in self.groups]
        low = min(v for r in self.runs for _, v in r["series"])
        high = max(v for r in self.runs for _, v in r["series"])
        key = {1: lambda i: -self.groups[i]["saving"]["mean"], 2: lambda i: self.groups[i]["ksmd_cpu_ms"]["mean"]}
        self.shown = [i for i in range(len(self.groups)) if self.groups[i]["front"] or not self.front_only]
        if self.sort:
            self.shown.sort(key=key[self.sort])
        for i in self.shown:
            g = self.groups[i]
            t100 = g["time_to_100_ms"]
            table.add_row(*(Text(str(g["knobs"][k])) for k in knobs), Text(g["flow"]),
                          *([Text(str(g.get("controller", "-")))] * ctl),
                          Text(str(len(g["seeds"])), justify="right"),
                          Text(FRONT if g["front"] else "", justify="center"),
                          Text(saving_cells(curves[i], end, low, high, self.SPARK_WIDTH)),
                          Text(f"{g['saving']['mean'] / MIB:,.2f}", justify="right"),
                          *([Text(_range(g["saving"], MIB, 2), justify="right")] * spread),
                          Text(_ms(t100 and t100["mean"]), justify="right"),
                          Text(f"{g['ksmd_cpu_ms']['mean']:,.1f}", justify="right"),
                          *([Text(_range(g["ksmd_cpu_ms"], 1, 1), justify="right")] * spread),
                          Text(f"{g['ksmd_cpu_percent']['mean']:.1f}", justify="right"))
        table.border_title = (f"settings by {SORTS[self.sort]}" + (", the front only" if self.front_only else "")
                              + ": mean over the seeds  ↑↓ select")
        self.draw_front()

    def draw_front(self) -> None:
        widget = self.query_one("#front", Static)
        width = widget.content_region.width or self.size.width - 4
        height = widget.content_region.height or 12
        points = [(g["ksmd_cpu_ms"]["mean"], g["saving"]["mean"], g["front"], g["saving"]["min"], g["saving"]["max"])
                  for g in self.groups]
        row = self.query_one(DataTable).cursor_row
        selected = self.shown[row] if 0 <= row < len(self.shown) else None
        lines = front_lines(points, selected, width, height)
        widget.update(Text("\n".join(lines), no_wrap=True))
        widget.border_title = "mean saving vs mean ksmd CPU, from 0  · setting  ● front  ◆ selected  ┊ seeds' range"

    def action_sort(self) -> None:
        self.sort = (self.sort + 1) % len(SORTS)
        self.fill_table()

    def action_front_only(self) -> None:
        self.front_only = not self.front_only
        self.fill_table()

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self.draw_front()

    def on_resize(self) -> None:
        self.call_after_refresh(self.draw_front)


def run_sweep_app(document: dict) -> None:
    SweepApp(document).run()
