"""What `ksmtui host` costs the machine it watches: CPU time of its sampling (sysfs, /proc/vmstat,
every process's ksm_stat, ksmd's schedstat, and the tracepoint reader where tracefs is usable)
over wall time, with many sleeping processes, some of them merge-any (PR_SET_MEMORY_MERGE), so
that ksm_stat is read and parsed as on a busy host. Used by `ksmtui bench`."""

from __future__ import annotations

import subprocess
import sys
import time

from ksmtui.kernel import sysfs
from ksmtui.kernel.host import HostSampler

# One small Python process forks the sleepers (so that they are copies of it, not of the caller),
# prints their pids, and kills them when its stdin closes.
_SLEEPERS = r"""
import ctypes, os, signal, sys
n, every = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
pids = []
for i in range(n):
    pid = os.fork()
    if pid == 0:
        try:
            if every and i % every == 0 and libc.prctl(67, 1, 0, 0, 0) != 0:  # PR_SET_MEMORY_MERGE
                os._exit(3)
            while True:
                signal.pause()
        finally:
            os._exit(0)
    pids.append(pid)
print(" ".join(map(str, pids)), flush=True)
sys.stdin.read()
for pid in pids:
    os.kill(pid, signal.SIGKILL)
for pid in pids:
    os.waitpid(pid, 0)
"""


def host_cpu(processes: int = 1000, merge_any_every: int = 10, seconds: float = 10.0,
             interval: float = 1.0) -> dict:
    """Sample at `interval` for `seconds` beside `processes` sleepers (every `merge_any_every`-th
    merge-any); the share of one core the sampling used. Merge-any registers the sleepers with
    ksmd, a change of KSM's state: done under the machine lock, with ksmd's run left as it was."""
    with sysfs.machine_lock():
        helper = subprocess.Popen([sys.executable, "-c", _SLEEPERS, str(processes), str(merge_any_every)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            pids = helper.stdout.readline().split()
            if len(pids) != processes:
                raise RuntimeError(f"{len(pids)} of {processes} sleeping processes started")
            with HostSampler(interval) as sampler:
                samples = []
                sampler.sample()  # the first look (finding ksmd) is not the steady state
                cpu0, wall0 = time.process_time(), time.monotonic()
                sampler.start(samples.append)
                time.sleep(seconds)
                sampler.close()
                cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            known = len(samples[-1].processes) if samples else 0
        finally:
            helper.stdin.close()
            helper.wait(timeout=60)
    return {"processes": processes, "merge_any": len(range(0, processes, merge_any_every)) if merge_any_every else 0,
            "known_to_ksm": known, "samples": len(samples), "cpu_s": cpu, "wall_s": wall, "share": cpu / wall,
            "traced": not sampler.trace_note, "trace_note": sampler.trace_note}
