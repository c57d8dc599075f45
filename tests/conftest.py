"""Shared fixtures."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Property tests: "ci" keeps the suite within its time (CI and every run of the suite), "deep" is
# for a run by hand: HYPOTHESIS_PROFILE=deep python -m pytest tests/test_engine_properties.py
_PROPERTIES = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=150, **_PROPERTIES)
settings.register_profile("deep", max_examples=5000, **_PROPERTIES)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def kernel():
    """The real /sys/kernel/mm/ksm, for one test at a time, back at its defaults afterwards (also
    when the test fails). Skips, saying why, where it is not writable."""
    from ksmtui.kernel import run as real

    reason = real.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with real.machine_lock():
        real.restore_defaults()
        try:
            yield real
        finally:
            real.restore_defaults()
