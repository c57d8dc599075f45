"""`ksmtui sweep --ui`: a sweep's runs in the terminal, once they are done.

Above, the runs as points of saving (general_profit) against ksmd CPU, the Pareto front marked;
below, one row per run with its saving over time, every row on the same time and saving scales so
that rows compare at a glance. The highlighted row is the highlighted point. The renderers are pure
functions of the sweep's JSON document (ksmtui/sweep/run.py); the app only lays them out.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Footer, Static

from ksmtui.text.units import MIB

BLOCKS = "▁▂▃▄▅▆▇█"
POINT, FRONT, SELECTED = "·", "●", "◆"
_RANK = {" ": 0, POINT: 1, FRONT: 2, SELECTED: 3}
LABEL = 11  # width of the saving labels left of the plot


def front_lines(points: Sequence[tuple[float, int, bool]], selected: int | None, width: int, height: int) -> list[str]:
    """Saving (up) against ksmd CPU ms (right), one cell per run: · a run, ● a run on the front,
    ◆ the selected one; where runs share a cell the most marked one shows. points: (cpu ms,
    saving bytes, on the front)."""
    plot_w, plot_h = max(width - LABEL - 2, 8), max(height - 2, 2)
    grid = [[" "] * plot_w for _ in range(plot_h)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    for i, (x, y, front) in enumerate(points):
        col = round((x - x0) / (x1 - x0) * (plot_w - 1)) if x1 > x0 else 0
        row = plot_h - 1 - round((y - y0) / (y1 - y0) * (plot_h - 1)) if y1 > y0 else plot_h // 2
        mark = SELECTED if i == selected else FRONT if front else POINT
        if _RANK[mark] > _RANK[grid[row][col]]:
            grid[row][col] = mark
    labels = {0: f"{y1 / MIB:,.2f} MiB", plot_h - 1: f"{y0 / MIB:,.2f} MiB"} if y1 > y0 else {
        plot_h // 2: f"{y0 / MIB:,.2f} MiB"}
    lines = [f"{labels.get(r, ''):>{LABEL}} │{''.join(cells)}" for r, cells in enumerate(grid)]
    lines.append(f"{'':>{LABEL}} └{'─' * plot_w}")
    left, right = f"{x0:,.1f} ms", f"{x1:,.1f} ms ksmd CPU"
    lines.append(f"{'':>{LABEL}}  {left}{right:>{max(plot_w - len(left), len(right) + 1)}}")
    return lines


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


class SweepApp(App):
    """The runs of one sweep document (ksmtui sweep's JSON object)."""

    TITLE = "ksmtui sweep"
    BINDINGS = [("q", "quit", "Quit")]
    CSS = """
    #front { height: 14; padding: 0 1; border: round $primary; }
    #runs { height: 1fr; }
    """
    SPARK_WIDTH = 24

    def __init__(self, document: dict):
        super().__init__()
        self.document = document
        self.runs = document["runs"]
        self.sub_title = f"{document['scenario']}: {len(self.runs)} runs, {document['stop']}" + (
            "" if document["complete"] else " (interrupted)") + (
            f"; costs: {document['costs']}" if document.get("costs") else "")

    def compose(self) -> ComposeResult:
        yield Static(id="front")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        knobs = self.document["knobs"]
        ctl = bool(self.document.get("controllers"))  # a sweep of controllers: which one ran
        table.add_columns(*(["controller"] * ctl), *knobs, "flow", "seed", "front", "saving over time", "saving MiB",
                          "t90 ms", "t100 ms", "cpu ms", "cpu %")
        end = max(r["series"][-1][0] for r in self.runs)
        low = min(v for r in self.runs for _, v in r["series"])
        high = max(v for r in self.runs for _, v in r["series"])
        for r in self.runs:
            table.add_row(*([Text(r["controller"]["name"])] if ctl else []), *(Text(str(r["knobs"][k])) for k in knobs),
                          Text(r["flow"]), Text(str(r["seed"])),
                          Text(FRONT if r["front"] else "", justify="center"),
                          Text(saving_cells(r["series"], end, low, high, self.SPARK_WIDTH)),
                          Text(f"{r['saving'] / MIB:,.2f}", justify="right"),
                          Text(_ms(r["time_to_90_ms"]), justify="right"),
                          Text(_ms(r["time_to_100_ms"]), justify="right"),
                          Text(f"{r['ksmd_cpu_ms']:,.1f}", justify="right"),
                          Text(f"{r['ksmd_cpu_percent']:.1f}", justify="right"))
        self.draw_front()

    def draw_front(self) -> None:
        widget = self.query_one("#front", Static)
        width = widget.content_region.width or self.size.width - 4
        height = widget.content_region.height or 12
        points = [(r["ksmd_cpu_ms"], r["saving"], r["front"]) for r in self.runs]
        lines = front_lines(points, self.query_one(DataTable).cursor_row, width, height)
        widget.update(Text("\n".join(lines), no_wrap=True))
        widget.border_title = "saving vs ksmd CPU  · run  ● front  ◆ selected"

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self.draw_front()

    def on_resize(self) -> None:
        self.call_after_refresh(self.draw_front)


def run_sweep_app(document: dict) -> None:
    SweepApp(document).run()
