"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def kernel():
    """The real /sys/kernel/mm/ksm, for one test at a time, back at its defaults afterwards (also
    when the test fails). Skips, saying why, where it is not writable."""
    from ksmtui.kernel import run as real

    reason = real.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with real.machine_lock():
        real.restore_defaults()
        try:
            yield real
        finally:
            real.restore_defaults()


@pytest.fixture
def no_cursor_blink(monkeypatch):
    """A text field's cursor stays drawn: its blinking on a timer would make screens differ."""
    from textual.widgets import Input

    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
