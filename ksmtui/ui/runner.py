"""The engine's one thread: it owns the Simulation(s), takes commands from one queue, and posts
what the panels need to the UI: after every command, about ten times a second while paused or
paced, and while flat out only when the UI asks (View), so that drawing, which needs the same
GIL, takes no more of the engine's time than the UI allows itself (ksmtui.ui.apps.model.UI_BUDGET).

The UI never touches a Simulation. It sends commands (`Runner.send`: the small frozen dataclasses
below) and reads the newest
`EngineUpdate`; updates coalesce (`can_replace`), so a UI that falls behind skips to the latest
instead of working through a backlog, and the worker never waits for the UI (call_from_thread
would block it once per call). Work runs in slices of at most SLICE_PAGES pages and SLICE_S of wall
time, between which commands are taken and updates go out: a command never waits for a whole ksmd
wake-up (1,000 pages or more on a large machine).

A snapshot excerpts the trees only while the UI shows them (ShowTrees): the excerpt is the
costly part of a snapshot, and ten a second of it would take the engine's time for nothing.

Paced speeds run the simulated clock at a multiple of the wall clock; "max" runs flat out. The
wall clock decides only how much runs between two updates, never what a run computes.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Protocol, runtime_checkable

from textual.message import Message

from engine.controllers import ControlLoop
from engine.knobs import ALL_KNOBS, FLOWS, KnobError
from engine.scenario import RunConfig, Scenario, available_memory
from engine.sim import Simulation
from engine.snapshot import COUNTERS, PATHS, Snapshot, TreeFound
from engine.timeline import NO_PROGRESS, RUN_ON
from ksmtui.host.costs import load_profile

SLICE_S = 0.02  # wall time of engine work between two looks at the command queue
SLICE_PAGES = 100  # cmp_and_merge_page calls between two looks: a few ms even on the slowest path
PUBLISH_S = 0.1  # updates to the UI while paced, and samples of the history: about 10 Hz
TREE_LIMIT = 100  # tree nodes per snapshot while the trees are shown
BEHIND_S = 1.0  # a paced run this far behind the wall clock gives up catching up
PACE_WINDOW_S = 2.0  # the achieved speed is measured over this much wall time
ACHIEVED_SHORT = 0.9  # below this share of the speed asked for, the status says what is achieved
SPEEDS: tuple[int | None, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, None)  # None: flat out
# A full collection walks every object the collector tracks, with the GIL held: on a large run
# that is mostly the rmap_items (one per page, alive as long as their page), and the UI allocates
# enough to start one every few seconds: 100-250 ms in which a key waits. What has lived through a
# full scan is frozen (never walked again), at most every FREEZE_S; the engine makes no cyclic
# garbage (0 collected over 30 full scans of large and of fleet), so freezing it leaks nothing.
FREEZE_S = 10.0
HISTORY = 120  # updates kept for the sparklines and the rates
MIN_SAMPLE_NS = 1_000_000  # simulated time between two samples of the history kept
RATE_WINDOW_NS = 1_000_000_000  # rates are taken over at least this much simulated time
COMPARE_FLOWS = ("legacy", "optimized")  # Before / After, as the series' cover letter
# The pairs f steps through in compare mode, Before first: any two flows can be compared.
COMPARE_PAIRS = (COMPARE_FLOWS, ("optimized", "series-v1"), ("legacy", "series-v1"))


# --- commands: what the UI sends the engine thread (Runner.send) ---


@dataclass(frozen=True)
class SetPaused:
    paused: bool | None  # None toggles


@dataclass(frozen=True)
class StepPage:
    """One cmp_and_merge_page() call (pauses)."""


@dataclass(frozen=True)
class StepBatch:
    """One ksmd wake-up (pauses)."""


@dataclass(frozen=True)
class ChangeSpeed:
    step: int  # through SPEEDS: +1 faster, -1 slower


@dataclass(frozen=True)
class SetKnob:
    name: str
    value: object  # parsed by the knob's own table


@dataclass(frozen=True)
class ToggleKnob:
    name: str  # a 0/1 knob, flipped from the engine's value, not a possibly stale view's


@dataclass(frozen=True)
class ScaleKnob:
    name: str
    factor: int  # negative divides


@dataclass(frozen=True)
class CycleFlow:
    """The next flow; in compare mode, the next pair of flows, from time 0."""


@dataclass(frozen=True)
class Restart:
    """The scenario again from time 0, with the knobs set since."""


@dataclass(frozen=True)
class Load:
    scenario: Scenario


@dataclass(frozen=True)
class ToggleCompare:
    pass


@dataclass(frozen=True)
class ShowTrees:
    shown: bool


@dataclass(frozen=True)
class TreePage:
    tree: str  # "stable" or "unstable"
    pages: int  # the tree's window moves by whole pages of TREE_LIMIT entries


@dataclass(frozen=True)
class TreeQuery:
    """A tree search as typed (text) and parsed: a kpfn, or a process and an address."""

    text: str
    kpfn: int | None = None
    process: str | None = None
    address: int | None = None

    @classmethod
    def parse(cls, text: str) -> "TreeQuery":
        """KPFN (0x... or decimal) or PROCESS:ADDRESS; ValueError saying what was expected."""
        text = text.strip()
        process, colon, address = text.rpartition(":")
        try:
            if colon:
                if not process:
                    raise ValueError
                return cls(text, process=process, address=int(address, 0))
            return cls(text, kpfn=int(text, 0))
        except ValueError:
            raise ValueError(f"expected a kpfn (0x1a2b or 6699) or process:address, got {text!r}") from None


@dataclass(frozen=True)
class TreeFind:
    query: TreeQuery  # the window moves to the entry found


@dataclass(frozen=True)
class View:
    """The UI's request for a view (flat out, the engine sends none by itself)."""


