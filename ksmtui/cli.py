"""The `ksmtui` command: the UI, headless runs, the flow comparison, and the helpers around them.

    ksmtui [SCENARIO]                 the UI (on the built-in "default" scenario without one)
    ksmtui run SCENARIO [--json]      headless to the stop condition; a summary, or the JSON contract
    ksmtui compare SCENARIO           legacy vs optimized on the same workload, as the cover letter
    ksmtui check SCENARIO             validate only
    ksmtui list                       the built-in scenarios
    ksmtui kernel | parity SCENARIO   the same scenario on the real kernel (ksmtui.kernel.run)
    ksmtui parity --random N          differential fuzzing, model against kernel (ksmtui.kernel.fuzz)
    ksmtui bench                      engine throughput, and the real ksmd's beside it (ksmtui.bench)
    ksmtui sweep SCENARIO --set K=V,V  many runs over a grid of knobs, flows and seeds, on Dask (ksmtui.sweep)
    ksmtui capture | estimate         real memory as hashes; what KSM settles to on it (docs/capture.md)
    ksmtui host | replay              this machine's own ksmd, live or recorded (docs/host.md)

Bad input (a scenario, an option) is one line on stderr and exit status 2, and nothing runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import textwrap
import time

from engine.knobs import ENGINE_KNOBS, KnobError
from engine.scenario import Scenario, ScenarioError, printable
from engine.timeline import NO_PROGRESS, StopRule

COMMANDS = ("run", "compare", "check", "list", "kernel", "parity", "bench", "sweep", "capture", "estimate",
            "host", "replay")
DEFAULT_SCENARIO = "default"


class UsageError(Exception):
    """A bad command line, said in one line (argparse's own words: "argument --seed: expected ...")."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage too: we promise one line
        raise UsageError(message)


def _seed(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        value = -1
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"expected an integer 0..18446744073709551615, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _flow(text: str) -> str:
    try:
        return ENGINE_KNOBS["flow"].parse(text)
    except KnobError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _knob_setting(text: str) -> tuple[str, int | str]:
    """KNOB=VALUE, validated by the knob table the scenario files use (a ScenarioError names --set)."""
    from engine.scenario import parse_set_option

    return parse_set_option(text)


def _add_run_options(p: argparse.ArgumentParser, flow: bool = True, json_: bool = False) -> None:
    if flow:
        p.add_argument("--flow", type=_flow, help="optimized (v6.11+, default), legacy (v6.10) or series-v1")
    p.add_argument("--seed", type=_seed, help="seed every random choice (default: the scenario's)")
    p.add_argument("--set", dest="settings", metavar="KNOB=VALUE", type=_knob_setting, action="append",
                   default=[], help="set a [ksm] or [engine] knob before the run (repeatable)")
    p.add_argument("--full-scans", type=_positive, metavar="N", help="stop after N full scans")
    p.add_argument("--after-ms", type=_positive, metavar="N", help="stop after N simulated milliseconds")
    if json_:
        p.add_argument("--json", action="store_true", help="print one JSON object (scenario-format.md)")


def _scenario_arg(p: argparse.ArgumentParser, optional: bool = False) -> None:
    p.add_argument("scenario", nargs="?" if optional else None, default=DEFAULT_SCENARIO if optional else None,
                   help="a scenario file, or the name of a built-in scenario (ksmtui list)")


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser of one command; None is the UI (`ksmtui [SCENARIO]`)."""
    if command is None:
        p = Parser(prog="ksmtui", description="A live model of Linux KSM (ksmd) in the terminal.",
                   epilog="commands: " + ", ".join(COMMANDS) + " (ksmtui COMMAND --help)")
        _scenario_arg(p, optional=True)
        _add_run_options(p)
        return p
    p = Parser(prog=f"ksmtui {command}")
    if command == "list":
        p.description = "List the built-in scenarios."
    elif command == "check":
        p.description = "Validate a scenario (and the options) without running it."
        _scenario_arg(p)
        _add_run_options(p)
    elif command == "run":
        p.description = "Run a scenario headless to its stop condition and report."
        _scenario_arg(p)
        _add_run_options(p, json_=True)
    elif command == "compare":
        p.description = "Run the legacy and the optimized flow on the same workload and compare them."
        _scenario_arg(p)
        _add_run_options(p, flow=False)
    elif command == "kernel":
        p.description = "Realise the scenario with real processes on this machine's KSM and report."
        _scenario_arg(p)
        _add_run_options(p, flow=False, json_=True)
    elif command == "parity":
        p.description = "Run the scenario on the model and on the real kernel and set the counters side by side."
        p.epilog = "ksmtui parity --random N [--seed S] [--keep DIR]: random scenarios, model against kernel"
        _scenario_arg(p)
        _add_run_options(p, json_=True)
    if command in ("kernel", "parity"):
        p.add_argument("--trace", action="store_true", help="also count the ksm tracepoints (needs tracefs)")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """argv (without the program name) to options: .command .scenario .flow .seed .overrides
    .full_scans .after_ms .json .trace, every attribute present whatever the command."""
    command = argv[0] if argv and argv[0] in COMMANDS else None
    opts = build_parser(command).parse_args(argv[1:] if command else argv)
    opts.command = command
    overrides = dict(opts.__dict__.pop("settings", []))
    set_flow = overrides.pop("flow", None)
    if set_flow and not hasattr(opts, "flow"):
        raise ScenarioError("--set", "engine", "flow", f"{command} takes no flow")
    if set_flow and getattr(opts, "flow", None) not in (None, set_flow):
        raise ScenarioError("--set", "engine", "flow",
                            f"expected the same flow as --flow {opts.flow}, got {set_flow!r}")
    opts.flow = getattr(opts, "flow", None) or set_flow
    opts.overrides = overrides
    for name in ("scenario", "seed", "full_scans", "after_ms"):
        setattr(opts, name, getattr(opts, name, None))
    opts.json = getattr(opts, "json", False)
    opts.trace = getattr(opts, "trace", False)
    return opts


def load(opts: argparse.Namespace) -> Scenario:
    """The scenario with --flow, --seed and --set applied: all of it valid, or a ScenarioError."""
    from engine.scenario import apply_overrides, load_scenario

    return apply_overrides(load_scenario(opts.scenario), flow=opts.flow, seed=opts.seed, overrides=opts.overrides)


def simulation(scenario: Scenario, flow: str | None = None):
    from engine.sim import Simulation

    return Simulation(scenario, flow=flow)


class Progress:
    """A one-line progress report on stderr, redrawn a few times a second, for runs that take a while."""

    def __init__(self, label: str, target: str, enabled: bool):
        self.label, self.target, self.enabled = label, target, enabled
        self.start = self.last = time.monotonic()
        self.shown = False

    def __call__(self, sim) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.2 or now - self.start < 0.5:
            return
        self.last = now
        counters = sim.snapshot(tree_limit=0).counters
        rate = counters["pages_scanned"] / (now - self.start)
        sys.stderr.write(
            f"\r\033[K{self.label}: full_scans {counters['full_scans']:,}, {sim.now_ns // 1_000_000:,} ms "
            f"simulated (stops at {self.target}), {counters['pages_scanned']:,} pages scanned ({rate:,.0f}/s)"
        )
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False


def stop_target(scenario: Scenario, opts: argparse.Namespace) -> str:
    """Where the run will stop, in words: options replace [stop] (engine/timeline.py StopRule)."""
    return StopRule.of(scenario.stop, opts.full_scans, opts.after_ms).describe()


def want_progress(opts: argparse.Namespace) -> bool:
    # With --json into a pipe a script is reading: keep the terminal quiet as well.
    return sys.stderr.isatty() and not (opts.json and not sys.stdout.isatty())


def run_to_stop(sim, scenario: Scenario, opts: argparse.Namespace, label: str) -> str:
    progress = Progress(label, stop_target(scenario, opts), want_progress(opts))
    try:
        reason = sim.run(full_scans=opts.full_scans, after_ms=opts.after_ms, progress=progress)
    finally:
        progress.done()
    if reason.startswith(NO_PROGRESS):
        print(f"ksmtui {opts.command}: note: {label}: stopped at {sim.now_ns // 1_000_000:,} ms simulated: "
              f"{reason}", file=sys.stderr)
    return reason


def cmd_run(scenario: Scenario, opts: argparse.Namespace) -> int:
    from ksmtui.report import summary

    start = time.perf_counter()
    sim = simulation(scenario)
    run_to_stop(sim, scenario, opts, scenario.name)
    wall_s = round(time.perf_counter() - start, 3)
    if opts.json:
        result = sim.result()
        result["wall_s"] = wall_s
        print(json.dumps(result))
        for note in sim.notes:
            print(f"ksmtui run: note: {note}", file=sys.stderr)
        checked, mismatches = result["data_check"]["pages_checked"], result["data_check"]["mismatches"]
    else:
        checked, mismatches = sim.data_check()
        sys.stdout.write(summary(sim.snapshot(), (checked, mismatches), wall_s, sim.notes))
    if mismatches:
        print(f"ksmtui run: internal error: {mismatches:,} of {checked:,} pages do not read back what was "
              "last written there", file=sys.stderr)
        return 1
    return 0


def cmd_compare(scenario: Scenario, opts: argparse.Namespace) -> int:
    from ksmtui.report import compare_report

    snapshots = []
    for flow in ("legacy", "optimized"):
        sim = simulation(scenario, flow)
        run_to_stop(sim, scenario, opts, f"{scenario.name} ({flow})")
        snapshots.append(sim.snapshot(tree_limit=0))
        del sim
        gc.collect()  # a simulation is a web of cycles: free the first before the second is built
    sys.stdout.write(compare_report(*snapshots))
    return 0


def cmd_check(scenario: Scenario, opts: argparse.Namespace) -> int:
    processes = sum(p.count for p in scenario.processes)
    pages = sum(p.count * sum(r.pages for r in p.regions) for p in scenario.processes)
    events = len(scenario.events)
    counts = (f"{processes:,} process{'es' * (processes != 1)}, {pages:,} page{'s' * (pages != 1)}, "
              f"{events:,} event{'s' * (events != 1)}")
    print(f"ok: {scenario.name} ({counts})")
    return 0


def cmd_list(opts: argparse.Namespace) -> int:
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


def dispatch(opts: argparse.Namespace) -> int:
    if opts.command == "list":
        return cmd_list(opts)
    scenario = load(opts)
    if opts.command is None:
        from ksmtui.ui.app import run_app

        return run_app(scenario, opts)
    if opts.command == "kernel":
        from ksmtui.kernel.run import cmd_kernel

        return cmd_kernel(scenario, opts)
    if opts.command == "parity":
        from ksmtui.kernel.run import cmd_parity

        return cmd_parity(scenario, opts)
    return {"run": cmd_run, "compare": cmd_compare, "check": cmd_check}[opts.command](scenario, opts)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    prog = f"ksmtui {argv[0]}" if argv and argv[0] in COMMANDS else "ksmtui"
    try:
        if argv and argv[0] == "bench":
            from ksmtui.bench import main as bench_main

            return bench_main(argv[1:])
        if argv and argv[0] == "parity" and any(a == "--random" or a.startswith("--random=") for a in argv):
            from ksmtui.kernel.fuzz import main as fuzz_main

            return fuzz_main(argv[1:])
        if argv and argv[0] == "sweep":
            from ksmtui.sweep import main as sweep_main

            return sweep_main(argv[1:])
        if argv and argv[0] in ("capture", "estimate"):  # their own modules and parsers
            import importlib

            return importlib.import_module(f"ksmtui.{argv[0]}").main(argv[1:])
        if argv and argv[0] in ("host", "replay"):
            from ksmtui import hostcmd

            return (hostcmd.cmd_host if argv[0] == "host" else hostcmd.cmd_replay)(argv[1:])
        return dispatch(parse_args(argv))
    except (UsageError, ScenarioError, KnobError) as e:
        print(f"{prog}: error: {printable(str(e))}", file=sys.stderr)  # arguments echoed: escaped
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ksmtui run x | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
