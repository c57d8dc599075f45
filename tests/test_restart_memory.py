"""Restarting the run (r, c, o) releases the old simulation: memory stays flat.

Measured in a fresh interpreter: each restart runs the cycle collector, whose cost grows with every
object alive in the process (in pytest's, everything the suite imported)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys, tracemalloc
sys.path.insert(0, sys.argv[1])
from ksmtui.ui.runner import Restart, Runner
from tests.ui_helpers import scenario

runner = Runner(scenario(), lambda message: None, paused=True)
tracemalloc.start()
runner.start()

def after(restarts):
    for _ in range(restarts):
        runner.send(Restart())
    assert runner.wait_idle(300), "engine did not answer"
    return tracemalloc.get_traced_memory()[0]

one = after(1)
fifty = after(49)
runner.close()
print(json.dumps([one, fifty]))
"""


def test_memory_after_50_restarts_is_within_10_percent_of_after_one():
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(Path(__file__).parent)], capture_output=True,
                            text=True, timeout=600, check=True)
    one, fifty = json.loads(result.stdout.splitlines()[-1])
    assert fifty <= one * 1.1, f"{one:,} bytes traced after one restart, {fifty:,} after 50"
