"""What an operator should see at once: KSM costing more memory than it saves (general_profit
below zero), and ksmd using more of a CPU than allowed. Each alert is {"alert": a code, "value":
the figure, "limit": what it is held to, "text": one sentence}: the UI's header shows the texts,
`ksmtui host --json` and `--csv` carry them with every sample.

ksmd's CPU is its /proc/PID/schedstat time over the wall time between two samples. Unless
`--alert-cpu` says otherwise, the limit is the host's own advisor_max_cpu (70% by default):
the share of a CPU the kernel's scan-time advisor keeps ksmd under, so that a ksmd above it is
doing more than the kernel itself would let it (a pages_to_scan set by hand, or too short a
sleep_millisecs).
"""

from __future__ import annotations

from ksmtui.host.sampler import HostSample
from ksmtui.text.units import mib

ALERT_CODES = ("negative_profit", "ksmd_cpu")


def ksmd_cpu(before: HostSample | None, after: HostSample) -> float | None:
    """The share of one CPU ksmd used between two samples (None: one sample, no ksmd, or another
    ksmd: its pid changed)."""
    if before is None:
        return None
    a, b = before.ksmd, after.ksmd
    dt = after.time - before.time
    if dt <= 0 or "cpu_ns" not in a or "cpu_ns" not in b or a.get("pid") != b.get("pid"):
        return None
    return max(0, b["cpu_ns"] - a["cpu_ns"]) / 1e9 / dt


def cpu_limit(sample: HostSample, alert_cpu: float | None) -> float | None:
    """The percent of a CPU above which ksmd alerts: --alert-cpu, else the host's advisor_max_cpu;
    None: no limit (--alert-cpu off, or a kernel without the advisor)."""
    if alert_cpu is not None:
        return None if alert_cpu < 0 else alert_cpu
    knob = sample.knobs.get("advisor_max_cpu")
    return float(knob) if isinstance(knob, int) else None


def alerts(sample: HostSample, cpu: float | None, alert_cpu: float | None = None) -> list[dict]:
    """The alerts that hold in this sample; `cpu` is ksmd's share of a CPU lately (ksmd_cpu),
    `alert_cpu` the --alert-cpu percent (None: the host's advisor_max_cpu; negative: off)."""
    out = []
    profit = sample.ksm.get("general_profit")
    if isinstance(profit, int) and profit < 0:
        out.append({"alert": "negative_profit", "value": profit, "limit": 0,
                    "text": f"general_profit {mib(profit)}: KSM costs more memory than it saves"})
    limit = cpu_limit(sample, alert_cpu)
    if cpu is not None and limit is not None and cpu * 100 > limit:
        source = "--alert-cpu" if alert_cpu is not None else "advisor_max_cpu"
        out.append({"alert": "ksmd_cpu", "value": round(cpu * 100, 1), "limit": limit,
                    "text": f"ksmd CPU {cpu * 100:.1f}% of a CPU, above {limit:g}% ({source})"})
    return out
