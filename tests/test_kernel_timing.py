"""ksmd's pacing on the real kernel, as engine/timeline.py models it: the timer fires on a tick,
msecs_to_jiffies(sleep_millisecs) + 1 ticks after the tick its scan ended in.

The sleeps and wake-ups are read from sched_switch (ksmd going to sleep) and sched_waking of ksmd
(the timer's wake_up_process) in a tracefs instance of our own: each wake-up is judged from when
its scan really ended, so a busy machine, which preempts ksmd and makes its scans end later, does
not change the verdict."""

from __future__ import annotations

import os
import re

import pytest

from engine.scenario import load_scenario
from engine.timeline import ksmd_wakes_at
from ksmtui.bench.calibrate import config_hz
from ksmtui.host.sysfs import TRACEFS, ksmd_pid, mount_tracefs


def _sleeps_and_wakings(kernel, scenario, overrides) -> list[tuple[float, float]]:
    """(ms ksmd went to sleep, ms its timer woke it), on the monotonic clock, for each sleep of a
    full scan: sched_switch away from ksmd in state S (its wait_event_freezable_timeout), then the
    sched_waking of ksmd that ends it."""
    pid = ksmd_pid()
    mount_tracefs()  # where it is missing
    if not (TRACEFS / "events" / "sched" / "sched_waking").exists():
        pytest.skip("no tracefs sched_waking here")
    inst = TRACEFS / "instances" / f"ksmtui-test-{os.getpid()}"
    with kernel.KernelRun(scenario, None, overrides) as run:
        inst.mkdir()
        try:
            (inst / "trace_clock").write_text("mono")
            (inst / "events/sched/sched_waking/filter").write_text(f"pid == {pid}")
            (inst / "events/sched/sched_switch/filter").write_text(f"prev_pid == {pid}")
            for event in ("sched_waking", "sched_switch"):
                (inst / "events/sched" / event / "enable").write_text("1")
            run.start()
            run.run(full_scans=1)
            text = (inst / "trace").read_text()
        finally:
            for event in ("sched_waking", "sched_switch"):
                (inst / "events/sched" / event / "enable").write_text("0")
            inst.rmdir()
    pairs, asleep = [], None
    for t, event, rest in re.findall(r"\s(\d+\.\d+): (sched_waking|sched_switch): (.*)", text):
        if event == "sched_switch":
            asleep = float(t) * 1e3 if " prev_state=S " in rest else None
        elif asleep is not None:
            pairs.append((asleep, float(t) * 1e3))
            asleep = None
    return pairs


@pytest.mark.kernel
@pytest.mark.parametrize("sleep_ms", [10, 20, 50])
def test_ksmd_wakes_msecs_to_jiffies_plus_one_tick_after_the_tick_it_slept_in(kernel, sleep_ms):
    """Each wake-up where ksmd_wakes_at puts it, judged from when that scan really ended (a
    preempted scan ends later, and so does its wake-up, in the kernel and in the model alike), or
    one tick later: on a machine whose other CPUs are busy, a share of ksmd's timers fire a tick
    after their bucket (seen here: none to three in four, by load), which the model does not
    know. Never earlier; all but a few on one of those two ticks."""
    hz = config_hz()
    if hz is None:
        pytest.skip("no kernel config to read CONFIG_HZ from")
    pairs = _sleeps_and_wakings(kernel, load_scenario("timing"), {"pages_to_scan": 100, "sleep_millisecs": sleep_ms})
    assert len(pairs) >= 70  # 81 wake-ups make the pass
    tick_ms = 1000 / hz
    late = [woke - ksmd_wakes_at(round(slept * 1e6), sleep_ms, hz) / 1e6 for slept, woke in pairs]
    # the timer's softirq wakes ksmd some us after the tick; the scheduler may run it later still
    on_tick = [d for d in late if 0 <= d < 0.3]
    a_tick_late = [d for d in late if 0 <= d - tick_ms < 0.3]
    assert min(late) >= 0, sorted(late)  # never early
    # the timer softirq itself can run late beside a CPU-bound task (seen: 1 wake-up in 80)
    assert len(on_tick) + len(a_tick_late) >= 0.95 * len(late), sorted(late)
    assert len(on_tick) >= len(late) // 10, sorted(late)
