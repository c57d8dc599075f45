"""Controllers: what sets KSM's knobs on a real host, as closed loops around the model.

A controller samples on its own interval of simulated time, reads /proc/meminfo (engine/memory.py),
the processes' RSS and the knobs, and writes knobs through Simulation.set_knob, the path of
`--set` and of `set` events, so that a write the kernel would refuse is refused here in its words
and noted. Each controller follows its published source, cited at the place:

- `ksmtuned`: the Debian package ksmtuned (4.20150326), /usr/sbin/ksmtuned, a bash script;
- `kubevirt`: kubevirt/kubevirt pkg/virt-handler/ksm/ksm.go (from oVirt MOM's ksm.rules);
- `advisor`: the kernel's own scan-time advisor (mm/ksm.c, engine/ksm.py): the controller only
  selects it (advisor_mode = scan-time) and its advisor_* knobs, once, at the start;
- `none`: the knobs stay as the scenario sets them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from engine.memory import KB, MemInfo, default_meminfo, meminfo_now
from engine.scenario import Scenario

CONTROLLERS = ("none", "advisor", "ksmtuned", "kubevirt")
NSEC_PER_MSEC = 1_000_000


class ControllerError(ValueError):
    """A controller setting that cannot be used; the message says what was expected."""


class Host(Protocol):
    """What a controller can see and do: the model's host (ControlLoop) or a test's fake."""

    def meminfo(self) -> dict[str, int]: ...
    def processes(self) -> list[tuple[str, int]]: ...  # (command line, RSS in kB)
    def read(self, knob: str) -> int | str: ...
    def write(self, knob: str, value: int | str) -> None: ...
    def note(self, text: str) -> None: ...


def _c_div(a: int, b: int) -> int:
    """Integer division truncating toward zero, as bash's $[a / b] (C's) does."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _int(name: str, text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise ControllerError(f"{name}: expected an integer, got {text!r}") from None


# ------------------------------------------------------------------------------------- ksmtuned --

# /usr/sbin/ksmtuned: `KSM_X=${KSM_X:-default}`, each overridable from its environment (or the
# /etc/ksmtuned.conf it sources). KSM_MONITOR_INTERVAL goes to sleep(1), which takes a decimal
# number of seconds; the others go into bash arithmetic, integers only.
KSMTUNED_DEFAULTS = {
    "KSM_MONITOR_INTERVAL": "60",
    "KSM_NPAGES_BOOST": "300",
    "KSM_NPAGES_DECAY": "-50",
    "KSM_NPAGES_MIN": "64",
    "KSM_NPAGES_MAX": "1250",
    "KSM_SLEEP_MSEC": "10",
    "KSM_THRES_COEF": "20",
    "KSM_THRES_CONST": "2048",
}
# committed_memory(): pgrep -f '^qemu-system.*-enable-kvm', an ERE over the whole command line
KSMTUNED_QEMU = re.compile(r"^qemu-system.*-enable-kvm")


def _seconds_ms(name: str, text: str) -> int:
    try:
        ms = round(float(text) * 1000)
    except ValueError:
        raise ControllerError(f"{name}: expected a number of seconds, got {text!r}") from None
    if ms < 1:
        raise ControllerError(f"{name}: expected at least 0.001 seconds, got {text!r}")
    return ms