@dataclass(frozen=True)
class Sync:
    done: threading.Event  # set once every command sent before has run and its view was posted


@dataclass(frozen=True)
class Quit:
    pass


Command = (SetPaused | StepPage | StepBatch | ChangeSpeed | SetKnob | ToggleKnob | ScaleKnob | CycleFlow
           | Restart | Load | ToggleCompare | ShowTrees | TreePage | TreeFind | View | Sync | Quit)


@runtime_checkable
class CommandSink(Protocol):
    """What a widget of the model app sends its commands to: the app (KsmApp.send), which the
    widgets cannot import (the app imports them)."""

    def send(self, command: Command) -> None: ...


def send_command(app: object, command: Command) -> None:
    """A widget's `self.app`, typed by Textual as any App, is the model app here."""
    assert isinstance(app, CommandSink), f"{type(app).__name__} takes no engine commands"
    app.send(command)


def speed_label(speed: int | None, achieved: float | None = None) -> str:
    """The speed asked for, and the one achieved when the model cannot keep up with it (a large
    scenario simulates less than a second per second on one core)."""
    if speed is None:
        return "max"
    if achieved is not None and achieved < ACHIEVED_SHORT * speed:
        return f"{speed}x ({achieved:.2g}x achieved)"
    return f"{speed}x"


class Pace:
    """Simulated time per wall time over the last PACE_WINDOW_S of a paced run."""

    def __init__(self) -> None:
        self._points: deque[tuple[float, int]] = deque()

    def reset(self) -> None:
        self._points.clear()

    def add(self, wall: float, sim_ns: int) -> None:
        if self._points and sim_ns < self._points[-1][1]:  # a new run (restart, another scenario)
            self._points.clear()
        self._points.append((wall, sim_ns))
        while len(self._points) > 2 and self._points[1][0] <= wall - PACE_WINDOW_S:
            self._points.popleft()

    def ratio(self) -> float | None:
        """None until a second of wall time has been seen."""
        if len(self._points) < 2:
            return None
        (w0, s0), (w1, s1) = self._points[0], self._points[-1]
        return (s1 - s0) / 1e9 / (w1 - w0) if w1 - w0 >= 1.0 else None


@dataclass(frozen=True)
class Trend:
    """History of the displayed simulation, one sample per update sent to the UI."""

    counters: Mapping[str, tuple[int, ...]]  # COUNTERS -> values, oldest first
    path_rates: Mapping[str, float]  # cmp_and_merge_page calls per simulated second, by path
    scan_rate: float  # pages_scanned per simulated second
    sim_ns: tuple[int, ...] = ()  # when each sample was taken, simulated


