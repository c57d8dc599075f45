"""`ksmtui replay FILE`: a recording made by `ksmtui host --record`, in the host UI.

A corrupt recording, a capture or a missing file, or a bad option: one line, exit status 2. A
recording whose last line was cut short (the host killed mid-write) replays up to it, and says so.
"""

from __future__ import annotations

import argparse
import sys

from engine.scenario import printable
from ksmtui.cli.options import Parser, UsageError
from ksmtui.host.recording import REPLAY_SPEEDS


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value not in REPLAY_SPEEDS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(f'{s:g}' for s in REPLAY_SPEEDS)}, got {text!r}")
    return value


def replay_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ksmtui replay", description="Play a recording made by ksmtui host --record in the UI.")
    p.add_argument("file", help="a recording (ksmtui host --record FILE)")
    p.add_argument("--speed", type=_speed, default=1.0, help="samples per recorded second, as + and - set it")
    return p


def main(argv: list[str]) -> int:
    from ksmtui.host.recording import RecordingError, read_recording

    opts = replay_parser().parse_args(argv)
    notes: list[str] = []
    try:
        header, samples = read_recording(opts.file, notes)
    except RecordingError as err:
        raise UsageError(str(err)) from None
    for note in notes:
        print(f"ksmtui replay: note: {printable(note)}", file=sys.stderr)
    from ksmtui.ui.apps.host import run_replay_app

    return run_replay_app(opts.file, header, samples, opts.speed, "; ".join(notes))