class Ksmtuned:
    name = "ksmtuned"

    def __init__(self, settings: Mapping[str, str]):
        env = {**KSMTUNED_DEFAULTS, **settings}
        self.settings = env
        self.interval_ms: int | None = _seconds_ms("KSM_MONITOR_INTERVAL", env["KSM_MONITOR_INTERVAL"])
        self.boost = _int("KSM_NPAGES_BOOST", env["KSM_NPAGES_BOOST"])
        self.decay = _int("KSM_NPAGES_DECAY", env["KSM_NPAGES_DECAY"])
        self.npages_min = _int("KSM_NPAGES_MIN", env["KSM_NPAGES_MIN"])
        self.npages_max = _int("KSM_NPAGES_MAX", env["KSM_NPAGES_MAX"])
        self.sleep_msec = _int("KSM_SLEEP_MSEC", env["KSM_SLEEP_MSEC"])
        self.thres_coef = _int("KSM_THRES_COEF", env["KSM_THRES_COEF"])
        self.thres_const = _int("KSM_THRES_CONST", env["KSM_THRES_CONST"])
        self.total = self.sleep = self.thres = self.npages = 0

    def start(self, host: Host) -> None:
        # the script's top level, once: total from MemTotal, then sleep and thres from it
        self.total = host.meminfo()["MemTotal"]
        self.npages = 0
        self.sleep = _c_div(self.sleep_msec * 16 * 1024 * 1024, self.total)
        if self.sleep <= 10:  # [ $sleep -le 10 ] && sleep=10
            self.sleep = 10
        self.thres = _c_div(self.total * self.thres_coef, 100)
        if self.thres_const > self.thres:
            self.thres = self.thres_const

    def _increase_npages(self, delta: int) -> int:
        npages = self.npages + delta
        if npages < self.npages_min:
            npages = self.npages_min
        elif npages > self.npages_max:
            npages = self.npages_max
        return npages

    def tick(self, host: Host) -> None:
        """adjust(): free_memory is MemFree + Buffers + Cached; committed_memory the RSS (kB) of
        the processes whose command line matches the qemu pattern."""
        mem = host.meminfo()
        free = mem["MemFree"] + mem["Buffers"] + mem["Cached"]
        committed = sum(rss for cmdline, rss in host.processes() if KSMTUNED_QEMU.search(cmdline))
        if committed + self.thres < self.total and free > self.thres:
            host.write("run", 0)  # KSMCTL stop
            return
        if free < self.thres:
            self.npages = self._increase_npages(self.boost)
        else:
            self.npages = self._increase_npages(self.decay)
        # KSMCTL start: three echos, in this order; a refused one does not stop the next
        host.write("pages_to_scan", self.npages)
        host.write("sleep_millisecs", self.sleep)
        host.write("run", 1)


# ------------------------------------------------------------------------------------- kubevirt --

_MAX_INT = 2**63 - 1
_MIN_INT = -(2**63)
_U64 = 2**64

# ksm.go's defaults and the node annotations that override them (kubevirt.io/api: the
# KSM*Override annotations), by the model's setting names; interval_ms is the loop's ticker
# (time.NewTicker(10 * time.Minute)), not an annotation.
KUBEVIRT_DEFAULTS = {
    "pages_boost": "300",
    "pages_decay": "-50",
    "npages_min": "64",
    "npages_max": "1250",
    "npages_init": "100",
    "sleep_ms_baseline": "100",
    "free_percent": "0.2",
    "interval_ms": "600000",
}


def _bound_check(value, default, low, high, name: str, notes: list[str]):
    """ksm.go boundCheck: out of bounds, the default when it lies strictly inside them, else
    the lower bound (with an error in the log)."""
    if value < low or value > high:
        use = default if low < default < high else low
        notes.append(f"kubevirt: {name} override value out of bounds, using {use}")
        return use
    return value


