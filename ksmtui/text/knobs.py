"""What each knob means, in its unit, with the values the kernel takes: one table for the model's
knobs dialog, the host's, and the command line (`--set` in `ksmtui --help`, `ksmtui host --help`).

The meanings are Documentation/admin-guide/mm/ksm.rst's (v6.8+: smart_scan, the advisor) in our
words; the accepted values and defaults come from engine.knobs, which checks them as mm/ksm.c does,
so that a range is written in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.knobs import ALL_KNOBS, KERNEL_DEFAULTS


@dataclass(frozen=True)
class KnobDoc:
    meaning: str
    unit: str  # what a value counts ("" for a mode or a choice, whose values say it)


KNOB_DOCS: dict[str, KnobDoc] = {
    "run": KnobDoc("0 stops ksmd and keeps what it merged, 1 runs it, 2 stops it and unmerges every KSM page", ""),
    "pages_to_scan": KnobDoc("pages ksmd scans at each wake-up before it sleeps again (the advisor sets it in "
                             "scan-time mode)", "pages"),
    "sleep_millisecs": KnobDoc("how long ksmd sleeps between two batches of pages_to_scan", "ms"),
    "max_page_sharing": KnobDoc("the most mappings one KSM page may have; beyond it ksmd starts another copy (a dup "
                                "in a stable_node chain)", "sharers"),
    "use_zero_pages": KnobDoc("1: all-zero pages merge with the kernel's zero page instead of with each other "
                              "(for pages merged after the change)", ""),
    "merge_across_nodes": KnobDoc("0: merge only pages of the same NUMA node (a tree per node); changes only while "
                                  "no KSM page exists (run=2 first)", ""),
    "smart_scan": KnobDoc("1: skip pages that did not merge before, the longer the more often they failed "
                          "(pages_skipped counts them)", ""),
    "stable_node_chains_prune_millisecs": KnobDoc("how often ksmd looks for stale dups of the KSM pages that reached "
                                                  "max_page_sharing", "ms"),
    "advisor_mode": KnobDoc("none: pages_to_scan as set; scan-time: the advisor retunes pages_to_scan after each "
                            "full scan", ""),
    "advisor_target_scan_time": KnobDoc("the advisor aims at one full scan in this time (lower: more aggressive)",
                                        "s"),
    "advisor_max_cpu": KnobDoc("the advisor keeps ksmd under this share of one CPU", "%"),
    "advisor_min_pages_to_scan": KnobDoc("the advisor's lowest pages_to_scan, and where it starts", "pages"),
    "advisor_max_pages_to_scan": KnobDoc("the advisor's highest pages_to_scan", "pages"),
    # the model's own, no /sys/kernel/mm/ksm file
    "flow": KnobDoc("which cmp_and_merge_page() the model runs: v6.11+'s (optimized), v6.10's (legacy) or the "
                    "rework's unmerged v1 (series-v1)", ""),
    "numa_nodes": KnobDoc("NUMA nodes of the simulated machine", "nodes"),
    "latency": KnobDoc("model: latency from the cost model; wall: this machine's time running the model", ""),
    "hz": KnobDoc("CONFIG_HZ of the kernel whose jiffies pace ksmd's sleeps (0: the cost profile's)", "Hz"),
}


def knob_help(name: str) -> str:
    """One line: what the knob means, its unit, the values it takes and its default."""
    doc, knob = KNOB_DOCS.get(name), ALL_KNOBS.get(name)
    if doc is None or knob is None:
        return f"{name}: a knob this ksmtui does not know (a newer kernel's); see ksm.rst"
    unit = f" · unit: {doc.unit}" if doc.unit else ""
    default = KERNEL_DEFAULTS.get(name, knob.default)
    where = "kernel default" if knob.sysfs else "default"
    return f"{name}: {doc.meaning}{unit} · {knob.expected} · {where} {default}"


def knobs_help(names, width: int = 100) -> str:
    """The knobs' lines for a command's --help: one paragraph a knob, wrapped with a hanging indent."""
    import textwrap

    return "\n".join(textwrap.fill(knob_help(name), width, subsequent_indent="    ", break_on_hyphens=False)
                     for name in names)
