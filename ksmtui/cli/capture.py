"""`ksmtui capture PID... | --mergeable | --all [-o FILE] [--scenario] [--merge-any]`.

Reads live processes' memory into a capture file (hashes, never contents: docs/capture.md) and,
with --scenario, writes the scenario that runs that workload's shape beside it.
"""

from __future__ import annotations

import argparse
import os
import signal
import stat
import sys
import time
from pathlib import Path

import numpy as np

from engine import capture as fmt
from engine.scenario import printable, scenario_toml
from ksmtui.cli.options import Parser, UsageError, number

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
    p.add_argument("pids", nargs="*", type=_pid, metavar="PID", help="processes to capture, in the order ksmd visits "
                                                                     "them")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--mergeable", action="store_true", help="every process registered with KSM")
    which.add_argument("--all", action="store_true", help="every process (but this one)")
    p.add_argument("-o", "--output", type=Path, help="the capture file (default: capture-DATE-TIME.npz)")
    p.add_argument("--key-file", type=Path, metavar="FILE",
                   help="key the hashes with the secret in FILE (made if missing, mode 0600), so that captures "
                        "made with it compare; default: a new secret per capture, never written")
    p.add_argument("--scenario", action="store_true", help="also write a scenario beside the capture (same name, "
                                                           ".toml)")
    p.add_argument("--merge-any", action="store_true",
                   help="the scenario counts memory no one marked mergeable, as if every process set merge-any")
    p.add_argument("--follow", type=_seconds, metavar="SECONDS",
                   help="sample the processes (and their children) again and again for SECONDS: which pages "
                        "change when, with the KSM counters; --scenario then learns a scenario from it")
    p.add_argument("--every", type=_millis, default=100, metavar="MS",
                   help="--follow: sample every MS ms (default 100)")
    p.add_argument("--run", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="--follow: run COMMAND under merge-any with ksmd at its defaults (machine lock held), "
                        "follow it until it exits or SECONDS pass, then unmerge and restore KSM")
    p.add_argument("--learn", type=Path, metavar="FOLLOW",
                   help="learn a scenario from a follow file (written to -o, default FOLLOW with .toml) and show "
                        "its replay in the model beside the real counters")
    return p


_seconds = number(float, 0, 86400, "seconds (0 < SECONDS <= 86400)", low_open=True)
_millis = number(int, 10, 60000, "milliseconds (10..60000)")


def main(argv: list[str]) -> int:
    """SIGTERM and SIGHUP are turned into KeyboardInterrupt, as SIGINT is: whatever the capture was
    doing, it leaves nothing behind (no temporary survives any signal but SIGKILL)."""
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _main(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: list[str]) -> int:
    from ksmtui.host.procmem import (
        CaptureDenied,
        NoSuchProcess,
        all_pids,
        capture,
        mergeable_pids,
    )

    opts = build_parser().parse_args(argv)
    if opts.learn is not None:
        from ksmtui.cli.capture_follow import learn_main
        return learn_main(opts)
    if opts.follow is not None or opts.run is not None:
        from ksmtui.cli.capture_follow import follow_main
        return follow_main(opts)
    if bool(opts.pids) + opts.mergeable + opts.all != 1:
        raise UsageError("expected PID..., --mergeable or --all (one of them)")
    out = opts.output or Path(time.strftime("capture-%Y%m%d-%H%M%S.npz"))  # written as given, no suffix added
    try:
        if not out.parent.is_dir():
            raise UsageError(f"{out}: no such directory {str(out.parent)!r}") from None
        if out.is_dir():
            raise UsageError(f"-o {out}: is a directory; expected the capture file's name")
        if out.exists() and not out.is_file():
            raise UsageError(f"-o {out}: not a regular file; a capture is written to a file (atomically)")
    except OSError as e:
        raise UsageError(f"{out}: cannot write there: {e.strerror or e}") from None
    if opts.scenario and out.with_suffix(".toml") == out:
        raise UsageError(f"-o {out}: the scenario (--scenario) would be written over the capture; name it .npz")
    key = read_key(opts.key_file) if opts.key_file else os.urandom(fmt.KEY_BYTES)
    if opts.pids:
        pids = list(dict.fromkeys(opts.pids))
    else:
        pids = mergeable_pids() if opts.mergeable else all_pids()
        if not pids:
            raise UsageError("no process is registered with KSM" if opts.mergeable
                             else "no process to capture") from None
    try:
        cap, notes = capture(pids, explicit=bool(opts.pids), show_progress=sys.stderr.isatty(), key=key)
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
            fmt.atomic_write(toml, lambda f: f.write(text.encode()))
    except OSError as e:
        raise UsageError(f"{e.filename or out}: cannot write: {e.strerror or e}") from None
    for note in dict.fromkeys(notes):
        print(f"{PROG}: note: {printable(note)}", file=sys.stderr)
    print(summary(cap, out))
    if text is not None:
        print(f"wrote {toml}: ksmtui run {toml} / ksmtui kernel {toml}")
    return 0


def read_key(path: Path) -> bytes:
    """The secret in a key file, made (random, mode 0600, never over anything) if there is none."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    except OSError as e:
        raise UsageError(f"--key-file: {path}: cannot create it: {e.strerror or e}") from None
    else:
        try:
            os.write(fd, os.urandom(fmt.KEY_BYTES))
        finally:
            os.close(fd)
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW | os.O_NONBLOCK)) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise UsageError(f"--key-file: {path}: not a regular file")
            key = f.read(fmt.KEY_BYTES + 1)
    except OSError as e:
        raise UsageError(f"--key-file: {path}: cannot read it: {e.strerror or e}") from None
    if len(key) != fmt.KEY_BYTES:
        raise UsageError(f"--key-file: {path}: expected {fmt.KEY_BYTES} bytes (a key ksmtui capture made), "
                         f"got {'more' if len(key) > fmt.KEY_BYTES else len(key)}")
    return key


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



