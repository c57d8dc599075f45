"""Host mode's panels: each draws a HostView (ksmtui.host.view) through Panel's update_from, and
says what the kernel does not expose instead of showing the model's numbers."""

from __future__ import annotations

import errno
import time
from typing import Mapping

from rich.text import Text
from textual.app import ComposeResult
from textual.content import Content
from textual.css.scalar import Scalar
from textual.widgets import Static

from ksmtui.host.view import HostView, knobs_in_order
from ksmtui.text.render import progress_bar, sparkline
from ksmtui.text.report import table
from ksmtui.text.units import mib
from ksmtui.ui.widgets.panels import Panel, TextView

NOT_EXPOSED_LATENCY = ("per-call latency: not exposed by this kernel (cmp_and_merge_page() is inlined into "
                       "ksm_do_scan() and there are no kprobes); the model's Latency tab shows its cost model")
NOT_EXPOSED_TREES = ("the stable and unstable trees, stable_node chains and their dups, the rmap_items: the kernel "
                     "exposes only their counts (pages_shared, pages_unshared, stable_node_chains, "
                     "stable_node_dups, ksm_rmap_items per process). Host mode never draws the model's trees "
                     "as the host's; `ksmtui` (the model) shows them for a scenario.")


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) + "Z"


def status_line(view: HostView, width: int | None = None) -> str:
    """The header line, in `width` columns if given: on a narrow terminal the words that least need
    saying go first ("this machine", the "not merging" codes the note under it says in full), and a
    recording's name gives way last."""
    s = view.sample
    reasons = view.why_not
    # the reasons' codes: their sentences are in the note under the status line
    stops = [f"not merging: {', '.join(r['reason'] for r in reasons)}"] if reasons else []
    if view.source == "live":
        candidates = [["ksmtui host", "this machine", clock(s.time), view.state, f"#{view.samples:,}", *stops],
                      ["ksmtui host", clock(s.time), view.state, f"#{view.samples:,}", *stops],
                      ["ksmtui host", clock(s.time), view.state, f"#{view.samples:,}"]]
    else:
        tail = [clock(s.time), f"{view.state} {view.position}", view.speed]
        candidates = [["ksmtui replay", view.source, *tail, *stops], [f"replay {view.source}", *tail, *stops],
                      [f"replay {view.source}", *tail]]
    for parts in candidates:
        line = " " + " · ".join(parts)
        if width is None or len(line) <= width:
            return line
    if view.source != "live" and width is not None:  # however long the name, the position stays on the line
        room = max(4, len(view.source) - (len(line) - width) - 1)
        return " " + " · ".join([f"replay {view.source[:room]}…", *tail])
    return line


def why_not_note(view: HostView) -> str:
    """Why nothing merges, machine-wide, one sentence a reason ("" when nothing stands in the way)."""
    return "\n".join(f"why not merging: {r['text']}" for r in view.why_not)


def trace_line(view: HostView) -> str:
    s = view.sample
    recorded = "" if view.source == "live" else f"recorded on kernel {view.kernel}; "
    if s.trace is None:
        return f"{recorded}tracepoints: none ({s.trace_note}); counters, processes and knobs all the same"
    if recorded:
        return f"{recorded}the ksm tracepoints were counted"
    return "tracepoints: counted in a tracefs instance of ksmtui's own (removed on exit)"


def _seconds(s: float) -> str:
    return f"{s * 1000:,.0f} ms" if s < 1 else f"{s:,.2f} s"


def savings_lines(view: HostView) -> list[str]:
    k = view.sample.ksm
    ratio = view.sharing_ratio
    lines = [
        f"general_profit {mib(k.get('general_profit', 0))} (net of KSM's metadata)",
        "pages_sharing/pages_shared " + (f"{ratio:,.2f} ({k.get('pages_sharing', 0):,}/{k.get('pages_shared', 0):,})"
                                         if ratio is not None else "- (no KSM pages)"),
    ]
    cpu, total, per = view.ksmd_cpu, view.ksmd_cpu_s, view.profit_per_cpu_s
    if total is None:
        lines.append("ksmd: no ksmd thread found (its CPU time is unknown)")
    else:
        lately = f"{cpu * 100:.1f}% of a CPU lately" if cpu is not None else "- lately (one sample)"
        lines.append(f"ksmd CPU {lately}, {total:,.2f} s since boot")
        if per is not None:
            lines.append(f"  {per:,.1f} MiB saved per ksmd CPU-second")
    procs = [(pid, r) for pid, r in view.sample.processes.items() if "ksm_process_profit" in r]
    top = sorted(procs, key=lambda pr: (-pr[1]["ksm_process_profit"], int(pr[0])))[:3]
    known = sum(1 for r in view.sample.processes.values() if "error" not in r)
    unreadable = len(view.sample.processes) - known
    lines.append(f"processes known to KSM: {known:,}" + (f" (+{unreadable:,} unreadable)" if unreadable else "")
                 + ("; most saved:" if top else ""))
    for pid, r in top:
        lines.append(f"  {r['comm'][:16]:<16} {pid:>7} {mib(r['ksm_process_profit']):>13}")
    return lines


