"""`ksmtui run SCENARIO [--json]`: headless to the stop condition; a summary, or the JSON contract
(docs/scenarios.md)."""

from __future__ import annotations

import json
import sys
import time

from ksmtui.cli.common import cost_profile, load, run_to_stop
from ksmtui.cli.options import parse_args


def main(argv: list[str]) -> int:
    from engine.sim import Simulation
    from ksmtui.text.report import summary

    opts = parse_args("run", argv)
    scenario = load(opts)
    start = time.perf_counter()
    sim = Simulation(scenario, costs=cost_profile(opts.costs))
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
    if mismatches:
        print(f"ksmtui run: internal error: {mismatches:,} of {checked:,} pages do not read back what was "
              "last written there", file=sys.stderr)
        return 1
    return 0


