"""Host mode's UI: the host's own ksmd, live (`ksmtui host`) or from a recording (`ksmtui replay`).

The seam with the model's UI is the stream of views: the model's app draws the EngineViews its
Runner posts; this app draws the HostViews a source posts (HostUpdate), with the same Panel and
TextView widgets, layout rules and keys where they mean the same thing. A source owns a thread:
the live one samples (ksmtui.host.sampler.HostSampler), the replay one plays samples at their
recorded pace times the speed. Either feeds a HostHistory, so a recording replays to the views
it was recorded with.
"""

from __future__ import annotations

import asyncio
import errno
import os
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import replace

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static, TabbedContent, TabPane

from engine.knobs import KSM_KNOBS, KnobError
from engine.scenario import printable
from ksmtui.host import sysfs
from ksmtui.host.recording import REPLAY_SPEEDS, Sinks
from ksmtui.host.sampler import HostSample, HostSampler, why_not_merging
from ksmtui.host.units import Unit, group_totals
from ksmtui.host.view import HostHistory, HostView, knobs_in_order
from ksmtui.text.units import MIB
from ksmtui.ui.base import BaseApp
from ksmtui.ui.widgets.groups import GroupTable
from ksmtui.ui.widgets.host import (
    HostAlerts,
    HostCountersPanel,
    HostEventsPanel,
    HostKnobsPanel,
    HostNote,
    HostOutcomesPanel,
    HostScanPanel,
    HostStatus,
    NotExposedPanel,
    SavingsPanel,
)
from ksmtui.ui.widgets.panels import Panel, shown
from ksmtui.ui.widgets.processes import ProcessRow, ProcessTable
from ksmtui.ui.widgets.screens import KnobHelp


class HostUpdate(Message):
    """The newest view; a newer one replaces any still queued."""

    def __init__(self, view: HostView) -> None:
        super().__init__()
        self.view = view

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, HostUpdate)


Post = Callable[[Message], object]  # App.post_message, which may be called from any thread


def _not_started(message: Message) -> object:
    raise RuntimeError("a source posts only once start() has given it the app's post_message")


class LiveSource:
    """Samples on the sampler's thread; each sample is recorded (--record) and made a view there."""

    live = True

    def __init__(self, sampler: HostSampler, recorder: Sinks | None = None, alert_cpu: float | None = None) -> None:
        self.sampler = sampler
        self.recorder = recorder
        self.history = HostHistory("live", alert_cpu=alert_cpu)
        self._post: Post = _not_started

    def start(self, post: Post) -> None:
        self._post = post
        self.sampler.start(self._add)

    def _add(self, sample: HostSample) -> None:
        state = f"sampling every {self.sampler.interval:g} s"
        if self.recorder is not None:
            self.recorder.add(sample)
            failed = self.recorder.failed
            if failed is not None:  # a full disk: the file stops, sampling goes on
                state += f" · {failed.option} stopped: {failed.error}"
        self.history.add(sample)
        self._post(HostUpdate(self.history.view(state=state)))

    def send(self, command: str, value: object = None) -> None:
        pass  # nothing to steer: the host's ksmd runs on its own

    def close(self) -> None:
        self.sampler.close()


