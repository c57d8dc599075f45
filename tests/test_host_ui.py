"""Host mode's UI, fed from a recording of real processes merging (tests/data/host-merge.jsonl,
made by `python tests/host_helpers.py tests/data/host-merge.jsonl` as root): replay starts paused
and moves only by keys, so each screen depends on the keys pressed and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from ksmtui.host.recording import read_recording
from ksmtui.ui.apps.host import HostApp, HostKnobsScreen, ReplaySource, WhyNotScreen, process_rows
from ksmtui.ui.widgets.host import HostStatus
from ksmtui.ui.widgets.panels import TextView
from ksmtui.ui.widgets.processes import ProcessRow
from tests.ui_helpers import after, drive, press, settle, wait_for

RECORDING = Path(__file__).parent / "data" / "host-merge.jsonl"


pytestmark = pytest.mark.usefixtures("no_cursor_blink")


def make_app() -> HostApp:
    header, samples = read_recording(str(RECORDING))
    return HostApp(ReplaySource("host-merge.jsonl", samples, paused=True, kernel=header["kernel"]))


STEPS = ["s"] * 11  # to the last of the 12 samples


class TestSnapshots:
    def test_overview_at_the_end(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(120, 40), run_before=after(*STEPS))

    def test_overview_small_terminal(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(80, 24), run_before=after(*STEPS[:6]))

    def test_processes(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(120, 40), run_before=after(*STEPS, "2"))

    def test_outcomes_from_the_tracepoints(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(120, 40), run_before=after(*STEPS, "3"))

    def test_what_the_host_does_not_show(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(80, 24), run_before=after("4"))

    def test_knobs_of_a_recording_are_read_only(self, snap_compare):
        assert snap_compare(make_app(), terminal_size=(120, 40), run_before=after("k"))


def texts(app: HostApp) -> dict[str, str | None]:
    return {w.id: w._text for w in app.query(TextView)}


def test_replay_steps_pauses_and_changes_speed():
    async def test(pilot):
        status = pilot.app.query_one(HostStatus)
        assert "paused 1/12 · 1x" in status._text
        await press(pilot, "s", "s", "plus", "plus")
        assert "paused 3/12 · 5x" in status._text
        await press(pilot, "minus")
        assert "paused 3/12 · 2x" in status._text

    drive(make_app(), test)


def test_the_same_steps_give_the_same_screens():
    """Deterministic: stepping to the end shows what running through the whole recording shows."""
    screens = []

    async def stepped(pilot):
        await press(pilot, *STEPS)
        screens.append(texts(pilot.app))

    async def played(pilot):
        await pilot.press("space")  # play: the replay pauses by itself at the end
        status = pilot.app.query_one(HostStatus)
        await wait_for(pilot, lambda: "finished" in status._text, "the replay finishing")
        await settle(pilot)
        assert "finished 12/12" in status._text
        screens.append(texts(pilot.app))

    drive(make_app(), stepped)
    fast = make_app()
    fast.source.speed = 50.0
    drive(fast, played)
    first, again = screens
    assert again.pop("status").replace("50x", "1x") == first.pop("status")
    assert again == first


def test_enter_on_a_process_of_a_recording_says_smaps_is_live_only():
    async def test(pilot):
        await press(pilot, *STEPS, "2", "enter")
        assert isinstance(pilot.app.screen, WhyNotScreen)
        assert "a recording does not hold it" in str(pilot.app.screen.query_one("#why-text").render())

    drive(make_app(), test)


def test_knobs_screen_of_a_recording_cannot_write():
    async def test(pilot):
        await press(pilot, "k")
        assert isinstance(pilot.app.screen, HostKnobsScreen)
        assert all(field.disabled for field in pilot.app.screen.query(Input))

    drive(make_app(), test)


def test_rows_of_a_sample_for_the_processes_table():
    rows = process_rows({
        "7": {"comm": "qemu", "ksm_rmap_items": 10, "ksm_merging_pages": 5, "ksm_process_profit": -4,
              "ksm_merge_any": "yes", "ksm_mergeable": "yes"},  # a kernel without ksm_zero_pages
        "9": {"comm": "sshd", "error": "ksm_stat: Permission denied"},
    })
    assert rows == [
        ProcessRow(7, "qemu", True, True, 10, 5, None, -4),
        ProcessRow(9, "sshd [ksm_stat: Permission denied]"),
    ]


@pytest.mark.kernel
def test_knobs_screen_writes_the_host_after_confirming_and_shows_the_kernels_refusal(kernel):
    from textual.widgets import Label

    from ksmtui.host import sysfs
    from ksmtui.host.sampler import HostSampler
    from ksmtui.ui.apps.host import LiveSource

    async def test(pilot):
        app = pilot.app
        await wait_for(pilot, lambda: app.view is not None, "the first sample")
        await pilot.press("k")
        screen = app.screen
        assert isinstance(screen, HostKnobsScreen)

        async def write(name: str, value: str) -> str:
            field = screen.query_one(f"#knob-{name}", Input)
            field.focus()
            await pilot.pause()  # focused: the samples no longer refresh the field
            field.value = value
            await pilot.press("enter")
            assert "? y / n" in str(screen.query_one("#knobs-confirm", Label).render())
            await pilot.press("y")
            await wait_for(pilot, lambda: "waiting" not in str(screen.query_one("#knobs-confirm", Label).render()),
                           f"the write of {name}")
            return str(screen.query_one(f"#knob-error-{name}", Label).render())

        assert await write("pages_to_scan", "700") == "EINVAL: Invalid argument"
        assert sysfs.ksm_read("pages_to_scan") != "700"
        assert await write("advisor_mode", "none") == ""
        assert sysfs.ksm_read("advisor_mode") == "[none] scan-time"

    sysfs.ksm_write("advisor_mode", "scan-time")  # the kernel now refuses pages_to_scan (EINVAL)
    drive(HostApp(LiveSource(HostSampler(0.1, trace=False))), test)
