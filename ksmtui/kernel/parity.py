"""Model beside kernel: the counters of two headless results side by side, differences marked.

Only counters that a finished pass settles are judged. The others depend on how far ksmd got
into a pass, or on wall-clock timing, and are shown for information.
"""

from __future__ import annotations

SETTLED = ("pages_shared", "pages_sharing", "stable_node_chains", "stable_node_dups", "ksm_zero_pages",
           "general_profit")
NOT_JUDGED = ("pages_unshared", "pages_volatile", "pages_scanned", "pages_skipped", "full_scans")
PROCESS_SETTLED = ("ksm_rmap_items", "ksm_merging_pages", "ksm_zero_pages", "ksm_process_profit")
PROCESS_SHOWN = ("ksm_merge_any", "ksm_mergeable")
# what THPs went through, in the results of scenarios that map THPs: the splits are judged; failed
# splits and the THPs left are shown (the THP parity tests hold them equal too, but with forks
# they are not verified)
THP_SETTLED = ("thp_split_page",)
THP_SHOWN = ("thp_split_page_failed", "anon_huge_pages")

_MARK = "  <-- differs"


def _row(label: str, model, kernel, judged: bool) -> tuple[str, bool]:
    m = "-" if model is None else model
    k = "-" if kernel is None else kernel
    differs = judged and model != kernel
    note = _MARK if differs else ("" if judged else "  (not judged)")
    return f"  {label:<28}{m!s:>14}{k!s:>14}{note}", differs


def parity_report(model: dict, kernel: dict) -> tuple[str, bool]:
    """The side-by-side text and whether every settled counter agrees."""
    lines = [f"parity: {model.get('scenario')} (model flow {model.get('flow')}, seed {model.get('seed')}; "
             f"kernel {kernel.get('kernel', '?')})",
             f"  {'counter':<28}{'model':>14}{'kernel':>14}"]
    differences = 0
    for name in SETTLED + NOT_JUDGED:
        line, differs = _row(name, model["ksm"].get(name), kernel["ksm"].get(name), name in SETTLED)
        lines.append(line)
        differences += differs
    if "thp" in model or "thp" in kernel:
        mt, kt = model.get("thp", {}), kernel.get("thp", {})
        for name in THP_SETTLED + THP_SHOWN:
            line, differs = _row(name, mt.get(name), kt.get(name), name in THP_SETTLED)
            lines.append(line)
            differences += differs
    names = list(model["processes"])
    names += [n for n in kernel["processes"] if n not in model["processes"]]
    for name in names:
        mp, kp = model["processes"].get(name), kernel["processes"].get(name)
        if mp is None or kp is None:
            lines.append(f"process {name}: alive in the {'kernel' if mp is None else 'model'} only{_MARK}")
            differences += 1
            continue
        lines.append(f"process {name}")
        for field in PROCESS_SETTLED + PROCESS_SHOWN:
            line, differs = _row(field, mp.get(field), kp.get(field), field in PROCESS_SETTLED)
            lines.append(line)
            differences += differs
    for side, result in (("model", model), ("kernel", kernel)):
        check = result.get("data_check", {})
        if check.get("mismatches"):
            lines.append(f"{side}: data_check found {check['mismatches']} pages that lost their data{_MARK}")
            differences += 1
    for note in kernel.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("result: settled counters agree" if not differences
                 else f"result: {differences} difference{'s' if differences > 1 else ''} in settled counters")
    return "\n".join(lines), not differences


def timing_caveat(scenario) -> str | None:
    """Why settled counters of this scenario may legitimately differ between model and kernel."""
    if any(ev.repeat_ms for ev in scenario.events):
        return ("its at_ms events repeat on the wall clock while ksmd scans: rewritten pages reorder "
                "the unstable tree at other moments than in the model, so a few merges can differ")
    return None
