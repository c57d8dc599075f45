"""Host mode's UI, fed from a recording of real processes merging (tests/data/host-merge.jsonl,
made by `python tests/host_helpers.py tests/data/host-merge.jsonl` as root): replay starts paused
and moves only by keys, so each screen depends on the keys pressed and nothing else."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import Input

from engine.scenario import printable
from ksmtui.host.recording import read_recording
from ksmtui.text.knobs import knob_help
from ksmtui.text.units import MIB
from ksmtui.ui.apps.host import HostApp, HostKnobsScreen, ReplaySource, WhyNotScreen, process_rows
from ksmtui.ui.widgets.groups import GroupTable
from ksmtui.ui.widgets.host import HostNote, HostStatus
from ksmtui.ui.widgets.panels import TextView
from ksmtui.ui.widgets.processes import ProcessRow, ProcessTable
from ksmtui.ui.widgets.screens import KnobHelp
from tests.ui_helpers import after, drive, press, screen_text, settle, wait_for

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
    app = make_app()

    async def test(pilot):
        status = app.query_one(HostStatus)
        assert "paused 1/12 · 1x" in status._text
        for key in ("s", "s", "plus", "plus"):
            await pilot.press(key)
            await settle(pilot)
        assert "paused 3/12 · 5x" in status._text
        await pilot.press("minus")
        await settle(pilot)
        assert "paused 3/12 · 2x" in status._text

    drive(app, test, (120, 40))


def test_seek_back_and_forth_shows_what_playing_to_there_shows():
    """] and [ move 10 samples, End and Home to the last and the first: the screen at a sample is
    the one stepping to it gives, whichever way it was reached."""
    screens = {}

    async def stepped(pilot):
        await press(pilot, *STEPS[:1])
        screens[2] = texts(pilot.app)
        await press(pilot, *STEPS[1:])
        screens[12] = texts(pilot.app)

    async def test(pilot):
        app = pilot.app
        status = app.query_one(HostStatus)
        await press(pilot, "right_square_bracket")
        assert "paused 11/12" in status._text
        await press(pilot, "right_square_bracket")
        assert "finished 12/12" in status._text and texts(app) == screens[12]
        await press(pilot, "home")
        assert "paused 1/12" in status._text
        await press(pilot, "end", "left_square_bracket")
        assert texts(app) == screens[2]
        assert "[ ] Seek" in " ".join(str(w.render()) for w in app.query("FooterKey"))

    drive(make_app(), stepped)
    drive(make_app(), test)


def test_the_palette_lists_the_apps_own_keys_with_what_they_do():
    """Replay: every key of the app but quit (Textual's own), described; live: not step, seek or
    speed, which a live host does not have."""
    class Live:  # a live source that never samples
        live = True

        def start(self, post) -> None:
            pass

        def close(self) -> None:
            pass

    async def replay(pilot):
        app = pilot.app
        ours = [c for c in app.get_system_commands(app.screen)
                if c.title.startswith(tuple(f"{b.description} (" for b in HostApp.BINDINGS))]
        assert {c.title for c in ours} >= {"Seek ([ ])", "Step (s)", "Rewind (home)", "Knobs (k)", "Overview (1)"}
        assert all(c.help and c.help != c.title.split(" (")[0] for c in ours)
        ran: list[str] = []
        app.run_action = ran.append  # type: ignore[method-assign]
        for c in ours:
            c.callback()
        assert set(ran) == {b.action for b in HostApp.BINDINGS} - {"quit"}

    async def live(pilot):
        titles = {c.title.split(" (")[0] for c in pilot.app.get_system_commands(pilot.app.screen)}
        assert {"Knobs", "Pause", "Overview"} <= titles and not titles & {"Step", "Seek", "Speed", "Rewind"}

    drive(make_app(), replay)
    drive(HostApp(Live()), live)  # type: ignore[arg-type]


def test_a_recording_cut_short_says_so_under_the_status():
    header, samples = read_recording(str(RECORDING))
    note = "line 14 cut short (the host stopped mid-write): the 12 samples before it"

    async def test(pilot):
        assert str(pilot.app.query_one(HostNote).render()).startswith(note + "\n")

    drive(HostApp(ReplaySource("host-merge.jsonl", samples, paused=True, kernel=header["kernel"], note=note)), test,
          (80, 24))


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
    app = make_app()

    async def test(pilot):
        await press(pilot, *STEPS, "2", "enter")
        assert isinstance(app.screen, WhyNotScreen)
        assert "a recording does not hold it" in str(app.screen.query_one("#why-text").render())

    drive(app, test, (120, 40))


def test_run_0_is_explained_in_the_status_the_note_and_the_why_not_dialog():
    app = make_app()

    async def test(pilot):
        await press(pilot, *STEPS[:5])  # sample 6: run=1, nothing merged yet
        assert "not merging" not in app.query_one(HostStatus)._text
        assert "run=0" not in str(app.query_one(HostNote).render())
        await press(pilot, *STEPS[5:])  # the last sample: run=0
        assert app.query_one(HostStatus)._text.endswith(" · not merging: run=0")
        assert "why not merging: ksmd is stopped (run=0)" in str(app.query_one(HostNote).render())
        await press(pilot, "2", "enter")
        assert isinstance(app.screen, WhyNotScreen)
        assert str(app.screen.query_one("#why-text").render()).startswith("machine-wide: ksmd is stopped (run=0)")

    drive(app, test, (120, 40))


def group_rows(app: HostApp) -> list[list[str]]:
    table = app.query_one(GroupTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def test_g_groups_the_processes_of_a_recording_without_units_and_enter_lists_a_group():
    app = make_app()
    last = read_recording(str(RECORDING))[1][-1].processes
    profit = sum(r["ksm_process_profit"] for r in last.values())
    rmap = sum(r["ksm_rmap_items"] for r in last.values())
    merging = sum(r["ksm_merging_pages"] for r in last.values())
    zero = sum(r["ksm_zero_pages"] for r in last.values())

    async def test(pilot):
        await press(pilot, "2", "g")  # the first sample: no process known to KSM yet, no group
        assert app.group_by == "vm" and app.query_one(GroupTable).display and group_rows(app) == []
        await press(pilot, *["g"] * 5)  # container, unit, cgroup, comm, and back to pid
        await press(pilot, *STEPS)
        table = app.query_one(ProcessTable)
        assert table.row_count == 3 and table.row_cells(0)[-1] == "-"  # recorded before units
        await press(pilot, "g")
        assert app.group_by == "vm" and not table.display
        totals = [f"{rmap:,}", f"{merging:,}", f"{zero:,}", f"{profit / MIB:,.1f}"]
        assert group_rows(app) == [["(no vm)", "3", *totals]]  # no "unreadable": root read them all
        await press(pilot, "enter")
        assert table.display and table.row_count == 3 and table.has_focus
        assert "vm (no vm) · Esc: back" in str(app.query_one("#processes-hint").render())
        await press(pilot, "escape")
        assert app.query_one(GroupTable).display and app.group_open is None
        await press(pilot, "g", "g", "g", "g")  # container, unit, cgroup, comm
        assert app.group_by == "comm" and [r[:2] for r in group_rows(app)] == [["python", "3"]]
        await press(pilot, "g")
        assert app.group_by == "pid" and table.display and table.row_count == 3

    drive(app, test, (120, 40))


def test_groups_of_a_recording_with_units_carry_the_names_escaped(tmp_path):
    from ksmtui.host.recording import Recorder
    from ksmtui.host.units import Unit

    header, samples = read_recording(str(RECORDING))
    units = {"27347": Unit(27347, vm="win" + ESC, cgroup="/machine.slice/machine-qemu\\x2d1\\x2dwin.scope"),
             "27348": Unit(27348, vm="linux", unit="linux.scope", cgroup="/machine.slice/linux.scope"),
             "27349": Unit(27349, container_id="a" * 64, container_name="web", runtime="docker",
                           unit="docker-" + "a" * 64 + ".scope", cgroup="/system.slice/docker-" + "a" * 64 + ".scope")}
    path = tmp_path / "units.jsonl"
    recorder = Recorder(str(path), 0.1)
    for s in samples:
        recorder.add(replace(s, processes={pid: {**row, "unit": units[pid].to_json()}
                                           for pid, row in s.processes.items()}))
    recorder.close()
    header, samples = read_recording(str(path))
    last = samples[-1].processes
    app = HostApp(ReplaySource("units.jsonl", samples, paused=True, kernel=header["kernel"]))

    async def test(pilot):
        await press(pilot, *STEPS, "2")
        cells = {app.query_one(ProcessTable).row_cells(i)[0]: app.query_one(ProcessTable).row_cells(i)[-1]
                 for i in range(3)}
        assert cells["27347"].startswith(f"vm {printable('win' + ESC)} · cgroup /machine.slice/")
        assert cells["27349"].startswith("container docker/web · unit docker-aaaa")
        await press(pilot, "g")
        rows = group_rows(app)
        assert {r[0]: r[1] for r in rows} == {printable("win" + ESC): "1", "linux": "1", "(no vm)": "1"}
        assert sum(int(r[2].replace(",", "")) for r in rows) == sum(r["ksm_rmap_items"] for r in last.values())
        await press(pilot, "g")
        assert {r[0] for r in group_rows(app)} == {"docker/web", "(no container)"}
        await press(pilot, "down")
        target = group_rows(app)[app.query_one(GroupTable).cursor_row][0]
        await press(pilot, "enter")
        pids = {app.query_one(ProcessTable).row_cells(i)[0] for i in range(app.query_one(ProcessTable).row_count)}
        assert pids == ({"27349"} if target == "docker/web" else {"27347", "27348"})
        await press(pilot, "enter")  # a process of the group: why not merging, as ungrouped
        assert isinstance(app.screen, WhyNotScreen)
        await press(pilot, "escape", "escape")
        assert app.group_open is None and app.query_one(GroupTable).display
        # by cgroup at 80 columns: a path too long for what the numbers leave ends at a "/" with "…",
        # nothing runs past the edge, and no "unreadable" column (root read every ksm_stat)
        await press(pilot, "g", "g")
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        table = app.query_one(GroupTable)
        names = [r[0] for r in group_rows(app)]
        docker = next(n for n in names if n.startswith("/system.slice/"))
        assert docker == "/system.slice/…" and table.max_scroll_x == 0 and table.ordered_columns[-1].label.plain \
            == "profit MiB"

    drive(app, test, (160, 40))


def test_knobs_screen_of_a_recording_cannot_write():
    app = make_app()

    async def test(pilot):
        await press(pilot, "k")
        screen = app.screen
        assert isinstance(screen, HostKnobsScreen)
        assert not screen.query(Input)  # no field to type into
        # yet Tab goes from knob to knob, and the dialog says what the focused one means
        help_text = screen.query_one(KnobHelp)
        assert screen.focused.name == "run" and str(help_text.render()) == knob_help("run")
        await press(pilot, "tab")
        assert screen.focused.name == "pages_to_scan" and str(help_text.render()) == knob_help("pages_to_scan")
        await press(pilot, "1", "enter", "y")
        assert str(screen.query_one("#knobs-confirm").render()) == "" and screen.focused.name == "pages_to_scan"

    drive(app, test, (80, 24))


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
            field = screen.query_one(f"#knob-{screen._index(name)}", Input)
            field.focus()
            await pilot.pause()  # focused: the samples no longer refresh the field
            field.value = value
            await pilot.press("enter")
            assert "? y / n" in str(screen.query_one("#knobs-confirm", Label).render())
            await pilot.press("y")
            await wait_for(pilot, lambda: "waiting" not in str(screen.query_one("#knobs-confirm", Label).render()),
                           f"the write of {name}")
            return str(screen.query_one(f"#knob-error-{screen._index(name)}", Label).render())

        assert await write("pages_to_scan", "700") == "EINVAL: Invalid argument"
        assert sysfs.ksm_read("pages_to_scan") != "700"
        assert await write("advisor_mode", "none") == ""
        assert sysfs.ksm_read("advisor_mode") == "[none] scan-time"

    sysfs.ksm_write("advisor_mode", "scan-time")  # the kernel now refuses pages_to_scan (EINVAL)
    drive(HostApp(LiveSource(HostSampler(0.1, trace=False))), test)


def test_knobs_screen_opens_on_run_in_the_models_order_and_writes_only_after_y():
    from textual.widgets import Label

    app = make_app()
    app._knobs_writable = lambda: None  # as if live and root: nothing is written without y

    async def test(pilot):
        await press(pilot, "k")
        screen = app.screen
        assert isinstance(screen, HostKnobsScreen)
        names = [str(label.render()) for label in screen.query(".knob-name")]
        assert names[:3] == ["run", "pages_to_scan", "sleep_millisecs"]
        assert screen.focused is screen.query_one("#knob-0", Input)
        await pilot.press("1", "enter")  # the value shown is selected: typing replaces it
        assert str(screen.query_one("#knobs-confirm", Label).render()) == \
            "write '1' to /sys/kernel/mm/ksm/run on this machine? y / n"
        await pilot.press("n")
        assert str(screen.query_one("#knobs-confirm", Label).render()) == "not written"

    drive(app, test, (120, 40))


def test_a_replay_says_what_it_shows_and_what_no_longer_holds():
    app = make_app()

    async def test(pilot):
        await press(pilot, *STEPS)
        assert app.query_one("#host-knobs").border_title == "knobs, as recorded"  # no "k to change"
        assert "seconds since boot" in app.query_one("#host-events").border_title
        counters = app.query_one("#host-counters")
        assert counters.border_subtitle.startswith("sparklines: the last ")
        assert "ksm_swpin_copy (vmstat)" in str(counters.query_one("#host-counters-text").render())
        # The recording ends with run=0: the old passes no longer say it settled.
        assert texts(app)["host-scan-text"].split("\n")[-1] == "convergence: - (ksmd is not scanning: run 0)"

    drive(app, test, (80, 24))


def test_live_the_footer_does_not_offer_step_or_speed():
    app = make_app()

    async def test(pilot):
        assert app.check_action("step", ()) and app.check_action("speed", (1,))
        type(app.source).live = True  # the live source's answer, on this replay's source
        try:
            assert not app.check_action("step", ()) and not app.check_action("speed", (1,))
            assert app.check_action("knobs", ())
        finally:
            type(app.source).live = False

    drive(app, test, (120, 40))


def test_why_not_shows_the_profit_in_mib_as_the_row_does_and_a_dash_for_no_ratio():
    from ksmtui.ui.apps.host import why_not_lines
    from ksmtui.ui.widgets.processes import ProcessTable

    lines = why_not_lines("7", {"comm": "qemu", "ksm_process_profit": 3 * 1048576,
                                "unit": {"vm": "vm2", "cgroup": "/"}}, live=False)
    assert "  ksm_process_profit 3.00 MiB (3,145,728 bytes)" in lines
    assert "  belongs to vm vm2 · cgroup /" in lines  # as the table says it, not a dict's repr
    # this process's own smaps: the figures first, the reason after (a narrow dialog wraps words)
    lines = why_not_lines(str(os.getpid()), {"comm": "python"}, live=True)
    head = lines.index(f"memory, from /proc/{os.getpid()}/smaps: mappings, size, what KSM can do with it")
    assert lines[head + 1:] and all(re.fullmatch(r" +[0-9,]+ +[0-9,.]+ MiB  \S.*", line) for line in lines[head + 1:])
    table = ProcessTable(4096)
    assert table._ratio_cell(ProcessRow(1, "idle", True, True, 0, 0, 0, 0)) == ("-", None)
    assert table._ratio_cell(ProcessRow(2, "busy", True, True, 10, 0, 0, 0))[0].startswith("∞")


def test_an_efault_among_the_failures_is_explained():
    from ksmtui.ui.widgets.host import _err_notes

    assert _err_notes({"ksm_merge_one_page -14": 3})[0].startswith("  EFAULT: try_to_merge_one_page()'s catch-all")
    assert _err_notes({"ksm_merge_one_page -16": 1}) == []


ESC = "\x1b]0;PWN\x07\x1b[2J\x9b"  # sets a terminal's title and clears its screen (C1 CSI too)


def escape_recording(path) -> None:
    """host-merge.jsonl with escapes in every string a recording holds: the header's kernel, knob
    names and values, counter names, comms, a process's error and unit, trace events and notes."""
    lines = RECORDING.read_text().splitlines()
    head = json.loads(lines[0])
    head["kernel"] = "6.1" + ESC
    out = [json.dumps(head)]
    for n, text in enumerate(lines[1:]):
        s = json.loads(text)
        s["knobs"]["my knob" + ESC] = "v" + ESC
        s["knobs"]["advisor_mode"] = "none" + ESC
        s["ksm"]["counter" + ESC] = 1
        s["vmstat"]["vm" + ESC] = 1
        for row in s["processes"].values():
            row["comm"] = "comm" + ESC
            row["unit"] = {"unit": "u" + ESC + ".service", "cgroup": "/c" + ESC}
        s["processes"]["4242"] = {"comm": "gone" + ESC, "error": "err" + ESC}
        if n % 2:
            s["trace"] = None
            s["trace_note"] = "note" + ESC
        else:
            s["trace"] = {"counts": {"ksm_enter" + ESC: 1}, "merges": {}, "errors": {"e" + ESC: 1},
                          "passes": [], "advisor": [], "events": [[1.0 + n, "ksm_enter" + ESC, "mm " + ESC]]}
        out.append(json.dumps(s))
    path.write_text("\n".join(out) + "\n")


def no_control(text: str) -> bool:
    return not any(ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) <= 0x9F for c in text)


def test_a_recording_with_escapes_everywhere_is_shown_escaped(tmp_path):
    path = tmp_path / "escapes.jsonl"
    escape_recording(path)
    header, samples = read_recording(str(path))

    async def test(pilot):
        seen = []
        for keys in ((), ("s",), ("3",), ("2",), ("enter",), ("escape", "k"), ("escape", "g", "g", "g"), ("enter",)):
            for key in keys:
                await pilot.press(key)
            await settle(pilot)
            seen.append(screen_text(pilot.app))
        shown = "\n".join(seen)
        assert no_control(shown), repr(next(c for c in shown if not no_control(c)))
        assert "\\x1b]0;PWN\\x07" in shown  # the escapes are there, as text
        assert "my knob" in shown  # the knobs screen drew the odd name (no BadIdentifier)

    drive(HostApp(ReplaySource("escapes" + ESC + ".jsonl", samples, paused=True, kernel=header["kernel"])), test,
          (160, 50))


def test_ctrl_c_quits_with_status_130():
    app = make_app()

    async def test(pilot):
        await pilot.press("ctrl+c")
        await pilot.pause()

    drive(app, test, (120, 40))
    assert app.return_code == 130


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_quits_the_replay_with_128_plus_its_number(sig):
    """On a real terminal (a pty): the app draws, the signal arrives, the app quits with 128 + sig."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: ksmtui replay on the pty
        os.execv(sys.executable, [sys.executable, "-m", "ksmtui", "replay", str(RECORDING)])
    status = None
    try:
        seen = b""
        deadline = time.monotonic() + 30
        while b"ksmtui replay" not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                seen += os.read(fd, 65536)
        assert b"ksmtui replay" in seen
        os.kill(pid, sig)
        while time.monotonic() < deadline:  # drain the pty until the child exits
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal, it is exiting
                    status = os.waitpid(pid, 0)[1]
                    break
            done, waited = os.waitpid(pid, os.WNOHANG)
            if done:
                status = waited
                break
    finally:
        if status is None:  # not reaped: still ours to kill
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert status is not None, "the replay did not quit"
    assert os.waitstatus_to_exitcode(status) == 128 + sig


def test_the_header_alerts_in_the_warning_colour_while_profit_is_negative_or_ksmd_above_its_limit():
    """The recording's own general_profit (below 0 in samples 3 to 5, before the first merges pay
    for their rmap_items), and a ksmd made to use 80% of a CPU until sample 7 and nothing after:
    above the host's advisor_max_cpu (70) while the 1 s window holds mostly the busy part."""
    from ksmtui.ui.widgets.host import HostAlerts

    header, samples = read_recording(str(RECORDING))
    t0, ns0 = samples[0].time, samples[0].ksmd["cpu_ns"]
    busy = [replace(s, ksmd={**s.ksmd, "cpu_ns": ns0 + int(min(s.time - t0, samples[6].time - t0) * 0.8e9)})
            for s in samples]
    app = HostApp(ReplaySource("busy.jsonl", busy, paused=True, kernel=header["kernel"]))
    cpu = "⚠ ksmd CPU 80.0% of a CPU, above 70% (advisor_max_cpu)"
    profit = "⚠ general_profit -1 KiB: KSM costs more memory than it saves"

    async def test(pilot):
        alerts = app.query_one(HostAlerts)
        seen = []
        for _ in range(len(busy)):
            seen.append(str(alerts.render()).split("\n") if alerts.display else [])
            await press(pilot, "s")
        assert seen[0] == [] and seen[1] == [cpu] and seen[2] == [profit, cpu]
        assert seen[5] == [cpu] and seen[-1] == []  # profit back above 0; the window's CPU 44%
        # the status line at 80 columns: one line, every word whole (it had lost "run=0" of
        # "not merging: run=0" and read "· not"); narrower, the "not merging" codes go first, as
        # the note under it says them in full
        status = app.query_one(HostStatus)._text
        assert status == " replay busy.jsonl · 19:52:23Z · finished 12/12 · 1x · not merging: run=0"
        await pilot.resize_terminal(60, 24)
        await settle(pilot)
        assert app.query_one(HostStatus)._text == " replay busy.jsonl · 19:52:23Z · finished 12/12 · 1x"
        await pilot.resize_terminal(120, 40)
        await settle(pilot)
        assert app.query_one(HostStatus)._text.startswith(" ksmtui replay · busy.jsonl · ")
        await press(pilot, "home", "s", "s")
        assert alerts.display and alerts.styles.background.hex.upper() == app.get_css_variables()["warning"].upper()
        assert [a["alert"] for a in app.view.alerts] == ["negative_profit", "ksmd_cpu"]

    drive(app, test, (80, 24))
