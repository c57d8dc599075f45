"""`ksmtui check SCENARIO`: validate a scenario and the options, run nothing."""

from __future__ import annotations

from ksmtui.cli.common import load
from ksmtui.cli.options import parse_args


def main(argv: list[str]) -> int:
    scenario = load(parse_args("check", argv))
    processes = sum(p.count for p in scenario.processes)
    pages = sum(p.count * sum(r.pages for r in p.regions) for p in scenario.processes)
    events = len(scenario.events)
    counts = (f"{processes:,} process{'es' * (processes != 1)}, {pages:,} page{'s' * (pages != 1)}, "
              f"{events:,} event{'s' * (events != 1)}")
    print(f"ok: {scenario.name} ({counts})")
    return 0


