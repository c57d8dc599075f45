"""`ksmtui host` (this machine's own ksmd: the UI, or JSON Lines) and `ksmtui replay` (a recording
of it, in the same UI).

    ksmtui host [--interval S] [--record FILE] [--no-trace]      the live UI
    ksmtui host --json [--interval S] [--count N] [--record FILE]  one JSON object per sample
    ksmtui host --listen [ADDR:]PORT | --textfile FILE [--no-ui]   a Prometheus exporter (docs/prometheus.md)
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


def _listen(text: str) -> tuple[str, int]:
    addr, colon, port = text.rpartition(":")
    addr = addr.removeprefix("[").removesuffix("]") if colon else "127.0.0.1"
    if not port.isdigit() or int(port) > 65535 or (colon and not addr):
        raise argparse.ArgumentTypeError(f"expected [ADDR:]PORT (9901, 127.0.0.1:9901, [::1]:9901; 0.0.0.0:PORT for "
                                         f"every address), got {text!r}")
    return addr, int(port)


def host_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ksmtui host", description="Watch this machine's own ksmd (/sys/kernel/mm/ksm, "
               "/proc/PID/ksm_stat, the ksm tracepoints as root).")
    p.add_argument("--json", action="store_true", help="print one JSON object per sample (JSON Lines), no UI")
    p.add_argument("--interval", type=_interval, default=1.0, metavar="S", help="seconds between samples (default 1)")
    p.add_argument("--count", type=positive, metavar="N", help="with --json or --no-ui: stop after N samples")
    p.add_argument("--record", metavar="FILE", help="also write every sample to FILE, for ksmtui replay")
    p.add_argument("--no-trace", action="store_true", help="do not enable the ksm tracepoints")
    p.add_argument("--listen", type=_listen, metavar="[ADDR:]PORT",
                   help="serve the newest sample's metrics to Prometheus on http://ADDR:PORT/metrics (ADDR 127.0.0.1 "
                   "unless given)")
    p.add_argument("--textfile", metavar="FILE", help="rewrite FILE with the metrics at every sample (atomically), "
                   "for node_exporter's textfile collector")
    p.add_argument("--top", type=positive, metavar="N", help="with --listen/--textfile: per-process metrics for the N "
                   "processes that save most, the rest as \"other\" (default 20)")
    p.add_argument("--no-ui", action="store_true", help="no UI and no output: only --listen, --textfile, --record")
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
    if opts.count and not (opts.json or opts.no_ui):
        raise UsageError("argument --count: only with --json or --no-ui")
    if opts.no_ui and not (opts.listen or opts.textfile or opts.record or opts.json):
        raise UsageError("argument --no-ui: only with --listen, --textfile or --record (else it does nothing)")
    if opts.top and not (opts.listen or opts.textfile):
        raise UsageError("argument --top: only with --listen or --textfile")
    try:
        sampler = HostSampler(opts.interval, trace=not opts.no_trace)
    except NoKsm as err:
        print(f"ksmtui host: error: {err}", file=sys.stderr)
        return 2
    sinks = _Sinks()
    try:
        if opts.record:
            from ksmtui.recording import Recorder

            try:
                sinks.append(Recorder(opts.record, opts.interval))
            except OSError as err:
                raise UsageError(f"--record: {opts.record}: {err.strerror}") from None
        if opts.listen or opts.textfile:
            sinks.append(_exporter(opts))
        if opts.json or opts.no_ui:
            return _headless(sampler, opts.interval, opts.count, sinks or None, opts.json)
        from ksmtui.ui.host_app import run_host_app

        return run_host_app(sampler, sinks or None)
    finally:
        sampler.close()
        sinks.close()


class _Sinks(list):
    """Where every sample goes besides the UI or stdout: the recording, the exporter."""

    def add(self, sample) -> None:
        for sink in self:
            sink.add(sample)

    def close(self) -> None:
        for sink in self:
            sink.close()


def _exporter(opts):
    from ksmtui.host.exporter import TOP, Exporter, check_textfile
    from ksmtui.options import UsageError

    if opts.textfile:
        try:
            check_textfile(opts.textfile)
        except OSError as err:
            raise UsageError(f"--textfile: {opts.textfile}: {err.strerror}") from None
    exporter = Exporter(opts.top or TOP, textfile=opts.textfile,
                        on_error=lambda said: print(f"ksmtui host: error: {said}", file=sys.stderr))
    if opts.listen:
        addr, port = opts.listen
        try:
            host, port = exporter.serve(addr, port)
        except OSError as err:
            raise UsageError(f"--listen {addr}:{port}: {err.strerror}") from None
        host = f"[{host}]" if ":" in host else host
        print(f"ksmtui host: serving metrics on http://{host}:{port}/metrics", file=sys.stderr, flush=True)
    return exporter


def _headless(sampler, interval: float, count: int | None, sink, json_lines: bool) -> int:
    if sampler.trace_note:
        print(f"ksmtui host: note: no tracepoints: {sampler.trace_note}", file=sys.stderr)
    n = 0
    next_at = time.monotonic()
    while count is None or n < count:
        sample = sampler.sample()
        if sink is not None:
            sink.add(sample)
        if json_lines:
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
