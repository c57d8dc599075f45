"""ksmd's pacing on the real kernel, as engine/timeline.py models it: the timer fires on a tick,
msecs_to_jiffies(sleep_millisecs) + 1 ticks after the tick its scan ended in.

The wake-ups are read from sched_waking of ksmd (the timer's wake_up_process) in a tracefs instance
of our own; their median period is robust to the machine's load (a preempted ksmd makes a few
periods a tick longer, never the median)."""

from __future__ import annotations

import os
import re
import statistics

import pytest

from engine.scenario import load_scenario
from engine.timeline import ksmd_wakes_at
from ksmtui.bench.calibrate import config_hz
from ksmtui.host.sysfs import TRACEFS, ksmd_pid, mount_tracefs


def _wakings(kernel, scenario, overrides) -> list[float]:
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
            (inst / "events/sched/sched_waking/enable").write_text("1")
            run.start()
            run.run(full_scans=1)
            text = (inst / "trace").read_text()
        finally:
            (inst / "events/sched/sched_waking/enable").write_text("0")
            inst.rmdir()
    return [float(t) * 1e3 for t in re.findall(r"\s(\d+\.\d+): sched_waking:", text)][1:]  # [0]: run=1's


@pytest.mark.kernel
@pytest.mark.parametrize("sleep_ms", [10, 20, 50])
def test_ksmd_wakes_every_msecs_to_jiffies_plus_one_tick_on_a_tick(kernel, sleep_ms):
    hz = config_hz()
    if hz is None:
        pytest.skip("no kernel config to read CONFIG_HZ from")
    wakes = _wakings(kernel, load_scenario("timing"), {"pages_to_scan": 100, "sleep_millisecs": sleep_ms})
    assert len(wakes) >= 70  # 81 wake-ups make the pass
    period = statistics.median(b - a for a, b in zip(wakes, wakes[1:], strict=False))
    modelled = ksmd_wakes_at(100_000, sleep_ms, hz) / 1e6  # a scan of 0.1 ms from a tick
    assert abs(period - modelled) < 0.2, (period, modelled)
    tick_ms = 1000 / hz
    phase = statistics.median(min(w % tick_ms, tick_ms - w % tick_ms) for w in wakes)
    assert phase < 0.2  # on the tick (the monotonic clock's ticks start at 0)
