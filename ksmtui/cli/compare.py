"""`ksmtui compare SCENARIO`: legacy vs optimized on the same workload, as the cover letter did."""

from __future__ import annotations

import gc
import sys

from ksmtui.cli.common import cost_profile, load, run_to_stop
from ksmtui.cli.options import parse_args


def main(argv: list[str]) -> int:
    from engine.sim import Simulation
    from ksmtui.text.report import compare_report

    opts = parse_args("compare", argv)
    scenario = load(opts)
    snapshots = []
    costs = cost_profile(opts.costs)
    for flow in ("legacy", "optimized"):
        sim = Simulation(scenario, flow=flow, costs=costs)
        run_to_stop(sim, scenario, opts, f"{scenario.name} ({flow})")
        snapshots.append(sim.snapshot(tree_limit=0))
        del sim
        gc.collect()  # a simulation is a web of cycles: free the first before the second is built
    head, _, rest = compare_report(*snapshots).partition("\n")
    sys.stdout.write(f"{head} (costs: {costs.label})\n{rest}")
    return 0


