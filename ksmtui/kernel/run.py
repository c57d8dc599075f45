"""A scenario on the host's real KSM: real processes, the kernel's own counters, the same JSON.

`ksmtui kernel SCENARIO` realises a scenario with one forked process per scenario process
(ksmtui.kernel.child), sets the scenario's knobs in /sys/kernel/mm/ksm, lets the real ksmd scan,
performs the events at the same full-scan marks (or wall-clock times) and reports the kernel's
counters and each process's /proc/PID/ksm_stat in the headless JSON of docs/scenarios.md.
`ksmtui parity SCENARIO` sets that beside the model's run of the same scenario.

Contents come from the generators the model uses, called in the model's order, so every page holds
exactly what it holds in the model: same pool pages, same random pages, same zero pages.

The kernel is shared by the whole machine: whatever happens, the run ends by putting KSM back to
its defaults (run=2, wait until nothing is merged, run=0, default knobs) and killing every child.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from engine import contents
from engine.knobs import ENGINE_KNOBS, KSM_KNOBS
from engine.scenario import Event, Fill, Region, Scenario
from engine.timeline import NSEC_PER_MSEC, RUN_ON, StopRule, Timeline, ksmd_idle, saving_timing
from ksmtui.host.sysfs import (
    KSM_DIR,
    STAT_FLAGS,
    KernelError,
    KernelUnavailable,
    KernelUnsupported,
    _ordered_knobs,
    ksm_read,
    ksm_write,
    ksmd_cpu_ns,
    ksmd_pid,
    ksmd_sched_ns,
    machine_lock,
    numa_nodes,
    read_counters,
    read_knobs,
    read_ksm_stat,
    restore_defaults,
    unavailable_reason,
    unmerge_all,
)
from ksmtui.host.trace import KsmTrace
from ksmtui.kernel import child as kernel_child

CHUNK_PAGES = 4096  # pages per write command (16 MiB of 4 KiB pages)
POLL_S = 0.0005  # well inside ksmd's sleep between batches, so a pass boundary is caught
LATE_MS = 50  # at_ms events later than this are reported
STALL_S = 120.0  # ksmd made no progress for this long while it should run: give up
SAMPLE_S = 0.002  # with sampling on: general_profit and ksmd's CPU every ~2 ms from run=1




# --------------------------------------------------------------------- contents --

class Contents(contents.ScenarioContents):
    """The model's pages, in chunks: a million-page region never sits whole on the heap."""

    def fill(self, fill: Fill, n: int) -> Iterator[tuple[int, bytes | list[bytes]]]:
        """(count, pages) chunks of at most CHUNK_PAGES: pages is a list, or one bytes object
        standing for count equal pages (zero and byte fills, written with one memset)."""
        pages = self.pages(fill, n)  # now: a pool order takes its salt at the call, as in the model
        return self._chunks(fill, n, pages)

    @staticmethod
    def _chunks(fill: Fill, n: int, pages: Iterator[bytes]) -> Iterator[tuple[int, bytes | list[bytes]]]:
        same = next(pages, None) if fill.kind in ("zero", "byte") else None
        for start in range(0, n, CHUNK_PAGES):
            count = min(CHUNK_PAGES, n - start)
            yield count, same if same is not None else list(itertools.islice(pages, count))


# ----------------------------------------------------------------------- the run --

class _Proc:
    __slots__ = ("name", "pid", "conn", "regions", "merge_any", "mergeable")

    def __init__(self, name: str, pid: int, conn: Connection, regions: dict[str, int], merge_any: bool,
                 mergeable: list[str]) -> None:
        self.name, self.pid, self.conn = name, pid, conn
        self.regions = regions  # name -> pages
        self.merge_any = merge_any
        self.mergeable = mergeable  # region names currently mergeable (madvised, or by merge-any)

    def call(self, *cmd: object) -> Any:  # the child's reply, unpickled: its shape depends on cmd
        self.conn.send(cmd)
        status, reply = self.conn.recv()
        if status != "ok":
            raise KernelError(reply)
        return reply


def scenario_knobs(scenario: Scenario, overrides: dict | None) -> dict:
    knobs = {k: v.default for k, v in KSM_KNOBS.items()}
    knobs.update(scenario.ksm)
    knobs.update({k: v for k, v in (overrides or {}).items() if k in KSM_KNOBS})
    return knobs


