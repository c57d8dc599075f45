"""Host samples by group (`host --json --group-by`) and "why isn't anything merging"
(ksmtui.host.whynot), on samples made by hand."""

from __future__ import annotations

import json

from engine.knobs import KERNEL_DEFAULTS
from ksmtui.cli.host import sample_json
from ksmtui.host.sampler import HostSample
from ksmtui.host.units import group_totals
from ksmtui.host.whynot import why_nothing_merges

KNOBS = {**KERNEL_DEFAULTS, "run": 1, "smart_scan": 1}
WIN = {"cgroup": "/machine.slice/machine-qemu\\x2d1\\x2dwin10.scope", "vm": "win10"}


def _row(comm, rmap, merging, zero=0, unit=None, **flags):
    row = {"comm": comm, "ksm_rmap_items": rmap, "ksm_zero_pages": zero, "ksm_merging_pages": merging,
           "ksm_process_profit": (merging + zero) * 4096 - rmap * 64, "ksm_merge_any": "no", "ksm_mergeable": "yes",
           **flags}
    if unit is not None:
        row["unit"] = unit
    return row


ROWS = {
    "10": _row("qemu-system-x86", 100, 40, 5, WIN),
    "11": _row("qemu-system-x86", 50, 10, 0, WIN),
    "12": _row("python3", 7, 0),
    "13": {"comm": "secret", "error": "ksm_stat: Permission denied"},
}


def test_group_totals_by_vm():
    g = group_totals(ROWS, "vm")
    assert list(g) == ["win10", "(no vm)"]
    assert g["win10"] == {"processes": [10, 11], "ksm_rmap_items": 150, "ksm_zero_pages": 5, "ksm_merging_pages": 50,
                          "ksm_process_profit": 55 * 4096 - 150 * 64, "unreadable": 0}
    assert g["(no vm)"]["processes"] == [12, 13] and g["(no vm)"]["unreadable"] == 1
    # per-group sums are the whole
    for k in ("ksm_rmap_items", "ksm_merging_pages", "ksm_process_profit"):
        assert sum(x[k] for x in g.values()) == sum(r.get(k, 0) for r in ROWS.values())
    assert list(group_totals(ROWS, "comm")) == ["qemu-system-x86", "python3", "secret"]


def test_sample_json_adds_groups_and_why_not():
    sample = HostSample(time=1.0, ksm={"pages_sharing": 0, "ksm_zero_pages": 0, "full_scans": 0},
                        knobs={**KNOBS, "run": 0}, vmstat={}, ksmd={}, processes=ROWS, trace=None)
    out = json.loads(json.dumps(sample_json(sample, "unit")))
    assert out["group_by"] == "unit" and set(out["groups"]) == {"(no unit)"}
    assert [r["reason"] for r in out["why_not"]] == ["run=0"]
    assert "groups" not in sample_json(sample)


def test_why_not_from_the_knobs():
    def reasons(**knobs):
        return [r["reason"] for r in why_nothing_merges({**KNOBS, **knobs})]

    assert reasons() == []
    assert reasons(run=0) == ["run=0"]
    assert reasons(run=2) == ["run=2"]
    assert reasons(pages_to_scan=0) == ["pages_to_scan=0"]
    assert reasons(advisor_mode="scan-time", pages_to_scan=0) == ["advisor"]
    text = why_nothing_merges({**KNOBS, "run": 0})[0]["text"]
    assert text.startswith("ksmd is stopped (run=0): nothing is scanned and nothing merges")


def test_why_not_from_the_counters_and_processes():
    idle = {"pages_shared": 0, "pages_sharing": 0, "ksm_zero_pages": 0, "pages_unshared": 0, "pages_volatile": 0,
            "pages_skipped": 0, "full_scans": 5}

    def reasons(ksm, processes):
        return [r["reason"] for r in why_nothing_merges(KNOBS, {**idle, **ksm}, processes)]

    assert reasons({}, {}) == ["no process"]
    unreadable = why_nothing_merges(KNOBS, idle, {"13": ROWS["13"]})[0]["text"]
    assert "1 processes' ksm_stat could not be read" in unreadable
    one = {"12": ROWS["12"]}
    assert reasons({"pages_volatile": 7}, one) == ["volatile"]
    assert reasons({"pages_unshared": 5, "pages_volatile": 2, "pages_skipped": 30}, one) == ["unique", "skipped"]
    assert reasons({"pages_volatile": 7, "full_scans": 1}, one) == ["volatile", "first passes"]
    # something merged: the counters stand in nobody's way
    assert reasons({"pages_sharing": 3, "pages_shared": 1, "pages_volatile": 7}, one) == []


def test_host_json_group_by_reads_the_live_machine(capsys):
    import pytest

    from ksmtui.cli import main as cli
    from ksmtui.host import sysfs

    if not sysfs.KSM_DIR.is_dir():
        pytest.skip("no /sys/kernel/mm/ksm")
    assert cli(["host", "--json", "--count", "1", "--no-trace", "--group-by", "pid"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out["why_not"], list)
    assert set(out["groups"]) == set(out["processes"])  # by pid: a group per row
    assert cli(["host", "--group-by", "vm"]) == 2
    assert capsys.readouterr().err.strip() == \
        "ksmtui host: error: argument --group-by: only with --json, --listen or --textfile"
