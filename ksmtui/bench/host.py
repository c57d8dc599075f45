"""What `ksmtui host` costs the machine it watches: CPU time of its sampling (sysfs, /proc/vmstat,
every process's ksm_stat, ksmd's schedstat, and the tracepoint reader where tracefs is usable)
over wall time, with many sleeping processes, some of them merge-any (PR_SET_MEMORY_MERGE), so
that ksm_stat is read and parsed as on a busy host. Used by `ksmtui bench`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from ksmtui.host import sysfs
from ksmtui.host.sampler import HostSample, HostSampler

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


# Prometheus, in a process of its own (its CPU is not ours): GET /metrics every interval until its
# stdin closes, then print how many scrapes it made.
_SCRAPER = r"""
import select, sys, urllib.request
url, interval, n = sys.argv[1], float(sys.argv[2]), 0
while not select.select([sys.stdin], [], [], interval)[0]:
    urllib.request.urlopen(url, timeout=10).read()
    n += 1
print(n, flush=True)
"""


def _sampling(seconds: float, interval: float,
              exporter: bool = False) -> tuple[float, float, int, HostSample | None, str | None, int]:
    """Sampling alone (as --json does), or as an exporter (--no-ui --listen): every sample made
    metrics, and /metrics served to a scraper at the same interval."""
    from ksmtui.host.exporter import Exporter

    served = Exporter() if exporter else None
    with HostSampler(interval) as sampler:
        samples: list = []

        def keep(sample: HostSample) -> None:
            samples.append(sample)
            if served is not None:
                served.add(sample)

        keep(sampler.sample())  # the first look (finding ksmd) is not the steady state
        samples.clear()
        scraper = None
        if served is not None:
            host, port = served.serve("127.0.0.1", 0)
            scraper = subprocess.Popen([sys.executable, "-c", _SCRAPER, f"http://{host}:{port}/metrics", str(interval)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            cpu0, wall0 = time.process_time(), time.monotonic()
            sampler.start(keep)
            time.sleep(seconds)
            sampler.close()
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        finally:
            scrapes = 0
            if scraper is not None:
                assert scraper.stdin is not None and scraper.stdout is not None  # made with PIPE
                scraper.stdin.close()
                scrapes = int(scraper.stdout.read() or 0)
                scraper.wait(timeout=30)
            if served is not None:
                served.close()
        return cpu, wall, len(samples), samples[-1] if samples else None, sampler.trace_note, scrapes


async def _drawing(seconds: float, interval: float, size: tuple[int, int],
                   tab: str) -> tuple[float, float, int, HostSample | None, str | None]:
    """The UI on a tab under Textual's headless driver (no terminal to write to)."""
    from ksmtui.ui.apps.host import HostApp, LiveSource

    sampler = HostSampler(interval)
    app = HostApp(LiveSource(sampler))
    async with app.run_test(size=size) as pilot:
        while app.view is None or app.view.samples < 3:  # past the first drawings, which lay it all out
            await pilot.pause(0.1)
        app.action_show_tab(tab)
        await pilot.pause(0.1)
        first = app.view.samples
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        view = app.view
    return cpu, wall, view.samples - first, view.sample, sampler.trace_note


def host_cpu(processes: int = 1000, merge_any_every: int = 10, seconds: float = 10.0,
             interval: float = 1.0, ui: str | None = None, exporter: bool = False) -> dict:
    """Sample at `interval` for `seconds` beside `processes` sleepers (every `merge_any_every`-th
    merge-any); the share of one core the sampling used (with `ui`, the UI drawing that tab too,
    120x40; with `exporter`, the metrics made and served to a scraper every `interval`). Merge-any
    registers the sleepers with ksmd, a change of KSM's state: done under the machine lock, with
    ksmd's run left as it was."""
    with sysfs.machine_lock():
        helper = subprocess.Popen([sys.executable, "-c", _SLEEPERS, str(processes), str(merge_any_every)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert helper.stdin is not None and helper.stdout is not None  # both PIPE
        try:
            pids = helper.stdout.readline().split()
            if len(pids) != processes:
                raise RuntimeError(f"{len(pids)} of {processes} sleeping processes started")
            scrapes = 0
            if ui:
                cpu, wall, count, last, note = asyncio.run(_drawing(seconds, interval, (120, 40), ui))
            else:
                cpu, wall, count, last, note, scrapes = _sampling(seconds, interval, exporter)
        finally:
            helper.stdin.close()
            helper.wait(timeout=60)
    return {"processes": processes, "merge_any": len(range(0, processes, merge_any_every)) if merge_any_every else 0,
            "known_to_ksm": len(last.processes) if last else 0, "samples": count, "scrapes": scrapes, "cpu_s": cpu,
            "wall_s": wall, "share": cpu / wall,
            "traced": not note, "trace_note": note}
