"""Result hashes: what every built-in scenario x flow run ends with, as `ksmtui run NAME --flow F
--json` prints it, less its wall-clock fields, hashed. A refactoring of the engine must leave them
all unchanged; a change that means to alter results regenerates them and says so in its commit.

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


def pairs() -> list[tuple[str, str]]:
    sys.path.insert(0, str(ROOT))
    from engine.scenario import builtin_scenarios

    return [(name, flow) for name, _ in builtin_scenarios() for flow in FLOWS]


def key(name: str, flow: str) -> str:
    return f"{name} --flow {flow}"


def result_hash(name: str, flow: str) -> str:
    """sha256 of the run's JSON, wall-clock fields removed, keys sorted (so the hash is of the
    result, not of the order a printer emits it in)."""
    p = subprocess.run([sys.executable, "-m", "ksmtui", "run", name, "--flow", flow, "--json"],
                       cwd=ROOT, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"ksmtui run {name} --flow {flow}: exit {p.returncode}: {p.stderr.strip()}")
    result = json.loads(p.stdout)
    for field in WALL_CLOCK:
        del result[field]
    return hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()


def recorded() -> dict[str, str]:
    return json.loads(STORE.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.result_hashes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="record the hashes instead of checking them")
    args = parser.parse_args()
    hashes = {key(name, flow): result_hash(name, flow) for name, flow in pairs()}
    if args.write:
        STORE.write_text(json.dumps(hashes, indent=1) + "\n")
        print(f"wrote {len(hashes)} hashes to {STORE.relative_to(ROOT)}")
        return 0
    want = recorded()
    differ = [k for k in sorted(set(hashes) | set(want)) if hashes.get(k) != want.get(k)]
    for k in differ:
        print(f"differs: ksmtui run {k}: recorded {want.get(k)}, now {hashes.get(k)}")
    print(f"{len(hashes) - len(differ)} of {len(hashes)} pairs unchanged" if differ else
          f"all {len(hashes)} pairs unchanged")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
