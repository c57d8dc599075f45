"""A scenario running: the machine, ksmd and the workload on one simulated clock.

ksmd wakes, scans pages_to_scan pages (ksm_do_scan), and sleeps sleep_millisecs as the kernel
does, in jiffies of the scenario's hz (engine/timeline.py ksmd_wakes_at): the sleep starts when
the scan ends, a wake-up takes as long as the cost model says its work takes, and ksmd wakes on a
tick. Scenario events run between wake-ups, when their time or full-scan mark has come, in file
order at equal moments (a `set sleep_millisecs`, which wakes the kernel's ksmd at once, waits for
the end of the current sleep here).
"""

from __future__ import annotations

import fnmatch
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from engine import contents
from engine.controllers import ControlLoop
from engine.cost import REFERENCE, CostModel, CostProfile
from engine.instrument import ObservedKsm, trace_step
from engine.knobs import ENGINE_KNOBS, KSM_KNOBS, KnobError
from engine.ksm import RmapItem, StableNode, calc_checksum, is_stable_node_chain, is_stable_node_dup
from engine.machine import MM, Machine
from engine.scenario import GLOB_CHARS, Event, Scenario
from engine.snapshot import (
    Cursor,
    ProcessStats,
    Sharer,
    Snapshot,
    StableNodeView,
    StepInfo,
    TreeFound,
    UnstableItemView,
    WalkStep,
    frozen,
)
from engine.timeline import RUN_ON, StopRule, Timeline, ksmd_idle, ksmd_wakes_at
from engine.tree import RB_RED, N, RbNode, RbRoot, rb_first, rb_next
from engine.vocabulary import N_BUCKETS, OUTCOMES, PATHS, bucket_bounds, work_totals

V = TypeVar("V")

RECENT_WAKEUPS = 50  # the rolling latency histograms cover this many ksmd wake-ups
_SHARERS_SHOWN = 32


