"""The Open dialog survives whatever reaches it: keys faster than it closes, and any path typed."""

from __future__ import annotations

import os
from pathlib import Path

from textual import events
from textual.widgets import Input

from ksmtui.ui.widgets.screens import OpenScreen
from tests.ui_helpers import drive, make_app, press, settle

HOSTILE = Path(__file__).parent / "hostile"


def test_two_enters_in_one_read_open_one_scenario():
    """`tmux send-keys o Enter Enter`: both Enters reach the dialog before it has closed."""

    async def test(pilot):
        await press(pilot, "o")
        screen = pilot.app.screen
        assert isinstance(screen, OpenScreen)
        screen.query_one("#open-builtins").focus()
        for _ in range(2):  # queued together, as one read of the terminal delivers them
            pilot.app.post_message(events.Key("enter", "\r"))
        await settle(pilot)
        await settle(pilot)
        assert pilot.app.is_running and not isinstance(pilot.app.screen, OpenScreen)
        assert pilot.app.view.snapshot.scenario != "ui-test"

    drive(make_app(), test, (100, 30))


def test_every_hostile_path_typed_shows_its_one_line_and_the_app_lives(tmp_path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    paths = [str(fifo), str(tmp_path / ("x" * 300 + ".toml")), "/dev/zero", "/proc/self/mem", str(tmp_path),
             "bad\x00name", *(str(p) for p in sorted(HOSTILE.glob("*.toml")))]

    async def test(pilot):
        await press(pilot, "o")
        field = pilot.app.screen.query_one("#open-path", Input)
        field.focus()
        for path in paths:
            field.value = path
            await press(pilot, "enter")
            assert isinstance(pilot.app.screen, OpenScreen), path
            error = str(pilot.app.screen.query_one("#open-error").render())
            assert error and "\n" not in error and "\x1b" not in error, (path, error)
        await press(pilot, "escape")
        assert pilot.app.is_running and pilot.app.view.snapshot.scenario == "ui-test"

    drive(make_app(), test, (100, 30))
