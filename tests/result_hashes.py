"""Result hashes: what every built-in scenario x flow run ends with, as `ksmtui run NAME --flow F
--json --costs reference` prints it, less its wall-clock fields, hashed ("run"); the same run on a
measured machine's kind of profile, where every cost group is on, cold tree entries too ("measured");
and what single steps show along the way, each step's StepInfo (the deciding functions' trace)
and the tree walks it made ("step"). A
refactoring of the engine must leave them all unchanged; a change that means to alter results
regenerates them and says so in its commit.

    python -m tests.result_hashes            check every pair against tests/data/result_hashes.json
    python -m tests.result_hashes --write    record every pair (run it on the commit before a change)

No built-in scenario runs on the wall clock ([engine] latency = "wall" would make its latency
histogram, and so its hash, differ from run to run): `wall_s` is the result's only wall-clock field.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "tests" / "data" / "result_hashes.json"
WALL_CLOCK = ("wall_s",)  # fields of the result that measure the wall clock, not the model
FLOWS = ("legacy", "optimized", "series-v1")
# a stepped run: STEP_ROUNDS times, STEP_ADVANCE untraced pages then STEP_PAGES single steps
STEP_ROUNDS, STEP_ADVANCE, STEP_PAGES = 8, 3000, 25


def pairs() -> list[tuple[str, str]]:
    sys.path.insert(0, str(ROOT))
    from engine.scenario import builtin_scenarios

    return [(name, flow) for name, _ in builtin_scenarios() for flow in FLOWS]


def key(name: str, flow: str) -> str:
    return f"{name} --flow {flow}"


def result_hash(name: str, flow: str) -> str:
    """sha256 of the run's JSON, wall-clock fields removed, keys sorted (so the hash is of the
    result, not of the order a printer emits it in)."""
    # the reference costs: a machine's calibrated profile (~/.cache/ksmtui) must not move the hashes
    p = subprocess.run([sys.executable, "-m", "ksmtui", "run", name, "--flow", flow, "--json", "--costs", "reference"],
                       cwd=ROOT, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"ksmtui run {name} --flow {flow}: exit {p.returncode}: {p.stderr.strip()}")
    result = json.loads(p.stdout)
    for field in WALL_CLOCK:
        del result[field]
    return hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()


def step_hash(name: str, flow: str) -> str:
    """sha256 of the single steps of a stepped run: what each showed (StepInfo, its walks)."""
    sys.path.insert(0, str(ROOT))
    from engine.scenario import builtin_scenarios, load_scenario
    from engine.sim import Simulation

    sim = Simulation(load_scenario(dict(builtin_scenarios())[name]), flow=flow)
    h = hashlib.sha256()
    for _ in range(STEP_ROUNDS):
        sim.step_pages(STEP_ADVANCE)
        for _ in range(STEP_PAGES):
            h.update(repr((sim.step_page(), sim.last_walk)).encode())
    return h.hexdigest()


def measured_hash(name: str, flow: str) -> str:
    """sha256 of the run's JSON on engine/cost.py's BASE_NS, every group at scale 1: the reference
    has no cold tree entries, so its runs leave their bookkeeping (engine/ksm.py `touched`) out."""
    sys.path.insert(0, str(ROOT))
    from engine.cost import GROUPS, CostProfile
    from engine.scenario import builtin_scenarios, load_scenario
    from engine.sim import Simulation

    profile = CostProfile.scaled(dict.fromkeys(GROUPS, 1.0), 250, "measured")
    sim = Simulation(load_scenario(dict(builtin_scenarios())[name]), flow=flow, costs=profile)
    sim.run()
    result = sim.result()
    for field in WALL_CLOCK:
        del result[field]
    return hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()


KINDS = {"run": result_hash, "measured": measured_hash, "step": step_hash}
# `large` runs the same engine paths as `fleet` at scale, and interpreted it would double the
# measured runs' time (the suite waits for the interpreted hashes: tests/conftest.py)
MEASURED_SKIPS = {"large"}


def kind_pairs(kind: str) -> list[tuple[str, str]]:
    return [(name, flow) for name, flow in pairs() if not (kind == "measured" and name in MEASURED_SKIPS)]


def recorded() -> dict[str, dict[str, str]]:
    return json.loads(STORE.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.result_hashes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="record the hashes instead of checking them")
    args = parser.parse_args()
    hashes = {kind: {key(name, flow): f(name, flow) for name, flow in kind_pairs(kind)} for kind, f in KINDS.items()}
    total = sum(map(len, hashes.values()))
    if args.write:
        STORE.write_text(json.dumps(hashes, indent=1) + "\n")
        print(f"wrote {total} hashes to {STORE.relative_to(ROOT)}")
        return 0
    want = recorded()
    differ = []
    for kind, now in hashes.items():
        was = want.get(kind, {})
        for k in sorted(set(now) | set(was)):
            if now.get(k) != was.get(k):
                differ.append(k)
                print(f"differs: {kind} {k}: recorded {was.get(k)}, now {now.get(k)}")
    print(f"{total - len(differ)} of {total} hashes unchanged" if differ else f"all {total} hashes unchanged")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
