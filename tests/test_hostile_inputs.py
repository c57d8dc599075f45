"""Issue 28: hostile captures, recordings, options and outputs. Each is one line on stderr and exit
status 2 (or works), within a 2 GB address space and seconds; strings from a process, the kernel or
a file never reach the terminal as control characters. Big or absurd files are made here, not
kept in the tree."""

from __future__ import annotations

import re

from engine import capture as fmt
from ksmtui.cli import main as cli

ESC = "\x1b]0;PWN\x07\x1b[2J\x9b"


def no_control(text: str) -> bool:
    return not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", text)


# ------------------------------------------------------------------------ escapes --

def test_estimate_shows_a_process_name_escaped(tmp_path, capsys):
    path = tmp_path / "c.npz"
    fmt.save(fmt.from_contents([(1, ESC, [(fmt.MERGEABLE, [1, 1, 0])]), (2, "b", [(fmt.MERGEABLE, [1])])]), path)
    assert cli(["estimate", str(path)]) == 0
    out = capsys.readouterr().out
    assert no_control(out) and "\\x1b]0;PWN\\x07" in out
