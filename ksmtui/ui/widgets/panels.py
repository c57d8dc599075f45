"""The live panels. Each draws an EngineView through one `update_from(view)` entry that returns
early when the panel is hidden (another tab) or when what it shows has not changed. The text comes
from the pure renderers in ksmtui.text.render; it is handed over as Text, never parsed as markup (hist()
labels such as `[2, 4)` would read as markup tags)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from engine.sim import RECENT_WAKEUPS
from engine.snapshot import PATHS
from ksmtui.text.render import (
    dist_lines,
    event_marks,
    hist_lines,
    latency_kind,
    latency_title,
    next_events,
    outcome_table,
    progress_bar,
    rate_label,
    sim_time,
    sparkline,
    step_line,
)
from ksmtui.text.report import bound_label, latency_stats, table, work_lines
from ksmtui.text.units import mib
from ksmtui.ui.runner import EngineView, speed_label
from ksmtui.ui.widgets.processes import ProcessRow, ProcessTable

V = TypeVar("V")  # what a panel draws: an EngineView (the model) or a HostView (host mode)
ROLLING = f"last {RECENT_WAKEUPS} wake-ups"  # the window of the rolling histograms
HIST_FIXED = 16 + 8 + 3  # label, count, " |" and "|" around the bar of a hist() row
COMPARE_COUNTERS = ("full_scans", "pages_scanned", "pages_shared", "pages_sharing", "ksm_zero_pages", "general_profit")
SPARK_COUNTERS = (
    "pages_shared",
    "pages_sharing",
    "pages_unshared",
    "pages_volatile",
    "pages_skipped",
    "ksm_zero_pages",
    "stable_node_chains",
    "stable_node_dups",
    "general_profit",
)


class TextView(Static):
    """Plain text (never markup) that redraws only when it changed, and lays the screen out again
    only when its height may have changed: layout is the costly part of a refresh."""

    _text: str | None = None

    def show(self, text: str) -> None:
        if text == self._text:
            return
        old, self._text = self._text, text
        lines = text.split("\n")
        layout = (
            old is None
            or old.count("\n") != len(lines) - 1
            or max(map(len, lines)) > self.content_region.width  # it wraps, or did
            or max(map(len, old.split("\n"))) > self.content_region.width
        )
        self.update(Text(text), layout=layout)


def shown(widget: Widget) -> bool:
    """Is the widget displayed: neither it nor an ancestor (an inactive tab pane) is display: none."""
    node: object = widget
    while isinstance(node, Widget):
        if not node.display:
            return False
        node = node.parent
    return True


def bar_width(widget: Widget, fixed: int, least: int = 8) -> int:
    """The widest hist() bar (bpftrace's 52 at most) that fits the widget next to `fixed` columns."""
    return max(least, min(52, widget.content_region.width - fixed))


class Panel(Vertical, Generic[V]):
    """A bordered panel that redraws only when shown and when its key of the view changed."""

    _key: object = None
    _view: V | None = None

    def update_from(self, view: V) -> None:
        self._view = view
        if not shown(self):
            return
        key = (self.key_of(view), self.size)
        if key == self._key:
            return
        self._key = key
        self.draw(view)

    def on_resize(self) -> None:
        if self._view is not None:
            self.update_from(self._view)

    def on_show(self) -> None:
        if self._view is not None:
            self.update_from(self._view)

    def key_of(self, view: V) -> object:
        raise NotImplementedError

    def draw(self, view: V) -> None:
        raise NotImplementedError


class StatusBar(TextView):
    """The header: scenario, simulated time, state, speed and flow, on one line; on a narrow
    terminal the words that least need saying go first."""

    _key: object = None
    _building: tuple[str, object, int] | None = None  # what is being built, of which run, at what time

    @staticmethod
    def _run_of(view: EngineView) -> object:
        return view.snapshot.scenario, view.compare, tuple(s.flow for s in view.snapshots)

    def building(self, what: str, view: EngineView | None) -> None:
        """Say at once that a new run is being built (a large one takes a while), until it shows."""
        if view is None:
            return
        self._building = (what, self._run_of(view), view.snapshot.sim_ns)
        self._key = None
        self.show(f" ksmtui · {view.snapshot.scenario} · {what}…")

    def refused(self, view: EngineView | None) -> None:
        """The engine refused the command (a bad file): the old run goes on."""
        self._building, self._key = None, None
        if view is not None:
            self.update_from(view)

    def update_from(self, view: EngineView) -> None:
        if self._building is not None:
            _, run, sim_ns = self._building
            if self._run_of(view) == run and sim_ns and view.snapshot.sim_ns >= sim_ns:
                return  # still the old run: the new one is being built
            self._building = None
        snap = view.snapshot
        # In compare mode the other tabs show one of the two runs: say which.
        flow = (" vs ".join(s.flow for s in view.snapshots) + f" (tabs show {snap.flow})") if view.compare \
            else snap.flow
        speed = speed_label(view.speed, view.achieved)
        key = (snap.scenario, snap.sim_ns, flow, view.state, speed, self.size.width, snap.costs)
        if key == self._key:
            return
        self._key = key
        self.set_classes(f"-{view.state}")
        for parts in (
            ["ksmtui", snap.scenario, f"t={sim_time(snap.sim_ns)}", view.state, f"speed {speed}", f"flow {flow}",
             f"costs: {snap.costs}"],
            ["ksmtui", snap.scenario, f"t={sim_time(snap.sim_ns)}", view.state, f"speed {speed}", f"flow {flow}"],
            [snap.scenario, f"t={sim_time(snap.sim_ns)}", view.state, f"speed {speed}", f"flow {flow}"],
            [snap.scenario, f"t={sim_time(snap.sim_ns)}", f"{view.state} {speed}", flow],
        ):
            line = " " + " · ".join(parts)
            if len(line) <= self.size.width:
                break
        else:  # however long the scenario's name, the state stays on the line: the name gives way
            room = max(8, self.size.width - len(line) + len(snap.scenario))
            line = " " + " · ".join([snap.scenario[: room - 1] + "…", *parts[1:]])
        self.show(line)

    def on_resize(self) -> None:
        app_view = getattr(self.app, "view", None)
        if app_view is not None:
            self.update_from(app_view)


class DescriptionBar(Static):
    """The scenario's description: one line under the header, cut with a hint when longer; d
    shows it all."""

    expanded = False
    _key: object = None

    def update_from(self, view: EngineView) -> None:
        text = " ".join(view.snapshot.description.split())
        key = (text, self.expanded, self.size.width)
        if key == self._key:
            return
        self._key = key
        room = self.size.width - 2  # the padding
        if self.expanded or len(text) <= room:
            shown = text + ("  (d: one line)" if self.expanded else "")
        else:
            hint = "… (d: all)"
            shown = text[: max(0, room - len(hint))].rstrip() + hint
        self.set_class(self.expanded, "-expanded")
        self.update(Text(shown, no_wrap=not self.expanded, overflow="ellipsis"), layout=self.expanded)

    def toggle(self, view: EngineView | None) -> None:
        self.expanded = not self.expanded
        if view is not None:
            self.update_from(view)

    def on_resize(self) -> None:
        app_view = getattr(self.app, "view", None)
        if app_view is not None:
            self.update_from(app_view)


# The knobs the Overview shows, as they read now, with the keys that change them (k: all of them).
OVERVIEW_KNOBS = ("pages_to_scan", "sleep_millisecs", "max_page_sharing", "use_zero_pages", "smart_scan",
                  "merge_across_nodes")
KNOB_KEYS = {"pages_to_scan": "[ ]", "use_zero_pages": "z", "smart_scan": "m", "merge_across_nodes": "n"}
START_HINT = "paused at t=0: space starts the run"


def switches_note(switches: list[tuple[int, str, str]]) -> str:
    """Where a run changed flow (f): its since-start data mix the flows."""
    return "".join(f"; flow {old} → {new} at {sim_time(ns)}" for ns, old, new in switches)


def pack(items: list[str], width: int, sep: str = " · ") -> list[str]:
    """Items on as few lines of `width` as they fit, in order, never one cut in two."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + len(sep) + len(item) <= width:
            lines[-1] += sep + item
        else:
            lines.append(item)
    return lines


def time_span(ns: int) -> str:
    """A simulated span in its natural unit: 850 ms, 12.5 s, 3.2 min."""
    if ns < 1_000_000_000:
        return f"{ns / 1e6:,.0f} ms"
    if ns < 120_000_000_000:
        return f"{ns / 1e9:,.1f} s"
    return f"{ns / 60e9:,.1f} min"


class ScanPanel(Panel[EngineView]):
    """Where ksmd is: full scans, the ksm_scan cursor, the current pass and the scan rate."""

    events: tuple = ()  # the scenario's (engine/scenario.py Event), set by the app

    def compose(self) -> ComposeResult:
        yield TextView(id="scan-text")
        yield TextView(id="scan-bar")
        yield TextView(id="scan-step")
        yield TextView(id="scan-note")

    def key_of(self, view: EngineView) -> object:
        s = view.snapshot
        return (s.cursor, s.counters["full_scans"], s.counters["pages_scanned"], tuple(s.knobs.items()),
                view.trend.scan_rate, s.last_step,
                view.note, view.paused, s.sim_ns == 0, s.events_done, s.events_pending, view.controller)

    def draw(self, view: EngineView) -> None:
        s = view.snapshot
        c = s.cursor
        if c.process is None:
            where = "ksm_mm_head (between full scans)"
        else:  # the address ksmd looks at next: between two regions it is in neither
            where = f"{c.process}:{c.address:#x}" + (f" ({c.region})" if c.region else "")
        lines = [
            f"full_scans {s.counters['full_scans']:,} · seqnr {c.seqnr:,}"
            f" · scanning {rate_label(view.trend.scan_rate, 'pages')}",
            f"cursor {where}",
            *pack([f"{k} {s.knobs[k]}" + (f" ({KNOB_KEYS[k]})" if k in KNOB_KEYS else "") for k in OVERVIEW_KNOBS],
                   self.content_region.width),
        ]
        if s.events_done or s.events_pending:
            coming = next_events(self.events, s.sim_ns, s.counters["full_scans"])
            # One event a line, in time order: a line of two would be cut on a narrow panel.
            lines.append(f"events: {s.events_done:,} done" + (", next:" if coming else ""))
            lines += [f"  {e}" for e in coming]
        if view.controller is not None:  # its decisions beside the scenario's events
            ctl = view.controller
            lines.append(f"knobs driven by {ctl.name}: {ctl.ticks:,} ticks, {ctl.writes:,} writes"
                         + (", last:" if ctl.decisions else ""))
            lines += [f"  {sim_time(int(at * 1e6))} {text}" for at, text in ctl.decisions]
        self.query_one("#scan-text", TextView).show("\n".join(lines))
        count = f" {c.pass_done:,}/{c.pass_total:,}"
        width = max(10, self.content_region.width - len("pass ") - len(count))
        self.query_one("#scan-bar", TextView).show(f"pass {progress_bar(c.pass_done, c.pass_total, width)}{count}")
        self.query_one("#scan-step", TextView).show(step_line(s.last_step, s.counters["pages_scanned"],
                                                              latency_kind(s.knobs)))
        note = view.note or (START_HINT if view.paused and s.sim_ns == 0 else "")
        widget = self.query_one("#scan-note", TextView)
        widget.display = bool(note)
        widget.show(note)


class CountersPanel(Panel[EngineView]):
    """The sysfs counters, each with its recent history as a sparkline (newest on the right), and
    the scenario's one-off events marked under them where they fired.

    One widget draws all rows: these change on every update, and each widget drawn costs time the
    engine thread would otherwise have."""

    def compose(self) -> ComposeResult:
        yield Static(id="counters-text")

    events: tuple = ()  # the scenario's, set by the app
    _lines = 0

    def key_of(self, view: EngineView) -> object:
        return (tuple(view.trend.counters[c] for c in SPARK_COUNTERS), view.snapshot.cursor.pass_total,
                view.trend.sim_ns[-1:], tuple(view.snapshot.thp.values()))

    def draw(self, view: EngineView) -> None:
        s = view.snapshot
        width = max(0, self.content_region.width - 20 - 14 - 1)
        profit = s.counters["general_profit"]
        mergeable = s.cursor.pass_total * s.page_size
        share = f" of {mib(mergeable)} mergeable ({profit * 100 / mergeable:.0f}%, net)" if mergeable > 0 else " (net)"
        parts: list = [("KSM saves ", "bold"), (mib(profit), "bold $success"), f"{share}\n"]
        for name in SPARK_COUNTERS:
            series = view.trend.counters[name]
            value = f"{series[-1]:,}" if series else "0"
            extra = f" {mib(series[-1])}" if name == "general_profit" and series else ""
            spark = max(0, width - len(extra))
            parts += [f"{name:<20}", (f"{value:>14}", "bold"), (extra, "$text-muted"), " ",
                      (f"{sparkline(series, spark):>{spark}}", "$accent"), "\n"]
        if s.thp:
            # a cost of merging on THP-backed memory (docs/thp.md): each split is a huge page less
            left = f" {s.thp['anon_huge_pages']:,} THPs left (modelled)"
            parts += [f"{'thp_split_page':<20}", (f"{s.thp['thp_split_page']:>14,}", "bold"),
                      (left, "$text-muted"), "\n"]
        times = view.trend.sim_ns[-width:] if width else ()
        if any(ev.at_full_scans is not None or not ev.repeat_ms for ev in self.events):
            # A row of its own whenever the scenario has one-off events: the panel keeps its height.
            marks = event_marks(self.events, times, view.trend.counters["full_scans"][-width:])
            parts += [f"{'one-off events':<35}", (f"{marks:>{width}}", "$warning"), "\n"]
        span = f"sparklines: the last {time_span(times[-1] - times[0])} simulated" if len(times) > 1 else ""
        if self.border_subtitle != span:
            self.border_subtitle = span
        text = self.query_one("#counters-text", Static)
        lines = sum(1 for p in parts if p == "\n")
        text.update(Content.assemble(*parts[:-1]), layout=lines != self._lines)
        self._lines = lines


class OutcomesPanel(Panel[EngineView]):
    """cmp_and_merge_page() outcomes by path, totals and calls per simulated second."""

    def compose(self) -> ComposeResult:
        yield TextView(id="outcomes-text")

    switches = ""  # flow changes of this run (f), which its since-start counts mix

    def key_of(self, view: EngineView) -> object:
        return (tuple(tuple(view.snapshot.outcomes[p].items()) for p in PATHS), tuple(view.trend.path_rates.items()),
                self.switches)

    def draw(self, view: EngineView) -> None:
        self.border_subtitle = f"since start{self.switches}" if self.switches else ""
        rows = outcome_table(view.snapshot.outcomes, view.trend.path_rates, PATHS)
        self.query_one("#outcomes-text", TextView).show("\n".join(rows))


class LatencySummary(Panel[EngineView]):
    """One line per path: calls and percentiles of the rolling histogram."""

    def compose(self) -> ComposeResult:
        yield TextView(id="latency-summary-text")

    def key_of(self, view: EngineView) -> object:
        return tuple(view.snapshot.latency_recent[p] for p in PATHS), view.snapshot.knobs.get("latency")

    def draw(self, view: EngineView) -> None:
        self.border_title = f"{latency_kind(view.snapshot.knobs)} latency, {ROLLING} (rolling)"
        lines = [latency_title(p, view.snapshot.latency_recent[p], ROLLING) for p in PATHS]
        self.query_one("#latency-summary-text", TextView).show("\n".join(lines))


def _titles(titles: list[str], width: int) -> list[str]:
    """Latency titles side by side: when one is too wide all break before the percentiles, so
    that the histograms under them start on the same row."""
    if all(len(t) <= width for t in titles):
        return titles
    return [t.replace("  p50", "\np50", 1) if "  p50" in t else t.replace("  no calls", "\nno calls", 1)
            for t in titles]


class LatencyPanel(Panel[EngineView]):
    """Log2 histograms of cmp_and_merge_page() latency per path, drawn as bpftrace's hist()."""

    since_start = False  # False: the rolling histogram (the last few wake-ups)
    switches = ""  # flow changes of this run (f), which its since-start histograms mix

    def compose(self) -> ComposeResult:
        for path in PATHS:
            yield TextView(id=f"hist-{path}", classes="hist")

    def counts(self, view: EngineView) -> Mapping[str, tuple[int, ...]]:
        s = view.snapshot
        return s.latency if self.since_start else s.latency_recent

    def key_of(self, view: EngineView) -> object:
        return (self.since_start, tuple(self.counts(view)[p] for p in PATHS), self.switches)

    def draw(self, view: EngineView) -> None:
        # The latencies are the cost model's (engine/cost.py), never the kernel's: the title says so.
        kind = latency_kind(view.snapshot.knobs)
        title = (f"{kind} latency since start{self.switches}" if self.since_start
                 else f"{kind} latency, {ROLLING} (rolling)")
        if self.border_title != title:
            self.border_title = title
        window = "since start" if self.since_start else ROLLING
        hists = [self.query_one(f"#hist-{path}", TextView) for path in PATHS]
        titles = _titles([latency_title(p, self.counts(view)[p], window) for p in PATHS],
                         min(h.content_region.width for h in hists))
        for path, hist, title in zip(PATHS, hists, titles, strict=False):
            # Rows of the buckets seen since the start: the panel keeps its height as the window rolls.
            span = view.snapshot.latency[path]
            hist.show("\n".join([title, *hist_lines(self.counts(view)[path], bar_width(hist, HIST_FIXED), span)]))


class ChainsPanel(Panel[EngineView]):
    """How full the KSM pages are: sharers per page against max_page_sharing, dups per chain."""

    def compose(self) -> ComposeResult:
        yield TextView(id="chains-sharers")
        yield TextView(id="chains-dups")

    def key_of(self, view: EngineView) -> object:
        s = view.snapshot
        return (tuple(s.sharers_per_page.items()), tuple(s.dups_per_chain.items()), s.knobs["max_page_sharing"])

    def draw(self, view: EngineView) -> None:
        s = view.snapshot
        mps = int(s.knobs["max_page_sharing"])
        width = bar_width(self, 16 + 8 + 3 + len(" ◀ max_page_sharing"))
        sharers = dist_lines(s.sharers_per_page, width, 12, mark=mps) or ["no KSM pages yet"]
        if any(n > mps for n in s.sharers_per_page):
            # fork() copies the parent's mappings of its KSM pages: ksmd never decides on those.
            sharers.append(f"above {mps}: a fork's child maps its parent's KSM pages without ksmd,"
                           " so a page can pass max_page_sharing")
        dups = dist_lines(s.dups_per_chain, width, 8) or ["no stable_node chains"]
        self.query_one("#chains-sharers", TextView).show(
            "\n".join([f"sharers per KSM page (max_page_sharing {mps})", *sharers])
        )
        chains = s.counters["stable_node_chains"]
        self.query_one("#chains-dups", TextView).show(
            "\n".join([f"dups per stable_node chain ({chains:,} chain{'s' * (chains != 1)})", *dups])
        )


def side_label(side: str, flow: str) -> str:
    return f"{side} ({flow})"


def latency_change_lines(before, after) -> list[str]:
    """Per path that saw calls: calls, percentiles and mean under each flow, and the mean's change."""
    rows: list[list[object]] = [["path", "", "calls", "p50", "p90", "p99", "mean", "change"]]
    for path in PATHS:
        b, a = latency_stats(before.latency[path]), latency_stats(after.latency[path])
        if not (b.calls or a.calls):
            continue
        change = f"{(a.mean - b.mean) * 100 / b.mean:+,.0f}%" if b.calls and a.calls else "-"
        for side, st in (("Before", b), ("After", a)):
            rows.append([path if side == "Before" else "", side, st.calls, bound_label(st.p50), bound_label(st.p90),
                         bound_label(st.p99), f"~{st.mean:,.0f}" if st.calls else "-",
                         change if side == "After" else ""])
    return table(rows, left=2)


class ComparePanel(Panel[EngineView]):
    """Compare mode: the same workload under two flows, their counters, latency and work per path,
    and the histograms side by side."""

    def compose(self) -> ComposeResult:
        yield TextView(id="compare-counters")
        for path in PATHS:
            with Horizontal(classes="compare-row"):
                for side in ("before", "after"):
                    yield TextView(id=f"cmp-{side}-{path}", classes="hist compare-hist")

    def key_of(self, view: EngineView) -> object:
        return (view.compare, tuple((s.flow, s.latency, tuple(s.counters.items())) for s in view.snapshots))

    def draw(self, view: EngineView) -> None:
        if not view.compare:
            self.border_title = "compare"
            self.query_one("#compare-counters", TextView).show(
                "compare mode is off: c runs the workload under two flows side by side (f picks the pair)")
            for path in PATHS:
                for side in ("before", "after"):
                    self.query_one(f"#cmp-{side}-{path}", TextView).show("")
            return
        before, after = view.snapshots
        labels = side_label("Before", before.flow), side_label("After", after.flow)
        self.border_title = f"compare: {labels[0]} vs {labels[1]}, same workload"
        rows = table([["", *labels], *([name, before.counters[name], after.counters[name]]
                                       for name in COMPARE_COUNTERS)])
        rows += ["", f"{latency_kind(before.knobs)} latency of cmp_and_merge_page() (ns, whole run; change: of the "
                     "mean):",
                 *latency_change_lines(before, after)]
        rows += ["", "work done, by the path of the call (saved = Before - After):",
                 *work_lines(before, after, {p: p for p in PATHS})]
        self.query_one("#compare-counters", TextView).show("\n".join(rows))
        # Like the cover letter: the whole run, Before beside After.
        for side, label, snap in zip(("before", "after"), labels, view.snapshots, strict=False):
            for path in PATHS:
                counts = snap.latency[path]
                hist = self.query_one(f"#cmp-{side}-{path}", TextView)
                hist.show(
                    "\n".join([label, latency_title(path, counts), *hist_lines(counts, bar_width(hist, HIST_FIXED, 4))])
                )


class ProcessesPanel(Panel[EngineView]):
    """Each live process's ksm_stat, as /proc/PID/ksm_stat would show it, in a top-like table."""

    def compose(self) -> ComposeResult:
        yield TextView(id="processes-legend")
        yield ProcessTable(id="processes-table")

    def key_of(self, view: EngineView) -> object:
        return view.snapshot.processes

    def draw(self, view: EngineView) -> None:
        table = self.query_one(ProcessTable)
        live = [p for p in view.snapshot.processes if p.alive]
        table.show_rows(ProcessRow.of(p) for p in live)
        mergeable = sum(p.ksm_mergeable for p in live)
        self.query_one("#processes-legend", TextView).show(
            f"{len(live)} processes ({mergeable} mergeable) · < > pick the sort column, R reverses it\n"
            f"! above {table.ratio_limit} rmap_items per merging page: they cost more than merging saves"
        )
