"""Plain-text reports of a headless run and of a legacy/optimized comparison.

Pure functions over engine snapshots, golden-string tested. The layouts borrow from the tools a
KSM user already reads: `grep . /sys/kernel/mm/ksm/*` for the counters, /proc/PID/ksm_stat for the
processes, bpftrace's hist() for latency, and the cover letter of the cmp_and_merge_page() series
("Before:" / "After:", one histogram per path) for the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from engine.knobs import ENGINE_KNOBS, KSM_KNOBS
from engine.snapshot import OUTCOMES, PATHS, Snapshot, bucket_bounds, bucket_of
from ksmtui.text.render import bucket_label, hist_lines, latency_kind, percentile

SYSFS = "/sys/kernel/mm/ksm"
PATH_TITLES = {"ksm_page": "ksm page", "anon_page": "anon page", "zero_page": "zero page"}
FLOW_TITLES = {"legacy": "v6.10", "optimized": "v6.11+", "series-v1": "the series' v1, with patch 4"}
KSM_STAT_FIELDS = (
    "ksm_rmap_items",
    "ksm_zero_pages",
    "ksm_merging_pages",
    "ksm_process_profit",
    "ksm_merge_any",
    "ksm_mergeable",
)


def sysfs_value(name: str, value: int | str) -> str:
    """A knob or counter as reading its sysfs file prints it."""
    if name == "advisor_mode":  # a choice file lists every mode and brackets the current one
        return " ".join(f"[{m}]" if m == value else m for m in ("none", "scan-time"))
    return str(value)


def sysfs_lines(counters: Mapping[str, int], knobs: Mapping[str, int | str]) -> list[str]:
    """Every file of /sys/kernel/mm/ksm as `grep . /sys/kernel/mm/ksm/*` prints them (glob order)."""
    files = {**{k: v for k, v in knobs.items() if k in KSM_KNOBS}, **counters}
    return [f"{SYSFS}/{name}:{sysfs_value(name, files[name])}" for name in sorted(files)]


def engine_line(knobs: Mapping[str, int | str]) -> str:
    return "engine: " + " ".join(f"{k}={knobs[k]}" for k in ENGINE_KNOBS if k in knobs)


def table(rows: Sequence[Sequence[object]], left: int = 1) -> list[str]:
    """Columns padded to their widest cell; the first `left` columns flush left, the rest right."""
    cells = [[c if isinstance(c, str) else f"{c:,}" for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return [
        "  ".join(c.ljust(w) if i < left else c.rjust(w)
                  for i, (c, w) in enumerate(zip(row, widths, strict=False))).rstrip()
        for row in cells
    ]


def ksm_stat_lines(snapshot: Snapshot) -> list[str]:
    """/proc/PID/ksm_stat of every live process, one row each, the kernel's field names as columns."""
    alive = [p for p in snapshot.processes if p.alive]
    if not alive:
        return ["(no process alive)"]
    rows: list[list[object]] = [["process", "pid", *KSM_STAT_FIELDS]]
    for p in alive:
        yes_no = ("yes" if p.ksm_merge_any else "no", "yes" if p.ksm_mergeable else "no")
        rows.append([p.name, str(p.pid), p.ksm_rmap_items, p.ksm_zero_pages, p.ksm_merging_pages,
                     p.ksm_process_profit, *yes_no])
    return table(rows, left=2)


def outcome_lines(outcomes: Mapping[str, Mapping[str, int]]) -> list[str]:
    """cmp_and_merge_page() calls by outcome (rows, those that happened) and path (columns)."""
    seen = [o for o in OUTCOMES if any(outcomes[p].get(o, 0) for p in PATHS)]
    rows: list[list[object]] = [["outcome", *(PATH_TITLES[p] for p in PATHS), "total"]]
    for o in seen:
        counts = [outcomes[p].get(o, 0) for p in PATHS]
        rows.append([o, *counts, sum(counts)])
    totals = [sum(outcomes[p].values()) for p in PATHS]
    rows.append(["all calls", *totals, sum(totals)])
    return table(rows)


def latency_lines(latency: Mapping[str, Sequence[int]], flow: str) -> list[str]:
    """One bpftrace map per path that saw calls, keyed like `@cmp_and_merge_page_ns[optimized, anon_page]`."""
    lines: list[str] = []
    for path in PATHS:
        rows = hist_lines(latency[path])
        if rows:
            lines += [f"@cmp_and_merge_page_ns[{flow}, {path}]:", *rows, ""]
    return lines[:-1] if lines else ["(no cmp_and_merge_page calls)"]


