"""`ksmtui estimate --group-by / --isolate / --zero-pages-only` and its "why not" section, on a
hand-made capture whose numbers are worked out in test_engine_estimate_groups.py."""

from __future__ import annotations

import json

import pytest

from engine import capture as fmt
from ksmtui.cli import main as cli

WIN = {"vm": "win10", "cgroup": "/machine.slice/machine-qemu\\x2d1\\x2dwin10.scope"}
LIN = {"vm": "linux", "cgroup": "/machine.slice/machine-qemu\\x2d2\\x2dlinux.scope"}
PROCS = [(11, "a1", [1, 1, 2, 3, 0, 0]), (12, "a2", [2, 4]), (21, "b1", [1, 2, 5, 0]), (22, "b2", [5])]


@pytest.fixture
def capture_file(tmp_path):
    path = tmp_path / "c.npz"
    fmt.save(fmt.from_contents([(pid, comm, [(fmt.MERGEABLE, ids)]) for pid, comm, ids in PROCS],
                               units=[WIN, WIN, LIN, LIN], meta={"knobs": {"run": 0}}), path)
    return path


def _json(capsys, argv) -> dict:
    assert cli(["estimate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_group_by_vm_json(capture_file, capsys):
    out = _json(capsys, [str(capture_file), "--group-by", "vm"])
    assert out["group_by"] == "vm"
    assert out["groups"] == {
        "win10": {"processes": [11, 12], "ksm_rmap_items": 8, "ksm_zero_pages": 0, "ksm_merging_pages": 6,
                  "ksm_process_profit": 6 * 4096 - 8 * 64, "ksm_pages": 3, "shares_with": {"linux": 3}},
        "linux": {"processes": [21, 22], "ksm_rmap_items": 5, "ksm_zero_pages": 0, "ksm_merging_pages": 5,
                  "ksm_process_profit": 5 * 4096 - 5 * 64, "ksm_pages": 4, "shares_with": {"win10": 3}},
    }
    # the capture's knobs have run=0: the estimate says so
    assert [r["reason"] for r in out["why_not"]] == ["run=0"]


def test_isolate_and_zero_pages_only_json(capture_file, capsys):
    out = _json(capsys, [str(capture_file), "--isolate", "vm", "--zero-pages-only", "--set", "run=1"])
    assert out["why_not"] == [] and "groups" not in out
    iso = out["isolated"]
    assert (iso["by"], iso["groups"], iso["saved_pages"], iso["unrestricted_saved_pages"], iso["cost_pages"]) == \
        ("vm", 2, 4, 7, 3)
    z = out["zero_pages_only"]
    assert (z["use_zero_pages=1"]["saved_pages"], z["use_zero_pages=0"]["saved_pages"]) == (3, 2)


def test_text_sections(capture_file, capsys):
    assert cli(["estimate", str(capture_file), "--group-by", "vm", "--isolate", "vm", "--zero-pages-only"]) == 0
    text = capsys.readouterr().out
    assert "ksmd is stopped (run=0): nothing is scanned and nothing merges while it is" in text
    assert "per vm (sums of the ksm_stat of its processes), and with whom it would share KSM pages:" in text
    rows = [line.split() for line in text.splitlines()]
    assert ["win10", "2", "8", "0", "6", "24,064", "3", "linux", "(3)"] in rows
    assert [["", "win10", "linux"][1:], ["win10", "3", "3"], ["linux", "3", "4"]] == \
        [r for r in rows if r[:1] in (["win10"], ["linux"]) and len(r) == 3 or r == ["win10", "linux"]]
    assert "shared only within each vm (2 groups; as if each one's pages were salted):\n  saves 4 pages" in text
    assert "isolation costs 3 pages (0.0 MiB), 42.9% of the saving" in text
    assert "use_zero_pages=0 (the knob's value now): saves 2 pages" in text


def test_an_old_capture_groups_as_unknown(capture_file, capsys):
    import numpy as np
    arrays = {k: v for k, v in np.load(capture_file).items() if k != "proc_unit"}
    with open(capture_file, "wb") as f:
        np.savez_compressed(f, **arrays)
    out = _json(capsys, [str(capture_file), "--group-by", "container"])
    assert list(out["groups"]) == ["(no container)"] and out["groups"]["(no container)"]["ksm_rmap_items"] == 13


def test_a_bad_grouping_is_one_line(capture_file, capsys):
    assert cli(["estimate", str(capture_file), "--group-by", "tenant"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--group-by" in err[0] and "vm" in err[0]