class Kubevirt:
    name = "kubevirt"

    def __init__(self, settings: Mapping[str, str]):
        unknown = set(settings) - set(KUBEVIRT_DEFAULTS)
        if unknown:
            raise ControllerError(f"unknown kubevirt setting {sorted(unknown)[0]!r}; "
                                  f"expected one of {', '.join(KUBEVIRT_DEFAULTS)}")
        self.settings = {**KUBEVIRT_DEFAULTS, **settings}
        self.notes: list[str] = []
        self.interval_ms = _int("interval_ms", self.settings["interval_ms"])
        if self.interval_ms < 1:
            raise ControllerError(f"interval_ms: expected an integer >= 1, got {self.interval_ms}")
        self._given = dict(settings)
        # calculateNewRunSleepAndPages reads the annotations in this order, each bound by the last
        self.pages_boost = self._int_param("pages_boost", 300, 0, _MAX_INT)
        self.pages_decay = self._int_param("pages_decay", -50, _MIN_INT, 0)
        self.npages_min = self._int_param("npages_min", 64, 0, _MAX_INT)
        self.npages_max = self._int_param("npages_max", 1250, self.npages_min, _MAX_INT)
        self.npages_init = self._int_param("npages_init", 100, self.npages_min, self.npages_max)
        self.sleep_ms_baseline = self._int_param("sleep_ms_baseline", 100, 1, _MAX_INT)
        self.free_percent = self._float_param("free_percent", np.float32(0.2), np.float32(0), np.float32(1))

    def _int_param(self, name: str, default: int, low: int, high: int) -> int:
        if name not in self._given:
            return default
        try:
            value = int(self._given[name], 10)  # strconv.Atoi
        except ValueError:
            self.notes.append(f"kubevirt: failed to parse {name} override value, using default")
            return default
        return _bound_check(value, default, low, high, name, self.notes)

    def _float_param(self, name: str, default, low, high):
        if name not in self._given:
            return default
        try:
            value = np.float32(float(self._given[name]))  # strconv.ParseFloat(override, 32)
        except ValueError:
            self.notes.append(f"kubevirt: failed to parse {name} override value, using default")
            return default
        return _bound_check(value, default, low, high, name, self.notes)

    def start(self, host: Host) -> None:
        for text in self.notes:
            host.note(text)
        self.tick(host)  # Start(): the first spin() at once, then one every interval

    def tick(self, host: Host) -> None:
        """spin() -> handleNodePressure: calculateNewRunSleepAndPages, writeKsmValuesToFiles.
        The node is taken as eligible (its labels match the KSM selector)."""
        running = str(host.read("run")) == "1"  # loadKSM
        mem = host.meminfo()
        total, available = mem["MemTotal"], mem["MemAvailable"]
        pages = int(host.read("pages_to_scan"))  # getKsmPages: the kernel's value, not ours
        diff = (total - available) % _U64  # uint64 arithmetic
        if diff == 0:
            host.note("kubevirt: MemTotal == MemAvailable: ksm.go divides by zero (a Go panic); no write")
            return
        sleep = (self.sleep_ms_baseline * (16 * 1024 * 1024)) % _U64 // diff
        if sleep < self.sleep_ms_baseline // 10:
            sleep = self.sleep_ms_baseline // 10
        if np.float32(available) > np.float32(total) * self.free_percent:  # float32, as in ksm.go
            if running:  # no pressure: reduce or stop
                pages += self.pages_decay
                if pages < self.npages_min:
                    pages = self.npages_min
                    running = False
            else:
                running, sleep, pages = False, 0, 0
        elif running:  # under pressure: increase or start
            pages += self.pages_boost
            if pages > self.npages_max:
                pages = self.npages_max
        else:
            running, pages = True, self.npages_init
        if running:  # writeKsmValuesToFiles: sleep, pages, then run
            host.write("sleep_millisecs", sleep)
            host.write("pages_to_scan", pages)
        host.write("run", 1 if running else 0)


# ------------------------------------------------------------------------------ advisor, none --

ADVISOR_KNOBS = ("advisor_target_scan_time", "advisor_max_cpu", "advisor_min_pages_to_scan",
                 "advisor_max_pages_to_scan")


class Advisor:
    """The kernel's scan-time advisor: selected once; ksmd retunes pages_to_scan itself at the
    end of each full scan (engine/ksm.py scan_time_advisor)."""

    name = "advisor"
    interval_ms: int | None = None

    def __init__(self, settings: Mapping[str, str]):
        unknown = set(settings) - set(ADVISOR_KNOBS)
        if unknown:
            raise ControllerError(f"unknown advisor setting {sorted(unknown)[0]!r}; "
                                  f"expected one of {', '.join(ADVISOR_KNOBS)}")
        self.settings = dict(settings)

    def start(self, host: Host) -> None:
        for knob in ADVISOR_KNOBS:  # the limits first: the mode applies them
            if knob in self.settings:
                host.write(knob, self.settings[knob])
        host.write("advisor_mode", "scan-time")

    def tick(self, host: Host) -> None:
        pass


class NoController:
    name = "none"
    interval_ms: int | None = None

    def __init__(self, settings: Mapping[str, str]):
        if settings:
            raise ControllerError(f"controller none takes no settings, got {sorted(settings)[0]!r}")
        self.settings: dict[str, str] = {}

    def start(self, host: Host) -> None:
        pass

    def tick(self, host: Host) -> None:
        pass


Controller = Ksmtuned | Kubevirt | Advisor | NoController
_MAKERS: dict[str, Callable[[Mapping[str, str]], Controller]] = {
    "none": NoController, "advisor": Advisor, "ksmtuned": Ksmtuned, "kubevirt": Kubevirt}


