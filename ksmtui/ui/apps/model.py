"""The live terminal UI: panels that draw the engine's snapshots, keys that send it commands.

The engine runs in one worker thread (ksmtui.ui.runner); this module only displays EngineViews and
turns keys into commands.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable, Mapping

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static, TabbedContent, TabPane, Tabs
from textual.widgets._footer import FooterKey

from engine.controllers import ControlLoop
from engine.scenario import RunConfig, Scenario
from ksmtui.ui.base import BaseApp
from ksmtui.ui.runner import (
    PUBLISH_S,
    SPEEDS,
    ChangeSpeed,
    Command,
    CycleFlow,
    EngineError,
    EngineUpdate,
    EngineView,
    Load,
    Restart,
    Runner,
    ScaleKnob,
    SetPaused,
    ShowTrees,
    StepBatch,
    StepPage,
    ToggleCompare,
    ToggleKnob,
    View,
)
from ksmtui.ui.widgets.panels import (
    ROLLING,
    ChainsPanel,
    ComparePanel,
    CountersPanel,
    DescriptionBar,
    LatencyPanel,
    LatencySummary,
    OutcomesPanel,
    Panel,
    ProcessesPanel,
    ScanPanel,
    StatusBar,
    switches_note,
)
from ksmtui.ui.widgets.processes import ProcessTable
from ksmtui.ui.widgets.screens import KnobsScreen, OpenScreen
from ksmtui.ui.widgets.trees import TreesPanel

TABS = ("overview", "trees", "chains", "latency", "compare", "processes")
# While the engine runs flat out it shares the interpreter (the GIL) with the UI, and sends no view
# by itself: the UI asks for the next one when its thread has used at most UI_BUDGET of the time
# since the last (all its work: drawing, keys, messages), but at least every MAX_VIEW_S.
UI_BUDGET = 0.08
MAX_VIEW_S = 1.0
# After a key the engine waits this long (at most) so that the UI, which shares the GIL with it,
# answers at full pace: a tab switch is 20-30 ms of the UI thread's time on large.
KEY_HOLD_S = 0.1
# r, o, c: from drawing the header that says a new run is being built to asking the engine for it,
# whose build holds the GIL that Textual's output thread needs to write that header.
WRITE_S = 0.05
# The UI opens at simulated real time: the default scenario's story (30 s) plays out in half a
# minute, as its description tells it; x runs flat out.
OPENING_SPEED = 1


class KeysFooter(Footer):
    """The footer's keys in order, as many as fit whole (a key cut in two reads as another)."""

    _width = 0

    def compose(self) -> ComposeResult:
        # Composed again whenever the bindings change (focus moves): only the keys that fit are built.
        self._width = room = self.size.width
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                room -= len(widget.key_display) + len(widget.description) + 2  # " " between, margin after
                if room < 0:
                    return
            yield widget

    def on_resize(self) -> None:
        if self.size.width != self._width:
            self.refresh(recompose=True)

    _shown: tuple = ()

    def bindings_changed(self, screen: Screen) -> None:
        # Focus moving between widgets changes the bindings, mostly not the keys shown: building
        # the footer again costs a tab switch more than the tab itself.
        room, shown = self.size.width, []
        for _, b, enabled, _ in screen.active_bindings.values():
            if b.show:
                room -= len(self.app.get_key_display(b)) + len(b.description) + 2
                if room < 0:
                    break
                shown.append((b.action, b.key, enabled))
        if tuple(shown) != self._shown or not self._bindings_ready:
            self._shown = tuple(shown)
            super().bindings_changed(screen)


