"""The real-kernel runner's pure parts: parity report, contents in the model's order, parsers.

Nothing here touches /sys/kernel/mm/ksm; the runs on the real kernel are in test_kernel_parity.py.
"""

from __future__ import annotations

import copy

import pytest

from engine.knobs import KERNEL_DEFAULTS
from engine.sim import Simulation
from ksmtui.cli import kernel as cli_kernel
from ksmtui.cli import parity as cli_parity
from ksmtui.cli.options import Options
from ksmtui.host import sysfs
from ksmtui.kernel import run as kernel
from ksmtui.kernel.parity import parity_report
from ksmtui.kernel.run import Contents, KsmTrace, _ordered_knobs
from tests.engine_helpers import proc, region, scenario


def _result(**ksm) -> dict:
    counters = {"pages_shared": 2, "pages_sharing": 510, "pages_unshared": 0, "pages_volatile": 0,
                "pages_scanned": 2048, "pages_skipped": 0, "full_scans": 4, "stable_node_chains": 1,
                "stable_node_dups": 2, "ksm_zero_pages": 0, "general_profit": 2056192}
    counters.update(ksm)
    return {
        "scenario": "t", "flow": "optimized", "seed": 0, "ksm": counters,
        "processes": {"a": {"pid": 7, "ksm_rmap_items": 512, "ksm_zero_pages": 0, "ksm_merging_pages": 512,
                            "ksm_process_profit": 2064384, "ksm_merge_any": "no", "ksm_mergeable": "yes"}},
        "data_check": {"pages_checked": 512, "mismatches": 0},
    }


class TestParityReport:
    def test_equal_results_agree(self):
        text, ok = parity_report(_result(), _result())
        assert ok
        assert text.splitlines()[-1] == "result: settled counters agree"

    def test_timing_counters_are_shown_not_judged(self):
        text, ok = parity_report(_result(), _result(pages_unshared=5, pages_scanned=9999, full_scans=5))
        assert ok
        line = next(row for row in text.splitlines() if row.strip().startswith("pages_scanned"))
        assert "9999" in line and "(not judged)" in line

    def test_settled_difference_is_marked(self):
        text, ok = parity_report(_result(), _result(stable_node_dups=3))
        assert not ok
        line = next(row for row in text.splitlines() if row.strip().startswith("stable_node_dups"))
        assert line.split()[1:4] == ["2", "3", "<--"]
        assert text.splitlines()[-1] == "result: 1 difference in settled counters"

    def test_process_counters_are_judged(self):
        k = _result()
        k["processes"]["a"]["ksm_merging_pages"] = 511
        text, ok = parity_report(_result(), k)
        assert not ok
        assert "ksm_merging_pages" in next(row for row in text.splitlines() if "<--" in row)

    def test_process_alive_on_one_side_only(self):
        k = _result()
        k["processes"]["b"] = copy.deepcopy(k["processes"]["a"])
        text, ok = parity_report(_result(), k)
        assert not ok
        assert "process b: alive in the kernel only" in text

    def test_lost_data_is_a_difference(self):
        k = _result()
        k["data_check"]["mismatches"] = 1
        _, ok = parity_report(_result(), k)
        assert not ok

    def test_kernel_notes_are_shown(self):
        k = _result()
        k["notes"] = ["an event landed late"]
        text, _ = parity_report(_result(), k)
        assert "note: an event landed late" in text


def _kernel_pages(c: Contents, fill, n: int) -> list[bytes]:
    out = []
    for count, pages in c.fill(fill, n):
        out += [pages] * count if isinstance(pages, bytes) else pages
    return out


class TestContents:
    def test_fills_are_the_models_page_for_page(self, tmp_path, monkeypatch):
        monkeypatch.setattr(kernel, "CHUNK_PAGES", 7)  # chunk boundaries inside regions
        blob = tmp_path / "blob"
        blob.write_bytes(b"\x01" * 5000)
        s = scenario(
            proc("a", region("r", 20), region("p", 30, "pool", pool="lib", order="shuffled"),
                 region("z", 9, "zero"), region("b", 8, "byte", byte=0xCF)),
            proc("b", region("p", 25, "pool", pool="lib", offset=3), region("f", 4, "file", path=blob),
                 region("r", 11), count=2),
            pools=[("lib", 12)],
        )
        sim = Simulation(s, seed=5)
        c = Contents(s, 5)
        for mm in sim.machine.mms:
            p = next(p for p in s.processes if mm.name in p.instance_names())
            for r, vma in zip(p.regions, mm.vmas, strict=True):
                assert _kernel_pages(c, r.fill, r.pages) == list(vma.written), (mm.name, r.name)

    def test_sampled_writes_take_the_models_salts(self):
        s = scenario(proc("a", region("r", 40, "pool", pool="lib")), pools=[("lib", 5)])
        from engine.scenario import Event, Fill
        ev = Event(0, "write", at_full_scans=1, region="r", fraction=0.25, fill=Fill("pool", pool="lib",
                                                                                      order="shuffled"))
        sim = Simulation(s, seed=1)
        c = Contents(s, 1)
        _kernel_pages(c, s.processes[0].regions[0].fill, 40)
        expected_idx = sim.contents.indexes(ev, 40)
        expected = list(sim.contents.pages(ev.fill, len(expected_idx)))
        got_idx = c.indexes(ev, 40)
        assert got_idx == expected_idx
        assert _kernel_pages(c, ev.fill, len(got_idx)) == expected


