"""The host's own ksmd, observed: samples of everything the kernel exposes about KSM, taken off the
UI thread, and the ksm tracepoints in a tracefs instance of our own.

Observing must not disturb: reading sysfs and /proc changes nothing (no machine lock); the only
state we change is our tracefs instance, which is removed on every way out (return, exception,
Ctrl-C, SIGTERM, atexit), and an instance a killed ksmtui left behind is removed the next time.

What the kernel does not expose (the stable and unstable trees, the latency of one
cmp_and_merge_page(): it is inlined into ksm_do_scan() and this kernel has no kprobes) is not in a
sample; the UI says so instead of showing the model's numbers.
"""

from __future__ import annotations

import atexit
import errno
import os
import re
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine.knobs import KSM_KNOBS
from ksmtui.host import sysfs, units
from ksmtui.host.trace import KsmTrace

VMSTAT = ("cow_ksm", "ksm_swpin_copy")
# /proc/meminfo's fields the controllers read (engine/controllers.py, engine/memory.py), in kB
MEMINFO = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached")
MAX_EVENTS = 256  # tracepoint events kept per sample (the counts cover all of them)
# ksm_stat of every process costs ~10 us of kernel time each (11 ms a sample with 1,000): a sample
# reads the processes KSM knows and the pids new since the last one, and all of them only every
# FULL_EVERY samples or when ksm_enter says a process registered with ksmd (a known pid that
# madvises later shows at once with the tracepoints, else within FULL_EVERY samples).
FULL_EVERY = 10
INSTANCE_PREFIX = "ksmtui-host-"
PROC = "/proc"
# A process KSM has never heard of: no rmap_items, no merge-any, not registered with ksmd. Checked
# on the raw bytes, so that the common case (most processes) costs no parsing.
_UNKNOWN_HEAD = b"ksm_rmap_items 0\n"
_UNKNOWN_TAIL = (b"ksm_merge_any: no\nksm_mergeable: no\n", b"ksm_merge_any: no\n")


class NoKsm(Exception):
    """This kernel has no /sys/kernel/mm/ksm."""


@dataclass(frozen=True)
class HostSample:
    """One look at the host's KSM. Plain data: it is what `--json` prints and `--record` writes."""

    time: float  # seconds since the epoch (wall clock), to the ms
    ksm: dict[str, int]  # every counter file of /sys/kernel/mm/ksm by its name
    knobs: dict[str, int | str]  # every knob file of /sys/kernel/mm/ksm (advisor_mode as its choice)
    vmstat: dict[str, int]  # cow_ksm and ksm_swpin_copy from /proc/vmstat
    ksmd: dict  # {"pid": int, "cpu_ns": int} from /proc/PID/schedstat, or {} without ksmd
    # pid (as a string) -> comm and the ksm_stat fields, or comm and "error"; and "unit" (its cgroup,
    # systemd unit, container, VM: ksmtui.host.units.Unit.to_json), absent in older recordings
    processes: dict[str, dict]
    trace: dict | None  # tracepoints since the previous sample (see HostTrace.take), None if not traced
    trace_note: str = ""  # why there is no trace
    meminfo: dict[str, int] = field(default_factory=dict)  # MEMINFO in kB; {} in older recordings
    extra: dict = field(default_factory=dict)  # unknown keys of a newer recording, kept as they are

    def to_json(self) -> dict:
        out = {"time": self.time, "ksm": self.ksm, "knobs": self.knobs, "vmstat": self.vmstat,
               "ksmd": self.ksmd, "processes": self.processes, "trace": self.trace}
        if self.trace_note:
            out["trace_note"] = self.trace_note
        if self.meminfo:
            out["meminfo"] = self.meminfo
        return {**self.extra, **out}


# ---------------------------------------------------------------------------- reading --

def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def check_ksm() -> None:
    if not sysfs.KSM_DIR.is_dir():
        raise NoKsm(f"{sysfs.KSM_DIR} does not exist: this kernel has no KSM (CONFIG_KSM)")


def read_ksm_dir() -> tuple[dict[str, int], dict[str, int | str]]:
    """Every file of /sys/kernel/mm/ksm: counters (files that are not knobs) and knobs."""
    counters: dict[str, int] = {}
    knobs: dict[str, int | str] = {}
    for name in sorted(os.listdir(sysfs.KSM_DIR)):
        text = _read(f"{sysfs.KSM_DIR}/{name}").decode().strip()
        if name == "advisor_mode":  # "[none] scan-time"
            m = re.search(r"\[(.*?)\]", text)
            knobs[name] = m.group(1) if m else text
        elif name in KSM_KNOBS:
            knobs[name] = int(text)
        else:
            try:
                counters[name] = int(text)
            except ValueError:  # a file of a newer kernel that is not a number: not a counter
                continue
    return counters, knobs


