"""Shared fixtures."""

from __future__ import annotations

import fcntl

import pytest

# One lock for the whole machine: two pytest processes (or xdist workers) must never drive the
# real KSM at the same time, since its counters and knobs are global.
KERNEL_LOCK = "/tmp/ksmtui-kernel.lock"


@pytest.fixture
def kernel():
    """The real /sys/kernel/mm/ksm, for one test at a time, back at its defaults afterwards (also
    when the test fails). Skips, saying why, where it is not writable."""
    from ksmtui import kernel as real

    reason = real.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with open(KERNEL_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        real.restore_defaults()
        try:
            yield real
        finally:
            real.restore_defaults()
