"""The host's memory as a controller reads it in /proc/meminfo: a scenario's `[memory]` table.

A scenario gives MemTotal and a baseline of MemFree, Buffers, Cached and MemAvailable over time
(a step function: each point holds until the next), the memory as it would be without KSM. What
KSM frees comes on top, as on a real host: every page ksmd merged away (pages_sharing) or replaced
by the zero page (ksm_zero_pages) was given back to the page allocator, so MemFree and
MemAvailable rise by it. Simplified: the saving is added to MemFree at once (the kernel frees the
page when the last mapping moves to the KSM page, within the same wake-up), and the rmap_items'
own slab is not subtracted (general_profit does that; /proc/meminfo shows it as Slab, which
none of the controllers reads).

A process's RSS (what `ps -o rsz` shows, what ksmtuned sums) is its mapped pages, a KSM page
counted once per mapping as the kernel's rss counters do, without the zero page (a special PTE,
in no rss counter), plus `rss_extra_kb`: memory the model does not hold (its binary, libraries,
shared memory), set per process by a point.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

KB = 1024
DEFAULT_MEM_TOTAL_KB = 16 * 1024 * 1024  # 16 GiB: the host both ksmtuned and KubeVirt scale to


@dataclass(frozen=True)
class MemPoint:
    at_ms: int
    mem_free_kb: int
    buffers_kb: int = 0
    cached_kb: int = 0
    mem_available_kb: int = 0
    rss_extra_kb: tuple[tuple[str, int], ...] = ()  # (process name, kB), from this point on


@dataclass(frozen=True)
class MemInfo:
    mem_total_kb: int
    points: tuple[MemPoint, ...] = field(default_factory=tuple)  # by at_ms, the first at 0
    given: bool = True  # False: the default of a scenario without [memory]

    def at(self, now_ms: float) -> MemPoint:
        times = [p.at_ms for p in self.points]
        return self.points[max(bisect.bisect_right(times, now_ms) - 1, 0)]

    def rss_extra(self, now_ms: float) -> dict[str, int]:
        """Every process's rss_extra_kb as the points up to now_ms set it."""
        out: dict[str, int] = {}
        for p in self.points:
            if p.at_ms > now_ms:
                break
            out.update(p.rss_extra_kb)
        return out

    def last_change_ms(self) -> int:
        return self.points[-1].at_ms if self.points else 0


def default_meminfo(modelled_kb: int) -> MemInfo:
    """A scenario without [memory]: a 16 GiB host whose only memory in use is the scenario's
    processes (their pages as first mapped), Buffers and Cached empty."""
    free = max(DEFAULT_MEM_TOTAL_KB - modelled_kb, 0)
    return MemInfo(DEFAULT_MEM_TOTAL_KB, (MemPoint(0, free, 0, 0, free),), given=False)


def meminfo_now(info: MemInfo, now_ms: float, saved_kb: int) -> dict[str, int]:
    """/proc/meminfo's fields, in kB, at now_ms with KSM's saving on top of the baseline."""
    p = info.at(now_ms)
    total = info.mem_total_kb
    return {
        "MemTotal": total,
        "MemFree": min(p.mem_free_kb + saved_kb, total),
        "MemAvailable": min(p.mem_available_kb + saved_kb, total),
        "Buffers": p.buffers_kb,
        "Cached": p.cached_kb,
    }
