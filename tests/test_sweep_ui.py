"""`ksmtui sweep --ui`: the renderers (golden strings) and the app (Pilot, one snapshot), on a fixed
sweep document, so that nothing here depends on the engine."""

from textual.widgets import DataTable, Static

from ksmtui.ui.apps.sweep import FRONT, SELECTED, SweepApp, front_lines, saving_cells
from tests.ui_helpers import drive

MIB = 1 << 20


def run(p2s, sleep, flow, saving_mib, t100, cpu, front):
    saving = saving_mib * MIB
    return {
        "knobs": {"pages_to_scan": p2s, "sleep_millisecs": sleep}, "flow": flow, "seed": 1,
        "saving": saving, "time_to_90_ms": t100 * 0.9, "time_to_100_ms": t100, "ksmd_cpu_ms": cpu,
        "ksmd_cpu_percent": round(100 * cpu / t100, 3), "front": front,
        "series": [[0, -MIB // 8], [t100 // 2, saving // 2], [t100, saving], [2 * t100, saving]],
    }


DOCUMENT = {
    "scenario": "fixed", "stop": "4 full scans", "complete": True, "knobs": ["pages_to_scan", "sleep_millisecs"],
    "runs": [run(100, 20, "legacy", 10, 1200, 60.0, False), run(100, 20, "optimized", 12, 1250, 62.0, True),
             run(400, 20, "legacy", 10, 400, 58.0, True), run(400, 10, "optimized", 12, 220, 70.0, False)],
}


def test_front_lines_place_runs_by_cpu_and_saving():
    lines = front_lines([(10.0, 0, False), (20.0, 2 * MIB, True), (15.0, MIB, False)], 2, 24, 5)
    assert lines == [
        "   2.00 MiB │          ●",
        "            │     ◆     ",
        "   0.00 MiB │·          ",
        "            └───────────",
        "             10.0 ms 20.0 ms ksmd CPU",
    ]


def test_front_lines_keep_the_most_marked_run_of_a_cell():
    lines = front_lines([(1.0, MIB, False), (1.0, MIB, True), (2.0, MIB, False)], None, 20, 4)
    assert lines[1] == "   1.00 MiB │●      ·"  # equal savings sit on the middle row, labelled once
    assert [line for line in lines if "MiB" in line] == [lines[1]]


def test_saving_cells_share_one_time_scale_and_hold_the_last_value():
    series = [[0, 0], [50, 4], [100, 8]]
    assert saving_cells(series, 200, 0, 8, 9) == "▁▁▄▄██████"[:9]
    assert saving_cells([[0, 5]], 100, 5, 5, 4) == "▁▁▁▁"


def test_the_highlighted_row_is_the_selected_point():
    async def test(pilot):
        app = pilot.app
        assert app.query_one(DataTable).row_count == 4
        front = str(app.query_one("#front", Static).render())
        # run 0 selected, runs 1 and 2 on the front, run 3 a plain point
        assert (front.count(SELECTED), front.count(FRONT), front.count("·")) == (1, 2, 1)
        await pilot.press("down")
        front = str(app.query_one("#front", Static).render())
        assert (front.count(SELECTED), front.count(FRONT), front.count("·")) == (1, 1, 2)
        await pilot.press("q")

    assert drive(SweepApp(DOCUMENT), test, (100, 30)).return_code == 0


def test_snapshot(snap_compare):
    assert snap_compare(SweepApp(DOCUMENT), terminal_size=(100, 30), press=["down", "down"])
