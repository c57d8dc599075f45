"""`ksmtui host` as a Prometheus exporter: the metrics of HostSamples, served over HTTP and written
as a textfile for node_exporter's textfile collector (both with prometheus_client).

What node_exporter's ksmd collector (collector/ksmd_linux.go) reports keeps its name, type, unit
and meaning (node_ksmd_*, sleep_millisecs as node_ksmd_sleep_seconds, full_scans as the counter
node_ksmd_full_scans_total), so that queries made for it work on ours; everything else is
ksmtui_*. Every value is the kernel's, from the newest sample: nothing is modelled, and what this
kernel (or this user: the tracepoints need root) does not expose is left out, not reported as 0.

Counters of tracepoint events count from when this exporter started (a restart resets them, which
rate() expects); the kernel's own counters (full_scans, pages_scanned, ksmd's CPU, cow_ksm) count
from boot.

Per-process numbers are summed by group and only the TOP groups by profit are series of their own;
the rest add up to one group "other", so that a host with thousands of processes stays a few
dozen series. A group is a process (`by_process`), or one of the operator's units of
ksmtui.host.units (`by_unit`: vm, container, systemd unit, cgroup, comm), named as the UI and
`--json --group-by` name them; any other `Grouping` function fits the same seam.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily

from engine.capture import atomic_write
from ksmtui.host.sampler import HostSample

TOP = 20  # groups with series of their own; the rest are "other"

# node_exporter's ksmd collector: sysfs file -> (name, type, HELP, divisor). Its HELP texts are
# ksm.rst's (upstream since 2025; Debian's 1.5 says "ksmd 'FILE' file."); the values are the same to
# the bit (sleep_millisecs / 1000 as it divides, not * 0.001).
NODE_KSMD = {
    "full_scans": ("node_ksmd_full_scans_total", "counter", "How many times all mergeable areas have been scanned.", 1),
    "general_profit": ("node_ksmd_general_profit_bytes", "gauge", "How effective is KSM. ksm_saved_pages * "
                       "sizeof(page) - (all_rmap_items) * sizeof(rmap_item)", 1),
    "merge_across_nodes": ("node_ksmd_merge_across_nodes", "gauge",
                           "Specifies if pages from different NUMA nodes can be merged.", 1),
    "pages_shared": ("node_ksmd_pages_shared", "gauge", "How many shared pages are being used.", 1),
    "pages_sharing": ("node_ksmd_pages_sharing", "gauge",
                      "How many more sites are sharing them i.e. how much saved.", 1),
    "pages_to_scan": ("node_ksmd_pages_to_scan", "gauge", "How many pages to scan before ksmd goes to sleep.", 1),
    "pages_unshared": ("node_ksmd_pages_unshared", "gauge",
                       "How many pages unique but repeatedly checked for merging.", 1),
    "pages_volatile": ("node_ksmd_pages_volatile", "gauge",
                       "How many pages changing too fast to be placed in a tree.", 1),
    "run": ("node_ksmd_run", "gauge", "The status of ksmd. stopped = 0, running = 1", 1),
    "sleep_millisecs": ("node_ksmd_sleep_seconds", "gauge",
                        "How many seconds ksmd should sleep before next scan.", 1000),
}
# The files of /sys/kernel/mm/ksm node_exporter does not read (ksm.rst's words)
KSM_FILES = {
    "ksm_zero_pages": ("ksmtui_ksm_zero_pages", "gauge",
                       "How many empty pages are merged with the kernel zero page (use_zero_pages)."),
    "stable_node_chains": ("ksmtui_ksm_stable_node_chains", "gauge",
                           "The number of KSM pages that hit the max_page_sharing limit."),
    "stable_node_dups": ("ksmtui_ksm_stable_node_dups", "gauge", "The number of duplicated KSM pages."),
    "pages_scanned": ("ksmtui_ksm_pages_scanned_total", "counter", "How many pages ksmd has scanned."),
    "pages_skipped": ("ksmtui_ksm_pages_skipped_total", "counter", "How many pages ksmd skipped (smart_scan)."),
}
VMSTAT = {
    "cow_ksm": ("ksmtui_cow_ksm_total", "Copy-on-write faults that copied a KSM page (/proc/vmstat cow_ksm)."),
    "ksm_swpin_copy": ("ksmtui_ksm_swpin_copy_total",
                       "KSM pages copied when swapped in (/proc/vmstat ksm_swpin_copy)."),
}
# ksm_stat field -> (name suffix, HELP); summed over a group's processes
GROUP_FIELDS = {
    "ksm_rmap_items": ("rmap_items", "rmap_items the group's processes have (ksm_stat ksm_rmap_items)."),
    "ksm_merging_pages": ("merging_pages",
                          "Pages of the group's processes that KSM merged (ksm_stat ksm_merging_pages)."),
    "ksm_zero_pages": ("zero_pages",
                       "Pages of the group's processes merged with the zero page (ksm_stat ksm_zero_pages)."),
    "ksm_process_profit": ("profit_bytes", "What KSM saves the group's processes, net of their rmap_items "
                                           "(ksm_stat ksm_process_profit)."),
}
# HostTrace.take()'s merges -> the path label
MERGE_PATHS = {"stable": "stable_tree", "unstable_pairs": "unstable_tree", "zero_page": "zero_page"}

Grouping = Callable[[str, Mapping[str, Any]], tuple[str, str]]  # (pid, ksm_stat row) -> (kind, group)


def by_process(pid: str, row: Mapping[str, Any]) -> tuple[str, str]:
    return "process", f"{row.get('comm', '?')} ({pid})"


def by_unit(by: str) -> Grouping:
    """Processes grouped by one of ksmtui.host.units.GROUPINGS, from the unit the sampler put in
    each row; a process without that identity falls in "(no vm)", "(no container)", ... ."""
    from ksmtui.host.units import GROUPINGS, Unit, group_key

    if by not in GROUPINGS:
        raise ValueError(f"expected one of {', '.join(GROUPINGS)}, got {by!r}")

    def grouping(pid: str, row: Mapping[str, Any]) -> tuple[str, str]:
        return by, group_key(Unit.from_json(int(pid), row.get("comm"), row.get("unit")), by)

    return grouping


class TraceTotals:
    """What the tracepoints said, added up over every sample since the exporter started."""

    def __init__(self) -> None:
        self.events: dict[str, int] = {}
        self.merges = dict.fromkeys(MERGE_PATHS.values(), 0)
        self.failures: dict[tuple[str, str], int] = {}
        self.lost = 0
        self.passes = 0
        self.pass_seconds = 0.0
        self.last_pass: tuple[float, int] | None = None  # seconds, rmap_items at its end
        self.decisions = 0
        self.last_decision: tuple[int, int, int] | None = None  # scan_time s, pages_to_scan, cpu_percent

    def add(self, trace: Mapping[str, Any] | None) -> None:
        if trace is None:
            return
        for event, n in trace.get("counts", {}).items():
            self.events[event] = self.events.get(event, 0) + n
        for key, n in trace.get("merges", {}).items():
            if key in MERGE_PATHS:
                self.merges[MERGE_PATHS[key]] += n
        for key, n in trace.get("errors", {}).items():  # "ksm_merge_one_page -14"
            event, _, err = key.rpartition(" ")
            name = errno.errorcode.get(abs(int(err)), err) if err.lstrip("-").isdigit() else err
            self.failures[event, name] = self.failures.get((event, name), 0) + n
        self.lost += trace.get("lost", 0)
        for _seq, seconds, rmap_items in trace.get("passes", []):
            self.passes += 1
            self.pass_seconds += seconds
            self.last_pass = (seconds, rmap_items)
        for decision in trace.get("advisor", []):
            self.decisions += 1
            scan_time, pages, cpu_percent = decision
            self.last_decision = (scan_time, pages, cpu_percent)


def _one(kind: str, name: str, help: str, value: float, unit: str = "") -> Metric:
    if kind == "counter":
        return CounterMetricFamily(name, help, value=value, unit=unit)
    return GaugeMetricFamily(name, help, value=value, unit=unit)


def _unit(name: str) -> str:
    base = name.removesuffix("_total")
    return next((u for u in ("bytes", "seconds", "ratio") if base.endswith("_" + u)), "")


def families(sample: HostSample, totals: TraceTotals | None = None, top: int = TOP,
             grouping: Grouping = by_process) -> list[Metric]:
    """The metrics of one sample (and, if the sample was traced, of the tracepoints up to it)."""
    out: list[Metric] = []
    for file, (name, kind, help, divisor) in NODE_KSMD.items():
        value = sample.ksm.get(file, sample.knobs.get(file))
        if isinstance(value, int):
            out.append(_one(kind, name, help, value / divisor, _unit(name)))
    for file, (name, kind, help) in KSM_FILES.items():
        if file in sample.ksm:
            out.append(_one(kind, name, help, sample.ksm[file]))
    for field, (name, help) in VMSTAT.items():
        if field in sample.vmstat:
            out.append(CounterMetricFamily(name, help, value=sample.vmstat[field]))
    if "cpu_ns" in sample.ksmd:
        out.append(CounterMetricFamily("ksmtui_ksmd_cpu_seconds_total", "Time ksmd has spent on a CPU since boot "
                                       "(/proc/PID/schedstat).", value=sample.ksmd["cpu_ns"] / 1e9, unit="seconds"))
    out += _groups(sample.processes, top, grouping)
    out.append(GaugeMetricFamily("ksmtui_sample_timestamp_seconds", "When the sample these values come from was "
                                 "taken (seconds since the epoch).", value=sample.time, unit="seconds"))
    if sample.trace is not None and totals is not None:
        out += _traced(totals)
    return out


def _groups(processes: Mapping[str, Mapping[str, Any]], top: int, grouping: Grouping) -> list[Metric]:
    sums: dict[tuple[str, str], dict[str, int]] = {}
    unreadable = 0
    fields: set[str] = set()
    for pid, row in processes.items():
        if "error" in row:
            unreadable += 1
            continue
        sums_of_group = sums.setdefault(grouping(pid, row), {"processes": 0})
        sums_of_group["processes"] += 1
        for field in GROUP_FIELDS:
            if field in row:
                fields.add(field)
                sums_of_group[field] = sums_of_group.get(field, 0) + row[field]
    rank = "ksm_process_profit" if "ksm_process_profit" in fields else "ksm_merging_pages"
    ranked = sorted(sums.items(), key=lambda kv: (-kv[1].get(rank, 0), kv[0]))
    other: dict[str, int] = {"processes": 0}
    for _, sums_of in ranked[top:]:
        for key, value in sums_of.items():
            other[key] = other.get(key, 0) + value
    rows = [*ranked[:top], (("other", "other"), other)]
    labels = ["kind", "group"]
    out: list[Metric] = []
    count = GaugeMetricFamily("ksmtui_group_processes", "Processes KSM knows in the group (the top groups by "
                              "profit, the rest as group \"other\").", labels=labels)
    for (kind, label), sums_of in rows:
        count.add_metric([kind, label], sums_of["processes"])
    out.append(count)
    for field, (suffix, help) in GROUP_FIELDS.items():
        if field not in fields:
            continue
        name = f"ksmtui_group_{suffix}"
        family = GaugeMetricFamily(name, help, labels=labels, unit=_unit(name))
        for (kind, label), sums_of in rows:
            family.add_metric([kind, label], sums_of.get(field, 0))
        out.append(family)
    out.append(GaugeMetricFamily("ksmtui_processes_unreadable", "Processes whose ksm_stat could not be read (other "
                                 "users' processes, without root): not in the groups.", value=unreadable))
    return out


def _traced(t: TraceTotals) -> list[Metric]:
    events = CounterMetricFamily("ksmtui_trace_events_total", "ksm tracepoint events seen, by event.", labels=["event"])
    for event, n in sorted(t.events.items()):
        events.add_metric([event], n)
    merges = CounterMetricFamily("ksmtui_merges_total", "Merges the ksm tracepoints saw, by path: stable_tree (a page "
                                 "merged into a KSM page), unstable_tree (two pages paired into a new KSM page, "
                                 "counted once), zero_page (a page merged with the zero page).", labels=["path"])
    for path, n in t.merges.items():
        merges.add_metric([path], n)
    failures = CounterMetricFamily("ksmtui_merge_failures_total", "Merges that failed, by tracepoint event and the "
                                   "error the kernel returned.", labels=["event", "errno"])
    for (event, name), n in sorted(t.failures.items()):
        failures.add_metric([event, name], n)
    out: list[Metric] = [
        events, merges, failures,
        CounterMetricFamily("ksmtui_trace_lost_events_total", "Tracepoint events the kernel dropped (ring buffer "
                            "full): the counts above are short by that many.", value=t.lost),
        SummaryMetricFamily("ksmtui_ksmd_pass_duration_seconds", "Full passes of ksmd over the mergeable memory, "
                            "timed from ksm_start_scan to ksm_stop_scan.", count_value=t.passes,
                            sum_value=t.pass_seconds, unit="seconds"),
        CounterMetricFamily("ksmtui_advisor_decisions_total", "Decisions of the scan-time advisor (ksm_advisor).",
                            value=t.decisions),
    ]
    if t.last_pass is not None:
        out.append(GaugeMetricFamily("ksmtui_ksmd_last_pass_duration_seconds", "How long the last full pass took.",
                                     value=t.last_pass[0], unit="seconds"))
        out.append(GaugeMetricFamily("ksmtui_ksmd_last_pass_rmap_items", "rmap_items at the end of the last full "
                                     "pass (ksm_stop_scan).", value=t.last_pass[1]))
    if t.last_decision is not None:
        scan_time, _pages, cpu_percent = t.last_decision
        out.append(GaugeMetricFamily("ksmtui_advisor_last_scan_time_seconds", "The scan time the advisor last "
                                     "measured (whole seconds, as ksm_advisor reports it).", value=scan_time,
                                     unit="seconds"))
        out.append(GaugeMetricFamily("ksmtui_advisor_last_cpu_ratio", "ksmd's share of a CPU in the last pass, as "
                                     "the advisor last measured it (ksm_advisor's cpu percent / 100).",
                                     value=cpu_percent / 100, unit="ratio"))
    return out


def write_textfile(path: str, data: bytes) -> None:
    """Replace `path` by `data` atomically; readable by node_exporter's user, and never seen
    half-written (the temporary is not *.prom)."""
    atomic_write(Path(path), lambda f: f.write(data), mode=0o644)


def check_textfile(path: str) -> None:
    """OSError unless `write_textfile(path)` can work: its directory takes a new file, and `path`
    is not a directory."""
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)


class Exporter:
    """The newest sample's metrics, for prometheus_client: fed by `add` (the sampler's thread, like
    a Recorder), read by `collect` (the HTTP server's threads). `serve` starts the HTTP server;
    with `textfile`, every sample also rewrites that file."""

    def __init__(self, top: int = TOP, grouping: Grouping = by_process, textfile: str | None = None,
                 on_error: Callable[[str], object] | None = None) -> None:
        self.top = top
        self.grouping = grouping
        self.textfile = textfile
        self.on_error = on_error
        self.totals = TraceTotals()
        self.registry = CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._server: Any = None
        self._error = ""
        self.registry.register(self)

    def add(self, sample: HostSample) -> None:
        with self._lock:
            self.totals.add(sample.trace)
            self._families = families(sample, self.totals, self.top, self.grouping)
        if self.textfile:
            try:
                write_textfile(self.textfile, self.text())
                self._error = ""
            except OSError as err:
                said = f"--textfile: {self.textfile}: {err.strerror}"
                if said != self._error and self.on_error is not None:
                    self.on_error(said)  # once, until a write works again
                self._error = said

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            return list(self._families)

    def text(self) -> bytes:
        """The Prometheus text format (0.0.4), as node_exporter's textfile collector reads it."""
        return generate_latest(self.registry)

    def serve(self, addr: str, port: int) -> tuple[str, int]:
        """Serve /metrics (Prometheus text or OpenMetrics, as the scraper asks) on a thread of its
        own; the address and port it listens on (port 0 picks a free one)."""
        from prometheus_client import start_http_server

        self._server, _ = start_http_server(port, addr, self.registry)
        host, bound = self._server.server_address[:2]
        return host, bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
