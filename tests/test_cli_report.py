"""Golden-string tests of the text reports (ksmtui/text/report.py) over hand-built snapshots."""

from engine.knobs import ALL_KNOBS
from engine.snapshot import (
    COUNTERS,
    N_BUCKETS,
    OUTCOMES,
    PATHS,
    Cursor,
    ProcessStats,
    Snapshot,
    frozen,
)
from ksmtui.text.report import (
    bound_label,
    compare_report,
    ksm_stat_lines,
    latency_stats,
    outcome_lines,
    summary,
    sysfs_lines,
)


def hist(**buckets):
    """Counts by bucket index: hist(b12=5) puts 5 calls in [2K, 4K)."""
    counts = [0] * N_BUCKETS
    for key, n in buckets.items():
        counts[int(key[1:])] = n
    return tuple(counts)


WORK = ("calc_checksum", "stable_tree_search", "unstable_tree_search_insert", "memcmp_pages")


def make_snapshot(flow="optimized", latency=None, outcomes=None, work_by_path=None, processes=(), **counters):
    knobs = {k: v.default for k, v in ALL_KNOBS.items()}
    knobs["flow"] = flow
    outs = {p: {o: 0 for o in OUTCOMES} for p in PATHS}
    for path, by_outcome in (outcomes or {}).items():
        outs[path].update(by_outcome)
    lat = {p: hist() for p in PATHS}
    lat.update(latency or {})
    by_path = {p: dict.fromkeys(WORK, 0) for p in PATHS}
    for path, ops in (work_by_path or {}).items():
        by_path[path].update(ops)
    return Snapshot(
        scenario="demo", description="", flow=flow, seed=7, page_size=4096, sim_ns=1_234_000_000,
        finished=True, stop_reason="10 full scans",
        counters=frozen({c: counters.get(c, 0) for c in COUNTERS}), knobs=frozen(knobs),
        cursor=Cursor(None, None, 0, 10, 0, 0),
        outcomes=frozen({p: frozen(o) for p, o in outs.items()}), latency=frozen(lat),
        latency_recent=frozen(lat),
        work=frozen({op: sum(w[op] for w in by_path.values()) for op in WORK}),
        work_by_path=frozen({p: frozen(w) for p, w in by_path.items()}),
        sharers_per_page=frozen({}), dups_per_chain=frozen({}), stable_tree=(), stable_tree_size=0,
        unstable_tree=(), unstable_tree_size=0, migrate_nodes=0, processes=tuple(processes),
        last_step=None, events_done=0, events_pending=0,
    )


VM0 = ProcessStats("vm-0", 1001, 0, True, 1536, 1536, 0, 1324, 5324800, False, True)
GONE = ProcessStats("gone", 1002, 0, False, 0, 0, 0, 0, 0, False, False)


def test_sysfs_lines_read_like_grep_over_the_sysfs_directory():
    snap = make_snapshot(pages_shared=261, pages_sharing=5035, general_profit=-64)
    lines = sysfs_lines(snap.counters, snap.knobs)
    assert lines[:3] == [
        "/sys/kernel/mm/ksm/advisor_max_cpu:70",
        "/sys/kernel/mm/ksm/advisor_max_pages_to_scan:30000",
        "/sys/kernel/mm/ksm/advisor_min_pages_to_scan:500",
    ]
    assert "/sys/kernel/mm/ksm/advisor_mode:[none] scan-time" in lines
    assert "/sys/kernel/mm/ksm/general_profit:-64" in lines
    # glob order is byte order: pages_shared before pages_sharing, chains before chains_prune_...
    names = [line.split(":")[0].rsplit("/", 1)[1] for line in lines]
    assert names == sorted(names)
    assert names.index("pages_shared") + 1 == names.index("pages_sharing")
    assert len(names) == 13 + len(COUNTERS)  # every [ksm] knob and every counter, no engine knob
    assert not any("flow" in n for n in names)


def test_ksm_stat_lines_show_live_processes_under_the_kernel_field_names():
    assert ksm_stat_lines(make_snapshot(processes=(VM0, GONE))) == [
        "process  pid   ksm_rmap_items  ksm_zero_pages  ksm_merging_pages  ksm_process_profit"
        "  ksm_merge_any  ksm_mergeable",
        "vm-0     1001           1,536               0              1,324           5,324,800"
        "             no            yes",
    ]
    assert ksm_stat_lines(make_snapshot(processes=(GONE,))) == ["(no process alive)"]


def test_outcome_lines_list_outcomes_that_happened_by_path():
    snap = make_snapshot(outcomes={
        "ksm_page": {"already_merged": 12000},
        "anon_page": {"checksum_changed": 300, "unstable_inserted": 40, "stable_merged": 5},
    })
    assert outcome_lines(snap.outcomes) == [
        "outcome            ksm page  anon page  zero page   total",
        "already_merged       12,000          0          0  12,000",
        "checksum_changed          0        300          0     300",
        "stable_merged             0          5          0       5",
        "unstable_inserted         0         40          0      40",
        "all calls            12,000        345          0  12,345",
    ]