# the settings each controller takes (--controller-set K=V), by controller
SETTINGS: dict[str, tuple[str, ...]] = {
    "none": (), "advisor": ADVISOR_KNOBS, "ksmtuned": tuple(KSMTUNED_DEFAULTS), "kubevirt": tuple(KUBEVIRT_DEFAULTS)}


def make_controller(name: str, settings: Mapping[str, str] | None = None) -> Controller:
    if name not in _MAKERS:
        raise ControllerError(f"unknown controller {name!r}; expected one of {', '.join(CONTROLLERS)}")
    settings = dict(settings or {})
    if name == "ksmtuned":
        unknown = set(settings) - set(KSMTUNED_DEFAULTS)
        if unknown:
            raise ControllerError(f"unknown ksmtuned setting {sorted(unknown)[0]!r}; "
                                  f"expected one of {', '.join(KSMTUNED_DEFAULTS)}")
    return _MAKERS[name](settings)


# ----------------------------------------------------------------------------------- the loop --

@dataclass
class KnobWrite:
    at_ms: float
    knob: str
    value: int | str
    error: str | None = None  # the kernel's refusal, as --set words it

    def as_dict(self) -> dict:
        return {"at_ms": self.at_ms, "knob": self.knob, "value": self.value, "error": self.error}


@dataclass
class Sample:
    at_ms: float
    saving_kb: int  # (pages_sharing + ksm_zero_pages) x page size: modelled
    pages_sharing: int
    ksmd_cpu_pct: float  # of one CPU since the previous sample, from the cost model: modelled
    run: int
    pages_to_scan: int
    sleep_millisecs: int
    mem_free_kb: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class _Sim(Protocol):
    """The part of engine.sim.Simulation the loop uses (engine.sim imports this module)."""

    now_ns: int
    notes: list[str]

    def set_knob(self, name: str, value) -> None: ...


