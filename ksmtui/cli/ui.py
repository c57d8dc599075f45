"""`ksmtui [SCENARIO]`: the UI, on the built-in "default" scenario without one."""

from __future__ import annotations

from ksmtui.cli.common import controller_factory, cost_profile, load
from ksmtui.cli.options import parse_args


def main(argv: list[str]) -> int:
    opts = parse_args(None, argv)
    scenario = load(opts)
    cost_profile(opts.costs)  # a bad --costs file: one line before the UI starts
    control = controller_factory(scenario, opts)
    from ksmtui.ui.apps.model import run_app

    return run_app(scenario, opts, control)
