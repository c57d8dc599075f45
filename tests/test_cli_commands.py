"""Every subcommand end to end: run (text and --json), compare, check, list, and their errors."""

import dataclasses
import importlib
import json
import re
import subprocess
import sys

import pytest

from engine.scenario import builtin_scenarios
from engine.snapshot import COUNTERS, OUTCOMES, PATHS
from ksmtui.cli import common, main
from ksmtui.cli.options import parse_args

SMALL = """\
name = "small"
description = "Two processes sharing a pool; one rewrites a page now and then."
seed = 5

[ksm]
pages_to_scan = 50

[[pool]]
name = "lib"
pages = 24

[[process]]
name = "app"
count = 2

[[process.region]]
name = "lib"
pages = 24
fill = "pool"
pool = "lib"

[[process.region]]
name = "heap"
pages = 16

[[process.region]]
name = "bss"
pages = 8
fill = "zero"

[[event]]
action = "write"
process = "app-1"
region = "heap"
pages = 4
at_ms = 30
repeat_ms = 40

[stop]
full_scans = 4
"""

KSM_STAT = {"pid": int, "ksm_rmap_items": int, "ksm_zero_pages": int, "ksm_merging_pages": int,
            "ksm_process_profit": int, "ksm_merge_any": str, "ksm_mergeable": str}


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return str(path)


def ksmtui(*args):
    return subprocess.run([sys.executable, "-m", "ksmtui", *args], capture_output=True, text=True)


