"""`ksmtui estimate`: ksmd's CPU once settled (modelled) agrees with the model's own ksmd run long
after settling; a process that shares no KSM page says why (pages shared since fork)."""

import numpy as np
import pytest

from engine import capture as fmt
from engine.estimate import estimate
from engine.knobs import KSM_KNOBS
from engine.scenario import parse_scenario, scenario_toml
from engine.sim import Simulation
from ksmtui.cli import main as cli

KNOBS = {**{k: v.default for k, v in KSM_KNOBS.items()}, "run": 1}


def workload() -> fmt.Capture:
    rng = np.random.default_rng(5)
    shared = list(range(1, 301))  # 300 contents all three hold: KSM pages
    return fmt.from_contents([(pid, f"p{pid}", [(fmt.MERGEABLE, shared + rng.integers(10_000 * pid, 10_000 * pid
                                                                                        + 9_000, 500).tolist())])
                              for pid in (1, 2, 3)])


@pytest.mark.parametrize("smart_scan", [0, 1])
def test_the_settled_cpu_share_is_the_models_long_after_settling(tmp_path, smart_scan):
    knobs = {**KNOBS, "smart_scan": smart_scan, "pages_to_scan": 200}
    cap = workload()
    steady = estimate(cap, knobs).cost["steady"]
    path = tmp_path / "c.npz"
    fmt.save(cap, path)
    sim = Simulation(parse_scenario(scenario_toml(cap, path.name, "t"), str(path), tmp_path), overrides=knobs)
    sim.run(full_scans=40)  # ages saturate: every unmerged page is skipped 8 visits in 9 by now
    cpu, now = sim.ksm.ksmd_cpu_ns, sim.now_ns
    sim.run(full_scans=40 + 18)  # two smart scan cycles
    share = (sim.ksm.ksmd_cpu_ns - cpu) / (sim.now_ns - now)
    assert steady["pages"] == 300 * 3 + 1500 - 2 * 0 and steady["unmerged_tried_every"] == (9 if smart_scan else 1)
    # measured: 4.56% vs the model's 5.94% without smart_scan, 2.00% vs 2.39% with it. The estimate's
    # per-call costs (builtin_costs) charge get_mergeable_page once per unique call, the model once
    # per unstable tree level: the estimate is low by that, not by the pass structure modelled here
    assert share * 0.7 < steady["cpu_share"] < share, (steady, share)


def test_processes_sharing_pages_since_fork_say_so(tmp_path, capsys):
    cap = fmt.from_contents([
        (1, "parent", [(fmt.MERGEABLE, [3, 4, 5], [0, 1, 2])]),
        (2, "child", [(fmt.MERGEABLE, [3, 4, 5], [0, 1, 2])]),
        (3, "alone", [(fmt.MERGEABLE, [7, 8])]),
    ])
    e = estimate(cap, KNOBS)
    assert e.processes[1]["fork_shared"] == {"pages": 3, "with": {2: 3}} and e.processes[3]["fork_shared"]["pages"] == 0
    fmt.save(cap, tmp_path / "f.npz")
    assert cli(["estimate", str(tmp_path / "f.npz"), "--set", "run=1"]) == 0
    out = capsys.readouterr().out
    assert "- (3 pages shared since fork with 2 (3): already the same physical page, which KSM never merges)" in out
    assert "- (3 pages shared since fork with 1 (3)" in out
    assert "- (no content of it is found in another page KSM scans)" in out
    assert "once settled (modelled): ksmd CPU" in out