class TestKnobOrder:
    def test_busy_knobs_first_and_pages_to_scan_before_the_advisor_is_chosen(self):
        knobs = {**KERNEL_DEFAULTS, "advisor_mode": "scan-time", "pages_to_scan": 300}
        order = [k for k, _ in _ordered_knobs(knobs)]
        assert order[:2] == ["merge_across_nodes", "max_page_sharing"]
        assert order.index("pages_to_scan") < order.index("advisor_mode")
        assert order.index("advisor_min_pages_to_scan") < order.index("advisor_mode")
        assert "run" not in order

    def test_advisor_off_is_chosen_before_pages_to_scan(self):
        order = [k for k, _ in _ordered_knobs(dict(KERNEL_DEFAULTS))]
        assert order.index("advisor_mode") < order.index("pages_to_scan")


class TestParsers:
    def test_ksm_stat(self, monkeypatch, tmp_path):
        text = ("ksm_rmap_items 10\nksm_zero_pages 0\nksm_merging_pages 10\nksm_process_profit 40320\n"
                "ksm_merge_any: no\nksm_mergeable: yes\n")
        real = sysfs.Path

        def fake(p, *rest):
            return (tmp_path / "ksm_stat") if str(p) == "/proc/42/ksm_stat" else real(p, *rest)
        (tmp_path / "ksm_stat").write_text(text)
        monkeypatch.setattr(sysfs, "Path", fake)
        assert sysfs.read_ksm_stat(42) == {
            "pid": 42, "ksm_rmap_items": 10, "ksm_zero_pages": 0, "ksm_merging_pages": 10,
            "ksm_process_profit": 40320, "ksm_merge_any": "no", "ksm_mergeable": "yes"}

    def test_trace_splits_two_page_merges_from_merges_into_ksm_pages(self):
        t = KsmTrace()
        lines = [
            "ksmd-36 [001] ..... 1.0: ksm_start_scan: seq 1 rmap size 10",
            "ksmd-36 [001] ..... 1.1: ksm_merge_with_ksm_page: pfn 500 rmap_item 00000000a mm 00000000b error 0",
            "ksmd-36 [001] ..... 1.2: ksm_merge_with_ksm_page: ksm pfn 500 rmap_item 00000000c mm 00000000b error 0",
            "ksmd-36 [001] ..... 1.3: ksm_merge_with_ksm_page: ksm pfn 500 rmap_item 00000000d mm 00000000b error 0",
            "ksmd-36 [001] ..... 1.4: ksm_merge_with_ksm_page: pfn 700 rmap_item 00000000e mm 00000000b error -14",
            "ksmd-36 [001] ..... 1.5: ksm_merge_one_page: ksm pfn 3 rmap_item 00000000f mm 00000000b error 0",
            "ksmd-36 [001] ..... 1.6: ksm_remove_ksm_page: pfn 500",
        ]
        for line in lines:
            t._count(line)
        assert t.merge == {"first_half": 1, "second_half": 1, "into_ksm_page": 1, "failed": 1}
        assert t.zero == {"merged": 1, "failed": 0}
        assert t.counts["ksm_remove_ksm_page"] == 1
        assert t.outcomes() == {"anon_page": {"unstable_merged": 1}, "zero_page": {"zero_merged": 1}}


def test_unsupported_page_size_is_named():
    s = scenario(proc("a", region("r", 4)), page_size=8192)
    assert "page_size 8192" in kernel.unsupported_reason(s)


def test_unsupported_numa_is_named():
    s = scenario(proc("a", region("r", 4), node=1), numa_nodes=2)
    if sysfs.numa_nodes() >= 2:
        pytest.skip("this machine has NUMA nodes")
    assert "NUMA" in kernel.unsupported_reason(s)


def test_without_a_writable_ksm_the_commands_say_so_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sysfs, "KSM_DIR", tmp_path / "no-ksm")

    s = scenario(proc("a", region("r", 4)))
    assert cli_kernel.cmd_kernel(s, Options(command="kernel", json=True)) == 2
    assert cli_parity.cmd_parity(s, Options(command="parity", json=True)) == 2
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 2 and all("no-ksm/run does not exist" in line for line in lines)


def test_not_root_is_named(monkeypatch, tmp_path):
    (tmp_path / "run").write_text("0\n")
    monkeypatch.setattr(sysfs, "KSM_DIR", tmp_path)
    monkeypatch.setattr(sysfs.os, "geteuid", lambda: 1000)
    assert sysfs.unavailable_reason() == f"{tmp_path}/run is not writable (the real KSM needs root)"


def test_machine_lock_is_reentrant_here_and_exclusive_across_processes(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setattr(sysfs, "KERNEL_LOCK", tmp_path / "lock")
    probe = ("import fcntl, sys; f = open(sys.argv[1], 'w')\n"
             "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
             "except BlockingIOError:\n    print('held')\n")

    def other_process_sees():
        return subprocess.run([sys.executable, "-c", probe, str(tmp_path / "lock")],
                              capture_output=True, text=True, check=True).stdout.strip()

    with sysfs.machine_lock():
        with sysfs.machine_lock():  # a test holding it may start a KernelRun
            assert other_process_sees() == "held"
        assert other_process_sees() == "held"
    assert other_process_sees() == "free"
