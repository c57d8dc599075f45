"""Pure text renderers shared by the CLI and the UI (golden-string tested)."""

from __future__ import annotations

from typing import Mapping, Sequence

from engine.scenario import Event
from engine.snapshot import (
    Sharer,
    StableNodeView,
    StepInfo,
    UnstableItemView,
    bucket_bounds,
    bucket_of,
)

_SUFFIXES = ((1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K"))


def size_label(n: int) -> str:
    """bpftrace's binary suffixes: 512, 1K, 2K, ... 1M."""
    for unit, suffix in _SUFFIXES:
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def bucket_label(index: int) -> str:
    if index == 0:
        return "[0]"
    if index == 1:
        return "[1]"
    low, high = bucket_bounds(index)
    return f"[{size_label(low)}, {size_label(high)})"


def hist_lines(counts: Sequence[int], width: int = 52, span: Sequence[int] | None = None) -> list[str]:
    """A histogram as bpftrace's hist() prints it: label in 16, count in 8, a bar of `@` in `width`.

    Rows run from the first to the last non-zero bucket, zero buckets between included; or of
    `span`'s (a histogram covering this one), so that a rolling histogram keeps its rows.
    """
    nonzero = [i for i, c in enumerate(span or counts) if c]
    if not nonzero:
        return []
    top = max(counts) or 1
    lines = []
    for i in range(nonzero[0], nonzero[-1] + 1):
        bar = "@" * (counts[i] * width // top)
        lines.append(f"{bucket_label(i):<16}{counts[i]:>8} |{bar:<{width}}|")
    return lines


def percentile(counts: Sequence[int], q: float) -> int:
    """The q-th percentile (0..100) of a log2 histogram, as the upper bound of its bucket (0 if empty)."""
    total = sum(counts)
    if not total:
        return 0
    rank = q / 100 * total
    seen = 0
    for i, c in enumerate(counts):
        seen += c
        if c and seen >= rank:
            return bucket_bounds(i)[1]
    return bucket_bounds(len(counts) - 1)[1]


# --- renderers of the live UI's panels (pure: snapshot data in, text out) ---


def sim_time(ns: int) -> str:
    """Simulated time as seconds with millisecond resolution: 12.345 s."""
    return f"{ns // 1_000_000_000}.{ns // 1_000_000 % 1000:03d} s"


def progress_bar(done: int, total: int, width: int) -> str:
    """A bar of `width` cells, full cells for the done share; an empty pass shows empty."""
    filled = min(width, done * width // total) if total > 0 else 0
    return "█" * filled + "░" * (width - filled)


def latency_title(path: str, counts: Sequence[int], window: str = "") -> str:
    """A path's call count and percentiles (upper bounds of their buckets, as hist() rows read);
    `window` names the span an empty histogram covers."""
    total = sum(counts)
    if not total:
        return f"{path}  no calls" + (f" in the {window}" if window.startswith("last") else "")
    p = " ".join(f"p{q}<{size_label(percentile(counts, q))}" for q in (50, 90, 99))
    return f"{path}  {total:,} calls  {p} ns"


def rate_label(per_s: float, unit: str = "") -> str:
    """A rate per simulated second: 1,548/s, 12K/s, 12K pages/s."""
    per = f" {unit}/s" if unit else "/s"
    if per_s >= 10_000:
        return f"{per_s / 1000:,.0f}K{per}"
    return f"{per_s:,.0f}{per}"


def outcome_table(
    outcomes: Mapping[str, Mapping[str, int]], rates: Mapping[str, float], paths: Sequence[str]
) -> list[str]:
    """Outcomes (rows, those seen at least once) by path (columns), then totals and call rates."""
    rows = [f"{'outcome':<22}" + "".join(f"{p:>11}" for p in paths)]
    names = [o for o in _outcome_order(outcomes, paths) if any(outcomes[p].get(o, 0) for p in paths)]
    for name in names:
        rows.append(f"{name:<22}" + "".join(f"{outcomes[p].get(name, 0):>11,}" for p in paths))
    rows.append(f"{'total':<22}" + "".join(f"{sum(outcomes[p].values()):>11,}" for p in paths))
    rows.append(f"{'calls/s (simulated)':<22}" + "".join(f"{rate_label(rates.get(p, 0.0)):>11}" for p in paths))
    return rows


def _outcome_order(outcomes: Mapping[str, Mapping[str, int]], paths: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for p in paths:
        seen.update(dict.fromkeys(outcomes[p]))
    return list(seen)


def dist_lines(dist: Mapping[int, int], width: int = 40, max_rows: int = 16, mark: int | None = None) -> list[str]:
    """A distribution (value -> how many) as hist()-like rows: one row per value while they fit in
    max_rows, log2 buckets beyond. The row holding `mark` (max_page_sharing) is flagged."""
    items = sorted((k, v) for k, v in dist.items() if v)
    if not items:
        return []
    if len(items) <= max_rows:
        rows = [(str(k), v, k == mark) for k, v in items]
    else:
        buckets: dict[int, int] = {}
        for k, v in items:
            buckets[bucket_of(k)] = buckets.get(bucket_of(k), 0) + v
        first, last = min(buckets), max(buckets)
        rows = [
            (bucket_label(b), buckets.get(b, 0), mark is not None and bucket_of(mark) == b)
            for b in range(first, last + 1)
        ]
    top = max(v for _, v, _ in rows)
    return [
        f"{label:<16}{count:>8} |{'@' * (count * width // top):<{width}}|" + (" ◀ max_page_sharing" if marked else "")
        for label, count, marked in rows
    ]


def sharer_label(sharer: Sharer) -> str:
    return f"{sharer.process}:{sharer.address:#x}"


def stable_node_label(node: StableNodeView, nid: bool = True) -> str:
    """A stable tree row; without its nid on a machine of one NUMA node, where every nid is 0."""
    where = f"  nid {node.nid}" if nid else ""
    if node.kind == "chain":
        return f"chain{where}  {node.rmap_hlist_len} dups"
    prefix = "" if node.kind == "regular" else f"{node.kind} "
    return f"{prefix}kpfn {node.kpfn:#x}{where}  {node.rmap_hlist_len} sharers"


def unstable_label(item: UnstableItemView, nid: bool = True) -> str:
    return f"{item.process}:{item.address:#x}  kpfn {item.kpfn:#x}" + (f"  nid {item.nid}" if nid else "")


def rmap_text(process: str, address: int) -> str:
    """process:address where a narrow column may wrap it: a space after the colon is where it
    breaks, so that the address is never cut in two."""
    return f"{process}: {address:#x}"


def _rmap_lines(head: str, process: str, address: int, width: int | None) -> list[str]:
    """head + process:address on one line; in fewer than `width` columns the address goes on a line
    of its own under the process, and if need be the head too: never an address cut in two."""
    line = f"{head}{process}:{address:#x}"
    if width is None or len(line) <= width:
        return [line]
    two = [f"{head}{process}:", f"{' ' * len(head)}  {address:#x}"]
    if max(map(len, two)) <= width or not head.strip():
        return two
    return [head.rstrip(), *_rmap_lines("  ", process, address, width)]


def node_detail(node: StableNodeView | UnstableItemView, width: int | None = None) -> list[str]:
    """What the detail view shows of a selected tree node, in `width` columns if given (an rmap
    wider than that puts its address on a line of its own)."""
    if isinstance(node, UnstableItemView):
        return [
            "unstable tree item (rmap_item)",
            *_rmap_lines("rmap       ", node.process, node.address, width),
            f"kpfn       {node.kpfn:#x}",
            f"checksum   {node.checksum:#x}",
            f"nid        {node.nid}",
        ]
    if node.kind == "chain":
        lines = [f"stable_node chain  nid {node.nid}", f"dups       {node.rmap_hlist_len}"]
        for dup in node.dups:
            lines.append(f"  dup kpfn {dup.kpfn:#x}  {dup.rmap_hlist_len} sharers")
        return lines
    lines = [
        f"stable_node ({node.kind})",
        f"kpfn       {node.kpfn:#x}",
        f"checksum   {node.checksum:#x}",
        f"nid        {node.nid}",
        f"rmap_hlist_len {node.rmap_hlist_len}",
        "rmap list:",
    ]
    for sharer in node.sharers:
        lines += _rmap_lines("  ", sharer.process, sharer.address, width)
    if node.rmap_hlist_len > len(node.sharers):
        lines.append(f"  … {node.rmap_hlist_len - len(node.sharers)} more")
    return lines


def latency_kind(knobs: Mapping[str, object]) -> str:
    """What a latency figure is: the cost model's (engine/cost.py, the default) or the wall time of
    the model's own Python code (latency = "wall"); never a measurement of the kernel."""
    return "modelled" if knobs.get("latency", "model") == "model" else "model wall-time"


def step_line(step: StepInfo | None, pages_scanned: int | None = None, kind: str = "modelled") -> str:
    """The last single step: where ksmd was, the path it took and how it ended, then each function
    that decided, in order, with what it decided. A step the run has gone past since is not shown
    (pages_scanned: the counter now)."""
    if step is None:
        return "last step: none yet (press s)"
    if pages_scanned is not None and step.pages_scanned and pages_scanned != step.pages_scanned:
        return "last step: none since the run went on (press s)"
    lines = [f"last step: {step.process}:{step.address:#x}  ({step.latency_ns:,} {kind} ns)"]
    for name, decided, memcmps in step.trace:
        lines.append(f"  {name} → {decided}" + (f" ({memcmps} memcmp_pages)" if memcmps else ""))
    lines.append(f"  {step.path} → {step.outcome}")
    return "\n".join(lines)


_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int], width: int) -> str:
    """The newest `width` values, one block each, scaled from zero (or a lower negative minimum:
    general_profit starts below zero) to their maximum, so that 412 -> 408 reads as the small
    change it is."""
    values = list(values)[-width:] if width > 0 else []
    if not values:
        return ""
    low, high = min(0, *values), max(values)
    if high == low:
        return _BLOCKS[0] * len(values)
    return "".join(_BLOCKS[(v - low) * (len(_BLOCKS) - 1) // (high - low)] for v in values)


# --- the scenario's events on the time line ---


def event_label(ev: Event) -> str:
    """An event in a few words: fork web-0, write db/buffers, set use_zero_pages=1."""
    if ev.action == "set":
        return f"set {ev.knob}={ev.value}"
    where = ev.process + (f"/{ev.region}" if ev.region else "")
    return f"{ev.action} {where}"


def _next_ns(ev: Event, now_ns: int) -> int | None:
    """When a timed event fires next, at or after now (None: never again)."""
    assert ev.at_ms is not None
    at = ev.at_ms * 1_000_000
    if at >= now_ns or not ev.repeat_ms:
        return at if at >= now_ns else None
    step = ev.repeat_ms * 1_000_000
    nxt = at + -(-(now_ns - at) // step) * step
    return nxt if ev.until_ms is None or nxt <= ev.until_ms * 1_000_000 else None


def next_events(events: Sequence[Event], now_ns: int, full_scans: int, n: int = 2) -> list[str]:
    """The next n events to fire, in time order, each with when; those at a full-scan mark (their
    time is not known in advance) after them. A repeating event is always due soon: the soonest
    one-off event keeps a place among the n, so that it is never crowded out."""
    timed = sorted((t, ev.index, ev) for ev in events if ev.at_ms is not None
                   and (t := _next_ns(ev, now_ns)) is not None)
    picked = timed[:n]
    one_off = next((x for x in timed if not x[2].repeat_ms), None)
    if n and one_off is not None and one_off not in picked:
        picked = sorted([*picked[:n - 1], one_off])
    marked = sorted((ev.at_full_scans, ev.index, ev) for ev in events
                    if ev.at_full_scans is not None and ev.at_full_scans > full_scans)
    out = [f"{event_label(ev)} at {sim_time(t)}" + (f", every {ev.repeat_ms:,} ms" if ev.repeat_ms else "")
           for t, _, ev in picked]
    out += [f"{event_label(ev)} at full scan {mark:,}" for mark, _, ev in marked]
    return out[:n]


def event_marks(events: Sequence[Event], sim_ns: Sequence[int], full_scans: Sequence[int]) -> str:
    """One character per sample under a sparkline: ▲ where a one-off event fired between the
    sample before and this one (repeating events would mark every column)."""
    timed = [ev.at_ms * 1_000_000 for ev in events if ev.at_ms is not None and not ev.repeat_ms]
    marks = [ev.at_full_scans for ev in events if ev.at_full_scans is not None]
    out = [" "]
    for i in range(1, len(sim_ns)):
        fired = any(sim_ns[i - 1] < t <= sim_ns[i] for t in timed) or any(
            full_scans[i - 1] < m <= full_scans[i] for m in marks)
        out.append("▲" if fired else " ")
    return "".join(out)
