"""`ksmtui host` (this machine's own ksmd: the UI, or JSON Lines) and `ksmtui replay` (a recording
of it, in the same UI).

    ksmtui host [--interval S] [--record FILE] [--no-trace]      the live UI
    ksmtui host --json [--interval S] [--count N] [--record FILE]  one JSON object per sample
    ksmtui replay FILE [--speed X]                               a recording, in the UI

No /sys/kernel/mm/ksm, a bad option, or a truncated or corrupt recording: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ksmtui.options import Parser, positive

REPLAY_SPEEDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0.05 and 3600, got {text!r}")
    return value


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value not in REPLAY_SPEEDS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(f'{s:g}' for s in REPLAY_SPEEDS)}, got {text!r}")
    return value


def host_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ksmtui host", description="Watch this machine's own ksmd (/sys/kernel/mm/ksm, "
               "/proc/PID/ksm_stat, the ksm tracepoints as root).")
    p.add_argument("--json", action="store_true", help="print one JSON object per sample (JSON Lines), no UI")
    p.add_argument("--interval", type=_interval, default=1.0, metavar="S", help="seconds between samples (default 1)")
    p.add_argument("--count", type=positive, metavar="N", help="with --json: stop after N samples")
    p.add_argument("--record", metavar="FILE", help="also write every sample to FILE, for ksmtui replay")
    p.add_argument("--no-trace", action="store_true", help="do not enable the ksm tracepoints")
    return p


def replay_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ksmtui replay", description="Play a recording made by ksmtui host --record in the UI.")
    p.add_argument("file", help="a recording (ksmtui host --record FILE)")
    p.add_argument("--speed", type=_speed, default=1.0, help="samples per recorded second, as + and - set it")
    return p


def cmd_host(argv: list[str]) -> int:
    from ksmtui.kernel.host import HostSampler, NoKsm
    from ksmtui.options import UsageError

    opts = host_parser().parse_args(argv)
    if opts.count and not opts.json:
        raise UsageError("argument --count: only with --json")
    try:
        sampler = HostSampler(opts.interval, trace=not opts.no_trace)
    except NoKsm as err:
        print(f"ksmtui host: error: {err}", file=sys.stderr)
        return 2
    recorder = None
    try:
        if opts.record:
            from ksmtui.recording import Recorder

            try:
                recorder = Recorder(opts.record, opts.interval)
            except OSError as err:
                raise UsageError(f"--record: {opts.record}: {err.strerror}") from None
        if opts.json:
            return _json_lines(sampler, opts.interval, opts.count, recorder)
        from ksmtui.ui.host_app import run_host_app

        return run_host_app(sampler, recorder)
    finally:
        sampler.close()
        if recorder is not None:
            recorder.close()


def _json_lines(sampler, interval: float, count: int | None, recorder) -> int:
    if sampler.trace_note:
        print(f"ksmtui host: note: no tracepoints: {sampler.trace_note}", file=sys.stderr)
    n = 0
    next_at = time.monotonic()
    while count is None or n < count:
        sample = sampler.sample()
        if recorder is not None:
            recorder.add(sample)
        sys.stdout.write(json.dumps(sample.to_json(), separators=(",", ":")) + "\n")
        sys.stdout.flush()
        n += 1
        if count is None or n < count:
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    return 0


def cmd_replay(argv: list[str]) -> int:
    from ksmtui.recording import RecordingError, read_recording

    opts = replay_parser().parse_args(argv)
    try:
        header, samples = read_recording(opts.file)
    except RecordingError as err:
        print(f"ksmtui replay: error: {err}", file=sys.stderr)
        return 2
    from ksmtui.ui.host_app import run_replay_app

    return run_replay_app(opts.file, header, samples, opts.speed)
