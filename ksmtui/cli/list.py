"""`ksmtui list`: the built-in scenarios, each with the first sentence of its description."""

from __future__ import annotations

import shutil
import textwrap

from ksmtui.cli.options import parse_args


def main(argv: list[str]) -> int:
    parse_args("list", argv)
    from engine.scenario import builtin_scenarios, load_scenario

    builtins = builtin_scenarios()
    width = max(len(name) for name, _ in builtins)
    room = max(40, shutil.get_terminal_size((120, 24)).columns - width - 2)
    for name, path in builtins:
        first = " ".join(load_scenario(path).description.split()).split(". ")[0].rstrip(".")
        # Wrapped, never cut: two scenarios may differ only at the end of their first sentence.
        lines = textwrap.wrap(first, room) or [""]
        print(f"{name:<{width}}  {lines[0]}")
        for line in lines[1:]:
            print(f"{'':<{width}}  {line}")
    return 0