def read_vmstat() -> dict[str, int]:
    out = {}
    for line in Path(f"{PROC}/vmstat").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name in VMSTAT:
            out[name] = int(value)
    return out


def read_meminfo() -> dict[str, int]:
    """MEMINFO of /proc/meminfo, in kB (those this kernel has); {} where it cannot be read (the
    sample goes on without it, as a recording of an older ksmtui does)."""
    out: dict[str, int] = {}
    try:
        text = Path(f"{PROC}/meminfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in MEMINFO:
            out[name] = int(rest.split()[0])
    return out


def list_pids() -> list[str]:
    return [p for p in os.listdir(PROC) if p.isdigit()]


def read_processes(pids: list[str] | None = None) -> dict[str, dict]:
    """Of these pids (default: all), every process KSM knows of (rmap_items, merge-any, or
    registered with ksmd), and every process whose ksm_stat could not be read (the row says
    why). One that exits while we read it is simply not there."""
    out: dict[str, dict] = {}
    for pid in list_pids() if pids is None else pids:
        row: dict[str, int | str]
        try:
            raw = _read(f"{PROC}/{pid}/ksm_stat")
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ESRCH):
                continue
            row = {"error": f"ksm_stat: {os.strerror(err.errno or 0)}"}
        else:
            if not raw or (raw.startswith(_UNKNOWN_HEAD) and raw.endswith(_UNKNOWN_TAIL)):
                continue  # a kernel thread (no mm), or a process KSM does not know
            row = sysfs.parse_ksm_stat(raw.decode())
        try:
            row = {"comm": _read(f"{PROC}/{pid}/comm").decode(errors="replace").rstrip("\n"), **row}
        except OSError:
            continue  # it exited
        out[pid] = row
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def read_unit(pid: str) -> dict | None:
    """A process row's "unit": its cgroup, systemd unit, container and VM where known (see
    ksmtui.host.units); None if the process is gone."""
    unit = units.identify(pid, PROC)
    return unit.to_json() if unit is not None else None


def find_ksmd() -> int | None:
    try:
        return sysfs.ksmd_pid()
    except sysfs.KernelUnavailable:
        return None


def read_ksmd(pid: int | None) -> dict:
    if pid is None:
        return {}
    try:
        return {"pid": pid, "cpu_ns": sysfs.ksmd_cpu_ns(pid)}
    except OSError:
        return {}


# ----------------------------------------------------------------------- tracepoints --

