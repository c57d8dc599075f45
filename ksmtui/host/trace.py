"""The ksm tracepoints, read from a tracefs instance of our own."""


import os
import re
import select
import threading

# ------------------------------------------------------------------ tracepoints --
from ksmtui.host import sysfs
from ksmtui.host.sysfs import TRACEFS


class KsmTrace:
    """Counts the ksm tracepoints during a run, in a tracefs instance of our own.

    A two-page merge shows as two ksm_merge_with_ksm_page events: the first half (no KSM page yet,
    pfn of the scanned page) and right after it the second half, into that same pfn. Any other
    event with a KSM page is a merge into an existing KSM page (or a fork's rmap_item joining its
    own page, which the tracepoint cannot tell apart).
    """

    _LINE = re.compile(r":\s+(ksm_\w+):\s+(.*)$")
    BUFFER_KB = 8192  # per CPU: a run's bursts of merges must not overrun it
    POLL_S = 0.05  # how long the reader waits for events before it looks whether to stop
    _MERGE = re.compile(r"^(ksm )?pfn (\d+) .* error (-?\d+)")

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.merge = {"first_half": 0, "second_half": 0, "into_ksm_page": 0, "failed": 0}
        self.zero = {"merged": 0, "failed": 0}
        self._first_half_pfn: str | None = None
        self.lost = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dir = TRACEFS / "instances" / f"ksmtui-{os.getpid()}"

    @staticmethod
    def available() -> bool:
        """Mounts tracefs where it is missing (unmounted when ksmtui ends: sysfs.mount_tracefs)."""
        sysfs.mount_tracefs()
        return (TRACEFS / "events" / "ksm").exists()

    def start(self) -> None:
        self.dir.mkdir()
        (self.dir / "buffer_size_kb").write_text(str(self.BUFFER_KB))
        (self.dir / "events" / "ksm" / "enable").write_text("1")
        fd = os.open(self.dir / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._read, args=(fd,), daemon=True)
        self._thread.start()

    def _read(self, fd: int) -> None:
        pending = b""
        try:
            while True:
                ready, _, _ = select.select([fd], [], [], self.POLL_S)
                chunk = b""
                if ready:
                    try:
                        chunk = os.read(fd, 1 << 16)
                    except BlockingIOError:
                        pass
                if not chunk and self._stop.is_set():
                    break
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    self._count(line.decode(errors="replace"))
        finally:
            os.close(fd)

    def _count(self, line: str) -> None:
        m = self._LINE.search(line)
        if not m:
            return
        event, rest = m.groups()
        self.counts[event] = self.counts.get(event, 0) + 1
        if event == "ksm_merge_with_ksm_page":
            mm = self._MERGE.match(rest)
            if not mm:
                return
            ksm, pfn, err = mm.groups()
            if err != "0":
                self.merge["failed"] += 1
            elif not ksm:
                self.merge["first_half"] += 1
            elif pfn == self._first_half_pfn:
                self.merge["second_half"] += 1
            else:
                self.merge["into_ksm_page"] += 1
            self._first_half_pfn = pfn if not ksm and err == "0" else None
        elif event == "ksm_merge_one_page":
            self.zero["merged" if rest.rstrip().endswith("error 0") else "failed"] += 1

    def stop(self) -> None:
        if self._thread is None:
            return
        try:
            (self.dir / "events" / "ksm" / "enable").write_text("0")
        finally:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.lost = self._overruns()
            self.dir.rmdir()

    def _overruns(self) -> int:
        lost = 0
        for stats in (self.dir / "per_cpu").glob("cpu*/stats"):
            m = re.search(r"^overrun: (\d+)", stats.read_text(), re.M)
            lost += int(m.group(1)) if m else 0
        return lost

    def result(self) -> dict:
        return {"events": dict(sorted(self.counts.items())), "ksm_merge_with_ksm_page": dict(self.merge),
                "ksm_merge_one_page": dict(self.zero), "lost_events": self.lost}

    def outcomes(self) -> dict:
        """The outcomes a tracepoint identifies without doubt (docs/scenarios.md's names)."""
        return {"anon_page": {"unstable_merged": self.merge["second_half"]},
                "zero_page": {"zero_merged": self.zero["merged"]}}


