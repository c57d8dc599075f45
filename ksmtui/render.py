"""Pure text renderers shared by the CLI and the UI (golden-string tested)."""

from __future__ import annotations

from typing import Sequence

from engine.snapshot import bucket_bounds

_SUFFIXES = ((1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K"))


def size_label(n: int) -> str:
    """bpftrace's binary suffixes: 512, 1K, 2K, ... 1M."""
    for unit, suffix in _SUFFIXES:
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def bucket_label(index: int) -> str:
    if index == 0:
        return "[0]"
    if index == 1:
        return "[1]"
    low, high = bucket_bounds(index)
    return f"[{size_label(low)}, {size_label(high)})"


def hist_lines(counts: Sequence[int], width: int = 52) -> list[str]:
    """A histogram as bpftrace's hist() prints it: label in 16, count in 8, a bar of `@` in `width`.

    Rows run from the first to the last non-zero bucket, zero buckets between included.
    """
    nonzero = [i for i, c in enumerate(counts) if c]
    if not nonzero:
        return []
    top = max(counts)
    lines = []
    for i in range(nonzero[0], nonzero[-1] + 1):
        bar = "@" * (counts[i] * width // top)
        lines.append(f"{bucket_label(i):<16}{counts[i]:>8} |{bar:<{width}}|")
    return lines


def percentile(counts: Sequence[int], q: float) -> int:
    """The q-th percentile (0..100) of a log2 histogram, as the upper bound of its bucket (0 if empty)."""
    total = sum(counts)
    if not total:
        return 0
    rank = q / 100 * total
    seen = 0
    for i, c in enumerate(counts):
        seen += c
        if c and seen >= rank:
            return bucket_bounds(i)[1]
    return bucket_bounds(len(counts) - 1)[1]