def scan_lines(view: HostView, width: int) -> list[str]:
    k, knobs = view.sample.ksm, view.sample.knobs
    lines = [
        f"full_scans {k.get('full_scans', 0):,} · run {knobs.get('run', '-')} · {view.scan_rate:,.0f} pages_scanned/s",
        f"pages_to_scan {knobs.get('pages_to_scan', '-')} · sleep_millisecs {knobs.get('sleep_millisecs', '-')}",
    ]
    if view.pass_pages:
        done = min(view.pass_done, view.pass_pages)
        tail = f" {done:,}/{view.pass_pages:,}"
        lines.append(f"pass {progress_bar(done, view.pass_pages, max(10, width - len('pass ') - len(tail)))}{tail}")
        eta = view.eta_s if knobs.get("run") == 1 else None
        lines.append("  pages of the last pass" + (f"; ETA {_seconds(eta)}" if eta is not None else
                                                    f"; ksmd not scanning (run {knobs.get('run')})"))
    else:
        lines.append("pass progress: - (after one whole pass is seen)")
    if view.passes:
        how = "traced" if view.passes[-1].exact else "± a sample"
        lines.append(f"last passes ({how}): " + ", ".join(_seconds(p.seconds) for p in view.passes[-4:]))
        lines.append("pages_sharing per pass: " + ", ".join(f"{p.pages_sharing:,}" for p in view.passes[-4:]))
    lines.append(view.convergence())
    if view.advisor is not None:
        scan_time, pages, cpu = view.advisor
        lines.append(f"ksm_advisor: scan_time {scan_time} s → pages_to_scan {pages:,}, cpu {cpu}%")
    elif knobs.get("advisor_mode") == "scan-time":
        lines.append("ksm_advisor: no decision seen yet" + ("" if view.sample.trace else " (needs the tracepoints)"))
    return lines


_ERRNO = {str(-n): name for n, name in errno.errorcode.items()}
# What an error of a ksm tracepoint means in mm/ksm.c, where its name alone does not say.
_ERR_MEANING = {
    "EFAULT": "try_to_merge_one_page()'s catch-all: the page could not be write-protected or replaced "
              "(it changed, was pinned or was unmapped meanwhile); it stays unmerged, ksmd tries again next pass",
}


def _err_label(key: str) -> str:
    event, _, err = key.rpartition(" ")
    name = _ERRNO.get(err, "?")
    return f"{event} error {err} ({name})"


def _err_notes(errors: Mapping[str, int]) -> list[str]:
    names = dict.fromkeys(_ERRNO.get(k.rpartition(" ")[2], "?") for k in errors)
    return [f"  {name}: {_ERR_MEANING[name]}" for name in names if name in _ERR_MEANING]


def outcome_lines(view: HostView) -> list[str]:
    s = view.sample
    if s.trace is None:
        return [f"merge outcomes need the ksm tracepoints: {s.trace_note}.",
                "The counters (pages_shared, pages_sharing, ksm_zero_pages) still show what merged.",
                "", NOT_EXPOSED_LATENCY]
    t = view.trace_totals
    m, counts = t["merges"], t["counts"]
    rows = [["since the first sample", "events", "last sample"],
            ["stable-tree merges (into a KSM page)", m.get("stable", 0), s.trace["merges"].get("stable", 0)],
            ["unstable-tree pairings (new KSM page)", m.get("unstable_pairs", 0),
             s.trace["merges"].get("unstable_pairs", 0)],
            ["zero-page merges (ksm_merge_one_page)", m.get("zero_page", 0), s.trace["merges"].get("zero_page", 0)]]
    for name in ("ksm_remove_ksm_page", "ksm_remove_rmap_item", "ksm_enter", "ksm_exit", "ksm_start_scan",
                 "ksm_stop_scan", "ksm_advisor"):
        rows.append([name, counts.get(name, 0), s.trace["counts"].get(name, 0)])
    lines = table(rows)
    errors = t["errors"]
    if view.lost:
        lines.append(f"lost: {view.lost:,} events the kernel dropped (ring buffer full): the counts are short")
    lines.append("failures: " + (", ".join(f"{_err_label(k)} ×{n:,}" for k, n in errors.items()) if errors else "none"))
    lines += _err_notes(errors)
    lines += ["", NOT_EXPOSED_LATENCY]
    return lines


def event_lines(view: HostView, height: int) -> list[str]:
    if view.sample.trace is None:
        return [f"no tracepoint events: {view.sample.trace_note}"]
    if not view.events:
        return ["no ksm tracepoint events yet"]
    return [f"{t:14.6f}  {event}: {rest}" for t, event, rest in view.events[-height:]]


class HostStatus(TextView):
    _view: HostView | None = None

    def update_from(self, view: HostView) -> None:
        self._view = view
        self.set_classes("-paused" if view.state.startswith(("paused", "finished", "held")) else "")
        self.show(status_line(view, self.size.width or None))

    def on_resize(self) -> None:
        if self._view is not None:
            self.update_from(self._view)


