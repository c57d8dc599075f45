"""The host's KSM as the kernel exposes it: /sys/kernel/mm/ksm, /proc/PID/ksm_stat, ksmd's /proc
stat, and the one lock that serialises every driver of the real KSM on this machine."""


import atexit
import contextlib
import fcntl
import os
import re
import subprocess
import time
from pathlib import Path

from engine.knobs import KERNEL_DEFAULTS, KSM_KNOBS
from engine.snapshot import COUNTERS

KSM_DIR = Path("/sys/kernel/mm/ksm")
TRACEFS = Path("/sys/kernel/tracing")
_tracefs_mounted: Path | None = None  # where ksmtui mounted tracefs, to unmount it when done

# Writing these while anything is merged is refused with EBUSY: set them first
_EARLY_KNOBS = ("merge_across_nodes", "max_page_sharing")
# pages_to_scan is refused while the advisor is on, and choosing the advisor overwrites it
_ADVISOR_KNOBS = ("advisor_max_cpu", "advisor_min_pages_to_scan", "advisor_max_pages_to_scan",
                  "advisor_target_scan_time")
# per-process ksm_stat fields as docs/scenarios.md names them
STAT_INTS = ("ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit")
STAT_FLAGS = ("ksm_merge_any", "ksm_mergeable")

class KernelUnavailable(Exception):
    """The real KSM cannot be used here (not root, no writable /sys/kernel/mm/ksm)."""


class KernelUnsupported(Exception):
    """The scenario cannot be realised on this machine (page size, NUMA nodes)."""


class KernelError(Exception):
    """The run failed on the way (a child reported an error, ksmd stalled)."""


# ------------------------------------------------------------------------ sysfs --

def ksm_read(name: str) -> str:
    return (KSM_DIR / name).read_text().strip()


def ksm_write(name: str, value) -> None:
    with open(KSM_DIR / name, "w") as f:
        f.write(str(value))


def unavailable_reason() -> str | None:
    """Why the real KSM cannot be used here, or None if it can."""
    run = KSM_DIR / "run"
    if not run.exists():
        return f"{run} does not exist (kernel without CONFIG_KSM?)"
    if os.geteuid() != 0 or not os.access(run, os.W_OK):
        return f"{run} is not writable (the real KSM needs root)"
    return None


def mount_tracefs() -> bool:
    """As trace-cmd and libtracefs do: as root, mount tracefs at TRACEFS where it is missing. True
    if ksmtui mounted it (now or before); unmount_tracefs() undoes that, and atexit does it for
    any way out that runs Python's exit (a SIGKILL runs nothing: tracefs then stays mounted, as
    trace-cmd leaves it)."""
    global _tracefs_mounted
    if _tracefs_mounted is not None:
        return True
    if os.geteuid() != 0 or not TRACEFS.is_dir() or (TRACEFS / "events").exists():
        return False
    done = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True)
    if done.returncode != 0 or not (TRACEFS / "events").exists():
        return False
    _tracefs_mounted = TRACEFS
    atexit.register(unmount_tracefs)
    return True


def unmount_tracefs() -> None:
    """Unmount the tracefs ksmtui mounted, if it did; left mounted if something else now uses it
    (EBUSY)."""
    global _tracefs_mounted
    if _tracefs_mounted is None:
        return
    done = subprocess.run(["umount", str(_tracefs_mounted)], capture_output=True)
    if done.returncode == 0:
        _tracefs_mounted = None
        atexit.unregister(unmount_tracefs)


def read_counters() -> dict[str, int]:
    return {name: int(ksm_read(name)) for name in COUNTERS}


def _knob_value(name: str) -> int | str:
    text = ksm_read(name)
    if name == "advisor_mode":  # "[none] scan-time"
        selected = re.search(r"\[(.*?)\]", text)
        if selected is None:
            raise ValueError(f"{KSM_DIR / name}: expected the selected mode in brackets, read {text!r}")
        return selected.group(1)
    return int(text)


def read_knobs() -> dict[str, int | str]:
    return {name: _knob_value(name) for name in KSM_KNOBS if (KSM_DIR / name).exists()}


