"""Snapshot tests: how the UI looks, at fixed terminal sizes, after a fixed sequence of commands.

The engine is paused and moves only by commands, with cost-model latency, so each SVG depends on
the keys pressed and nothing else. Regenerate with `pytest --snapshot-update` only after reading
the new SVGs (snapshot_report.html shows the difference)."""

from __future__ import annotations

import pytest

from tests.ui_helpers import after, make_app

pytestmark = pytest.mark.usefixtures("no_cursor_blink")


class TestMainScreen:
    """The Overview tab: scan progress, counters with sparklines, outcomes, latency."""

    def test_after_a_few_full_scans(self, snap_compare):
        # 8 wake-ups of 64 pages cover a bit less than two passes over the 288 pages.
        assert snap_compare(make_app(), terminal_size=(120, 40), run_before=after(*[1] * 12))

    def test_after_single_steps_shows_the_last_path_and_outcome(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(120, 40), run_before=after(10, "s", "s", "s"))

    def test_small_terminal(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(80, 24), run_before=after(*[1] * 6))

    def test_large_terminal_shows_chains_and_histograms_too(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(200, 60), run_before=after(*[1] * 12))


class TestViews:
    """The other tabs."""

    def test_compare_mode_shows_before_and_after(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(160, 50), run_before=after("c", 30))

    def test_tree_detail_view(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(120, 40), run_before=after(20, "2", "tab", "down", "down",
                                                                                  "enter"))

    def test_trees_after_a_single_step_show_its_walks(self, snap_compare):
        # the 12th step of the tenth pass walks the unstable tree four levels deep
        steps = ["s"] * 12
        assert snap_compare(make_app(), terminal_size=(120, 40), run_before=after(9, "2", *steps))

    def test_trees_on_a_small_terminal(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(80, 24), run_before=after(9, "2", "tab", "down", "down"))

    def test_chains_against_max_page_sharing(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(120, 40), run_before=after(20, "3"))

    def test_processes_sorted_by_profit(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(80, 24), run_before=after(20, "6"))

    def test_knobs_with_a_refusal_under_its_field(self, snap_compare):
        # the longest name whole, the refusal on a row of its own (the grid had wrapped both)
        steps = ["k", "tab", "tab", "tab", "backspace", "backspace", "1", "enter"]
        assert snap_compare(make_app(), terminal_size=(120, 40), run_before=after(4, *steps))
