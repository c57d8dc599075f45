"""A scenario's events and its stop rule, shared by every runner: the model (engine/sim.py), the
CLI, the UI runner and the run on the real kernel (ksmtui/kernel/run.py), so that what fires when,
and when a run ends, cannot drift apart between them.

Events fire in the order the scenario format gives: `at_ms` events by time (a repeating event is
put back at its next time), `at_full_scans` events when the full_scans counter reaches their mark,
file order at equal moments.

A run ends at its stop ([stop], replaced by --full-scans/--after-ms, 10 full scans by default), or
earlier with a note when it can never get there: ksmd can do no work (nothing registered, run is
not 1, or pages_to_scan is 0), every pending event has had its chance to change that since (the
at_ms events still to fire are repeats that already fired while ksmd was idle; at_full_scans
events wait for a full scan that will not come), and the clock cannot reach the stop's after_ms
either. The format's "nothing registered with ksmd and no event pending" (docs/scenarios.md) is the simplest
case; the rule extends it to a ksmd stopped by run or pages_to_scan, and to repeating events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sortedcontainers import SortedList

from engine.scenario import Event, Stop

DEFAULT_FULL_SCANS = 10
NO_PROGRESS = "no progress possible"
NSEC_PER_MSEC = 1_000_000
NSEC_PER_SEC = 1_000_000_000
MSEC_PER_SEC = 1000
# kernel/time/timer.c: the timer wheel's levels, 64 buckets each, each level 8x coarser
LVL_CLK_SHIFT = 3
LVL_BITS = 6
LVL_DEPTH = 9  # HZ > 100; 8 otherwise

@dataclass(frozen=True)
class StopRule:
    full_scans: int | None
    after_ms: int | None

    @classmethod
    def of(cls, stop: Stop, full_scans: int | None = None, after_ms: int | None = None) -> StopRule:
        """The options replace the scenario's [stop] as a whole; with neither, DEFAULT_FULL_SCANS."""
        if full_scans is None and after_ms is None:
            full_scans, after_ms = stop.full_scans, stop.after_ms
            if full_scans is None and after_ms is None:
                full_scans = DEFAULT_FULL_SCANS
        return cls(full_scans, after_ms)

    def reached(self, full_scans: int, now_ns: int) -> str | None:
        if self.full_scans is not None and full_scans >= self.full_scans:
            return f"full_scans reached {self.full_scans}"
        if self.after_ms is not None and now_ns >= self.after_ms * NSEC_PER_MSEC:
            return f"after_ms reached {self.after_ms}"
        return None

    def unreachable(self, idle: str | None, idle_since_ns: int, timeline: Timeline, full_scans: int,
                    clock_moves: bool) -> str | None:
        """The note when the run can never reach this stop, or None.

        idle: why ksmd can do no work (ksmd_idle), or None; idle_since_ns: since when it has
        been so; clock_moves: whether the clock still advances without ksmd's work (the wall
        clock does; the model's does while ksmd wakes up to scan nothing, or toward a pending
        at_ms event)."""
        if idle is None or not timeline.quiet_since(idle_since_ns, full_scans):
            return None
        if self.after_ms is not None and clock_moves:
            return None
        return no_progress(idle)

    def describe(self) -> str:
        parts = [f"{self.full_scans:,} full scans" if self.full_scans else "",
                 f"{self.after_ms:,} ms" if self.after_ms else ""]
        return " or ".join(p for p in parts if p)


RUN_ON = StopRule(None, None)  # past its stop (the UI runs on): only "no progress" ends a run


def ksmd_idle(run: int, registered: bool, pages_to_scan: int) -> str | None:
    """Why ksmd can make no progress with these settings, or None when it scans."""
    if not registered:
        return "nothing is registered with ksmd"
    if not run & 1:  # KSM_RUN_MERGE
        return f"ksmd is not running (run={run})"
    if pages_to_scan == 0:
        return "pages_to_scan is 0"
    return None


def no_progress(idle: str) -> str:
    return f"{NO_PROGRESS}: {idle} and no pending event can change that"


# ------------------------------------------------------------------ ksmd's sleep --