class ReplaySource:
    """Plays a recording: paused, step (one sample), speed; at the recorded spacing of the samples
    divided by the speed. What is shown after sample i depends on samples 0..i only."""

    live = False

    def __init__(self, label: str, samples: list[HostSample], speed: float = 1.0, paused: bool = False,
                 kernel: str = "?", note: str = "", alert_cpu: float | None = None) -> None:
        self.samples = samples
        self._label, self._kernel, self._alert_cpu = label, kernel, alert_cpu
        self.note = note
        self.history = HostHistory(label, kernel, alert_cpu)
        self.speed = speed
        self.paused = paused
        self._next = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="ksm-replay", daemon=True)
        self._post: Post = _not_started

    def start(self, post: Post) -> None:
        self._post = post
        self._thread.start()

    def send(self, command: str, value: object = None) -> None:
        """toggle, step, speed (+1/-1), seek (samples, + or -), sync (an Event, set once every command
        before it ran)."""
        self._queue.put((command, value))

    def close(self) -> None:
        if self._thread.is_alive():
            self.send("quit")
            self._thread.join(timeout=5)

    def _state(self) -> str:
        if self._next >= len(self.samples):
            return "finished"
        return "paused" if self.paused else "replaying"

    def _feed(self) -> None:
        self.history.add(self.samples[self._next])
        self._next += 1
        if self._next >= len(self.samples):
            self.paused = True

    def _seek(self, by: int) -> None:
        """To sample next+by (at least the first, at most the last): back means replaying from the
        first sample, so that the view is the one the samples up to there make."""
        target = max(1, min(len(self.samples), self._next + by))
        if target < self._next:
            self.history = HostHistory(self._label, self._kernel, self._alert_cpu)
            self._next = 0
        while self._next < target:
            self._feed()

    def _publish(self) -> None:
        if self.history.count:
            self._post(HostUpdate(self.history.view(
                state=self._state(), speed=f"{self.speed:g}x", position=f"{self._next}/{len(self.samples)}",
                note=self.note)))

    def _main(self) -> None:
        self._feed()  # the first sample shows at once, even paused
        self._publish()
        while True:
            timeout = None
            if not self.paused:
                gap = self.samples[self._next].time - self.samples[self._next - 1].time
                timeout = max(0.0, gap / self.speed)
            try:
                command, value = self._queue.get(timeout=timeout)
            except queue.Empty:
                self._feed()
                self._publish()
                continue
            if command == "quit":
                return
            if command == "sync":
                value.set()
                continue
            if command == "toggle" and self._next < len(self.samples):
                self.paused = not self.paused
            elif command == "step" and self._next < len(self.samples):
                self.paused = True
                self._feed()
            elif command == "seek":
                self._seek(value)
            elif command == "speed":
                i = REPLAY_SPEEDS.index(self.speed) + value
                self.speed = REPLAY_SPEEDS[max(0, min(len(REPLAY_SPEEDS) - 1, i))]
            self._publish()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        done = threading.Event()
        self.send("sync", done)
        return done.wait(timeout)


