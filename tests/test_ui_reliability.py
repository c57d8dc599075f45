"""The live UI honours the command line's stop, and a scenario's text cannot break its header."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.scenario import RunConfig, parse_scenario
from ksmtui.ui.apps.model import KsmApp
from ksmtui.ui.runner import SetPaused
from tests.ui_helpers import SCENARIO, drive, settle


def app_of(text: str = SCENARIO, **opts) -> KsmApp:
    return KsmApp(parse_scenario(text, "ui-test.toml", Path(".")), RunConfig(**opts), paused=True)


async def run_until_it_pauses(pilot) -> None:
    pilot.app.send(SetPaused(False))
    for _ in range(2000):
        await settle(pilot)
        if pilot.app.view.paused:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the run did not pause by itself")


def test_after_ms_pauses_the_ui_where_a_headless_run_would_stop():
    async def test(pilot):
        await run_until_it_pauses(pilot)
        view = pilot.app.view
        assert view.finished and view.note.startswith("finished: after_ms reached 500")
        assert 500_000_000 <= view.snapshot.sim_ns < 600_000_000

    drive(app_of(after_ms=500), test, (80, 24))


def test_full_scans_pauses_the_ui_where_a_headless_run_would_stop():
    async def test(pilot):
        await run_until_it_pauses(pilot)
        view = pilot.app.view
        assert view.finished and view.note.startswith("finished: full_scans reached 2")
        assert view.snapshot.counters["full_scans"] == 2

    drive(app_of(full_scans=2), test, (80, 24))


def test_a_1_MB_name_leaves_the_state_on_the_header_line():
    async def test(pilot):
        status = pilot.app.query_one("#status")
        lines = [line.text for line in status.render_lines(status.region.reset_offset)]
        assert len(lines) == 1 and lines[0].startswith(" xxxx") and "… · t=" in lines[0], lines
        assert lines[0].rstrip().endswith("paused max · optimized"), lines

    drive(app_of(SCENARIO.replace('name = "ui-test"', f'name = "{"x" * 1_000_000}"')), test, (80, 24))