def msecs_to_jiffies(ms: int, hz: int) -> int:
    """include/linux/jiffies.h: rounded up, so that a sleep is never shorter than asked (for an
    HZ that divides 1000, (ms + 1000/HZ - 1) / (1000/HZ); the kernel's other branches compute the
    same ceiling with a multiply-shift)."""
    return -(-ms * hz // MSEC_PER_SEC)


def timer_fires_at(expires: int, clk: int) -> int:
    """The jiffy a timer_list timer armed at jiffy clk for `expires` runs at: calc_wheel_index()
    puts it in the bucket of its level, rounded up to the level's granularity and one granule
    further, so that it never fires early (a timer armed late in a tick still waits whole ticks).
    At level 0 (under 63 jiffies) that is expires + 1."""
    delta = expires - clk
    if delta < 0:
        return clk
    for lvl in range(LVL_DEPTH):
        if delta < ((1 << LVL_BITS) - 1) << (lvl * LVL_CLK_SHIFT) or lvl == LVL_DEPTH - 1:
            shift = lvl * LVL_CLK_SHIFT
            return ((expires >> shift) + 1) << shift
    raise AssertionError("unreachable")


def ksmd_wakes_at(now_ns: int, sleep_millisecs: int, hz: int) -> int:
    """When ksmd, going to sleep at now_ns, runs again: ksm_scan_thread waits in
    wait_event_freezable_timeout(..., msecs_to_jiffies(sleep_millisecs)), a schedule_timeout()
    whose timer fires on a tick (jiffies count whole ticks since the clock's 0, a tick boundary
    here). A timeout of 0 does not sleep. Measured on 6.18, HZ 250, by sched_waking of ksmd:
    sleep_millisecs 10, 20, 50 wake every 16, 24, 56 ms, on the tick; ksmd runs ~15 us later (not
    modelled)."""
    timeout = msecs_to_jiffies(sleep_millisecs, hz)
    if timeout == 0:
        return now_ns
    tick = NSEC_PER_SEC // hz
    jiffies = now_ns // tick
    return timer_fires_at(jiffies + timeout, jiffies) * tick


# ------------------------------------------------------ how fast, at what cost --

SAVING_MARKS = (50, 90, 100)  # percent of the final saving whose time is reported


def saving_timing(series: list[tuple[int, int, int]], first_at_midpoint: bool = False) -> dict:
    """How fast a run got to its saving and what ksmd's CPU cost, from (ns since run=1, saving =
    general_profit, ksmd's CPU ns since run=1) points in time order: time_to_{50,90,100}_ms (when
    the saving first reached that share of the final one), ksmd_cpu_to_100_ms, and
    steady_cpu_ms_per_s (ksmd's CPU per second of wall clock after the saving settled, what it
    keeps costing; None when the run ended there). first_at_midpoint: the points are samples (the
    kernel's), and a mark reached at sample i was reached, on average, halfway since sample i-1:
    its time, and ksmd's CPU at 100%, are the two samples' means (the model's points are taken at
    each merge, so its CPU at 100% is at the last one; the sample after it also counts the rest
    of that wake-up's scan, up to a sampling interval of ksmd's CPU)."""
    out: dict = {f"time_to_{q}_ms": None for q in SAVING_MARKS}
    out.update(saving=series[-1][1] if series else 0, ksmd_cpu_to_100_ms=None, steady_cpu_ms_per_s=None,
               ksmd_cpu_ms=round(series[-1][2] / 1e6, 3) if series else 0.0)
    final = out["saving"]
    if final <= 0:
        return out
    at100 = None
    for q in SAVING_MARKS:
        for i, (t, saving, _) in enumerate(series):
            if saving * 100 >= q * final:
                if first_at_midpoint and i:
                    t = (t + series[i - 1][0]) // 2
                out[f"time_to_{q}_ms"] = round(t / 1e6, 3)
                if q == 100:
                    at100 = i
                break
    if at100 is not None:
        t100, _, cpu100 = series[at100]
        if first_at_midpoint and at100:
            t100, cpu100 = (t100 + series[at100 - 1][0]) // 2, (cpu100 + series[at100 - 1][2]) // 2
        out["ksmd_cpu_to_100_ms"] = round(cpu100 / 1e6, 3)
        t_end, _, cpu_end = series[-1]
        if t_end > t100:
            out["steady_cpu_ms_per_s"] = round((cpu_end - cpu100) / 1e6 / ((t_end - t100) / 1e9), 3)
    return out


class Timeline:
    """The events still to fire, in firing order (SortedList: repeats go back in their place)."""

    def __init__(self, events: Iterable[Event]):
        self._timed: SortedList = SortedList()  # (ns, file index, repetition, event)
        self._marked: SortedList = SortedList()  # (full_scans, file index, event)
        for ev in events:
            if ev.at_ms is not None:
                self._timed.add((ev.at_ms * NSEC_PER_MSEC, ev.index, 0, ev))
            else:
                self._marked.add((ev.at_full_scans, ev.index, ev))
        self.done = 0

    @property
    def pending(self) -> int:
        return len(self._timed) + len(self._marked)

    @property
    def next_timed_ns(self) -> int | None:
        return self._timed[0][0] if self._timed else None

    def due_timed(self, now_ns: int) -> Iterator[tuple[int, Event]]:
        """(due time, event) for every at_ms event due by now_ns, repeats included, in order."""
        while self._timed and self._timed[0][0] <= now_ns:
            at, index, rep, ev = self._timed.pop(0)
            self.done += 1
            if ev.repeat_ms:
                nxt = at + ev.repeat_ms * NSEC_PER_MSEC
                if ev.until_ms is None or nxt <= ev.until_ms * NSEC_PER_MSEC:
                    self._timed.add((nxt, index, rep + 1, ev))
            yield at, ev

    def marked_due(self, full_scans: int) -> bool:
        return bool(self._marked) and self._marked[0][0] <= full_scans

    def due_marked(self, full_scans: int) -> Iterator[Event]:
        while self.marked_due(full_scans):
            self.done += 1
            yield self._marked.pop(0)[2]

    def quiet_since(self, since_ns: int, full_scans: int) -> bool:
        """Has every pending event had its chance since since_ns? Each at_ms event still to
        fire is a repeat that fired at or after since_ns (firing it again does the same again),
        and no at_full_scans event is due."""
        if self.marked_due(full_scans):
            return False
        return all(rep and at - ev.repeat_ms * NSEC_PER_MSEC >= since_ns for at, _, rep, ev in self._timed)
