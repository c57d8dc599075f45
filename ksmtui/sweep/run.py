"""`ksmtui sweep`: many model runs over a grid of knobs, flows and seeds, compared; on Dask.

    ksmtui sweep SCENARIO|CAPTURE --set pages_to_scan=100,400,1600 --set sleep_millisecs=10-50:20
                 --flows legacy,optimized --seeds 1-8 [--full-scans N | --until-settled]
                 [--json] [--csv FILE] [--scheduler tcp://HOST:PORT | --workers N] [--ui]

Every combination is one task, a pure function of (scenario, knobs, flow, seed, stop): the same
run as `ksmtui run` with the same options, so results do not depend on where or in what order the
tasks ran. The grid is validated whole before anything starts. By default a LocalCluster of one
single-threaded worker process per core runs them (started and stopped here); --scheduler uses an
existing Dask cluster whose workers have ksmtui installed. docs/sweep.md says what each column means.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from engine.capture import CaptureError
from engine.cost import REFERENCE, CostProfile
from engine.knobs import ALL_KNOBS, KnobError
from engine.scenario import (
    Scenario,
    ScenarioError,
    apply_overrides,
    available_memory,
    load_scenario,
    scenario_from_capture,
)
from engine.snapshot import PATHS
from engine.timeline import StopRule, saving_timing

MAX_RUNS = 10_000  # a grid larger than this is almost surely a typo in a range
SETTLE_LIMIT = 1000  # --until-settled gives up after this many full scans (and says so per run)
SERIES_POINTS = 64  # saving-over-time points kept per run (for the plot and the JSON)
GRID_HELP = "V1,V2,... where an integer item may be a range A-B (step 1), A-B:S (step S) or A-B*F (times F)"


class SweepError(Exception):
    """A bad grid, workload or scheduler: one line naming the option and what was expected."""


class GridError(SweepError):
    """A bad grid: one line naming the option, the knob and what was expected."""


class RunFailed(Exception):
    """A run that raised, or whose worker died every time it ran it: one line, exit status 1."""


# ----------------------------------------------------------------------------------- the grid --

def _integer(text: str, what: str) -> int:
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise GridError(f"{what}: expected an integer, got {text.strip()!r}") from None


def _range(item: str, what: str) -> list[int] | None:
    """An item A-B, A-B:S or A-B*F of an integer list as its values (at most MAX_RUNS); None for
    an item that is not a range."""
    sign = "-" if item.strip().startswith("-") else ""  # -5-10: from -5 to 10; -1 alone is no range
    head, _, tail = item.strip().removeprefix(sign).partition("-")
    head = sign + head
    if not tail:
        return None
    low = _integer(head, what)
    step, factor = 1, 1
    if ":" in tail:
        tail, step_text = tail.split(":", 1)
        step = _integer(step_text, what)
        if step < 1:
            raise GridError(f"{what}: {item!r}: expected a step >= 1")
    elif "*" in tail:
        tail, factor_text = tail.split("*", 1)
        factor = _integer(factor_text, what)
        if factor < 2:
            raise GridError(f"{what}: {item!r}: expected a factor >= 2")
        if low < 1:
            raise GridError(f"{what}: {item!r}: a geometric range starts at 1 or more")
    high = _integer(tail, what)
    if high < low:
        raise GridError(f"{what}: {item!r}: empty range ({high} < {low})")
    count = (high - low) // step + 1 if factor == 1 else int(math.log(high / low, factor) + 1e-9) + 1
    if count > MAX_RUNS:
        raise GridError(f"{what}: {item!r}: {count:,} values; expected at most {MAX_RUNS:,}")
    if factor == 1:
        return list(range(low, high + 1, step))
    values = [low]
    while values[-1] * factor <= high:
        values.append(values[-1] * factor)
    return values


def parse_values(option: str, knob: str, text: str) -> list[int | str]:
    """The values of one knob, each validated as the kernel would (KnobError's words), none twice."""
    what = f"{option} {knob}"
    spec = ALL_KNOBS[knob]
    items = [item for item in text.split(",")]
    if any(not item.strip() for item in items):
        raise GridError(f"{what}: empty value in {text!r}; expected {GRID_HELP}")
    values: list[int | str] = []
    for item in items:
        expanded = None if isinstance(spec.default, str) else _range(item, what)
        for value in [item.strip()] if expanded is None else expanded:
            try:
                parsed = spec.parse(value)
            except KnobError as e:
                raise GridError(f"{what}: {e}") from None
            if parsed in values:
                raise GridError(f"{what}: {parsed!r} given twice")
            values.append(parsed)
    return values


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for item in text.split(","):
        expanded = _range(item, "--seeds")
        for seed in [_integer(item, "--seeds")] if expanded is None else expanded:
            if not 0 <= seed < 2**64:
                raise GridError(f"--seeds: expected integers 0..18446744073709551615, got {seed}")
            if seed in seeds:
                raise GridError(f"--seeds: {seed} given twice")
            seeds.append(seed)
    return seeds


def parse_set(text: str) -> tuple[str, str]:
    knob, sep, values = text.partition("=")
    knob = knob.strip()
    if not sep or not knob:
        raise GridError(f"--set: expected KNOB={GRID_HELP}, got {text!r}")
    if knob not in ALL_KNOBS:
        raise GridError(f"--set: {knob}: unknown knob; expected one of {', '.join(ALL_KNOBS)}")
    if knob == "flow":
        raise GridError("--set: flow: the flows are swept with --flows legacy,optimized,...")
    return knob, values


@dataclass(frozen=True)
class Task:
    index: int  # its place in the grid: results are reported in this order
    knobs: tuple[tuple[str, int | str], ...]  # the swept knobs, in --set order
    flow: str
    seed: int
    controller: str | None = None  # engine/controllers.py; None: no controller loop (as `ksmtui run`)
    controller_settings: tuple[tuple[str, str], ...] = ()  # those of --controller-set it takes


@dataclass(frozen=True)
class Stop:
    full_scans: int | None  # None: the scenario's [stop], as `ksmtui run`
    until_settled: bool
    sample_ms: int = 1000  # a controller's samples (saving, ksmd CPU, knobs), as `ksmtui run --sample-ms`
    costs: CostProfile = REFERENCE  # every run's cost profile (loaded once, where the sweep starts)

    def describe(self, scenario: Scenario) -> str:
        if self.until_settled:
            return f"until settled (at most {SETTLE_LIMIT:,} full scans)"
        return StopRule.of(scenario.stop, self.full_scans).describe()


def parse_controllers(text: str | None, sets: list[str]) -> list[tuple[str | None, tuple[tuple[str, str], ...]]]:
    """--controllers a,b (or --controller a) and --controller-set K=V: each controller with the
    settings it takes; a setting no controller of the sweep takes is refused, as is a value one of
    them cannot use (engine.controllers.make_controller's words)."""
    from engine.controllers import CONTROLLERS, SETTINGS, ControllerError, make_controller

    settings: dict[str, str] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise GridError(f"--controller-set: expected K=V, got {item!r}")
        settings[key.strip()] = value.strip()
    if text is None:
        if settings:
            raise GridError("--controller-set: no controller to set; expected --controller NAME or --controllers A,B")
        return [(None, ())]
    names: list[str] = []
    for item in text.split(","):
        name = item.strip()
        if name not in CONTROLLERS:
            raise GridError(f"--controllers: unknown controller {name!r}; expected one of {', '.join(CONTROLLERS)}")
        if name in names:
            raise GridError(f"--controllers: {name} given twice")
        names.append(name)
    taken = {k for n in names for k in SETTINGS[n]}
    for key in settings:
        if key not in taken:
            raise GridError(f"--controller-set: {key}: no controller of the sweep ({', '.join(names)}) takes it")
    out: list[tuple[str | None, tuple[tuple[str, str], ...]]] = []
    for name in names:
        mine = tuple((k, v) for k, v in settings.items() if k in SETTINGS[name])
        try:
            make_controller(name, dict(mine))
        except ControllerError as e:
            raise GridError(f"--controller-set: {name}: {e}") from None
        out.append((name, mine))
    return out


def plan(scenario: Scenario, sets: list[tuple[str, str]], flows_text: str | None,
         seeds_text: str | None, controllers_text: str | None = None, controller_sets: list[str] | None = None,
         ) -> list[Task]:
    """Every combination, each checked by apply_overrides as `ksmtui run` would check it: a grid
    runs whole or not at all. The controller varies slowest."""
    controllers = parse_controllers(controllers_text, controller_sets or [])
    grid: dict[str, list[int | str]] = {}
    for knob, text in sets:
        if knob in grid:
            raise GridError(f"--set: {knob} given twice; list its values in one --set {knob}=V1,V2")
        grid[knob] = parse_values("--set", knob, text)
    if grid.get("latency", ["model"]) != ["model"]:
        raise GridError('--set latency: expected "model": a sweep compares runs, wall-clock latency would differ by '
                        'run')
    flows = parse_values("--flows", "flow", flows_text) if flows_text else [scenario.engine["flow"]]
    seeds = parse_seeds(seeds_text) if seeds_text else [scenario.seed]
    count = len(controllers) * len(flows) * len(seeds) * math.prod(len(v) for v in grid.values())
    if count > MAX_RUNS:
        raise GridError(f"the grid has {count:,} runs; expected at most {MAX_RUNS:,}")
    tasks = []
    combos = itertools.product(controllers, itertools.product(*grid.values()), flows, seeds)
    for index, ((controller, settings), combo, flow, seed) in enumerate(combos):
        knobs = tuple(zip(grid, combo, strict=True))
        task = Task(index, knobs, flow, seed, controller, settings)
        try:
            apply_overrides(scenario, flow=flow, seed=seed, overrides=dict(knobs))
        except ScenarioError as e:
            raise GridError(f"combination {describe(task, seed=False)}: {e.message}") from None
        tasks.append(task)
    return tasks


def describe(task: Task, seed: bool = True) -> str:
    controller = [] if task.controller is None else [f"controller={task.controller}"]
    return " ".join([*controller, *(f"{k}={v}" for k, v in task.knobs), f"flow={task.flow}",
                     *([f"seed={task.seed}"] * seed)])


# ------------------------------------------------------------------------------------ one run --

def _data_files(fill) -> tuple[str, Path] | None:
    """(attribute, path) of the file a fill reads its pages from, if it reads one."""
    if fill.kind == "file":
        return "path", Path(str(fill.path))
    if fill.kind == "capture":
        return "capture", Path(str(fill.capture))
    return None


def _fills(scenario: Scenario) -> list:
    return [r.fill for p in scenario.processes for r in p.regions] + [e.fill for e in scenario.events]


def scenario_files(scenario: Scenario) -> dict[str, bytes]:
    """The bytes of every file the scenario's fills read (fill = "file", fill = "capture"), so
    that workers need no files."""
    out = {}
    for fill in _fills(scenario):
        data = _data_files(fill)
        if data and str(data[1]) not in out:
            try:
                out[str(data[1])] = data[1].read_bytes()
            except OSError as e:
                raise ScenarioError(str(data[1]), "", "", f"cannot read: {e.strerror or e}") from None
    return out


def _relocated(scenario: Scenario, files: dict[str, bytes], here: Path) -> Scenario:
    """The scenario with its fills' files replaced by copies written in `here` from the shipped bytes."""
    paths = {}
    for k, (name, data) in enumerate(files.items()):
        paths[name] = here / f"{k}-{Path(name).name}"
        paths[name].write_bytes(data)

    def fill(f):
        data = _data_files(f)
        return replace(f, **{data[0]: paths[str(data[1])]}) if data else f

    processes = tuple(replace(p, regions=tuple(replace(r, fill=fill(r.fill)) for r in p.regions))
                      for p in scenario.processes)
    return replace(scenario, processes=processes, events=tuple(replace(e, fill=fill(e.fill)) for e in scenario.events))


def load_workload(arg: str, merge_any: bool) -> Scenario:
    """A scenario file or built-in name, or a capture (`ksmtui capture`'s .npz: a zip file) made
    into the scenario `ksmtui capture --scenario` would write."""
    path = Path(arg)
    try:
        with open(path, "rb") as f:
            is_capture = f.read(4) == b"PK\x03\x04"
    except OSError:
        is_capture = False
    if not is_capture:
        if merge_any:
            raise SweepError(f"--merge-any: {arg} is a scenario, not a capture; its processes say what is mergeable")
        return load_scenario(arg)
    try:
        return scenario_from_capture(path, merge_any=merge_any)
    except CaptureError as e:
        raise SweepError(str(e)) from None


def _first_at_least(values: list[int], target: float) -> int | None:
    return next((i for i, v in enumerate(values) if v >= target), None)


def _series(times: list[int], values: list[int]) -> list[list[int]]:
    """At most SERIES_POINTS [ms, saving] points: the saving at evenly spaced simulated times."""
    end = times[-1]
    if end == 0 or len(times) <= SERIES_POINTS:
        return [[t // 1_000_000, v] for t, v in zip(times, values, strict=False)]
    out, i = [], 0
    for k in range(SERIES_POINTS):
        at = end * k // (SERIES_POINTS - 1)
        while i + 1 < len(times) and times[i + 1] <= at:
            i += 1
        out.append([at // 1_000_000, values[i]])
    return out


def run_one(payload: tuple[Scenario, dict[str, bytes]], task: Task, stop: Stop) -> dict:
    """One combination, run to the stop as `ksmtui run` runs it, recording the saving
    (general_profit) and ksmd's CPU time (the cost model's) after every wake-up."""
    scenario, files = payload
    with tempfile.TemporaryDirectory(prefix="ksmtui-sweep-") as here:  # fills read their files as the run goes
        scenario = _relocated(scenario, files, Path(here))
        return _run(apply_overrides(scenario, flow=task.flow, seed=task.seed, overrides=dict(task.knobs)), task, stop)


def _run(scenario: Scenario, task: Task, stop: Stop) -> dict:
    from engine.controllers import control_loop
    from engine.sim import Simulation
    from ksmtui.text.report import latency_stats

    control = None
    if task.controller is not None:  # as `ksmtui run --controller`: a loop even around `none`, for its samples
        control = control_loop(scenario, task.controller, dict(task.controller_settings), stop.sample_ms)
    sim = Simulation(scenario, control=control, costs=stop.costs)
    sim.record_series()
    ksm = sim.ksm
    marks: list[tuple[int, int]] = []  # (now_ns, pages_sharing + ksm_zero_pages) at the end of each full scan
    settled = False
    rule = sim.stop_rule(full_scans=SETTLE_LIMIT if stop.until_settled else stop.full_scans)
    while (reason := sim.check_stop(rule)) is None:
        scans = sim.full_scans
        sim.step_batch()
        if stop.until_settled and sim.full_scans != scans:
            marks.append((sim.now_ns, ksm.ksm_pages_sharing + ksm.ksm_zero_pages))
            # unchanged over the last two full scans, and every event still pending is a repeat that
            # fired during them (the engine's own test of "every pending event has had its chance")
            if len(marks) >= 3 and len({m for _, m in marks[-3:]}) == 1 and \
                    sim.timeline.quiet_since(marks[-3][0], sim.full_scans) and \
                    (control is None or control.quiet_since(marks[-3][0])):
                n = sim.full_scans
                reason = f"settled: pages_sharing + ksm_zero_pages the same after full scans {n - 2}, {n - 1} and {n}"
                settled = True
                break
    sim.finished, sim.stop_reason = True, reason

    assert sim.series is not None
    times = [t for t, _, _ in sim.series]  # at each merge and when each wake-up's scan ended
    savings = [v for _, v, _ in sim.series]
    final = savings[-1]
    timing = saving_timing(sim.series)
    at = _first_at_least(savings, final) if final > 0 else None
    at = len(times) - 1 if at is None else at
    cpu = [c for _, _, c in sim.series]
    counters = ksm.counters()
    lat = {}
    for path in PATHS:
        s = latency_stats(ksm.latency_hist[path])
        lat[path] = {"calls": s.calls, "p50": s.p50, "p99": s.p99, "mean": round(s.mean, 1)}
    return {
        "index": task.index, "knobs": dict(task.knobs), "flow": task.flow, "seed": task.seed,
        "ksm": counters, "sim_ms": sim.now_ns // 1_000_000, "full_scans": sim.full_scans,
        "stop_reason": reason, "settled": settled if stop.until_settled else None,
        "saving": final,
        "time_to_50_ms": timing["time_to_50_ms"], "time_to_90_ms": timing["time_to_90_ms"],
        "time_to_100_ms": timing["time_to_100_ms"],
        "ksmd_cpu_ms": cpu[at] / 1e6,
        "ksmd_cpu_percent": round(100 * cpu[at] / times[at], 3) if times[at] else 0.0,
        "steady_cpu_ms_per_s": timing["steady_cpu_ms_per_s"],
        "costs": stop.costs.label, "hz": sim.engine_knobs["hz"],
        "latency_ns": lat,
        "series": _series(times, savings),
        # saving and ksmd CPU every stop.sample_ms, and every knob write: engine/controllers.py
        "controller": None if control is None else control.result(),
    }


def group_key(run: dict) -> tuple:
    """What a run's setting is: its swept knobs, flow and controller (when the grid has one); the
    seed is not a setting but a draw of the workload's randomness."""
    return tuple(run["knobs"].items()), run["flow"], controller_name(run)


def controller_name(run: dict) -> str | None:
    """The controller a run ran under (its "controller" is what control_loop reported), or None."""
    return None if run.get("controller") is None else run["controller"]["name"]


def spread(values: list[float]) -> dict | None:
    """mean, min and max of the values (None when there is none: no run of the group got there)."""
    if not values:
        return None
    return {"mean": round(sum(values) / len(values), 3), "min": min(values), "max": max(values)}


GROUPED = ("saving", "ksmd_cpu_ms", "ksmd_cpu_percent", "time_to_90_ms", "time_to_100_ms")


def group_runs(runs: list[dict]) -> list[dict]:
    """The runs by setting (group_key), in grid order: each group's seeds, and the mean, min and
    max over them of the saving, ksmd CPU and the times to 90% and 100% (over the runs that got
    there; "reached" says how many)."""
    by_key: dict[tuple, list[int]] = {}
    for i, run in enumerate(runs):
        by_key.setdefault(group_key(run), []).append(i)
    groups = []
    for members in by_key.values():
        first = runs[members[0]]
        group: dict = {"knobs": dict(first["knobs"]), "flow": first["flow"]}
        if controller_name(first) is not None:
            group["controller"] = controller_name(first)
        group["seeds"] = [runs[i]["seed"] for i in members]
        group["members"] = members  # indexes into the runs
        for field in GROUPED:
            group[field] = spread([runs[i][field] for i in members if runs[i][field] is not None])
        group["reached"] = sum(runs[i]["time_to_100_ms"] is not None for i in members)
        groups.append(group)
    return groups


def mark_front(runs: list[dict]) -> list[dict]:
    """The groups of runs (group_runs), "front" set on every group no other group beats on both
    mean saving (more) and mean ksmd CPU (less), and on each run the front of its group: seeds of
    one setting are one option, not several."""
    groups = group_runs(runs)
    best = best_cpu = None
    for group in sorted(groups, key=lambda g: (g["ksmd_cpu_ms"]["mean"], -g["saving"]["mean"])):
        saving, cpu = group["saving"]["mean"], group["ksmd_cpu_ms"]["mean"]
        if best is None or saving > best:
            best, best_cpu = saving, cpu
            group["front"] = True
        else:
            group["front"] = saving == best and cpu == best_cpu
    for group in groups:
        for i in group["members"]:
            runs[i]["front"] = group["front"]
    return groups


# ----------------------------------------------------------------------------------- the cluster --

def dask_setup(worker) -> None:
    """Preloaded in every local worker process, restarted ones too: Ctrl-C in the terminal reaches
    the whole process group, and it is the client's to handle (it cancels and shuts the cluster)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


QUIET = logging.CRITICAL + 1  # Dask's own logs, CRITICAL included: a sweep reports its problems itself


def local_cluster(workers: int):
    from dask.distributed import LocalCluster

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the workers being spawned
    try:
        return LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            silence_logs=QUIET, memory_limit=0, preload=["ksmtui.sweep.run"],
        )
    finally:
        signal.signal(signal.SIGINT, previous)


class Bar:
    """`sweep: [#####-----] 12/64 runs  0:42 elapsed  ETA 1:10` on stderr, only to a terminal,
    redrawn on each finished run and every second between them."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done = total, enabled, 0
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if enabled:
            self.draw()
            threading.Thread(target=self._tick, name="sweep-progress", daemon=True).start()

    @staticmethod
    def _clock(seconds: float) -> str:
        s = int(seconds)
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.draw()

    def draw(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            elapsed = time.monotonic() - self.start
            filled = self.done * 30 // self.total if self.total else 30
            eta = f"ETA {self._clock(max(elapsed / self.done * self.total - elapsed, 0))}" if self.done else "ETA -"
            sys.stderr.write(f"\r\033[Ksweep: [{'#' * filled}{'-' * (30 - filled)}] {self.done}/{self.total} runs"
                             f"  {self._clock(elapsed)} elapsed  {eta}")
            sys.stderr.flush()

    def step(self) -> None:
        self.done += 1
        if self.enabled:
            self.draw()

    def close(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._stop.set()
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


CONNECT_TIMEOUT_S = 10  # a scheduler that does not answer by then is not there
_SCHEDULER = re.compile(r"(tcp|tls)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})")


def check_scheduler(address: str) -> str:
    """tcp://HOST:PORT or tls://HOST:PORT, refused before any connection is tried otherwise (Dask
    would take inproc://, ws:// or a bare word and fail in its own way, after its timeout)."""
    m = _SCHEDULER.fullmatch(address)
    if not m or not 1 <= int(m.group(3)) <= 65535:
        raise SweepError(f"--scheduler: expected tcp://HOST:PORT or tls://HOST:PORT (a Dask scheduler), "
                         f"got {address!r}")
    return address


def worker_count(asked: int | None, tasks: int, scenario_memory: int) -> tuple[int, str | None]:
    """The local workers worth starting: no more than the runs, the cores, and the runs that fit
    in memory at once (each worker holds one simulation); with a note when fewer than asked."""
    cores = len(os.sched_getaffinity(0))
    room = available_memory()
    fit = max(1, room // max(scenario_memory, 1)) if room is not None else cores
    n = max(1, min(asked or cores, tasks, cores, fit))
    if asked is None or n == asked:
        return n, None
    why = [w for w, limit in ((f"{tasks} run{'s' * (tasks != 1)}", tasks), (f"{cores} core{'s' * (cores != 1)}", cores),
                              (f"memory for {fit} run{'s' * (fit != 1)} at once", fit)) if limit == n]
    return n, f"--workers {asked}: starting {n} ({why[0] if why else 'the least of runs, cores and memory'})"


def execute(scenario: Scenario, tasks: list[Task], stop: Stop, scheduler: str | None, workers: int,
            progress: bool) -> tuple[dict[int, dict], bool]:
    """Run the tasks on Dask: (results by task index, interrupted). A worker lost mid-task has its
    task rerun elsewhere by the scheduler; Ctrl-C cancels what is left and shuts the cluster down."""
    from dask.distributed import Client, as_completed

    logging.getLogger("distributed").setLevel(QUIET)  # the client's side too (a scheduler that goes away)
    # A scheduler torn down by a signal mid-scatter leaves asyncio tasks whose errors asyncio logs
    # when they are collected ("Task exception was never retrieved"): the sweep says what happened.
    logging.getLogger("asyncio").setLevel(QUIET)
    results: dict[int, dict] = {}
    interrupted = False
    cluster = client = bar = None
    futures: list = []
    try:
        bar = Bar(len(tasks), progress)  # from the start: a cluster takes seconds to start, the screen says so
        cluster = local_cluster(workers) if scheduler is None else None
        try:
            client = Client(cluster if cluster is not None else scheduler, set_as_default=False,
                            timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, ValueError, TypeError) as e:
            raise SweepError(f"--scheduler {scheduler}: no Dask scheduler answers there within "
                             f"{CONNECT_TIMEOUT_S} s ({e})") from None
        payload = client.scatter((scenario, scenario_files(scenario)), broadcast=True)
        sweep_id = uuid.uuid4().hex  # two sweeps on one shared cluster must not share a task key
        futures = [client.submit(run_one, payload, task, stop, key=f"ksmtui-sweep-{sweep_id}-{task.index}")
                   for task in tasks]
        for future in as_completed(futures, loop=client.loop):
            try:
                result = future.result()
            except Exception as e:  # an engine bug, or a run that killed its worker every time it ran
                task = tasks[futures.index(future)]
                raise RunFailed(f"run {task.index} ({describe(task)}) failed: {type(e).__name__}: {e}") from None
            results[result["index"]] = result
            bar.step()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan workers
        try:
            if bar is not None:
                bar.close()
            if client is not None:
                client.cancel(futures)
                client.close()
            if cluster is not None:
                cluster.close()
        finally:
            signal.signal(signal.SIGINT, previous)
    return results, interrupted


# ------------------------------------------------------------------------------------ reports --

CSV_LATENCY = ("p50", "p99", "mean")


def _controller_columns(r: dict) -> list:
    c = r["controller"]
    return [c["name"], ";".join(f"{k}={v}" for k, v in c["settings"].items()), c["ticks"], len(c["writes"]),
            sum(w["error"] is not None for w in c["writes"])]


def csv_rows(runs: list[dict], knobs: list[str]) -> list[list]:
    """One row per run; a sweep of controllers has theirs first (name, settings, ticks, knob writes,
    refused writes)."""
    ctl = bool(runs) and runs[0]["controller"] is not None
    head = [*(["controller", "controller_settings", "controller_ticks", "knob_writes", "knob_writes_refused"] * ctl),
            *knobs, "flow", "seed", "front", "saving", "time_to_90_ms", "time_to_100_ms", "ksmd_cpu_ms",
            "ksmd_cpu_percent", "steady_cpu_ms_per_s", "sim_ms", "full_scans", "settled", "pages_scanned",
            "pages_sharing",
            "ksm_zero_pages", *(f"{p}_{s}_ns" for p in PATHS for s in CSV_LATENCY)]
    rows: list[list] = [head]
    for r in runs:
        rows.append([*(_controller_columns(r) if ctl else []), *(r["knobs"][k] for k in knobs), r["flow"], r["seed"],
                     int(r["front"]), r["saving"],
                     r["time_to_90_ms"], r["time_to_100_ms"], r["ksmd_cpu_ms"], r["ksmd_cpu_percent"],
                     r["steady_cpu_ms_per_s"], r["sim_ms"], r["full_scans"], r["settled"], r["ksm"]["pages_scanned"],
                     r["ksm"]["pages_sharing"],
                     r["ksm"]["ksm_zero_pages"], *(r["latency_ns"][p][s] for p in PATHS for s in CSV_LATENCY)])
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ms1(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def text_report(runs: list[dict], knobs: list[str], groups: list[dict] | None = None) -> list[str]:
    """One row per run; a sweep of controllers adds the controller and its knob writes (refused ones
    in parentheses). With several seeds of a setting, one row per setting instead (group_report)."""
    from ksmtui.text.report import table

    if groups is not None and any(len(g["seeds"]) > 1 for g in groups):
        return group_report(groups, knobs)
    ctl = bool(runs) and runs[0]["controller"] is not None
    rows: list[list[object]] = [[*(["controller"] * ctl), *knobs, "flow", "seed", "saving MiB", "t90 ms", "t100 ms",
                                 "cpu ms", "cpu %", "steady cpu ms/s", "scanned", *(["knob writes"] * ctl),
                                 "anon p50/p99 ns", "front"]]
    for r in runs:
        anon = r["latency_ns"]["anon_page"]
        writes = []
        if ctl:
            w = r["controller"]["writes"]
            refused = sum(x["error"] is not None for x in w)
            writes = [f"{len(w)}" + (f" ({refused} refused)" if refused else "")]
        rows.append([*([r["controller"]["name"]] if ctl else []), *(str(r["knobs"][k]) for k in knobs), r["flow"],
                     str(r["seed"]), f"{r['saving'] / 2**20:,.2f}", _ms(r["time_to_90_ms"]), _ms(r["time_to_100_ms"]),
                     f"{r['ksmd_cpu_ms']:,.1f}", f"{r['ksmd_cpu_percent']:.1f}", _ms1(r["steady_cpu_ms_per_s"]),
                     r["ksm"]["pages_scanned"], *writes, f"{anon['p50']}/{anon['p99']}", "*" if r["front"] else ""])
    return table(rows, left=len(knobs) + 1 + ctl)


def _mean_range(s: dict | None, scale: float = 1.0, digits: int = 2) -> str:
    """mean (min-max), or the value alone when every seed gave the same."""
    if s is None:
        return "-"
    mean, low, high = (f"{v / scale:,.{digits}f}" for v in (s["mean"], s["min"], s["max"]))
    return mean if low == high else f"{mean} ({low}-{high})"


def group_report(groups: list[dict], knobs: list[str]) -> list[str]:
    """One row per setting: the mean over its seeds and, in brackets, the lowest and highest."""
    from ksmtui.text.report import table

    ctl = any("controller" in g for g in groups)
    rows: list[list[object]] = [[*knobs, "flow", *(["controller"] * ctl), "seeds", "saving MiB", "t100 ms", "cpu ms",
                                 "cpu %", "front"]]
    for g in groups:
        t100 = _mean_range(g["time_to_100_ms"], digits=0)
        if g["reached"] < len(g["seeds"]):
            t100 += f" [{g['reached']} of {len(g['seeds'])}]"
        rows.append([*(str(g["knobs"][k]) for k in knobs), g["flow"], *([str(g.get("controller", "-"))] * ctl),
                     str(len(g["seeds"])), _mean_range(g["saving"], 2**20), t100,
                     _mean_range(g["ksmd_cpu_ms"], digits=1), _mean_range(g["ksmd_cpu_percent"], digits=1),
                     "*" if g["front"] else ""])
    return table(rows, left=len(knobs) + 1 + ctl)


# ---------------------------------------------------------------------------------- the bench --

BENCH_SCENARIO = "fleet"
BENCH_GRID = [("pages_to_scan", "100-800*2"), ("sleep_millisecs", "10,20")]
BENCH_FLOWS, BENCH_SEEDS, BENCH_FULL_SCANS = "legacy,optimized", "1-4", 4


def bench(workers: tuple[int, ...] = (1, 2)) -> list[str]:
    """`ksmtui bench --sweep`: the same 64 runs on each number of local workers (wall time, the
    cluster's start included), the results checked identical, the speed-up over the first."""
    scenario = load_scenario(BENCH_SCENARIO)
    tasks = plan(scenario, BENCH_GRID, BENCH_FLOWS, BENCH_SEEDS)
    stop = Stop(BENCH_FULL_SCANS, False)
    grid = " ".join(f"{k}={v}" for k, v in BENCH_GRID)
    lines = [f"sweep: {len(tasks)} runs of {BENCH_SCENARIO} ({grid}, flows {BENCH_FLOWS}, seeds {BENCH_SEEDS}, "
             f"{BENCH_FULL_SCANS} full scans), {len(os.sched_getaffinity(0))} CPUs"]
    first = None
    for n in workers:
        start = time.perf_counter()
        results, interrupted = execute(scenario, tasks, stop, None, n, sys.stderr.isatty())
        wall = time.perf_counter() - start
        if interrupted:
            raise KeyboardInterrupt
        if first is None:
            first = (results, wall)
        elif results != first[0]:
            raise RunFailed(f"{n} workers gave other results than {workers[0]}")
        lines.append(f"  {n} worker{'s' * (n != 1)}: {wall:6.1f} s, {len(tasks) / wall:5.2f} runs/s, "
                     f"speed-up {first[1] / wall:.2f}x")
    return lines