@dataclass
class ControlLoop:
    """A controller and its host: the model's memory, processes and knobs, sampled and written on
    the simulated clock. Simulation calls run_due() between ksmd's wake-ups and moves an idle
    ksmd's clock to next_ns."""

    controller: Controller
    meminfo_spec: MemInfo
    sample_ms: int = 1000
    writes: list[KnobWrite] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    ticks: int = 0
    sim: object = None
    _next_tick_ns: int | None = None
    _next_sample_ns: int = 0
    _last_tick_ns: int = -1
    _cpu0: int = 0
    _t0_ns: int = 0

    # -- Host ---------------------------------------------------------------------------------
    def _ksm(self):
        return self.sim.ksm

    def _now_ms(self) -> float:
        return self.sim.now_ns / NSEC_PER_MSEC  # type: ignore[attr-defined]

    def saved_kb(self) -> int:
        ksm = self._ksm()
        return (ksm.ksm_pages_sharing + ksm.ksm_zero_pages) * ksm.page_size // KB

    def meminfo(self) -> dict[str, int]:
        return meminfo_now(self.meminfo_spec, self._now_ms(), self.saved_kb())

    def processes(self) -> list[tuple[str, int]]:
        sim = self.sim
        page_kb = sim.machine.page_size // KB  # type: ignore[attr-defined]
        extra = self.meminfo_spec.rss_extra(self._now_ms())
        cmdlines = sim.cmdlines  # type: ignore[attr-defined]
        return [(cmdlines.get(mm.name, mm.name),
                 (mm.mapped_pages - mm.ksm_zero_pages) * page_kb + extra.get(mm.name, 0))
                for mm in sim.machine.mms if mm.alive]  # type: ignore[attr-defined]

    def read(self, knob: str) -> int | str:
        return self._ksm().knobs[knob]

    def write(self, knob: str, value: int | str) -> None:
        from engine.knobs import KnobError
        rec = KnobWrite(self._now_ms(), knob, value)
        try:
            self.sim.set_knob(knob, value)  # type: ignore[attr-defined]
        except KnobError as err:
            rec.error = str(err)
            self.note(f"{self.controller.name}: write {knob}={value}: {err}")
        self.writes.append(rec)

    def note(self, text: str) -> None:
        self.sim.notes.append(text)  # type: ignore[attr-defined]

    # -- the clock ----------------------------------------------------------------------------
    def attach(self, sim) -> None:
        self.sim = sim
        self._t0_ns = sim.now_ns
        self._cpu0 = self._ksm().ksmd_cpu_ns
        self.controller.start(self)
        interval = self.controller.interval_ms
        if interval is not None:
            self._next_tick_ns = sim.now_ns + interval * NSEC_PER_MSEC
            if self.controller.name == "kubevirt":
                self._last_tick_ns = sim.now_ns
        self._sample()

    @property
    def next_ns(self) -> int:
        ticks = self._next_tick_ns
        return self._next_sample_ns if ticks is None else min(ticks, self._next_sample_ns)

    def run_due(self) -> None:
        now = self.sim.now_ns  # type: ignore[attr-defined]
        interval = self.controller.interval_ms
        while self._next_tick_ns is not None and self._next_tick_ns <= now:
            assert interval is not None
            self.controller.tick(self)
            self.ticks += 1
            self._last_tick_ns = now
            self._next_tick_ns += interval * NSEC_PER_MSEC
        if self._next_sample_ns <= now:
            self._sample()

    def during_sleep(self, wake_ns: int) -> int:
        """Runs what falls due while ksmd sleeps until wake_ns, each at its time; returns when
        ksmd wakes: earlier if a tick wrote sleep_millisecs, whose store wakes ksmd at once
        (mm/ksm.c sleep_millisecs_store: wake_up_interruptible(&ksm_iter_wait))."""
        sim = self.sim
        while self.next_ns <= wake_ns:
            sim.now_ns = max(sim.now_ns, self.next_ns)  # type: ignore[attr-defined]
            before = len(self.writes)
            self.run_due()
            if any(w.knob == "sleep_millisecs" and w.error is None for w in self.writes[before:]):
                return sim.now_ns  # type: ignore[attr-defined]
        return wake_ns

    def _sample(self) -> None:
        ksm = self._ksm()
        now = self.sim.now_ns  # type: ignore[attr-defined]
        span = now - self._t0_ns
        cpu = ksm.ksmd_cpu_ns - self._cpu0
        self.samples.append(Sample(
            now / NSEC_PER_MSEC, self.saved_kb(), ksm.ksm_pages_sharing,
            round(100 * cpu / span, 2) if span else 0.0, int(ksm.knobs["run"]), int(ksm.knobs["pages_to_scan"]),
            int(ksm.knobs["sleep_millisecs"]), self.meminfo()["MemFree"]))
        self._t0_ns, self._cpu0 = now, ksm.ksmd_cpu_ns
        self._next_sample_ns = (now // (self.sample_ms * NSEC_PER_MSEC) + 1) * self.sample_ms * NSEC_PER_MSEC

    def quiet_since(self, since_ns: int) -> bool:
        """Can the controller no longer change an idle ksmd? It has ticked since since_ns on
        inputs that no memory point changes any more (events are the timeline's to judge)."""
        if self.controller.interval_ms is None:
            return True
        last_change_ns = self.meminfo_spec.last_change_ms() * NSEC_PER_MSEC
        return self._last_tick_ns >= since_ns and self._last_tick_ns >= last_change_ns

    def result(self) -> dict:
        """The controller's part of the headless JSON (docs/controllers.md)."""
        if self.samples[-1].at_ms * NSEC_PER_MSEC < self.sim.now_ns:  # type: ignore[attr-defined]
            self._sample()  # the end of the run
        cpu_ns = self._ksm().ksmd_cpu_ns
        now = self.sim.now_ns  # type: ignore[attr-defined]
        return {
            "name": self.controller.name,
            "settings": dict(self.controller.settings),
            "ticks": self.ticks,
            "meminfo": self.meminfo(),
            "writes": [w.as_dict() for w in self.writes],
            "samples": [s.as_dict() for s in self.samples],
            "ksmd_cpu_pct": round(100 * cpu_ns / now, 2) if now else 0.0,
        }


def control_loop(scenario: Scenario, name: str, settings: Mapping[str, str] | None = None,
                 sample_ms: int = 1000) -> ControlLoop:
    """The loop for a scenario: its [memory], or the default host of engine/memory.py."""
    info = scenario.meminfo
    if info is None:
        pages = sum(p.count * sum(r.pages for r in p.regions) for p in scenario.processes)
        info = default_meminfo(pages * scenario.page_size // KB)
    return ControlLoop(make_controller(name, settings), info, sample_ms)