def test_run_json_is_one_object_with_the_contract_schema(small):
    proc = ksmtui("run", small, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress line into a pipe
    assert proc.stdout.count("\n") == 1
    r = json.loads(proc.stdout)
    assert {"scenario", "flow", "seed", "sim_ms", "wall_s", "ksm", "knobs", "processes", "outcomes",
            "latency_ns", "data_check"} <= r.keys()
    assert (r["scenario"], r["flow"], r["seed"]) == ("small", "optimized", 5)
    assert isinstance(r["sim_ms"], int) and isinstance(r["wall_s"], float) and r["wall_s"] > 0
    assert set(r["ksm"]) == set(COUNTERS) and all(type(v) is int for v in r["ksm"].values())
    assert r["ksm"]["full_scans"] == 4
    assert r["knobs"]["pages_to_scan"] == 50 and r["knobs"]["run"] == 1
    assert list(r["processes"]) == ["app-0", "app-1"]
    for stat in r["processes"].values():
        assert {k: type(v) for k, v in stat.items()} == KSM_STAT
        assert stat["ksm_merge_any"] in ("yes", "no") and stat["ksm_mergeable"] == "yes"
    assert set(r["outcomes"]) == set(PATHS)
    assert all(set(by) == set(OUTCOMES) for by in r["outcomes"].values())
    assert set(r["latency_ns"]) == set(PATHS)
    for rows in r["latency_ns"].values():
        for low, high, count in rows:
            assert high == 2 * low or (low, high) in ((0, 1), (1, 2))
            assert count > 0
    calls = sum(c for by in r["outcomes"].values() for c in by.values())
    assert calls == r["ksm"]["pages_scanned"] == sum(c for rows in r["latency_ns"].values() for *_, c in rows)
    assert r["data_check"] == {"pages_checked": 96, "mismatches": 0}
    assert r["ksm"]["pages_shared"] == 24 + 1  # the pool, and one KSM page of zeroes
    assert r["ksm"]["pages_sharing"] >= 24 + 15


def test_run_json_is_deterministic_and_options_apply(small, capsys):
    def run(*options):
        assert main(["run", small, "--json", *options]) == 0
        r = json.loads(capsys.readouterr().out)
        r.pop("wall_s")
        return r

    assert run() == run()
    legacy = run("--flow", "legacy", "--seed", "9", "--set", "use_zero_pages=1", "--full-scans", "2")
    assert (legacy["flow"], legacy["seed"], legacy["ksm"]["full_scans"]) == ("legacy", 9, 2)
    assert legacy["knobs"]["use_zero_pages"] == 1 and legacy["ksm"]["ksm_zero_pages"] > 0
    assert run("--after-ms", "100")["sim_ms"] in range(100, 200)


def test_run_summary_reads_like_sysfs_ksm_stat_and_bpftrace(small, capsys):
    assert main(["run", small]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^/sys/kernel/mm/ksm/pages_shared:25$", out, re.M)
    assert re.search(r"^/sys/kernel/mm/ksm/full_scans:4$", out, re.M)
    assert re.search(r"^app-0 +1001 +", out, re.M)
    assert "@cmp_and_merge_page_ns[optimized, anon_page]:" in out
    assert re.search(r"^\[\d+K?, \d+K?\) +\d+ \|@+ *\|$", out, re.M)
    assert out.rstrip().endswith("data check: 96 pages checked, 0 mismatches: ok")


def test_check_and_list(small, capsys):
    assert main(["check", small]) == 0
    assert capsys.readouterr().out == "ok: small (2 processes, 96 pages, 1 event)\n"
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    firsts = [line for line in out if not line.startswith(" ")]  # the rest continue a description
    assert [line.split()[0] for line in firsts] == [name for name, _ in builtin_scenarios()]
    assert all(len(line.split(None, 1)) == 2 for line in firsts)  # every one has a description
    assert "…" not in "".join(out)  # wrapped, never cut


def test_a_stuck_run_ends_with_a_note(tmp_path, capsys):
    path = tmp_path / "idle.toml"  # nothing mergeable, one write at 30 ms, then nothing can happen
    path.write_text('name = "idle"\n[[process]]\nname = "p"\n[[process.region]]\nname = "r"\npages = 4\n'
                    'mergeable = false\n[[event]]\naction = "write"\nprocess = "p"\nregion = "r"\npages = 1\n'
                    'at_ms = 30\n')
    assert main(["run", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    r = json.loads(out)
    assert r["ksm"]["full_scans"] == 0 and r["sim_ms"] == 30 and r["data_check"]["mismatches"] == 0
    assert err == ("ksmtui run: note: idle: stopped at 30 ms simulated: no progress possible: nothing is "
                   "registered with ksmd and no pending event can change that\n")
    assert err.count("\n") == 1


@pytest.mark.parametrize("text,expected", [
    ("name = ", "not valid TOML"),
    (SMALL.replace("pages_to_scan = 50", "pages_to_scan = -1"), "ksm.pages_to_scan"),
    (SMALL.replace('region = "heap"', 'region = "stack"'), "event[0].region"),
])
def test_bad_scenario_files_give_one_line_naming_the_file_and_status_2(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for command in ("run", "compare", "check"):
        proc = ksmtui(command, str(path))
        assert (proc.returncode, proc.stdout) == (2, "")
        assert proc.stderr.count("\n") == 1 and str(path) in proc.stderr and expected in proc.stderr


def test_bad_set_is_refused_before_anything_runs(small):
    proc = ksmtui("run", small, "--set", "advisor_mode=scan-time", "--set", "pages_to_scan=5")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == ('ksmtui run: error: --set: ksm.pages_to_scan: the kernel refuses pages_to_scan '
                           'while advisor_mode is "scan-time" (EINVAL)\n')
    proc = ksmtui("run", "no-such-scenario")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no-such-scenario" in proc.stderr


def test_progress_goes_to_a_terminal_only(monkeypatch):
    class Tty:
        def __init__(self, tty):
            self.tty, self.text = tty, ""

        def isatty(self):
            return self.tty

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    for err_tty, out_tty, json_, shown in [(True, True, False, True), (True, False, False, True),
                                           (True, True, True, True), (True, False, True, False),
                                           (False, True, False, False)]:
        monkeypatch.setattr(sys, "stderr", Tty(err_tty))
        monkeypatch.setattr(sys, "stdout", Tty(out_tty))
        opts = parse_args("run", ["x", *(["--json"] if json_ else [])])
        assert common.want_progress(opts) is shown


def test_progress_names_the_stop_the_engine_will_use(small):
    from engine.scenario import Stop, load_scenario

    scenario = load_scenario(small)
    assert common.stop_target(scenario, parse_args("run", [small])) == "4 full scans"
    assert common.stop_target(scenario, parse_args("run", [small, "--after-ms", "1500"])) == "1,500 ms"
    assert common.stop_target(scenario, parse_args("run", ["fleet", "--full-scans", "2", "--after-ms", "9"])) == \
        "2 full scans or 9 ms"
    no_stop = dataclasses.replace(scenario, stop=Stop())
    assert common.stop_target(no_stop, parse_args("run", [small])) == "10 full scans"


def test_progress_line_is_redrawn_and_cleared(monkeypatch, small):
    from engine.scenario import load_scenario
    from engine.sim import Simulation

    clock = iter(range(0, 100, 1))
    monkeypatch.setattr(common.time, "monotonic", lambda: next(clock))
    written = []
    monkeypatch.setattr(sys, "stderr", type("E", (), {"write": lambda s, t: written.append(t),
                                                      "flush": lambda s: None})())
    progress = common.Progress("small", "4 full scans", enabled=True)
    sim = Simulation(load_scenario(small))
    sim.step_full_scan()
    progress(sim)
    progress.done()
    assert written[0].startswith("\r\033[Ksmall: full_scans 1, ") and "(stops at 4 full scans)" in written[0]
    assert written[-1] == "\r\033[K"


def _latency_table(out):
    """compare's latency table: (path, "Before"/"After") -> (calls, p50 label, mean)."""
    rows, path = {}, None
    for line in out.splitlines():
        m = re.match(r"^(\w+ page)?\s+(Before|After)\s+([\d,]+)\s+(\[[^)\]]+[)\]]).*~([\d,]+)$", line)
        if m:
            path = m[1] or path
            rows[path, m[2]] = int(m[3].replace(",", "")), m[4], int(m[5].replace(",", ""))
    return rows


def _work(out):
    """compare's work table: (path, operation) -> (Before, After)."""
    rows, path = {}, None
    for line in out[out.index("work done"):].splitlines()[2:]:
        m = re.match(r"^(\w+ (?:page|paths))?\s+(\w+)\s+([\d,]+)\s+([\d,]+)\s+(-?[\d,]+)$", line)
        path = m[1] or path
        rows[path, m[2]] = int(m[3].replace(",", "")), int(m[4].replace(",", ""))
    return rows


def test_compare_on_hackbench_moves_the_anon_distribution_left(capsys):
    assert main(["compare", "hackbench", "--full-scans", "30"]) == 0  # past the forks and first merges
    out = capsys.readouterr().out
    lines = out.splitlines()
    before, after = lines.index("Before:"), lines.index("After:")
    assert lines[before + 1] == "- ksm page" and "- anon page" in lines[before:after]
    assert lines[after + 1] == "- ksm page" and "- anon page" in lines[after:]
    table = _latency_table(out)
    b_calls, b_p50, b_mean = table["anon page", "Before"]
    a_calls, a_p50, a_mean = table["anon page", "After"]
    order = [f"[{lo}" for lo in ("0]", "1]", "2,", "4,", "8,", "16,", "32,", "64,", "128,", "256,", "512,",
                                 "1K,", "2K,", "4K,", "8K,", "16K,", "32K,")]
    rank = lambda label: next(i for i, o in enumerate(order) if label.startswith(o))  # noqa: E731
    assert rank(a_p50) <= rank(b_p50)  # no higher median (learned hackbench: few anon pages change)
    assert a_mean < b_mean  # and a lower mean
    assert table["ksm page", "After"][0] > 0
    # Per path: after the rework KSM pages compute no checksum and every anon call exactly one,
    # and changed anon pages no longer search the stable tree. No zero-page calls in hackbench.
    work = _work(out)
    assert "zero page" not in out
    assert work["ksm page", "calc_checksum"] == (0, 0)
    assert work["anon page", "calc_checksum"][1] == a_calls
    b_search, a_search = work["anon page", "stable_tree_search"]
    assert a_search < b_search
    assert work["all paths", "stable_tree_search"] == (b_search, a_search)  # KSM pages searched none


@pytest.mark.parametrize("argv,module,function", [
    ([], "ksmtui.ui.apps.model", "run_app"),
    (["fleet", "--flow", "legacy", "--set", "pages_to_scan=300"], "ksmtui.ui.apps.model", "run_app"),
    (["kernel", "fleet", "--json", "--trace", "--full-scans", "2"], "ksmtui.cli.kernel", "cmd_kernel"),
    (["parity", "fleet", "--seed", "3"], "ksmtui.cli.parity", "cmd_parity"),
])
def test_ui_kernel_and_parity_get_the_loaded_scenario_and_the_options(monkeypatch, argv, module, function):
    """Stand-ins for the UI and the kernel runner: this test must never touch the real KSM."""
    import types

    calls = []
    fake = lambda scenario, opts, *control: calls.append((scenario, opts)) or 7  # noqa: E731
    if module.startswith("ksmtui.cli."):
        monkeypatch.setattr(importlib.import_module(module), function, fake)
    else:
        stand_in = types.ModuleType(module)
        setattr(stand_in, function, fake)
        monkeypatch.setitem(sys.modules, module, stand_in)
    assert main(argv) == 7
    (scenario, opts), = calls
    assert scenario.name == (argv[1] if argv and argv[0] in ("kernel", "parity") else argv[0] if argv else "default")
    if "--flow" in argv:
        assert opts.flow == scenario.engine["flow"] == "legacy"
        assert opts.overrides == {"pages_to_scan": 300} and scenario.ksm["pages_to_scan"] == 300
    if "--trace" in argv:
        assert opts.json and opts.trace and opts.full_scans == 2
    if "--seed" in argv:
        assert opts.seed == scenario.seed == 3


def test_ctrl_c_while_the_modules_load_ends_quietly_with_130(monkeypatch, capsys):
    """The entry point catches Ctrl-C from its first line: the import of the CLI takes ~50 ms."""
    import builtins
    import sys

    from ksmtui.__main__ import main as entry

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "ksmtui.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "ksmtui.cli")
    monkeypatch.setattr(builtins, "__import__", interrupted)
    assert entry() == 130
    assert capsys.readouterr() == ("", "")
