"""`ksmtui sweep`: many model runs over a grid of knobs, flows and seeds, compared; on Dask
(ksmtui/sweep/run.py runs them; this module is the command line and the report)."""

from __future__ import annotations

import argparse
import csv
import json
import signal
import sys

from ksmtui.cli.common import cost_profile
from ksmtui.cli.options import Parser, UsageError, add_costs, positive
from ksmtui.sweep.run import (
    GRID_HELP,
    SETTLE_LIMIT,
    RunFailed,
    Stop,
    SweepError,
    check_scheduler,
    csv_rows,
    execute,
    load_workload,
    mark_front,
    parse_set,
    plan,
    text_report,
    worker_count,
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ksmtui sweep", description="Run a scenario over a grid of knobs, flows and seeds, on Dask, "
               "and compare the saving, how fast it came, and what ksmd spent on it.")
    p.add_argument("scenario", metavar="SCENARIO|CAPTURE",
                   help="a scenario file, the name of a built-in scenario (ksmtui list), or a capture (ksmtui capture)")
    p.add_argument("--merge-any", action="store_true",
                   help="a capture's memory no one marked mergeable counts too (as ksmtui capture --merge-any)")
    p.add_argument("--set", dest="sets", metavar="KNOB=V1,V2", type=parse_set, action="append", default=[],
                   help=f"values of a [ksm] or [engine] knob (repeatable): {GRID_HELP}")
    p.add_argument("--flows", metavar="F1,F2", help="flows to run (default: the scenario's)")
    p.add_argument("--seeds", metavar="S1,S2|A-B", help="seeds to run (default: the scenario's)")
    ctl = p.add_mutually_exclusive_group()
    ctl.add_argument("--controller", metavar="NAME",
                     help="set the knobs from memory pressure as this controller does (docs/controllers.md)")
    ctl.add_argument("--controllers", metavar="A,B",
                     help="controllers to compare, a grid dimension (none, advisor, ksmtuned, kubevirt)")
    p.add_argument("--controller-set", metavar="K=V", action="append", default=[],
                   help="a controller setting, given to each controller of the sweep that takes it (repeatable)")
    p.add_argument("--sample-ms", type=positive, default=1000, metavar="N",
                   help="a controller's samples of saving and ksmd CPU every N simulated ms (default 1000)")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--full-scans", type=positive, metavar="N", help="stop each run after N full scans")
    stop.add_argument("--until-settled", action="store_true",
                      help="stop each run when pages_sharing + ksm_zero_pages is unchanged over two full scans "
                           f"in which every pending event had its chance (at most {SETTLE_LIMIT:,} full scans)")
    show = p.add_mutually_exclusive_group()
    show.add_argument("--json", action="store_true", help='print one JSON object, its runs under "runs"')
    show.add_argument("--ui", action="store_true", help="show the runs in the terminal: saving over time, the front")
    p.add_argument("--csv", metavar="FILE", help="also write one row per run to FILE")
    add_costs(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="use this Dask cluster (its workers need ksmtui)")
    where.add_argument("--workers", type=positive, metavar="N",
                       help="worker processes of the local cluster (default: one per core)")
    return p


def main(argv: list[str]) -> int:
    """SIGTERM and SIGHUP end a sweep as Ctrl-C does: what is left is cancelled, the workers
    stopped, and the runs done so far reported."""
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return sweep(build_parser().parse_args(argv))
    except SweepError as e:
        raise UsageError(str(e)) from None
    except RunFailed as e:
        print(f"ksmtui sweep: internal error: {e}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def sweep(opts: argparse.Namespace) -> int:
    if opts.scheduler is not None:
        check_scheduler(opts.scheduler)
    scenario = load_workload(opts.scenario, opts.merge_any)
    tasks = plan(scenario, opts.sets, opts.flows, opts.seeds, opts.controllers or opts.controller,
                 opts.controller_set)
    stop = Stop(opts.full_scans, opts.until_settled, opts.sample_ms, cost_profile(opts.costs))
    if opts.csv:
        try:  # refused now, not after the runs
            open(opts.csv, "a").close()
        except OSError as e:
            raise UsageError(f"--csv {opts.csv}: cannot write: {e.strerror or e}") from None
    workers, note = worker_count(opts.workers, len(tasks), scenario.memory)
    if note and opts.scheduler is None:
        print(f"ksmtui sweep: note: {note}", file=sys.stderr)
    results, interrupted = execute(scenario, tasks, stop, opts.scheduler, workers, sys.stderr.isatty())
    runs = [results[t.index] for t in tasks if t.index in results]
    for run in runs:
        del run["index"]
    groups = mark_front(runs)
    knobs = [k for k, _ in opts.sets]
    if interrupted:
        print(f"ksmtui sweep: interrupted: {len(runs)} of {len(tasks)} runs done; reporting those", file=sys.stderr)
    controllers = list(dict.fromkeys(t.controller for t in tasks if t.controller is not None))
    document = {"scenario": scenario.name, "stop": stop.describe(scenario), "complete": not interrupted,
                "costs": stop.costs.label, "knobs": knobs, "controllers": controllers, "runs": runs, "groups": groups}
    if opts.json:
        print(json.dumps(document))
    elif opts.ui and runs:
        from ksmtui.ui.apps.sweep import run_sweep_app

        run_sweep_app(document)
    else:
        seeds = max((len(g["seeds"]) for g in groups), default=1)
        print(f"{scenario.name}: {len(runs)} runs, {stop.describe(scenario)}; * on the front of saving vs ksmd CPU"
              + (f"; one row per setting: the mean over its {seeds} seeds (lowest-highest)" if seeds > 1 else "")
              + f" (modelled; costs: {stop.costs.label})")
        print("\n".join(text_report(runs, knobs, groups)))
    if opts.csv:  # after the report: a full disk loses the CSV, not the runs
        try:
            with open(opts.csv, "w", newline="") as f:
                csv.writer(f).writerows(csv_rows(runs, knobs))
        except OSError as e:
            raise UsageError(f"--csv {opts.csv}: cannot write: {e.strerror or e} (the report above holds the "
                             "runs)") from None
    return 130 if interrupted else 0
