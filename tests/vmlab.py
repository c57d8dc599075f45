"""A small lab of real QEMU guests, for the tests (and experiments) that need KSM as a KVM host meets it.

Each guest is `qemu-system-x86_64 -accel tcg` (nested KVM hangs on these machines) with 256 MiB of
RAM, a Debian cloud kernel and a busybox initramfs whose /init mounts a tmpfs, fills it as the
kernel command line says (`ksmtui.fill=`: one byte value, a few pools of pages shared by every
guest, unique data), prints READY on the serial console and sleeps. QEMU madvises guest RAM
MERGEABLE (`mem-merge=on`, its default) and HUGEPAGE, as on any KVM host, so the guests' RAM is
THP-backed where the host's THP mode is `madvise`. Each guest has a QMP socket beside its console
(`Guest.qmp`: pause it; booted `ram_merge_only`, take its RAM out of KSM and back, `Guest.set_merge`).

Everything comes from Debian's packages: qemu-system-x86, busybox-static and cpio are installed
with apt-get when missing and we are root; the kernel is `apt-get download`ed and `dpkg -x`ed into
a cache directory (~/.cache/ksmtui/vmlab) that later runs reuse. Where that cannot be done,
`LabUnavailable` says why (the `vm_lab` fixture skips with it).

Guests never outlive the lab: each QEMU leads its own process group, killed when the `boot` block
ends however it ends (exception, Ctrl-C, SIGTERM, a failing test), and dies with SIGKILL if the
thread that started it dies first (PR_SET_PDEATHSIG).

    python tests/vmlab.py a=byte:90:64 b=byte:90:64     # boot two guests by hand, Ctrl-C ends them
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ksmtui.host import sysfs

MEM_MIB = 256
RAM_ID = "ram"  # guest RAM's memory backend, in guests booted ram_merge_only
RAM_OBJECT = f"/objects/{RAM_ID}"
READY = "KSMTUI-READY"
PACKAGES = {"qemu-system-x86_64": "qemu-system-x86", "cpio": "cpio"}  # binary -> Debian package
BUSYBOX = Path("/bin/busybox")  # busybox-static's; it must run alone in the initramfs
KERNEL_META = "linux-image-cloud-amd64"
APT_LOCK_WAIT = ("-o", "DPkg::Lock::Timeout=300")


class LabUnavailable(Exception):
    """The lab cannot run here; the message says why."""


class GuestError(Exception):
    """A guest failed to boot or fill in time; the message carries the tail of its console."""


# ----------------------------------------------------------------------------------- fills --

@dataclass(frozen=True)
class Fill:
    """One file of the guest's tmpfs: `mib` MiB of `kind` pages.

    byte:   every page holds the one byte `value` (0 gives zero-filled pages)
    pools:  page i holds pool i % `value`; pool j's content depends only on j, so every guest has
            the same pools
    unique: random pages, different from every other page of every guest
    """
    kind: str
    value: int
    mib: int

    def __post_init__(self) -> None:
        if self.kind not in ("byte", "pools", "unique"):
            raise ValueError(f"fill kind {self.kind!r}: expected byte, pools or unique")
        if self.mib < 1 or (self.kind == "byte" and not 0 <= self.value <= 255) or \
                (self.kind == "pools" and self.value < 1):
            raise ValueError(f"fill {self}: mib >= 1, a byte value 0..255, pools >= 1")

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}:{self.mib}"

    @classmethod
    def parse(cls, text: str) -> Fill:
        """byte:VALUE:MIB, pools:COUNT:MIB or unique:MIB"""
        parts = text.split(":")
        if parts[0] == "unique" and len(parts) == 2:
            parts.insert(1, "0")
        if len(parts) != 3:
            raise ValueError(f"fill {text!r}: expected byte:VALUE:MIB, pools:COUNT:MIB or unique:MIB")
        return cls(parts[0], int(parts[1], 0), int(parts[2]))


def byte(value: int, mib: int) -> Fill:
    return Fill("byte", value, mib)


def pools(count: int, mib: int) -> Fill:
    return Fill("pools", count, mib)


def unique(mib: int) -> Fill:
    return Fill("unique", 0, mib)


# The guest's /init. A block of 1 MiB or more of whole pages is built once and streamed into the
# tmpfs file, so that a pattern costs a few dozen processes, not one per page (TCG is slow). It
# prints a line per fill, with the guest's uptime, then READY.
INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /dev /mnt /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
export PATH=/bin
exec </dev/console >/dev/console 2>&1
set -e
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        ksmtui.name=*) name=${arg#ksmtui.name=} ;;
        ksmtui.fill=*) fill=${arg#ksmtui.fill=} ;;
    esac
done
mount -t tmpfs -o size=90% tmpfs /mnt
i=0
for seg in $(echo "$fill" | tr , ' '); do
    kind=${seg%%:*}; rest=${seg#*:}; value=${rest%%:*}; bytes=$((${rest#*:} * 1048576))
    if [ $kind = unique ]; then
        head -c $bytes /dev/urandom > /mnt/fill$i
    else
        if [ $kind = byte ]; then
            head -c 1048576 /dev/zero | tr '\000' "\\$(printf %o "$value")" > /tmp/block
        else
            : > /tmp/block; j=0
            while [ $j -lt "$value" ]; do
                yes "$(printf pool%011d $j)" | head -c 4096 >> /tmp/block; j=$((j + 1))
            done
            while [ $(wc -c < /tmp/block) -lt 1048576 ]; do
                cat /tmp/block /tmp/block > /tmp/double; mv /tmp/double /tmp/block
            done
        fi
        while cat /tmp/block; do :; done | head -c $bytes > /mnt/fill$i
        rm /tmp/block
    fi
    i=$((i + 1))
    echo "filled $seg at $(cut -d' ' -f1 /proc/uptime) s"
done
echo "KSMTUI-READY $name"
while :; do sleep 3600; done
"""