def summary(snapshot: Snapshot, data_check: tuple[int, int], wall_s: float, notes: Sequence[str] = ()) -> str:
    """The readable report of `ksmtui run` (without --json); notes are the run's refused `set` events."""
    checked, mismatches = data_check
    head = (f"{snapshot.scenario}: flow {snapshot.flow}, seed {snapshot.seed}, "
            f"{snapshot.sim_ms:,} ms simulated in {wall_s:.2f} s")
    if snapshot.stop_reason:
        head += f" ({snapshot.stop_reason})"
    head += f"\nksmd CPU {snapshot.ksmd_cpu_ns / 1e6:,.1f} ms (modelled; costs: {snapshot.costs})"
    verdict = "ok" if not mismatches else "DATA LOST"
    sections = [
        [head, *(f"note: {n}" for n in notes)],
        sysfs_lines(snapshot.counters, snapshot.knobs) + [engine_line(snapshot.knobs)],
        ["ksm_stat:", *ksm_stat_lines(snapshot)],
        ["cmp_and_merge_page() outcomes:", *outcome_lines(snapshot.outcomes)],
        [f"latency ({latency_kind(snapshot.knobs)} ns):", *latency_lines(snapshot.latency, snapshot.flow)],
        [f"data check: {checked:,} pages checked, {mismatches:,} mismatches: {verdict}"],
    ]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


@dataclass(frozen=True)
class LatencyStats:
    calls: int
    p50: int  # percentiles: upper bound of the bucket holding the rank (render.percentile)
    p90: int
    p99: int
    mean: float  # from the bucket midpoints: the histogram is all a snapshot keeps


def latency_stats(counts: Sequence[int]) -> LatencyStats:
    calls = sum(counts)
    weighted = sum(c * sum(bucket_bounds(i)) / 2 for i, c in enumerate(counts) if c and i >= 2)
    weighted += counts[1] if len(counts) > 1 else 0  # the [1] bucket holds exactly 1 ns
    return LatencyStats(
        calls,
        percentile(counts, 50),
        percentile(counts, 90),
        percentile(counts, 99),
        weighted / calls if calls else 0.0,
    )


def bound_label(upper: int) -> str:
    """The bucket whose upper bound render.percentile returned, as bpftrace labels it."""
    return bucket_label(bucket_of(upper - 1)) if upper else "-"


def compare_report(before: Snapshot, after: Snapshot) -> str:
    """The `ksmtui compare` report: the cover letter's layout, then the numbers behind it."""
    lines = [
        f"{before.scenario}: the same workload under two flows of cmp_and_merge_page(), seed {before.seed}",
        f"Before = {before.flow} ({FLOW_TITLES.get(before.flow, before.flow)}): "
        f"{before.counters['full_scans']:,} full scans, {before.sim_ms:,} ms simulated, "
        f"{before.counters['pages_scanned']:,} pages scanned",
        f"After  = {after.flow} ({FLOW_TITLES.get(after.flow, after.flow)}): "
        f"{after.counters['full_scans']:,} full scans, {after.sim_ms:,} ms simulated, "
        f"{after.counters['pages_scanned']:,} pages scanned",
        "",
    ]
    for title, snap in (("Before:", before), ("After:", after)):
        lines.append(title)
        for path in PATHS:
            hist = hist_lines(snap.latency[path])
            if hist:
                lines += [f"- {PATH_TITLES[path]}", *hist]
    lines += ["", "latency of cmp_and_merge_page() (ns; percentiles name the bucket they fall in):"]
    rows: list[list[object]] = [["path", "", "calls", "p50", "p90", "p99", "mean"]]
    for path in PATHS:
        pair = [latency_stats(before.latency[path]), latency_stats(after.latency[path])]
        if not any(s.calls for s in pair):
            continue
        for title, s in zip(("Before", "After"), pair, strict=False):
            rows.append([PATH_TITLES[path] if title == "Before" else "", title, s.calls,
                         bound_label(s.p50), bound_label(s.p90), bound_label(s.p99),
                         f"~{s.mean:,.0f}" if s.calls else "-"])
    lines += table(rows, left=2)
    lines += ["", "work done (operations, whole run, by the path of the call that did them; "
              "saved = Before - After, negative where After did more):"]
    lines += work_lines(before, after)
    return "\n".join(lines) + "\n"


def work_lines(before: Snapshot, after: Snapshot, titles: Mapping[str, str] = PATH_TITLES) -> list[str]:
    """The operations each flow did, per path that saw calls, then over all paths: the checksums
    not computed and the stable-tree searches not done, read per path."""
    rows: list[list[object]] = [["path", "", "Before", "After", "saved"]]

    def add(title: str, b: Mapping[str, int], a: Mapping[str, int]) -> None:
        for i, op in enumerate(b):
            rows.append([title if i == 0 else "", op, b[op], a[op], f"{b[op] - a[op]:,}"])

    for path in PATHS:
        if any(sum(s.latency[path]) for s in (before, after)):  # the paths that saw calls
            add(titles[path], before.work_by_path[path], after.work_by_path[path])
    add("all paths", before.work, after.work)
    return table(rows, left=2)