@dataclass(frozen=True)
class ControllerView:
    """A controller's decisions so far (engine/controllers.py): its name, ticks, and the knob writes
    of its last few decisions as (at_ms, "knob=value ..."), refused writes marked."""

    name: str
    ticks: int
    writes: int
    decisions: tuple[tuple[float, str], ...]

    RECENT = 3

    @classmethod
    def of(cls, loop) -> ControllerView:
        by_time: dict[float, list[str]] = {}
        for w in loop.writes[-4 * cls.RECENT:]:  # a decision writes at most three knobs
            by_time.setdefault(w.at_ms, []).append(f"{w.knob}={w.value}" + (" (refused)" if w.error else ""))
        recent = tuple((t, " ".join(ws)) for t, ws in by_time.items())[-cls.RECENT:]
        return cls(loop.controller.name, loop.ticks, len(loop.writes), recent)


@dataclass(frozen=True)
class EngineView:
    """Everything the panels draw: the snapshot(s) and the runner's own state."""

    snapshots: tuple[Snapshot, ...]  # one; in compare mode Before's and After's (a pair of COMPARE_PAIRS)
    primary: int  # the snapshot the single-simulation panels show
    trend: Trend
    paused: bool
    speed: int | None
    compare: bool
    finished: bool = False  # the scenario's [stop] condition was reached (running on is allowed)
    note: str = ""  # why the runner paused by itself (the stop condition, no progress possible)
    achieved: float | None = None  # simulated seconds per wall second lately, at a paced speed
    controller: ControllerView | None = None  # the controller around the primary simulation, if any

    @property
    def flat_out(self) -> bool:
        return not self.paused and self.speed is None

    @property
    def snapshot(self) -> Snapshot:
        return self.snapshots[self.primary]

    @property
    def state(self) -> str:
        if self.paused and self.note:
            return "finished" if self.finished else "stuck"
        return "paused" if self.paused else "running"


class EngineUpdate(Message):
    """The newest view; a newer one replaces any still queued."""

    def __init__(self, view: EngineView) -> None:
        super().__init__()
        self.view = view

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EngineUpdate)


class EngineError(Message):
    """A command the engine refused (knob is the knob it was about) or an engine failure."""

    def __init__(self, text: str, knob: str | None = None) -> None:
        super().__init__()
        self.text = text
        self.knob = knob


@dataclass
class _Samples:
    sim_ns: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    counters: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    calls: deque = field(default_factory=lambda: deque(maxlen=HISTORY))

    def add(self, snap: Snapshot) -> None:
        # A sample less than MIN_SAMPLE_NS after the one before it is replaced by the next: single
        # steps and updates while paused would otherwise fill the history with samples a few µs
        # apart, and the sparklines would span nothing.
        if len(self.sim_ns) >= 2 and 0 <= snap.sim_ns - self.sim_ns[-1] and \
                self.sim_ns[-1] - self.sim_ns[-2] < MIN_SAMPLE_NS:
            for samples in (self.sim_ns, self.counters, self.calls):
                samples.pop()
        self.sim_ns.append(snap.sim_ns)
        self.counters.append(tuple(snap.counters[c] for c in COUNTERS))
        self.calls.append(tuple(sum(snap.outcomes[p].values()) for p in PATHS))

    def trend(self) -> Trend:
        series = MappingProxyType({c: tuple(s[i] for s in self.counters) for i, c in enumerate(COUNTERS)})
        rates = dict.fromkeys(PATHS, 0.0)
        scan_rate = 0.0
        # The newest sample against the latest one at least RATE_WINDOW_NS older (or the oldest).
        last = len(self.sim_ns) - 1
        base = 0
        for i in range(last, -1, -1):
            if self.sim_ns[last] - self.sim_ns[i] >= RATE_WINDOW_NS:
                base = i
                break
        dt = (self.sim_ns[last] - self.sim_ns[base]) / 1e9 if last >= 0 else 0.0
        if dt > 0:
            rates = {p: (self.calls[last][j] - self.calls[base][j]) / dt for j, p in enumerate(PATHS)}
            k = COUNTERS.index("pages_scanned")
            scan_rate = (self.counters[last][k] - self.counters[base][k]) / dt
        return Trend(series, MappingProxyType(rates), scan_rate, tuple(self.sim_ns))


