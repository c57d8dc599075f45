"""Files that cannot be scenarios: `check` and `run` refuse each in one line, exit status 2, within
a 2 GB address space and without hanging (the subprocess timeout is a hang guard, not a measure).

The files of tests/hostile/ open with `# expect: TEXT`, as tests/malformed/ do; the FIFO, the
over-long name and the oversized file are made at test time.
"""

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from engine.scenario import MAX_FILE_BYTES, ScenarioError, load_scenario

HOSTILE = Path(__file__).parent / "hostile"
CORPUS = sorted(HOSTILE.glob("*.toml"))
ADDRESS_SPACE = 2 << 30
HANG_GUARD_S = 120


def expected(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ")


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def ksmtui(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ksmtui", *args], capture_output=True, text=True,
                          timeout=HANG_GUARD_S, preexec_fn=_limit_address_space, stdin=subprocess.DEVNULL)


def made_at_test_time(tmp: Path) -> dict[str, tuple[str, str]]:
    """name: (path, what the error says)."""
    fifo = tmp / "fifo.toml"
    os.mkfifo(fifo)
    long_name = tmp / ("x" * 300 + ".toml")
    big = tmp / "big.toml"
    with big.open("w") as f:
        f.write('name = "big"\n' + "#" * (MAX_FILE_BYTES + 1) + "\n")
    return {
        "fifo": (str(fifo), "a FIFO; expected a regular file"),
        "long-name": (str(long_name), "cannot read: File name too long"),
        "directory": (str(tmp), "a directory; expected a regular file"),
        "oversized": (str(big), f"expected at most {MAX_FILE_BYTES:,}"),
        "dev-zero": ("/dev/zero", "a character device; expected a regular file"),
        "proc-self-mem": ("/proc/self/mem", "cannot read: Input/output error"),
        "proc-status": ("/proc/self/status", "its size is not known"),
    }


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> list[tuple[str, str, str]]:
    made = made_at_test_time(tmp_path_factory.mktemp("hostile"))
    return [(p.stem, str(p), expected(p)) for p in CORPUS] + [(k, path, text) for k, (path, text) in made.items()]


def test_corpus_has_the_issue_cases():
    assert len(CORPUS) >= 10


@pytest.mark.parametrize("command", ["check", "run"])
def test_each_is_refused_in_one_line_exit_2_in_2_GB(cases, command):
    for name, path, text in cases:
        result = ksmtui(command, path)
        lines = result.stderr.splitlines()
        assert result.returncode == 2, (name, result.returncode, result.stderr[-500:])
        assert len(lines) == 1 and lines[0].startswith(f"ksmtui {command}: error: "), (name, result.stderr[-500:])
        assert text in lines[0], (name, lines[0][:500])
        assert "\x1b" not in result.stderr and result.stdout == "", name


def test_each_is_a_scenario_error_in_process(cases):
    for name, path, text in cases:
        with pytest.raises(ScenarioError) as info:
            load_scenario(path)
        assert text in str(info.value) and "\n" not in str(info.value), name


def test_deep_but_legal_toml_stays_a_scenario(tmp_path):
    """The nesting limit is far above what a scenario needs; dots in values and strings do not count."""
    path = tmp_path / "ok.toml"
    path.write_text(
        'name = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w"  # x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x\n'
        'description = """[[[[[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{{{{{{{{{{{{{{"""\n'
        "process = [{name = 'p', region = [{name = 'r', pages = 8}]}]\n"
        "[[event]]\nat_ms = 1\naction = 'write'\nregion = 'r'\nfraction = 0.5\n"
    )
    assert load_scenario(path).events[0].fraction == 0.5


def test_escape_sequences_in_arguments_come_back_escaped(capsys):
    from ksmtui.cli import main

    for argv in (["run", "default", "--x\x1b]0;title\x07"], ["check", "\x1b[31m.toml"], ["\x9b2J"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and not any(c in err for c in "\x1b\x07\x9b"), err
        assert "\\x1b" in err or "\\x9b" in err
