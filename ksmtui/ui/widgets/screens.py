"""Modal screens: the knobs, and opening another scenario."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from engine.knobs import ALL_KNOBS, KSM_KNOBS, KnobError
from engine.scenario import Scenario, ScenarioError, builtin_scenarios, load_scenario
from ksmtui.text.knobs import knob_help
from ksmtui.ui.runner import EngineView, SetKnob, send_command

# Every knob of /sys/kernel/mm/ksm (a refusal's advice names run and advisor_mode), and the flow.
LIVE_KNOBS = (*KSM_KNOBS, "flow")


class KnobHelp(Static):
    """Under a knobs dialog's fields: what the focused knob means, its unit and the values it takes
    (ksmtui.text.knobs), in the model's dialog and the host's alike. The fields above give it the
    rows it needs: a description is never cut, however narrow the terminal."""

    DEFAULT_CSS = "KnobHelp { height: auto; margin-top: 1; color: $text-muted; }"

    def __init__(self) -> None:
        super().__init__("", id="knob-help", markup=False)
        self.knob: str | None = None

    def show_knob(self, name: str | None) -> None:
        self.knob = name
        self.update(knob_help(name) if name else "Tab to a knob to see what it means")
        self.fit()

    def fit(self) -> None:
        """The fields' scroll as tall as the box leaves beside the title, this text and their margins."""
        screen = self.screen
        scroll = screen.query_one("#knobs-scroll")
        box = screen.query_one("#knobs-box")
        width = box.content_region.width
        if not width:
            return
        lines = len(Text(str(self.render())).wrap(self.app.console, width))
        others = sum(w.outer_size.height + w.styles.margin.top + w.styles.margin.bottom
                     for w in box.children if w is not scroll and w is not self and w.display)
        # the box's max-height (90%) less its border (2), the rest and this text with its margin
        room = int(screen.size.height * 0.9) - 2 - others - lines - 1
        scroll.styles.max_height = max(3, room)
        focused = screen.focused
        if focused is not None:  # the field stays in view as the fields' room changes
            screen.call_after_refresh(focused.scroll_visible, animate=False)

    def on_resize(self) -> None:
        self.fit()


class KnobsScreen(ModalScreen[None]):
    """Write a knob as `echo VALUE > /sys/kernel/mm/ksm/KNOB` would: Enter applies the field.

    A value the knob table refuses shows at once; a refusal that depends on the engine's state
    (EBUSY) comes back from the engine thread and shows in the same place.

    The app installs one and shows it again at each k: building its 45 widgets took longer than
    a key may (about 60 ms of the UI thread's time)."""

    BINDINGS = [Binding("escape", "close", "Close", id="knobs.close")]

    _afresh = True  # closed since it was last shown: the next showing starts afresh

    def compose(self) -> ComposeResult:
        with Vertical(id="knobs-box"):
            yield Static("knobs: Enter applies, Tab moves on, Esc closes", id="knobs-title")
            # Scrolls on a small terminal; the field that takes the focus scrolls into view (the
            # scroll itself takes none: Tab goes from field to field).
            with VerticalScroll(id="knobs-scroll", can_focus=False), Grid(id="knobs-grid"):
                for name in LIVE_KNOBS:
                    yield Label(name, classes="knob-name")
                    yield Input(id=f"knob-{name}", name=name, placeholder=ALL_KNOBS[name].expected,
                                classes="knob-input")
                    yield Label("", id=f"knob-error-{name}", classes="knob-error", markup=False)
            yield KnobHelp()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self.query_one(KnobHelp).show_knob(getattr(event.widget, "name", None))

    def action_close(self) -> None:
        self._afresh = True
        self.dismiss()

    def on_screen_resume(self) -> None:
        """Shown again (not back from a screen above, such as ^p's): every field as the engine
        has it, no error from the last time, and the focus on the first field (run) with its value
        selected, so that what is typed replaces run's value and never lands in the field last
        edited (which once set advisor_max_pages_to_scan to a value meant for run)."""
        if not self._afresh:
            return
        self._afresh = False
        view = getattr(self.app, "view", None)
        ctl = getattr(view, "controller", None)
        driven = f"driven by {ctl.name} (its next tick may write over a value set here) · " if ctl else ""
        self.query_one("#knobs-title", Static).update(f"knobs: {driven}Enter applies, Tab moves on, Esc closes")
        for name in LIVE_KNOBS:
            if view is not None:
                self.query_one(f"#knob-{name}", Input).value = str(self._knob(view, name))
            self.show_error(name, "")
        first = self.query_one(f"#knob-{LIVE_KNOBS[0]}", Input)
        self.set_focus(first)
        first.select_all()

    @staticmethod
    def _knob(view: EngineView, name: str) -> object:
        return view.snapshot.flow if name == "flow" else view.snapshot.knobs[name]

    def update_from(self, view: EngineView) -> None:
        """Fields the user is not editing follow the engine (a `set` event, another key)."""
        for name in LIVE_KNOBS:
            field = self.query_one(f"#knob-{name}", Input)
            if not field.has_focus:
                field.value = str(self._knob(view, name))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        assert event.input.id is not None  # every field is made with one
        name = event.input.id.removeprefix("knob-")
        try:
            value = ALL_KNOBS[name].parse(event.value)
        except KnobError as err:
            self.show_error(name, str(err))
            return
        self.show_error(name, "")
        send_command(self.app, SetKnob(name, value))

    def show_error(self, name: str, text: str) -> None:
        label = self.query_one(f"#knob-error-{name}", Label)
        label.update(text)
        label.display = bool(text)


class OpenScreen(ModalScreen[Scenario | None]):
    """Pick a built-in scenario or type a path; a bad file shows its one-line error here."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close", id="open.close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="open-box"):
            yield Static("open a scenario: type a path and press Enter, or pick a built-in", id="open-title")
            # The path first: the list below shrinks to what a small terminal leaves of it.
            yield Input(placeholder="path/to/scenario.toml", id="open-path")
            yield Label("", id="open-error", markup=False)
            yield OptionList(*[Option(Text(name), id=name) for name, _ in builtin_scenarios()], id="open-builtins")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        assert event.option.id is not None  # every built-in is listed with its name as id
        self._open(event.option.id)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._open(event.value.strip())

    _chosen = False

    def _open(self, arg: str) -> None:
        # Two Enters in one read of the terminal both reach this screen before it has gone:
        # the first one chooses; a second dismiss would pop the main screen.
        if self._chosen:
            return
        try:
            scenario = load_scenario(arg)
        except ScenarioError as err:
            self.query_one("#open-error", Label).update(str(err))
            return
        self._chosen = True
        self.dismiss(scenario)
