"""Shared fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

import pytest
from hypothesis import HealthCheck, settings

# Property tests: "ci" keeps the suite within its time (CI and every run of the suite), "deep" is
# for a run by hand: HYPOTHESIS_PROFILE=deep python -m pytest tests/test_engine_properties.py
_PROPERTIES = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=150, **_PROPERTIES)
settings.register_profile("deep", max_examples=5000, **_PROPERTIES)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A suite started in the background of a script (`cmd &`, nohup) inherits SIGINT or SIGHUP
# ignored, and so would every ksmtui the tests start: the tests that send those signals would see
# them ignored. Children inherit an ignored signal but not a handler, so this gives them the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _interpreted_hashes() -> tuple[subprocess.Popen, IO[str]]:
    """Every result hash once more on the interpreted engine (tests/test_compiled.py): half a minute
    of one core, in a process of its own, its output in a file (a pipe nobody reads would stall it)."""
    out = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "tests.result_hashes"], cwd=Path(__file__).resolve().parent.parent,
                            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "KSMTUI_PURE": "1"})
    return proc, out


_HASHES = pytest.StashKey[tuple[subprocess.Popen, IO[str]]]()


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(config, items):
    """The suite keeps one core busy and the other mostly idle: a test that asks for the interpreted
    hashes has them started now, beside the rest, and only waits for what is left of them."""
    import engine

    if engine.compiled() and any("interpreted_hashes" in getattr(item, "fixturenames", ()) for item in items):
        proc, _ = config.stash[_HASHES] = _interpreted_hashes()
        config.add_cleanup(proc.kill)


@pytest.fixture
def interpreted_hashes(pytestconfig) -> str:
    """What `python -m tests.result_hashes` printed on the interpreted engine (started when the suite
    was collected), once it exited 0."""
    proc, out = pytestconfig.stash.get(_HASHES, None) or _interpreted_hashes()
    returncode = proc.wait(timeout=280)
    out.seek(0)
    text = out.read()
    assert returncode == 0, text[-5000:]
    return text


@pytest.fixture(autouse=True)
def _pinned_costs(tmp_path_factory, monkeypatch):
    """Every test runs on the reference cost profile: a profile `ksmtui calibrate` saved in the real
    ~/.cache/ksmtui would change the model's clock and CPU. A test that wants one saves
    it with ksmtui.host.costs (in a temporary directory of its own)."""
    from ksmtui.host import costs

    path = tmp_path_factory.mktemp("cache") / "ksmtui" / "ksmd-costs.json"  # the profile: beside it
    real, env = costs.cache_file, os.environ.get("XDG_CACHE_HOME")
    # a test that sets XDG_CACHE_HOME itself gets the file there; vmlab's cache stays where it is
    monkeypatch.setattr(costs, "cache_file", lambda: real() if os.environ.get("XDG_CACHE_HOME") != env else path)


@pytest.fixture(autouse=True, scope="session")
def _textual_idle_sampled_finely():
    """Textual's Pilot (every key it presses, every pause) waits for the app to be idle by sampling
    this process's CPU time in windows of 20 ms until one is under 5% busy: 20 ms at least, ~45 ms
    on average, half of the UI tests' time. Sampled in 5 ms windows at the same 5%, it sees the
    same idleness sooner. What the tests see does not hang on it: ui_helpers.settle waits for the
    engine and for the app's message queues (tests/ui_helpers.py)."""
    import textual._wait as wait

    saved = wait.SLEEP_GRANULARITY, wait.SLEEP_IDLE
    wait.SLEEP_GRANULARITY = 1 / 200
    wait.SLEEP_IDLE = wait.SLEEP_GRANULARITY / 20
    yield
    wait.SLEEP_GRANULARITY, wait.SLEEP_IDLE = saved


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


@pytest.fixture(scope="session")
def _vm_lab_prepared():
    import vmlab

    try:
        return vmlab.VMLab()
    except vmlab.LabUnavailable as e:
        pytest.skip(f"no VM lab here: {e}")


@pytest.fixture
def vm_lab(_vm_lab_prepared):
    """tests/vmlab.py's lab (packages, kernel and initramfs ready; skips saying why where they cannot
    be had): `with vm_lab.boot({"name": [vmlab.byte(0x5a, 64)]}) as guests: ...`. Every guest still
    running when the test ends, however it ends, is killed."""
    try:
        yield _vm_lab_prepared
    finally:
        _vm_lab_prepared.close()
