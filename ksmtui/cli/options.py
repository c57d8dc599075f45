"""The command line, parsed: every `ksmtui` command's options, and the pieces a subcommand's own
parser is made of.

The model's commands (the UI, run, compare, check, list, kernel, parity) are parsed here into one
typed `Options`; the others (bench, sweep, capture, ...) build their parsers in their own modules
from `Parser` and the value types below, so that every error is one line and exit status 2.

Bad input is a UsageError (argparse's own words: "argument --seed: expected ...") or, for a knob,
a ScenarioError naming --set; the CLI prints it in one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from engine.knobs import ALL_KNOBS, ENGINE_KNOBS, KnobError
from engine.scenario import RunConfig, ScenarioError, parse_set_option

MODEL_COMMANDS = ("run", "compare", "check", "list", "kernel", "parity")
DEFAULT_SCENARIO = "default"


class UsageError(Exception):
    """Bad input (the command line, or a file it names), said in one line: exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage too: we promise one line
        raise UsageError(message)


@dataclass(frozen=True)
class Options(RunConfig):
    """A built-in command's parsed command line. command None is the UI."""

    command: str | None = None
    scenario: str | None = None
    json: bool = False
    trace: bool = False
    timing: bool = False
    repeat: int = 1

    controller: str = "none"  # run and the UI: a controller around the model (engine/controllers.py)
    controller_set: tuple[str, ...] = ()  # its settings, K=V
    sample_ms: int = 1000
    memory_from: str | None = None  # a host recording whose /proc/meminfo is the [memory]


# ------------------------------------------------------------------------- value types --

def seed(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        value = -1
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"expected an integer 0..18446744073709551615, got {text!r}")
    return value


