"""The `ksmtui` command's entry point (and `python -m ksmtui`): Ctrl-C at any moment, even while
the modules are still loading, ends the program quietly with status 130."""

import sys


def main() -> int:
    try:
        from ksmtui.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
