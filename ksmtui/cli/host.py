"""`ksmtui host`: this machine's own ksmd, in the UI or as JSON Lines (docs/host.md).

    ksmtui host [--interval S] [--record FILE] [--no-trace]      the live UI
    ksmtui host --json [--interval S] [--count N] [--record FILE] [--group-by BY]  one JSON object per sample

No /sys/kernel/mm/ksm or a bad option: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ksmtui.cli.options import Parser, UsageError, positive
from ksmtui.host.units import GROUPINGS, group_totals
from ksmtui.host.whynot import sample_why_not


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0.05 and 3600, got {text!r}")
    return value


def host_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ksmtui host", description="Watch this machine's own ksmd (/sys/kernel/mm/ksm, "
               "/proc/PID/ksm_stat, the ksm tracepoints as root).")
    p.add_argument("--json", action="store_true", help="print one JSON object per sample (JSON Lines), no UI")
    p.add_argument("--interval", type=_interval, default=1.0, metavar="S", help="seconds between samples (default 1)")
    p.add_argument("--count", type=positive, metavar="N", help="with --json: stop after N samples")
    p.add_argument("--record", metavar="FILE", help="also write every sample to FILE, for ksmtui replay")
    p.add_argument("--no-trace", action="store_true", help="do not enable the ksm tracepoints")
    p.add_argument("--group-by", choices=GROUPINGS, metavar="BY",
                   help=f"with --json: each sample adds per-group totals ({', '.join(GROUPINGS)})")
    return p


def main(argv: list[str]) -> int:
    from ksmtui.host.sampler import HostSampler, NoKsm

    opts = host_parser().parse_args(argv)
    if opts.count and not opts.json:
        raise UsageError("argument --count: only with --json")
    if opts.group_by and not opts.json:
        raise UsageError("argument --group-by: only with --json")
    try:
        sampler = HostSampler(opts.interval, trace=not opts.no_trace)
    except NoKsm as err:
        raise UsageError(str(err)) from None
    recorder = None
    try:
        if opts.record:
            from ksmtui.host.recording import Recorder

            try:
                recorder = Recorder(opts.record, opts.interval)
            except OSError as err:
                raise UsageError(f"--record: {opts.record}: {err.strerror or err}") from None
        if opts.json:
            return _json_lines(sampler, opts.interval, opts.count, recorder, opts.group_by)
        from ksmtui.ui.apps.host import run_host_app

        return run_host_app(sampler, recorder)
    finally:
        sampler.close()
        if recorder is not None:
            recorder.close()


def sample_json(sample, group_by: str | None = None) -> dict:
    """A sample as --json prints it: the sample, "why_not" (ksmtui.host.whynot), and with
    --group-by "group_by" and "groups" (ksmtui.host.units.group_totals)."""
    out = {**sample.to_json(), "why_not": sample_why_not(sample)}
    if group_by:
        out.update(group_by=group_by, groups=group_totals(sample.processes, group_by))
    return out


def _json_lines(sampler, interval: float, count: int | None, recorder, group_by: str | None = None) -> int:
    if sampler.trace_note:
        print(f"ksmtui host: note: no tracepoints: {sampler.trace_note}", file=sys.stderr)
    n = 0
    next_at = time.monotonic()
    while count is None or n < count:
        sample = sampler.sample()
        if recorder is not None:
            recorder.add(sample)
            if recorder.error is not None:
                raise UsageError(f"--record {recorder.path}: {recorder.error}; the recording holds the "
                                 f"{n} sample{'s' * (n != 1)} before")
        sys.stdout.write(json.dumps(sample_json(sample, group_by), separators=(",", ":")) + "\n")
        sys.stdout.flush()
        n += 1
        if count is None or n < count:
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    return 0
