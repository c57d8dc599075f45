"""The live terminal UI: panels that draw the engine's snapshots, keys that send it commands.

The engine runs in one worker thread (ksmtui.ui.runner); this module only displays EngineViews and
turns keys into commands.
"""

from __future__ import annotations

import time
from argparse import Namespace
from typing import Iterable

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static, TabbedContent, TabPane, Tabs

from engine.scenario import Scenario
from ksmtui.ui.runner import PUBLISH_S, EngineError, EngineUpdate, EngineView, Runner
from ksmtui.ui.widgets.panels import (
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
)
from ksmtui.ui.widgets.processes import ProcessTable
from ksmtui.ui.widgets.screens import KnobsScreen, OpenScreen
from ksmtui.ui.widgets.trees import TreesPanel

MIN_WIDTH, MIN_HEIGHT = 60, 18
TABS = ("overview", "trees", "chains", "latency", "compare", "processes")
# While the engine runs flat out it shares the interpreter (the GIL) with the UI, and sends no view
# by itself: the UI asks for the next one when its thread has used at most UI_BUDGET of the time
# since the last (all its work: drawing, keys, messages), but at least every MAX_VIEW_S.
UI_BUDGET = 0.08
MAX_VIEW_S = 1.0


class KsmApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "ksmtui"

    BINDINGS = [
        # First, so that a small terminal's footer still says how to reach the panels below the fold.
        Binding("pagedown", "scroll_tab(1)", "Scroll", key_display="PgDn/PgUp", id="scroll_down"),
        Binding("pageup", "scroll_tab(-1)", "Scroll up", show=False, id="scroll_up"),
        Binding("space", "toggle_pause", "Pause/run", id="pause"),
        Binding("s", "step_page", "Step page", id="step_page"),
        Binding("b", "step_batch", "Step batch", id="step_batch"),
        Binding("plus,equals_sign", "speed(1)", "Faster", key_display="+", id="faster"),
        Binding("minus", "speed(-1)", "Slower", key_display="-", id="slower"),
        Binding("right_square_bracket", "pages_to_scan(2)", "pages_to_scan×2", key_display="]", id="scan_more"),
        Binding("left_square_bracket", "pages_to_scan(-2)", "pages_to_scan÷2", key_display="[", id="scan_less"),
        Binding("z", "toggle_knob('use_zero_pages')", "Zero pages", id="use_zero_pages"),
        Binding("m", "toggle_knob('smart_scan')", "Smart scan", id="smart_scan"),
        Binding("n", "toggle_knob('merge_across_nodes')", "Across nodes", id="merge_across_nodes"),
        Binding("f", "flow_cycle", "Flow", id="flow"),
        Binding("k", "knobs", "Knobs", id="knobs"),
        Binding("c", "compare", "Compare", id="compare"),
        Binding("h", "latency_mode", "Hist span", id="latency_mode"),
        Binding("r", "restart", "Restart", id="restart"),
        Binding("o", "open", "Open", id="open"),
        Binding("q", "quit", "Quit", id="quit"),
        *(
            Binding(str(i), f"show_tab('{tab}')", tab.capitalize(), show=False, id=f"tab.{tab}")
            for i, tab in enumerate(TABS, 1)
        ),
    ]

    def __init__(self, scenario: Scenario, opts: Namespace, paused: bool = False) -> None:
        super().__init__()
        self.view: EngineView | None = None
        self._drawn_cpu = 0.0  # the UI thread's CPU time at the last view drawn
        self._view_timer: Timer | None = None
        self.draws = 0  # views drawn (the bench counts them)
        self._trees_shown = False
        self.runner = Runner(
            scenario,
            self.post_message,
            flow=getattr(opts, "flow", None),
            seed=getattr(opts, "seed", None),
            overrides=getattr(opts, "overrides", None) or {},
            paused=paused,
            full_scans=getattr(opts, "full_scans", None),
            after_ms=getattr(opts, "after_ms", None),
        )

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield DescriptionBar(id="description")
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
        yield Footer(compact=True)

    def on_mount(self) -> None:
        titles = {
            "scan": "scan progress",
            "counters": "counters (/sys/kernel/mm/ksm)",
            "outcomes": "cmp_and_merge_page outcomes by path",
            "latency-summary": "latency, last wake-ups (rolling)",
            "trees-panel": "trees",
            "chains-panel": "stable_node chains",
            "overview-chains": "stable_node chains",
            "compare-panel": "compare: legacy (Before) vs optimized (After), same workload",
            "processes-panel": "processes (/proc/PID/ksm_stat)",
        }
        for panel_id, title in titles.items():
            self.query_one(f"#{panel_id}").border_title = title
        self._status = self.query_one(StatusBar)
        self._description = self.query_one(DescriptionBar)
        self._panels = list(self.query(Panel))
        self.runner.start()
        self._fit(self.size.width, self.size.height)

    def on_unmount(self) -> None:
        self.runner.close()

    async def action_quit(self) -> None:
        self.runner.close()  # no more updates for a screen that is going away
        self.exit()

    def send(self, command: str, value: object = None) -> None:
        self.runner.send(command, value)

    # --- what the engine sends ---

    def on_engine_update(self, message: EngineUpdate) -> None:
        self.view = view = message.view
        if not self._status.is_attached:  # an update that arrived while the app closes
            return
        cpu, self._drawn_cpu = self._drawn_cpu, time.thread_time()
        self._draw(view)
        if view.flat_out and self._view_timer is None:
            # What the UI's thread used from the last view to this one, at UI_BUDGET of the time.
            wait = max(PUBLISH_S, min(MAX_VIEW_S, (self._drawn_cpu - cpu) / UI_BUDGET))
            self._view_timer = self.set_timer(wait, self._ask_for_view)

    def _ask_for_view(self) -> None:
        self._view_timer = None
        self.send("view")

    def _draw(self, view: EngineView) -> None:
        self.draws += 1
        with self.batch_update():
            self._status.update_from(view)
            self._description.update_from(view)
            for panel in self._panels:
                panel.update_from(view)
            if isinstance(self.screen, KnobsScreen):
                self.screen.update_from(view)

    def on_engine_error(self, message: EngineError) -> None:
        if message.knob and isinstance(self.screen, KnobsScreen):
            self.screen.show_error(message.knob, message.text)
        self.notify(message.text, title=message.knob or "engine", severity="error", markup=False)

    # --- layout ---

    def on_resize(self, event) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        screen = self.screen_stack[0] if self.screen_stack else self.screen
        screen.set_class(small, "-too-small")
        screen.set_class(width >= 120, "-wide")
        screen.set_class(width >= 120 and height >= 40, "-large")
        if small:
            self.query_one("#too-small", Static).update(
                f"ksmtui needs a terminal of at least {MIN_WIDTH}x{MIN_HEIGHT}; this one is {width}x{height}."
            )

    # --- actions ---

    def action_toggle_pause(self) -> None:
        self.send("toggle")

    def action_step_page(self) -> None:
        self.send("step_page")

    def action_step_batch(self) -> None:
        self.send("step_batch")

    def action_speed(self, step: int) -> None:
        self.send("speed", step)

    def action_pages_to_scan(self, factor: int) -> None:
        self.send("scale_knob", ("pages_to_scan", factor))

    def action_toggle_knob(self, name: str) -> None:
        self.send("toggle_knob", name)

    def action_flow_cycle(self) -> None:
        self.send("flow_cycle")

    def action_knobs(self) -> None:
        if not isinstance(self.screen, KnobsScreen):
            self.push_screen(KnobsScreen(self.view))

    def action_compare(self) -> None:
        self.send("compare")
        if self.view is None or not self.view.compare:
            self.action_show_tab("compare")

    def action_latency_mode(self) -> None:
        since_start = not self.query_one("#latency-panel", LatencyPanel).since_start
        for panel in self.query(LatencyPanel):
            panel.since_start = since_start
            if self.view is not None:
                panel.update_from(self.view)

    def action_restart(self) -> None:
        self.send("restart")

    def action_open(self) -> None:
        def opened(scenario: Scenario | None) -> None:
            if scenario is not None:
                self.send("load", scenario)

        if not isinstance(self.screen, OpenScreen):
            self.push_screen(OpenScreen(), opened)

    def action_scroll_tab(self, direction: int) -> None:
        pane = self.query_one(TabbedContent).active_pane
        for scroll in pane.query(VerticalScroll) if pane is not None else ():
            if direction > 0:
                scroll.scroll_page_down(animate=False)
            else:
                scroll.scroll_page_up(animate=False)

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
        trees = event.pane.id == "trees"
        if trees != self._trees_shown:  # snapshots carry the tree excerpt only while it is shown
            self._trees_shown = trees
            self.send("trees", trees)
        if self.view is not None:
            for panel in event.pane.query(Panel):
                panel.update_from(self.view)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            if binding.action in ("quit",):
                continue
            yield SystemCommand(
                f"{binding.description} ({binding.key_display or binding.key})",
                f"ksmtui: {binding.description}",
                lambda action=binding.action: self.run_action(action),
            )


def run_app(scenario: Scenario, opts: Namespace) -> int:
    """Run the UI on a loaded, validated scenario; opts carries flow, seed and overrides."""
    app = KsmApp(scenario, opts)
    app.run()
    return app.return_code or 0
