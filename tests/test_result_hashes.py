"""Every built-in scenario x flow ends where it ended when the hashes were recorded: a refactoring
of the engine leaves results bit-identical (tests/result_hashes.py says how they are made).

The suite checks every pair but the three of `large` (a third of the time, and the same engine
paths as `fleet` at scale); `python -m tests.result_hashes` checks all of them.
"""

from __future__ import annotations

import pytest

from tests.result_hashes import key, pairs, recorded, result_hash

SUITE_SKIPS = {"large"}
RECORDED = recorded()


def test_every_pair_is_recorded():
    assert sorted(RECORDED) == sorted(key(name, flow) for name, flow in pairs())


@pytest.mark.parametrize(("name", "flow"), [p for p in pairs() if p[0] not in SUITE_SKIPS])
def test_result_unchanged(name, flow):
    assert result_hash(name, flow) == RECORDED[key(name, flow)], (
        f"ksmtui run {name} --flow {flow} --json changed; if it is meant to, "
        "python -m tests.result_hashes --write and say why in the commit")