class KsmApp(BaseApp):
    CSS_PATH = "../styles/app.tcss"
    TITLE = "ksmtui"

    # The footer shows the first ones that fit: quitting first, then running, then the rest; the
    # knob keys are written beside their knobs on the Overview, and everything is in ctrl+p.
    BINDINGS = [
        Binding("ctrl+p", "command_palette", "All keys", key_display="^p", id="palette",
                tooltip='every key of ksmtui, searchable'),
        Binding("q", "quit", "Quit", id="quit",
                tooltip='leave ksmtui'),
        Binding("space", "toggle_pause", "Pause/run", id="pause",
                tooltip='pause or resume the simulation'),
        Binding("s", "step_page", "Step", id="step_page",
                tooltip='one page through cmp_and_merge_page(), paused: the trees it walked and the outcome'),
        Binding("b", "step_batch", "Wake-up", id="step_batch",
                tooltip='one ksmd wake-up: pages_to_scan pages, then sleep_millisecs'),
        Binding("x", "flat_out", "Flat out", id="flat_out",
                tooltip='run the model as fast as it can, not paced to the simulated clock'),
        Binding("plus,equals_sign", "speed(1)", "Speed", key_display="+/-", id="faster",
                tooltip='more simulated time per second of wall time'),
        Binding("minus", "speed(-1)", "Slower", key_display="-", show=False, id="slower",
                tooltip='less simulated time per second of wall time'),
        Binding("k", "knobs", "Knobs", id="knobs",
                tooltip='the /sys/kernel/mm/ksm knobs of the model, to change'),
        Binding("r", "restart", "Restart", id="restart",
                tooltip='the scenario again from time 0, same seed'),
        Binding("o", "open", "Open", id="open",
                tooltip='open another scenario (a file or a built-in)'),
        Binding("c", "compare", "Compare", id="compare",
                tooltip="run two flows side by side (the kernel's and the other)"),
        Binding("f", "flow_cycle", "Flow", id="flow",
                tooltip='switch the flow the model runs (the next one)'),
        Binding("h", "latency_mode", "Hist span", id="latency_mode",
                tooltip='latency histograms since the start or over the last window (modelled)'),
        Binding("w", "save", "Save", id="save",
                tooltip='save the screen (SVG) and the snapshot (JSON) to the current directory'),
        Binding("d", "description", "Description", show=False, id="description",
                tooltip="show or hide the scenario's whole description"),
        Binding("pagedown", "scroll_tab(1)", "Scroll", key_display="PgDn/PgUp", id="scroll_down",
                tooltip='scroll the tab a page down'),
        Binding("pageup", "scroll_tab(-1)", "Scroll up", show=False, id="scroll_up",
                tooltip='scroll the tab a page up'),
        Binding("right_square_bracket", "pages_to_scan(2)", "pages_to_scan×2", key_display="]", show=False,
                id="scan_more",
                tooltip='double pages_to_scan'),
        Binding("left_square_bracket", "pages_to_scan(-2)", "pages_to_scan÷2", key_display="[", show=False,
                id="scan_less",
                tooltip='halve pages_to_scan'),
        Binding("z", "toggle_knob('use_zero_pages')", "use_zero_pages", show=False, id="use_zero_pages",
                tooltip='toggle use_zero_pages'),
        Binding("m", "toggle_knob('smart_scan')", "smart_scan", show=False, id="smart_scan",
                tooltip='toggle smart_scan'),
        Binding("n", "toggle_knob('merge_across_nodes')", "merge_across_nodes", show=False, id="merge_across_nodes",
                tooltip='toggle merge_across_nodes'),
        *(
            Binding(str(i), f"show_tab('{tab}')", tab.capitalize(), show=False, id=f"tab.{tab}",
                    tooltip=f"the {tab.replace('-', ' ')} tab")
            for i, tab in enumerate(TABS, 1)
        ),
    ]

    def __init__(
        self, scenario: Scenario, config: RunConfig = RunConfig(), paused: bool = False, speed: int | None = None,
        control: Callable[[Scenario], ControlLoop] | None = None,
    ) -> None:
        super().__init__()
        # The tabs' underline slides over ten frames, each a repaint the engine waits for: it jumps.
        self.animation_level = "none"
        self.view: EngineView | None = None
        self._paced = speed or OPENING_SPEED  # the paced speed x returns to
        self._drawn_cpu = 0.0  # the UI thread's CPU time at the last view drawn
        self._view_timer: Timer | None = None
        self.draws = 0  # views drawn (the bench counts them)
        self._trees_shown = False
        self._scenarios = {scenario.name: scenario}  # by name: which one a view is of (o loads others)
        self._events_of: str | None = None
        self._switches: list[tuple[int, str, str]] = []  # (sim_ns, old, new) flow changes of this run
        self.runner = Runner(scenario, self.post_message, config, paused=paused, speed=speed, control=control)

    def compose(self) -> ComposeResult:
        scenario = next(iter(self._scenarios.values()))
        yield StatusBar(f" ksmtui · {scenario.name} · building…", id="status")
        yield DescriptionBar(id="description")
        pages = sum(p.count * sum(r.pages for r in p.regions) for p in scenario.processes)
        processes = sum(p.count for p in scenario.processes)
        # Until the first view: building a large machine takes a moment, say what is going on.
        yield Static(f"building {scenario.name}: {processes:,} processes, {pages:,} pages…", id="starting")
        # Each tab scrolls when its panels are taller than the terminal (Tab focuses it, then
        # the arrow and page keys scroll).
        with TabbedContent(id="tabs"):
            with TabPane("Overview", id="overview"), VerticalScroll(id="overview-grid"):
                yield ScanPanel(id="scan")
                yield CountersPanel(id="counters")
                yield OutcomesPanel(id="outcomes")
                # A large terminal has room for these on the first tab too.
                yield ChainsPanel(id="overview-chains", classes="large-only")
                yield LatencySummary(id="latency-summary")
                yield LatencyPanel(id="overview-latency", classes="large-only")
            with TabPane("Trees", id="trees"):
                yield TreesPanel(id="trees-panel")
            with TabPane("Chains", id="chains"), VerticalScroll():
                yield ChainsPanel(id="chains-panel")
            with TabPane("Latency", id="latency"), VerticalScroll():
                yield LatencyPanel(id="latency-panel")
            with TabPane("Compare", id="compare"), VerticalScroll():
                yield ComparePanel(id="compare-panel")
            with TabPane("Processes", id="processes"):
                yield ProcessesPanel(id="processes-panel")
        yield Static(id="too-small", markup=False)
        yield KeysFooter(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        titles = {
            "scan": "scan progress (simulated time)",
            "counters": "counters (/sys/kernel/mm/ksm)",
            "outcomes": "cmp_and_merge_page outcomes by path",
            "latency-summary": f"modelled latency, {ROLLING} (rolling)",
            "trees-panel": "trees",
            "chains-panel": "stable_node chains",
            "overview-chains": "stable_node chains",
            "processes-panel": "processes (/proc/PID/ksm_stat)",
        }
        for panel_id, title in titles.items():
            self.query_one(f"#{panel_id}").border_title = title
        self._status = self.query_one(StatusBar)
        self._description = self.query_one(DescriptionBar)
        self._panels = list(self.query(Panel))
        self.install_screen(KnobsScreen(), "knobs")
        self.screen.add_class("-starting")
        self.runner.start()
        self._fit(self.size.width, self.size.height)

    def on_unmount(self) -> None:
        self.runner.close()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self.runner.hold(KEY_HOLD_S)  # the key's answer first, then the engine again
        await super().on_event(event)

    async def action_quit(self) -> None:
        self.runner.close()  # no more updates for a screen that is going away
        self.exit()

    def send(self, command: Command) -> None:
        self.runner.send(command)

    # --- what the engine sends ---

    def on_engine_update(self, message: EngineUpdate) -> None:
        old, self.view = self.view, message.view
        view = message.view
        if not self._status.is_attached:  # an update that arrived while the app closes
            return
        if old is not None:
            self._notify_knob_changes(old, view)
        cpu, self._drawn_cpu = self._drawn_cpu, time.thread_time()
        self._draw(view)
        if view.flat_out and self._view_timer is None:
            # What the UI's thread used from the last view to this one, at UI_BUDGET of the time.
            wait = max(PUBLISH_S, min(MAX_VIEW_S, (self._drawn_cpu - cpu) / UI_BUDGET))
            self._view_timer = self.set_timer(wait, self._ask_for_view)

    def _notify_knob_changes(self, old: EngineView, new: EngineView) -> None:
        """Every knob that changed (a key, the k screen, the scenario's `set` event) says so."""
        a, b = old.snapshot, new.snapshot
        if a.scenario != b.scenario or b.sim_ns < a.sim_ns or old.compare != new.compare:  # a new run
            self._show_switches([])
        if a.scenario != b.scenario:  # another scenario (o) brings its own knobs
            return
        # The scan-time advisor retunes pages_to_scan at every full scan: that is ksmd's doing, not a write.
        advised = a.knobs["advisor_mode"] == b.knobs["advisor_mode"] != "none"
        for name, value in b.knobs.items():
            if a.knobs.get(name) != value and not (advised and name == "pages_to_scan"):
                self.notify(f"{a.knobs.get(name)} → {value}", title=name, markup=False)
        if a.flow != b.flow and not new.compare and b.sim_ns > 0:
            self._show_switches([*self._switches, (b.sim_ns, a.flow, b.flow)])

    def _show_switches(self, switches: list[tuple[int, str, str]]) -> None:
        """The outcomes and since-start histograms say where the run changed flow."""
        if switches == self._switches:
            return
        self._switches = switches
        for panel in (*self.query(LatencyPanel), self.query_one(OutcomesPanel)):
            panel.switches = switches_note(switches)

    def _ask_for_view(self) -> None:
        self._view_timer = None
        self.send(View())

    def _draw(self, view: EngineView) -> None:
        self.draws += 1
        if self._events_of != view.snapshot.scenario:
            self._events_of = view.snapshot.scenario
            scenario = self._scenarios.get(view.snapshot.scenario)
            events = scenario.events if scenario is not None else ()
            self.query_one(ScanPanel).events = self.query_one(CountersPanel).events = events
            self.screen_stack[0].remove_class("-starting")
        with self.batch_update():
            self._status.update_from(view)
            self._description.update_from(view)
            for panel in self._panels:
                panel.update_from(view)
            if isinstance(self.screen, KnobsScreen):
                self.screen.update_from(view)

    def on_engine_error(self, message: EngineError) -> None:
        self._status.refused(self.view)
        if message.knob and isinstance(self.screen, KnobsScreen):
            self.screen.show_error(message.knob, message.text)
        self.notify(message.text, title=message.knob or "engine", severity="error", markup=False)

    # --- layout ---

    def on_resize(self, event) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        self.fit_screen(width, height).set_class(width >= 120 and height >= 40, "-large")

    # --- actions ---

    def action_toggle_pause(self) -> None:
        self.send(SetPaused(None))

    def action_step_page(self) -> None:
        self.send(StepPage())

    def action_step_batch(self) -> None:
        self.send(StepBatch())

    def action_speed(self, step: int) -> None:
        self.send(ChangeSpeed(step))

    def action_flat_out(self) -> None:
        """Flat out, or back to the paced speed it came from."""
        now = self.view.speed if self.view is not None else None
        if now is not None:
            self._paced = now
        target = self._paced if now is None else None
        self.send(ChangeSpeed(SPEEDS.index(target) - SPEEDS.index(now)))

    def action_pages_to_scan(self, factor: int) -> None:
        self.send(ScaleKnob("pages_to_scan", factor))

    def action_toggle_knob(self, name: str) -> None:
        self.send(ToggleKnob(name))

    def _rebuild(self, what: str, command: Command) -> None:
        """Say in the header that a new run is being built, then ask for it once that is on screen:
        building a large run (and collecting the old one) holds the GIL for a third of a second,
        and Textual's own thread writes the drawn frame to the terminal, WRITE_S after."""
        self._status.building(what, self.view)
        self.call_after_refresh(self.set_timer, WRITE_S, lambda: self.send(command))

    def action_flow_cycle(self) -> None:
        if self.view is not None and self.view.compare:
            self._rebuild("building the next pair of flows", CycleFlow())
        else:
            self.send(CycleFlow())

    def action_knobs(self) -> None:
        if not isinstance(self.screen, KnobsScreen):
            self.push_screen("knobs")

    def action_compare(self) -> None:
        on = self.view is not None and self.view.compare
        self._rebuild("leaving compare mode" if on else "building both runs of compare mode", ToggleCompare())
        if self.view is None or not self.view.compare:
            self.action_show_tab("compare")

    def action_latency_mode(self) -> None:
        since_start = not self.query_one("#latency-panel", LatencyPanel).since_start
        for panel in self.query(LatencyPanel):
            panel.since_start = since_start
            if self.view is not None:
                panel.update_from(self.view)

    def action_save(self) -> None:
        """The screen as SVG and the snapshot(s) shown as JSON, in the current directory; a second
        save at the same simulated time gets -2, -3, ... rather than overwriting the first."""
        if self.view is None:
            return
        snap = self.view.snapshot
        stem = os.path.abspath(f"ksmtui-{snap.scenario}-{snap.sim_ms}ms")
        base, n = stem, 1
        while os.path.exists(f"{base}.svg") or os.path.exists(f"{base}.json"):
            n += 1
            base = f"{stem}-{n}"
        try:
            with open(f"{base}.json", "x") as out:  # "x": never over a file made meanwhile
                json.dump(snapshot_json(self.view), out, indent=1)
                out.write("\n")
            self.save_screenshot(os.path.basename(f"{base}.svg"), os.path.dirname(base))
        except OSError as err:
            self.notify(str(err), title="save", severity="error", markup=False)
            return
        self.notify(f"{base}.svg\n{base}.json", title="saved", markup=False)

    def action_description(self) -> None:
        self._description.toggle(self.view)

    def action_restart(self) -> None:
        self._rebuild("restarting from t=0", Restart())

    def action_open(self) -> None:
        def opened(scenario: Scenario | None) -> None:
            if scenario is not None:
                self._scenarios[scenario.name] = scenario
                self._events_of = None
                self._rebuild(f"building {scenario.name}", Load(scenario))

        if not isinstance(self.screen, OpenScreen):
            self.push_screen(OpenScreen(), opened)

    def action_show_tab(self, tab: str) -> None:
        tabbed = self.query_one(TabbedContent)
        tabbed.active = tab
        # Focus left on a widget of the pane now hidden would pull its tab back (a focused
        # descendant activates its pane): it goes to the tab's table, else to the tab strip.
        pane = tabbed.active_pane
        table = next(iter(pane.query(ProcessTable)), None) if pane is not None else None
        if table is not None:
            table.focus()
        elif self.focused is not None and pane not in self.focused.ancestors_with_self:
            tabbed.query_one(Tabs).focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # However the Processes tab was reached (6, a click, the arrows on the tab strip), the
        # table has the focus: Right scrolls its columns rather than switching tabs.
        for table in event.pane.query(ProcessTable):
            table.focus()
        trees = event.pane.id == "trees"
        if trees != self._trees_shown:  # snapshots carry the tree excerpt only while it is shown
            self._trees_shown = trees
            self.send(ShowTrees(trees))
        if self.view is not None:
            for panel in event.pane.query(Panel):
                panel.update_from(self.view)


def _plain(value: object) -> object:
    """A snapshot's value as JSON can hold it: dataclasses and mappings as objects, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def snapshot_json(view: EngineView) -> object:
    """What `w` saves: the snapshot shown (both, by flow, in compare mode)."""
    if view.compare:
        return {"compare": {s.flow: _plain(s) for s in view.snapshots}}
    return _plain(view.snapshot)


def run_app(scenario: Scenario, config: RunConfig, control: Callable[[Scenario], ControlLoop] | None = None) -> int:
    """Run the UI on a loaded, validated scenario, with the command line's flow, seed, knobs, stop
    and controller (a loop for each simulation built)."""
    app = KsmApp(scenario, config, speed=OPENING_SPEED, control=control)
    app.run()
    return app.return_code or 0
