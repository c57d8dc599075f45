"""Model beside kernel: the counters of two headless results side by side, differences marked.

Only counters that a finished pass settles are judged. The others depend on how far ksmd got
into a pass, or on wall-clock timing, and are shown for information.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from engine.cost import CostProfile
from engine.scenario import Scenario
from engine.sim import Simulation
from engine.timeline import saving_timing

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


def timing_errors(model: dict, kernel: dict) -> dict[str, tuple[float | None, bool]]:
    """Each judged figure's relative error, model against kernel ((model - kernel) / kernel; None
    where either has none), and whether it is beyond its tolerance (so is one side missing it)."""
    out: dict[str, tuple[float | None, bool]] = {}
    for key, tol in TIMING_JUDGED:
        mv, kv = model.get(key), kernel.get(key)
        if mv is None or kv is None:
            out[key] = (None, mv != kv)
        else:
            rel = (mv - kv) / kv if kv else 0.0
            out[key] = (rel, abs(rel) > tol)
    return out


def kernel_spread(timings: list[dict]) -> dict[str, float | None]:
    """The kernel's own run-to-run spread of each judged figure: (max - min) / median over its runs
    (None with one run, or where a run has none): what the model cannot be held to more tightly."""
    out: dict[str, float | None] = {}
    for key, _ in TIMING_JUDGED:
        values = [t[key] for t in timings if t.get(key) is not None]
        if len(values) < 2 or len(values) < len(timings):
            out[key] = None
            continue
        mid = statistics.median(values)
        out[key] = (max(values) - min(values)) / mid if mid else 0.0
    return out


def timing_report(model: dict, kernel: dict, runs: int) -> tuple[str, bool]:
    """Time to the saving and ksmd's CPU, model beside kernel (the median of `runs`), judged within
    TIME_TOLERANCE and CPU_TOLERANCE; the model's times are modelled, with the named costs."""
    m, k = model["timing"], kernel["timing"]
    lines = [f"timing (model: costs: {model.get('costs', '?')}, hz {model.get('hz', '?')}; kernel: "
             f"{'median of ' + str(runs) + ' runs' if runs > 1 else 'one run'}, sampled every ~2 ms)",
             f"  {'figure':<28}{'model':>14}{'kernel':>14}{'diff':>9}"]
    judged = timing_errors(m, k)
    bad = 0
    for key, tol in TIMING_JUDGED + tuple((key, None) for key in TIMING_SHOWN):
        mv, kv = m.get(key), k.get(key)
        if key in judged:
            rel, off = judged[key]
        else:
            rel, off = None, False
            if mv is not None and kv is not None:
                rel = (mv - kv) / kv if kv else 0.0
        diff = "" if rel is None else f"{rel:+.1%}"
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


# ------------------------------------------------------------ model and kernel --

@dataclass
class Parity:
    """One scenario run in the model and on the kernel, judged."""
    model: dict
    kernel: dict  # the first kernel run; with timing, its "timing" is the median of all runs
    kernels: list[dict]  # every kernel run, as run_kernel returned it
    text: str  # parity_report, then timing_report when timed
    timing_text: str  # timing_report ("" when not timed)
    counters_ok: bool
    timing_ok: bool  # True when not timed

    @property
    def ok(self) -> bool:
        return self.counters_ok and self.timing_ok


def run_parity(scenario: Scenario, costs: CostProfile, run_kernel: Callable[[], dict], *, timing: bool = False,
               repeat: int = 1, flow: str | None = None, seed: int | None = None, overrides: dict | None = None,
               full_scans: int | None = None, after_ms: int | None = None) -> Parity:
    """The model (with `costs`), then the kernel `repeat` times (run_kernel(): one run's result,
    sampled when timing), judged: settled counters exact (the first kernel run's), and with timing
    the median of each kernel figure within TIMING_JUDGED's tolerances. Shared by `ksmtui parity
    SCENARIO` and the fuzzer so that both judge the same way."""
    overrides = dict(overrides or {})

    def model_run(profile: CostProfile) -> Simulation:
        sim = Simulation(scenario, flow=flow, seed=seed, overrides=overrides, costs=profile)
        if timing:
            sim.record_series()
        sim.run(full_scans=full_scans, after_ms=after_ms)
        return sim

    t0 = time.monotonic()
    sim = model_run(costs)
    model = sim.result()
    model["wall_s"] = round(time.monotonic() - t0, 3)
    kernels = [run_kernel() for _ in range(repeat)]
    kernel = dict(kernels[0])  # its timing becomes the median; each run keeps its own
    text, counters_ok = parity_report(model, kernel)
    timing_text, timing_ok = "", True
    if timing:
        assert sim.series is not None
        model["timing"] = {**saving_timing(sim.series), "wait_per_cpu": costs.wait_per_cpu}
        kernel["timing"] = median_timing([k["timing"] for k in kernels])
        if kernel["timing"]["wait_per_cpu"] is not None:
            # the same model under the load the kernel met: the pacing apart from the load
            again = model_run(replace(costs, wait_per_cpu=kernel["timing"]["wait_per_cpu"]))
            assert again.series is not None
            model["timing_at_kernel_wait"] = {**saving_timing(again.series),
                                              "wait_per_cpu": kernel["timing"]["wait_per_cpu"]}
        timing_text, timing_ok = timing_report(model, kernel, len(kernels))
        text += "\n" + timing_text
    return Parity(model, kernel, kernels, text, timing_text, counters_ok, timing_ok)
