"""Pilot tests: every key of the live UI, and the state it leaves behind."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, Static, TabbedContent
from textual.widgets._footer import FooterKey

from engine.scenario import parse_scenario
from engine.sim import Simulation
from ksmtui.text.render import sim_time
from ksmtui.ui.apps.model import OPENING_SPEED, KeysFooter, KsmApp
from ksmtui.ui.runner import SPEEDS, ChangeSpeed, SetKnob, SetPaused, View
from ksmtui.ui.widgets.panels import LatencyPanel
from ksmtui.ui.widgets.screens import KnobsScreen, OpenScreen
from tests.ui_helpers import SCENARIO, batches, drive, make_app, press, settle

pytestmark = pytest.mark.usefixtures("no_cursor_blink")


def far_from_stop() -> KsmApp:
    """The test scenario with a [stop] no test reaches, however slow the machine."""
    scenario = parse_scenario(SCENARIO.replace("full_scans = 30", "full_scans = 1000000"), "far.toml", Path("."))
    return KsmApp(scenario, paused=True)


def text_of(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def test_space_resumes_and_pauses_the_engine():
    async def test(pilot):
        assert pilot.app.view.paused and pilot.app.view.state == "paused"
        pilot.app.send(ChangeSpeed(-len(SPEEDS)))  # 1x: pilot waits for an idle CPU, which flat out never is
        await press(pilot, "space")
        assert not pilot.app.view.paused and pilot.app.view.state == "running"
        assert "running" in text_of(pilot.app, "#status")
        await press(pilot, "space")
        assert pilot.app.view.paused

    drive(far_from_stop(), test)


def test_flat_out_the_engine_sends_only_the_views_the_ui_asks_for():
    async def test(pilot):
        app = pilot.app
        posted, asked = [], []
        post, send = app.runner._post, app.runner.send
        app.runner._post = lambda message: (posted.append(message), post(message))
        app.runner.send = lambda command: (asked.append(command), send(command))
        draws = app.draws
        app.send(SetPaused(False))  # far from the [stop] below
        # Until the UI has asked three times (not pilot.pause(): it waits for the CPU to go idle,
        # which it does not while flat out); a UI that stops asking fails here.
        for _ in range(600):
            if asked.count(View()) >= 3:
                break
            await asyncio.sleep(0.05)
        app.send(SetPaused(True))
        assert await asyncio.to_thread(app.runner.wait_idle)
        views = asked.count(View())
        assert views >= 3  # the UI keeps asking...
        assert len(posted) <= views + 2  # ...and the engine sends nothing else but the answers to resume and pause
        # Each request follows the drawing of a view: the answer to resume, then at least one view.
        assert all(m.view.flat_out for m in posted if not m.view.paused) and app.draws >= draws + 2

    drive(far_from_stop(), test)


def test_s_steps_one_page_and_shows_its_path_and_outcome():
    async def test(pilot):
        await press(pilot, "s")
        snap = pilot.app.view.snapshot
        assert snap.counters["pages_scanned"] == 1
        step = snap.last_step
        assert step is not None and step.process == "vm-0"
        shown = text_of(pilot.app, "#scan-step")
        assert f"{step.path} → {step.outcome}" in shown and f"{step.address:#x}" in shown
        await press(pilot, "s")
        assert pilot.app.view.snapshot.counters["pages_scanned"] == 2

    drive(make_app(), test)


def test_b_steps_one_ksmd_wakeup_of_pages_to_scan_pages():
    async def test(pilot):
        await press(pilot, "b")
        snap = pilot.app.view.snapshot
        assert snap.counters["pages_scanned"] + snap.counters["pages_skipped"] == 64
        assert snap.sim_ns > 20_000_000  # the wake-up's work, then sleep_millisecs
        assert pilot.app.view.paused

    drive(make_app(), test)


def test_plus_and_minus_step_through_the_speeds():
    async def test(pilot):
        assert pilot.app.view.speed is None  # flat out
        await press(pilot, "minus")
        assert pilot.app.view.speed == 1000
        await press(pilot, "minus", "minus")
        assert pilot.app.view.speed == 200 and "speed 200x" in text_of(pilot.app, "#status")
        await press(pilot, "plus", "plus", "plus", "plus")
        assert pilot.app.view.speed is None
        for _ in range(len(SPEEDS)):
            await pilot.press("minus")
        await settle(pilot)
        assert pilot.app.view.speed == 1  # the slowest stays the slowest

    drive(make_app(), test)


def test_brackets_double_and_halve_pages_to_scan():
    async def test(pilot):
        await press(pilot, "right_square_bracket")
        assert pilot.app.view.snapshot.knobs["pages_to_scan"] == 128
        await press(pilot, "left_square_bracket", "left_square_bracket")
        assert pilot.app.view.snapshot.knobs["pages_to_scan"] == 32
        await press(pilot, "b")
        snap = pilot.app.view.snapshot
        assert snap.counters["pages_scanned"] + snap.counters["pages_skipped"] == 32

    drive(make_app(), test)


@pytest.mark.parametrize("key,knob", [("z", "use_zero_pages"), ("m", "smart_scan"), ("n", "merge_across_nodes")])
def test_toggle_keys_flip_their_knob(key, knob):
    async def test(pilot):
        before = pilot.app.view.snapshot.knobs[knob]
        await press(pilot, key)
        assert pilot.app.view.snapshot.knobs[knob] == 1 - before
        await press(pilot, key)
        assert pilot.app.view.snapshot.knobs[knob] == before
        said = [(n.title, n.message) for n in pilot.app._notifications]
        assert said == [(knob, f"{before} → {1 - before}"), (knob, f"{1 - before} → {before}")]

    drive(make_app(), test)


def test_a_refused_knob_shows_the_kernels_words_and_the_app_goes_on():
    async def test(pilot):
        await batches(pilot, 20)
        assert pilot.app.view.snapshot.counters["pages_shared"] > 0
        await press(pilot, "n")  # merge_across_nodes while KSM pages exist: EBUSY
        assert pilot.app.view.snapshot.knobs["merge_across_nodes"] == 1
        said = [(n.title, n.message) for n in pilot.app._notifications]
        assert any(t == "merge_across_nodes" and m.startswith("EBUSY: merge_across_nodes") for t, m in said)
        await press(pilot, "b")
        assert pilot.app.view.snapshot.counters["pages_scanned"] > 0

    drive(make_app(), test)


def test_the_knobs_screen_offers_every_knob_a_refusal_names():
    async def test(pilot):
        await press(pilot, "k")
        screen = pilot.app.screen
        assert screen.query_one("#knob-run", Input).value == "1"
        assert screen.query_one("#knob-advisor_mode", Input).value == "none"

    drive(make_app(), test)


def test_the_overview_shows_the_knobs_with_their_keys():
    async def test(pilot):
        await press(pilot, "z")
        text = text_of(pilot.app, "#scan-text")
        assert "use_zero_pages 1 (z)" in text and "pages_to_scan 64 ([ ])" in text and "max_page_sharing 4" in text

    drive(make_app(), test)


def test_x_runs_flat_out_and_back_to_the_paced_speed():
    async def test(pilot):
        assert pilot.app.view.speed == 1
        await press(pilot, "plus", "x")
        assert pilot.app.view.speed is None
        await press(pilot, "x")
        assert pilot.app.view.speed == 2

    drive(make_app(speed=OPENING_SPEED), test)


def test_a_new_run_waiting_at_t0_says_that_space_starts_it():
    async def test(pilot):
        assert text_of(pilot.app, "#scan-note") == "paused at t=0: space starts the run"
        await batches(pilot, 2)
        assert not pilot.app.query_one("#scan-note").display
        await press(pilot, "r")
        assert pilot.app.query_one("#scan-note").display
        assert text_of(pilot.app, "#scan-note") == "paused at t=0: space starts the run"

    drive(make_app(), test)


def test_an_engine_failure_is_shown_and_the_app_stays_usable(monkeypatch):
    def broken(self):
        raise RuntimeError("a bug in the engine")

    async def test(pilot):
        with monkeypatch.context() as m:
            m.setattr(Simulation, "step_batch", broken)
            await press(pilot, "b")
        messages = [n.message for n in pilot.app._notifications]
        assert "engine error: RuntimeError: a bug in the engine" in messages
        assert pilot.app.view.state == "paused" and pilot.app.view.snapshot.counters["pages_scanned"] == 0
        await press(pilot, "b")
        assert pilot.app.view.snapshot.counters["pages_scanned"] > 0

    drive(make_app(), test)


def test_f_cycles_the_flow():
    async def test(pilot):
        assert pilot.app.view.snapshot.flow == "optimized"
        await press(pilot, "f")
        assert pilot.app.view.snapshot.flow == "legacy" and "flow legacy" in text_of(pilot.app, "#status")
        await press(pilot, "f", "f")
        assert pilot.app.view.snapshot.flow == "optimized"

    drive(make_app(), test)


def test_k_opens_the_knobs_which_refuse_bad_values_inline_and_apply_good_ones():
    async def test(pilot):
        await press(pilot, "k")
        screen = pilot.app.screen
        assert isinstance(screen, KnobsScreen)
        field = screen.query_one("#knob-max_page_sharing", Input)
        assert field.value == "4"
        field.focus()
        field.value = "1"
        await press(pilot, "enter")
        assert str(screen.query_one("#knob-error-max_page_sharing").render()) == "expected an integer >= 2, got 1"
        field.value = "16"
        await press(pilot, "enter")
        assert pilot.app.view.snapshot.knobs["max_page_sharing"] == 16
        assert str(screen.query_one("#knob-error-max_page_sharing").render()) == ""
        await press(pilot, "escape")
        assert not isinstance(pilot.app.screen, KnobsScreen)
        # Shown again (the same screen, built once): the values as they are now, no old error.
        field.value = "1"
        screen.show_error("max_page_sharing", "stale")
        await press(pilot, "z", "k")
        assert pilot.app.screen is screen
        assert field.value == "16" and screen.query_one("#knob-use_zero_pages", Input).value == "1"
        assert str(screen.query_one("#knob-error-max_page_sharing").render()) == ""

    drive(make_app(), test)


def test_the_knobs_screen_shows_a_refusal_from_the_engine_next_to_the_knob():
    async def test(pilot):
        await batches(pilot, 20)
        await press(pilot, "k")
        field = pilot.app.screen.query_one("#knob-max_page_sharing", Input)
        field.focus()
        field.value = "8"
        await press(pilot, "enter")
        error = str(pilot.app.screen.query_one("#knob-error-max_page_sharing").render())
        assert error.startswith("EBUSY: max_page_sharing")
        assert pilot.app.view.snapshot.knobs["max_page_sharing"] == 4

    drive(make_app(), test)


def test_c_runs_legacy_and_optimized_side_by_side():
    async def test(pilot):
        await press(pilot, "c")
        view = pilot.app.view
        assert view.compare and [s.flow for s in view.snapshots] == ["legacy", "optimized"]
        assert pilot.app.query_one(TabbedContent).active == "compare"
        await batches(pilot, 10)
        view = pilot.app.view
        assert all(s.counters["pages_scanned"] > 0 for s in view.snapshots)
        assert "Before (legacy)" in text_of(pilot.app, "#cmp-before-anon_page")
        assert "After (optimized)" in text_of(pilot.app, "#cmp-after-anon_page")
        await press(pilot, "f")  # the next pair of flows, from time 0
        assert [s.flow for s in pilot.app.view.snapshots] == ["optimized", "series-v1"]
        assert pilot.app.view.snapshot.sim_ns == 0
        assert "Before (optimized)" in text_of(pilot.app, "#cmp-before-anon_page")
        pilot.app.send(SetKnob("flow", "legacy"))  # one flow per side: setting one is refused, not half-applied
        await settle(pilot)
        assert [s.flow for s in pilot.app.view.snapshots] == ["optimized", "series-v1"]
        await press(pilot, "c")
        assert not pilot.app.view.compare and len(pilot.app.view.snapshots) == 1

    drive(make_app(), test)


def test_h_switches_the_histograms_between_rolling_and_since_start():
    async def test(pilot):
        await press(pilot, "4")
        panel = pilot.app.query_one("#latency-panel", LatencyPanel)
        assert not panel.since_start
        await press(pilot, "h")
        assert panel.since_start and panel.border_title == "modelled latency since start"
        await press(pilot, "h")
        assert not panel.since_start

    drive(make_app(), test)


def test_r_restarts_from_time_zero_keeping_the_knobs_set_since():
    async def test(pilot):
        await press(pilot, "z")
        await batches(pilot, 5)
        assert pilot.app.view.snapshot.sim_ns > 0
        await press(pilot, "r")
        snap = pilot.app.view.snapshot
        assert snap.sim_ns == 0 and snap.counters["pages_scanned"] == 0
        assert snap.knobs["use_zero_pages"] == 1

    drive(make_app(), test)


def test_o_opens_a_built_in_scenario():
    async def test(pilot):
        await press(pilot, "o")
        screen = pilot.app.screen
        assert isinstance(screen, OpenScreen)
        options = screen.query_one(OptionList)
        names = [options.get_option_at_index(i).id for i in range(options.option_count)]
        options.highlighted = names.index("chains")
        options.focus()
        await press(pilot, "enter")
        assert not isinstance(pilot.app.screen, OpenScreen)
        assert pilot.app.view.snapshot.scenario == "chains"
        assert "chains" in text_of(pilot.app, "#status")

    drive(make_app(), test)


def test_o_shows_a_bad_scenario_as_its_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[[process]]\nname = "p"\n[[process.region]]\nname = "r"\npages = 0\n')

    async def test(pilot):
        await press(pilot, "o")
        field = pilot.app.screen.query_one("#open-path", Input)
        field.focus()
        field.value = str(bad)
        await press(pilot, "enter")
        error = str(pilot.app.screen.query_one("#open-error").render())
        assert error.startswith(f"{bad}: ") and "pages" in error and "\n" not in error
        await press(pilot, "escape")
        assert pilot.app.view.snapshot.scenario == "ui-test"

    drive(make_app(), test)


def test_number_keys_switch_tabs():
    async def test(pilot):
        for key, tab in zip("234561", ("trees", "chains", "latency", "compare", "processes", "overview"), strict=True):
            await press(pilot, key)
            assert pilot.app.query_one(TabbedContent).active == tab

    drive(make_app(), test)


def test_a_focused_tree_does_not_pull_its_tab_back():
    async def test(pilot):
        await batches(pilot, 3)
        await press(pilot, "2", "tab")
        assert pilot.app.focused.id == "stable-tree"
        for key, tab in zip("1345", ("overview", "chains", "latency", "compare"), strict=True):
            await press(pilot, "2", "tab", key)
            assert pilot.app.query_one(TabbedContent).active == tab
        await press(pilot, "2", "tab", "c")
        assert pilot.app.query_one(TabbedContent).active == "compare" and pilot.app.view.compare

    drive(make_app(), test)


def test_pgdn_and_pgup_reach_the_panels_below_the_fold_of_a_small_terminal():
    async def test(pilot):
        await batches(pilot, 3)
        grid = pilot.app.query_one("#overview-grid")
        outcomes = pilot.app.query_one("#outcomes")
        assert not grid.region.contains_region(outcomes.region)  # below the fold at 80x24
        await press(pilot, "pagedown")
        assert grid.scroll_y > 0 and grid.region.overlaps(outcomes.region)
        await press(pilot, "pageup")
        assert grid.scroll_y == 0

    drive(make_app(), test, (80, 24))


def test_q_quits_and_stops_the_engine_thread():
    async def test(pilot):
        await pilot.press("q")
        assert "ksm-engine" not in [t.name for t in threading.enumerate()]

    app = drive(make_app(), test)
    assert app.return_code == 0


def test_the_stop_condition_pauses_once_and_space_runs_on():
    async def test(pilot):
        await press(pilot, "space")  # flat out, until the run pauses itself
        for _ in range(600):
            if pilot.app.view.paused:
                break
            await pilot.pause(0.05)
        view = pilot.app.view
        assert view.state == "finished" and view.snapshot.counters["full_scans"] == 30
        assert "full_scans reached 30" in text_of(pilot.app, "#scan-note")
        await press(pilot, "b")
        assert pilot.app.view.snapshot.counters["full_scans"] >= 30

    drive(make_app(), test)


def test_a_tree_node_shows_its_frame_checksum_and_rmap_list():
    async def test(pilot):
        await batches(pilot, 20)
        await press(pilot, "2")
        tree = pilot.app.query_one("#stable-tree")
        tree.focus()
        seen = set()
        for _ in range(len(tree.root.children)):  # down the top level: chains and regular nodes
            await press(pilot, "down")
            node = tree.cursor_node.data
            detail = text_of(pilot.app, "#node-detail-text")
            if node.kind == "chain":
                assert f"dups       {node.rmap_hlist_len}" in detail
            else:
                assert f"kpfn       {node.kpfn:#x}" in detail and f"checksum   {node.checksum:#x}" in detail
                assert f"{node.sharers[0].process}:{node.sharers[0].address:#x}" in detail
            seen.add(node.kind)
        assert seen == {"chain", "regular"}  # max_page_sharing 4 over four VMs makes both

    drive(make_app(), test)


def test_a_chain_expands_into_its_dups_and_each_dup_into_its_sharers():
    async def test(pilot):
        await batches(pilot, 20)
        await press(pilot, "2")
        tree = pilot.app.query_one("#stable-tree")
        chain = next(n for n in tree.root.children if n.data.kind == "chain")
        chain.expand()
        await pilot.pause()
        dups = [n for n in chain.children]
        assert [d.data for d in dups] == list(chain.data.dups)
        dups[0].expand()
        await pilot.pause()
        assert [n.data for n in dups[0].children] == list(chain.data.dups[0].sharers)
        await batches(pilot, 1)  # a redraw keeps what was expanded
        expanded = [n for n in tree.root.children if n.is_expanded]
        assert [n.data.kind for n in expanded] == ["chain"] and expanded[0].children[0].is_expanded

    drive(make_app(), test)


def test_quick_repeated_keys_all_count():
    async def test(pilot):
        for _ in range(3):
            await pilot.press("right_square_bracket")
        await pilot.press("z", "z", "z")
        await settle(pilot)
        knobs = pilot.app.view.snapshot.knobs
        assert knobs["pages_to_scan"] == 64 * 8 and knobs["use_zero_pages"] == 1

    drive(make_app(), test)


def test_below_the_minimum_size_a_message_replaces_the_panels():
    async def test(pilot):
        await pilot.resize_terminal(50, 15)
        await pilot.pause()
        message = pilot.app.query_one("#too-small", Static)
        assert message.display and "at least 60x18" in str(message.render())
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not pilot.app.screen.has_class("-too-small")

    drive(make_app(), test)


def test_every_action_is_in_the_command_palette_and_every_key_has_an_id(monkeypatch):
    async def test(pilot):
        app = pilot.app
        assert all(binding.id for binding in KsmApp.BINDINGS)
        ran = []
        with monkeypatch.context() as m:
            m.setattr(app, "run_action", ran.append)
            for command in app.get_system_commands(app.screen):
                if command.title.startswith(tuple(f"{b.description} (" for b in KsmApp.BINDINGS)):
                    command.callback()
        assert set(ran) == {b.action for b in KsmApp.BINDINGS} - {"quit"}  # Textual's own palette has quit
        helps = {c.title: c.help for c in app.get_system_commands(app.screen)}
        assert helps["Hist span (h)"] == "latency histograms since the start or over the last window (modelled)"
        assert all(b.tooltip for b in KsmApp.BINDINGS)
        # and the palette runs them: ctrl+p, a few letters of a key's name, Enter
        await pilot.press("ctrl+p")
        await pilot.press(*"wake-up")
        for _ in range(100):  # the palette searches asynchronously
            await pilot.pause(0.02)
            hits = pilot.app.screen.query("CommandList Option")
            if hits and "Wake-up" in str(hits.first().prompt):
                break
        await pilot.press("enter")
        await settle(pilot)
        assert pilot.app.view.snapshot.counters["pages_scanned"] > 0

    drive(make_app(), test)


def test_a_single_step_shows_the_functions_it_ran_and_a_wakeup_clears_it():
    async def test(pilot):
        await batches(pilot, 6)  # the trees have pages: the searches compare
        await press(pilot, "s")
        step = pilot.app.view.snapshot.last_step
        shown = text_of(pilot.app, "#scan-step").split("\n")
        assert [line.split(" → ")[0].strip() for line in shown[1:-1]] == [name for name, _, _ in step.trace]
        assert shown[-1] == f"  {step.path} → {step.outcome}"
        assert step.trace[0][0] == "calc_checksum" or step.path == "ksm_page"  # optimized: checksum first
        await press(pilot, "b")
        assert text_of(pilot.app, "#scan-step") == "last step: none since the run went on (press s)"

    drive(make_app(), test)


def footer_keys(app) -> list[str]:
    return [k.key for k in app.query(FooterKey) if k.display]


def test_the_footer_shows_whole_keys_quit_first_and_restart_and_open_on_a_wider_terminal():
    async def test(pilot):
        keys = footer_keys(pilot.app)
        assert "q" in keys and "space" in keys and "r" not in keys
        await pilot.resize_terminal(120, 40)
        await settle(pilot)
        keys = footer_keys(pilot.app)
        assert {"q", "r", "o", "k", "c"} <= set(keys)
        footer = pilot.app.query_one(KeysFooter)
        assert all(k.region.right <= footer.region.right for k in pilot.app.query(FooterKey) if k.display)

    drive(make_app(), test, (80, 24))


def test_the_header_keeps_the_speed_at_60_columns_and_d_shows_the_whole_description():
    long = SCENARIO.replace('description = "four small guests from one image"',
                            'description = "' + "a description longer than any terminal is wide, " * 4 + 'the end"')
    app = KsmApp(parse_scenario(long, "long.toml", Path(".")), paused=True)

    async def test(pilot):
        assert "speed max" in text_of(pilot.app, "#status")
        bar = text_of(pilot.app, "#description")
        assert bar.endswith("… (d: all)") and len(bar) <= 60
        await press(pilot, "d")
        assert "the end" in text_of(pilot.app, "#description")
        assert pilot.app.query_one("#description").region.height > 1

    drive(app, test, (60, 18))


def test_at_60x18_the_open_path_and_the_knobs_flow_field_are_reachable():
    async def test(pilot):
        await press(pilot, "o")
        field = pilot.app.screen.query_one("#open-path", Input)
        assert pilot.app.screen.region.contains_region(field.region)
        await press(pilot, "escape", "k")
        screen = pilot.app.screen
        fields = list(screen.query(".knob-input"))
        for _ in fields[1:]:  # Tab from the first field to the last, the flow
            await pilot.press("tab")
        await settle(pilot)
        flow = screen.query_one("#knob-flow", Input)
        assert pilot.app.focused is flow
        # In view: inside the scrolled area, and that area inside the box's borders.
        assert screen.query_one("#knobs-scroll").region.contains_region(flow.region)
        assert screen.query_one("#knobs-box").content_region.contains_region(screen.query_one("#knobs-scroll").region)

    drive(make_app(), test, (60, 18))


def test_w_saves_the_screen_and_the_snapshot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def test(pilot):
        await batches(pilot, 3)
        await press(pilot, "w")
        ms = pilot.app.view.snapshot.sim_ms
        svg, saved = tmp_path / f"ksmtui-ui-test-{ms}ms.svg", tmp_path / f"ksmtui-ui-test-{ms}ms.json"
        assert svg.read_text().startswith("<svg")
        data = json.loads(saved.read_text())
        assert data["counters"] == dict(pilot.app.view.snapshot.counters) and data["scenario"] == "ui-test"
        saved_notes = [n.message for n in pilot.app._notifications if n.title == "saved"]
        assert saved_notes == [f"{svg}\n{saved}"]  # both paths absolute
        first = svg.read_text()
        await press(pilot, "w")  # the same simulated time (paused): a second pair, the first kept
        assert pilot.app.view.snapshot.sim_ms == ms and svg.read_text() == first
        again = tmp_path / f"ksmtui-ui-test-{ms}ms-2"
        assert json.loads(again.with_suffix(".json").read_text()) == data
        assert again.with_suffix(".svg").read_text().startswith("<svg")
        assert f"{again}.svg\n{again}.json" in [n.message for n in pilot.app._notifications if n.title == "saved"]

    drive(make_app(), test)


def test_the_screen_says_what_it_builds_until_the_first_view():
    async def test(pilot):
        starting = pilot.app.query_one("#starting")
        assert str(starting.render()) == "building ui-test: 4 processes, 288 pages…"
        assert not pilot.app.screen.has_class("-starting") and pilot.app.query_one("#tabs").display

    drive(make_app(), test)


def test_f_mid_run_marks_the_switch_on_the_since_start_data_and_a_restart_clears_it():
    async def test(pilot):
        await batches(pilot, 4)
        at = pilot.app.view.snapshot.sim_ns
        await press(pilot, "f", "h", "4")
        note = f"; flow optimized → legacy at {sim_time(at)}"
        assert pilot.app.query_one("#latency-panel").border_title == f"modelled latency since start{note}"
        assert pilot.app.query_one("#outcomes").border_subtitle == f"since start{note}"
        await press(pilot, "r")
        assert pilot.app.query_one("#latency-panel").border_title == "modelled latency since start"

    drive(make_app(), test)


def test_r_and_c_say_at_once_that_a_new_run_is_being_built():
    async def test(pilot):
        await batches(pilot, 3)
        pilot.app.action_restart()  # the header says so before the engine has answered
        assert text_of(pilot.app, "#status").endswith("restarting from t=0…")
        await pilot.pause()  # the command goes once the header is drawn
        await settle(pilot)
        assert "t=0.000 s" in text_of(pilot.app, "#status")
        pilot.app.action_compare()
        assert text_of(pilot.app, "#status").endswith("building both runs of compare mode…")
        await pilot.pause()
        await settle(pilot)
        assert "legacy vs optimized" in text_of(pilot.app, "#status")

    drive(make_app(), test)


def test_the_advisors_own_retuning_of_pages_to_scan_is_not_notified():
    async def test(pilot):
        pilot.app.send(SetKnob("advisor_mode", "scan-time"))
        await settle(pilot)
        await batches(pilot, 6)  # a full scan each: the advisor retunes pages_to_scan
        said = [(n.title, n.message) for n in pilot.app._notifications]
        assert said == [("pages_to_scan", "64 → 500"), ("advisor_mode", "none → scan-time")]
        assert pilot.app.view.snapshot.knobs["pages_to_scan"] != 500  # retuned, silently

    drive(make_app(), test)


def test_the_knobs_screen_reopens_on_run_so_typing_never_lands_in_another_field():
    async def test(pilot):
        await press(pilot, "k")
        screen = pilot.app.screen
        assert screen.focused is screen.query_one("#knob-run", Input)
        screen.query_one("#knob-advisor_max_pages_to_scan", Input).focus()
        await press(pilot, "3")  # typed, never applied
        await press(pilot, "escape", "k")
        assert pilot.app.screen is screen
        assert screen.focused is screen.query_one("#knob-run", Input)
        assert screen.query_one("#knob-advisor_max_pages_to_scan", Input).value == "30000"
        await press(pilot, "0", "enter")  # the value shown is selected: typing replaces it
        knobs = pilot.app.view.snapshot.knobs
        assert knobs["run"] == 0 and knobs["advisor_max_pages_to_scan"] == 30000

    drive(make_app(), test)


def test_the_status_says_the_achieved_speed_when_the_model_runs_slower_than_asked():
    from dataclasses import replace

    from ksmtui.ui.widgets.panels import StatusBar

    async def test(pilot):
        status = pilot.app.query_one("#status", StatusBar)
        view = replace(pilot.app.view, paused=False, speed=1, achieved=0.23)
        status.update_from(view)
        await pilot.pause()
        assert "speed 1x (0.23x achieved)" in text_of(pilot.app, "#status")
        status.update_from(replace(view, achieved=0.97))
        await pilot.pause()
        assert "speed 1x ·" in text_of(pilot.app, "#status")

    drive(make_app(), test)


def test_single_steps_keep_the_sparklines_span():
    from ksmtui.ui.runner import StepPage

    async def test(pilot):
        await batches(pilot, 30)
        before = pilot.app.view.trend.sim_ns
        for _ in range(150):  # more single steps than the history holds samples
            pilot.app.send(StepPage())
        await settle(pilot)
        after = pilot.app.view.trend.sim_ns
        assert after[0] == before[0] and after[-1] > before[-1]
        await press(pilot, "1")
        subtitle = str(pilot.app.query_one("#counters").border_subtitle)
        assert subtitle.startswith("sparklines: the last ") and subtitle != "sparklines: the last 0 ms simulated"

    drive(make_app(), test)


THP_SCENARIO = """
name = "thp"
[ksm]
pages_to_scan = 5000
[[process]]
name = "a"
count = 2
[[process.region]]
name = "r"
pages = 512
fill = "zero"
thp = true
"""


def test_the_counters_panel_shows_thp_splits_for_a_scenario_with_thps():
    app = KsmApp(parse_scenario(THP_SCENARIO, "thp.toml", Path(".")), paused=True)

    async def test(pilot):
        await batches(pilot, 3)
        text = str(pilot.app.query_one("#counters-text", Static).render())
        assert "thp_split_page" in text and "0 THPs left (modelled)" in text, text

    drive(app, test)
    plain = make_app()

    async def no_thp(pilot):
        assert "thp_split_page" not in str(pilot.app.query_one("#counters-text", Static).render())

    drive(plain, no_thp)


def test_the_overview_shows_a_controllers_decisions_and_the_knobs_screen_who_drives_them(tmp_path):
    """`ksmtui SCENARIO --controller ksmtuned`: the decisions the Overview lists are those a headless
    run of the same scenario makes in the same wake-ups; a restart starts the controller afresh."""
    from ksmtui.cli.common import controller_factory, load
    from ksmtui.cli.options import parse_args
    from ksmtui.ui.runner import ControllerView

    path = tmp_path / "pressure.toml"
    path.write_text(SCENARIO.replace('count = 4', 'count = 4\ncmdline = "qemu-system-x86_64 -enable-kvm"').replace(
        "[stop]", "[memory]\nmem_total_kb = 4194304\nmem_free_kb = 300000\n\n[stop]"))
    opts = parse_args(None, [str(path), "--controller", "ksmtuned", "--controller-set", "KSM_MONITOR_INTERVAL=0.02"])
    scenario = load(opts)
    make = controller_factory(scenario, opts)
    assert make is not None
    headless = Simulation(scenario, control=make(scenario))
    for _ in range(40):
        headless.step_batch()
    expected = ControllerView.of(headless.control)
    assert expected.ticks > 3 and expected.decisions[-1][1] == "pages_to_scan=1250 sleep_millisecs=40 run=1"

    async def test(pilot):
        await batches(pilot, 40)
        assert pilot.app.view.controller == expected
        text = text_of(pilot.app, "#scan-text")
        assert f"knobs driven by ksmtuned: {expected.ticks} ticks, {expected.writes} writes, last:" in text
        for at, decision in expected.decisions:
            assert f"  {sim_time(int(at * 1e6))} {decision}" in text
        await press(pilot, "k")
        title = str(pilot.app.screen.query_one("#knobs-title", Static).render())
        assert title.startswith("knobs: driven by ksmtuned (its next tick may write over a value set here)")
        await press(pilot, "escape", "r")
        assert pilot.app.view.controller == ControllerView("ksmtuned", 0, 0, ())

    drive(KsmApp(scenario, opts, paused=True, control=make), test)


def test_the_knobs_screen_says_what_the_focused_knob_means_whole_at_80x24():
    """Each knob's meaning, unit, values and default (ksmtui.text.knobs, from ksm.rst) under the
    fields, for the field that has the focus; the fields give it the rows it needs."""
    from ksmtui.text.knobs import knob_help
    from ksmtui.ui.widgets.screens import KnobHelp

    async def test(pilot):
        await press(pilot, "k")
        screen = pilot.app.screen
        box, help_text = screen.query_one("#knobs-box"), screen.query_one(KnobHelp)
        for name in ("run", "pages_to_scan", "sleep_millisecs", "max_page_sharing"):
            assert screen.focused.name == name and str(help_text.render()) == knob_help(name)
            assert box.content_region.contains_region(help_text.region)  # every line of it on screen
            assert screen.query_one("#knobs-scroll").region.contains_region(screen.focused.region)
            await press(pilot, "tab")
        assert "unit: ms" in knob_help("sleep_millisecs") and "an integer >= 2" in knob_help("max_page_sharing")

    drive(make_app(), test, (80, 24))
