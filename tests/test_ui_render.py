"""Golden strings for the renderers behind the UI's panels (pure functions of snapshot data)."""

from types import MappingProxyType

from engine.snapshot import Sharer, StableNodeView, StepInfo, UnstableItemView
from ksmtui.text.render import (
    dist_lines,
    event_marks,
    latency_title,
    next_events,
    node_detail,
    outcome_table,
    progress_bar,
    sim_time,
    sparkline,
    stable_node_label,
    step_line,
    unstable_label,
)

SHARERS = (Sharer("vm-0", 0x7F0000001000), Sharer("vm-1", 0x7F0000001000))


def test_sim_time_has_millisecond_resolution():
    assert sim_time(0) == "0.000 s"
    assert sim_time(12_345_678_901) == "12.345 s"


def test_progress_bar_fills_the_done_share_and_survives_an_empty_pass():
    assert progress_bar(1, 4, 8) == "██░░░░░░"
    assert progress_bar(5, 4, 4) == "████"
    assert progress_bar(0, 0, 3) == "░░░"


def test_latency_title_gives_calls_and_bucket_upper_bounds():
    counts = [0] * 40
    counts[9], counts[10], counts[13] = 80, 15, 5  # [256, 512), [512, 1K), [4K, 8K)
    assert latency_title("ksm_page", counts) == "ksm_page  100 calls  p50<512 p90<1K p99<8K ns"
    assert latency_title("zero_page", [0] * 40) == "zero_page  no calls"
    assert latency_title("zero_page", [0] * 40, "last 50 wake-ups") == "zero_page  no calls in the last 50 wake-ups"
    counts[13] = 5000
    assert latency_title("ksm_page", counts).startswith("ksm_page  5,095 calls")


def test_outcome_table_lists_seen_outcomes_by_path_with_totals_and_rates():
    outcomes = {
        "ksm_page": MappingProxyType({"already_merged": 7, "stable_merged": 0}),
        "anon_page": MappingProxyType({"already_merged": 0, "stable_merged": 3, "unstable_inserted": 12}),
        "zero_page": MappingProxyType({}),
    }
    rates = {"ksm_page": 3.5, "anon_page": 12_345.0, "zero_page": 0.0}
    assert outcome_table(outcomes, rates, ("ksm_page", "anon_page", "zero_page")) == [
        "outcome                  ksm_page  anon_page  zero_page",
        "already_merged                  7          0          0",
        "stable_merged                   0          3          0",
        "unstable_inserted               0         12          0",
        "total                           7         15          0",
        "calls/s (simulated)           4/s      12K/s        0/s",
    ]


def test_dist_lines_one_row_per_value_marking_max_page_sharing():
    assert dist_lines({2: 10, 256: 5, 7: 0}, width=10, mark=256) == [
        "2                     10 |@@@@@@@@@@|",
        "256                    5 |@@@@@     | ◀ max_page_sharing",
    ]


def test_dist_lines_fall_back_to_log2_buckets_when_values_do_not_fit():
    dist = {2: 1, 3: 1, 5: 2, 9: 4}
    assert dist_lines(dist, width=4, max_rows=3, mark=6) == [
        "[2, 4)                 2 |@@  |",
        "[4, 8)                 2 |@@  | ◀ max_page_sharing",
        "[8, 16)                4 |@@@@|",
    ]
    assert dist_lines({}, width=4) == []


def test_tree_labels_name_the_kernel_fields():
    node = StableNodeView("regular", 0x2A, 1, 0xDEADBEEF, 2, SHARERS)
    chain = StableNodeView("chain", -1, 0, 0, 2, (), (node, node))
    assert stable_node_label(node) == "kpfn 0x2a  nid 1  2 sharers"
    assert stable_node_label(chain) == "chain  nid 0  2 dups"
    assert stable_node_label(StableNodeView("dup", 0x30, 0, 1, 256, ())) == "dup kpfn 0x30  nid 0  256 sharers"
    assert unstable_label(UnstableItemView("vm-2", 0x1000, 0x99, 0, 5)) == "vm-2:0x1000  kpfn 0x99  nid 0"
    # one NUMA node: no nid on the rows (the detail still says it)
    assert stable_node_label(node, nid=False) == "kpfn 0x2a  2 sharers"
    assert stable_node_label(chain, nid=False) == "chain  2 dups"
    assert unstable_label(UnstableItemView("vm-2", 0x1000, 0x99, 0, 5), nid=False) == "vm-2:0x1000  kpfn 0x99"


def test_node_detail_shows_frame_checksum_nid_and_rmap_list():
    node = StableNodeView("regular", 0x2A, 1, 0xDEADBEEF, 3, SHARERS)
    assert node_detail(node) == [
        "stable_node (regular)",
        "kpfn       0x2a",
        "checksum   0xdeadbeef",
        "nid        1",
        "rmap_hlist_len 3",
        "rmap list:",
        "  vm-0:0x7f0000001000",
        "  vm-1:0x7f0000001000",
        "  … 1 more",
    ]
    assert node_detail(UnstableItemView("vm-2", 0x1000, 0x99, 0, 0xAB)) == [
        "unstable tree item (rmap_item)",
        "rmap       vm-2:0x1000",
        "kpfn       0x99",
        "checksum   0xab",
        "nid        0",
    ]