def _page_start(offset: int, total: int, limit: int) -> int:
    """offset, or the last page's first rank when it is past the end."""
    return min(offset, max(total - 1, 0) // limit * limit) if limit else 0


class PacedKsm(ObservedKsm):
    """ksmd whose clock runs while it scans: now_ns is the wake-up's time plus the CPU time spent
    since, as ktime_get() reads it in scan_time_advisor at the end of a pass (the scan's own time
    counts toward scan_time) and as jiffies read it for chain pruning."""

    _wake_ns = 0
    _wake_cpu_ns = 0
    wait_per_cpu = 0.0  # the cost profile's: waiting for a CPU stretches the scan on the clock
    # Simulation.series while it is recorded. general_profit rises only at a merge, so a share of
    # the saving is first reached at one, inside a wake-up, where the kernel's general_profit shows
    # it (at 1600 pages a wake-up, the end of the scan is milliseconds later). The point's CPU is
    # ksmd's before the merging page's call, a few us early.
    series: list[tuple[int, int, int]] | None = None

    def _note_merge(self) -> None:
        if self.series is not None:
            self.series.append((self.now_ns, self.general_profit(), self.ksmd_cpu_ns))

    def stable_tree_append(self, item: RmapItem, node: StableNode) -> None:
        super().stable_tree_append(item, node)
        self._note_merge()

    def record_series(self, series: list[tuple[int, int, int]]) -> None:
        """A point at every merge from now on. A zero-page merge's comes from an instance
        attribute shadowing try_to_merge_with_zero_page (as engine/instrument.py's trace_step
        shadows methods), not an override: that would be a Python call for every anonymous page
        scanned, recorded or not, 3-8% of the compiled anon path on a slow Python."""
        self.series = series
        merge = self.try_to_merge_with_zero_page

        def try_to_merge_with_zero_page(item: RmapItem, pfn: int) -> int:
            ret = merge(item, pfn)
            if ret == 0:
                self._note_merge()
            return ret
        self.try_to_merge_with_zero_page = try_to_merge_with_zero_page  # type: ignore[method-assign]

    @property
    def now_ns(self) -> int:
        cpu = self.ksmd_cpu_ns - self._wake_cpu_ns
        return self._wake_ns + cpu + int(cpu * self.wait_per_cpu)

    @now_ns.setter
    def now_ns(self, value: int) -> None:
        self._wake_ns = value
        self._wake_cpu_ns = getattr(self, "ksmd_cpu_ns", 0)


class Simulation:
    def __init__(self, scenario: Scenario, flow: str | None = None, seed: int | None = None,
                 overrides: dict | None = None, control: ControlLoop | None = None,
                 costs: CostProfile = REFERENCE):
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.costs = costs
        overrides = dict(overrides or {})
        engine: dict[str, int | str] = {k: v.default for k, v in ENGINE_KNOBS.items()}
        engine.update(scenario.engine)
        engine.update({k: v for k, v in overrides.items() if k in ENGINE_KNOBS})
        if flow is not None:
            engine["flow"] = flow
        engine["hz"] = engine["hz"] or costs.hz  # 0: the profile's machine; recorded in result()
        knobs: dict[str, int | str] = {k: v.default for k, v in KSM_KNOBS.items()}
        knobs.update(scenario.ksm)
        knobs.update({k: v for k, v in overrides.items() if k in KSM_KNOBS})
        if knobs["advisor_mode"] == "scan-time":
            knobs["pages_to_scan"] = knobs["advisor_min_pages_to_scan"]
        run = knobs.pop("run")
        knobs["run"] = 0

        self._by_name: dict[str, MM] = {}  # every process made so far, by name (unique in a scenario)
        # each value was parsed for its knob: numa_nodes is an int, flow and latency strings
        self.machine = Machine(scenario.page_size, int(engine["numa_nodes"]))
        self.ksm = PacedKsm(self.machine, knobs, str(engine["flow"]), str(engine["latency"]), self.seed)
        self.ksm.cost = CostModel(scenario.page_size, self.seed, costs)
        self.ksm.wait_per_cpu = costs.wait_per_cpu
        self.machine.hooks = self.ksm  # the machine's mm code calls into this ksmd
        self.engine_knobs = engine
        self.now_ns = 0
        self.full_scans = 0  # completed passes since the start (run=2 resets seqnr, not this)
        self.notes: list[str] = []  # refusals of `set` events, as echo would print them
        self.last_step: StepInfo | None = None
        self.last_walk: tuple[WalkStep, ...] = ()
        self._found_seq = 0

        self.contents = contents.ScenarioContents(scenario, self.seed)

        for proc in scenario.processes:
            for name in proc.instance_names():
                mm = self.machine.new_mm(name, proc.node)
                for region in proc.regions:
                    pages = list(self.contents.pages(region.fill, region.pages))
                    self.machine.add_region(mm, region.name, pages, region.folio_extents(self.machine.hpage_pmd_nr))
                if proc.merge_any:
                    self.machine.prctl_set_memory_merge(mm, True)
                for region, vma in zip(proc.regions, mm.vmas, strict=False):
                    if region.mergeable:
                        self.machine.madvise(vma, True)
        self.ksm.set_knob("run", run)

        # what THPs went through is in the results of scenarios that map THPs only, so the
        # results of every other scenario keep their shape
        self.maps_thp = any(r.maps_thp for p in scenario.processes for r in p.regions)
        self.timeline = Timeline(scenario.events)
        # controllers (engine/controllers.py): a closed loop around the model, on its own clock
        self.cmdlines = {n: p.cmdline or n for p in scenario.processes for n in p.instance_names()}
        self.control = control
        if control is not None:
            control.attach(self)
        self._idle_since: int | None = None  # the clock when ksmd was last seen becoming idle

        self._batch_left = 0
        self._in_batch = False
        self.scan_end_ns = 0  # when the last wake-up's scan ended (ksmd went to sleep)
        self._waited_ns = 0  # ksmd's wait for a CPU so far (the profile's wait_per_cpu): off the tick grid
        # (ns, general_profit, ksmd CPU ns) at each merge and when each wake-up's scan ends, once
        # record_series() is called
        self.series: list[tuple[int, int, int]] | None = None
        self._batch_cpu0 = 0
        self._recent: deque = deque(maxlen=RECENT_WAKEUPS + 1)
        self._recent.append(self._hist_copy())
        self.finished = False
        self.stop_reason: str | None = None

    # ------------------------------------------------------------------- events --

    def _matching(self, glob: str) -> list[MM]:
        mms = self.machine.mms
        if not GLOB_CHARS & set(glob):  # a plain name: looked up, or 10,000 forks take 10,000² matches
            for mm in mms[len(self._by_name):]:  # processes are only ever appended (fork)
                self._by_name[mm.name] = mm
            named = self._by_name.get(glob)
            return [named] if named is not None and named.alive else []
        return [mm for mm in mms if mm.alive and fnmatch.fnmatchcase(mm.name, glob)]

    def _perform(self, ev: Event) -> None:
        machine = self.machine
        targets = self._matching(ev.process)
        # the loader gives every event the fields of its action (engine/scenario.py)
        if ev.action == "set":
            assert ev.knob is not None
            try:
                self.set_knob(ev.knob, ev.value)
            except KnobError as err:
                self.notes.append(f"event[{ev.index}] set {ev.knob}={ev.value}: {err}")
            return
        for k, mm in enumerate(targets):
            if ev.action == "fork":
                assert ev.child is not None
                machine.fork(mm, ev.child if len(targets) == 1 else f"{ev.child}-{k}")
            elif ev.action == "exit":
                machine.exit(mm)
            elif ev.action == "write":
                assert ev.region is not None
                vma = mm.region(ev.region)
                indexes = self.contents.indexes(ev, len(vma.pte))
                for i, data in zip(indexes, self.contents.pages(ev.fill, len(indexes)), strict=False):
                    machine.write(vma, i, data)
            elif ev.action == "madvise":
                assert ev.region is not None
                machine.madvise(mm.region(ev.region), ev.advice == "mergeable")
            elif ev.action == "migrate":
                assert ev.region is not None and ev.to_node is not None
                vma = mm.region(ev.region)
                machine.migrate(vma, self.contents.indexes(ev, len(vma.pte)), ev.to_node)
            else:
                raise ValueError(f"unknown action {ev.action!r}")

    def _run_due_events(self) -> None:
        for _, ev in self.timeline.due_timed(self.now_ns):
            self._perform(ev)
        for ev in self.timeline.due_marked(self.full_scans):
            self._perform(ev)
        if self.control is not None:
            self.control.run_due()

    @property
    def events_done(self) -> int:
        return self.timeline.done

    @property
    def events_pending(self) -> int:
        return self.timeline.pending

    # ---------------------------------------------------------------- the clock --

    def idle(self) -> str | None:
        """Why ksmd can make no progress now (engine/timeline.py ksmd_idle), or None. Between
        wake-ups only: it notes since when ksmd has been idle, for the stop rule."""
        ksm = self.ksm
        idle = None if self._in_batch else ksmd_idle(
            ksm.knobs["run"], ksm.ksm_mm_head.next is not ksm.ksm_mm_head, ksm.knobs["pages_to_scan"])
        if idle is None:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = self.now_ns
        return idle

    @property
    def stuck(self) -> bool:
        """ksmd can make no progress, and every pending event has had its chance to change that."""
        return self.check_stop(RUN_ON) is not None

    def _wake(self) -> bool:
        """ksm_scan_thread wakes up: due events first; False if ksmd has nothing to do. An idle
        ksmd sleeps until the next at_ms event, so the clock moves there first."""
        if not self.ksm.ksmd_should_run():
            nxt = self.timeline.next_timed_ns
            if self.control is not None:  # the controller's next sample or tick
                nxt = self.control.next_ns if nxt is None else min(nxt, self.control.next_ns)
            if nxt is not None and nxt > self.now_ns:
                self.now_ns = nxt
        self._run_due_events()
        if not self.ksm.ksmd_should_run():
            return False
        self._in_batch = True
        self._batch_left = self.ksm.knobs["pages_to_scan"]
        self._batch_cpu0 = self.ksm.ksmd_cpu_ns
        self.ksm.now_ns = self.now_ns
        self.ksm.ksmd_cpu_ns += self.ksm.cost.wakeup
        self.ksm.cost.wakeups += 1
        return True

    def _end_batch(self) -> None:
        """ksmd sleeps from the end of its scan to the tick its timer fires on; a ksmd with
        nothing to do waits for an event. On a busy machine ksmd also waits for a CPU (the
        profile's wait_per_cpu, the mean schedstat measured): those waits fall at random phases
        of the tick, so a wait of d moves the next wake-up by d on average (a wait crosses a tick
        boundary with probability d / tick); the model adds the mean and keeps the ticks where
        ksmd's own CPU time puts them."""
        self._in_batch = False
        cpu = self.ksm.ksmd_cpu_ns - self._batch_cpu0
        on_ticks = self.now_ns - self._waited_ns + cpu
        self._waited_ns += int(cpu * self.costs.wait_per_cpu)
        self.now_ns = self.scan_end_ns = on_ticks + self._waited_ns
        if self.series is not None:
            self.series.append((self.now_ns, self.ksm.general_profit(), self.ksm.ksmd_cpu_ns))
        if self.ksm.ksmd_should_run():
            hz = int(self.engine_knobs["hz"])
            wake_ns = ksmd_wakes_at(on_ticks, self.ksm.knobs["sleep_millisecs"], hz) + self._waited_ns
            if self.control is not None:  # a controller's ticks during the sleep (engine/controllers.py)
                wake_ns = self.control.during_sleep(wake_ns)
            self.now_ns = wake_ns
        self._recent.append(self._hist_copy())

    def record_series(self) -> None:
        """From now on, note the saving and ksmd's CPU at each merge and at the end of every
        wake-up's scan (engine/timeline.py saving_timing reads them)."""
        if self.series is None:
            self.series = [(self.now_ns, self.ksm.general_profit(), self.ksm.ksmd_cpu_ns)]
            self.ksm.record_series(self.series)

    def _scan(self, n: int) -> int:
        """Up to n ksm_do_scan iterations inside the current wake-up, ending it when its
        pages_to_scan are done or the pass ends. Returns how many pages were scanned."""
        want = min(n, self._batch_left)
        self.last_walk = ()  # it was the last single step's
        seqnr = self.ksm.ksm_scan.seqnr
        done = self.ksm.ksm_do_scan(want) if want > 0 else 0
        self._batch_left -= done
        if done < want or self._batch_left <= 0:
            if self.ksm.ksm_scan.seqnr != seqnr:
                self.full_scans += 1
            self._end_batch()
        return done

    def step_page(self) -> StepInfo | None:
        """Exactly one cmp_and_merge_page() call, waking ksmd as often as needed."""
        for _ in range(8):
            if not self._in_batch and not self._wake():
                if self.stuck:
                    return None
                continue
            with trace_step(self.ksm) as step:
                scanned = self._scan(1)
            if scanned and self.ksm.last_call is not None:
                mm, address, path, outcome, ns = self.ksm.last_call
                self.last_step = StepInfo(mm.name, address, path, outcome, ns, self.ksm.ksm_pages_scanned,
                                          tuple(step.calls))
                self.last_walk = tuple(WalkStep(walk, depth, red, ret, self._entry_view(node))
                                       for walk, depth, red, ret, node in step.walks)
                return self.last_step
        return None

    def step_pages(self, n: int) -> int:
        """Up to n cmp_and_merge_page() calls, across wake-ups: a bounded slice of work for a
        caller that must stay responsive. It returns early, after a wake-up that scanned nothing
        (pages_to_scan 0, an idle ksmd waiting for an event), so that the caller can look at its
        clock and its stop. Returns how many calls were made."""
        done = 0
        while done < n:
            if not self._in_batch and not self._wake():
                break
            scanned = self._scan(n - done)
            if not scanned:
                break
            done += scanned
        return done

    def step_within_wakeup(self, n: int) -> int:
        """Up to n calls, never into the next wake-up: a caller that checks its stop between
        these stops where run() does, which checks between wake-ups (step_batch)."""
        if not self._in_batch and not self._wake():
            return 0
        return self._scan(n)

    def step_batch(self) -> None:
        """One ksmd wake-up (or the rest of the current one)."""
        if not self._in_batch and not self._wake():
            return
        self._scan(self._batch_left)

    def step_full_scan(self) -> None:
        target = self.full_scans + 1
        while self.full_scans < target and not self.stuck:
            self.step_batch()

    def stop_rule(self, full_scans: int | None = None, after_ms: int | None = None) -> StopRule:
        """The scenario's [stop], or the arguments instead of it."""
        return StopRule.of(self.scenario.stop, full_scans, after_ms)

    def check_stop(self, stop: StopRule) -> str | None:
        """Why the run should end now: its stop reached, or a stop it can never reach (the note
        of engine/timeline.py); None to go on."""
        reason = stop.reached(self.full_scans, self.now_ns)
        if reason is None:
            # without ksmd's work the clock still moves while ksmd wakes to scan nothing, or
            # toward the next at_ms event
            clock_moves = (self.ksm.ksmd_should_run() or self.timeline.next_timed_ns is not None
                           or self.control is not None)
            idle = self.idle()
            reason = stop.unreachable(idle, self._idle_since or 0, self.timeline, self.full_scans, clock_moves)
            if reason is not None and self.control is not None and not self.control.quiet_since(self._idle_since or 0):
                reason = None  # the controller may still start ksmd
        return reason

    def run(self, full_scans: int | None = None, after_ms: int | None = None, progress=None) -> str:
        """Run to the stop (arguments replace the scenario's [stop]); returns why it ended."""
        stop = self.stop_rule(full_scans, after_ms)
        batches = 0
        while (reason := self.check_stop(stop)) is None:
            self.step_batch()
            batches += 1
            if progress is not None and batches % 50 == 0:
                progress(self)
        self.finished = True
        self.stop_reason = reason
        return reason

    # --------------------------------------------------------------------- knobs --

    def set_knob(self, name: str, value) -> None:
        if name in KSM_KNOBS:
            self.ksm.set_knob(name, value)
            return
        if name not in ENGINE_KNOBS:
            raise KnobError(f"unknown knob {name!r}")
        value = ENGINE_KNOBS[name].parse(value)
        if name == "numa_nodes":
            if value != self.engine_knobs[name]:
                raise KnobError("numa_nodes is fixed when the machine is built")
            return
        self.engine_knobs[name] = value
        if name == "flow":
            self.ksm.flow = value
        elif name == "latency":
            self.ksm.latency = value

    def knobs(self) -> dict:
        return {**self.ksm.knobs, **self.engine_knobs}

    # ----------------------------------------------------------------- reading --

    def data_check(self) -> tuple[int, int]:
        return self.machine.data_check()

    def thp(self) -> dict[str, int]:
        """What THPs went through, modelled: /proc/vmstat's thp_split_page and
        thp_split_page_failed, and anon_huge_pages, the PMD-sized THPs the live processes still
        map whole, summed over processes as smaps' AnonHugePages (in THPs) would count them."""
        m = self.machine
        whole = 0
        for folio in m.folios.values():
            if folio.live != len(folio.pfns) or len(folio.pfns) != m.hpage_pmd_nr:
                continue
            for vma in folio.vmas:
                pte = vma.pte
                if vma.mm.alive and all(pte[folio.index + i] == pfn for i, pfn in enumerate(folio.pfns)):
                    whole += 1
        return {"thp_split_page": m.thp_split_page, "thp_split_page_failed": m.thp_split_page_failed,
                "anon_huge_pages": whole}

    def _hist_copy(self) -> dict[str, tuple[int, ...]]:
        return {p: tuple(h) for p, h in self.ksm.latency_hist.items()}

    def process_stats(self) -> list[ProcessStats]:
        ksm = self.ksm
        out = []
        for mm in self.machine.mms:
            out.append(ProcessStats(
                mm.name, mm.pid, mm.node, mm.alive, mm.mapped_pages, mm.ksm_rmap_items, mm.ksm_zero_pages,
                mm.ksm_merging_pages, ksm.ksm_process_profit(mm), mm.mmf_vm_merge_any,
                any(v.vm_mergeable for v in mm.vmas),
            ))
        return out

    def _node_view(self, node: StableNode, kind: str, depth: int = -1, side: str = "",
                   red: bool = False) -> StableNodeView:
        content = self.machine.content
        if is_stable_node_chain(node):
            dups = tuple(self._node_view(d, "dup") for d in node.dups)
            return StableNodeView("chain", -1, node.nid, dups[0].checksum if dups else 0, len(dups), (), dups,
                                  depth, side, red)
        alive = self.machine.ksm_mapping.get(node.kpfn) is node
        sharers = tuple(Sharer(i.mm.name, i.address) for i in itertools.islice(reversed(node.hlist), _SHARERS_SHOWN))
        return StableNodeView(kind, node.kpfn, node.nid, calc_checksum(content[node.kpfn]) if alive else 0,
                              node.rmap_hlist_len, sharers, (), depth, side, red)

    def _unstable_view(self, item: RmapItem, depth: int = -1, side: str = "", red: bool = False) -> UnstableItemView:
        pfn = self.ksm.get_mergeable_page(item)
        return UnstableItemView(item.mm.name, item.address, -1 if pfn is None else pfn, item.nid,
                                item.oldchecksum, depth, side, red)

    def _entry_view(self, node: RbNode) -> StableNodeView | UnstableItemView:
        """A tree entry a walk met, as it is now."""
        if isinstance(node, RmapItem):
            return self._unstable_view(node)
        assert isinstance(node, StableNode)
        return self._node_view(node, "dup" if is_stable_node_dup(node) else "regular")

    @staticmethod
    def _window(roots: Sequence[RbRoot[N]], offset: int, limit: int, view: Callable[[N, int, str, bool], V]) -> list[V]:
        """The entries of rank offset .. offset + limit - 1 across roots, each with where it hangs
        (depth, side, colour). The walk to the window is rb_first() then rb_next(): it costs the
        offset, not the tree."""
        rows: list[V] = []
        skip = offset
        for root in roots:
            if skip >= root.count:
                skip -= root.count
                continue
            node = rb_first(root)
            for _ in range(skip):
                assert node is not None  # skip < root.count
                node = rb_next(node)
            skip = 0
            while node is not None and len(rows) < limit:
                parent, depth = node.rb_parent, 0
                side = "" if parent is None else "L" if parent.rb_left is node else "R"
                while parent is not None:
                    depth += 1
                    parent = parent.rb_parent
                rows.append(view(node, depth, side, node.rb_color == RB_RED))
                node = rb_next(node)
        return rows

    def tree_find(self, query: str, kpfn: int | None = None, process: str | None = None,
                  address: int | None = None) -> TreeFound:
        """The first entry, stable tree first, for a kpfn (a KSM page's, or the page an unstable
        item maps now) or for process:address (a sharer, or an unstable item). A full walk: it
        runs on demand, never for a snapshot."""
        ksm = self.ksm
        self._found_seq += 1

        def rmap_matches(items: Iterable[RmapItem]) -> bool:
            return any(i.mm.name == process and i.address == address for i in items)
        rank = 0
        for root in ksm.root_stable_tree:
            for node in root:
                nodes = node.dups if is_stable_node_chain(node) else [node]
                if any(n.kpfn == kpfn if kpfn is not None else rmap_matches(n.hlist) for n in nodes):
                    return TreeFound(self._found_seq, query, "stable", rank)
                rank += 1
        for node in ksm.migrate_nodes:
            if node.kpfn == kpfn if kpfn is not None else rmap_matches(node.hlist):
                return TreeFound(self._found_seq, query, "stable", rank)
            rank += 1
        rank = 0
        for unstable in ksm.root_unstable_tree:
            for item in unstable:
                if (ksm.get_mergeable_page(item) == kpfn if kpfn is not None
                        else item.mm.name == process and item.address == address):
                    return TreeFound(self._found_seq, query, "unstable", rank)
                rank += 1
        return TreeFound(self._found_seq, query, None, -1)

    def snapshot(self, tree_limit: int = 100, stable_offset: int = 0, unstable_offset: int = 0,
                 tree_found: TreeFound | None = None) -> Snapshot:
        ksm = self.ksm
        migrating = len(ksm.migrate_nodes)
        in_trees = sum(root.count for root in ksm.root_stable_tree)
        stable_offset = _page_start(stable_offset, in_trees + migrating, tree_limit)
        stable_views = self._window(
            ksm.root_stable_tree, stable_offset, tree_limit,
            lambda node, depth, side, red: self._node_view(node, "regular", depth, side, red))
        if tree_limit and migrating and len(stable_views) < tree_limit:  # the window reaches them
            first = max(stable_offset - in_trees, 0)
            for node in itertools.islice(ksm.migrate_nodes, first, first + tree_limit - len(stable_views)):
                stable_views.append(self._node_view(node, "migrating"))
        dups_per_chain: dict[int, int] = {}
        for chain in ksm.chains:
            dups_per_chain[len(chain.dups)] = dups_per_chain.get(len(chain.dups), 0) + 1

        unstable_size = sum(root.count for root in ksm.root_unstable_tree)
        unstable_offset = _page_start(unstable_offset, unstable_size, tree_limit)
        unstable_views = self._window(ksm.root_unstable_tree, unstable_offset, tree_limit, self._unstable_view)

        scan = ksm.ksm_scan
        slot = scan.mm_slot
        if slot is ksm.ksm_mm_head:
            cursor = Cursor(None, None, 0, scan.seqnr, ksm.pass_done, ksm.pass_total)
        else:
            vma = slot.mm.find_vma(scan.address)
            cursor = Cursor(slot.mm.name, vma.name if vma else None, scan.address, scan.seqnr,
                            ksm.pass_done, ksm.pass_total)

        empty = (0,) * N_BUCKETS
        latency = {p: tuple(ksm.latency_hist.get(p, empty)) for p in PATHS}
        oldest = self._recent[0]
        recent = {p: tuple(a - b for a, b in zip(latency[p], oldest.get(p, empty), strict=False)) for p in PATHS}
        outcomes = {p: frozen({o: ksm.outcomes.get(p, {}).get(o, 0) for o in OUTCOMES}) for p in PATHS}
        return Snapshot(
            scenario=self.scenario.name, description=self.scenario.description, flow=ksm.flow,
            seed=self.seed, page_size=self.machine.page_size, sim_ns=self.now_ns,
            finished=self.finished, stop_reason=self.stop_reason,
            counters=frozen(ksm.counters()), knobs=frozen(self.knobs()), cursor=cursor,
            outcomes=frozen(outcomes), latency=frozen(latency), latency_recent=frozen(recent),
            work=frozen(work_totals(ksm.work_by_path)),
            work_by_path=frozen({p: frozen(w) for p, w in ksm.work_by_path.items()}),
            sharers_per_page=frozen({n: c for n, c in ksm.hlist_lens.items() if n > 0}),
            dups_per_chain=frozen(dups_per_chain), stable_tree=tuple(stable_views),
            stable_tree_size=sum(root.count for root in ksm.root_stable_tree), unstable_tree=tuple(unstable_views),
            unstable_tree_size=unstable_size, migrate_nodes=len(ksm.migrate_nodes),
            processes=tuple(self.process_stats()), last_step=self.last_step,
            events_done=self.events_done, events_pending=self.events_pending,
            stable_offset=stable_offset, unstable_offset=unstable_offset, last_walk=self.last_walk,
            tree_found=tree_found, thp=frozen(self.thp() if self.maps_thp else {}),
            costs=self.costs.label, ksmd_cpu_ns=ksm.ksmd_cpu_ns,
        )

    def result(self) -> dict:
        """The headless JSON object of docs/scenarios.md (the caller sets wall_s)."""
        ksm = self.ksm
        processes = {}
        for p in self.process_stats():
            if p.alive:
                processes[p.name] = {
                    "pid": p.pid, "ksm_rmap_items": p.ksm_rmap_items, "ksm_zero_pages": p.ksm_zero_pages,
                    "ksm_merging_pages": p.ksm_merging_pages, "ksm_process_profit": p.ksm_process_profit,
                    "ksm_merge_any": "yes" if p.ksm_merge_any else "no",
                    "ksm_mergeable": "yes" if p.ksm_mergeable else "no",
                }
        latency = {}
        for path in PATHS:
            counts = ksm.latency_hist.get(path, [])
            latency[path] = [[*bucket_bounds(i), c] for i, c in enumerate(counts) if c]
        checked, mismatches = self.data_check()
        out = {
            "scenario": self.scenario.name, "flow": ksm.flow, "seed": self.seed,
            "sim_ms": self.now_ns // 1_000_000, "wall_s": 0.0,
            "hz": self.engine_knobs["hz"], "costs": self.costs.label, "ksmd_cpu_ns": ksm.ksmd_cpu_ns,
            "ksm": ksm.counters(), "knobs": dict(ksm.knobs), "processes": processes,
            "outcomes": {p: {o: ksm.outcomes.get(p, {}).get(o, 0) for o in OUTCOMES} for p in PATHS},
            "latency_ns": latency,
            "work": work_totals(ksm.work_by_path),
            "work_by_path": {p: dict(w) for p, w in ksm.work_by_path.items()},
            "data_check": {"pages_checked": checked, "mismatches": mismatches},
            **({"controller": self.control.result()} if self.control is not None else {}),
        }
        if self.maps_thp:
            out["thp"] = self.thp()
        return out
