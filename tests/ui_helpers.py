"""Builds the app for the UI tests: a small fixed scenario, the engine paused, commands awaited.

The engine starts paused and moves only by commands, so what a test sees depends on the keys it
pressed and never on the wall clock (latency comes from the cost model)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.scenario import RunConfig, parse_scenario
from ksmtui.ui.apps.model import KsmApp
from ksmtui.ui.runner import StepBatch

# Four guests built from one image (so there is merging, and with max_page_sharing 4 there are
# stable_node chains), a few zero pages, private pages, and one guest that keeps writing.
SCENARIO = """
name = "ui-test"
description = "four small guests from one image"
seed = 7

[ksm]
pages_to_scan = 64
max_page_sharing = 4

[[pool]]
name = "image"
pages = 40

[[process]]
name = "vm"
count = 4

[[process.region]]
name = "os"
pages = 48
fill = "pool"
pool = "image"

[[process.region]]
name = "zeroed"
pages = 8
fill = "zero"

[[process.region]]
name = "private"
pages = 16

[[event]]
action = "write"
at_ms = 50
repeat_ms = 100
process = "vm-0"
region = "private"
pages = 4

[stop]
full_scans = 30
"""


def scenario():
    return parse_scenario(SCENARIO, "ui-test.toml", Path("."))


def make_app(flow: str | None = None, speed: int | None = None) -> KsmApp:
    return KsmApp(scenario(), RunConfig(flow=flow), paused=True, speed=speed)


async def settle(pilot) -> None:
    """Wait until the engine has run every command sent so far and the UI has drawn the result."""
    assert await asyncio.to_thread(pilot.app.runner.wait_idle), "engine did not answer"
    await pilot.pause()
    await pilot.pause()


async def press(pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


async def batches(pilot, n: int) -> None:
    """n ksmd wake-ups, sent as commands (like pressing b n times, without n redraws)."""
    for _ in range(n):
        pilot.app.send(StepBatch())
    await settle(pilot)
