"""The command line's options and its one-line errors (no scenario has to run for these)."""

import dataclasses
import subprocess
import sys

import pytest

from ksmtui.cli import main
from ksmtui.cli.options import parse_args

BAD_OPTIONS = [
    (["run"], "ksmtui run: error: the following arguments are required: scenario"),
    (["run", "x", "--seed", "-1"], "argument --seed: expected an integer 0..18446744073709551615, got '-1'"),
    (["run", "x", "--seed", "one"], "argument --seed: expected an integer"),
    (["run", "x", "--set", "bogus=1"], "ksmtui run: error: --set: bogus: unknown knob; expected one of run, "
                                       "pages_to_scan"),
    (["run", "x", "--set", "pages_to_scan=abc"], "--set: ksm.pages_to_scan: expected an integer 0..4294967295, got "
                                                 "'abc'"),
    (["run", "x", "--set", "max_page_sharing=1"], "--set: ksm.max_page_sharing: expected an integer >= 2, got 1"),
    (["run", "x", "--set", "use_zero_pages"], "--set: expected KNOB=VALUE, got 'use_zero_pages'"),
    (["run", "x", "--set", "flow=fast"], "--set: engine.flow: expected \"optimized\", \"legacy\" or \"series-v1\", "
                                         "got 'fast'"),
    (["run", "x", "--flow", "fast"], "argument --flow: expected \"optimized\", \"legacy\" or \"series-v1\", got "
                                     "'fast'"),
    (["run", "x", "--flow", "legacy", "--set", "flow=optimized"],
     "--set: engine.flow: expected the same flow as --flow legacy, got 'optimized'"),
    (["run", "x", "--full-scans", "0"], "argument --full-scans: expected an integer >= 1, got '0'"),
    (["run", "x", "--after-ms", "soon"], "argument --after-ms: expected an integer >= 1, got 'soon'"),
    (["run", "x", "--bogus"], "ksmtui run: error: unrecognized arguments: --bogus"),
    (["compare", "x", "--flow", "legacy"], "ksmtui compare: error: unrecognized arguments: --flow legacy"),
    (["compare", "x", "--set", "flow=legacy"], "ksmtui compare: error: --set: engine.flow: compare takes no flow"),
    (["compare", "x", "--json"], "ksmtui compare: error: unrecognized arguments: --json"),
    (["kernel", "x", "--flow", "legacy"], "ksmtui kernel: error: unrecognized arguments: --flow legacy"),
    (["run", "x", "--trace"], "ksmtui run: error: unrecognized arguments: --trace"),
    (["list", "extra"], "ksmtui list: error: unrecognized arguments: extra"),
    (["x", "--json"], "ksmtui: error: unrecognized arguments: --json"),
    (["a", "b"], "ksmtui: error: unrecognized arguments: b"),
]


@pytest.mark.parametrize("argv,expected", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_options_give_one_line_and_status_2(argv, expected, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and expected in err


def test_options_are_parsed_into_the_namespace_the_commands_share():
    opts = parse_args("run", ["fleet", "--flow", "legacy", "--seed", "0x10", "--set", "pages_to_scan=200",
                       "--set", "use_zero_pages=y", "--set", "pages_to_scan=300", "--full-scans", "3",
                       "--after-ms", "500", "--json"])
    assert (opts.command, opts.scenario, opts.flow, opts.seed) == ("run", "fleet", "legacy", 16)
    assert opts.overrides == {"pages_to_scan": 300, "use_zero_pages": 1}  # the last --set wins, like echo
    assert (opts.full_scans, opts.after_ms, opts.json) == (3, 500, True)


RUN = ["--seed", "5", "--set", "pages_to_scan=7", "--full-scans", "2", "--after-ms", "9"]
NOTHING = {"flow": None, "seed": None, "overrides": {}, "full_scans": None, "after_ms": None, "json": False,
           "trace": False, "controller": "none", "controller_set": (), "sample_ms": 1000, "memory_from": None,
           "costs": None, "timing": False, "repeat": 1}
GIVEN = {**NOTHING, "seed": 5, "overrides": {"pages_to_scan": 7}, "full_scans": 2, "after_ms": 9}
EVERY_COMMAND = [  # (command, argv, every attribute of its Options): what it takes is parsed, the rest is unset
    (None, [], {**NOTHING, "scenario": "default"}),
    (None, ["fleet", "--flow", "legacy", *RUN], {**GIVEN, "scenario": "fleet", "flow": "legacy"}),
    (None, ["fleet", "--controller", "kubevirt", "--controller-set", "interval_ms=5", "--memory-from", "r.jsonl"],
     {**NOTHING, "scenario": "fleet", "controller": "kubevirt", "controller_set": ("interval_ms=5",),
      "memory_from": "r.jsonl"}),
    ("run", ["x", "--flow", "legacy", *RUN, "--json"], {**GIVEN, "scenario": "x", "flow": "legacy", "json": True}),
    ("run", ["x", "--controller", "ksmtuned", "--sample-ms", "50"],
     {**NOTHING, "scenario": "x", "controller": "ksmtuned", "sample_ms": 50}),
    ("check", ["x", "--set", "flow=series-v1", *RUN], {**GIVEN, "scenario": "x", "flow": "series-v1"}),
    ("compare", ["x", *RUN], {**GIVEN, "scenario": "x"}),
    ("list", [], {**NOTHING, "scenario": None}),
    ("kernel", ["x", *RUN, "--json", "--trace"], {**GIVEN, "scenario": "x", "json": True, "trace": True}),
    ("parity", ["x", "--flow", "legacy", *RUN, "--trace"], {**GIVEN, "scenario": "x", "flow": "legacy", "trace": True}),
    ("parity", ["x", "--timing", "--repeat", "3", "--costs", "reference"],
     {**NOTHING, "scenario": "x", "timing": True, "repeat": 3, "costs": "reference"}),
]


@pytest.mark.parametrize("command,argv,expected", EVERY_COMMAND, ids=[f"{c} {' '.join(a)}" for c, a,
                                                                      _ in EVERY_COMMAND])
def test_every_command_gets_every_attribute(command, argv, expected):
    """The commands share one Options: each gets every attribute, set from its own options or unset."""
    assert dataclasses.asdict(parse_args(command, argv)) == {"command": command, **expected}


def test_kernel_and_parity_take_trace():
    assert parse_args("kernel", ["x", "--trace", "--json"]).trace is True
    assert parse_args("parity", ["x", "--flow", "legacy", "--trace"]).trace is True


def test_set_flow_is_the_same_as_flow():
    assert parse_args("run", ["x", "--set", "flow=legacy"]).flow == "legacy"
    opts = parse_args("run", ["x", "--set", "flow=legacy", "--flow", "legacy"])
    assert opts.flow == "legacy" and "flow" not in opts.overrides


def test_help_exits_0_and_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "commands: run, compare, check, list, kernel, parity, bench" in capsys.readouterr().out


def test_the_console_script_reports_a_bad_option_without_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "ksmtui", "run", "x", "--set", "smart_scan=2"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "ksmtui run: error: --set: ksm.smart_scan: expected 0 or 1, got 2\n"
