"""`ksmtui host`: this machine's own ksmd, in the UI or as JSON Lines (docs/host.md).

    ksmtui host [--interval S] [--record FILE] [--csv FILE] [--alert-cpu PCT|off] [--no-trace]  the live UI
    ksmtui host --json [--interval S] [--count N] [--record FILE] [--csv FILE] [--group-by BY]  one JSON object
                                                                 per sample
    ksmtui host --csv FILE|- --no-ui [--count N]                 one CSV row per sample, no UI
    ksmtui host --listen [ADDR:]PORT | --textfile FILE [--no-ui] [--group-by BY]  a Prometheus exporter
                                                                 (docs/prometheus.md)
    ksmtui host --why PID [--json]     what registering PID with KSM would save (ksmtui.host.register)

No /sys/kernel/mm/ksm or a bad option: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from engine.knobs import KSM_KNOBS
from engine.scenario import printable
from ksmtui.cli.options import Parser, UsageError, add_knobs_epilog, number, positive
from ksmtui.host.units import GROUPINGS, Unit, group_totals
from ksmtui.host.whynot import knob_reasons, sample_why_not
from ksmtui.text.units import MIB

_interval = number(float, 0.05, 3600, "seconds between 0.05 and 3600")
_percent = number(float, 0, 6400, "a percent of one CPU, 0 to 6400, or off")


def alert_cpu(text: str) -> float:
    """--alert-cpu: a percent of one CPU, or "off" (-1: no limit; see ksmtui.host.alerts)."""
    return -1.0 if text.strip().lower() == "off" else _percent(text)


def add_alert_cpu(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alert-cpu", type=alert_cpu, metavar="PCT|off",
                   help="alert in the header (and in --json, --csv) when ksmd uses more than PCT%% of a CPU "
                   "(default: the host's advisor_max_cpu, 70 unless changed); general_profit below 0 always "
                   "alerts")


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
    p.add_argument("--csv", metavar="FILE", help="also write every sample to FILE as a CSV row (- : stdout, "
                   "with --no-ui)")
    add_alert_cpu(p)
    p.add_argument("--no-trace", action="store_true", help="do not enable the ksm tracepoints")
    p.add_argument("--group-by", choices=GROUPINGS, metavar="BY",
                   help=f"with --json: each sample adds per-group totals ({', '.join(GROUPINGS)}); with --listen or "
                   "--textfile: the per-process metrics are per group")
    p.add_argument("--listen", type=_listen, metavar="[ADDR:]PORT",
                   help="serve the newest sample's metrics to Prometheus on http://ADDR:PORT/metrics (ADDR 127.0.0.1 "
                   "unless given)")
    p.add_argument("--textfile", metavar="FILE", help="rewrite FILE with the metrics at every sample (atomically), "
                   "for node_exporter's textfile collector")
    p.add_argument("--top", type=positive, metavar="N", help="with --listen/--textfile: per-process (or group) metrics "
                   "for the N that save most, the rest as \"other\" (default 20)")
    p.add_argument("--no-ui", action="store_true", help="no UI and no output: only --listen, --textfile, --record, "
                   "--csv")
    p.add_argument("--why", type=positive, metavar="PID", help="any process, KSM knows it or not: what registering it "
                   "(merge-any) would save alone and with the processes registered now, modelled from a capture "
                   "(root); then exit")
    add_knobs_epilog(p, KSM_KNOBS)
    if p.epilog:
        p.epilog = p.epilog.replace("knobs:", "knobs (k in the UI; written as root after y):", 1)
    return p


def main(argv: list[str]) -> int:
    from ksmtui.host.recording import Sinks
    from ksmtui.host.sampler import HostSampler, NoKsm

    opts = host_parser().parse_args(argv)
    exporting = opts.listen or opts.textfile
    if opts.why is not None:
        if exporting or opts.record or opts.csv or opts.no_ui or opts.count or opts.group_by:
            raise UsageError("argument --why: only with --json")
        return why_main(opts.why, opts.json)
    if opts.csv == "-" and (opts.json or not opts.no_ui):
        raise UsageError("argument --csv: - (stdout) only with --no-ui and without --json")
    if opts.count and not (opts.json or opts.no_ui):
        raise UsageError("argument --count: only with --json or --no-ui")
    if opts.group_by and not (opts.json or exporting):
        raise UsageError("argument --group-by: only with --json, --listen or --textfile")
    if opts.no_ui and not (exporting or opts.record or opts.csv or opts.json):
        raise UsageError("argument --no-ui: only with --listen, --textfile, --record or --csv (else it does "
                         "nothing)")
    if opts.top and not exporting:
        raise UsageError("argument --top: only with --listen or --textfile")
    try:
        sampler = HostSampler(opts.interval, trace=not opts.no_trace)
    except NoKsm as err:
        raise UsageError(str(err)) from None
    sinks = Sinks()
    try:
        if opts.record:
            from ksmtui.host.recording import Recorder

            try:
                sinks.append(Recorder(opts.record, opts.interval))
            except OSError as err:
                raise UsageError(f"--record: {opts.record}: {err.strerror or err}") from None
        if opts.csv:
            sinks.append(open_csv(opts.csv, opts.alert_cpu))
        if exporting:
            sinks.append(_exporter(opts))
        if opts.json or opts.no_ui:
            return _headless(sampler, opts.interval, opts.count, sinks or None, opts.json, opts.group_by,
                             opts.alert_cpu)
        from ksmtui.ui.apps.host import run_host_app

        return run_host_app(sampler, sinks or None, opts.alert_cpu)
    finally:
        sampler.close()
        sinks.close()


def _exporter(opts):
    from ksmtui.host.exporter import TOP, Exporter, by_process, by_unit, check_textfile

    if opts.textfile:
        try:
            check_textfile(opts.textfile)
        except OSError as err:
            raise UsageError(f"--textfile: {opts.textfile}: {err.strerror}") from None
    exporter = Exporter(opts.top or TOP, by_unit(opts.group_by) if opts.group_by else by_process,
                        textfile=opts.textfile,
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


def open_csv(path: str, alert: float | None):
    """The --csv sink; a path that cannot be written is one line (exit status 2), before sampling."""
    from ksmtui.host.csvout import CsvWriter

    try:
        return CsvWriter(path, alert)
    except OSError as err:
        raise UsageError(f"--csv: {path}: {err.strerror or err}") from None


def sample_json(sample, group_by: str | None = None, before=None, alert: float | None = None) -> dict:
    """A sample as --json prints it: the sample, "why_not" (ksmtui.host.whynot), "alerts"
    (ksmtui.host.alerts: ksmd's CPU since `before`, the previous sample), and with --group-by
    "group_by" and "groups" (ksmtui.host.units.group_totals)."""
    from ksmtui.host.alerts import alerts, ksmd_cpu

    out = {**sample.to_json(), "why_not": sample_why_not(sample),
           "alerts": alerts(sample, ksmd_cpu(before, sample), alert)}
    if group_by:
        out.update(group_by=group_by, groups=group_totals(sample.processes, group_by))
    return out


def _headless(sampler, interval: float, count: int | None, sink, json_lines: bool, group_by: str | None = None,
              alert: float | None = None) -> int:
    if sampler.trace_note:
        print(f"ksmtui host: note: no tracepoints: {sampler.trace_note}", file=sys.stderr)
    n = 0
    before = None
    next_at = time.monotonic()
    while count is None or n < count:
        sample = sampler.sample()
        if sink is not None:
            sink.add(sample)
            failed = sink.failed
            if failed is not None:
                raise UsageError(f"{failed.option} {failed.path}: {failed.error}; "
                                 + failed.holds.format(n=n, s="s" * (n != 1)))
        if json_lines:
            sys.stdout.write(json.dumps(sample_json(sample, group_by, before, alert), separators=(",", ":")) + "\n")
            sys.stdout.flush()
        before = sample
        n += 1
        if count is None or n < count:
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    return 0


def why_main(pid: int, json_out: bool) -> int:
    from ksmtui.host.register import NotInspectable, inspect
    from ksmtui.host.sysfs import read_knobs

    try:
        r = inspect(pid)
    except NotInspectable as err:
        raise UsageError(f"--why {pid}: {printable(str(err))}") from None
    try:
        machine = knob_reasons(read_knobs())
    except OSError:
        machine = []
    if json_out:
        print(json.dumps({**r.as_json(), "why_not": machine}))
        return 0
    sys.stdout.write("\n".join(why_lines(r, machine)) + "\n")
    return 0


def why_lines(r, machine: list[dict]) -> list[str]:
    """`host --why`'s report: a Registering (ksmtui.host.register) and the machine-wide reasons."""
    def pages(n: int) -> str:
        return f"{n:,} pages ({n * r.page_size / MIB:,.2f} MiB)"

    unit = Unit.from_json(r.pid, r.comm, r.unit).describe()
    n = len(r.others)
    lines = [f"pid {r.pid} ({printable(r.comm)}) · {unit} · registered with KSM now: {'yes' if r.registered else 'no'}",
             "registered with merge-any (prctl PR_SET_MEMORY_MERGE, systemd's MemoryKSM=), modelled: what ksmd "
             "settles to under this machine's knobs",
             f"  alone: saves {pages(r.alone)} of the {r.pages:,} pages ksmd would scan in it",
             f"  the {n:,} process{'es' * (n != 1)} registered now, without it: save {pages(r.others_saved)}"
             if n else "  no other process is registered now",
             f"  together: save {pages(r.together)}: {pages(r.gain)} more by registering it; its "
             f"ksm_process_profit {r.profit / MIB:,.2f} MiB ({r.profit:,} bytes)"]
    lines += [f"machine-wide now: {m['text']}" for m in machine]
    return lines
