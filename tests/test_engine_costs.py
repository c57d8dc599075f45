"""Cost profiles: the reference, a calibrated one saved and loaded, --costs, and the model's CPU and
clock following the profile deterministically."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.cost import GROUPS, REFERENCE, REFERENCE_NS, CostProfile, CostProfileError
from engine.scenario import load_scenario
from engine.sim import Simulation
from ksmtui.cli import main as cli
from ksmtui.host import costs


def _cpu(profile: CostProfile, full_scans: int = 2) -> tuple[int, int]:
    sim = Simulation(load_scenario("scenarios/timing.toml"), costs=profile)
    sim.run(full_scans=full_scans)
    return sim.ksm.ksmd_cpu_ns, sim.now_ns


def test_a_profile_scales_its_groups_and_survives_json():
    p = CostProfile.scaled({"scan": 0.5, "merge": 2.0}, 100, "test", wait_per_cpu=0.25)
    assert p.ns["scan_step"] == REFERENCE_NS["scan_step"] // 2 and p.ns["merge"] == 2 * REFERENCE_NS["merge"]
    assert p.ns["checksum_4k"] == REFERENCE_NS["checksum_4k"]
    assert CostProfile.from_json(json.loads(json.dumps(p.to_json())), "x") == p
    assert set().union(*GROUPS.values()) == set(REFERENCE_NS)  # every constant in one group


@pytest.mark.parametrize("data, expected", [
    ([], "x: expected a JSON object"),
    ({"ns": {"call": 1}, "hz": 250, "label": "l"}, "x: ns: expected a non-negative integer for each of call"),
    ({"ns": dict(REFERENCE_NS), "hz": 0, "label": "l"}, "x: hz: expected an integer 1..10000"),
    ({"ns": dict(REFERENCE_NS), "hz": 250, "label": ""}, "x: label: expected a string"),
    ({"ns": dict(REFERENCE_NS), "hz": 250, "label": "l", "wait_per_cpu": -1}, "x: wait_per_cpu: expected a number"),
])
def test_a_bad_profile_is_one_line_naming_the_field(data, expected):
    with pytest.raises(CostProfileError) as err:
        CostProfile.from_json(data, "x")
    assert str(err.value).startswith(expected)


BASE = dict.fromkeys(GROUPS, 1.0)


def test_the_model_follows_the_profile_deterministically():
    cpu, now = _cpu(REFERENCE)
    assert _cpu(REFERENCE) == (cpu, now)
    # every base constant is even: half of each is exactly half the CPU
    full, _ = _cpu(CostProfile.scaled(BASE, 250, "base"))
    half, _ = _cpu(CostProfile.scaled({g: s / 2 for g, s in BASE.items()}, 250, "half"))
    assert half * 2 == full
    # waiting for a CPU stretches the clock, never the CPU
    cpu_w, now_w = _cpu(CostProfile(wait_per_cpu=3.0, label="busy"))
    assert cpu_w == cpu and now_w > now


def _only(name: str, scenario, pages_to_scan: int, full_scans: int) -> int:
    """ksmd's CPU with one constant at 1 ns and every other at 0: how often it was charged."""
    ns = dict.fromkeys(REFERENCE_NS, 0) | {name: 1}
    sim = Simulation(scenario, overrides={"pages_to_scan": pages_to_scan}, costs=CostProfile(ns, label=name))
    sim.run(full_scans=full_scans)
    return sim.ksm.ksmd_cpu_ns


def test_a_tree_entry_is_cold_the_first_time_a_wake_up_reads_it():
    from engine.scenario import parse_scenario

    unique = parse_scenario("name = 'u'\n[ksm]\nsmart_scan = 0\n[[process]]\nname = 'a'\n"
                            "[[process.region]]\nname = 'heap'\npages = 300\n", "u.toml", Path("."))
    # a page a wake-up: every level of every walk is an entry that wake-up had not read
    levels = _only("tree_step", unique, 1, 3)
    assert levels > 300 * 5 and _only("tree_cold", unique, 1, 3) == levels
    # a pass a wake-up: the unstable tree, built anew every pass, is all entries this wake-up
    # wrote, so cached
    assert _only("tree_cold", unique, 300, 3) == 0
    # ten wake-ups a pass: an entry is cold the first time a later wake-up of the pass reads it
    tenth = _only("tree_cold", unique, 30, 3)
    assert 0 < tenth <= 2 * 300 * 9 and tenth < levels // 2
    assert _only("tree_cold", unique, 10, 3) > tenth  # smaller batches read the top levels again
    # stable_node chains: a dup read for the first time in a wake-up is cold too
    chains = load_scenario("scenarios/chains.toml")
    assert _only("tree_cold", chains, 1, 3) > _only("tree_step", chains, 1, 3)
    assert REFERENCE.ns["tree_cold"] == 0  # the reference profile has none: its runs are as before


