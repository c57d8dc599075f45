"""`ksmtui kernel SCENARIO`: the scenario realised with real processes on this machine's KSM
(ksmtui/kernel/run.py), reported like `grep . /sys/kernel/mm/ksm/*`; JSON with --json."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable

from engine.scenario import Scenario
from ksmtui.cli.common import load
from ksmtui.cli.options import Options, parse_args
from ksmtui.host.sysfs import KernelError, KernelUnavailable, KernelUnsupported


def main(argv: list[str]) -> int:
    opts = parse_args("kernel", argv)
    return cmd_kernel(load(opts), opts)


def cmd_kernel(scenario: Scenario, opts: Options) -> int:
    def body() -> int:
        from ksmtui.kernel.run import format_result

        result = kernel_result(scenario, opts)
        print(json.dumps(result) if opts.json else format_result(result))
        for note in result["notes"]:
            print(f"ksmtui: note: {note}", file=sys.stderr)
        return 0
    return guarded(body)


def kernel_result(scenario: Scenario, opts: Options) -> dict:
    from ksmtui.kernel.run import run_on_kernel

    return run_on_kernel(scenario, seed=opts.seed, overrides=dict(opts.overrides), full_scans=opts.full_scans,
                         after_ms=opts.after_ms, trace=opts.trace, sample=opts.timing)


def guarded(body: Callable[[], int]) -> int:
    """Runs body() with the errors a kernel run can meet turned into one line and an exit status;
    SIGTERM is turned into KeyboardInterrupt so the teardown still restores KSM."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return body()
    except (KernelUnavailable, KernelUnsupported) as err:
        print(f"ksmtui: {err}", file=sys.stderr)
        return 2
    except KernelError as err:
        print(f"ksmtui: kernel run failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ksmtui: interrupted; KSM is back to its defaults", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


