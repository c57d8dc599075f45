"""The UI's runs stop where the headless commands stop: compare mode is `ksmtui compare`."""

from __future__ import annotations

import queue
import time

import pytest

from engine.sim import Simulation
from ksmtui.ui.runner import CycleFlow, EngineUpdate, Runner, SetPaused, StepPage, ToggleCompare, View
from tests.ui_helpers import scenario

RUN_S = 120  # wall time a run of the test scenario may take on a busy machine, many times what it needs


def run_to_finish(compare: bool, pair_steps: int = 0):
    """Run the UI's runner flat out to its stop; the last view."""
    views: queue.SimpleQueue = queue.SimpleQueue()
    runner = Runner(scenario(), lambda m: views.put(m.view) if isinstance(m, EngineUpdate) else None, paused=True)
    runner.start()
    try:
        if compare:
            runner.send(ToggleCompare())
        for _ in range(pair_steps):
            runner.send(CycleFlow())
        runner.send(SetPaused(False))
        # flat out, the runner posts views only when asked: ask until it has finished
        deadline = time.monotonic() + RUN_S
        while time.monotonic() < deadline:
            runner.send(View())
            assert runner.wait_idle(), "engine did not answer"
            view = None
            while not views.empty():
                view = views.get()
            if view is not None and view.finished:
                return view
        raise AssertionError(f"the runner did not finish the run in {RUN_S} s")
    finally:
        runner.close()


@pytest.mark.parametrize("pair_steps,flows", [(0, ("legacy", "optimized")), (1, ("optimized", "series-v1"))])
def test_compare_mode_stops_both_runs_where_ksmtui_compare_does(pair_steps, flows):
    view = run_to_finish(True, pair_steps)
    assert tuple(s.flow for s in view.snapshots) == flows
    for snap in view.snapshots:
        sim = Simulation(scenario(), flow=snap.flow)
        sim.run()  # what cmd_compare does for each flow
        headless = sim.snapshot(tree_limit=0)
        assert dict(snap.counters) == dict(headless.counters) and snap.sim_ns == headless.sim_ns
        assert snap.latency == headless.latency and snap.work_by_path == headless.work_by_path


def test_a_single_run_stops_where_ksmtui_run_does():
    view = run_to_finish(False)
    sim = Simulation(scenario())
    sim.run()
    assert dict(view.snapshot.counters) == dict(sim.snapshot(tree_limit=0).counters)


def test_a_hold_stops_the_engine_work_but_not_the_commands():
    views: queue.SimpleQueue = queue.SimpleQueue()
    runner = Runner(scenario(), lambda m: views.put(m.view) if isinstance(m, EngineUpdate) else None, paused=True)
    runner.start()
    try:
        runner.hold(3600)  # far longer than this test
        runner.send(SetPaused(False))
        runner.send(StepPage())  # a command runs: one page, and it pauses
        runner.send(SetPaused(False))
        for _ in range(20):
            runner.send(View())
            assert runner.wait_idle()
        while views.qsize() > 1:
            views.get()
        view = views.get()
        assert not view.paused and view.snapshot.counters["pages_scanned"] == 1  # running, yet held
        runner.hold(0)
        deadline = time.monotonic() + RUN_S
        while view.snapshot.counters["pages_scanned"] <= 1:
            assert time.monotonic() < deadline, f"the engine did not scan again in {RUN_S} s once the hold ended"
            runner.send(View())
            assert runner.wait_idle()
            while not views.empty():
                view = views.get()
    finally:
        runner.close()


def test_a_run_is_frozen_out_of_the_collectors_walks_after_a_full_scan_and_released_by_a_restart():
    """What lives through a full scan is frozen, so that a full collection (the GIL held, a key
    waiting) walks only what is new; a restart unfreezes it, so that the old run is freed."""
    import gc

    from ksmtui.ui.runner import Restart, StepBatch

    gc.unfreeze()
    runner = Runner(scenario(), lambda m: None, paused=True)
    runner.start()
    try:
        assert runner.wait_idle()
        assert gc.get_freeze_count() == 0
        for _ in range(5):  # 288 pages at pages_to_scan 64: the first full scan ends in the fifth
            runner.send(StepBatch())
        assert runner.wait_idle()
        assert gc.get_freeze_count() > 4 * 72  # the rmap_items of the four guests' 72 pages, and more
        runner.send(Restart())
        assert runner.wait_idle()
        assert gc.get_freeze_count() == 0
    finally:
        runner.close()
        gc.unfreeze()