def test_summary_golden():
    snap = make_snapshot(
        latency={"ksm_page": hist(b9=3), "anon_page": hist(b12=2, b14=1)},
        outcomes={"ksm_page": {"already_merged": 3}, "anon_page": {"checksum_changed": 3}},
        processes=(VM0,), pages_scanned=6, full_scans=10,
    )
    text = summary(snap, (6144, 0), 0.25)
    head, sysfs, stat, outcomes, rest = text.split("\n\n", 4)
    latency, check = rest.rstrip("\n").rsplit("\n\n", 1)
    assert head == ("demo: flow optimized, seed 7, 1,234 ms simulated in 0.25 s (10 full scans)\n"
                    "ksmd CPU 0.0 ms (modelled; costs: reference costs)")
    assert sysfs.splitlines()[-1] == "engine: flow=optimized numa_nodes=1 latency=model hz=0"
    assert "/sys/kernel/mm/ksm/full_scans:10" in sysfs.splitlines()
    assert stat.splitlines()[0] == "ksm_stat:"
    assert outcomes.splitlines()[0] == "cmp_and_merge_page() outcomes:"
    assert latency.split("\n") == [
        "latency (modelled ns):",
        "@cmp_and_merge_page_ns[optimized, ksm_page]:",
        "[256, 512)             3 |" + "@" * 52 + "|",
        "",
        "@cmp_and_merge_page_ns[optimized, anon_page]:",
        "[2K, 4K)               2 |" + "@" * 52 + "|",
        "[4K, 8K)               0 |" + " " * 52 + "|",
        "[8K, 16K)              1 |" + "@" * 26 + " " * 26 + "|",
    ]
    assert check == "data check: 6,144 pages checked, 0 mismatches: ok"
    assert summary(snap, (6144, 2), 0.25).rstrip().endswith("2 mismatches: DATA LOST")


def test_latency_stats_from_buckets():
    s = latency_stats(hist(b12=90, b13=10))  # [2K, 4K) and [4K, 8K)
    assert (s.calls, s.p50, s.p90, s.p99) == (100, 4096, 4096, 8192)
    assert s.mean == (90 * 3072 + 10 * 6144) / 100
    assert latency_stats(hist()).calls == 0 and latency_stats(hist()).mean == 0.0
    assert latency_stats(hist(b0=1, b1=1)).mean == 0.5
    assert [bound_label(b) for b in (0, 1, 2, 4096, 1 << 20)] == ["-", "[0]", "[1]", "[2K, 4K)", "[512K, 1M)"]


def test_compare_report_follows_the_cover_letter_layout():
    work_b = {"ksm_page": {"stable_tree_search": 4},
              "anon_page": {"calc_checksum": 500, "stable_tree_search": 400, "unstable_tree_search_insert": 100,
                            "memcmp_pages": 9}}
    work_a = {"anon_page": {"calc_checksum": 300, "stable_tree_search": 100, "unstable_tree_search_insert": 100,
                            "memcmp_pages": 12}}
    before = make_snapshot("legacy", latency={"ksm_page": hist(b9=4), "anon_page": hist(b12=2, b13=2)},
                           work_by_path=work_b, full_scans=3, pages_scanned=8)
    after = make_snapshot("optimized", latency={"ksm_page": hist(b9=4), "anon_page": hist(b12=4)},
                          work_by_path=work_a, full_scans=3, pages_scanned=8)
    lines = compare_report(before, after).splitlines()
    at = lines.index("Before:")
    assert lines[at:at + 12] == [
        "Before:",
        "- ksm page",
        "[256, 512)             4 |" + "@" * 52 + "|",
        "- anon page",
        "[2K, 4K)               2 |" + "@" * 52 + "|",
        "[4K, 8K)               2 |" + "@" * 52 + "|",
        "After:",
        "- ksm page",
        "[256, 512)             4 |" + "@" * 52 + "|",
        "- anon page",
        "[2K, 4K)               4 |" + "@" * 52 + "|",
        "",
    ]
    assert lines[1].startswith("Before = legacy (v6.10): 3 full scans")
    assert "anon page  Before      4    [2K, 4K)    [4K, 8K)    [4K, 8K)  ~4,608" in lines
    assert "           After       4    [2K, 4K)    [2K, 4K)    [2K, 4K)  ~3,072" in lines
    at = lines.index("path                                    Before  After  saved")
    assert lines[at + 1:] == [  # per path that saw calls (no zero page here), then all paths
        "ksm page   calc_checksum                     0      0      0",
        "           stable_tree_search                4      0      4",
        "           unstable_tree_search_insert       0      0      0",
        "           memcmp_pages                      0      0      0",
        "anon page  calc_checksum                   500    300    200",
        "           stable_tree_search              400    100    300",
        "           unstable_tree_search_insert     100    100      0",
        "           memcmp_pages                      9     12     -3",
        "all paths  calc_checksum                   500    300    200",
        "           stable_tree_search              404    100    304",
        "           unstable_tree_search_insert     100    100      0",
        "           memcmp_pages                      9     12     -3",
    ]
