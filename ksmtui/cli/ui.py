"""`ksmtui [SCENARIO]`: the UI, on the built-in "default" scenario without one."""

from __future__ import annotations

from ksmtui.cli.common import controller_factory, load
from ksmtui.cli.options import parse_args


def main(argv: list[str]) -> int:
    opts = parse_args(None, argv)
    scenario = load(opts)
    control = controller_factory(scenario, opts)
    from ksmtui.ui.apps.model import run_app

    return run_app(scenario, opts, control)
