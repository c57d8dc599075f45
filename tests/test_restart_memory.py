"""Restarting the run (r, c, o) releases the old simulation: memory stays flat."""

from __future__ import annotations

import tracemalloc

from ui_helpers import scenario

from ksmtui.ui.runner import Runner


def test_memory_after_50_restarts_is_within_10_percent_of_after_one():
    runner = Runner(scenario(), lambda message: None, paused=True)
    tracemalloc.start()
    try:
        runner.start()

        def after(restarts: int) -> int:
            for _ in range(restarts):
                runner.send("restart")
            assert runner.wait_idle(), "engine did not answer"
            return tracemalloc.get_traced_memory()[0]

        one = after(1)
        fifty = after(49)
    finally:
        runner.close()
        tracemalloc.stop()
    assert fifty <= one * 1.1, f"{one:,} bytes after one restart, {fifty:,} after 50"
