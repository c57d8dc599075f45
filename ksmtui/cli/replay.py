"""`ksmtui replay FILE`: a recording made by `ksmtui host --record`, in the host UI; with
`--csv OUT`, its samples as CSV rows (ksmtui.host.csvout) and no UI.

A corrupt recording, a capture or a missing file, or a bad option: one line, exit status 2. A
recording whose last line was cut short (the host killed mid-write) replays up to it, and says so.
"""

from __future__ import annotations

import argparse
import sys

from engine.scenario import printable
from ksmtui.cli.host import add_alert_cpu, open_csv
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
    p.add_argument("--csv", metavar="OUT", help="write the samples to OUT as CSV rows (- : stdout) instead of "
                   "replaying them")
    add_alert_cpu(p)
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
    if opts.csv:
        out = open_csv(opts.csv, opts.alert_cpu)
        try:
            for n, sample in enumerate(samples):
                out.add(sample)
                if out.error is not None:
                    raise UsageError(f"--csv {opts.csv}: {out.error}; " + out.holds.format(n=n, s="s" * (n != 1)))
        finally:
            out.close()
        return 0
    from ksmtui.ui.apps.host import run_replay_app

    return run_replay_app(opts.file, header, samples, opts.speed, "; ".join(notes), opts.alert_cpu)
