"""`ksmtui bench`: the workloads are what they say, and a tiny run prints every row (no timings asserted)."""

import re

import pytest

from ksmtui.bench import WORKLOADS, distinct_bytes, main, measure, workload
from ksmtui.cli import main as cli_main


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workloads_have_the_pages_asked_for(name):
    s = workload(name, 4000)
    pages = sum(p.count * sum(r.pages for r in p.regions) for p in s.processes)
    assert pages == 4000
    assert s.ksm["pages_to_scan"] == 1000 and s.ksm["run"] == 1


def test_distinct_bytes_count_each_content_once():
    assert distinct_bytes(workload("settled", 4000)) == 1000 * 4096
    assert distinct_bytes(workload("unique", 4000)) == 4000 * 4096
    fleet = workload("fleet", 4000)  # 500 image pages shared, 4 x (250 private + 150 hot), one zero page
    assert distinct_bytes(fleet) == (500 + 4 * (250 + 150) + 1) * 4096


def test_changing_rewrites_every_page_within_one_full_scan():
    s = workload("changing", 4000)
    (event,) = s.events
    # 4 batches of 1000 pages plus the empty one that ends the pass, 20 ms apart
    assert event.repeat_ms == 80 and event.pages == 4000 and event.action == "write"


@pytest.mark.parametrize("name,outcome", [("settled", "already_merged"), ("unique", "unstable_inserted"),
                                          ("changing", "checksum_changed")])
def test_each_workload_measures_the_path_it_claims(name, outcome):
    m = measure(name, 2000, None, 0, False)
    assert m.scanned == 2000  # one full scan, every page once
    assert m.by_outcome[outcome] == m.scanned
    assert m.by_path["ksm_page" if name == "settled" else "anon_page"] == m.scanned


def test_the_fleet_mixes_paths():
    m = measure("fleet", 2000, None, 0, False)
    assert m.by_path["ksm_page"] and m.by_path["anon_page"]
    assert m.by_outcome["already_merged"] and m.by_outcome["checksum_changed"]


def test_tiny_run_prints_every_row(capsys):
    assert main(["--pages", "256", "--min-time", "0", "--snapshot-pages", "512", "--no-kernel", "--ui-seconds", "0.3"]) == 0
    out = capsys.readouterr().out
    for title in WORKLOADS.values():
        assert out.count(title) == 2  # the throughput table and the memory probe
    assert "real ksmd: not measured (--no-kernel)" in out
    assert "snapshot of a 512-page machine" in out
    assert re.search(r"^UI overhead \(mixed fleet running flat out, 0.3 wall seconds under the UI at 160x50, .*; "
                     r"median of 3\): the UI costs -?\d+% \(runs: .*\)$", out, re.M)
    runs = re.findall(r"^  headless [\d,]+ pages/s, under the UI [\d,]+ pages/s; the UI drew [\d.]+ times a second "
                      r"and its thread ran \d+% of the time$", out, re.M)
    assert len(runs) == 3


def test_profile_names_the_engine_functions(capsys):
    assert main(["--pages", "128", "--workloads", "unique", "--min-time", "0", "--snapshot-pages", "128",
                 "--no-kernel", "--no-memory", "--ui-seconds", "0", "--profile"]) == 0
    out = capsys.readouterr().out
    assert "profile of (b) unique, smart_scan off, one more full scan" in out and "cmp_and_merge_page" in out
    assert "profile of one snapshot of the 128-page machine" in out
    assert "memory held by (b) unique, smart_scan off at its steady state (tracemalloc)" in out
    assert "engine/contents.py" in out  # the page contents are what holds the memory


@pytest.mark.parametrize("argv,expected", [
    (["--pages", "10"], "argument --pages: expected an integer 64..1048576, got '10'"),
    (["--workloads", "fast"], "argument --workloads: expected some of settled, unique, changing, fleet, got 'fast'"),
    (["--min-time", "-1"], "argument --min-time: expected seconds 0..3600, got '-1'"),
])
def test_bad_bench_options_give_one_line_and_status_2(argv, expected, capsys):
    assert cli_main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and err.startswith("ksmtui bench: error:")