class Runner:
    """Owns the engine thread. Every public method is called from the UI thread."""

    def __init__(
        self,
        scenario: Scenario,
        post: Callable[[Message], object],
        config: RunConfig = RunConfig(),
        paused: bool = False,
        speed: int | None = None,
        control: Callable[[Scenario], ControlLoop] | None = None,
    ) -> None:
        self._post = post
        self._control = control  # a controller's loop for each simulation built (--controller)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="ksm-engine", daemon=True)
        # Below: touched only by the engine thread once started.
        self._scenario = scenario
        self._config = config  # the command line's flow, seed, --set and stop, for this scenario
        self._flow = config.flow or scenario.engine["flow"]
        self._overrides = dict(config.overrides)  # restart keeps the knobs set since
        self._costs = load_profile(config.costs)  # for every run of this UI, loaded scenarios too
        self._paused = paused
        self._speed = speed
        self._compare = False
        self._pair = COMPARE_FLOWS  # the flows compare mode runs
        self._tree_limit = 0  # no tree excerpt until the UI shows the trees
        self._tree_offsets = {"stable": 0, "unstable": 0}  # the trees' windows: first rank shown
        self._tree_found: TreeFound | None = None
        self._sims: list[Simulation] = []
        self._stop = RUN_ON  # the scenario's, once _build made the simulations
        self._primary = 0
        self._samples = _Samples()
        self._note = ""
        self._finished = False  # the stop condition pauses the run once; resuming runs on
        self._base = (0.0, 0)  # (wall, sim_ns) where the paced clock was last set
        self._last_publish = 0.0
        self._hold_until = 0.0  # set by hold() from the UI thread: one float, written whole
        self._frozen = (-1, 0.0)  # (full_scans, wall time) of the last gc.freeze()
        self._pace = Pace()

    # --- UI side ---

    def start(self) -> None:
        self._thread.start()

    def send(self, command: Command) -> None:
        self._queue.put(command)

    def hold(self, seconds: float) -> None:
        """No engine work for this long (commands still run): the UI answers a key meanwhile.
        In one process the two share the GIL, and flat out the engine would halve the UI's pace."""
        self._hold_until = time.monotonic() + seconds

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every command sent before has run and its update was posted (tests)."""
        done = threading.Event()
        self.send(Sync(done))
        return done.wait(timeout)

    def close(self) -> None:
        if self._thread.is_alive():
            self.send(Quit())
            self._thread.join(timeout=5)

    # --- engine thread ---

    def _main(self) -> None:
        command: Command | None = Restart()  # the first command builds the run; None: run a slice
        while not isinstance(command, Quit):
            if isinstance(command, Sync):
                command.done.set()
            else:
                try:
                    if command is None:
                        self._run_slice()
                    else:
                        self._do(command)
                    self._freeze_survivors()
                    if command is not None or self._paused:
                        self._publish()
                    elif time.monotonic() - self._last_publish >= PUBLISH_S:
                        # Flat out, the UI asks for a view (View) when it has the time to draw
                        # one; the history for the sparklines and rates keeps this pace all the same.
                        self._publish(post=self._speed is not None)
                except KnobError as err:
                    knob = command.name if isinstance(command, (SetKnob, ToggleKnob, ScaleKnob)) else "flow"
                    self._post(EngineError(str(err), knob=knob))
                    self._publish()
                except Exception as err:  # an engine bug must not take the UI down: say it, pause
                    self._paused = True
                    self._post(EngineError(f"engine error: {type(err).__name__}: {err}"))
                    try:
                        self._publish()  # so the header shows the pause
                    except Exception:  # taking the snapshot is what fails: already said above
                        pass
            command = self._next()

    def _next(self) -> Command | None:
        """The next command, or None when engine work is due first."""
        try:
            if self._due():
                return self._queue.get_nowait()
            return self._queue.get(timeout=self._idle_s())
        except queue.Empty:
            return None

    def _do(self, command: Command) -> None:
        match command:
            case SetPaused(paused):
                self._paused = not self._paused if paused is None else paused
                self._note = ""
                self._rebase()
                self._pace.reset()
            case StepPage():
                self._paused = True
                for sim in self._sims:
                    sim.step_page()
                self._check_stop()
            case StepBatch():
                self._paused = True
                for sim in self._sims:
                    sim.step_batch()
                self._check_stop()
            case ChangeSpeed(step):
                i = SPEEDS.index(self._speed) + step
                self._speed = SPEEDS[max(0, min(len(SPEEDS) - 1, i))]
                self._rebase()
                self._pace.reset()
            case SetKnob(name, raw):
                if name == "flow" and self._compare:
                    raise KnobError("compare mode runs two flows: f picks the pair, c leaves it")
                value = ALL_KNOBS[name].parse(raw)
                for sim in self._sims:
                    sim.set_knob(name, value)
                if name == "flow":
                    self._flow = value
                else:
                    self._overrides[name] = value
            case ToggleKnob(name):
                self._do(SetKnob(name, 1 - int(self._knob(name))))
            case ScaleKnob(name, factor):
                now = int(self._knob(name))
                self._do(SetKnob(name, now * factor if factor > 0 else max(1, now // -factor)))
            case CycleFlow() if self._compare:  # the next pair of flows, from time 0
                self._pair = COMPARE_PAIRS[(COMPARE_PAIRS.index(self._pair) + 1) % len(COMPARE_PAIRS)]
                self._build()
            case CycleFlow():
                self._do(SetKnob("flow", FLOWS[(FLOWS.index(self._flow) + 1) % len(FLOWS)]))
            case View():
                pass  # published by _main, as after any command
            case ShowTrees(shown):
                self._tree_limit = TREE_LIMIT if shown else 0
            case TreePage(tree, pages):
                self._tree_offsets[tree] = max(0, self._tree_offsets[tree] + pages * TREE_LIMIT)
            case TreeFind(query):
                found = self._sims[self._primary].tree_find(query.text, query.kpfn, query.process, query.address)
                if found.tree is not None:
                    self._tree_offsets[found.tree] = found.rank // TREE_LIMIT * TREE_LIMIT
                self._tree_found = found
            case Restart():
                self._build()
            case Load(scenario):
                # Another scenario runs as its file says: the command line's flow, seed, --set and
                # stop were for the first one.
                old = self._scenario, self._config, self._flow, self._overrides, self._control
                self._scenario, self._config, self._control = scenario, RunConfig(), None
                self._flow, self._overrides = scenario.engine["flow"], {}
                try:
                    self._build()
                except Exception:  # the old run is gone (released to make room): the old scenario again
                    self._scenario, self._config, self._flow, self._overrides, self._control = old
                    self._build()
                    raise
            case ToggleCompare():  # on or off; either way the workload starts again
                need, have = 2 * self._scenario.memory, available_memory()
                if not self._compare and have is not None and need > have + self._scenario.memory:  # + the run it frees
                    raise KnobError(f"compare mode runs two simulations: about {need / 1e9:.1f} GB, "
                                    f"this machine has {have / 1e9:.1f} GB available")
                self._compare = not self._compare
                self._build()
            case _:
                raise ValueError(f"unknown command {command!r}")

    def _knob(self, name: str) -> int | str:
        return self._sims[self._primary].knobs()[name]

    def _build(self) -> None:
        """(Re)start the run from time 0: one simulation, or one per compared flow."""
        flows = self._pair if self._compare else (self._flow,)
        # A simulation is a web of cycles (rmap_items and stable nodes, mms and their VMAs) that
        # only the cycle collector frees, and it rarely runs a full pass: release the old run
        # before the new one is built, or every restart leaves one behind for a while. The first
        # build has none to release, and a full pass over a big process costs 0.1 s or more.
        restart = bool(self._sims)
        self._sims = []
        gc.unfreeze()  # the old run was frozen with the rest
        if restart:
            gc.collect()
        seed = self._config.seed
        make = self._control
        sims = [Simulation(self._scenario, flow=f, seed=seed, overrides=self._overrides,
                           control=make(self._scenario) if make is not None else None, costs=self._costs)
                for f in flows]
        self._sims = sims
        self._stop = sims[0].stop_rule(self._config.full_scans, self._config.after_ms)
        self._primary = flows.index(self._flow) if self._flow in flows else len(flows) - 1
        self._samples = _Samples()
        self._note = ""
        self._finished = False
        self._frozen = (0, time.monotonic())
        self._rebase()

    def _freeze_survivors(self) -> None:
        """After a full scan (FREEZE_S at most), freeze what lives; the UI's garbage is collected
        first. The first time in a run, only its young garbage: a full collection would walk the
        whole run once more (120 ms on large). What older garbage that freezes is freed at the
        next restart, which unfreezes everything."""
        if not self._sims:  # the build failed: nothing runs
            return
        scans, at = self._frozen
        now_scans = self._sims[self._primary].full_scans
        first = scans == 0 < now_scans  # the run's rmap_items exist once it has scanned every page
        if first or (now_scans != scans and time.monotonic() - at >= FREEZE_S):
            gc.collect(1 if first else 2)
            gc.freeze()
            self._frozen = (now_scans, time.monotonic())

    def _rebase(self) -> None:
        self._base = (time.monotonic(), self._clock())

    def _active(self) -> list[Simulation]:
        """The simulations still short of the stop: each stops where `ksmtui run` and `ksmtui
        compare` stop it, and waits there for the other (once finished, all run on)."""
        stop = RUN_ON if self._finished else self._stop
        return [sim for sim in self._sims if stop.reached(sim.full_scans, sim.now_ns) is None] or self._sims

    def _clock(self) -> int:
        return min(sim.now_ns for sim in self._active())

    def _target_ns(self) -> float:
        """Where the paced clock should be now (paced speeds only)."""
        assert self._speed is not None
        wall, sim_ns = self._base
        return sim_ns + (time.monotonic() - wall) * self._speed * 1e9

    def _due(self) -> bool:
        """Is there engine work to do now?"""
        if self._paused or time.monotonic() < self._hold_until:
            return False
        return self._speed is None or self._clock() <= self._target_ns()

    def _idle_s(self) -> float | None:
        """How long to wait for a command before the next piece of work is due."""
        if self._paused:
            return None
        held = self._hold_until - time.monotonic()
        if held > 0:
            return held
        if self._speed is None:
            return 0.0
        ahead = (self._clock() - self._target_ns()) / self._speed / 1e9
        left = PUBLISH_S - (time.monotonic() - self._last_publish)
        return max(0.0, min(ahead, left))

    def _run_slice(self) -> None:
        deadline = time.monotonic() + SLICE_S
        while not self._paused and self._hold_until <= time.monotonic() < deadline and self._queue.empty():
            if self._speed is not None and self._clock() > self._target_ns():
                break
            # Compared runs advance together: the one behind on the simulated clock goes next. A
            # slice ends with its wake-up, where a headless run looks at its stop.
            min(self._active(), key=lambda s: s.now_ns).step_within_wakeup(SLICE_PAGES)
            self._check_stop()
        if self._speed is not None:
            behind_s = (self._target_ns() - self._clock()) / self._speed / 1e9
            if behind_s > BEHIND_S:
                self._rebase()

    def _stop_by_itself(self, note: str) -> None:
        self._paused = True
        self._note = note

    def _check_stop(self) -> None:
        """Pause where a headless run would end (engine/timeline.py: the stop, or no progress
        possible), the first time every simulation gets there; and, past the stop too, whenever
        one can make no more progress."""
        stop = RUN_ON if self._finished else self._stop
        reasons = [sim.check_stop(stop) for sim in self._sims]
        stalled = [r for r in reasons if r is not None and r.startswith(NO_PROGRESS)]
        if stalled:
            self._stop_by_itself(stalled[0])
        elif not self._finished and all(reasons):
            self._finished = True
            self._stop_by_itself(f"finished: {reasons[0]}; space runs on")

    def _publish(self, post: bool = True) -> None:
        offsets = self._tree_offsets
        snaps = tuple(sim.snapshot(tree_limit=self._tree_limit, stable_offset=offsets["stable"],
                                   unstable_offset=offsets["unstable"], tree_found=self._tree_found)
                      for sim in self._sims)
        if self._tree_limit:  # past the end, a window shows the last page: go back from there
            primary = snaps[self._primary]
            offsets.update(stable=primary.stable_offset, unstable=primary.unstable_offset)
        self._samples.add(snaps[self._primary])
        self._last_publish = time.monotonic()
        if self._paused or self._speed is None:
            self._pace.reset()
        else:
            self._pace.add(self._last_publish, self._clock())
        if not post:
            return
        self._post(
            EngineUpdate(
                EngineView(
                    snapshots=snaps,
                    primary=self._primary,
                    trend=self._samples.trend(),
                    paused=self._paused,
                    speed=self._speed,
                    compare=self._compare,
                    finished=self._finished,
                    note=self._note,
                    achieved=self._pace.ratio(),
                    controller=None if (loop := self._sims[self._primary].control) is None else ControllerView.of(loop),
                )
            )
        )