class HostApp(BaseApp):
    CSS_PATH = ["../styles/app.tcss", "../styles/host.tcss"]
    TITLE = "ksmtui host"

    BINDINGS = [
        Binding("pagedown", "scroll_tab(1)", "Scroll", key_display="PgDn", tooltip="scroll the tab a page down"),
        Binding("pageup", "scroll_tab(-1)", "Scroll up", show=False, tooltip="scroll the tab a page up"),
        Binding("space", "toggle_pause", "Pause", tooltip="live: hold the screen still (sampling goes on); "
                "replay: pause or play the recording"),
        Binding("s", "step", "Step", tooltip="the recording's next sample, paused"),
        Binding("left_square_bracket", "seek(-10)", "Seek", key_display="[ ]",
                tooltip="10 samples back in the recording (] forward)"),
        Binding("right_square_bracket", "seek(10)", "Seek on", key_display="]", show=False,
                tooltip="10 samples forward in the recording"),
        Binding("home", "seek(-1000000000)", "Rewind", show=False, tooltip="the recording's first sample"),
        Binding("end", "seek(1000000000)", "To the end", show=False, tooltip="the recording's last sample"),
        Binding("plus,equals_sign", "speed(1)", "Speed", key_display="+ -",
                tooltip="replay faster (samples per recorded second)"),
        Binding("minus", "speed(-1)", "Slower", key_display="-", show=False, tooltip="replay slower"),
        Binding("k", "knobs", "Knobs", tooltip="the host's /sys/kernel/mm/ksm knobs (live as root: to change; "
                "replay: as recorded)"),
        Binding("g", "group", "Group", show=False, tooltip="Processes grouped by pid, vm, container, unit, cgroup, "
                "comm in turn: a row per group with its totals, Enter lists its processes"),
        Binding("escape", "ungroup", "Back", show=False, tooltip="from a group's processes back to the groups"),
        Binding("q", "quit", "Quit", tooltip="leave ksmtui"),
        Binding("ctrl+c", "interrupt", "Interrupt", show=False, priority=True,
                tooltip="quit as an interrupted command does (exit status 130)"),
        *(Binding(str(i), f"show_tab('{tab}')", tab.capitalize(), show=False,
                  tooltip=f"the {tab.replace('-', ' ')} tab")
          for i, tab in enumerate(("overview", "processes", "outcomes", "model-only"), 1)),
    ]

    def __init__(self, source: LiveSource | ReplaySource) -> None:
        super().__init__()
        self.animation_level = "none"  # as the model's app: a tab's underline jumps, no frames to draw
        self.source = source
        self.view: HostView | None = None
        self.paused = False  # live: the display holds still while sampling goes on
        self.group_by = "pid"  # the Processes tab's grouping (GROUPINGS); "pid": a row per process
        self.group_open: str | None = None  # the group whose processes are listed (Enter on it)

    def compose(self) -> ComposeResult:
        yield HostStatus(id="status")
        yield HostAlerts(id="alerts")
        yield HostNote(id="description")
        with TabbedContent(id="tabs"):
            with TabPane("Overview", id="overview"), VerticalScroll(id="overview-grid"):
                yield SavingsPanel(id="savings")
                yield HostScanPanel(id="host-scan")
                yield HostCountersPanel(id="host-counters")
                yield HostKnobsPanel(id="host-knobs")
            with TabPane("Processes", id="processes"), Vertical():
                yield Static(id="processes-hint")
                yield ProcessTable(os.sysconf("SC_PAGE_SIZE"), units=True, id="processes-table")
                yield GroupTable(id="groups-table")
            with TabPane("Outcomes", id="outcomes"), VerticalScroll():
                yield HostOutcomesPanel(id="host-outcomes")
                yield HostEventsPanel(id="host-events")
            with TabPane("Model only", id="model-only"), VerticalScroll():
                yield NotExposedPanel(id="not-exposed")
        yield Static(id="too-small", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        titles = {
            "savings": "savings",
            "host-scan": "scan progress and convergence",
            "host-counters": "counters (/sys/kernel/mm/ksm, /proc/vmstat)",
            "host-knobs": "knobs (/sys/kernel/mm/ksm; k to change)" if self.source.live else "knobs, as recorded",
            "host-outcomes": "merge outcomes by path (ksm tracepoints)",
            "host-events": "last ksm tracepoint events (time: seconds since boot, the trace clock)",
            "not-exposed": "what the host's kernel does not show",
        }
        for panel_id, title in titles.items():
            self.query_one(f"#{panel_id}").border_title = title
        self._panels = list(self.query(Panel))
        self._table = self.query_one(ProcessTable)
        self._groups = self.query_one(GroupTable)
        self._groups.display = False
        self._hint = self.query_one("#processes-hint", Static)
        self._show_processes()
        self._status = self.query_one(HostStatus)
        self._alerts = self.query_one(HostAlerts)
        self._note = self.query_one(HostNote)
        self.source.start(self.post_message)
        self._fit(self.size.width, self.size.height)

    def on_unmount(self) -> None:
        self.source.close()

    async def action_quit(self) -> None:
        self.source.close()
        self.exit()

    def action_interrupt(self, status: int = 130) -> None:
        """Ctrl-C (and SIGINT, SIGTERM, SIGHUP: run_app) quits as an interrupted command does."""
        self.source.close()
        self.exit(return_code=status)

    def on_host_update(self, message: HostUpdate) -> None:
        if self.paused and self.view is not None:
            return
        self.view = view = message.view
        if not self._status.is_attached:  # an update that arrived while the app closes
            return
        self._draw(view)

    def _draw(self, view: HostView) -> None:
        with self.batch_update():
            self._status.update_from(view)
            self._alerts.update_from(view)
            self._note.update_from(view)
            for panel in self._panels:
                panel.update_from(view)
            if shown(self._hint):  # a hidden table would still format every changed row
                self._show_processes()
            if isinstance(self.screen, HostKnobsScreen):
                self.screen.update_from(view)

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        self.fit_screen(width, height)

    # --- actions ---

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Live, the host runs at its own pace: step and speed are a replay's keys, and the footer
        does not offer them."""
        return not (self.source.live and action in ("step", "speed", "seek"))

    def action_toggle_pause(self) -> None:
        if self.source.live:
            self.paused = not self.paused
            if self.view is not None:
                self._status.update_from(replace(self.view, state="held (space: follow)")
                                                       if self.paused else self.view)
        else:
            self.source.send("toggle")

    def action_step(self) -> None:
        if self.source.live:
            self.notify("step replays a recording one sample at a time (ksmtui replay)")
        else:
            self.source.send("step")

    def action_seek(self, by: int) -> None:
        if not self.source.live:
            self.source.send("seek", by)

    def action_speed(self, step: int) -> None:
        if self.source.live:
            self.notify("the host runs at its own pace; --interval sets how often it is sampled")
        else:
            self.source.send("speed", step)

    def action_knobs(self) -> None:
        if self.view is not None and not isinstance(self.screen, HostKnobsScreen):
            self.push_screen(HostKnobsScreen(self.view, writable=self._knobs_writable()))

    def _knobs_writable(self) -> str | None:
        """None if k may write the host's knobs, else why not."""
        if not self.source.live:
            return "a recording: the knobs are shown as they were"
        return sysfs.unavailable_reason()

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "processes":
            self._show_processes()
            # the arrows, Enter and the sort keys go to the table
            (self._groups if self._groups.display else self._table).focus()
        if self.view is not None:
            for panel in event.pane.query(Panel):
                panel.update_from(self.view)

    def _show_processes(self) -> None:
        """The Processes tab as grouped: every process, the groups, or the open group's processes."""
        processes = self.view.sample.processes if self.view is not None else {}
        grouped = self.group_by != "pid"
        self._groups.display = grouped and self.group_open is None
        self._table.display = not self._groups.display
        if grouped:
            totals = group_totals(processes, self.group_by)
            if self.group_open is None:
                self._groups.show_groups(totals)
            else:  # a group that has gone (its processes exited) lists nothing
                pids = {str(pid) for pid in totals.get(self.group_open, {}).get("processes", ())}
                processes = {pid: row for pid, row in processes.items() if pid in pids}
        if not self._groups.display:
            self._table.show_rows(process_rows(processes))
        what = ("Enter: why not merging (/proc/PID/smaps) · < > sort column, R reverses · "
                f"! above {self._table.ratio_limit} rmap_items per merging page: costs more than it saves")
        if self._groups.display:
            what = f"grouped by {self.group_by}: its processes' totals · Enter: the group's processes"
        elif grouped:
            what = f"{self.group_by} {self.group_open} · Esc: back to the groups · " + what
        after = GROUP_CYCLE[(GROUP_CYCLE.index(self.group_by) + 1) % len(GROUP_CYCLE)]
        self._hint.update(Text(f"{what} · g: group by {after}"))

    def action_group(self) -> None:
        self.group_by = GROUP_CYCLE[(GROUP_CYCLE.index(self.group_by) + 1) % len(GROUP_CYCLE)]
        self.group_open = None
        self._show_processes()
        self.action_show_tab("processes")
        (self._groups if self._groups.display else self._table).focus()

    def action_ungroup(self) -> None:
        if self.group_open is not None:
            self.group_open = None
            self._show_processes()
            self._groups.focus()

    def on_data_table_row_selected(self, event: GroupTable.RowSelected) -> None:
        if event.data_table is self._groups and event.row_key.value is not None:
            self.group_open = event.row_key.value
            self._show_processes()
            self._table.focus()

    def on_process_table_selected(self, event: ProcessTable.Selected) -> None:
        pid = str(event.pid)  # a sample's processes are keyed as /proc names them
        if self.view is not None:
            self.push_screen(WhyNotScreen(pid, self.view.sample.processes.get(pid, {}), live=self.source.live,
                                          machine=self.view.why_not))


GROUP_CYCLE = ("pid", "vm", "container", "unit", "cgroup", "comm")  # g steps through them


def process_rows(processes: dict[str, dict]) -> list[ProcessRow]:
    """A sample's processes as the Processes table's rows: a field ksm_stat lacks (older kernels) is
    None ("n/a"); a process whose ksm_stat could not be read says why after its comm; the unit is
    None in a recording made before units."""
    rows = []
    for pid, r in processes.items():
        comm = f"{r['comm']} [{r['error']}]" if "error" in r else r["comm"]
        flags = {k: r[k] == "yes" if k in r else None for k in ("ksm_merge_any", "ksm_mergeable")}
        unit = Unit.from_json(int(pid), r.get("comm"), r["unit"]).describe() if "unit" in r else None
        rows.append(ProcessRow(int(pid), comm, **flags, **{k: r.get(k) for k in (
            "ksm_rmap_items", "ksm_merging_pages", "ksm_zero_pages", "ksm_process_profit")}, unit=unit))
    return rows


def why_not_lines(pid: str, row: dict, live: bool, machine: list[dict] | None = None) -> list[str]:
    """The why-not dialog: first what stops merging machine-wide (`machine`: ksmtui.host.whynot's
    reasons; whatever the process's memory, run=0 merges nothing), then the process."""
    lines = [f"machine-wide: {r['text']}" for r in machine or ()]
    lines += [""] if lines else []
    lines.append(f"{row.get('comm', '?')} (pid {pid})")
    # As the Processes table shows it: the profit in MiB (and the kernel's bytes).
    for k, v in row.items():
        if k == "ksm_process_profit" and isinstance(v, int):
            lines.append(f"  {k} {v / MIB:,.2f} MiB ({v:,} bytes)")
        elif k == "unit" and isinstance(v, dict):  # as the table's "belongs to" says it
            lines.append(f"  belongs to {Unit.from_json(int(pid), row.get('comm'), v).describe()}")
        elif k != "comm":
            lines.append(f"  {k} {v}")
    lines.append("")
    if not live:
        return lines + ["/proc/PID/smaps is read live, for the process picked: a recording does not hold it."]
    try:
        rows = why_not_merging(pid)
    except OSError as err:
        return lines + [f"/proc/{pid}/smaps: {err.strerror} (the process may have exited)"]
    # the figures first and the reason after them: a narrow dialog wraps the words, not the columns
    lines.append(f"memory, from /proc/{pid}/smaps: mappings, size, what KSM can do with it")
    for reason, n, kb in rows:
        lines.append(f"{n:>8,} {kb / 1024:>10,.1f} MiB  {reason}")
    return lines


class WhyNotScreen(ModalScreen[None]):
    """Why a process is not merging: its memory by what KSM can do with it, from smaps' VmFlags."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, pid: str, row: dict, live: bool, machine: list[dict] | None = None) -> None:
        super().__init__()
        self._lines = why_not_lines(pid, row, live, machine)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="why-box"):
            yield Static("why not merging · Esc closes", id="why-title")
            yield Static(Text("\n".join(self._lines)), id="why-text")


class KnobValue(Static, can_focus=True):
    """A knob's value where it cannot be written (a recording, or not root): focusable, so that
    Tab goes from knob to knob and the dialog says what each one means."""


class HostKnobsScreen(ModalScreen[None]):
    """The host's knobs: Enter on a field asks for confirmation, y writes it to /sys/kernel/mm/ksm
    (under the machine lock, on a thread: the lock may be held by a test), and the kernel's refusal
    shows next to the field in its own words (EINVAL, EBUSY). Read-only without root or in a replay."""

    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("y", "confirm", "Yes, write", show=False),
                Binding("n", "cancel", "No", show=False)]

    def __init__(self, view: HostView, writable: str | None) -> None:
        super().__init__()
        self._view = view
        self._readonly = writable
        self._pending: tuple[str, str] | None = None

    def compose(self) -> ComposeResult:
        title = ("knobs of this machine's KSM: Enter on a value, then y writes it to /sys/kernel/mm/ksm · Esc closes"
                 if self._readonly is None else f"knobs, read-only: {self._readonly} · Tab: what each means · "
                 "Esc closes")
        with Vertical(id="knobs-box"):
            yield Static(title, id="knobs-title", markup=False)
            with VerticalScroll(id="knobs-scroll", can_focus=False), Grid(id="knobs-grid"):
                # widget ids by position: a knob's name is whatever the kernel or a recording said
                for i, (name, value) in enumerate(knobs_in_order(self._view.sample.knobs)):
                    yield Label(name, classes="knob-name", markup=False)
                    if self._readonly is None:
                        yield Input(str(value), id=f"knob-{i}", name=name, classes="knob-input")
                    else:  # read-only, but Tab still goes from knob to knob, to say what each means
                        yield KnobValue(str(value), id=f"knob-{i}", name=name, classes="knob-input")
                    yield Label("", id=f"knob-error-{i}", classes="knob-error", markup=False)
            confirm = Label("", id="knobs-confirm", markup=False)
            confirm.display = False
            yield confirm
            yield KnobHelp()

    def on_mount(self) -> None:
        """The focus on the first field (run) with its value selected: what is typed replaces run's
        value, never lands in another field, and is written only after y."""
        fields = self.query(".knob-input")
        if fields:
            self.set_focus(fields.first())
        if fields and isinstance(fields.first(), Input):
            fields.first(Input).select_all()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self.query_one(KnobHelp).show_knob(getattr(event.widget, "name", None))

    def _confirm(self, text: str) -> None:
        """The line under the fields (y / n, writing, written): there only while it says something,
        so that the fields and the knob's description have its rows otherwise."""
        label = self.query_one("#knobs-confirm", Label)
        label.update(text)
        if label.display != bool(text):
            label.display = bool(text)
            self.query_one(KnobHelp).fit()

    def _index(self, name: str) -> int | None:
        return next((i for i, (n, _) in enumerate(knobs_in_order(self._view.sample.knobs)) if n == name), None)

    def update_from(self, view: HostView) -> None:
        for name, value in view.sample.knobs.items():
            i = self._index(name)
            fields = self.query(f"#knob-{i}") if i is not None else None
            if not fields:
                continue
            field = fields.first()
            if isinstance(field, KnobValue):
                field.update(str(value))
            elif isinstance(field, Input) and not field.has_focus and self._pending is None:
                field.value = str(value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = event.input.name or ""
        value = event.value.strip()
        if name in KSM_KNOBS:
            try:
                KSM_KNOBS[name].parse(value)
            except KnobError as err:
                self.show_error(name, str(err))
                return
        self._pending = (name, value)
        self._confirm(
            f"write {printable(value)!r} to /sys/kernel/mm/ksm/{name} on this machine? y / n")
        self.set_focus(None)  # off the fields, so that y and n are keys, not text

    def action_confirm(self) -> None:
        if self._pending is None:
            return
        name, value = self._pending
        self._pending = None
        self._confirm(f"writing {name} (waiting for the machine lock)…")
        threading.Thread(target=self._write, args=(name, value), daemon=True).start()

    def action_cancel(self) -> None:
        self._pending = None
        self._confirm("not written")

    def _write(self, name: str, value: str) -> None:
        try:
            with sysfs.machine_lock():
                sysfs.ksm_write(name, value)
            text = ""
        except OSError as err:
            code = errno.errorcode.get(err.errno or 0, "")
            text = f"{code}: {err.strerror}" if code else str(err)
        self.app.call_from_thread(self._written, name, value, text)

    def _written(self, name: str, value: str, error: str) -> None:
        self.show_error(name, error)
        self._confirm(
            f"{name}: the kernel refused {printable(value)!r}" if error else f"{name} = {value} written")

    def show_error(self, name: str, text: str) -> None:
        i = self._index(name)
        if i is not None:
            self.query_one(f"#knob-error-{i}", Label).update(text)


def run_app(app: HostApp) -> int:
    """Run the app; SIGINT, SIGTERM and SIGHUP quit it (the terminal restored, the tracefs
    instance removed by the caller) with status 128 + the signal, as Ctrl-C gives 130."""
    def on_signal(signum, frame) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # before the app's loop runs, or after: as any command
            raise KeyboardInterrupt from None
        loop.call_soon_threadsafe(app.action_interrupt, 128 + signum)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    try:
        app.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return app.return_code or 0


def run_host_app(sampler: HostSampler, recorder: Sinks | None = None, alert_cpu: float | None = None) -> int:
    return run_app(HostApp(LiveSource(sampler, recorder, alert_cpu)))


def run_replay_app(path: str, header: dict, samples: list[HostSample], speed: float, note: str = "",
                   alert_cpu: float | None = None) -> int:
    kernel = header["kernel"] if isinstance(header.get("kernel"), str) else "?"
    return run_app(HostApp(ReplaySource(os.path.basename(path), samples, speed, kernel=kernel, note=note,
                                        alert_cpu=alert_cpu)))

