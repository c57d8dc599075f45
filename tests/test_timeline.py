"""engine/timeline.py: the events' order and the stop rule, and the runs that can never reach
their stop (pages_to_scan 0, run 0, the advisor at 0), which end with the note in every runner."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from engine.cost import WAKEUP
from engine.scenario import Stop
from engine.sim import Simulation
from engine.timeline import (
    DEFAULT_FULL_SCANS,
    NO_PROGRESS,
    StopRule,
    ksmd_wakes_at,
    msecs_to_jiffies,
    saving_timing,
    timer_fires_at,
)
from ksmtui.cli import main
from ksmtui.cli.common import load
from ksmtui.cli.options import parse_args
from ksmtui.ui.apps.model import KsmApp
from tests.engine_helpers import proc, region, scenario
from tests.ui_helpers import drive, wait_for

HANGS = [
    (["fleet", "--set", "pages_to_scan=0"], "pages_to_scan is 0"),
    (["default", "--set", "run=0", "--full-scans", "1"], "ksmd is not running (run=0)"),
    (["default", "--set", "advisor_mode=scan-time", "--set", "advisor_min_pages_to_scan=0", "--full-scans", "1"],
     "pages_to_scan is 0"),
]


def test_the_stop_rule_takes_the_options_over_stop_and_defaults_to_ten_full_scans():
    assert StopRule.of(Stop(full_scans=4), after_ms=900) == StopRule(None, 900)
    assert StopRule.of(Stop(after_ms=5)) == StopRule(None, 5)
    assert StopRule.of(Stop()) == StopRule(DEFAULT_FULL_SCANS, None)
    rule = StopRule(3, 2000)
    assert rule.describe() == "3 full scans or 2,000 ms"
    assert rule.reached(2, 1_999_999_999) is None
    assert rule.reached(3, 0) == "full_scans reached 3"
    assert rule.reached(0, 2_000_000_000) == "after_ms reached 2000"


def test_events_fire_by_time_then_mark_in_file_order_and_repeat_until_their_end():
    events = [
        dict(action="write", at_ms=10, repeat_ms=10, until_ms=30, region="a"),
        dict(action="exit", at_full_scans=1),
        dict(action="write", at_ms=10, region="a", pages=1),
    ]
    sim = Simulation(scenario(proc("p", region("a", 4)), events=events))
    timeline = sim.timeline
    assert [(at, ev.index) for at, ev in timeline.due_timed(20_000_000)] == [
        (10_000_000, 0), (10_000_000, 2), (20_000_000, 0)]
    assert not timeline.marked_due(0) and timeline.pending == 2
    assert [ev.index for _, ev in timeline.due_timed(10**12)] == [0]  # 30 ms was the last repeat
    assert [ev.index for ev in timeline.due_marked(1)] == [1]
    assert timeline.pending == 0 and timeline.done == 5


def test_a_wake_up_that_scans_nothing_still_sleeps_sleep_millisecs():
    """At HZ 250, 7 ms is msecs_to_jiffies 2 ticks, and the timer fires one tick later: every 12 ms."""
    sim = Simulation(scenario(proc("p", region("a", 4)), ksm={"pages_to_scan": 0, "sleep_millisecs": 7}))
    sim.step_batch()
    assert sim.now_ns == 12_000_000 and sim.scan_end_ns == WAKEUP and sim.ksm.ksm_pages_scanned == 0
    assert sim.step_pages(100) == 0 and sim.now_ns == 24_000_000


def test_msecs_to_jiffies_rounds_up_as_include_linux_jiffies_h():
    assert [msecs_to_jiffies(ms, 250) for ms in (0, 1, 4, 5, 10, 20, 50)] == [0, 1, 1, 2, 3, 5, 13]
    assert [msecs_to_jiffies(ms, 100) for ms in (1, 10, 11)] == [1, 1, 2]
    assert [msecs_to_jiffies(ms, 300) for ms in (1, 10, 20)] == [1, 3, 6]
    assert [msecs_to_jiffies(ms, 1000) for ms in (1, 20)] == [1, 20]


def test_the_timer_wheel_fires_a_granule_late_and_coarser_on_outer_levels():
    """kernel/time/timer.c calc_wheel_index: level 0 (under 63 jiffies) fires at expires + 1; level
    1 (up to 503) rounds up to 8 jiffies and one granule more."""
    assert timer_fires_at(105, 100) == 106
    assert timer_fires_at(162, 100) == 163  # delta 62: still level 0
    assert timer_fires_at(163, 100) == 168  # delta 63: level 1, (163 >> 3) + 1 = 21, << 3
    assert timer_fires_at(168, 100) == 176
    assert timer_fires_at(99, 100) == 100  # already expired: the next tick


def test_ksmd_sleeps_from_the_end_of_its_scan_to_a_tick():
    """Measured on 6.18 at HZ 250 (sched_waking of ksmd): sleep_millisecs 10, 20, 50 wake every
    16, 24 and 56 ms while the scan takes less than a tick; a scan that crosses a tick boundary
    sleeps from the next jiffy; sleep_millisecs 0 does not sleep."""
    assert [ksmd_wakes_at(300_000, s, 250) for s in (10, 20, 50)] == [16_000_000, 24_000_000, 56_000_000]
    assert ksmd_wakes_at(4_100_000, 20, 250) == 28_000_000
    assert ksmd_wakes_at(4_100_000, 0, 250) == 4_100_000
    assert ksmd_wakes_at(300_000, 20, 1000) == 21_000_000


def test_hz_defaults_to_the_cost_profile_and_is_recorded():
    from engine.cost import CostProfile

    sc = scenario(proc("p", region("a", 4)), ksm={"sleep_millisecs": 10})
    sim = Simulation(sc, costs=CostProfile(hz=1000, label="test"))
    sim.step_batch()
    assert sim.now_ns == 11_000_000
    assert sim.result()["hz"] == 1000 and sim.result()["costs"] == "test"
    sim = Simulation(sc, overrides={"hz": 100}, costs=CostProfile(hz=1000, label="test"))
    sim.step_batch()
    assert sim.now_ns == 20_000_000 and sim.result()["hz"] == 100


def test_the_advisor_reads_the_clock_with_the_scans_own_time_in_it():
    sim = Simulation(scenario(proc("p", region("a", 400)), ksm={"pages_to_scan": 100, "sleep_millisecs": 10}))
    sim.step_batch()
    sim.step_within_wakeup(10)  # inside the second wake-up
    ksm = sim.ksm
    assert ksm.now_ns == 16_000_000 + ksm.ksmd_cpu_ns - sim._batch_cpu0 > 16_000_000


def test_saving_timing_reads_marks_cpu_and_the_steady_cost():
    ms = 1_000_000
    series = [(0, 0, 0), (10 * ms, 40, 5 * ms), (20 * ms, 95, 7 * ms), (30 * ms, 100, 9 * ms),
              (2030 * ms, 100, 11 * ms)]
    t = saving_timing(series)
    assert (t["time_to_50_ms"], t["time_to_90_ms"], t["time_to_100_ms"]) == (20, 20, 30)
    assert t["ksmd_cpu_to_100_ms"] == 9 and t["steady_cpu_ms_per_s"] == 1.0 and t["ksmd_cpu_ms"] == 11
    sampled = saving_timing(series, first_at_midpoint=True)
    assert (sampled["time_to_100_ms"], sampled["ksmd_cpu_to_100_ms"]) == (25, 8)
    assert sampled["steady_cpu_ms_per_s"] == round(3 / 2.005, 3)  # from the midpoint on


def test_an_idle_ksmd_runs_on_while_a_pending_event_can_give_it_work():
    """pages_to_scan 0 until a set event at 100 ms; run 0 with a write repeating forever until a
    set event at 200 ms: the events fire, and the run gets to its full scans."""
    sim = Simulation(scenario(proc("p", region("a", 8)), ksm={"pages_to_scan": 0},
                              events=[dict(action="set", at_ms=100, knob="pages_to_scan", value=100)]))
    assert sim.run(full_scans=2) == "full_scans reached 2" and sim.now_ns > 100_000_000
    sim = Simulation(scenario(proc("p", region("a", 8)), ksm={"run": 0}, events=[
        dict(action="write", at_ms=0, repeat_ms=50, region="a", pages=1),
        dict(action="set", at_ms=200, knob="run", value=1)]))
    assert sim.run(full_scans=2) == "full_scans reached 2"
    assert sim.events_done >= 6  # the writes at 0..200 ms and the set


def test_an_idle_ksmd_ends_once_every_pending_event_has_had_its_chance():
    """Each event fires once more while ksmd is idle (a one-shot write at 30 ms; a repeating
    set that keeps run at 0, first at 40 ms): then nothing can change, and the run ends."""
    sim = Simulation(scenario(proc("p", region("a", 8)), ksm={"run": 0}, events=[
        dict(action="write", at_ms=30, region="a", pages=1),
        dict(action="set", at_ms=40, repeat_ms=100, knob="run", value=0)]))
    assert sim.run(full_scans=1) == f"{NO_PROGRESS}: ksmd is not running (run=0) and no pending event can change that"
    assert sim.now_ns == 40_000_000 and sim.events_done == 2
    sim = Simulation(scenario(proc("p", region("a", 8)), ksm={"run": 1}, events=[
        dict(action="set", at_ms=10, knob="run", value=0),
        dict(action="set", at_ms=40, repeat_ms=100, knob="pages_to_scan", value=5)]))
    assert sim.run(full_scans=100).startswith(NO_PROGRESS)
    assert sim.now_ns == 40_000_000  # ksmd went idle at its wake-up after 10 ms; the set fired since


def test_an_idle_ksmd_with_an_after_ms_stop_runs_the_clock_to_it():
    sim = Simulation(scenario(proc("p", region("a", 8)), ksm={"pages_to_scan": 0}))
    assert sim.run(after_ms=500) == "after_ms reached 500"


@pytest.mark.parametrize("argv,why", HANGS)
def test_a_run_that_cannot_reach_its_stop_ends_with_the_note(argv, why, capsys):
    assert main(["run", *argv, "--json"]) == 0  # a completed run, as docs/scenarios.md says
    out, err = capsys.readouterr()
    assert out.count("\n") == 1
    assert err.startswith(f"ksmtui run: note: {argv[0]}: stopped at ")
    assert err.endswith(f"ms simulated: {NO_PROGRESS}: {why} and no pending event can change that\n")


@pytest.mark.parametrize("argv,why", HANGS)
def test_the_ui_pauses_with_the_note_and_quits_at_once(argv, why):
    opts = parse_args(None, argv)  # `ksmtui SCENARIO ...`: the UI
    app = KsmApp(load(opts), opts, paused=True)

    async def test(pilot):
        await pilot.press("space")
        # the engine thread pauses by itself after its first slice
        await wait_for(pilot, lambda: pilot.app.view.paused and pilot.app.view.note, "the run pausing with its note")
        view = pilot.app.view
        assert view.state == "stuck" and view.note == f"{NO_PROGRESS}: {why} and no pending event can change that"
        await pilot.press("q")
        assert "ksm-engine" not in [t.name for t in threading.enumerate()]

    drive(app, test)


@pytest.mark.kernel
@pytest.mark.parametrize("ksm,why", [
    ({"pages_to_scan": 0}, "pages_to_scan is 0"),
    ({"run": 0}, "ksmd is not running (run=0)"),
    ({"advisor_mode": "scan-time", "advisor_min_pages_to_scan": 0}, "pages_to_scan is 0"),
])
def test_on_the_real_kernel_a_run_that_cannot_reach_its_stop_ends_with_the_note(kernel, ksm, why):
    s = dataclasses.replace(scenario(proc("p", region("a", 8)), ksm={"sleep_millisecs": 20, **ksm}),
                            stop=Stop(full_scans=1))
    result = kernel.run_on_kernel(s)
    assert result["stop_reason"] == f"{NO_PROGRESS}: {why} and no pending event can change that"
    assert result["ksm"]["full_scans"] == 0


def test_the_saving_is_reached_at_the_merge_not_when_the_scan_ends():
    """The kernel's general_profit rises at each merge, inside a wake-up. Here one wake-up merges
    the twins' pages first, then walks 2,000 unique pages: the saving is whole well before that
    scan ends, and ksmd's CPU to it leaves out the unique pages' walk."""
    sc = scenario(proc("a", region("d", 50, "pool", pool="p")), proc("b", region("d", 50, "pool", pool="p")),
                  proc("u", region("h", 2000)), pools=(("p", 50),), ksm={"sleep_millisecs": 20})
    sim = Simulation(sc)
    sim.record_series()
    for _ in range(2):
        sim.step_full_scan()
    assert sim.series is not None
    t = saving_timing(sim.series)
    scan_end_ms = sim.scan_end_ns / 1e6
    assert t["saving"] == 50 * 4096 - 2100 * 64
    assert t["time_to_100_ms"] < scan_end_ms - 1  # 2,000 tree walks later
    assert t["ksmd_cpu_to_100_ms"] < sim.ksm.ksmd_cpu_ns / 1e6 / 2 - 0.5
