"""How long a key takes to show on the terminal: `ksmtui bench --keys N`.

The UI runs as a user runs it, in a terminal (a pseudo-terminal of this process's own, no tmux
needed): from writing the key to the pty to reading back, in what the app draws, the text that
says the key was answered (the new tab's title, "paused" in the header). This is the whole path
a user waits for: the key read by Textual's input thread, the engine held, the drawing, and the
frame written by Textual's output thread. Tabs are visited in an order in which the tab left
never shows the next one's text, so that only the new tab's drawing can match.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import statistics
import struct
import sys
import termios
import time

# (key, bytes written, text that shows it answered)
TAB_KEYS = (  # from the Overview, where the app opens and where these end
    ("2 Trees", b"2", b"stable tree"),
    ("1 Overview", b"1", b"scan progress (simulated time)"),
    ("6 Processes", b"6", b"processes (/proc/PID/ksm_stat)"),
    ("3 Chains", b"3", b"stable_node chains"),
    ("4 Latency", b"4", b"latency"),
    ("5 Compare", b"5", b"compare"),
    ("1 Overview", b"1", b"scan progress (simulated time)"),
)
PAUSE_KEYS = (("space (pause)", b" ", b"paused"), ("space (run)", b" ", b"running"))
KNOBS_KEY = ("k (knobs)", b"k", b"knobs: Enter applies")
RESTART_KEY = ("r (header)", b"r", b"restarting")  # the new run is built after the header says so
TIMEOUT_S = 5.0


class Terminal:
    """The app on a pseudo-terminal of a given size; what it wrote so far is kept in `out`."""

    def __init__(self, argv: list[str], size: tuple[int, int]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the app, its terminal this pty
            os.environ["TERM"] = "xterm-256color"
            os.execv(sys.executable, [sys.executable, *argv])
        cols, rows = size
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.out = bytearray()

    def read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                self.out += os.read(self.fd, 1 << 16)
            except OSError:  # the app has gone
                raise RuntimeError("the app exited") from None

    def wait_for(self, text: bytes, since: int, timeout: float = TIMEOUT_S) -> float | None:
        """Seconds until `text` appears in what is written after offset `since` (None: never)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            # the text may straddle two reads: look back by its length
            if self.out.find(text, max(0, since - len(text))) >= 0:
                return time.monotonic() - start
            self.read(0.005)
        return None

    def press(self, key: bytes, text: bytes) -> float | None:
        since = len(self.out)
        os.write(self.fd, key)
        return self.wait_for(text, since)

    def idle(self, seconds: float) -> None:
        """Read (the app blocks if its output is not read) for this long."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.read(end - time.monotonic())
        del self.out[:-4096]  # what came before does not matter any more

    def close(self) -> None:
        os.write(self.fd, b"q")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                break
            try:
                self.read(0.05)
            except RuntimeError:  # its terminal closed: waitpid reaps it next
                pass
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def key_latency(rounds: int, scenario: str = "large", size: tuple[int, int] = (120, 40)) -> dict[str, list[float]]:
    """Milliseconds from each key to its answer on the terminal, `rounds` times each, with the
    scenario running flat out (x)."""
    term = Terminal(["-m", "ksmtui", scenario, "--full-scans", "1000000"], size)
    times: dict[str, list[float]] = {}
    try:
        if term.wait_for(b"scan progress", 0, timeout=120) is None:
            raise RuntimeError(f"ksmtui {scenario} drew no Overview in 120 s")
        term.idle(1.0)
        term.press(b"x", b"speed max")
        term.idle(2.0)  # flat out, past the first full scan
        for k in range(rounds):
            for name, key, text in (*TAB_KEYS, *PAUSE_KEYS, KNOBS_KEY, RESTART_KEY):
                took = term.press(key, text)
                if took is not None:
                    times.setdefault(name, []).append(took * 1000)
                if key == b"k":
                    term.idle(0.3)
                    # Esc closes it; Textual tells a lone Esc from an Alt+key after 100 ms or more
                    os.write(term.fd, b"\x1b")
                    term.idle(0.5)
                if k < rounds - 1 or key != RESTART_KEY[1]:  # after the last key, nothing to wait for
                    term.idle(3.0 if key == b"r" else 0.3)  # a new run: past its first full scan again
    finally:
        term.close()
    return times


def latency_lines(times: dict[str, list[float]]) -> list[str]:
    from ksmtui.text.report import table

    rows: list[list[object]] = [["key", "median ms", "worst ms", "n"]]
    for name, ms in times.items():
        rows.append([name, f"{statistics.median(ms):.0f}", f"{max(ms):.0f}", len(ms)])
    return table(rows, left=4)
