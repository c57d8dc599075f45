"""A model of Linux KSM (mm/ksm.c) over a simulated multi-process machine. No UI imports here."""


def build_info() -> str:
    """Which engine runs here, for `ksmtui bench`."""
    import sys

    return f"interpreted (CPython {sys.version.split()[0]})"