def merged_pages() -> int:
    return sum(int(ksm_read(n)) for n in ("pages_shared", "pages_sharing", "ksm_zero_pages"))


def unmerge_all(timeout_s: float = 60.0) -> None:
    """run=2 then run=0: every KSM page broken, every rmap_item freed, full_scans back to 0."""
    ksm_write("run", 2)
    deadline = time.monotonic() + timeout_s
    while merged_pages():
        if time.monotonic() > deadline:
            raise KernelError("KSM pages still merged a minute after run=2")
        time.sleep(0.01)
    ksm_write("run", 0)


def restore_defaults() -> None:
    """Put KSM back as it boots: nothing merged, ksmd stopped, every knob at its default."""
    unmerge_all()
    for name, value in _ordered_knobs(KERNEL_DEFAULTS):
        if name != "run" and (KSM_DIR / name).exists():
            ksm_write(name, value)


def _ordered_knobs(knobs: dict) -> list[tuple[str, int | str]]:
    """The order the kernel accepts them in, from a state with nothing merged and the advisor off."""
    first = [k for k in _EARLY_KNOBS + _ADVISOR_KNOBS if k in knobs]
    rest = [k for k in knobs if k not in first and k not in ("advisor_mode", "pages_to_scan", "run")]
    order = list(first)
    if knobs.get("advisor_mode", "none") == "none":
        order += ["advisor_mode", "pages_to_scan"]
    else:
        order += ["pages_to_scan", "advisor_mode"]  # scan-time sets pages_to_scan itself
    return [(k, knobs[k]) for k in order + rest if k in knobs]


def parse_ksm_stat(text: str) -> dict[str, int | str]:
    """/proc/PID/ksm_stat's lines ("ksm_rmap_items 12", "ksm_merge_any: no") as ints and
    "yes"/"no" flags; lines of a newer kernel that we do not know are left out."""
    out: dict[str, int | str] = {}
    for line in text.splitlines():
        key, _, value = line.replace(":", " ").partition(" ")
        value = value.strip()
        if key in STAT_INTS:
            out[key] = int(value)
        elif key in STAT_FLAGS:
            out[key] = value
    return out


def read_ksm_stat(pid: int) -> dict[str, int | str]:
    """/proc/PID/ksm_stat as the contract's per-process object (ints, and "yes"/"no" flags)."""
    return {"pid": pid, **parse_ksm_stat(Path(f"/proc/{pid}/ksm_stat").read_text())}


def ksmd_pid() -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "ksmd":
                    return int(entry.name)
            except OSError:
                continue
    raise KernelUnavailable("no ksmd thread found")


def ksmd_cpu_ns(pid: int) -> int:
    """Time ksmd has spent on a CPU, in ns (schedstat: exact, unlike utime+stime ticks)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def ksmd_sched_ns(pid: int) -> tuple[int, int]:
    """(on-CPU ns, ns runnable but waiting for a CPU) of ksmd, from schedstat: the second is what
    the machine's other load costs ksmd in wall time (it runs at nice 5)."""
    fields = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(fields[0]), int(fields[1])


def numa_nodes() -> int:
    return len(list(Path("/sys/devices/system/node").glob("node[0-9]*"))) or 1



# One driver of the real KSM at a time on this machine (tests, `ksmtui bench`, `ksmtui kernel`):
# its counters and knobs are global. Re-entrant within a process, so a test holding it can start
# a KernelRun (flock would deadlock on a second open of the same file).
KERNEL_LOCK = Path("/tmp/ksmtui-kernel.lock")
_lock_depth = 0
_lock_file = None


@contextlib.contextmanager
def machine_lock():
    global _lock_depth, _lock_file
    if _lock_depth == 0:
        _lock_file = open(KERNEL_LOCK, "w")
        fcntl.flock(_lock_file, fcntl.LOCK_EX)
    _lock_depth += 1
    try:
        yield
    finally:
        _lock_depth -= 1
        if _lock_depth == 0:
            _lock_file.close()  # closing releases the flock
            _lock_file = None


