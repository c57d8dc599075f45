"""`ksmtui bench`: the workloads are what they say, and a tiny run prints every row (no timings asserted)."""

import functools
import os
import re

import pytest

from ksmtui.bench.engine import (
    PAGES_TO_SCAN,
    STEADY,
    TARGETS,
    WORKLOADS,
    distinct_bytes,
    measure,
    warm_up,
    workload,
)
from ksmtui.cli import main as cli_main
from ksmtui.cli.bench import main


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workloads_have_the_pages_asked_for(name):
    s = workload(name, 4000)
    pages = sum(p.count * sum(r.pages for r in p.regions) for p in s.processes)
    assert pages == 4000
    # the steady workloads scan as the real ksmd is measured at scale; the others' events are
    # timed by the pass that 1000 pages every 20 ms make
    want = STEADY["pages_to_scan"] if name in TARGETS else PAGES_TO_SCAN
    assert s.ksm["pages_to_scan"] == want and s.ksm["run"] == 1


def test_distinct_bytes_count_each_content_once():
    assert distinct_bytes(workload("settled", 4000)) == 1000 * 4096
    assert distinct_bytes(workload("unique", 4000)) == 4000 * 4096
    assert distinct_bytes(workload("chains", 4000)) == 16 * 4096
    fleet = workload("fleet", 4000)  # 500 image pages shared, 4 x (250 private + 150 hot), one zero page
    assert distinct_bytes(fleet) == (500 + 4 * (250 + 150) + 1) * 4096


def test_changing_rewrites_every_page_within_one_full_scan():
    s = workload("changing", 4000)
    (event,) = s.events
    # 4 batches of 1000 pages plus the empty one that ends the pass, 20 ms apart
    assert event.repeat_ms == 80 and event.pages == 4000 and event.action == "write"


@pytest.mark.parametrize("name,outcome", [("settled", "already_merged"), ("unique", "unstable_inserted"),
                                          ("changing", "checksum_changed"), ("chains", "already_merged")])
def test_each_workload_measures_the_path_it_claims(name, outcome):
    m = measure(name, 2000, None, 0, False)
    assert m.scanned == 2000  # one full scan, every page once
    assert m.by_outcome[outcome] == m.scanned
    assert m.by_path["ksm_page" if name in ("settled", "chains") else "anon_page"] == m.scanned
    assert m.first_scan_s > 0 and m.build_s > 0


def test_chains_settle_into_a_chain_per_content():
    from engine.sim import Simulation

    sim = Simulation(workload("chains", 8192))  # 512 pages a content: two KSM pages of 256 sharers each
    warm_up(sim, "chains")
    c = sim.snapshot(tree_limit=0).counters
    assert c["stable_node_chains"] == 16 and c["stable_node_dups"] == 32
    assert c["pages_shared"] == 32 and c["pages_sharing"] == 8192 - 32


def test_the_fleet_mixes_paths():
    m = measure("fleet", 2000, None, 0, False)
    assert m.by_path["ksm_page"] and m.by_path["anon_page"]
    assert m.by_outcome["already_merged"] and m.by_outcome["checksum_changed"]


def test_tiny_run_prints_every_row(capsys, monkeypatch):
    from ksmtui.cli import bench

    # one pair, not three: each is an app started, a second of its run, and that run again headless
    monkeypatch.setattr(bench, "ui_overhead", functools.partial(bench.ui_overhead, repeat=1))
    assert main(["--pages", "256", "--min-time", "0", "--snapshot-pages", "512", "--no-kernel", "--ui-seconds",
                 "0.3"]) == 0
    out = capsys.readouterr().out
    for title in WORKLOADS.values():
        assert out.count(title) == 2  # the throughput table and the memory lines
    assert "real ksmd: not measured (--no-kernel)" in out
    assert "snapshot of a 512-page machine" in out
    assert re.search(r"^UI overhead \(mixed fleet of 256 pages running flat out, 0.3 wall seconds "
                     r"under the UI at 160x50, .*; "
                     r"median of 1\): the UI costs -?\d+% \(runs: .*\)$", out, re.M)
    runs = re.findall(r"^  headless [\d,]+ pages/s, under the UI [\d,]+ pages/s; the UI drew [\d.]+ times a second "
                      r"and its thread ran \d+% of the time$", out, re.M)
    assert len(runs) == 1


def test_profile_names_the_engine_functions(capsys):
    assert main(["--pages", "128", "--workloads", "unique", "--min-time", "0", "--snapshot-pages", "128",
                 "--no-kernel", "--ui-seconds", "0", "--profile"]) == 0
    out = capsys.readouterr().out
    assert "profile of (b) unique, smart_scan off at 128 pages, one more full scan" in out
    assert "cmp_and_merge_page" in out
    assert "profile of one snapshot of the 128-page machine" in out
    assert "memory held by (b) unique, smart_scan off at its steady state (tracemalloc, 128 pages)" in out
    assert "engine/contents.py" in out  # the page contents are what holds the memory


