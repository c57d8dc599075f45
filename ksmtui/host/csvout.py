"""`ksmtui host --csv FILE` (and `ksmtui replay REC --csv FILE`): a sample a row, for a spreadsheet.

The columns are what `--json` prints of a sample, flattened to numbers: the counter files of
/sys/kernel/mm/ksm, /proc/vmstat's two, ksmd's pid and CPU time, every knob (the model's order),
the tracepoints since the previous sample, the processes KSM knows (a count: their rows stay in
--json and --record), /proc/meminfo, and the why-not and alert codes. A column is named as the
kernel names the file or field, with the unit where the name does not say it
(general_profit_bytes, advisor_max_cpu_pct, meminfo_MemTotal_kB); ksmd_cpu_pct is ksmd's share
of a CPU since the previous sample, as the alert judges it. The header is the first sample's: a
file a later sample lacks is an empty cell.

Each row goes to the file in one write, as it is sampled: a run killed at any point leaves a valid
CSV up to its last whole row. A write that fails (a full disk) stops the file and says why in
`error`; sampling goes on.
"""

from __future__ import annotations

import csv
import io
import os

from ksmtui.host.alerts import alerts, ksmd_cpu
from ksmtui.host.sampler import HostSample
from ksmtui.host.view import knobs_in_order
from ksmtui.host.whynot import sample_why_not

# include/trace/events/ksm.h: every ksm tracepoint, counted between two samples
TRACE_EVENTS = ("ksm_start_scan", "ksm_stop_scan", "ksm_enter", "ksm_exit", "ksm_merge_one_page",
                "ksm_merge_with_ksm_page", "ksm_remove_ksm_page", "ksm_remove_rmap_item", "ksm_advisor")
# the unit a name does not say, where the value is not a count of pages, events or scans
UNITS = {"general_profit": "bytes", "advisor_target_scan_time": "s", "advisor_max_cpu": "pct"}


def _named(name: str) -> str:
    return f"{name}_{UNITS[name]}" if name in UNITS else name


def columns(first: HostSample) -> list[str]:
    """The header, from the first sample's files."""
    return ["time_unix_s", *(_named(n) for n in first.ksm), *first.vmstat, "ksmd_pid", "ksmd_cpu_ns",
            "ksmd_cpu_pct", *(_named(n) for n, _ in knobs_in_order(first.knobs)),
            "trace_stable_merges", "trace_unstable_pairs", "trace_zero_page_merges",
            *(f"trace_{e}" for e in TRACE_EVENTS), "trace_errors", "trace_lost", "processes",
            "processes_unreadable", *(f"meminfo_{n}_kB" for n in first.meminfo), "why_not", "alerts"]


def row(sample: HostSample, before: HostSample | None, alert_cpu: float | None = None) -> dict[str, object]:
    """A sample's cells by column name (`before`: the previous sample, for ksmd's CPU)."""
    cpu = ksmd_cpu(before, sample)
    out: dict[str, object] = {"time_unix_s": f"{sample.time:.3f}"}
    out.update({_named(n): v for n, v in sample.ksm.items()})
    out.update(sample.vmstat)
    out.update(ksmd_pid=sample.ksmd.get("pid", ""), ksmd_cpu_ns=sample.ksmd.get("cpu_ns", ""),
               ksmd_cpu_pct="" if cpu is None else f"{cpu * 100:.2f}")
    out.update({_named(n): v for n, v in sample.knobs.items()})
    t = sample.trace
    if t is not None:
        merges, counts = t.get("merges", {}), t.get("counts", {})
        out.update(trace_stable_merges=merges.get("stable", 0), trace_unstable_pairs=merges.get("unstable_pairs", 0),
                   trace_zero_page_merges=merges.get("zero_page", 0), trace_errors=sum(t.get("errors", {}).values()),
                   trace_lost=t.get("lost", 0))
        out.update({f"trace_{e}": counts.get(e, 0) for e in TRACE_EVENTS})
    unreadable = sum(1 for r in sample.processes.values() if "error" in r)
    out.update(processes=len(sample.processes) - unreadable, processes_unreadable=unreadable)
    out.update({f"meminfo_{n}_kB": v for n, v in sample.meminfo.items()})
    out["why_not"] = "; ".join(r["reason"] for r in sample_why_not(sample))
    out["alerts"] = "; ".join(a["alert"] for a in alerts(sample, cpu, alert_cpu))
    return out


class CsvWriter:
    """Writes the rows as samples arrive (a sink beside the recording and the exporter). `path`
    "-" is stdout. Opening the file fails at once (OSError), before anything is sampled."""

    option = "--csv"
    holds = "the file holds the {n} row{s} before"

    def __init__(self, path: str, alert_cpu: float | None = None) -> None:
        self.path = path
        self.error: str | None = None
        self.alert_cpu = alert_cpu
        self._fd: int | None = 1 if path == "-" else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._columns: list[str] | None = None
        self._before: HostSample | None = None

    def _write(self, cells: list) -> None:
        if self._fd is None:
            return
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerow(cells)
        data = text.getvalue().encode()
        try:
            while data:  # one write for a row, in practice; a short one is finished, not left cut
                data = data[os.write(self._fd, data):]
        except OSError as err:
            self.error = err.strerror or str(err)
            self.close()

    def add(self, sample: HostSample) -> None:
        if self._columns is None:
            self._columns = columns(sample)
            self._write(self._columns)
        cells = row(sample, self._before, self.alert_cpu)
        self._before = sample
        self._write([cells.get(c, "") for c in self._columns])

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and fd != 1:
            os.close(fd)
