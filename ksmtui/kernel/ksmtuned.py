"""The real ksmtuned (Debian's package) against the real kernel, and the model's on the same inputs.

The script runs from a copy whose `. /etc/ksmtuned.conf` reads a copy of the package's config in a
temporary folder (so the host's config cannot change its settings), with its KSM_* settings, DEBUG
and LOGFILE from its environment, under strace, which records every write(2) it makes to
/sys/kernel/mm/ksm and what the kernel answered. Its debug log says what it read at each adjust()
(committed, free) and what it computed once (total, sleep, thres). A process whose command line
matches its qemu pattern (`exec -a qemu-system-x86_64 ... -enable-kvm`) holds memory in phases:

- idle: nothing beyond the interpreter;
- anon: private anonymous memory, touched: RSS up and MemFree down by as much;
- shared: one memfd mapped many times, touched: RSS counts every mapping (ps counts shared memory
  once per mapping), while MemFree + Buffers + Cached stays (shmem is in Cached).

The thresholds come from the host as measured at the start, so each phase drives one of the
script's branches: idle stops KSM, anon starts it with a boost (free below thres), shared starts it
with a decay (committed + thres above MemTotal, free above thres). Other processes on the machine
move free memory too; whatever ksmtuned read, the model is given the same (its log), so the
comparison is decision for decision on equal inputs.

Everything happens under the machine lock; ksmtuned's whole session and the holder are killed by
their ids, the knobs restored, on failure too. Nothing of ours is madvised: ksmd, started by
ksmtuned, finds nothing to merge from us.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.controllers import control_loop
from engine.scenario import parse_scenario
from engine.sim import Simulation
from ksmtui.host import sysfs

KSMTUNED = Path("/usr/sbin/ksmtuned")
KSMTUNED_CONF = Path("/etc/ksmtuned.conf")
MIB = 1 << 20

_HOLDER = textwrap.dedent("""\
    import mmap, os, sys
    PAGE = mmap.PAGESIZE
    held = []
    def touch(m, write):
        for off in range(0, len(m), PAGE):
            if write:
                m[off] = 1
            else:
                m[off]
    for line in sys.stdin:
        cmd, *args = line.split()
        for m in held:
            m.close()
        held = []
        if cmd == "anon":
            m = mmap.mmap(-1, int(args[0]) << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            touch(m, True)
            held.append(m)
        elif cmd == "shared":
            fd = os.memfd_create("guest-ram")
            os.ftruncate(fd, int(args[0]) << 20)
            for i in range(int(args[1])):
                m = mmap.mmap(fd, int(args[0]) << 20, flags=mmap.MAP_SHARED)
                touch(m, i == 0)
                held.append(m)
            os.close(fd)
        print("ok", flush=True)
""")

_WRITE = re.compile(r'^\d+\s+write\(\d+</sys/kernel/mm/ksm/(\w+)>, "([^"\\]*)(?:\\n)?", \d+\)\s+=\s+(-?\d+)(.*)$')
_LOG = re.compile(r"^.*?: (total|sleep|thres) (\d+)$|^.*?: committed (\d+) free (\d+)$")


def unavailable_reason() -> str | None:
    """Why the real check cannot run here, or None: installs ksmtuned and strace from Debian's
    packages when root and missing."""
    reason = sysfs.unavailable_reason()
    if reason:
        return reason
    missing = [pkg for pkg, path in (("ksmtuned", str(KSMTUNED)), ("strace", "strace")) if not shutil.which(path)]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], capture_output=True, timeout=300,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        missing = [pkg for pkg, path in (("ksmtuned", str(KSMTUNED)), ("strace", "strace")) if not shutil.which(path)]
    if missing:
        return f"needs Debian's {' and '.join(missing)} (not installed, and apt-get could not install it here)"
    return None


@dataclass
class RealRun:
    interval_s: float
    env: dict[str, str]
    total: int = 0
    sleep: int = 0
    thres: int = 0
    reads: list[tuple[int, int]] = field(default_factory=list)  # (committed, free) per adjust()
    writes: list[tuple[str, int | str, str | None]] = field(default_factory=list)  # knob, value, error
    phases: list[str] = field(default_factory=list)


def _meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0])
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the loop subshell and its sleep
    except ProcessLookupError:
        pass
    proc.wait()


PHASE_TIMEOUT_S = 60.0  # for one phase's reads: seconds where an unloaded machine needs two


def _reads(log: Path) -> int:
    try:
        text = log.read_text()
    except FileNotFoundError:
        return 0
    return sum(1 for line in text.splitlines() if (m := _LOG.match(line)) and not m.group(1))


def _wait_for_reads(log: Path, count: int, deadline: float) -> None:
    while _reads(log) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"ksmtuned read its inputs {_reads(log)} times, not {count}, in time ({log})")
        time.sleep(0.05)


def run_real(interval_s: float = 0.5, adjusts_per_phase: int = 4, anon_mib: int = 1024,
             shared_mib: int = 256) -> RealRun:
    """Runs the real ksmtuned through idle, anon, shared and idle phases; returns what it read
    and wrote."""
    with sysfs.machine_lock():
        saved = sysfs.read_knobs()
        tmp = Path(tempfile.mkdtemp(prefix="ksmtui-ksmtuned-"))
        holder = tuned = None
        try:
            mem = _meminfo()
            total = mem["MemTotal"]
            free0 = mem["MemFree"] + mem["Buffers"] + mem["Cached"]
            used0 = total - free0
            thres = free0 - anon_mib * 1024 // 2  # anon takes free below it, idle leaves it above
            # shared: committed + thres >= total with a margin of half the anon phase
            maps = -(-(used0 + anon_mib * 1024) // (shared_mib * 1024)) + 1
            env = {"KSM_MONITOR_INTERVAL": str(interval_s), "KSM_THRES_COEF": "0", "KSM_THRES_CONST": str(thres)}
            run = RealRun(interval_s, env)

            (tmp / "holder.py").write_text(_HOLDER)
            holder = subprocess.Popen(
                ["bash", "-c", f'exec -a qemu-system-x86_64 "{sys.executable}" "{tmp / "holder.py"}" -enable-kvm'],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            shutil.copy(KSMTUNED_CONF, tmp / "ksmtuned.conf")
            script = KSMTUNED.read_text().replace(str(KSMTUNED_CONF), str(tmp / "ksmtuned.conf"))
            (tmp / "ksmtuned").write_text(script)
            log = tmp / "ksmtuned.log"
            trace = tmp / "strace.txt"
            tuned = subprocess.Popen(
                ["strace", "-f", "-qq", "-y", "-e", "trace=write", "-e", "signal=none", "-o", str(trace),
                 "bash", str(tmp / "ksmtuned")],
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env, "DEBUG": "1", "LOGFILE": str(log),
                     "PIDFILE": str(tmp / "ksmtuned.pid")},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            phases = [("idle", "idle"), ("anon", f"anon {anon_mib}"), ("shared", f"shared {shared_mib} {maps}"),
                      ("idle", "idle")]
            for name, cmd in phases:
                assert holder.stdin is not None and holder.stdout is not None
                holder.stdin.write(cmd + "\n")
                holder.stdin.flush()
                holder.stdout.readline()
                run.phases.append(name)
                # each phase holds for adjusts_per_phase of ksmtuned's reads, counted in its log: on a
                # busy machine an adjust (ps, awk, strace) takes longer than the interval, so the
                # phases follow ksmtuned's progress, not the clock; counted from when the phase is in
                # place (the holder touching its memory takes a few intervals: reads made meanwhile
                # would otherwise count for a phase they did not see)
                _wait_for_reads(log, _reads(log) + adjusts_per_phase, time.monotonic() + PHASE_TIMEOUT_S)
            _kill_group(tuned)
            tuned = None
            for line in log.read_text().splitlines():
                m = _LOG.match(line)
                if m and m.group(1):
                    setattr(run, m.group(1), int(m.group(2)))
                elif m:
                    run.reads.append((int(m.group(3)), int(m.group(4))))
            for line in trace.read_text().splitlines():
                w = _WRITE.match(line)
                if w:
                    ok = int(w.group(3)) >= 0
                    run.writes.append((w.group(1), int(w.group(2)), None if ok else w.group(4).strip()))
            # an adjust cut short by the kill: its read without all of its writes (run is the last)
            complete = sum(1 for knob, _, _ in run.writes if knob == "run")
            run.reads = run.reads[:complete]
            while run.writes and run.writes[-1][0] != "run":
                run.writes.pop()
            return run
        finally:
            if tuned is not None:
                _kill_group(tuned)
            if holder is not None:
                holder.kill()
                holder.wait()
            shutil.rmtree(tmp, ignore_errors=True)
            sysfs.ksm_write("run", 0)
            for name, value in sysfs._ordered_knobs(saved):  # noqa: SLF001 - the kernel's order
                if name != "run":
                    sysfs.ksm_write(name, value)
            sysfs.ksm_write("run", saved.get("run", 0))


def model_scenario(run: RealRun) -> str:
    """The scenario the model's ksmtuned runs: MemTotal, and before each adjust the free memory
    and the qemu RSS the real one read (the model's qemu maps one page: the rest is rss_extra)."""
    ms = round(run.interval_s * 1000)
    first_committed, first_free = run.reads[0]
    lines = ["name = \"ksmtuned-real\"", "[ksm]", "run = 0", "[memory]", f"mem_total_kb = {run.total}",
             f"mem_free_kb = {first_free}", f"rss_extra_kb = {{ qemu = {max(first_committed - 4, 0)} }}"]
    for i, (committed, free) in enumerate(run.reads[1:], start=2):
        lines += ["[[memory.point]]", f"at_ms = {i * ms}", f"mem_free_kb = {free}",
                  f"rss_extra_kb = {{ qemu = {max(committed - 4, 0)} }}"]
    lines += ["[[process]]", 'name = "qemu"', 'cmdline = "qemu-system-x86_64 holder.py -enable-kvm"',
              "[[process.region]]", 'name = "ram"', "pages = 1", "mergeable = false",
              "[stop]", f"after_ms = {len(run.reads) * ms}"]
    return "\n".join(lines) + "\n"


def model_writes(run: RealRun) -> list[tuple[str, int | str, str | None]]:
    scenario = parse_scenario(model_scenario(run), "ksmtuned-real", Path("."))
    loop = control_loop(scenario, "ksmtuned", run.env, sample_ms=round(run.interval_s * 1000))
    sim = Simulation(scenario, control=loop)
    sim.run()
    return [(w.knob, w.value, w.error) for w in loop.writes]
