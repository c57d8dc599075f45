"""What the model counts about each cmp_and_merge_page() call: the path it took, its outcome, the
operations it did and its latency bucket. engine/ksm.py counts them, engine/snapshot.py and the
results show them; both import the names from here.
"""

from __future__ import annotations

from collections.abc import Mapping

# Which kind of page a call was about: decided before the call, as ksm_do_scan() sees the page.
PATHS = ("ksm_page", "anon_page", "zero_page")

# Outcomes of one cmp_and_merge_page() call (docs/model.md, the outcomes table).
OUTCOMES = (
    "already_merged",  # KSM page whose rmap_item is already on its node: early return
    "fork_appended",  # KSM page reached through a new rmap_item (fork): appended to its own node
    "checksum_changed",  # volatile: checksum differs from the last visit (first visits land here)
    "zero_merged",  # mapped to the zero page (use_zero_pages)
    "stable_merged",  # merged into a KSM page found in the stable tree
    "stable_busy",  # stable tree page busy or merge failed: item left bare
    "unstable_inserted",  # no match: inserted into the unstable tree
    "unstable_merged",  # matched an unstable tree page: both became one KSM page
    "unstable_merge_failed",  # matched, but the two-page merge failed
    "unstable_aborted",  # walk aborted (tree page gone, same physical page, other node): not inserted
    "migrated_returned",  # migrated stable node re-homed; its own page returned (series-v1, or a candidate)
)

# The operations counted per call, by the call's path.
WORK = ("calc_checksum", "stable_tree_search", "unstable_tree_search_insert", "memcmp_pages")

# Latency buckets, bpftrace hist() style: index 0 is [0], 1 is [1], k >= 2 is [2^(k-1), 2^k).
N_BUCKETS = 40


def work_totals(work_by_path: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    return {op: sum(w[op] for w in work_by_path.values()) for op in WORK}


def bucket_of(ns: int) -> int:
    return min(int(ns).bit_length(), N_BUCKETS - 1)


def bucket_bounds(index: int) -> tuple[int, int]:
    """[low, high) of a bucket; [0, 1) and [1, 2) for the first two."""
    if index == 0:
        return 0, 1
    return 1 << (index - 1), 1 << index