def number(kind: type[int] | type[float], low: float, high: float, expected: str,
           low_open: bool = False) -> Callable[[str], float]:
    """An option's value type: a `kind` number in [low, high] ((low, high] with low_open), else
    "expected EXPECTED, got 'TEXT'" (NaN and words included)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


def positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def flow(text: str) -> str:
    try:
        return str(ENGINE_KNOBS["flow"].parse(text))
    except KnobError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def knob_setting(text: str) -> tuple[str, int | str]:
    """KNOB=VALUE, validated by the knob table the scenario files use (a ScenarioError names --set)."""
    return parse_set_option(text)


# ----------------------------------------------------------------------------- parsers --

def add_scenario(p: argparse.ArgumentParser, optional: bool = False) -> None:
    p.add_argument("scenario", nargs="?" if optional else None, default=DEFAULT_SCENARIO if optional else None,
                   help="a scenario file, or the name of a built-in scenario (ksmtui list)")


def add_run_options(p: argparse.ArgumentParser, with_flow: bool = True, with_json: bool = False) -> None:
    if with_flow:
        p.add_argument("--flow", type=flow, help="optimized (v6.11+, default), legacy (v6.10) or series-v1")
    p.add_argument("--seed", type=seed, help="seed every random choice (default: the scenario's)")
    p.add_argument("--set", dest="settings", metavar="KNOB=VALUE", type=knob_setting, action="append",
                   default=[], help="set a [ksm] or [engine] knob before the run (repeatable; the knobs are "
                   "listed below)")
    add_knobs_epilog(p, ALL_KNOBS)
    p.add_argument("--full-scans", type=positive, metavar="N", help="stop after N full scans")
    p.add_argument("--after-ms", type=positive, metavar="N", help="stop after N simulated milliseconds")
    add_costs(p)
    if with_json:
        p.add_argument("--json", action="store_true", help="print one JSON object (docs/scenarios.md)")


def add_knobs_epilog(p: argparse.ArgumentParser, names) -> None:
    """The knobs, what each means and takes (ksmtui.text.knobs), after the options in --help."""
    import textwrap

    from ksmtui.text.knobs import knobs_help

    p.formatter_class = argparse.RawDescriptionHelpFormatter  # the knobs' lines as they are, not one paragraph
    after = textwrap.fill(p.epilog, 100, break_on_hyphens=False) if p.epilog else None
    p.epilog = "\n\n".join(filter(None, ("knobs:\n" + knobs_help(names), after)))


def add_costs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--costs", metavar="reference|FILE",
                   help="the model's cost profile: the built-in reference, or a file `ksmtui calibrate` "
                        "wrote (default: this machine's, when calibrated, else the reference)")


def add_controller_options(p: argparse.ArgumentParser) -> None:
    from engine.controllers import CONTROLLERS

    p.add_argument("--controller", choices=CONTROLLERS, default="none",
                   help="set the knobs from memory pressure as this controller does (docs/controllers.md)")
    p.add_argument("--controller-set", metavar="K=V", action="append", default=[],
                   help="a controller setting, e.g. KSM_MONITOR_INTERVAL=5 (repeatable)")
    p.add_argument("--sample-ms", type=positive, default=1000, metavar="N",
                   help="sample saving and ksmd CPU every N simulated ms (default 1000)")
    p.add_argument("--memory-from", metavar="RECORDING",
                   help="the host's memory over time from a recording (ksmtui host --record), as the "
                        "scenario's [memory], for the controller")


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser of one built-in command; None is the UI (`ksmtui [SCENARIO]`)."""
    if command is None:
        from ksmtui.cli import COMMANDS

        p = Parser(prog="ksmtui", description="A live model of Linux KSM (ksmd) in the terminal.",
                   epilog="commands: " + ", ".join(COMMANDS) + " (ksmtui COMMAND --help)")
        add_scenario(p, optional=True)
        add_run_options(p)
        add_controller_options(p)
        return p
    p = Parser(prog=f"ksmtui {command}")
    if command == "list":
        p.description = "List the built-in scenarios."
    elif command == "check":
        p.description = "Validate a scenario (and the options) without running it."
        add_scenario(p)
        add_run_options(p)
    elif command == "run":
        p.description = "Run a scenario headless to its stop condition and report."
        add_scenario(p)
        add_run_options(p, with_json=True)
        add_controller_options(p)
    elif command == "compare":
        p.description = "Run the legacy and the optimized flow on the same workload and compare them."
        add_scenario(p)
        add_run_options(p, with_flow=False)
    elif command == "kernel":
        p.description = "Realise the scenario with real processes on this machine's KSM and report."
        add_scenario(p)
        add_run_options(p, with_flow=False, with_json=True)
    elif command == "parity":
        p.description = "Run the scenario on the model and on the real kernel and set the counters side by side."
        p.epilog = ("ksmtui parity --random N [--timing [--repeat R]] [--seed S] [--keep DIR]: random scenarios, "
                    "model against kernel")
        add_scenario(p)
        add_run_options(p, with_json=True)
    if command in ("kernel", "parity"):
        p.add_argument("--trace", action="store_true", help="also count the ksm tracepoints (needs tracefs)")
        p.add_argument("--timing", action="store_true",
                       help="sample general_profit and ksmd's CPU every ~2 ms: time to 50/90/100%% of the saving "
                            "and ksmd's CPU (parity judges them: 5%% for times, 15%% for CPU)")
    if command == "parity":
        p.add_argument("--repeat", type=positive, default=1, metavar="N",
                       help="with --timing: run the kernel N times and judge the median of each figure")
    return p


def parse_args(command: str | None, argv: list[str]) -> Options:
    """A model command's arguments (after its name), or the UI's (command None), to Options."""
    ns = vars(build_parser(command).parse_args(argv))
    overrides = dict(ns.pop("settings", []))
    set_flow = overrides.pop("flow", None)
    if set_flow and "flow" not in ns:
        raise ScenarioError("--set", "engine", "flow", f"{command} takes no flow")
    if set_flow and ns.get("flow") not in (None, set_flow):
        raise ScenarioError("--set", "engine", "flow",
                            f"expected the same flow as --flow {ns['flow']}, got {set_flow!r}")
    ns["flow"] = ns.get("flow") or set_flow
    if "controller_set" in ns:
        ns["controller_set"] = tuple(ns["controller_set"])
    return Options(command=command, overrides=overrides, **ns)
