"""Cost profiles: the reference, a calibrated one saved and loaded, --costs, and the model's CPU and
clock following the profile deterministically."""

from __future__ import annotations

import json

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


WARM = dict.fromkeys(GROUPS, 1.0) | {"cold": 0.0}


def test_the_model_follows_the_profile_deterministically():
    cpu, now = _cpu(REFERENCE)
    assert _cpu(REFERENCE) == (cpu, now)
    # every base constant is even: half of each is exactly half the CPU (the cold cost, capped per
    # wake-up, is not proportional: off here)
    full, _ = _cpu(CostProfile.scaled(WARM, 250, "base"))
    half, _ = _cpu(CostProfile.scaled({g: s / 2 for g, s in WARM.items()}, 250, "half"))
    assert half * 2 == full
    # waiting for a CPU stretches the clock, never the CPU
    cpu_w, now_w = _cpu(CostProfile(wait_per_cpu=3.0, label="busy"))
    assert cpu_w == cpu and now_w > now


def test_a_wake_up_pays_for_the_caches_it_finds_cold_up_to_its_window():
    from engine.cost import COLD_WINDOW_NS

    cold = CostProfile.scaled(WARM | {"cold": 0.5}, 250, "cold")
    assert cold.cold_ns(100_000) == 50_000 and cold.cold_ns(10 ** 9) == COLD_WINDOW_NS // 2
    assert REFERENCE.cold_ns(100_000) == 0
    warm = CostProfile.scaled(WARM, 250, "warm")
    # at most half of each wake-up's work, and of the window: timing.toml's wake-ups of 100 pages
    # are over the window where they walk the trees, under it where they only checksum
    wakeups = _cpu(CostProfile({k: v if k == "wakeup" else 0 for k, v in warm.ns.items()}, label="w"))[0]
    n = wakeups // warm.ns["wakeup"]
    (cpu_warm, now_warm), (cpu_cold, now_cold) = _cpu(warm), _cpu(cold)
    extra = cpu_cold - cpu_warm
    assert n * COLD_WINDOW_NS // 4 < extra < min(n * COLD_WINDOW_NS // 2, (cpu_warm - wakeups) // 2)
    assert _cpu(cold) == (cpu_cold, now_cold) and now_cold >= now_warm


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
    from ksmtui.bench.calibrate import cold_part, fit, modelled, workloads

    warm = CostProfile(dict(BASE_NS, cold=0), label="base")
    provisional = CostProfile.scaled(WARM, 250, "provisional")
    rows = []
    truth = {"wakeup": 0.9, "scan": 0.6, "checksum": 1.1, "tree": 0.5, "merge": 0.2, "cold": 0.7}
    for w in workloads(800):
        parts = modelled(w)
        sim = Simulation(w.scenario, costs=warm)
        sim.run(full_scans=w.start) if w.start else None
        cpu0 = sim.ksm.ksmd_cpu_ns
        sim.run(full_scans=w.end)
        assert parts["cold"] == 0  # without a profile to find each wake-up's work on
        assert sum(parts.values()) == sim.ksm.ksmd_cpu_ns - cpu0  # the model is linear in its groups
        parts["cold"] = cold_part(w, provisional)
        rows.append({"model_ns": parts, "kernel_ns": [sum(truth[g] * parts[g] for g in GROUPS)]})
    assert all(r["model_ns"]["cold"] > 0 for r in rows)
    assert fit(rows) == pytest.approx(truth, abs=1e-3)


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
    half = estimate(cap, knobs, profile=CostProfile.scaled({g: s / 2 for g, s in WARM.items()}, 1000, "half")).cost
    assert half["costs"]["profile"] == "half" and half["ns_per_page"]["ksm_page"] * 2 == ref["ns_per_page"]["ksm_page"]
    assert half["passes"][0]["wall_s"] == half["steady"]["pass_wall_s"] == 0.063  # 21 ms a wake-up at HZ 1000
