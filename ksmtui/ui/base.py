"""What the model's app and the host's app share: sizing to the terminal and paging a tab."""

from __future__ import annotations

from typing import Iterable

from textual.actions import parse
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static, TabbedContent

MIN_WIDTH, MIN_HEIGHT = 60, 18


class BaseApp(App[int]):
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's commands, then the app's own keys (those it offers now: check_action), each
        titled by its footer name and key, described by its tooltip."""
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            if not isinstance(binding, Binding) or binding.action == "quit":  # Textual's own palette has quit
                continue
            _, name, params = parse(binding.action)
            if self.check_action(name, params) is False:
                continue
            yield SystemCommand(
                f"{binding.description} ({binding.key_display or binding.key})",
                binding.tooltip or binding.description,
                lambda action=binding.action: self.run_action(action),
            )

    def fit_screen(self, width: int, height: int) -> Screen:
        """Mark the base screen for the terminal's size (-too-small, -wide); returns it for classes
        of the app's own."""
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        screen = self.screen_stack[0] if self.screen_stack else self.screen
        screen.set_class(small, "-too-small")
        screen.set_class(width >= 120, "-wide")
        if small:
            self.query_one("#too-small", Static).update(
                f"ksmtui needs a terminal of at least {MIN_WIDTH}x{MIN_HEIGHT}; this one is {width}x{height}."
            )
        return screen

    def action_scroll_tab(self, direction: int) -> None:
        pane = self.query_one(TabbedContent).active_pane
        for scroll in pane.query(VerticalScroll) if pane is not None else ():
            if direction > 0:
                scroll.scroll_page_down(animate=False)
            else:
                scroll.scroll_page_up(animate=False)
