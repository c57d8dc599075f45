"""`ksmtui capture PID... | --mergeable | --all [-o FILE] [--scenario] [--merge-any]`.

Reads live processes' memory into a capture file (hashes, never contents: docs/capture.md) and,
with --scenario, writes the scenario that runs that workload's shape beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from engine import capture as fmt
from engine.scenario import scenario_toml
from ksmtui.cli.options import Parser, UsageError

PROG = "ksmtui capture"



def _pid(text: str) -> int:
    try:
        pid = int(text)
    except ValueError:
        pid = 0
    if pid < 1:
        raise argparse.ArgumentTypeError(f"expected a process id (a positive integer), got {text!r}")
    return pid


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Capture processes' memory as content hashes (never contents), "
                                      "for ksmtui estimate and for scenarios.")
    p.add_argument("pids", nargs="*", type=_pid, metavar="PID", help="processes to capture, in the order ksmd visits them")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--mergeable", action="store_true", help="every process registered with KSM")
    which.add_argument("--all", action="store_true", help="every process (but this one)")
    p.add_argument("-o", "--output", type=Path, help="the capture file (default: capture-DATE-TIME.npz)")
    p.add_argument("--scenario", action="store_true", help="also write a scenario beside the capture (same name, .toml)")
    p.add_argument("--merge-any", action="store_true",
                   help="the scenario counts memory no one marked mergeable, as if every process set merge-any")
    return p


def main(argv: list[str]) -> int:
    from ksmtui.host.procmem import (
        CaptureDenied,
        NoSuchProcess,
        all_pids,
        capture,
        mergeable_pids,
    )

    opts = build_parser().parse_args(argv)
    if bool(opts.pids) + opts.mergeable + opts.all != 1:
        raise UsageError("expected PID..., --mergeable or --all (one of them)")
    out = opts.output or Path(time.strftime("capture-%Y%m%d-%H%M%S.npz"))
    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")  # numpy would add it anyway
    try:
        if not out.parent.is_dir():
            raise UsageError(f"{out}: no such directory {str(out.parent)!r}") from None
    except OSError as e:
        raise UsageError(f"{out}: cannot write there: {e.strerror or e}") from None
    if opts.pids:
        pids = list(dict.fromkeys(opts.pids))
    else:
        pids = mergeable_pids() if opts.mergeable else all_pids()
        if not pids:
            raise UsageError("no process is registered with KSM" if opts.mergeable else "no process to capture") from None
    try:
        cap, notes = capture(pids, explicit=bool(opts.pids), show_progress=sys.stderr.isatty())
    except (CaptureDenied, NoSuchProcess) as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing written", file=sys.stderr)
        return 130
    toml, text = out.with_suffix(".toml"), None
    if opts.scenario:  # made before anything is written: a capture without its scenario is half done
        try:
            text = scenario_toml(cap, out.name, out.stem, opts.merge_any)
        except fmt.CaptureError as e:
            raise UsageError(f"--scenario: {e}") from None
    try:
        fmt.save(cap, out)
        if text is not None:
            toml.write_text(text)
    except OSError as e:
        raise UsageError(f"{e.filename or out}: cannot write: {e.strerror or e}") from None
    for note in dict.fromkeys(notes):
        print(f"{PROG}: note: {note}", file=sys.stderr)
    print(summary(cap, out))
    if text is not None:
        print(f"wrote {toml}: ksmtui run {toml} / ksmtui kernel {toml}")
    return 0


def summary(cap: fmt.Capture, path: Path) -> str:
    reasons = cap.page_reason()
    scanned = cap.page_content >= 0
    merge = int((scanned & (reasons == fmt.MERGEABLE)).sum())
    could = int((scanned & (reasons == fmt.NOT_MADVISED)).sum())
    distinct = len(np.unique(cap.page_content[scanned])) if scanned.any() else 0
    zero = int((cap.page_content == fmt.ZERO_ID).sum())
    size = path.stat().st_size
    n = len(cap.proc_pid)
    return (f"wrote {path} ({size / 2**20:,.1f} MiB, hashes only): {n:,} process{'es' * (n != 1)}, "
            f"{merge:,} pages in VMAs KSM may merge, {could:,} more in VMAs no one marked mergeable; "
            f"{distinct:,} distinct contents, {zero:,} zero pages")



