"""The live panels. Each draws an EngineView through one `update_from(view)` entry that returns
early when the panel is hidden (another tab) or when what it shows has not changed. The text comes
from the pure renderers in ksmtui.render; it is handed over as Text, never parsed as markup (hist()
labels such as `[2, 4)` would read as markup tags)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from engine.snapshot import PATHS
from ksmtui.render import (
    dist_lines,
    hist_lines,
    latency_title,
    outcome_table,
    progress_bar,
    rate_label,
    sim_time,
    sparkline,
    step_line,
)
from ksmtui.report import table, work_lines
from ksmtui.ui.runner import COMPARE_FLOWS, EngineView, speed_label
from ksmtui.ui.widgets.processes import ProcessRow, ProcessTable

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
    node: Widget | None = widget
    while isinstance(node, Widget):
        if not node.display:
            return False
        node = node.parent
    return True


def bar_width(widget: Widget, fixed: int, least: int = 8) -> int:
    """The widest hist() bar (bpftrace's 52 at most) that fits the widget next to `fixed` columns."""
    return max(least, min(52, widget.content_region.width - fixed))


class Panel(Vertical):
    """A bordered panel that redraws only when shown and when its key of the view changed."""

    _key: object = None
    _view: EngineView | None = None

    def update_from(self, view: EngineView) -> None:
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

    def key_of(self, view: EngineView) -> object:
        raise NotImplementedError

    def draw(self, view: EngineView) -> None:
        raise NotImplementedError


class StatusBar(TextView):
    """The header: scenario, simulated time, flow, state and speed, on one line."""

    _key: object = None

    def update_from(self, view: EngineView) -> None:
        snap = view.snapshot
        flow = " vs ".join(COMPARE_FLOWS) if view.compare else snap.flow
        key = (snap.scenario, snap.sim_ns, flow, view.state, view.speed)
        if key == self._key:
            return
        self._key = key
        self.set_classes(f"-{view.state}")
        self.show(
            f" ksmtui · {snap.scenario} · t={sim_time(snap.sim_ns)} · flow {flow}"
            f" · {view.state} · speed {speed_label(view.speed)}"
        )


class DescriptionBar(Static):
    """The scenario's description, on one line under the header (cut with … when longer)."""

    _key: object = None

    def update_from(self, view: EngineView) -> None:
        text = " ".join(view.snapshot.description.split())
        if text != self._key:
            self._key = text
            self.update(Text(text, no_wrap=True, overflow="ellipsis"), layout=False)


class ScanPanel(Panel):
    """Where ksmd is: full scans, the ksm_scan cursor, the current pass and the scan rate."""

    def compose(self) -> ComposeResult:
        yield TextView(id="scan-text")
        yield TextView(id="scan-bar")
        yield TextView(id="scan-step")
        yield TextView(id="scan-note")

    def key_of(self, view: EngineView) -> object:
        s = view.snapshot
        return (s.cursor, s.counters["full_scans"], s.knobs["pages_to_scan"], s.knobs["sleep_millisecs"],
                view.trend.scan_rate, s.last_step, view.note, s.events_done, s.events_pending)

    def draw(self, view: EngineView) -> None:
        s = view.snapshot
        c = s.cursor
        if c.process is None:
            where = "ksm_mm_head (between full scans)"
        else:  # the address ksmd looks at next: between two regions it is in neither
            where = f"{c.process}:{c.address:#x}" + (f" ({c.region})" if c.region else "")
        lines = [
            f"full_scans {s.counters['full_scans']}   seqnr {c.seqnr}"
            f"   scanning {rate_label(view.trend.scan_rate)} (simulated)",
            f"cursor {where}",
            f"pages_to_scan {s.knobs['pages_to_scan']}   sleep_millisecs {s.knobs['sleep_millisecs']}",
        ]
        if s.events_done or s.events_pending:
            lines.append(f"scenario events: {s.events_done} done, {s.events_pending} pending")
        self.query_one("#scan-text", TextView).show("\n".join(lines))
        count = f" {c.pass_done}/{c.pass_total}"
        width = max(10, self.content_region.width - len("pass ") - len(count))
        self.query_one("#scan-bar", TextView).show(f"pass {progress_bar(c.pass_done, c.pass_total, width)}{count}")
        self.query_one("#scan-step", TextView).show(step_line(s.last_step))
        note = self.query_one("#scan-note", TextView)
        note.display = bool(view.note)
        note.show(view.note)


class CountersPanel(Panel):
    """The sysfs counters, each with its recent history as a sparkline (newest on the right).

    One widget draws all rows: these change on every update, and each widget drawn costs time the
    engine thread would otherwise have."""

    def compose(self) -> ComposeResult:
        yield Static(id="counters-text")

    def key_of(self, view: EngineView) -> object:
        return tuple(view.trend.counters[c] for c in SPARK_COUNTERS)

    def draw(self, view: EngineView) -> None:
        width = max(0, self.content_region.width - 20 - 14 - 1)
        parts: list = []
        for name in SPARK_COUNTERS:
            series = view.trend.counters[name]
            value = f"{series[-1]:,}" if series else "0"
            parts += [f"{name:<20}", (f"{value:>14} ", "bold"), (f"{sparkline(series, width):>{width}}", "$accent"), "\n"]
        self.query_one("#counters-text", Static).update(Content.assemble(*parts[:-1]), layout=False)


class OutcomesPanel(Panel):
    """cmp_and_merge_page() outcomes by path, totals and calls per simulated second."""

    def compose(self) -> ComposeResult:
        yield TextView(id="outcomes-text")

    def key_of(self, view: EngineView) -> object:
        return (tuple(tuple(view.snapshot.outcomes[p].items()) for p in PATHS), tuple(view.trend.path_rates.items()))

    def draw(self, view: EngineView) -> None:
        rows = outcome_table(view.snapshot.outcomes, view.trend.path_rates, PATHS)
        self.query_one("#outcomes-text", TextView).show("\n".join(rows))


class LatencySummary(Panel):
    """One line per path: calls and percentiles of the rolling histogram."""

    def compose(self) -> ComposeResult:
        yield TextView(id="latency-summary-text")

    def key_of(self, view: EngineView) -> object:
        return tuple(view.snapshot.latency_recent[p] for p in PATHS)

    def draw(self, view: EngineView) -> None:
        lines = [latency_title(p, view.snapshot.latency_recent[p]) for p in PATHS]
        self.query_one("#latency-summary-text", TextView).show("\n".join(lines))


def _hist_text(path: str, counts, width: int, span) -> str:
    return "\n".join([latency_title(path, counts), *hist_lines(counts, width, span)])


class LatencyPanel(Panel):
    """Log2 histograms of cmp_and_merge_page() latency per path, drawn as bpftrace's hist()."""

    since_start = False  # False: the rolling histogram (the last few wake-ups)

    def compose(self) -> ComposeResult:
        for path in PATHS:
            yield TextView(id=f"hist-{path}", classes="hist")

    def counts(self, view: EngineView) -> dict:
        s = view.snapshot
        return s.latency if self.since_start else s.latency_recent

    def key_of(self, view: EngineView) -> object:
        return (self.since_start, tuple(self.counts(view)[p] for p in PATHS))

    def draw(self, view: EngineView) -> None:
        title = "latency since start" if self.since_start else "latency, last wake-ups (rolling)"
        if self.border_title != title:
            self.border_title = title
        for path in PATHS:
            hist = self.query_one(f"#hist-{path}", TextView)
            # Rows of the buckets seen since the start: the panel keeps its height as the window rolls.
            span = view.snapshot.latency[path]
            hist.show(_hist_text(path, self.counts(view)[path], bar_width(hist, HIST_FIXED), span))


class ChainsPanel(Panel):
    """How full the KSM pages are: sharers per page against max_page_sharing, dups per chain."""

    def compose(self) -> ComposeResult:
        yield TextView(id="chains-sharers")
        yield TextView(id="chains-dups")

    def key_of(self, view: EngineView) -> object:
        s = view.snapshot
        return (tuple(s.sharers_per_page.items()), tuple(s.dups_per_chain.items()), s.knobs["max_page_sharing"])

    def draw(self, view: EngineView) -> None:
        s = view.snapshot
        mps = s.knobs["max_page_sharing"]
        width = bar_width(self, 16 + 8 + 3 + len(" ◀ max_page_sharing"))
        sharers = dist_lines(s.sharers_per_page, width, 12, mark=mps) or ["no KSM pages yet"]
        dups = dist_lines(s.dups_per_chain, width, 8) or ["no stable_node chains"]
        self.query_one("#chains-sharers", TextView).show(
            "\n".join([f"sharers per KSM page (max_page_sharing {mps})", *sharers])
        )
        self.query_one("#chains-dups", TextView).show(
            "\n".join([f"dups per stable_node chain ({s.counters['stable_node_chains']} chains)", *dups])
        )


class ComparePanel(Panel):
    """Compare mode: the same workload under both flows, histograms per path side by side."""

    def compose(self) -> ComposeResult:
        yield TextView(id="compare-counters")
        for path in PATHS:
            with Horizontal(classes="compare-row"):
                for flow in COMPARE_FLOWS:
                    yield TextView(id=f"cmp-{flow}-{path}", classes="hist compare-hist")

    def key_of(self, view: EngineView) -> object:
        return (view.compare, tuple((s.latency, tuple(s.counters.items())) for s in view.snapshots))

    def draw(self, view: EngineView) -> None:
        if not view.compare:
            self.query_one("#compare-counters", TextView).show("compare mode is off: press c to start it")
            for path in PATHS:
                for flow in COMPARE_FLOWS:
                    self.query_one(f"#cmp-{flow}-{path}", TextView).show("")
            return
        before, after = view.snapshots
        rows = table([["", "Before (legacy)", "After (optimized)"],
                      *([name, before.counters[name], after.counters[name]] for name in COMPARE_COUNTERS)])
        rows += ["", "work done, by the path of the call (saved = Before - After):", *work_lines(before, after)]
        self.query_one("#compare-counters", TextView).show("\n".join(rows))
        # Like the cover letter: the whole run, Before beside After.
        for flow, snap in zip(COMPARE_FLOWS, view.snapshots):
            label = "Before (legacy)" if flow == "legacy" else "After (optimized)"
            for path in PATHS:
                counts = snap.latency[path]
                hist = self.query_one(f"#cmp-{flow}-{path}", TextView)
                hist.show(
                    "\n".join([label, latency_title(path, counts), *hist_lines(counts, bar_width(hist, HIST_FIXED, 4))])
                )


class ProcessesPanel(Panel):
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