def test_a_profile_from_before_the_stable_group_prices_a_stable_level_as_it_did():
    old = CostProfile.scaled({"tree": 0.5}, 250, "old").to_json()
    del old["ns"]["stable_step"]
    assert CostProfile.from_json(old, "old.json").ns["stable_step"] == old["ns"]["tree_step"] == 60


def test_the_estimate_counts_the_entries_a_batch_reads_cold():
    from engine.estimate import cold_entries

    assert cold_entries(0, 1000) == 0 and cold_entries(5, 0) == 0
    assert cold_entries(1, 1023) == pytest.approx(10)  # one walk: a path from the root, ten levels
    assert cold_entries(10 ** 6, 1023) == pytest.approx(1023)  # many: the whole tree, once
    assert cold_entries(100, 1023) < cold_entries(1000, 1023) < 1000 * 10 / 2


def test_the_profile_in_use_is_saved_loaded_pinned_and_named(tmp_path, capsys):
    assert costs.load_profile() is REFERENCE  # conftest: no profile saved
    costs.save({"settled": 500.0}, 1000)  # the bench's workloads alone are no profile
    assert costs.load_profile() is REFERENCE
    mine = CostProfile.scaled({"scan": 0.5}, 1000, "this machine, measured today")
    costs.save_profile(mine)
    costs.save({"settled": 400.0}, 1000)  # the bench rewriting its file keeps the profile
    assert costs.load_profile() == mine and costs.load_profile("reference") is REFERENCE
    assert costs.load_profile(str(costs.profile_file())) == mine
    assert costs._entries()["settled"][1000]["ns_per_page"] == 400.0
    with pytest.raises(CostProfileError, match="expected a cost profile"):
        costs.load_profile(str(costs.cache_file()))
    assert cli(["run", "scenarios/timing.toml", "--full-scans", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["costs"], out["hz"]) == ("this machine, measured today", 1000)
    assert cli(["run", "scenarios/timing.toml", "--full-scans", "1", "--costs", "reference"]) == 0
    assert "costs: reference costs" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert cli(["run", "scenarios/timing.toml", "--costs", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"ksmtui run: error: {bad}: not JSON")


def test_calibration_decomposes_the_model_exactly_and_fits_known_scales():
    from engine.cost import BASE_NS
    from ksmtui.bench.calibrate import fit, modelled, workloads

    base = CostProfile(dict(BASE_NS), label="base")
    rows = []
    truth = {"wakeup": 0.9, "scan": 0.6, "checksum": 1.1, "tree": 0.5, "stable": 0.3, "merge": 0.2, "cold": 0.7}
    cold = {}
    for w in workloads(800):
        parts = modelled(w)
        sim = Simulation(w.scenario, costs=base)
        sim.run(full_scans=w.start) if w.start else None
        cpu0 = sim.ksm.ksmd_cpu_ns
        sim.run(full_scans=w.end)
        assert sum(parts.values()) == sim.ksm.ksmd_cpu_ns - cpu0  # the model is linear in its groups
        rows.append({"model_ns": parts, "kernel_ns": [sum(truth[g] * parts[g] for g in GROUPS)]})
        cold[w.name] = parts["cold"] / sum(parts.values())
    # the cold entries tell small batches from big ones, and big trees from small ones
    assert cold["merging-small"] > cold["merging"] and cold["unique-large"] > cold["unique-small"] == 0
    assert fit(rows) == pytest.approx(truth, abs=1e-3)


def test_calibration_measures_round_by_round_so_every_workload_sees_the_same_drift(monkeypatch):
    import ksmtui.bench.calibrate as cal

    order = []
    monkeypatch.setattr(cal, "modelled", lambda w: {g: 1 for g in GROUPS})
    monkeypatch.setattr(cal, "measured", lambda w: order.append(w.name) or (1_000, 10))
    monkeypatch.setattr(cal, "config_hz", lambda: 250)
    profile, rows = cal.calibrate(repeat=3, say=lambda _: None)
    names = [w.name for w in cal.workloads()]
    assert order == names * 3 and [r["workload"] for r in rows] == names
    assert all(len(r["kernel_ns"]) == 3 for r in rows) and profile.wait_per_cpu == 0.01


def test_calibrate_reports_each_workloads_runs_beside_its_median(monkeypatch, capsys):
    import ksmtui.bench.calibrate as cal
    import ksmtui.kernel.run as kernel_run

    seen: dict[str, int] = {}

    def measured(w):  # each workload's runs: 2, 9 and 4 ms
        seen[w.name] = seen.get(w.name, -1) + 1
        return (2_000_000, 9_000_000, 4_000_000)[seen[w.name]], 0
    monkeypatch.setattr(cal, "modelled", lambda w: {g: 1_000_000 for g in GROUPS})
    monkeypatch.setattr(cal, "measured", measured)
    monkeypatch.setattr(cal, "config_hz", lambda: 250)
    monkeypatch.setattr(kernel_run, "unavailable_reason", lambda: None)
    assert cli(["calibrate", "--repeat", "3"]) == 0
    out = capsys.readouterr().out
    assert "ksmd CPU ms (median)" in out and "runs ms" in out
    assert out.count("4.00         2.0-9.0") == len(cal.workloads())


def test_the_estimate_is_paced_and_priced_by_the_profile_and_reports_the_steady_cost():
    from engine import capture as fmt
    from engine.estimate import estimate
    from engine.knobs import KSM_KNOBS

    cap = fmt.from_contents([(1, "a", [(fmt.MERGEABLE, [1, 1, 2, 3] * 50)])])
    knobs = {k: v.default for k, v in KSM_KNOBS.items()}
    ref = estimate(cap, knobs).cost
    # 200 pages at 100 a wake-up: 3 wake-ups a pass, every 24 ms at HZ 250 and sleep_millisecs 20
    assert all(p["wall_s"] == 0.072 for p in ref["passes"])
    steady = ref["steady"]  # every page merged: a settled pass is 3 wake-ups of early returns
    assert steady["pass_wall_s"] == 0.072 and 0 < steady["cpu_share"] * 0.072 - steady["pass_cpu_s"] + 1e-4 < 2e-4
    assert ref["costs"]["profile"] == "reference costs"
    half = estimate(cap, knobs, profile=CostProfile.scaled({g: s / 2 for g, s in BASE.items()}, 1000, "half")).cost
    assert half["costs"]["profile"] == "half" and half["ns_per_page"]["ksm_page"] * 2 == ref["ns_per_page"]["ksm_page"]
    assert half["passes"][0]["wall_s"] == half["steady"]["pass_wall_s"] == 0.063  # 21 ms a wake-up at HZ 1000


def test_the_estimate_prices_a_pass_as_the_simulation_does():
    """Its formulas (paths at the trees' sizes, cold entries of random walks) against the engine's
    operations: the timing scenario's layout, its merging pass and a settled unique pass."""
    import random

    from engine import capture as fmt
    from engine.estimate import estimate
    from engine.knobs import KSM_KNOBS
    from ksmtui.bench.calibrate import Workload, _window_cpu, workloads

    rng = random.Random(1)
    cap = fmt.from_contents([(p, f"app{p}", [(fmt.MERGEABLE, [rng.randrange(500) for _ in range(2000)])])
                             for p in (1, 2, 3)] + [(4, "unique", [(fmt.MERGEABLE, list(range(10**6, 10**6 + 2000)))])])
    timing = load_scenario("scenarios/timing.toml")
    unique = next(w for w in workloads() if w.name == "unique")
    alone = fmt.from_contents([(1, "app", [(fmt.MERGEABLE, list(range(10**6, 10**6 + 8000)))])])
    cold = CostProfile.scaled(BASE | {"cold": 1.5}, 250, "cold entries")
    for profile in (REFERENCE, cold):
        for pts in (100, 1600):
            knobs = {k: v.default for k, v in KSM_KNOBS.items()} | {"pages_to_scan": pts}
            est = estimate(cap, knobs, profile=profile).cost["passes"][1]["ksmd_cpu_s"] * 1e9
            sim = _window_cpu(Workload("t", "", replace(timing, ksm=timing.ksm | knobs), 1, 2), profile)
            assert est == pytest.approx(sim, rel=0.1)
        knobs = {k: v.default for k, v in KSM_KNOBS.items()} | dict(unique.scenario.ksm)
        est = estimate(alone, knobs, profile=profile).cost["steady"]["pass_cpu_s"] * 1e9
        assert est == pytest.approx(_window_cpu(Workload("u", "", unique.scenario, 2, 3), profile), rel=0.15)