class HostTrace(KsmTrace):
    """The ksm tracepoints of the host, counted between two samples (`take`).

    ksm_merge_with_ksm_page with a ksm_page is a merge into a KSM page: the second half of an
    unstable-tree pairing (right after the first half, into that page's pfn) or a stable-tree
    merge (anything else); see KsmTrace. ksm_merge_one_page is the zero-page path. Pass timing
    comes from ksm_start_scan/ksm_stop_scan (seq), advisor decisions from ksm_advisor.
    """

    _STAMPED = re.compile(r"\s(\d+\.\d+):\s+(ksm_\w+):\s+(.*)$")
    _ERR = re.compile(r"error (-?\d+)")
    _SEQ = re.compile(r"seq (\d+) rmap size (\d+)")
    _ADVISOR = re.compile(r"scan time (-?\d+) pages_to_scan (\d+) cpu percent (\d+)")
    BUFFER_KB = 1024  # per CPU: the reader drains it as events come
    POLL_S = 0.5  # an idle reader wakes twice a second (its cost counts against host mode's budget)

    def __init__(self) -> None:
        super().__init__()
        self.dir = sysfs.TRACEFS / "instances" / f"{INSTANCE_PREFIX}{os.getpid()}"
        self._lock = threading.Lock()
        self._starts: dict[int, float] = {}  # seq -> trace time of its ksm_start_scan
        self._lost = 0  # ring-buffer overruns counted by the previous take
        self._reset()

    def _reset(self) -> None:
        self.counts = {}
        self.merge = {"first_half": 0, "second_half": 0, "into_ksm_page": 0, "failed": 0}
        self.zero = {"merged": 0, "failed": 0}
        self._errors: dict[str, int] = {}
        self._passes: list[list] = []
        self._advisor: list[list] = []
        self._events: deque = deque(maxlen=MAX_EVENTS)

    @staticmethod
    def unavailable_reason() -> str | None:
        events = sysfs.TRACEFS / "events"
        if os.geteuid() != 0:
            return "the ksm tracepoints need root (tracefs)"
        if not events.exists():
            return f"tracefs is not mounted at {sysfs.TRACEFS}"
        if not (events / "ksm").exists():
            return "this kernel has no ksm tracepoints"
        return None

    def start(self) -> None:
        remove_stale_instances()
        super().start()

    def stop(self) -> None:
        try:
            super().stop()
        finally:  # a start that failed half-way leaves the instance without a reader
            if self.dir.exists():
                self.dir.rmdir()

    def _count(self, line: str) -> None:
        m = self._STAMPED.search(line)
        if not m:
            return
        stamp, event, rest = m.groups()
        t = float(stamp)
        with self._lock:
            super()._count(line)
            self._events.append([t, event, rest])
            err = self._ERR.search(rest)
            if err and err.group(1) != "0":
                key = f"{event} {err.group(1)}"
                self._errors[key] = self._errors.get(key, 0) + 1
            if event in ("ksm_start_scan", "ksm_stop_scan"):
                s = self._SEQ.search(rest)
                if s and event == "ksm_start_scan":
                    self._starts = {int(s.group(1)): t}
                elif s and int(s.group(1)) in self._starts:
                    seq = int(s.group(1))
                    self._passes.append([seq, round(t - self._starts.pop(seq), 6), int(s.group(2))])
            elif event == "ksm_advisor":
                a = self._ADVISOR.search(rest)
                if a:
                    self._advisor.append([int(a.group(1)), int(a.group(2)), int(a.group(3))])

    def take(self) -> dict:
        """What the tracepoints said since the last take: event counts, merges by path, failures by
        event and err, the passes that ended (seq, seconds, rmap_items), advisor decisions
        (scan_time, pages_to_scan, cpu_percent), the last MAX_EVENTS events as
        [trace time in s, event, its fields], and events the kernel dropped (ring-buffer overruns:
        the counts above are short by that many)."""
        total = self._overruns()
        lost, self._lost = total - self._lost, total
        with self._lock:
            out = {
                "counts": dict(sorted(self.counts.items())),
                "merges": {"stable": self.merge["into_ksm_page"], "unstable_pairs": self.merge["second_half"],
                           "zero_page": self.zero["merged"]},
                "errors": dict(sorted(self._errors.items())),
                "passes": self._passes,
                "advisor": self._advisor,
                "events": list(self._events),
                "lost": lost,
            }
            self._reset()
        return out


def remove_stale_instances() -> None:
    """Instances a killed ksmtui host left behind (SIGKILL runs no handler): ours by name, dead pid."""
    for inst in (sysfs.TRACEFS / "instances").glob(f"{INSTANCE_PREFIX}*"):
        pid = inst.name.removeprefix(INSTANCE_PREFIX)
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            try:
                inst.rmdir()
            except OSError:
                pass


class TraceGuard:
    """Starts a HostTrace and makes sure it is stopped and its instance removed on every way out:
    `stop()` (idempotent), atexit, and SIGTERM/SIGHUP (turned into SystemExit so that the finally
    blocks and atexit run)."""

    def __init__(self, trace: HostTrace) -> None:
        self.trace = trace
        self._old: dict[signal.Signals, Any] = {}
        self._stopped = False

    def start(self) -> None:
        atexit.register(self.stop)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self._old[sig] = signal.signal(sig, _exit_on_signal)
        self.trace.start()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self.trace.stop()
        finally:
            for sig, old in self._old.items():
                signal.signal(sig, old)
            atexit.unregister(self.stop)


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)


# --------------------------------------------------------------------------- sampling --