@pytest.mark.parametrize("argv,expected", [
    (["--pages", "10"], "argument --pages: expected integers 64..1048576, comma-separated, got '10'"),
    (["--pages", "65536,2M"], "argument --pages: expected integers 64..1048576, comma-separated, got '65536,2M'"),
    (["--workloads", "fast"],
     "argument --workloads: expected some of settled, unique, changing, fleet, chains, got 'fast'"),
    (["--repeat", "0"], "argument --repeat: expected an integer 1..20, got '0'"),
    (["--min-time", "-1"], "argument --min-time: expected seconds 0..3600, got '-1'"),
    (["--host-interval", "0"], "argument --host-interval: expected seconds 0.05..3600, got '0'"),
])
def test_bad_bench_options_give_one_line_and_status_2(argv, expected, capsys):
    assert cli_main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and err.startswith("ksmtui bench: error:")


def test_sizes_and_repetitions_give_one_row_each_with_the_spread(capsys):
    assert main(["--pages", "128,256", "--workloads", "chains,unique", "--repeat", "2", "--min-time", "0",
                 "--snapshot-pages", "128", "--no-kernel", "--ui-seconds", "0"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("workload "):out.index("real ksmd: not measured")].splitlines()
    assert [line.split("  ")[0] for line in table[1:]] == [WORKLOADS["chains"], WORKLOADS["unique"]] * 2
    assert all(re.search(r"[\d,]+ \([\d,]+-[\d,]+\)$", line) for line in table[1:])  # ns/page: median (range)
    assert "2 repetitions" in out
    # which engine ran, and how fast this Python is, so that two machines' figures can be told apart
    assert re.search(r"^engine (compiled \(Cython\)|interpreted \(.+\)); this Python runs `s = 0; for i in "
                     r"range\(10\*\*7\): s \+= i` in [\d.]+ s of CPU$", out, re.M)


def test_each_repetition_pairs_the_model_with_ksmd_and_saves_ksmd_for_estimate(tmp_path, monkeypatch, capsys):
    import json

    from ksmtui.cli import bench

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(bench, "kernel_writable", lambda: True)
    ksmd = iter([100.0, 300.0])  # chains, the one that measures, twice
    monkeypatch.setattr(bench, "measure_kernel",
                        lambda w, n: (next(ksmd), "") if w == "chains" else (None, "EBUSY from the fake"))
    # host mode's timing runs too (not --no-kernel), briefly: its lines are checked, not its numbers
    assert main(["--pages", "128", "--workloads", "chains,unique", "--repeat", "2", "--min-time", "0",
                 "--snapshot-pages", "128", "--ui-seconds", "0",
                 "--host-seconds", "0.3", "--host-interval", "0.1"]) == 0
    out = capsys.readouterr().out
    chains = next(line for line in out.splitlines() if line.startswith(WORKLOADS["chains"]))
    assert re.search(r"  200 \(100-300\)  [\d.]+x \([\d.]+x-[\d.]+x\)  KSM page 3x$", chains)
    unique = next(line for line in out.splitlines() if line.startswith(WORKLOADS["unique"]))
    assert re.search(r"  -  +-  +anon 1.5x$", unique)
    assert out.count("real ksmd not measured on (b) unique, smart_scan off at 128 pages: EBUSY from the fake") == 1
    saved = json.loads((tmp_path / "ksmtui" / "ksmd-costs.json").read_text())["workloads"]
    assert saved["chains"]["128"]["ns_per_page"] == 200.0 and "unique" not in saved  # by workload, then size
    if os.path.isdir("/sys/kernel/mm/ksm"):
        assert re.search(r"^host mode sampling every 0.1 s, (with the ksm tracepoints|without tracepoints \(.+\)), "
                         r"beside 1,000 sleeping processes \(100 merge-any, [\d,]+ known to KSM\):$", out, re.M), out
        took = r": \d+\.\d\d% of a core \([\d,]+ ms CPU in \d+\.\d s, \d+ samples"
        for what in (r"sampling only, as --json" + took + r"\)",
                     r"as an exporter \(--no-ui --listen\), scraped at each sample" + took + r", \d+ scrapes\)",
                     r"the UI on the Overview tab, 120x40, headless" + took + r"\)",
                     r"the UI on the Processes tab, 120x40, headless" + took + r"\)"):
            assert re.search(rf"^  {what}$", out, re.M), (what, out)


def test_a_measure_failing_in_its_fresh_process_is_one_line_and_status_1(monkeypatch, capsys):
    from ksmtui.cli import bench

    def fail(*args):
        return bench.in_fresh_process("no_such_function")

    monkeypatch.setattr(bench, "measure_fresh", fail)
    assert main(["--pages", "128", "--workloads", "chains", "--no-kernel", "--ui-seconds", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("ksmtui bench: no_such_function() failed in a fresh process: ImportError: cannot import")


def test_keys_are_timed_in_a_terminal_from_the_key_to_its_answer_on_screen():
    """Every key the bench presses finds its answer in what the app writes (no timings asserted):
    the texts it looks for are the ones the app draws."""
    from ksmtui.bench.keys import KNOBS_KEY, PAUSE_KEYS, RESTART_KEY, TAB_KEYS, key_latency

    times = key_latency(1, scenario="fleet")
    want = {name for name, _, _ in (*TAB_KEYS, *PAUSE_KEYS, KNOBS_KEY, RESTART_KEY)}
    assert set(times) == want
    assert len(times["1 Overview"]) == 2 and all(len(ms) == 1 for name, ms in times.items() if name != "1 Overview")
