"""`ksmtui capture --follow SECONDS [--every MS] (PID... | --mergeable | --run COMMAND...)`.

Samples the processes' pages over time into a follow file (engine.follow: content ids only) and,
with --scenario, learns a scenario from it (engine.learn) and writes it beside the file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ksmtui.cli.options import UsageError

PROG = "ksmtui capture --follow"


def follow_main(opts) -> int:
    from engine import follow as ffmt
    from engine.capture import atomic_write
    from ksmtui.host import follow as hf

    if opts.follow is None:
        raise UsageError("--run follows the command: expected --follow SECONDS with it")
    if opts.all:
        raise UsageError("--follow: expected PID..., --mergeable or --run COMMAND, not --all")
    if bool(opts.pids) + opts.mergeable + (opts.run is not None) != 1:
        raise UsageError("--follow: expected PID..., --mergeable or --run COMMAND (one of them)")
    if opts.run is not None and not opts.run:
        raise UsageError("--run: expected a command after it")
    out = opts.output or Path(time.strftime("follow-%Y%m%d-%H%M%S.npz"))
    if not out.parent.is_dir():
        raise UsageError(f"{out}: no such directory {str(out.parent)!r}")
    if out.exists() and not out.is_file():
        raise UsageError(f"-o {out}: not a regular file")
    if opts.scenario and out.with_suffix(".toml") == out:
        raise UsageError(f"-o {out}: the scenario (--scenario) would be written over the follow file; name it .npz")
    from ksmtui.host import sysfs

    reason = sysfs.unavailable_reason()
    if reason and (opts.run is not None or not sysfs.KSM_DIR.is_dir()):
        raise UsageError(f"--follow: {reason}")
    progress = _progress() if sys.stderr.isatty() else None
    meta: dict = {"every_ms": opts.every, "seconds": opts.follow}
    try:
        if opts.run is not None:
            meta["command"] = list(opts.run)
            with hf.ksm_at_defaults():
                foreign = hf.foreign_mergeable()
                if foreign:
                    raise UsageError(f"--run: processes already registered with KSM would be counted too: "
                                     f"pids {', '.join(map(str, foreign[:10]))}")
                try:
                    proc = hf.start_merge_any(opts.run)
                except OSError as e:
                    raise UsageError(f"--run: {opts.run[0]}: {e.strerror or e}") from None
                try:
                    follower = hf.Follower([proc.pid])
                    hf.follow(follower, opts.follow, opts.every, alive=lambda: proc.poll() is None, progress=progress)
                finally:
                    hf.stop(proc)
                meta["exit_status"] = proc.returncode
        else:
            follower = hf.Follower(opts.pids, mergeable=opts.mergeable)
            hf.follow(follower, opts.follow, opts.every, progress=progress)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing written", file=sys.stderr)
        return 130
    finally:
        if progress is not None:
            sys.stderr.write("\r\033[K")
    fol = follower.result(meta)
    try:
        ffmt.save(fol, out)
    except OSError as e:
        raise UsageError(f"{e.filename or out}: cannot write: {e.strerror or e}") from None
    text = None
    if opts.scenario:  # after the follow file is safe: a run cannot be redone for free
        from engine.learn import learn_toml
        try:
            text = learn_toml(fol, out.stem, source=out.name, command=" ".join(meta.get("command", [])))
        except ValueError as e:
            raise UsageError(f"--scenario: {e} ({out} was written)") from None
        try:
            atomic_write(out.with_suffix(".toml"), lambda f: f.write(text.encode()))
        except OSError as e:
            raise UsageError(f"{e.filename or out}: cannot write: {e.strerror or e}") from None
    cost = fol.sample_cost
    span = float(fol.sample_t[-1]) if fol.samples else 0.0
    print(f"wrote {out} (content ids only): {fol.samples} samples over {span:.1f} s, {len(fol.proc_pid)} processes, "
          f"{len(fol.page_proc):,} pages, {len(fol.change_sample):,} changes; a sample took "
          f"{1000 * float(cost.mean()) if len(cost) else 0:.1f} ms on average "
          f"({100 * float(cost.sum()) / max(span, 1e-9):.1f}% of the time)")
    if text is not None:
        print(f"wrote {out.with_suffix('.toml')}: ksmtui run {out.with_suffix('.toml')}")
    return 0


def learn_main(opts) -> int:
    """--learn FOLLOW [-o SCENARIO]: the scenario, and its replay beside the real counters."""
    from engine import follow as ffmt
    from engine.capture import atomic_write
    from engine.learn import compare, learn_toml, real_steady, replay
    from engine.scenario import parse_scenario

    if opts.follow is not None or opts.run is not None or opts.pids or opts.mergeable or opts.all:
        raise UsageError("--learn reads a follow file: expected no --follow, --run or processes with it")
    try:
        fol = ffmt.load(opts.learn)
    except ffmt.FollowError as e:
        raise UsageError(str(e)) from None
    out = opts.output or opts.learn.with_suffix(".toml")
    if out.resolve() == opts.learn.resolve():
        raise UsageError(f"-o {out}: would overwrite the follow file")
    command = " ".join(fol.meta.get("command", []))
    try:
        text = learn_toml(fol, out.stem, source=opts.learn.name, command=command)
    except ValueError as e:
        raise UsageError(f"--learn: {e}") from None
    try:
        atomic_write(out, lambda f: f.write(text.encode()))
    except OSError as e:
        raise UsageError(f"{e.filename or out}: cannot write: {e.strerror or e}") from None
    model, _ = replay(parse_scenario(text, str(out), out.parent), fol)
    print(f"wrote {out}: learned from {opts.learn} ({fol.samples} samples)")
    print(report(compare(real_steady(fol), model)))
    return 0


def report(rows) -> str:
    """The steady state of the real run beside the model's replay (modelled)."""
    lines = [f"{'steady state':<22}{'real':>12}{'model':>12}{'diff':>9}"]
    for name, real, model, diff in rows:
        fmt = ".4f" if name == "ksmd_cpu_per_s" else (".3f" if name == "skipped_per_scanned" else ".1f")
        lines.append(f"{name:<22}{real:>12{fmt}}{model:>12{fmt}}{100 * diff:>+8.1f}%")
    lines.append("(model: the engine's replay of the scenario, its ksmd CPU time from the cost model)")
    return "\n".join(lines)


def _progress():
    last = [0.0]

    def show(text: str) -> None:
        now = time.monotonic()
        if now - last[0] > 0.2:
            last[0] = now
            sys.stderr.write(f"\r\033[K{text}")
            sys.stderr.flush()
    return show
