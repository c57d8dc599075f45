"""What host mode draws, derived from a sequence of HostSamples and nothing else: the same samples
(live, or replayed from a recording) give the same views, whatever the wall clock says.

Everything here is the kernel's numbers or arithmetic on them; where a figure is an estimate (the
progress of the current pass, when the pages_sharing curve will settle) the text says so.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from engine.knobs import KSM_KNOBS
from engine.scenario import printable
from ksmtui.host.alerts import alerts
from ksmtui.host.sampler import HostSample
from ksmtui.host.whynot import sample_why_not
from ksmtui.text.units import MIB

HISTORY = 120  # samples kept for the sparklines
PASSES = 8  # full passes kept for their durations and pages_sharing
EVENTS = 40  # tracepoint events kept for the event log
RATE_WINDOW_S = 1.0  # rates are taken over at least this much time (or all there is)
SETTLED = 0.01  # pages_sharing changing less than this fraction per pass: settled
TOO_MANY_RMAP_ITEMS = 64  # ksm.rst: above this rmap_items per merging page, KSM costs more than it saves


@dataclass(frozen=True)
class Pass:
    number: int  # full_scans at its end (sysfs), or the scan's seq (tracepoint)
    seconds: float
    exact: bool  # from ksm_start_scan/ksm_stop_scan; else to within a sample interval (sysfs)
    pages_sharing: int  # at the sample where the pass was seen to end


@dataclass(frozen=True)
class HostView:
    sample: HostSample
    series: Mapping[str, tuple[int, ...]]  # counter or vmstat name -> values, oldest first
    sample_times: tuple[float, ...]  # when each value of the series was sampled
    scan_rate: float  # pages_scanned per second
    ksmd_cpu: float | None  # share of one CPU ksmd used lately (None: no ksmd or too few samples)
    passes: tuple[Pass, ...]  # the last PASSES full passes, oldest first
    pass_pages: int | None  # pages_scanned in the last full pass (None: no full pass seen yet)
    pass_done: int  # pages_scanned since the last full pass ended
    trace_totals: Mapping[str, Mapping[str, int]]  # counts, merges, errors since the first sample
    lost: int  # tracepoint events the kernel dropped since the first sample (ring-buffer overruns)
    events: tuple[tuple, ...]  # the last EVENTS tracepoint events, oldest first
    advisor: tuple[int, int, int] | None  # the last ksm_advisor decision
    samples: int  # samples seen
    source: str  # "live" or the recording's file name
    kernel: str  # the kernel release sampled
    state: str = ""  # live: "sampling every 1 s"; replay: replaying, paused, finished
    speed: str = ""  # the replay speed
    position: str = ""  # the replay position, "i/N"
    note: str = ""  # about the recording as read (a last line cut short)
    alerts: tuple[dict, ...] = ()  # what holds of ksmtui.host.alerts, ksmd's CPU taken as ksmd_cpu

    @property
    def why_not(self) -> list[dict]:
        """What stands in the way of merging, machine-wide (ksmtui.host.whynot), in this sample."""
        return sample_why_not(self.sample)

    # --- savings ---

    @property
    def profit_mib(self) -> float:
        return self.sample.ksm.get("general_profit", 0) / MIB

    @property
    def sharing_ratio(self) -> float | None:
        shared = self.sample.ksm.get("pages_shared", 0)
        return self.sample.ksm.get("pages_sharing", 0) / shared if shared else None

    @property
    def ksmd_cpu_s(self) -> float | None:
        ns = self.sample.ksmd.get("cpu_ns")
        return ns / 1e9 if ns is not None else None

    @property
    def profit_per_cpu_s(self) -> float | None:
        """MiB saved (general_profit) per second of CPU ksmd has used since boot."""
        cpu = self.ksmd_cpu_s
        return self.profit_mib / cpu if cpu else None

    # --- the current pass ---

    @property
    def eta_s(self) -> float | None:
        if self.pass_pages is None or self.scan_rate <= 0:
            return None
        return max(0, self.pass_pages - self.pass_done) / self.scan_rate

    def convergence(self) -> str:
        """pages_sharing per pass, and whether (or when, at its recent decay) it settles."""
        run = self.sample.knobs.get("run", 1)
        if run != 1:  # the passes seen were of another run: what they say no longer holds
            return f"convergence: - (ksmd is not scanning: run {run})"
        sharing = [p.pages_sharing for p in self.passes]
        if len(sharing) < 3:
            return f"convergence: - ({len(sharing)} of 3 passes seen)"
        d1, d2 = sharing[-2] - sharing[-3], sharing[-1] - sharing[-2]
        scale = max(1, sharing[-1])
        if abs(d2) <= SETTLED * scale and abs(d1) <= SETTLED * scale:
            return "settled: pages_sharing moved < 1% in each of 2 passes"
        if abs(d2) <= SETTLED * scale:
            return f"settling: {d2:+,} last pass (< 1%); settled if the next pass moves < 1% too"
        if d1 and 0 <= d2 / d1 < 1:
            # The last two changes shrink geometrically: passes until one is under 1%.
            r, n, d = d2 / d1, 0, float(abs(d2))
            while d > SETTLED * scale and n < 100:
                d *= r
                n += 1
            secs = n * (sum(p.seconds for p in self.passes[-3:]) / 3)
            return f"converging: {d2:+,} last pass; settles in ~{n} passes (~{secs:,.0f} s, est.)"
        return f"not settling yet: pages_sharing {d1:+,} then {d2:+,}"


def knobs_in_order(knobs: Mapping[str, int | str]) -> list[tuple[str, int | str]]:
    """The knobs in the model's order (run first, as engine.knobs lists them), then any file this
    kernel has that the model does not know, by name: the host and the model list them alike."""
    known = [(n, knobs[n]) for n in KSM_KNOBS if n in knobs]
    return known + sorted((n, v) for n, v in knobs.items() if n not in KSM_KNOBS)


def process_ratio(row: Mapping) -> float | None:
    """ksm_rmap_items / ksm_merging_pages (ksm.rst: above 64 the process costs more than it saves)."""
    merging = row.get("ksm_merging_pages")
    if not merging:
        return None
    return row.get("ksm_rmap_items", 0) / merging


def escaped(obj):
    """obj with every string in it (keys too) passed through printable: what a process named itself,
    what the kernel or a recording says, shown as text and never acted on by the terminal."""
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, dict):
        return {printable(str(k)): escaped(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(escaped(v) for v in obj)
    return obj


def escaped_sample(s: HostSample) -> HostSample:
    return HostSample(time=s.time, ksm=escaped(s.ksm), knobs=escaped(s.knobs), vmstat=escaped(s.vmstat),
                      ksmd=escaped(s.ksmd), processes=escaped(s.processes), trace=escaped(s.trace),
                      trace_note=printable(s.trace_note), extra=s.extra)


class HostHistory:
    """Feeds on HostSamples in order and makes HostViews. Every string of a sample is escaped here,
    on the way in: all that the views draw (tables, panels, dialogs) is printable."""

    def __init__(self, source: str = "live", kernel: str | None = None, alert_cpu: float | None = None) -> None:
        self.source = printable(source)
        self.kernel = printable(kernel or os.uname().release)
        self.alert_cpu = alert_cpu  # --alert-cpu (ksmtui.host.alerts.alerts)
        self._samples: deque[HostSample] = deque(maxlen=HISTORY)
        self._passes: deque[Pass] = deque(maxlen=PASSES)
        self._events: deque = deque(maxlen=EVENTS)
        self._totals: dict[str, dict[str, int]] = {"counts": {}, "merges": {}, "errors": {}}
        self._advisor: tuple[int, int, int] | None = None
        self._lost = 0
        self._pass_end: tuple[float, int, int] | None = None  # (time, full_scans, pages_scanned) at the last boundary
        self._pass_pages: int | None = None
        self.count = 0

    def add(self, s: HostSample) -> None:
        s = escaped_sample(s)
        prev = self._samples[-1] if self._samples else None
        self._samples.append(s)
        self.count += 1
        if s.trace:
            for key in ("counts", "merges", "errors"):
                total = self._totals[key]
                for name, n in s.trace.get(key, {}).items():
                    total[name] = total.get(name, 0) + n
            self._events.extend(tuple(e) for e in s.trace.get("events", ()))
            self._lost += s.trace.get("lost", 0)
            for seq, seconds, _rmap in s.trace.get("passes", ()):
                self._passes.append(Pass(seq, seconds, True, s.ksm.get("pages_sharing", 0)))
            if s.trace.get("advisor"):
                self._advisor = tuple(s.trace["advisor"][-1])
        full, scanned = s.ksm.get("full_scans", 0), s.ksm.get("pages_scanned", 0)
        if prev is None or full < prev.ksm.get("full_scans", 0):  # the first sample, or run=2 reset it
            self._pass_end = None
        elif full > prev.ksm.get("full_scans", 0):
            if self._pass_end is not None:
                t0, full0, scanned0 = self._pass_end
                passes = full - full0
                self._pass_pages = (scanned - scanned0) // passes
                if s.trace is None:  # without the tracepoints: to within a sample interval
                    self._passes.append(Pass(full, (s.time - t0) / passes, False, s.ksm.get("pages_sharing", 0)))
            self._pass_end = (s.time, full, scanned)

    def view(self, **state) -> HostView:
        samples = self._samples
        last = samples[-1]
        names = list(last.ksm) + list(last.vmstat)
        series = {n: tuple(s.ksm.get(n, s.vmstat.get(n, 0)) for s in samples) for n in names}
        base = samples[0]
        for s in reversed(samples):
            if last.time - s.time >= RATE_WINDOW_S:
                base = s
                break
        dt = last.time - base.time
        scan_rate = (last.ksm.get("pages_scanned", 0) - base.ksm.get("pages_scanned", 0)) / dt if dt > 0 else 0.0
        cpu = None
        if dt > 0 and "cpu_ns" in last.ksmd and base.ksmd.get("pid") == last.ksmd.get("pid"):
            cpu = (last.ksmd["cpu_ns"] - base.ksmd["cpu_ns"]) / 1e9 / dt
        pass_done = last.ksm.get("pages_scanned", 0) - self._pass_end[2] if self._pass_end else 0
        return HostView(
            sample=last,
            series=MappingProxyType(series),
            sample_times=tuple(s.time for s in samples),
            scan_rate=scan_rate,
            ksmd_cpu=cpu,
            passes=tuple(self._passes),
            pass_pages=self._pass_pages,
            pass_done=pass_done,
            trace_totals=MappingProxyType({k: dict(v) for k, v in self._totals.items()}),
            lost=self._lost,
            events=tuple(self._events),
            advisor=self._advisor,
            samples=self.count,
            source=self.source,
            kernel=self.kernel,
            alerts=tuple(alerts(last, cpu, self.alert_cpu)),
            **state,
        )
