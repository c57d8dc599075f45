"""What the model's commands (the UI, run, compare, check, kernel, parity) share: the scenario
with the command line applied, and a run to its stop with progress on the terminal."""

from __future__ import annotations

import sys
import time

from engine.cost import CostProfile
from engine.scenario import Scenario
from engine.timeline import NO_PROGRESS, StopRule
from ksmtui.cli.options import Options


def load(opts: Options) -> Scenario:
    """The scenario with --flow, --seed and --set applied: all of it valid, or a ScenarioError."""
    from engine.scenario import apply_overrides, load_scenario

    assert opts.scenario is not None  # every command that loads one requires it
    return apply_overrides(load_scenario(opts.scenario), flow=opts.flow, seed=opts.seed,
                           overrides=dict(opts.overrides))


def cost_profile(choice: str | None) -> CostProfile:
    """--costs (or this machine's calibrated profile, or the reference): engine/cost.py."""
    from ksmtui.host.costs import load_profile

    return load_profile(choice)


def controller_loop(scenario: Scenario, opts: Options):
    """--controller NAME --controller-set K=V [--memory-from RECORDING]: the loop (None without a
    controller), or a ScenarioError/UsageError naming the option."""
    make = controller_factory(scenario, opts)
    return None if make is None else make(scenario)


def controller_factory(scenario: Scenario, opts: Options):
    """What makes the command line's controller loop for a simulation of the scenario (one loop per
    simulation: the UI builds one at each restart), checked once here; None without a controller."""
    from dataclasses import replace

    from engine.controllers import ControllerError, control_loop
    from engine.scenario import ScenarioError
    from ksmtui.cli.options import UsageError

    if opts.controller == "none" and not opts.controller_set:
        if opts.memory_from:
            raise UsageError("--memory-from: only a controller reads the host's memory; expected --controller NAME")
        return None
    settings = {}
    for item in opts.controller_set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError("--controller-set", "", "", f"expected K=V, got {item!r}")
        settings[key.strip()] = value.strip()
    recorded = recorded_memory(opts.memory_from, opts.command or "ksmtui") if opts.memory_from else None

    def make(sc: Scenario):
        return control_loop(sc if recorded is None else replace(sc, meminfo=recorded), opts.controller, settings,
                            opts.sample_ms)
    try:
        make(scenario)
    except ControllerError as e:
        raise ScenarioError("--controller-set", "", opts.controller, str(e)) from None
    return make


def recorded_memory(path: str, command: str):
    """A recording's /proc/meminfo as [memory] (ksmtui.host.recording.memory_timeline), or a
    UsageError naming --memory-from; its notes (a last line cut short) on stderr."""
    from engine.scenario import printable
    from ksmtui.cli.options import UsageError
    from ksmtui.host.recording import RecordingError, memory_timeline

    notes: list[str] = []
    try:
        info = memory_timeline(path, notes)
    except RecordingError as err:
        raise UsageError(f"--memory-from {err}") from None
    for note in notes:
        print(f"ksmtui {command}: note: {printable(note)}", file=sys.stderr)
    return info


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


def stop_target(scenario: Scenario, opts: Options) -> str:
    """Where the run will stop, in words: options replace [stop] (engine/timeline.py StopRule)."""
    return StopRule.of(scenario.stop, opts.full_scans, opts.after_ms).describe()


def want_progress(opts: Options) -> bool:
    # With --json into a pipe a script is reading: keep the terminal quiet as well.
    return sys.stderr.isatty() and not (opts.json and not sys.stdout.isatty())


def run_to_stop(sim, scenario: Scenario, opts: Options, label: str) -> str:
    progress = Progress(label, stop_target(scenario, opts), want_progress(opts))
    try:
        reason = sim.run(full_scans=opts.full_scans, after_ms=opts.after_ms, progress=progress)
    finally:
        progress.done()
    if reason.startswith(NO_PROGRESS):
        print(f"ksmtui {opts.command}: note: {label}: stopped at {sim.now_ns // 1_000_000:,} ms simulated: "
              f"{reason}", file=sys.stderr)
    return reason


