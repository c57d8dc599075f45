"""`ksmtui bench`: how fast the engine scans, per workload and path, beside the real ksmd; the
sweep's scaling; the UI's answer to keys; host mode's sampling cost (ksmtui/bench/ measures, this
module runs and reports)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from engine import engine_kind
from engine.knobs import ENGINE_KNOBS
from ksmtui.bench.engine import (
    FIRST_SCAN_TARGET_S,
    MAX_PAGES,
    PAGES_TO_SCAN,
    SLEEP_MS,
    STEADY,
    SYSFS_RUN,
    TARGETS,
    WORKLOADS,
    FreshProcessError,
    Row,
    engine_line,
    in_fresh_process,
    interpreter_loop_s,
    kernel_writable,
    measure_fresh,
    measure_kernel,
    memory_lines,
    rows,
    say,
    snapshot_cost,
    ui_overhead,
)
from ksmtui.cli.options import Parser, number
from ksmtui.cli.options import flow as flow_arg


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ksmtui bench", description="How fast the engine scans, per workload and path, beside the real "
                                                "ksmd.")
    p.add_argument("--pages", type=_sizes, default=[20_000], metavar="N[,N...]",
                   help=f"simulated pages per workload, one size or several (default 20,000; at most {MAX_PAGES:,})")
    p.add_argument("--workloads", type=_workloads, default=list(WORKLOADS),
                   help="comma-separated subset of: " + ", ".join(WORKLOADS))
    p.add_argument("--flow", type=flow_arg, help="the engine's flow (default optimized)")
    p.add_argument("--min-time", type=_seconds, default=1.0, metavar="S",
                   help="time whole full scans for at least S CPU seconds per workload (default 1)")
    p.add_argument("--repeat", type=_repeat, default=1, metavar="N",
                   help="measure every workload and size N times, the model then ksmd each time (default 1)")
    p.add_argument("--snapshot-pages", type=_pages, default=100_000, metavar="N",
                   help="machine size for the snapshot cost (default 100,000)")
    p.add_argument("--ui-seconds", type=_seconds, default=5.0, metavar="S",
                   help="run the engine S wall seconds headless and S under the UI (default 5; 0 skips)")
    p.add_argument("--no-kernel", action="store_true", help="skip the real ksmd even where it is writable")
    p.add_argument("--host-seconds", type=_seconds, default=10.0, metavar="S",
                   help="time `ksmtui host` beside 1,000 sleeping processes, sampling only, as an exporter scraped at "
                   "the same interval, and with the UI, S s each (default 10; 0 skips)")
    p.add_argument("--host-interval", type=_host_interval, default=1.0, metavar="S",
                   help="seconds between host-mode samples (and scrapes) in that timing (default 1)")
    p.add_argument("--profile", action="store_true", help="print where the engine's time goes, per workload")
    p.add_argument("--sweep", action="store_true", help="only the sweep's scaling: 64 runs on 1 and 2 Dask workers")
    p.add_argument("--keys", type=_repeat, metavar="N",
                   help="only the UI's answer to keys: N rounds, in a terminal of 120x40, on large flat out")
    return p


_host_interval = number(float, 0.05, 3600, "seconds 0.05..3600")


def _pages(text: str) -> int:
    try:
        n = int(text.replace(",", "").replace("_", ""), 0)
    except ValueError:
        n = 0
    if not 64 <= n <= MAX_PAGES:
        raise argparse.ArgumentTypeError(f"expected an integer 64..{MAX_PAGES}, got {text!r}")
    return n


def _sizes(text: str) -> list[int]:
    try:
        return [_pages(size) for size in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected integers 64..{MAX_PAGES}, comma-separated, got {text!r}") from None


def _repeat(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 20:
        raise argparse.ArgumentTypeError(f"expected an integer 1..20, got {text!r}")
    return int(text)


def _workloads(text: str) -> list[str]:
    names = [w.strip() for w in text.split(",") if w.strip()]
    bad = [w for w in names if w not in WORKLOADS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(WORKLOADS)}, got {text!r}")
    return names


_seconds = number(float, 0, 3600, "seconds 0..3600")


def main(argv: list[str]) -> int:
    opts = build_parser().parse_args(argv)
    try:
        return run(opts)
    except FreshProcessError as err:
        say("")
        print(f"ksmtui bench: {err}", file=sys.stderr)
        return 1


def run(opts: argparse.Namespace) -> int:
    if opts.sweep:
        from ksmtui.sweep.run import bench

        print("\n".join(bench()))
        return 0
    if opts.keys:
        from ksmtui.bench.keys import key_latency, latency_lines

        say(f"keys: {opts.keys} rounds on large flat out, from writing the key to the terminal to reading its answer")
        times = key_latency(opts.keys)
        say("")
        print(f"keys on large (98,304 pages) flat out, at 120x40, {os.cpu_count()} CPUs: from the key written "
              "to the app's terminal to the answer read back from it")
        print("\n".join(latency_lines(times)))
        return 0
    flow = opts.flow or ENGINE_KNOBS["flow"].default
    sizes = ", ".join(f"{n:,}" for n in opts.pages)
    print(f"ksmtui bench: {sizes} pages per workload, flow {flow}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, {opts.repeat} repetition{'s' if opts.repeat > 1 else ''}")
    print(engine_line(interpreter_loop_s()))
    print(f"pages_to_scan {STEADY['pages_to_scan']:,}, sleep_millisecs {STEADY['sleep_millisecs']} "
          f"({', '.join(w for w in WORKLOADS if w in TARGETS)}); pages_to_scan {PAGES_TO_SCAN}, "
          f"sleep_millisecs {SLEEP_MS} (the others)")
    kernel, note = not opts.no_kernel, ""
    if opts.no_kernel:
        note = "real ksmd: not measured (--no-kernel)"
    elif not kernel_writable():
        kernel, note = False, f"real ksmd: not measured ({SYSFS_RUN} is not writable here)"
    results = [Row(w, n, [], []) for n in opts.pages for w in opts.workloads]
    failed: list[str] = []
    for rep in range(opts.repeat):
        for r in results:
            run = f"[{rep + 1}/{opts.repeat}] {WORKLOADS[r.workload]}, {r.pages:,} pages"
            say(f"model: {run}: building, scanning and timing in a fresh process")
            r.model.append(measure_fresh(r.workload, r.pages, opts.flow, opts.min_time, opts.profile))
            if kernel:
                say(f"real ksmd: {run}: waiting for the machine lock, then in real processes")
                ns, error = measure_kernel(r.workload, r.pages)
                r.ksmd.append(ns)
                if error:
                    failed.append(f"{WORKLOADS[r.workload]} at {r.pages:,} pages: {error}")
    kinds = {m.engine for r in results for m in r.model} - {engine_kind()}
    if kinds:  # a fresh process found another engine (a build or an edit meanwhile)
        print(f"note: some of the model's measurements ran another engine: {', '.join(sorted(kinds))}")
    saved = ""
    for n in opts.pages:  # for `ksmtui estimate`: this machine's ksmd per path, each size kept
        measured = {r.workload: statistics.median(ks)
                    for r in results if r.pages == n and (ks := [k for k in r.ksmd if k])}
        if measured:
            from ksmtui.host import costs as ksmd_costs

            saved = f"saved for ksmtui estimate in {ksmd_costs.save(measured, n)}"
    note = "; ".join(filter(None, [note, saved]))
    say("")
    print()
    print("\n".join(rows(results, kernel)))
    if note:
        print(note)
    for f in dict.fromkeys(failed):
        print(f"real ksmd not measured on {f}")
    big = [r for r in results if r.pages == MAX_PAGES]
    if big:
        print(f"first full scan of a {MAX_PAGES:,}-page machine (CPU s; target {FIRST_SCAN_TARGET_S:g} s): "
              + ", ".join(f"{r.workload} {max(m.first_scan_s for m in r.model):.1f} s" for r in big))
    print()
    print("\n".join(memory_lines(results)))
    small = min(opts.pages)
    if opts.ui_seconds:
        try:
            import ksmtui.ui.apps.model  # noqa: F401
        except ImportError:
            print("\nUI overhead: not measured (this build has no ksmtui.ui.apps.model)")
        else:
            say(f"UI overhead: the fleet, {opts.ui_seconds:g} s under the UI, the same pages headless, 3 times")
            pairs = ui_overhead(small, opts.ui_seconds, opts.flow)
            say("")
            costs = sorted(1 - ui / headless for headless, ui, _, _ in pairs)
            print(f"\nUI overhead (mixed fleet of {small:,} pages running flat out, {opts.ui_seconds:g} wall seconds "
                  f"under the UI at 160x50, then the same pages headless; median of {len(pairs)}): the UI costs "
                  f"{costs[len(costs) // 2] * 100:.0f}% (runs: {', '.join(f'{c * 100:.0f}%' for c in costs)})")
            for headless, ui, fps, share in pairs:
                print(f"  headless {headless:,.0f} pages/s, under the UI {ui:,.0f} pages/s; the UI drew "
                      f"{fps:.1f} times a second and its thread ran {share * 100:.0f}% of the time")
    if opts.host_seconds and not opts.no_kernel and os.path.isdir("/sys/kernel/mm/ksm"):
        from ksmtui.bench.host import host_cpu

        every = 10 if os.geteuid() == 0 else 0
        pace = f"every {opts.host_interval:g} s"
        for tab, exporter in ((None, False), (None, True), ("overview", False), ("processes", False)):
            what = (f"the UI on the {tab.capitalize()} tab, 120x40, headless" if tab else
                    "as an exporter (--no-ui --listen), scraped at each sample" if exporter else
                    "sampling only, as --json")
            say(f"host mode: {what}, {pace} for {opts.host_seconds:g} s beside 1,000 sleeping processes")
            h = host_cpu(1000, merge_any_every=every, seconds=opts.host_seconds, interval=opts.host_interval, ui=tab,
                         exporter=exporter)
            say("")
            if not tab and not exporter:
                traced = "with the ksm tracepoints" if h["traced"] else f"without tracepoints ({h['trace_note']})"
                print(f"\nhost mode sampling {pace}, {traced}, beside {h['processes']:,} sleeping processes "
                      f"({h['merge_any']:,} merge-any, {h['known_to_ksm']:,} known to KSM):")
            scrapes = f", {h['scrapes']} scrapes" if exporter else ""
            print(f"  {what}: {h['share'] * 100:.2f}% of a core ({h['cpu_s'] * 1000:,.0f} ms CPU in "
                  f"{h['wall_s']:.1f} s, {h['samples']} samples{scrapes})")
    say(f"snapshot: {opts.snapshot_pages:,}-page machine")
    mean_ms, max_ms, snapshot_profile = snapshot_cost(opts.snapshot_pages, opts.flow, opts.profile)
    say("")
    print(f"\nsnapshot of a {opts.snapshot_pages:,}-page machine (mixed fleet, trees excerpted): "
          f"{mean_ms:.2f} ms mean, {max_ms:.2f} ms worst of 20")
    if not opts.profile:
        return 0
    for r in results:
        print(f"\nprofile of {WORKLOADS[r.workload]} at {r.pages:,} pages, one more full scan (by own time):\n"
              f"{r.model[0].profile}")
    print(f"\nprofile of one snapshot of the {opts.snapshot_pages:,}-page machine:\n{snapshot_profile}")
    for w in opts.workloads:
        mem = in_fresh_process("memory_sites", w, small, opts.flow)
        print(f"\nmemory held by {WORKLOADS[w]} at its steady state (tracemalloc, {small:,} pages): "
              f"{mem['held'] / mem['pages']:,.0f} B/page, peak {mem['peak'] / mem['pages']:,.0f} B/page; "
              "largest sites:")
        for site, size, count in mem["sites"]:
            print(f"  {size / mem['pages']:>8,.0f} B/page  {count:>9,} blocks  {site}")
    return 0


