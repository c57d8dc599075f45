"""The one way the UI tests build and drive an app: a small fixed scenario, the engine paused,
commands awaited (`drive` runs a test coroutine against an app; `after` is a snapshot's run_before).

The engine starts paused and moves only by commands, so what a test sees depends on the keys it
pressed and never on the wall clock (latency comes from the cost model). Host mode's replay works
the same way. Every wait here is bounded: a regression fails with a message, it does not hang."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.app import App
from textual.css.query import NoMatches

from engine.scenario import RunConfig, parse_scenario
from ksmtui.ui.apps.host import HostApp, ReplaySource
from ksmtui.ui.apps.model import KsmApp
from ksmtui.ui.runner import StepBatch
from ksmtui.ui.widgets.panels import StatusBar

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


def drive(app: App, test: Callable[..., Awaitable[None]], size: tuple[int, int] = (120, 40)) -> App:
    """Run `await test(pilot)` against `app` in a headless terminal of `size`, once the app has
    settled; the app, for what it left behind."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await test(pilot)

    asyncio.run(main())
    return app


def _rebuilding(app: App) -> bool:
    """A new run was asked for (r, c, o; f in compare mode) and is not shown yet: KsmApp._rebuild
    sends its command only after the next refresh and a timer, so the engine may not have it yet.
    The header says so until the new run's first view (StatusBar.building)."""
    if not isinstance(app, KsmApp):
        return False
    try:
        return app.query_one(StatusBar)._building is not None  # noqa: SLF001 - the header's own state
    except NoMatches:  # the app has closed
        return False


async def settle(pilot, timeout: float = 30.0) -> None:
    """Wait until the engine (the model's runner, or a replay) has run every command sent so far and
    the UI has handled what it posted: pause() first waits for every message queued before it; and
    a new run asked for is built and shown. A live host source takes no commands: nothing to wait
    for but the UI."""
    app = pilot.app
    engine = app.runner if isinstance(app, KsmApp) else None
    if isinstance(app, HostApp) and isinstance(app.source, ReplaySource):
        engine = app.source
    deadline = time.monotonic() + timeout
    while True:
        if engine is not None:
            assert await asyncio.to_thread(engine.wait_idle), "engine did not answer"
        await pilot.pause()
        await pilot.pause()
        if not _rebuilding(app):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the new run asked for was not shown within {timeout:g} s")
        await pilot.pause(0.01)  # its command is sent on a timer


async def press(pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


async def batches(pilot, n: int) -> None:
    """n ksmd wake-ups, sent as commands (like pressing b n times, without n redraws)."""
    for _ in range(n):
        pilot.app.send(StepBatch())
    await settle(pilot)


def after(*steps: int | str):
    """A snapshot's run_before: wait for the engine, then each step: a key, or a number of batches."""

    async def run_before(pilot) -> None:
        await settle(pilot)
        for step in steps:
            if isinstance(step, int):
                await batches(pilot, step)
            else:
                await press(pilot, step)

    return run_before


def screen_text(app) -> str:
    """Every character the app's screen would send to the terminal (the composed lines)."""
    return "\n".join("".join(seg.text for seg in strip) for strip in app.screen._compositor.render_full_update().strips)


async def wait_for(pilot, ready: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Let the app run until ready() holds; fail saying `what` did not happen within timeout s."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await pilot.pause(0.05)