# --------------------------------------------------------------------------------- the lab --

def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ksmtui" / "vmlab"


def _run(cmd: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _console_gist(text: str) -> str:
    """A panic's reason where there is one (its register dump says little), else the console's end."""
    panic = [line for line in text.splitlines() if "Kernel panic" in line]
    return panic[-1].strip() if panic else text[-600:]


def _busybox_static() -> bool:
    """/bin/busybox exists and has no ELF interpreter (the initramfs holds no libc)."""
    try:
        return BUSYBOX.is_file() and b"/lib64/ld-linux" not in BUSYBOX.read_bytes()[:4096]
    except OSError:
        return False


def _apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0:
        raise LabUnavailable(f"needs {', '.join(packages)} (apt-get install needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = _run(["apt-cache", "policy", *packages]).stdout
    if len(re.findall(r"Candidate: (?!\(none\))", policy)) < len(packages):  # lists missing or stale
        _run(["apt-get", *APT_LOCK_WAIT, "update", "-q"], env=env)
    done = _run(["apt-get", *APT_LOCK_WAIT, "install", "-y", "-q", "--no-install-recommends", *packages], env=env)
    if done.returncode:
        raise LabUnavailable(f"apt-get install {' '.join(packages)} failed: {_last_line(done.stderr)}")


def ensure_packages() -> None:
    missing = [pkg for binary, pkg in PACKAGES.items() if not shutil.which(binary)]
    if not _busybox_static():
        missing.append("busybox-static")
    if missing:
        _apt_install(missing)


def ensure_kernel(cache: Path) -> Path:
    """The cloud kernel's vmlinuz, from the cache or fetched into it (apt-get download + dpkg -x)."""
    found = sorted(cache.glob("vmlinuz-*"))
    if found:
        return found[-1]
    depends = _run(["apt-cache", "depends", KERNEL_META]).stdout
    if "Depends:" not in depends and os.geteuid() == 0:
        _run(["apt-get", *APT_LOCK_WAIT, "update", "-q"])
        depends = _run(["apt-cache", "depends", KERNEL_META]).stdout
    match = re.search(r"Depends: (linux-image-\S+-cloud-amd64)\b", depends)
    if not match:
        raise LabUnavailable(f"apt-cache knows no {KERNEL_META} (run apt-get update?)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        os.chmod(tmp, 0o755)  # apt-get download drops to the _apt user where it can
        got = _run(["apt-get", "download", match.group(1)], cwd=tmp)
        debs = list(Path(tmp).glob("*.deb"))
        if got.returncode or not debs:
            raise LabUnavailable(f"apt-get download {match.group(1)} failed: {_last_line(got.stderr)}")
        unpacked = _run(["dpkg-deb", "-x", str(debs[0]), f"{tmp}/x"])
        images = list(Path(tmp, "x", "boot").glob("vmlinuz-*"))
        if unpacked.returncode or not images:
            raise LabUnavailable(f"no vmlinuz in {debs[0].name}: {_last_line(unpacked.stderr)}")
        os.replace(images[0], cache / images[0].name)  # atomic: a concurrent run sees all or nothing
    return cache / images[0].name


def build_initramfs(cache: Path) -> Path:
    """busybox and INIT in a newc cpio, rebuilt when either changes."""
    path = cache / "initramfs.cpio"
    stamp = f"{BUSYBOX.stat().st_mtime_ns} {hashlib.sha256(INIT.encode()).hexdigest()}\n"
    stamp_file = cache / "initramfs.stamp"
    if path.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return path
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        root = Path(tmp, "root")
        (root / "bin").mkdir(parents=True)
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        (root / "init").write_text(INIT)
        (root / "init").chmod(0o755)
        names = "\n".join(str(p.relative_to(root)) for p in sorted(root.rglob("*"))) + "\n"
        with open(Path(tmp, "out.cpio"), "wb") as out:
            made = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"], input=names.encode(),
                                  stdout=out, stderr=subprocess.PIPE, cwd=root, timeout=60)
        if made.returncode:
            raise LabUnavailable(f"cpio failed: {made.stderr.decode().strip()}")
        os.replace(Path(tmp, "out.cpio"), path)
    stamp_file.write_text(stamp)
    return path


@dataclass
class Guest:
    name: str
    fills: tuple[Fill, ...]
    proc: subprocess.Popen
    console: Path
    ram_start: int | None = None  # where guest RAM is mapped, once known (set_merge checks its VmFlags)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except OSError:
            return ""

    def ready(self) -> bool:
        return f"{READY} {self.name}" in self.console_text()

    @property
    def qmp_path(self) -> Path:
        return self.console.parent / f"{self.name}.qmp"

    def qmp(self, command: str, **arguments) -> object:
        """One QMP command on the guest's monitor socket; its "return", or GuestError with QEMU's "error"."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            sock.connect(str(self.qmp_path))
            lines = sock.makefile("rwb")

            def execute(cmd: str, args: dict) -> object:
                lines.write(json.dumps({"execute": cmd, **({"arguments": args} if args else {})}).encode() + b"\n")
                lines.flush()
                while True:  # events (STOP, RESUME, ...) may come before the answer
                    line = lines.readline()
                    if not line:
                        raise GuestError(f"guest {self.name}: QMP closed on {cmd}")
                    answer = json.loads(line)
                    if "error" in answer:
                        raise GuestError(f"guest {self.name}: QMP {cmd} {args}: {answer['error'].get('desc')}")
                    if "return" in answer:
                        return answer["return"]

            if "QMP" not in json.loads(lines.readline()):
                raise GuestError(f"guest {self.name}: no QMP greeting")
            execute("qmp_capabilities", {})
            return execute(command, arguments)

    def set_merge(self, on: bool) -> None:
        """Guest RAM MERGEABLE or not, at run time (booted ram_merge_only): QEMU's backend
        madvises MADV_MERGEABLE, or MADV_UNMERGEABLE, which also unmerges the RAM's KSM pages
        (backends/hostmem.c, host_memory_backend_set_merge). Checked in QEMU and in the VMA's flags."""
        self.qmp("qom-set", path=RAM_OBJECT, property="merge", value=on)
        if self.qmp("qom-get", path=RAM_OBJECT, property="merge") is not on:
            raise GuestError(f"guest {self.name}: {RAM_OBJECT} merge is not {on}")
        if self.ram_start is None:
            raise GuestError(f"guest {self.name}: its RAM's mapping is not known (not booted by VMLab.boot)")
        ram = [v for v in vmas(self.pid) if v["start"] == self.ram_start]
        if len(ram) != 1 or ("mg" in ram[0]["VmFlags"]) != on:
            raise GuestError(f"guest {self.name}: RAM at {self.ram_start:#x} is not {'' if on else 'un'}mergeable: "
                             f"{ram[0]['VmFlags'] if ram else 'no such mapping'}")


def _die_with_parent() -> None:
    # in the child between fork and exec: SIGKILL when the thread that started us dies, so a
    # guest cannot outlive a test run killed by SIGKILL (every other way out runs our teardown)
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _die_with_parent_no_thp() -> None:
    _die_with_parent()
    # kept across exec: QEMU's MADV_HUGEPAGE then gets no huge page (THPeligible 0), whatever the host's THP mode
    if ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0):  # PR_SET_THP_DISABLE
        os._exit(127)


class VMLab:
    """Prepared once (packages, kernel, initramfs); boots guests on demand."""

    def __init__(self, cache: Path | None = None, mem_mib: int = MEM_MIB) -> None:
        self.cache = cache or cache_dir()
        self.mem_mib = mem_mib
        self.guests: list[Guest] = []
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LabUnavailable(f"cannot make the cache {self.cache}: {e.strerror}") from None
        ensure_packages()
        self.qemu = shutil.which("qemu-system-x86_64") or "qemu-system-x86_64"
        self.kernel = ensure_kernel(self.cache)
        self.initramfs = build_initramfs(self.cache)

    def command(self, name: str, fills: tuple[Fill, ...], console: Path, ram_merge_only: bool = False) -> list[str]:
        """ram_merge_only: guest RAM alone MERGEABLE, in a memory backend whose `merge` QMP can switch at
        run time (Guest.set_merge). By default (mem-merge=on, as on any KVM host) QEMU also madvises its
        ROM and ACPI blocks MERGEABLE, which no property takes back: such a guest cannot leave KSM."""
        append = f"console=ttyS0 quiet panic=-1 mitigations=off ksmtui.name={name} " \
                 f"ksmtui.fill={','.join(map(str, fills))}"
        memory = ["-machine", "pc,mem-merge=on"]
        if ram_merge_only:
            memory = ["-machine", f"pc,mem-merge=off,memory-backend={RAM_ID}",
                      "-object", f"memory-backend-ram,id={RAM_ID},size={self.mem_mib}M,merge=on"]
        return [self.qemu, "-name", f"guest={name},process={name}", "-accel", "tcg",
                *memory, "-m", str(self.mem_mib), "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-serial", f"file:{console}", "-qmp", f"unix:{console.parent / name}.qmp,server=on,wait=off",
                "-kernel", str(self.kernel), "-initrd", str(self.initramfs),
                "-append", append]

    def start(self, name: str, fills: tuple[Fill, ...], workdir: Path, ram_merge_only: bool = False,
              thp: bool = True) -> Guest:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,14}", name):
            raise ValueError(f"guest name {name!r}: 1-15 of a-z, 0-9, - (it becomes the process name)")
        console = workdir / f"{name}.console"
        console.touch()
        with open(workdir / f"{name}.stderr", "w") as stderr:
            proc = subprocess.Popen(self.command(name, fills, console, ram_merge_only), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                                    preexec_fn=_die_with_parent if thp else _die_with_parent_no_thp)
        guest = Guest(name, fills, proc, console)
        self.guests.append(guest)
        return guest

    def wait_ready(self, guests: list[Guest], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(guests)
        while waiting:
            for g in list(waiting):
                if g.ready():
                    waiting.remove(g)
                elif g.proc.poll() is not None:
                    err = (g.console.parent / f"{g.name}.stderr").read_text(errors="replace")
                    raise GuestError(f"guest {g.name} exited ({g.proc.returncode}) before {READY}: "
                                     f"{_last_line(err)} / console: {_console_gist(g.console_text())}")
            if waiting and time.monotonic() > deadline:
                raise GuestError(f"guests {[g.name for g in waiting]} not {READY} after {timeout:.0f} s; "
                                 f"{waiting[0].name}'s console: {_console_gist(waiting[0].console_text())}")
            time.sleep(0.05)

    @contextlib.contextmanager
    def boot(self, guests: dict[str, list[Fill] | tuple[Fill, ...]], timeout: float = 300,
             ram_merge_only: bool = False, thp: bool = True) -> Iterator[list[Guest]]:
        """Start every guest, wait (at most `timeout` s) until each has filled its tmpfs, and kill them all
        when the block ends, whichever way it ends (their QMP sockets go with the working directory).
        QEMU registers guest RAM with KSM, so the guests live under the machine lock: no other user of
        the real KSM counts their pages. ram_merge_only: see `command`; thp=False: guest RAM in small
        pages only (PR_SET_THP_DISABLE), where zero-filled pages become KSM zero pages or KSM pages."""
        with sysfs.machine_lock(), _sigterm_raises(), tempfile.TemporaryDirectory(prefix="ksmtui-vmlab-") as tmp:
            before = list(self.guests)
            try:
                for name, fills in guests.items():
                    self.start(name, tuple(fills), Path(tmp), ram_merge_only, thp)
                started = [g for g in self.guests if g not in before]
                self.wait_ready(started, timeout)
                for g in started:
                    g.ram_start = guest_ram(g.pid, self.mem_mib)["start"]
                yield started
            finally:  # every guest this block started, even one whose start() was interrupted
                self.kill([g for g in self.guests if g not in before])

    def kill(self, guests: list[Guest] | None = None) -> None:
        for g in list(self.guests if guests is None else guests):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(g.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                g.proc.wait(timeout=30)
            if g in self.guests:
                self.guests.remove(g)

    def close(self) -> None:
        self.kill()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM ends the run as Ctrl-C does, through every `finally` (Python's default would not run
    them). Only where nobody else handles SIGTERM, and only from the main thread (signals go there)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# --------------------------------------------------------------------- what the host sees --

def vmas(pid: int) -> list[dict]:
    """/proc/PID/smaps as one dict a VMA: start, end, the kB fields as ints, VmFlags as a set."""
    out: list[dict] = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 1)
        if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", head[0]):
            start, end = (int(x, 16) for x in head[0].split("-"))
            out.append({"start": start, "end": end, "line": line})
        elif head[0] == "VmFlags:":
            out[-1]["VmFlags"] = set(head[1].split()) if len(head) > 1 else set()
        elif line.endswith(" kB"):
            out[-1][head[0].rstrip(":")] = int(head[1].split()[0])
        else:
            out[-1][head[0].rstrip(":")] = head[1].strip() if len(head) > 1 else ""
    return out


def guest_ram(pid: int, mem_mib: int = MEM_MIB) -> dict:
    """The smaps entry of a guest's RAM: the one MERGEABLE mapping that holds all of it."""
    ram = [v for v in vmas(pid) if "mg" in v.get("VmFlags", ()) and v["end"] - v["start"] >= mem_mib << 20]
    if len(ram) != 1:
        raise GuestError(f"pid {pid}: {len(ram)} MERGEABLE mappings of {mem_mib} MiB or more")
    return ram[0]


def settle_each_alone(guests: list[Guest]) -> list[dict]:
    """The real ksmd settled (thp_lab.settle) on each guest alone, in turn: its RAM MERGEABLE, the
    others' not (guests booted ram_merge_only; paused, their memory stays what a capture saw), then
    its pages unmerged and every rmap_item and stable node freed (run=2), so that the next guest's
    run starts from nothing. Per guest: its full scans and seconds, sysfs's counters, every guest's
    ksm_stat by pid, and the huge pages split (/proc/vmstat thp_split_page). At the end every
    guest's RAM is MERGEABLE again. The knobs are the caller's; ksmd is stopped after each run."""
    import thp_lab

    out = []
    for g in guests:
        for other in guests:
            other.set_merge(other is g)
        t0, split = time.monotonic(), thp_lab.read_vmstat()["thp_split_page"]
        scans = thp_lab.settle()
        out.append({"scans": scans, "seconds": time.monotonic() - t0, "ksm": sysfs.read_counters(),
                    "processes": {h.pid: sysfs.read_ksm_stat(h.pid) for h in guests},
                    "thp_split_page": thp_lab.read_vmstat()["thp_split_page"] - split})
        g.set_merge(False)
        sysfs.unmerge_all()  # its KSM pages are broken already; this frees its rmap_items and stale stable nodes
    for g in guests:
        g.set_merge(True)
    return out


if __name__ == "__main__":
    import sys

    specs = {arg.split("=", 1)[0]: [Fill.parse(f) for f in arg.split("=", 1)[1].split(",")] for arg in sys.argv[1:]}
    lab = VMLab()
    t0 = time.monotonic()
    try:  # Ctrl-C or SIGTERM, at any moment: the guests are killed on the way out, and we exit 0
        with lab.boot(specs) as booted:
            print(f"ready in {time.monotonic() - t0:.1f} s:", ", ".join(f"{g.name}={g.pid}" for g in booted),
                  f"(consoles in {booted[0].console.parent})" if booted else "", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