class HostSampler:
    """Takes HostSamples: `sample()` directly, or every `interval` seconds on a thread of its own
    (`start`), handing each to `post` (which must not block: the UI's post_message, a bounded
    queue)."""

    def __init__(self, interval: float = 1.0, trace: bool = True) -> None:
        check_ksm()
        self.interval = interval
        self._ksmd = find_ksmd()
        self._mounted = trace and sysfs.mount_tracefs()  # unmounted by close()
        self.trace_note = (HostTrace.unavailable_reason() or "") if trace else "tracing off (--no-trace)"
        self._guard: TraceGuard | None = None
        if not self.trace_note:
            self._guard = TraceGuard(HostTrace())
            try:
                self._guard.start()
            except OSError as err:
                self._guard.stop()
                self._guard = None
                self.trace_note = f"cannot trace: {err}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._taken = 0
        self._seen: set[str] = set()  # the pids of the last sample
        self._known: set[str] = set()  # the pids with a row in the last sample
        self._units: dict[str, dict | None] = {}  # the unit of each row of the last sample

    def _processes(self, trace: dict | None) -> dict[str, dict]:
        pids = list_pids()
        full = not self._taken % FULL_EVERY or bool(trace and trace["counts"].get("ksm_enter"))
        read = pids if full else [p for p in pids if p in self._known or p not in self._seen]
        self._taken += 1
        rows = read_processes(read)
        self._seen, self._known = set(pids), set(rows)
        # A row's unit is read when its pid is new and at every full look: a process moved to another
        # cgroup (or a pid reused within a sample) shows within FULL_EVERY samples.
        old = {} if full else self._units
        self._units = {pid: old[pid] if pid in old else read_unit(pid) for pid in rows}
        for pid, row in rows.items():
            if self._units[pid] is not None:
                row["unit"] = self._units[pid]
        return rows

    def sample(self) -> HostSample:
        trace = self._guard.trace.take() if self._guard else None
        counters, knobs = read_ksm_dir()
        ksmd = read_ksmd(self._ksmd)
        if self._ksmd is not None and not ksmd:
            self._ksmd = find_ksmd()
            ksmd = read_ksmd(self._ksmd)
        return HostSample(
            time=round(time.time(), 3),
            ksm=counters,
            knobs=knobs,
            vmstat=read_vmstat(),
            ksmd=ksmd,
            processes=self._processes(trace),
            trace=trace,
            trace_note=self.trace_note,
            meminfo=read_meminfo(),
        )

    def start(self, post: Callable[[HostSample], object]) -> None:
        self._thread = threading.Thread(target=self._run, args=(post,), name="ksm-host", daemon=True)
        self._thread.start()

    def _run(self, post: Callable[[HostSample], object]) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            post(self.sample())
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        try:
            if self._guard is not None:
                self._guard.stop()
        finally:
            if self._mounted:  # after the trace's reader closed its trace_pipe: not busy
                sysfs.unmount_tracefs()

    def __enter__(self) -> "HostSampler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -------------------------------------------------------------------- why not merging --

# VmFlags mnemonics (fs/proc/task_mmu.c) of the flags vma_ksm_compatible() (mm/ksm.c) refuses
_INCOMPATIBLE = {
    "sh": "shared mapping (VM_SHARED)",
    "ms": "shared mapping (VM_MAYSHARE)",
    "ht": "hugetlb (VM_HUGETLB)",
    "pf": "VM_PFNMAP",
    "io": "VM_IO",
    "mm": "VM_MIXEDMAP",
    "de": "VM_DONTEXPAND",
}
NOT_MADVISED = "not madvised (MADV_MERGEABLE) and no merge-any"
FILE_PAGES = "file pages in a mergeable mapping (KSM merges anonymous pages only)"
NOT_RESIDENT = "not resident, or merged into the zero page (no Rss)"
CANDIDATES = "anonymous, mergeable: KSM's candidates"


def why_not_merging(pid: int | str) -> list[tuple[str, int, int]]:
    """From /proc/PID/smaps (costly: for the one process the user picks): the process's memory by
    what KSM can do with it, as (reason, mappings, kB), largest first. Sizes are resident memory
    (Rss), except NOT_RESIDENT (Size - Rss of the mappings KSM could scan)."""
    by: dict[str, list[int]] = {}

    def add(reason: str, kb: int) -> None:
        row = by.setdefault(reason, [0, 0])
        row[0] += 1
        row[1] += kb

    vma: dict[str, int] = {}
    for line in Path(f"{PROC}/{pid}/smaps").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key == "VmFlags":
            flags = rest.split()
            size, rss, anon = vma.get("Size", 0), vma.get("Rss", 0), vma.get("Anonymous", 0)
            bad = [_INCOMPATIBLE[f] for f in flags if f in _INCOMPATIBLE]
            if bad:
                add(bad[0], rss)
            elif "mg" not in flags:
                add(NOT_MADVISED, rss)
            else:
                add(CANDIDATES, anon)
                if rss > anon:
                    add(FILE_PAGES, rss - anon)
                if size > rss:
                    add(NOT_RESIDENT, size - rss)
            vma = {}
        elif rest.strip().endswith(" kB"):
            vma[key] = int(rest.split()[0])
    return sorted(((r, n, kb) for r, (n, kb) in by.items()), key=lambda row: (-row[2], row[0]))
