"""The tunables of /sys/kernel/mm/ksm and of the simulator, with the kernel's defaults and ranges.

One table serves the scenario loader, `--set KNOB=VALUE`, the `set` event and the UI, so a value
is accepted or refused in the same words everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

FLOWS = ("optimized", "legacy", "series-v1")
ADVISOR_MODES = ("none", "scan-time")


class KnobError(ValueError):
    """A value the kernel would refuse (EINVAL or EBUSY); the message says what was expected."""


@dataclass(frozen=True)
class Knob:
    name: str
    default: int | str
    expected: str  # what the kernel accepts, in words, for error messages
    # What the kernel accepts: an integer knob, low..high (no upper bound if None); a string
    # knob, one of choices.
    low: int = 0
    high: int | None = None
    choices: tuple[str, ...] = ()
    sysfs: bool = True  # False for [engine] knobs
    # The largest value the kernel's parser reads (kstrtoint: INT_MAX); above it the write fails
    # with ERANGE before the knob's own check (EINVAL) runs.
    parse_max: int | None = None

    def parse(self, value: object) -> int | str:
        """Validate a TOML value or a command-line string; raise KnobError naming what was expected."""
        if isinstance(self.default, str):
            if isinstance(value, str) and value in self.choices:
                return value
            raise KnobError(f"expected {self.expected}, got {value!r}")
        if isinstance(value, str):
            text = value.strip()
            if text.lower() in ("y", "yes", "on", "true") and self.expected.startswith("0 or 1"):
                value = 1
            elif text.lower() in ("n", "no", "off", "false") and self.expected.startswith("0 or 1"):
                value = 0
            else:
                try:
                    value = int(text, 0)
                except ValueError:
                    raise KnobError(f"expected {self.expected}, got {value!r}") from None
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int) and self.parse_max is not None and value > self.parse_max:
            raise KnobError(f"ERANGE: beyond the kernel's int ({self.parse_max}); expected {self.expected}, got "
                            f"{value!r}")
        if not isinstance(value, int) or value < self.low or (self.high is not None and value > self.high):
            raise KnobError(f"expected {self.expected}, got {value!r}")
        return value


_U32 = 2**32 - 1
_ULONG = 2**64 - 1

KSM_KNOBS: dict[str, Knob] = {
    k.name: k
    for k in (
        Knob("run", 1, "0, 1 or 2", high=2),
        Knob("pages_to_scan", 100, "an integer 0..4294967295", high=_U32),
        Knob("sleep_millisecs", 20, "an integer 0..4294967295", high=_U32),
        Knob("max_page_sharing", 256, "an integer >= 2", low=2, parse_max=2**31 - 1),
        Knob("use_zero_pages", 0, "0 or 1", high=1),
        Knob("merge_across_nodes", 1, "0 or 1", high=1),
        Knob("smart_scan", 1, "0 or 1", high=1),
        Knob("stable_node_chains_prune_millisecs", 2000, "an integer 0..4294967295", high=_U32),
        Knob("advisor_mode", "none", '"none" or "scan-time"', choices=ADVISOR_MODES),
        Knob("advisor_target_scan_time", 200, "an integer >= 1 (seconds)", low=1, high=_ULONG),
        Knob("advisor_max_cpu", 70, "an integer 0..18446744073709551615 (percent)", high=_ULONG),
        Knob("advisor_min_pages_to_scan", 500, "an integer 0..18446744073709551615", high=_ULONG),
        Knob("advisor_max_pages_to_scan", 30000, "an integer 0..18446744073709551615", high=_ULONG),
    )
}

ENGINE_KNOBS: dict[str, Knob] = {
    k.name: k
    for k in (
        Knob("flow", "optimized", '"optimized", "legacy" or "series-v1"', choices=FLOWS, sysfs=False),
        Knob("numa_nodes", 1, "an integer 1..64", low=1, high=64, sysfs=False),
        Knob("latency", "model", '"model" or "wall"', choices=("model", "wall"), sysfs=False),
        # CONFIG_HZ of the kernel ksmd's sleeps are paced in (engine/timeline.py); 0, the default:
        # the cost profile's (the calibrated machine's, or engine/cost.py DEFAULT_HZ)
        Knob("hz", 0, "an integer 1..10000 (CONFIG_HZ), or 0 for the cost profile's", high=10_000, sysfs=False),
    )
}

ALL_KNOBS: dict[str, Knob] = {**KSM_KNOBS, **ENGINE_KNOBS}

# The kernel's defaults differ from a scenario's in one place: run is 0 at boot, 1 in a scenario.
KERNEL_DEFAULTS: dict[str, int | str] = {**{k: v.default for k, v in KSM_KNOBS.items()}, "run": 0}
