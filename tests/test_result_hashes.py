"""Every built-in scenario x flow ends where it ended when the hashes were recorded, and its single
steps show the same traces and walks: a refactoring of the engine leaves results bit-identical
(tests/result_hashes.py says how the hashes are made).

The suite checks every pair's steps, and every pair's run but the three of `large` (a third of the
runs' time, and the same engine paths as `fleet` at scale); `python -m tests.result_hashes` checks
all of them.
"""

from __future__ import annotations

import pytest

from tests.result_hashes import key, kind_pairs, measured_hash, pairs, recorded, result_hash, step_hash

SUITE_SKIPS = {"large"}
RECORDED = recorded()
REGENERATE = "if it is meant to, python -m tests.result_hashes --write and say why in the commit"


def test_every_pair_is_recorded():
    every = sorted(key(name, flow) for name, flow in pairs())
    assert sorted(RECORDED) == ["measured", "run", "step"]
    assert sorted(RECORDED["run"]) == sorted(RECORDED["step"]) == every
    assert sorted(RECORDED["measured"]) == sorted(key(name, flow) for name, flow in kind_pairs("measured"))


@pytest.mark.parametrize(("name", "flow"), [p for p in pairs() if p[0] not in SUITE_SKIPS])
def test_result_unchanged(name, flow):
    assert result_hash(name, flow) == RECORDED["run"][key(name, flow)], (
        f"ksmtui run {name} --flow {flow} --json changed; {REGENERATE}")


@pytest.mark.parametrize(("name", "flow"), kind_pairs("measured"))
def test_result_on_a_measured_profile_unchanged(name, flow):
    assert measured_hash(name, flow) == RECORDED["measured"][key(name, flow)], (
        f"the run of {name} --flow {flow} on BASE_NS changed; {REGENERATE}")


@pytest.mark.parametrize(("name", "flow"), pairs())
def test_single_steps_unchanged(name, flow):
    assert step_hash(name, flow) == RECORDED["step"][key(name, flow)], (
        f"the single steps of {name} --flow {flow} changed; {REGENERATE}")
