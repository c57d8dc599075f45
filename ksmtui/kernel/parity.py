"""Model beside kernel: the counters of two headless results side by side, differences marked.

Only counters that a finished pass settles are judged. The others depend on how far ksmd got
into a pass, or on wall-clock timing, and are shown for information.
"""

from __future__ import annotations

import statistics

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


# --------------------------------------------------------------------- timing --

TIME_TOLERANCE = 0.05  # times to 50/90/100% of the saving: within 5% of the kernel's
CPU_TOLERANCE = 0.15  # ksmd's CPU to the saving: within 15%
TIMING_JUDGED = (("time_to_50_ms", TIME_TOLERANCE), ("time_to_90_ms", TIME_TOLERANCE),
                 ("time_to_100_ms", TIME_TOLERANCE), ("ksmd_cpu_to_100_ms", CPU_TOLERANCE))
TIMING_SHOWN = ("steady_cpu_ms_per_s", "ksmd_cpu_ms", "wait_per_cpu")


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def median_timing(timings: list[dict]) -> dict:
    """Each figure's median over repeated kernel runs (None where any run has none)."""
    out = {}
    for key in timings[0]:
        values = [t[key] for t in timings]
        out[key] = None if any(v is None for v in values) else statistics.median(values)
    out["runs"] = len(timings)
    return out


def timing_report(model: dict, kernel: dict, runs: int) -> tuple[str, bool]:
    """Time to the saving and ksmd's CPU, model beside kernel (the median of `runs`), judged within
    TIME_TOLERANCE and CPU_TOLERANCE; the model's times are modelled, with the named costs."""
    m, k = model["timing"], kernel["timing"]
    lines = [f"timing (model: costs: {model.get('costs', '?')}, hz {model.get('hz', '?')}; kernel: "
             f"{'median of ' + str(runs) + ' runs' if runs > 1 else 'one run'}, sampled every ~2 ms)",
             f"  {'figure':<28}{'model':>14}{'kernel':>14}{'diff':>9}"]
    bad = 0
    for key, tol in TIMING_JUDGED + tuple((key, None) for key in TIMING_SHOWN):
        mv, kv = m.get(key), k.get(key)
        if mv is None or kv is None:
            diff, off = "", tol is not None and mv != kv
        else:
            rel = (mv - kv) / kv if kv else 0.0
            diff, off = f"{rel:+.1%}", tol is not None and abs(rel) > tol
        note = f"  <-- beyond {tol:.0%}" if off else ("  (not judged)" if tol is None else "")
        lines.append(f"  {key:<28}{_figure(mv):>14}{_figure(kv):>14}{diff:>9}{note}")
        bad += off
    loaded = model.get("timing_at_kernel_wait")
    if loaded is not None:
        lines.append(f"  the model at ksmd's measured wait ({loaded['wait_per_cpu']:.2f} ns per ns of CPU; "
                     "not judged):")
        for key in ("time_to_50_ms", "time_to_90_ms", "time_to_100_ms"):
            mv, kv = loaded.get(key), k.get(key)
            diff = f"{(mv - kv) / kv:+.1%}" if mv is not None and kv else ""
            lines.append(f"    {key:<26}{_figure(mv):>14}{_figure(kv):>14}{diff:>9}")
    lines.append("timing: within tolerance" if not bad
                 else f"timing: {bad} figure{'s' if bad > 1 else ''} beyond tolerance")
    return "\n".join(lines), not bad
