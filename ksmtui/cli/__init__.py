"""The `ksmtui` command: one registry of subcommands, one module each, and one error path.

A command is a module of this package with `main(argv) -> int` (argv after the command's name),
imported only when it runs, so that `ksmtui list` does not pay for Textual or Dask. Bad input,
whatever layer finds it (an option, a scenario, a knob, a capture, a recording), reaches main() as
an exception and leaves as one line on stderr and exit status 2; nothing has run by then.
A new command: a module here, and one line in COMMANDS.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

# name -> what it does (ksmtui --help); the module is ksmtui.cli.<name>
COMMANDS: dict[str, str] = {
    "run": "headless to the stop condition; a summary, or the JSON contract (--json)",
    "compare": "legacy vs optimized on the same workload, as the cover letter did",
    "check": "validate a scenario and the options",
    "list": "the built-in scenarios",
    "kernel": "the scenario with real processes on this machine's KSM",
    "parity": "the model and the real kernel side by side; --random N fuzzes",
    "bench": "the engine's speed per path, beside the real ksmd's",
    "calibrate": "measure this machine's ksmd costs: the cost profile every model run uses",
    "sweep": "many runs over a grid of knobs, flows and seeds, on Dask",
    "capture": "real processes' memory as content hashes (never contents)",
    "estimate": "what KSM settles to on a capture, and what it costs to get there",
    "host": "this machine's own ksmd, live (the UI, or JSON Lines)",
    "replay": "a recording of host mode, in the UI",
}
UI = "ui"  # `ksmtui [SCENARIO]`: the module that runs without a command name


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean bad input, from every layer: one line and exit status 2."""
    from engine.capture import CaptureError
    from engine.cost import CostProfileError
    from engine.knobs import KnobError
    from engine.scenario import ScenarioError
    from ksmtui.cli.options import UsageError

    return (UsageError, ScenarioError, KnobError, CaptureError, CostProfileError)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--version":
        from importlib.metadata import version

        print(f"ksmtui {version('ksmtui')}")
        return 0
    name = argv[0] if argv and argv[0] in COMMANDS else None
    prog = f"ksmtui {name}" if name else "ksmtui"
    errors = user_errors()
    try:
        command = importlib.import_module(f"ksmtui.cli.{name or UI}")
        status = int(command.main(argv[1:] if name else argv))
        sys.stdout.flush()  # a full disk under stdout is found here, not at exit
        return status
    except errors as e:
        from engine.scenario import printable

        print(f"{prog}: error: {printable(str(e))}", file=sys.stderr)  # arguments echoed: escaped
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ksmtui run x | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        if e.errno not in OUTPUT_ERRORS or e.filename is not None:
            raise
        # stdout on a full disk (or a device that refuses): what is buffered is dropped, one line
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"{prog}: error: cannot write the output: {e.strerror}", file=sys.stderr)
        return 2


# write(2) failures of an output that are the machine's, not a bug: no space, quota, too large, I/O
OUTPUT_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)