class HostAlerts(Static):
    """Under the status line, in the warning colour, while an alert holds (ksmtui.host.alerts):
    each with its figure; wrapped, never cut; not there at all otherwise."""

    DEFAULT_CSS = "HostAlerts { height: auto; background: $warning; color: $text; text-style: bold; padding: 0 1; }"

    _shown: tuple[str, ...] | None = None

    def on_mount(self) -> None:
        self.display = False

    def update_from(self, view: HostView) -> None:
        texts = tuple(f"⚠ {a['text']}" for a in view.alerts)
        if texts != self._shown:
            self._shown = texts
            self.display = bool(texts)
            self.update(Text("\n".join(texts)))


class HostNote(Static):
    """What the tracepoints and the recording are; wrapped, never cut, on a narrow terminal."""

    def update_from(self, view: HostView) -> None:
        self.add_class("-expanded")
        self.update(Text("\n".join(filter(None, (view.note, why_not_note(view), trace_line(view))))))


class SavingsPanel(Panel[HostView]):
    def compose(self) -> ComposeResult:
        yield TextView(id="savings-text")

    def key_of(self, view: HostView) -> object:
        return view.sample, view.ksmd_cpu

    def draw(self, view: HostView) -> None:
        self.query_one("#savings-text", TextView).show("\n".join(savings_lines(view)))


class HostScanPanel(Panel[HostView]):
    def compose(self) -> ComposeResult:
        yield TextView(id="host-scan-text")

    def key_of(self, view: HostView) -> object:
        return view.sample, view.passes

    def draw(self, view: HostView) -> None:
        text = self.query_one("#host-scan-text", TextView)
        text.show("\n".join(scan_lines(view, text.content_region.width or 60)))


class HostCountersPanel(Panel[HostView]):
    """Every counter file of /sys/kernel/mm/ksm and the two of /proc/vmstat, with sparklines."""

    def compose(self) -> ComposeResult:
        yield Static(id="host-counters-text")

    def key_of(self, view: HostView) -> object:
        return tuple(view.series.items()), view.sample_times[-1:]

    def draw(self, view: HostView) -> None:
        names = list(view.series)
        labels = [name if name in view.sample.ksm else f"{name} (vmstat)" for name in names]
        room = max(map(len, labels), default=20)  # ksm_swpin_copy (vmstat) whole, at every width
        width = max(0, self.content_region.width - room - 14 - 1)
        parts: list = []
        for name, label in zip(names, labels, strict=False):
            series = view.series[name]
            value = f"{series[-1]:,}"
            parts += [f"{label:<{room}}", (f"{value:>14} ", "bold"),
                      (f"{sparkline(series, width):>{width}}", "$accent"), "\n"]
        shown = view.sample_times[-width:] if width else ()
        span = f"sparklines: the last {_seconds(shown[-1] - shown[0])}" if len(shown) > 1 else ""
        if self.border_subtitle != span:
            self.border_subtitle = span
        widget = self.query_one("#host-counters-text", Static)
        layout = widget.styles.height != Scalar.parse(str(len(names)))  # a kernel with other files
        if layout:
            widget.styles.height = len(names)
        widget.update(Content.assemble(*parts[:-1]), layout=layout)


class HostKnobsPanel(Panel[HostView]):
    def compose(self) -> ComposeResult:
        yield TextView(id="host-knobs-text")

    def key_of(self, view: HostView) -> object:
        return tuple(view.sample.knobs.items())

    def draw(self, view: HostView) -> None:
        knobs = knobs_in_order(view.sample.knobs)
        self.query_one("#host-knobs-text", TextView).show("\n".join(f"{n:<36}{v}" for n, v in knobs))


class HostOutcomesPanel(Panel[HostView]):
    def compose(self) -> ComposeResult:
        yield TextView(id="host-outcomes-text")

    def key_of(self, view: HostView) -> object:
        return (view.sample.trace_note, tuple(tuple(v.items()) for v in view.trace_totals.values()), view.lost,
                view.sample.time)

    def draw(self, view: HostView) -> None:
        self.query_one("#host-outcomes-text", TextView).show("\n".join(outcome_lines(view)))


class HostEventsPanel(Panel[HostView]):
    ROWS = 12

    def compose(self) -> ComposeResult:
        yield TextView(id="host-events-text")

    def key_of(self, view: HostView) -> object:
        return view.events[-self.ROWS:], view.sample.trace_note

    def draw(self, view: HostView) -> None:
        self.query_one("#host-events-text", TextView).show("\n".join(event_lines(view, self.ROWS)))


class NotExposedPanel(Panel[HostView]):
    def compose(self) -> ComposeResult:
        yield TextView(id="not-exposed-text")

    def key_of(self, view: HostView) -> object:
        return True

    def draw(self, view: HostView) -> None:
        self.query_one("#not-exposed-text", TextView).show(f"{NOT_EXPOSED_TREES}\n\n{NOT_EXPOSED_LATENCY}")