THP_DIR = Path("/sys/kernel/mm/transparent_hugepage")
THP_VMSTAT = ("thp_split_page", "thp_split_page_failed")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def maps_thp(scenario: Scenario) -> bool:
    return any(r.maps_thp for p in scenario.processes for r in p.regions)


def huge_extents(region: Region, nr: int) -> list[int]:
    """The region's THPs as the extents of nr pages the child faults in huge (kernel.child)."""
    return [first // nr for first, _ in region.folio_extents(nr)]


def unmappable_folio(scenario: Scenario) -> str | None:
    """A captured large folio (thp = "capture") the child cannot map where it lies: it maps a
    region's THPs PMD-sized at multiples of a PMD's pages from the region's start, contiguous with
    the pages before (a capture's THP after a hole of absent pages lies elsewhere)."""
    nr = scenario.page_size // 8
    for p in scenario.processes:
        for r in p.regions:
            for first, pages in r.folios:
                if first % nr or pages != nr:
                    return (f"process {p.name!r} region {r.name!r}: a captured large folio of {pages} pages at "
                            f"page {first}; the real runner maps THPs of {nr} pages at multiples of {nr} pages from "
                            "a region's start (thp = false runs it as small pages)")
    return None


def read_vmstat(names: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for line in Path("/proc/vmstat").read_text().splitlines():
        key, value = line.split()
        if key in names:
            out[key] = int(value)
    return out


def unsupported_reason(scenario: Scenario, overrides: dict | None = None) -> str | None:
    """Why this scenario cannot run on this machine's kernel, or None."""
    if scenario.page_size != os.sysconf("SC_PAGE_SIZE"):
        return (f"page_size {scenario.page_size} differs from this kernel's "
                f"{os.sysconf('SC_PAGE_SIZE')}")
    if maps_thp(scenario):
        mode = _read(THP_DIR / "enabled")
        if mode is None or "[never]" in mode:
            return f"the scenario maps THPs; this kernel's {THP_DIR / 'enabled'} is {mode or 'missing'}"
        size = _read(THP_DIR / "hpage_pmd_size")
        if size != str(scenario.page_size * (scenario.page_size // 8)):
            thp_bytes = scenario.page_size * (scenario.page_size // 8)
            return f"the scenario's THPs are {thp_bytes} bytes, this kernel's {size}"
        unmappable = unmappable_folio(scenario)
        if unmappable:
            return unmappable
    nodes = (overrides or {}).get("numa_nodes", scenario.engine.get("numa_nodes", 1))
    have = numa_nodes()
    if nodes > have or any(p.node >= have for p in scenario.processes) or \
            any(ev.action == "migrate" and ev.to_node is not None and ev.to_node >= have for ev in scenario.events):
        return f"the scenario needs {nodes} NUMA nodes, this machine has {have}"
    return None


class KernelRun:
    """One scenario realised on the real KSM. Use as a context manager: leaving it, however,
    kills every child and restores the kernel's defaults."""

    def __init__(self, scenario: Scenario, seed: int | None = None, overrides: dict | None = None,
                 trace: bool = False, sample: bool = False):
        reason = unavailable_reason()
        if reason:
            raise KernelUnavailable(reason)
        reason = unsupported_reason(scenario, overrides)
        if reason:
            raise KernelUnsupported(reason)
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.knobs = scenario_knobs(scenario, overrides)
        self.contents = Contents(scenario, self.seed)
        self.procs: dict[str, _Proc] = {}  # alive processes, in creation order (the model's mms)
        # every child ever started, by pidfd: a pid can be reused once a forked child is reaped
        self.pidfds: dict[int, int] = {}
        self.notes: list[str] = []
        self.trace = KsmTrace() if trace and KsmTrace.available() else None
        if trace and self.trace is None:
            self.notes.append("tracefs or events/ksm not available: no tracepoint counts")
        self.run_value = 0
        self.full_scans = 0
        self.t0 = 0.0
        self.scanned0 = self.skipped0 = 0
        self.vmstat0: dict[str, int] = {}
        self.max_event_lag_ms = 0.0  # how late at_ms events ran behind the wall clock, at worst
        self.timeline = Timeline(scenario.events)
        # with sample: (ns since run=1, general_profit, ksmd's CPU ns since run=1), every ~SAMPLE_S
        self.samples: list[tuple[int, int, int]] | None = [] if sample else None
        self._ksmd = (0, 0, 0)  # ksmd's pid, its CPU time and its runqueue wait at run=1
        self.ksmd_wait_ns = 0  # ksmd's wait for a CPU since run=1, at the last sample
        self._sampled_at = 0.0

    # ------------------------------------------------------------ set up / tear down --

    def __enter__(self) -> "KernelRun":
        self._lock = machine_lock()
        self._lock.__enter__()
        try:
            self._setup()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._teardown()
        finally:
            self._lock.__exit__(None, None, None)

    def _setup(self) -> None:
        # nothing merged and ksmd stopped before the knobs that need it (merge_across_nodes,
        # max_page_sharing); run=2 also resets full_scans to 0, so it counts from our start
        unmerge_all()
        for name, value in _ordered_knobs(self.knobs):
            if (KSM_DIR / name).exists():
                try:
                    ksm_write(name, value)
                except OSError as err:
                    raise KernelError(f"echo {value} > {KSM_DIR / name}: {err.strerror}") from None
            elif value != KSM_KNOBS[name].default:
                self.notes.append(f"{name}={value} not applied: this kernel has no {KSM_DIR / name}")
        nr = self.scenario.page_size // 8  # the pages of a PMD-sized THP
        for proc in self.scenario.processes:
            for name in proc.instance_names():
                regions = [(r.name, r.pages, huge_extents(r, nr)) for r in proc.regions]
                pid, conn = kernel_child.spawn(name, regions, self.scenario.page_size)
                self.pidfds[pid] = os.pidfd_open(pid)
                p = _Proc(name, pid, conn, {r.name: r.pages for r in proc.regions}, proc.merge_any, [])
                self.procs[name] = p
                for region in proc.regions:
                    self._write(p, region.name, list(range(region.pages)), region.fill)
                want = sum(len(huge) for _, _, huge in regions)
                if want:
                    got = p.call("thp_settle")
                    if got != want:
                        raise KernelError(f"{name}: {got} of its {want} THPs could be allocated "
                                          f"(memory too fragmented?); the model would have {want}")
        # mm_slot order is registration order: register in declared order, all filled first
        for proc in self.scenario.processes:
            mergeable = [r.name for r in proc.regions if r.mergeable]
            for name in proc.instance_names():
                p = self.procs[name]
                p.call("register", proc.merge_any, mergeable)
                # under prctl merge-any every region is mergeable until madvised otherwise
                p.mergeable = [r.name for r in proc.regions] if proc.merge_any else list(mergeable)

    def _teardown(self) -> None:
        # a second Ctrl-C must not leave the kernel half restored
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._kill_children()
            if self.trace is not None:
                self.trace.stop()
        finally:
            try:
                restore_defaults()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _kill_children(self) -> None:
        for p in self.procs.values():
            p.conn.close()
        self.procs.clear()
        for pidfd in reversed(self.pidfds.values()):  # forked children before their parents
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            select.select([pidfd], [], [], 10)  # gone (its mm with it) once readable
            os.close(pidfd)
        for pid in self.pidfds:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass  # a forked child: its parent reaps it
        self.pidfds.clear()

    # ---------------------------------------------------------------------- running --

    def start(self) -> None:
        if self.trace is not None:
            self.trace.start()
        self.vmstat0 = read_vmstat(THP_VMSTAT)
        self.scanned0 = int(ksm_read("pages_scanned"))
        self.skipped0 = int(ksm_read("pages_skipped"))
        if self.samples is not None:
            pid = ksmd_pid()
            self._ksmd = (pid, *ksmd_sched_ns(pid))
        self.t0 = time.monotonic()
        self._set_run(self.knobs["run"])
        if self.samples is not None:
            self.sample()

    def sample(self) -> None:
        """One point of the saving and ksmd's CPU (schedstat: on-CPU ns) since run=1."""
        assert self.samples is not None
        pid, cpu0, wait0 = self._ksmd
        now = time.monotonic()
        self._sampled_at = now
        cpu, wait = ksmd_sched_ns(pid)
        self.ksmd_wait_ns = wait - wait0
        self.samples.append((int((now - self.t0) * 1e9), int(ksm_read("general_profit")), cpu - cpu0))

    def _set_run(self, value: int) -> None:
        ksm_write("run", value)
        self.run_value = value

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.t0) * 1000

    def _registered(self) -> bool:
        """Whether ksmd has an mm to scan: a process opted in, or rmap_items are left (of a process
        that opted out, or exited while ksmd held its items): ksmd's next pass frees them and drops
        the mm from its list, as the model does. Every rmap_item counts in one of these four."""
        if any(p.mergeable for p in self.procs.values()):
            return True
        return any(int(ksm_read(c)) for c in ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile"))

    def idle(self) -> str | None:
        """Why the real ksmd can make no progress now (engine/timeline.py ksmd_idle), or None."""
        registered = self._registered()
        # read only when it decides: the advisor changes pages_to_scan under us
        pages_to_scan = int(ksm_read("pages_to_scan")) if registered and self.run_value == 1 else 0
        return ksmd_idle(self.run_value, registered, pages_to_scan)

    def run(self, full_scans: int | None = None, after_ms: int | None = None,
            until: Callable[[KernelRun], bool] | None = None) -> str:
        """Let ksmd scan and perform events until the stop (engine/timeline.py: arguments replace
        the scenario's [stop]) or until(self) is true; ksmd is left paused."""
        if until is not None and full_scans is None and after_ms is None:
            stop = RUN_ON
        else:
            stop = StopRule.of(self.scenario.stop, full_scans, after_ms)
        timeline = self.timeline
        self._resume()
        progress = (-1, -1)
        last_progress = time.monotonic()
        idle_since_ns: int | None = None  # the elapsed time when ksmd was seen becoming idle
        while True:
            if self.samples is not None and time.monotonic() - self._sampled_at >= SAMPLE_S:
                self.sample()
            self.full_scans = int(ksm_read("full_scans"))
            reason = stop.reached(self.full_scans, int(self.elapsed_ms() * NSEC_PER_MSEC))
            if reason is not None:
                break
            if until is not None and until(self):
                reason = "measured"
                break
            if timeline.marked_due(self.full_scans):
                self._pause()
                self._check_boundary()
                for ev in timeline.due_marked(self.full_scans):
                    self._perform(ev)
                self._resume()
            # only what is due now: a busy timeline must not starve the stop
            for at_ns, ev in timeline.due_timed(int(self.elapsed_ms() * NSEC_PER_MSEC)):
                self.max_event_lag_ms = max(self.max_event_lag_ms, self.elapsed_ms() - at_ns / NSEC_PER_MSEC)
                self._perform(ev)
            idle = self.idle()
            if idle is None:
                idle_since_ns = None
            elif idle_since_ns is None:
                idle_since_ns = int(self.elapsed_ms() * NSEC_PER_MSEC)
            # the wall clock always moves: only a stop without after_ms can be out of reach
            reason = stop.unreachable(idle, idle_since_ns or 0, timeline, self.full_scans, clock_moves=True)
            if reason is not None:
                break
            now = (self.full_scans, int(ksm_read("pages_scanned")))
            if now != progress or self.run_value != 1:
                progress, last_progress = now, time.monotonic()
            elif time.monotonic() - last_progress > STALL_S:
                raise KernelError(f"ksmd scanned nothing for {STALL_S:.0f} s")
            time.sleep(POLL_S)
        if self.samples is not None:
            self.sample()
        self._pause()
        return reason

    def _pause(self) -> None:
        """run=0 waits for ksmd's current batch (it holds ksm_thread_mutex) and stops it there."""
        self._scanned_at_pause = int(ksm_read("pages_scanned"))
        if self.run_value == 1:
            ksm_write("run", 0)

    def _resume(self) -> None:
        if self.run_value == 1:
            ksm_write("run", 1)

    def _check_boundary(self) -> None:
        """An at_full_scans event belongs between two passes; say so if ksmd got into the next."""
        if int(ksm_read("full_scans")) != self.full_scans or \
                int(ksm_read("pages_scanned")) != self._scanned_at_pause:
            self.notes.append(f"an event at full_scans {self.full_scans} landed after ksmd had "
                              f"started the next pass (sleep_millisecs too short to catch the boundary)")

    # ----------------------------------------------------------------------- events --

    def _matching(self, glob: str) -> list[_Proc]:
        return [p for p in self.procs.values() if fnmatch.fnmatchcase(p.name, glob)]

    def _perform(self, ev: Event) -> None:
        if ev.action == "set":
            self._set_knob(ev)
            return
        targets = self._matching(ev.process)
        for k, p in enumerate(targets):
            if ev.action == "write":
                assert ev.region is not None  # the loader requires a region of write, madvise and migrate
                self._write(p, ev.region, self.contents.indexes(ev, p.regions[ev.region]), ev.fill)
            elif ev.action == "fork":
                assert ev.child is not None  # the loader requires it
                self._fork(p, ev.child if len(targets) == 1 else f"{ev.child}-{k}")
            elif ev.action == "exit":
                self._exit(p)
            elif ev.action == "madvise":
                assert ev.region is not None
                mergeable = ev.advice == "mergeable"
                p.call("madvise", ev.region, mergeable)
                if mergeable and ev.region not in p.mergeable:
                    p.mergeable.append(ev.region)
                elif not mergeable and ev.region in p.mergeable:
                    p.mergeable.remove(ev.region)
            elif ev.action == "migrate":
                assert ev.region is not None
                p.call("migrate", ev.region, self.contents.indexes(ev, p.regions[ev.region]), ev.to_node)
            else:
                raise ValueError(f"unknown action {ev.action!r}")

    def _write(self, p: _Proc, region: str, indexes: list[int], fill: Fill) -> None:
        done = 0
        for count, pages in self.contents.fill(fill, len(indexes)):
            p.call("write", region, indexes[done:done + count], pages)
            done += count

    def _set_knob(self, ev: Event) -> None:
        assert ev.knob is not None and ev.value is not None  # the loader requires both of a set
        if ev.knob in ENGINE_KNOBS:
            self.notes.append(f"event[{ev.index}] set {ev.knob}: a simulator setting, not applied to the kernel")
            return
        if ev.knob == "run":
            self._set_run(int(ev.value))  # validated as 0, 1 or 2
            return
        try:
            ksm_write(ev.knob, ev.value)
        except OSError as err:  # the kernel refused, as echo would have reported
            self.notes.append(f"event[{ev.index}] set {ev.knob}={ev.value}: {err.strerror}")

    def _fork(self, parent: _Proc, name: str) -> None:
        try:
            pid, conn = kernel_child.fork(parent.conn, parent.pid, name)
        except RuntimeError as err:
            raise KernelError(str(err)) from None
        self.pidfds[pid] = os.pidfd_open(pid)
        self.procs[name] = _Proc(name, pid, conn, dict(parent.regions), parent.merge_any,
                                 list(parent.mergeable))

    def _exit(self, p: _Proc) -> None:
        p.call("exit")
        # the event is done when the mm is gone: exit_mm runs before the process is a zombie
        select.select([self.pidfds[p.pid]], [], [], 30)
        p.conn.close()
        del self.procs[p.name]

    # ---------------------------------------------------------------------- results --

    def result(self, wall_s: float) -> dict:
        """The contract's JSON object; ksmd must be paused and the processes alive."""
        ksm = read_counters()
        ksm["pages_scanned"] -= self.scanned0
        ksm["pages_skipped"] -= self.skipped0
        processes = {name: read_ksm_stat(p.pid) for name, p in self.procs.items()}
        if self.max_event_lag_ms > LATE_MS:
            self.notes.append(f"at_ms events ran up to {self.max_event_lag_ms:.0f} ms late")
        checked = mismatches = 0
        for p in self.procs.values():
            c, m = p.call("check")
            checked += c
            mismatches += m
        out = {
            "scenario": self.scenario.name, "flow": "kernel", "seed": self.seed,
            "sim_ms": int(self.elapsed_ms()), "wall_s": round(wall_s, 3),
            "ksm": ksm, "knobs": {**read_knobs(), "run": self.run_value}, "processes": processes,
            "outcomes": {}, "latency_ns": {},
            "data_check": {"pages_checked": checked, "mismatches": mismatches},
            "kernel": os.uname().release,
            "notes": list(self.notes),
        }
        if self.samples is not None:
            cpu = self.samples[-1][2]
            out["ksmd_cpu_ns"] = cpu
            out["timing"] = {**saving_timing(self.samples, first_at_midpoint=True),
                             "wait_per_cpu": round(self.ksmd_wait_ns / cpu, 3) if cpu else None}
        if maps_thp(self.scenario):
            # machine-wide: under the machine lock only KSM's splits should move it, our ksmd's
            now = read_vmstat(THP_VMSTAT)
            out["thp"] = {**{k: now[k] - self.vmstat0.get(k, now[k]) for k in THP_VMSTAT},
                          "anon_huge_pages": sum(p.call("thp_count") for p in self.procs.values())}
        if self.trace is not None:
            self.trace.stop()
            out["trace"] = self.trace.result()
            out["outcomes"] = self.trace.outcomes()
        return out


def run_on_kernel(scenario: Scenario, *, seed: int | None = None, overrides: dict | None = None,
                  full_scans: int | None = None, after_ms: int | None = None, trace: bool = False,
                  sample: bool = False) -> dict:
    """Realise the scenario on the real KSM and return the contract's JSON object (flow "kernel");
    with sample, also its "timing" (engine/timeline.py saving_timing of ~2 ms samples)."""
    wall0 = time.monotonic()
    with KernelRun(scenario, seed, overrides, trace, sample) as run:
        run.start()
        reason = run.run(full_scans, after_ms)
        out = run.result(time.monotonic() - wall0)
        out["stop_reason"] = reason
        return out


def measure_ksmd(scenario: Scenario, *, overrides: dict | None = None, warmup_full_scans: int = 3,
                 window_full_scans: int = 1, min_window_s: float = 5.0) -> dict:
    """ksmd's CPU cost per scanned page on a scenario's workload, in steady state.

    Runs the scenario (events included) for warmup_full_scans passes, then measures ksmd's CPU
    time (/proc/PID/schedstat, ns) over at least window_full_scans passes and min_window_s seconds.
    """
    pid = ksmd_pid()
    with KernelRun(scenario, None, overrides) as run:
        run.start()
        run.run(full_scans=warmup_full_scans)
        target = run.full_scans + window_full_scans
        cpu0, scanned0, t0 = ksmd_cpu_ns(pid), int(ksm_read("pages_scanned")), time.monotonic()
        run.run(until=lambda r: r.full_scans >= target and time.monotonic() - t0 >= min_window_s)
        cpu1, scanned1, t1 = ksmd_cpu_ns(pid), int(ksm_read("pages_scanned")), time.monotonic()
    scanned = scanned1 - scanned0
    return {
        "scenario": scenario.name, "pages_scanned": scanned, "cpu_ns": cpu1 - cpu0,
        "ns_per_page": round((cpu1 - cpu0) / scanned, 1) if scanned else None,
        "pages_per_s": round(scanned / (t1 - t0)), "wall_s": round(t1 - t0, 3),
        "cpu_share": round((cpu1 - cpu0) / 1e9 / (t1 - t0), 4),
    }


# --------------------------------------------------------------------------- CLI --

def format_result(result: dict) -> str:
    """Readable like `grep . /sys/kernel/mm/ksm/*` and /proc/PID/ksm_stat."""
    lines = [f"{result['scenario']} on kernel {result['kernel']}: {result['stop_reason']} "
             f"after {result['sim_ms']} ms"]
    lines += [f"{KSM_DIR}/{k}:{v}" for k, v in result["ksm"].items()]
    lines += [f"{KSM_DIR}/{k}:{v}" for k, v in result["knobs"].items()]
    for name, stat in result["processes"].items():
        lines.append(f"/proc/{stat['pid']}/ksm_stat ({name}):")
        lines += [f"  {k}: {v}" if k in STAT_FLAGS else f"  {k} {v}" for k, v in stat.items() if k != "pid"]
    check = result["data_check"]
    lines.append(f"data_check: {check['pages_checked']} pages checked, {check['mismatches']} mismatches")
    if "trace" in result:
        lines.append("tracepoints: " + json.dumps(result["trace"]))
    return "\n".join(lines)
