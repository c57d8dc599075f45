"""Why isn't anything merging, machine-wide: from the knobs, and where a sample has them the
counters and the processes KSM knows.

Each reason is {"reason": a short code, "text": one sentence}, in the order an operator would fix
them. The knobs alone say whether ksmd runs at all (run, pages_to_scan, the advisor); the counters
and the processes say whether anything is registered and what ksmd found. What the files do not
say is not guessed: a process whose ksm_stat could not be read is counted as unknown.
"""

from __future__ import annotations

from collections.abc import Mapping

KSM = "/sys/kernel/mm/ksm"


def _int(d: Mapping, key: str) -> int | None:
    v = d.get(key)
    return v if isinstance(v, int) else None


def knob_reasons(knobs: Mapping) -> list[dict]:
    """What the knobs say: ksmd stopped or unmerging, nothing to scan, the advisor in charge."""
    out = []
    run = _int(knobs, "run")
    if run == 0:
        out.append({"reason": "run=0", "text": "ksmd is stopped (run=0): nothing is scanned and nothing merges "
                    f"while it is (echo 1 > {KSM}/run starts it)"})
    elif run == 2:
        out.append({"reason": "run=2", "text": "run=2: ksmd unmerges every KSM page and merges nothing "
                    f"(echo 1 > {KSM}/run merges again)"})
    advisor = knobs.get("advisor_mode", "none")
    pts = _int(knobs, "pages_to_scan")
    if advisor not in (None, "none"):
        out.append({"reason": "advisor", "text": f"advisor_mode {advisor}: ksmd's advisor sets pages_to_scan "
                    f"(now {pts}) between advisor_min_pages_to_scan {knobs.get('advisor_min_pages_to_scan')} and "
                    f"advisor_max_pages_to_scan {knobs.get('advisor_max_pages_to_scan')}, aiming at a full scan every "
                    f"{knobs.get('advisor_target_scan_time')} s"})
    elif pts == 0:
        out.append({"reason": "pages_to_scan=0", "text": "pages_to_scan is 0: ksmd wakes up and scans nothing"})
    return out


def why_nothing_merges(knobs: Mapping, ksm: Mapping | None = None, processes: Mapping | None = None) -> list[dict]:
    """Every reason that stands in the way of merging. With the counters (`ksm`, by their sysfs
    names) and the processes (a host sample's rows: ksm_stat fields, or "error"), also: no process
    registered, and when nothing is merged, what ksmd met instead (volatile or unique pages,
    skipped visits, fewer than two passes)."""
    out = knob_reasons(knobs)
    if processes is not None:
        unreadable = sum(1 for row in processes.values() if "error" in row)
        registered = sum(1 for row in processes.values() if "error" not in row and (
            row.get("ksm_mergeable") == "yes" or row.get("ksm_merge_any") == "yes"
            or (_int(row, "ksm_rmap_items") or 0) > 0))
        if not registered:
            text = "no process is registered with KSM: none madvised (MADV_MERGEABLE) memory or set " \
                   "prctl(PR_SET_MEMORY_MERGE), or systemd's MemoryKSM="
            if unreadable:
                text += f" (as far as can be seen: {unreadable} processes' ksm_stat could not be read; root sees all)"
            out.append({"reason": "no process", "text": text})
    if ksm is None:
        return out
    merged = (_int(ksm, "pages_sharing") or 0) + (_int(ksm, "ksm_zero_pages") or 0)
    if merged or _int(knobs, "run") != 1:
        return out
    shared, unshared = _int(ksm, "pages_shared") or 0, _int(ksm, "pages_unshared") or 0
    volatile, skipped = _int(ksm, "pages_volatile") or 0, _int(ksm, "pages_skipped") or 0
    scans = _int(ksm, "full_scans")
    if volatile and not unshared and not shared:
        out.append({"reason": "volatile", "text": f"every page ksmd has met is volatile ({volatile:,} pages_volatile): "
                    "they change between two passes, and KSM merges only pages whose checksum held"})
    elif unshared and not shared:
        out.append({"reason": "unique", "text": f"no two pages ksmd met are equal: {unshared:,} pages_unshared"
                    + (f", {volatile:,} volatile" if volatile else "")})
    if skipped and int(knobs.get("smart_scan", 0) or 0):
        out.append({"reason": "skipped", "text": f"smart_scan skipped {skipped:,} page visits (pages_skipped): "
                    "pages that did not merge are visited less often"})
    if scans is not None and scans < 2 and (volatile or unshared or shared):
        out.append({"reason": "first passes", "text": f"ksmd has completed {scans} full scans: a page merges in "
                    "the second at the earliest (the first only stores its checksum)"})
    return out


def sample_why_not(sample) -> list[dict]:
    """why_nothing_merges of a host sample (ksmtui.host.sampler.HostSample)."""
    return why_nothing_merges(sample.knobs, sample.ksm, sample.processes)
