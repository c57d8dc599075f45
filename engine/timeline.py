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
either. scenario-format.md's "nothing registered with ksmd and no event pending" is the simplest
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
