"""Units as every view shows them."""

MIB = 1 << 20


def mib(n: int) -> str:
    """Bytes as a saving is shown: MiB, or KiB below a tenth of one (not "-0.0 MiB")."""
    if abs(n) < MIB // 10:  # before merging pays for the rmap_items
        return f"{n / 1024:,.0f} KiB"
    return f"{n / MIB:,.{0 if abs(n) >= 100 * MIB else 1}f} MiB"
