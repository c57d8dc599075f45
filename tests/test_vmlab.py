"""The VM lab itself: guests boot named, THP-backed, MERGEABLE and filled, and none outlives its lab."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import vmlab

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def qemu_pids(name: str) -> list[int]:
    """Every process on the machine that is a guest called `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"guest={name},process={name}".encode() in args and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.mark.kernel
def test_guests_boot_named_thp_backed_mergeable_filled_and_are_gone_after(kernel, vm_lab):
    # the kernel fixture: ksmd stopped and nobody else's run starting, so no merge splits the guests' huge pages
    if "[never]" in THP.read_text():
        pytest.skip(f"{THP} is never: guest RAM cannot be THP-backed")
    fills = {"vmlab-a": [vmlab.byte(0x5A, 16)], "vmlab-b": [vmlab.pools(3, 8), vmlab.unique(8)],
             "vmlab-c": [vmlab.byte(0, 16)]}
    with vm_lab.boot(fills) as guests:
        assert [g.name for g in guests] == list(fills)
        for g in guests:
            assert Path(f"/proc/{g.pid}/comm").read_text().strip() == g.name
            assert qemu_pids(g.name) == [g.pid]
            console = g.console_text()
            assert f"{vmlab.READY} {g.name}" in console
            assert [line.split()[1] for line in console.splitlines() if line.startswith("filled ")] == \
                [str(f) for f in fills[g.name]]
            ram = vmlab.guest_ram(g.pid)
            assert ram["end"] - ram["start"] == vmlab.MEM_MIB << 20
            assert {"mg", "hg"} <= ram["VmFlags"], ram["VmFlags"]  # MADV_MERGEABLE, MADV_HUGEPAGE
            assert ram["THPeligible"] == "1"
            assert ram["start"] == g.ram_start
            assert g.qmp("query-status")["status"] == "running"  # its QMP socket answers
            # the fill alone is 16 MiB, written into guest RAM that the host faults in 2 MiB at a time
            assert ram["AnonHugePages"] >= 16 * 1024, ram
        pids = [g.pid for g in guests]
        workdir = guests[0].console.parent
    assert not any(alive(pid) for pid in pids)
    assert not any(qemu_pids(name) for name in fills)
    assert not workdir.exists()
    assert vm_lab.guests == []


def test_guests_die_when_the_block_raises(vm_lab):
    with pytest.raises(RuntimeError), vm_lab.boot({"vmlab-raise": [vmlab.byte(1, 1)]}) as guests:
        pid = guests[0].pid
        assert alive(pid)
        raise RuntimeError("a failing test")
    assert not alive(pid) and not qemu_pids("vmlab-raise")


def test_a_guest_that_cannot_boot_says_why_in_bounded_time(vm_lab):
    small = vmlab.VMLab(vm_lab.cache, mem_mib=96)
    with pytest.raises(vmlab.GuestError, match="vmlab-oom exited.*Kernel panic"):
        # 128 MiB of fill in a 96 MiB guest: the init dies, the kernel panics, QEMU exits
        with small.boot({"vmlab-oom": [vmlab.byte(1, 128)]}, timeout=120):
            pass
    assert not qemu_pids("vmlab-oom")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_guests_die_with_the_process_that_booted_them(vm_lab, sig):
    # SIGTERM and SIGINT run the teardown; SIGKILL runs nothing, and PR_SET_PDEATHSIG kills the guest
    name = f"vmlab-{sig.name.lower()}"
    lab = subprocess.Popen([sys.executable, vmlab.__file__, f"{name}=byte:1:1"], stdout=subprocess.PIPE, text=True,
                           cwd=Path(vmlab.__file__).parent)
    try:
        line = lab.stdout.readline()
        assert line.startswith("ready"), line
        workdir = Path(line.split("(consoles in ")[1].rstrip(")\n"))
        pid = qemu_pids(name)[0]
        os.kill(lab.pid, sig)
        assert lab.wait(timeout=60) == (-9 if sig == signal.SIGKILL else 0)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid) and not qemu_pids(name)
        # a process killed by SIGKILL cleans up nothing: its console files are ours to remove
        assert workdir.exists() == (sig == signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