def test_node_detail_in_a_narrow_column_puts_a_long_rmap_address_on_its_own_line():
    node = StableNodeView("regular", 0x2A, 1, 0xDEADBEEF, 2, (Sharer("web-worker", 0x7F00000D0000), Sharer("a", 1)))
    assert node_detail(node, width=21)[-3:] == ["  web-worker:", "    0x7f00000d0000", "  a:0x1"]
    item = UnstableItemView("web-worker", 0x7F0000181000, 0x99, 0, 0xAB)
    assert node_detail(item, width=21)[1:4] == ["rmap", "  web-worker:", "    0x7f0000181000"]
    assert node_detail(item, width=40)[1] == "rmap       web-worker:0x7f0000181000"
    assert all(len(line) <= 21 for line in node_detail(node, 21)[4:] + node_detail(item, 21)[1:])


def test_step_line_shows_path_and_outcome():
    assert step_line(None) == "last step: none yet (press s)"
    step = StepInfo("vm-0", 0x7F0000002000, "anon_page", "unstable_inserted", 1536)
    assert step_line(step) == "last step: vm-0:0x7f0000002000  (1,536 modelled ns)\n  anon_page → unstable_inserted"


def test_step_line_says_what_each_function_decided_and_drops_a_step_the_run_went_past():
    trace = (("calc_checksum", "checksum 0x1a2b", 0), ("stable_tree_search", "miss", 3),
             ("unstable_tree_search_insert", "no match", 5))
    step = StepInfo("vm-0", 0x7F0000002000, "anon_page", "unstable_inserted", 1536, 40, trace)
    assert step_line(step, 40).split("\n")[1:] == [
        "  calc_checksum → checksum 0x1a2b",
        "  stable_tree_search → miss (3 memcmp_pages)",
        "  unstable_tree_search_insert → no match (5 memcmp_pages)",
        "  anon_page → unstable_inserted",
    ]
    assert step_line(step, 104) == "last step: none since the run went on (press s)"


def test_sparkline_scales_the_newest_values_from_zero_to_max():
    assert sparkline([0, 7, 14], 10) == "▁▄█"
    assert sparkline([5, 0, 7, 14], 3) == "▁▄█"
    assert sparkline([412, 408], 5) == "█▇"
    assert sparkline([-7, 0, 7], 5) == "▁▄█"
    assert sparkline([0, 0], 5) == "▁▁"
    assert sparkline([], 5) == "" and sparkline([1, 2], 0) == ""


def test_next_events_lists_events_in_time_order_and_event_marks_flag_where_they_fired():
    from engine.scenario import Event

    events = (Event(0, "write", at_ms=500, repeat_ms=200, process="db", region="buffers"),
              Event(1, "fork", at_ms=4000, process="web-0", child="w"),
              Event(2, "exit", at_full_scans=3, process="web-2"))
    assert next_events(events, 3_900_000_000, 1) == ["write db/buffers at 3.900 s, every 200 ms",
                                                     "fork web-0 at 4.000 s"]
    assert next_events(events, 4_000_000_001, 1, 5) == ["write db/buffers at 4.100 s, every 200 ms",
                                                        "exit web-2 at full scan 3"]
    # Two repeating events due sooner: the one-off keeps its place, the list stays in time order.
    more = (*events, Event(3, "write", at_ms=50, repeat_ms=100, process="db", region="log"))
    assert next_events(more, 3_750_000_000, 1) == ["write db/log at 3.750 s, every 100 ms", "fork web-0 at 4.000 s"]
    s = 1_000_000_000
    assert event_marks(events, [0, 3 * s, 4 * s, 5 * s, 6 * s], [0, 1, 1, 3, 3]) == "  ▲▲ "


def test_latency_is_labelled_modelled_or_the_models_wall_time():
    from ksmtui.text.render import latency_kind

    assert latency_kind({"latency": "model"}) == latency_kind({}) == "modelled"
    assert latency_kind({"latency": "wall"}) == "model wall-time"


def test_the_speed_says_what_is_achieved_when_the_model_falls_behind():
    import pytest

    from ksmtui.ui.runner import Pace, speed_label

    assert speed_label(None) == "max" and speed_label(1) == speed_label(1, 0.95) == "1x"
    assert speed_label(1, 0.23) == "1x (0.23x achieved)" and speed_label(100, 12.4) == "100x (12x achieved)"
    pace = Pace()
    pace.add(10.0, 0)
    pace.add(10.5, 100_000_000)
    assert pace.ratio() is None  # under a second of wall time seen
    pace.add(11.0, 230_000_000)
    assert pace.ratio() == pytest.approx(0.23)
    for i in range(1, 7):  # the window slides: 2 s of wall time, now at 1x
        pace.add(11.0 + i, 230_000_000 + i * 1_000_000_000)
    assert pace.ratio() == pytest.approx(1.0)
    pace.add(17.5, 0)  # a restart: the run's clock went back
    assert pace.ratio() is None
