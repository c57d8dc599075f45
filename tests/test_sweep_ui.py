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


def test_front_lines_place_runs_by_cpu_and_saving_from_zero():
    lines = front_lines([(10.0, 0, False), (20.0, 2 * MIB, True), (15.0, MIB, False)], 2, 24, 5)
    assert lines == [
        "   2.00 MiB │          ●",
        "            │        ◆  ",
        "   0.00 MiB │     ·     ",
        "            └───────────",
        "             0.0 ms 20.0 ms ksmd CPU",
    ]


def test_a_six_percent_difference_does_not_fill_the_plot():
    # the old axis ran from the lowest to the highest saving: 100 and 106 MiB were bottom and top
    lines = front_lines([(50.0, 100 * MIB, False), (60.0, 106 * MIB, True)], None, 40, 12)
    rows = [i for i, line in enumerate(lines) for c in line if c in "·●"]
    assert abs(rows[0] - rows[1]) <= 1 and "   0.00 MiB" in lines[9]
    assert lines[-1].split() == ["0.0", "ms", "60.0", "ms", "ksmd", "CPU"]


def test_front_lines_show_the_seeds_range_under_the_mean():
    lines = front_lines([(10.0, 5 * MIB, True, 2 * MIB, 8 * MIB)], None, 20, 10)
    column = [line[20] for line in lines[:8]]  # the last column: 10 ms is the top of the CPU axis
    assert column == ["┊", "┊", "┊", "●", "┊", "┊", " ", " "]  # 8 MiB on the top row down to 2 MiB on row 5


def test_front_lines_keep_the_most_marked_run_of_a_cell():
    lines = front_lines([(1.0, MIB, False), (1.0, MIB, True), (2.0, MIB, False)], None, 20, 4)
    assert lines[0] == "   1.00 MiB │    ●  ·"


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


def seeded(p2s, seed, saving_mib, cpu):
    r = run(p2s, 20, "legacy", saving_mib, 1000, cpu, False)
    return {**r, "seed": seed}


def test_seeds_of_a_setting_are_one_row_one_point_with_their_range_and_the_footer_shows_the_keys():
    # pages_to_scan 100: 10 and 14 MiB (mean 12) for 50 and 70 ms; 400: 11 MiB for 40 ms. Seed 2 of
    # 100 alone would beat 400 on saving, the mean does too: both settings on the front
    document = {**DOCUMENT, "knobs": ["pages_to_scan"],
                "runs": [seeded(100, 1, 10, 50.0), seeded(100, 2, 14, 70.0), seeded(400, 1, 11, 40.0),
                         seeded(800, 1, 9, 45.0)]}
    for r in document["runs"]:
        r["knobs"] = {"pages_to_scan": r["knobs"]["pages_to_scan"]}

    async def test(pilot):
        app = pilot.app
        table = app.query_one(DataTable)
        assert table.row_count == 3
        first = [str(c) for c in table.get_row_at(0)]
        assert first[:3] == ["100", "legacy", "2"] and first[4:] [1:3] == ["12.00", "10.00-14.00"]
        assert first[-3:] == ["60.0", "50.0-70.0", "6.0"]
        front = str(app.query_one("#front", Static).render())
        assert front.count("┊") >= 2 and front.count(FRONT) == 1 and front.count(SELECTED) == 1
        footer = " ".join(str(w.render()) for w in app.query("FooterKey"))
        assert all(k in footer for k in ("Sort", "Front only", "Quit"))
        await pilot.press("f")  # 800 (9 MiB for 45 ms) is beaten by 400
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["100", "400"]
        await pilot.press("f", "s")  # by mean saving
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["100", "400", "800"]
        await pilot.press("s")  # by mean CPU
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["400", "800", "100"]
        await pilot.press("q")

    assert drive(SweepApp(document), test, (120, 30)).return_code == 0


def test_snapshot(snap_compare):
    assert snap_compare(SweepApp(DOCUMENT), terminal_size=(100, 30), press=["down", "down"])
