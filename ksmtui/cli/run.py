"""`ksmtui run SCENARIO [--json]`: headless to the stop condition; a summary, or the JSON contract
(docs/scenarios.md)."""

from __future__ import annotations

import json
import sys
import time

from ksmtui.cli.common import controller_loop, cost_profile, load, run_to_stop
from ksmtui.cli.options import parse_args


def controller_report(result: dict) -> str:
    """The knob timeline and saving over time, as text (modelled numbers)."""
    lines = [f"\ncontroller {result['name']} ({result['ticks']} ticks; "
             f"ksmd CPU {result['ksmd_cpu_pct']}% of a CPU, modelled)"]
    lines.append("  knob writes:")
    for w in result["writes"][:60]:
        err = f"  refused: {w['error']}" if w["error"] else ""
        lines.append(f"    {w['at_ms'] / 1000:10.3f} s  {w['knob']} = {w['value']}{err}")
    if len(result["writes"]) > 60:
        lines.append(f"    ... {len(result['writes']) - 60} more (--json has them all)")
    lines.append("  over time:      saving   ksmd CPU  run  pages_to_scan  sleep_ms    MemFree")
    for s in result["samples"]:
        lines.append(f"    {s['at_ms'] / 1000:10.3f} s {s['saving_kb'] / 1024:8.1f} MiB {s['ksmd_cpu_pct']:7.2f}% "
                     f"{s['run']:4} {s['pages_to_scan']:14} {s['sleep_millisecs']:9} "
                     f"{s['mem_free_kb'] / 1024:8.0f} MiB")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    from engine.sim import Simulation
    from ksmtui.text.report import summary

    opts = parse_args("run", argv)
    scenario = load(opts)
    control = controller_loop(scenario, opts)
    start = time.perf_counter()
    sim = Simulation(scenario, control=control, costs=cost_profile(opts.costs))
    run_to_stop(sim, scenario, opts, scenario.name)
    wall_s = round(time.perf_counter() - start, 3)
    if opts.json:
        result = sim.result()
        result["wall_s"] = wall_s
        print(json.dumps(result))
        for note in sim.notes:
            print(f"ksmtui run: note: {note}", file=sys.stderr)
        checked, mismatches = result["data_check"]["pages_checked"], result["data_check"]["mismatches"]
    else:
        checked, mismatches = sim.data_check()
        sys.stdout.write(summary(sim.snapshot(), (checked, mismatches), wall_s, sim.notes))
        if control is not None:
            sys.stdout.write(controller_report(sim.result()["controller"]))
    if mismatches:
        print(f"ksmtui run: internal error: {mismatches:,} of {checked:,} pages do not read back what was "
              "last written there", file=sys.stderr)
        return 1
    return 0


