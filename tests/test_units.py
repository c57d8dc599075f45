"""Operators' units: what a process's cgroup path, command line and the runtimes' files say.

The parsing is tested with paths and command lines quoted from real systems (the issue or page
each comes from is named); `identify` on a /proc of files and on real processes in real cgroups
made for the test (root), removed on every way out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ksmtui.host import units
from ksmtui.host.units import ContainerNames, Mount, PathIdentity, Unit, group_key, parse_cgroup_path

DOCKER_ID = "5b881011f3e7efdae20491f386f50d4eac7355296ffcb5146a2b4d3c936a9430"
PODMAN_ID = "cf21d19260ace8544fe8b769fc2638bf2c0873dfbfff0b6253f0569b26a1d5eb"
CONTAINERD_ID = "2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36"
CRIO_ID = "358607a37e7ada357032e7f5729c9ae6a3efdb7962acbcbe47ff6a3c5506cb1c"
K8S_CGROUPFS_ID = "34dc0b5e626f2c5c4c5170e34b10e7654ce36f0fcd532739f4445baabea03376"


# ------------------------------------------------------------------------ /proc/PID/cgroup --

HYBRID = (  # this project's test machines: systemd's hybrid layout, cgroup2 at /sys/fs/cgroup/unified
    "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n"
    "4:memory:/process_api/9cd4819018fdc327b77301b61b0cb46a\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n"
)
V1_ONLY = (  # xapi-project/xen-api#6150: a v1 host, qemu-dm in vm.slice
    "8:memory:/vm.slice\n7:blkio:/vm.slice\n6:net_cls,net_prio:/\n5:freezer:/\n4:cpu,cpuacct:/vm.slice\n"
    "3:cpuset:/\n2:devices:/\n1:name=systemd:/vm.slice/qemu-datapath@199.service\n"
)
PURE_V2 = "0::/user.slice/user-1000.slice/user@1000.service/user.slice/podman-6696.scope\n"  # containers/crun#376


def test_proc_cgroup_of_a_hybrid_a_v1_only_and_a_pure_v2_host():
    v2, v1 = units.parse_proc_cgroup(HYBRID)
    assert v2 == "/" and v1["memory"] == "/process_api/9cd4819018fdc327b77301b61b0cb46a" and v1["name=systemd"] == "/"
    assert units.cgroup_path(v2, v1) == "/"
    v2, v1 = units.parse_proc_cgroup(V1_ONLY)
    assert v2 is None and v1["cpu"] == v1["cpuacct"] == "/vm.slice"  # controllers mounted together
    assert units.cgroup_path(v2, v1) == "/vm.slice/qemu-datapath@199.service"  # systemd's hierarchy
    v2, v1 = units.parse_proc_cgroup(PURE_V2)
    assert v2 == "/user.slice/user-1000.slice/user@1000.service/user.slice/podman-6696.scope" and v1 == {}
    assert units.parse_proc_cgroup("") == (None, {})
    assert units.parse_proc_cgroup("garbage\n0::/a:b\n") == ("/a:b", {})  # a ':' in a path is the path's


# ------------------------------------------------------------------------- the path's names --

PATHS = {
    # google/cadvisor#822: docker's systemd driver
    f"/system.slice/docker-{DOCKER_ID}.scope":
        PathIdentity(unit=f"docker-{DOCKER_ID}.scope", slice="system.slice", container_id=DOCKER_ID, runtime="docker"),
    # moby/moby#4450: docker under system-docker.slice
    "/system.slice/system-docker.slice/docker-d6b15f04feb95083acea4b9caa6e59f8ebe67e3e3cf9cb8c59fad543490ee3ef.scope":
        PathIdentity(unit="docker-d6b15f04feb95083acea4b9caa6e59f8ebe67e3e3cf9cb8c59fad543490ee3ef.scope",
                     slice="system-docker.slice",
                     container_id="d6b15f04feb95083acea4b9caa6e59f8ebe67e3e3cf9cb8c59fad543490ee3ef", runtime="docker"),
    # docker's cgroupfs driver (yadutaf/ctop#18: .../docker/<id>)
    f"/docker/{DOCKER_ID}": PathIdentity(container_id=DOCKER_ID, runtime="docker"),
    # podman-container-tools/podman#20423: rootless podman, cgroup v2, the payload in .../container
    f"/user.slice/user-0.slice/user@0.service/machine.slice/libpod-{PODMAN_ID}.scope/container":
        PathIdentity(unit=f"libpod-{PODMAN_ID}.scope", slice="machine.slice", container_id=PODMAN_ID, runtime="podman"),
    # netdata/netdata#4868: Kubernetes, systemd driver, containerd
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod55c6c714_b240_4dec_9a45_57b61696ab6e.slice/"
    f"cri-containerd-{CONTAINERD_ID}.scope":
        PathIdentity(unit=f"cri-containerd-{CONTAINERD_ID}.scope",
                     slice="kubepods-burstable-pod55c6c714_b240_4dec_9a45_57b61696ab6e.slice",
                     container_id=CONTAINERD_ID, runtime="containerd", pod="55c6c714-b240-4dec-9a45-57b61696ab6e"),
    # netdata/netdata#4868: a static pod's UID is a hash, not a UUID
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8daa50c3a64c9ff60bb9eab7b44b56fd.slice/"
    "cri-containerd-2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5.scope":
        PathIdentity(unit="cri-containerd-2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5.scope",
                     slice="kubepods-burstable-pod8daa50c3a64c9ff60bb9eab7b44b56fd.slice",
                     container_id="2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5",
                     runtime="containerd", pod="8daa50c3a64c9ff60bb9eab7b44b56fd"),
    # kubernetes/minikube#11280: CRI-O in a minikube node that is itself a docker container: the inner one
    "/docker/d6701ec289c56e4391acb11d07474b3139466857a305490575508a8b7a9fcf22/kubepods.slice/kubepods-besteffort.slice/"
    f"kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/crio-{CRIO_ID}.scope":
        PathIdentity(unit=f"crio-{CRIO_ID}.scope",
                     slice="kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice",
                     container_id=CRIO_ID, runtime="cri-o", pod="2ca4a155-3599-498d-bb9d-4446693fa3ea"),
    # Qard/container-info test fixture: Kubernetes, cgroupfs driver: the runtime is not in the path
    f"/kubepods/besteffort/pod74c13223-5a00-11e9-b385-42010a80018d/{K8S_CGROUPFS_ID}":
        PathIdentity(container_id=K8S_CGROUPFS_ID, pod="74c13223-5a00-11e9-b385-42010a80018d"),
    # kubernetes/kubernetes#36807: an id-like name where no runtime puts one: not a container
    "/system.slice/docker.service/BestEffort.slice/BestEffort-pod0d33f94b_ab1a_11e6_9e1a_68f7281d8004.slice/"
    "0c34bcd7d02f321d0df7aa6ea703285b02abebc9096c5128c14091fc43ea1f3b":
        PathIdentity(unit="docker.service", slice="BestEffort-pod0d33f94b_ab1a_11e6_9e1a_68f7281d8004.slice"),
    # netdata/netdata#2161 and systemd/systemd#32259, #22089: libvirt guests through systemd-machined
    "/machine.slice/machine-qemu\\x2d1\\x2dwin10.scope/emulator":
        PathIdentity(unit="machine-qemu\\x2d1\\x2dwin10.scope", slice="machine.slice", vm="win10"),
    "/machine.slice/machine-qemu\\x2d1\\x2dWin11\\x2dWin11.scope":
        PathIdentity(unit="machine-qemu\\x2d1\\x2dWin11\\x2dWin11.scope", slice="machine.slice", vm="Win11-Win11"),
    "/machine.slice/machine-qemu\\x2d3\\x2drootdefault.scope/libvirt/emulator":
        PathIdentity(unit="machine-qemu\\x2d3\\x2drootdefault.scope", slice="machine.slice", vm="rootdefault"),
    # Proxmox VE (qemu-server PVE/QemuServer/CGroup.pm: "qemu.slice/$vmid.scope/")
    "/qemu.slice/100.scope": PathIdentity(unit="100.scope", slice="qemu.slice", vmid="100"),
    # LXC 4+ (waydroid: the payload and its monitor), Incus's user-owned containers
    "/lxc.payload.waydroid": PathIdentity(container_id="waydroid", runtime="lxc", container_name="waydroid"),
    "/lxc.monitor.waydroid": PathIdentity(),
    "/lxc.payload.user-1000_alpine-container/.lxc":
        PathIdentity(container_id="user-1000_alpine-container", runtime="lxc",
                     container_name="user-1000_alpine-container"),
    # a user's own service, under the user manager's unit
    "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus-broker.service":
        PathIdentity(unit="dbus-broker.service", slice="app.slice"),
    "/vm.slice/qemu-datapath@199.service": PathIdentity(unit="qemu-datapath@199.service", slice="vm.slice"),
    "/": PathIdentity(),
}


@pytest.mark.parametrize("path", PATHS)
def test_what_a_real_cgroup_path_says(path):
    assert parse_cgroup_path(path) == PATHS[path]


def test_libvirt_machine_names_of_the_system_the_session_and_the_embedded_driver():
    # src/hypervisor/domain_driver.c: virDomainDriverGenerateMachineName
    assert units.libvirt_domain("qemu-1-win10") == "win10"
    assert units.libvirt_domain("qemu-12-2-guest") == "2-guest"  # a name that starts with digits
    assert units.libvirt_domain("qemu-alice-3-win-10") == "win-10"
    assert units.libvirt_domain("qemu-embed-12345678-2-vm") == "vm"
    assert units.libvirt_domain("lxc-1268-sl") is None  # libvirt's LXC: a container, not a guest
    assert units.unescape_unit("machine-qemu\\x2d1\\x2dwin10.scope") == "machine-qemu-1-win10.scope"


# ------------------------------------------------------------------------ QEMU's command line --

QEMU_LINES = {
    # libvirt (a vsock howto; OpenStack's instance names)
    "/usr/bin/qemu-kvm -name guest=Fedora21,debug-threads=on -S -object secret,id=masterKey0,format=raw": "Fedora21",
    "/usr/libexec/qemu-kvm -name guest=instance-000007c3 -vnc 0.0.0.0:100 -k en-us": "instance-000007c3",
    # Proxmox VE
    "/usr/bin/kvm -id 100 -name win10,debug-threads=on -no-shutdown -chardev socket,id=qmp": "win10",
    "/usr/bin/kvm -id 109 -name yf01 -chardev socket,id=qmp,path=/var/run/qemu-server/109.qmp": "yf01",
    # process= renames the process (its comm): argv[0] still says QEMU
    "qemu-system-x86_64 -name guest=kemei-win11,process=kemei-win11 -enable-kvm": "kemei-win11",
    "qemu-system-x86_64 -name foo,,bar,debug-threads=on": "foo,bar",  # QEMU's ",," is a comma
    "qemu-system-aarch64 --name=guest=arm1": "arm1",
    "qemu-system-x86_64 -name a -name guest=b": "b",  # QEMU merges the options: the last one wins
    "qemu-system-x86_64 -name debug-threads=on": None,  # no guest name given
    "qemu-system-x86_64 -m 512": None,
    "find / -name guest=x": None,  # not QEMU
    "python3 -c pass -name guest=x": None,
}


@pytest.mark.parametrize("line", QEMU_LINES)
def test_the_guest_name_on_a_real_qemu_command_line(line):
    assert units.parse_qemu_name(line.split(" ")) == QEMU_LINES[line]


def test_cmdline_arguments():
    assert units.parse_cmdline(b"qemu-system-x86_64\0-name\0guest=a\0") == ["qemu-system-x86_64", "-name", "guest=a"]
    assert units.parse_cmdline(b"nginx: worker process") == ["nginx: worker process"]  # a rewritten title
    assert units.parse_cmdline(b"") == []


# ----------------------------------------------------------------------- the cgroup2 mount --

MOUNTINFO = (
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"  # this project's machines
    "52 28 0:40 /kubepods.slice /host\\040cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
)


def test_cgroup2_mounts_and_where_a_cgroup_is():
    mounts = units.parse_mountinfo(MOUNTINFO)
    assert mounts == [Mount("/", "/sys/fs/cgroup/unified"), Mount("/kubepods.slice", "/host cgroup")]
    assert units.cgroup_dir("/system.slice/foo.service", mounts) == "/sys/fs/cgroup/unified/system.slice/foo.service"
    assert units.cgroup_dir("/", mounts) == "/sys/fs/cgroup/unified"
    assert units.cgroup_dir("/kubepods.slice/x", mounts[1:]) == "/host cgroup/x"
    assert units.cgroup_dir("/kubepods.slicex", mounts[1:]) is None
    pure_v2 = "25 1 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    assert units.parse_mountinfo(pure_v2) == [Mount("/", "/sys/fs/cgroup")]


# ----------------------------------------------------------------- the runtimes' own files --

def runtime_files(tmp_path: Path) -> ContainerNames:
    docker = tmp_path / "docker" / "containers" / DOCKER_ID
    docker.mkdir(parents=True)
    # fluent/fluent-bit#5343: a service's "Name" comes before the container's: only the top level is it
    (docker / "config.v2.json").write_text(json.dumps({"NetworkSettings": {"Service": {"Name": "hoge"}},
                                                       "Name": "/web", "ID": DOCKER_ID}))
    storage = tmp_path / "storage" / "overlay-containers"
    storage.mkdir(parents=True)
    (storage / "containers.json").write_text(json.dumps([{  # a podman storage index, as a blog shows it
        "id": PODMAN_ID, "names": ["contenedor1"],
        "image": "d7af31210b288164c319bae740ca1281528390a3c5cee657e95f243670b49e6a",
        "layer": "67b0c66296f7957a0d82c8e48442ee0d7e3b3386dadde46cd8dadf3c90d40000"}]))
    (storage / "volatile-containers.json").write_text(json.dumps([{"id": CRIO_ID, "names": ["k8s_POD_web"]}]))
    rootless = tmp_path / "home" / "alice" / units.ROOTLESS_STORAGE / "vfs-containers"
    rootless.mkdir(parents=True)
    (rootless / "containers.json").write_text(json.dumps([{"id": K8S_CGROUPFS_ID, "names": ["alices"]}]))
    return ContainerNames(str(tmp_path / "docker"), str(tmp_path / "storage"),
                          home_of=lambda uid: str(tmp_path / "home" / "alice") if uid == 1000 else None)


def test_container_names_only_from_the_runtimes_files(tmp_path):
    names = runtime_files(tmp_path)
    assert names.lookup(DOCKER_ID, "docker", None) == ("web", "docker")
    assert names.lookup(DOCKER_ID, None, None) == ("web", "docker")  # its files say whose it is
    assert names.lookup(PODMAN_ID, "podman", None) == ("contenedor1", "podman")
    assert names.lookup(CRIO_ID, "cri-o", None) == ("k8s_POD_web", "cri-o")  # podman run --rm, CRI-O
    assert names.lookup(K8S_CGROUPFS_ID, "podman", "/user.slice/user-1000.slice/user@1000.service/x") \
        == ("alices", "podman")  # rootless: the user's own storage
    assert names.lookup(K8S_CGROUPFS_ID, "podman", "/system.slice") == (None, "podman")
    assert names.lookup(CONTAINERD_ID, "containerd", None) == (None, "containerd")  # a bolt db: not read
    assert names.lookup("0" * 64, "docker", None) == (None, "docker")
    assert units.parse_docker_config("{not json") is None
    assert units.parse_docker_config('{"Name": "/"}') is None
    assert units.parse_containers_json('[{"id": "a", "names": []}, {"id": 1}, "x"]') == {}


def test_a_renamed_container_is_read_again(tmp_path):
    names = runtime_files(tmp_path)
    assert names.lookup(DOCKER_ID, "docker", None)[0] == "web"
    config = tmp_path / "docker" / "containers" / DOCKER_ID / "config.v2.json"
    config.write_text(json.dumps({"Name": "/api"}))
    os.utime(config, (1, 1))  # a new mtime, as docker rename writes it
    assert names.lookup(DOCKER_ID, "docker", None)[0] == "api"


# ----------------------------------------------------------------------------- identify --

def fake_process(proc: Path, pid: int, cgroup: str, cmdline: bytes = b"sleep\0", comm: str = "sleep") -> None:
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(cgroup)
    (proc / str(pid) / "cmdline").write_bytes(cmdline)
    (proc / str(pid) / "comm").write_text(comm + "\n")


def test_identify_reads_the_cgroup_the_command_line_and_the_runtimes_files(tmp_path):
    proc = tmp_path / "proc"
    names = runtime_files(tmp_path)
    fake_process(proc, 10, f"0::/system.slice/docker-{DOCKER_ID}.scope\n")
    fake_process(proc, 11, "0::/machine.slice/machine-qemu\\x2d4\\x2dwin10.scope/libvirt/emulator\n",
                 b"/usr/bin/qemu-system-x86_64\0-name\0guest=win10.example,debug-threads=on\0", "qemu-system-x86")
    # systemd's hybrid layout, docker's cgroupfs driver in the v1 hierarchies only (as in moby/moby#34220)
    fake_process(proc, 12, f"4:memory:/docker/{DOCKER_ID}\n1:name=systemd:/user.slice/user-1.slice/session-1.scope\n"
                           "0::/user.slice/user-1.slice/session-1.scope\n")
    assert units.identify(10, str(proc), names) == Unit(
        10, "sleep", f"/system.slice/docker-{DOCKER_ID}.scope", f"docker-{DOCKER_ID}.scope", "system.slice",
        DOCKER_ID, "web", "docker")
    guest = units.identify("11", str(proc), names)
    assert guest is not None and guest.pid == 11
    assert guest.vm == "win10.example"  # QEMU's own -name; the scope's spelling drops the dot
    hybrid = units.identify(12, str(proc), names)
    assert hybrid is not None and hybrid.cgroup == "/user.slice/user-1.slice/session-1.scope"
    assert (hybrid.unit, hybrid.container_id, hybrid.container_name) == ("session-1.scope", DOCKER_ID, "web")
    assert units.identify(13, str(proc), names) is None  # gone
    long = b"qemu-system-x86_64\0" + b"-device\0virtio-blk,drive=d\0" * 3000 + b"-name\0guest=last\0"
    fake_process(proc, 14, "0::/\n", long)
    assert len(long) > 65536 and units.identify(14, str(proc), names).vm == "last"  # read to its end


def test_to_json_and_back_and_an_old_row_without_it():
    u = Unit(7, "qemu", "/qemu.slice/100.scope", "100.scope", "qemu.slice", vm="db", vmid="100")
    assert u.to_json() == {"cgroup": "/qemu.slice/100.scope", "unit": "100.scope", "slice": "qemu.slice",
                           "vm": "db", "vmid": "100"}
    assert Unit.from_json(7, "qemu", json.loads(json.dumps(u.to_json()))) == u
    assert Unit.from_json(7, "qemu", None) == Unit(7, "qemu")
    assert Unit.from_json(7, "qemu", {"vm": 3, "new_field": "x"}) == Unit(7, "qemu")


# ---------------------------------------------------------------------------- grouping --

def test_group_keys_and_what_a_process_without_that_identity_falls_in():
    web = Unit(5, "nginx", f"/system.slice/docker-{DOCKER_ID}.scope", f"docker-{DOCKER_ID}.scope", "system.slice",
               DOCKER_ID, "web", "docker")
    bare = Unit(6, "bash")
    pve = Unit(7, "kvm", "/qemu.slice/100.scope", "100.scope", "qemu.slice", vm="db", vmid="100")
    assert [group_key(web, by) for by in units.GROUPINGS] == [
        "(no vm)", "docker/web", f"docker-{DOCKER_ID}.scope", f"/system.slice/docker-{DOCKER_ID}.scope", "nginx", "5"]
    assert [group_key(bare, by) for by in units.GROUPINGS] == [
        "(no vm)", "(no container)", "(no unit)", "(no cgroup)", "bash", "6"]
    assert group_key(pve, "vm") == "db (vmid 100)"  # Proxmox names need not be unique
    assert group_key(Unit(8, vmid="101"), "vm") == "vmid 101"
    assert group_key(Unit(9, container_id=CONTAINERD_ID, runtime="containerd"),
                     "container") == "containerd/2032491dcae3"
    assert group_key(Unit(9, container_id=K8S_CGROUPFS_ID), "container") == "34dc0b5e626f"
    with pytest.raises(ValueError, match="expected one of vm, container, unit, cgroup, comm, pid, got 'user'"):
        group_key(bare, "user")


def test_names_from_processes_and_files_are_shown_escaped():
    evil = Unit(5, "x\x1b[2Jy", "/a\nb.service", "a\nb.service", container_id=DOCKER_ID,
                container_name="\x1b]0;pwn\x07",
                runtime="docker", vm="v\x9bm")
    shown = [group_key(evil, by) for by in units.GROUPINGS] + [evil.describe(), repr(evil)]
    assert not any(ch in s for s in shown for ch in "\x1b\n\x07\x9b")
    assert group_key(evil, "comm") == "x\\x1b[2Jy"
    assert evil.comm == "x\x1b[2Jy"  # stored as the process has it
    assert Unit(1).describe() == "no cgroup"


# -------------------------------------------------------------- real processes, real cgroups --

def child(argv0: str | None = None, *args: str) -> subprocess.Popen:
    """A python that waits on its stdin, its argv[0] and further arguments as given."""
    argv = [argv0 or sys.executable, "-c", "import sys; sys.stdin.read()", *args]
    return subprocess.Popen(argv, executable=sys.executable, stdin=subprocess.PIPE)


def end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_a_real_process_with_a_guest_name_on_its_command_line_is_that_vm():
    guest, other = child("qemu-system-x86_64", "-name", "guest=ksmtui-guest,debug-threads=on"), \
        child(None, "-name", "guest=nope")
    try:
        u = units.identify(guest.pid)
        assert u is not None and u.vm == "ksmtui-guest" and group_key(u, "vm") == "ksmtui-guest"
        o = units.identify(other.pid)
        assert o is not None and o.vm is None  # argv[0] is not QEMU's
    finally:
        end(guest)
        end(other)


class CgroupTree:
    """Cgroups made under the cgroup2 mount for one test, wherever that mount is; processes moved in
    are moved back out and every cgroup made is removed, in `close` (always called)."""

    def __init__(self) -> None:
        self.mounts = units.cgroup2_mounts()
        own = units.identify(os.getpid())
        self.home = own.cgroup if own is not None else None
        top = next((m for m in self.mounts if m.root == "/"), None)
        if top is None or self.home is None or units.cgroup_dir(self.home, self.mounts) is None:
            raise LookupError("no cgroup2 mount of the whole hierarchy in /proc/self/mountinfo")
        self.top = f"/ksmtui-test-{os.getpid()}"
        self.made: list[str] = []
        self.moved: list[int] = []

    def dir(self, path: str) -> str:
        d = units.cgroup_dir(path, self.mounts)
        assert d is not None
        return d

    def make(self, path: str) -> str:
        """The cgroup at self.top + path, its parents made as needed; its full cgroup path."""
        if not self.made:
            os.mkdir(self.dir(self.top))
            self.made.append(self.top)
        full = self.top
        for part in [p for p in path.split("/") if p]:
            full = f"{full}/{part}"
            if not os.path.isdir(self.dir(full)):
                os.mkdir(self.dir(full))
                self.made.append(full)
        return full

    def move(self, pid: int, path: str) -> None:
        with open(os.path.join(self.dir(path), "cgroup.procs"), "w") as f:
            f.write(str(pid))
        self.moved.append(pid)

    def close(self) -> None:
        for pid in self.moved:  # back where the test runs (it may have exited: nothing to move)
            try:
                self.move(pid, self.home or "/")
            except OSError:
                pass
        for path in reversed(self.made):
            deadline = time.monotonic() + 10  # an exiting process leaves its cgroup a moment after wait() returns
            while True:
                try:
                    os.rmdir(self.dir(path))
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)


@pytest.fixture
def cgroups():
    if os.geteuid() != 0:
        pytest.skip("making cgroups and moving processes needs root")
    try:
        tree = CgroupTree()
    except LookupError as err:
        pytest.skip(str(err))
    try:
        yield tree
    finally:
        tree.close()
    assert not os.path.exists(tree.dir(tree.top)), "a test cgroup was left behind"


def test_real_processes_in_cgroups_shaped_like_a_container_a_service_and_guests(cgroups, tmp_path):
    cid = os.urandom(32).hex()  # no real container has it
    config = tmp_path / "docker" / "containers" / cid / "config.v2.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"Name": "/ksmtui-web"}))
    names = ContainerNames(str(tmp_path / "docker"), str(tmp_path / "storage"))
    shapes = {
        f"system.slice/docker-{cid}.scope": dict(unit=f"docker-{cid}.scope", slice="system.slice",
                                                 container_id=cid, container_name="ksmtui-web", runtime="docker"),
        "ksmtui.slice/ksmtui-test.service": dict(unit="ksmtui-test.service", slice="ksmtui.slice"),
        "machine.slice/machine-qemu\\x2d7\\x2dguest1.scope/libvirt/emulator":
            dict(unit="machine-qemu\\x2d7\\x2dguest1.scope", slice="machine.slice", vm="guest1"),
        "qemu.slice/4242.scope": dict(unit="4242.scope", slice="qemu.slice", vmid="4242"),
    }
    procs = {shape: child() for shape in shapes}
    try:
        for shape, proc in procs.items():
            path = cgroups.make(shape)
            cgroups.move(proc.pid, path)
            u = units.identify(proc.pid, names=names)
            assert u is not None
            assert u.cgroup == path, "the cgroup2 path, as /proc/PID/cgroup's 0:: line has it"
            assert {k: v for k, v in u.to_json().items() if k != "cgroup"} == shapes[shape]
        cgroups.move(procs[f"system.slice/docker-{cid}.scope"].pid, cgroups.home)  # and out again
        out = units.identify(procs[f"system.slice/docker-{cid}.scope"].pid, names=names)
        assert out is not None and out.container_id is None and out.cgroup == cgroups.home
    finally:
        for proc in procs.values():
            end(proc)


MERGEABLE_CHILD = r"""
import mmap, os, sys
buf = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
buf[:] = os.urandom(mmap.PAGESIZE)  # a page that merges with nothing
buf.madvise(mmap.MADV_MERGEABLE)
print("ready", flush=True)
sys.stdin.read()
"""


def test_host_json_rows_carry_the_unit_of_a_real_process_in_a_container_like_cgroup(cgroups, capsys):
    from ksmtui.cli import main
    from ksmtui.host import sysfs

    if not sysfs.KSM_DIR.is_dir():
        pytest.skip(f"{sysfs.KSM_DIR} does not exist: no KSM")
    cid = os.urandom(32).hex()
    path = cgroups.make(f"system.slice/docker-{cid}.scope")
    with sysfs.machine_lock():  # madvise registers the child with ksmd: tests that count what ksmd has wait
        proc = subprocess.Popen([sys.executable, "-c", MERGEABLE_CHILD], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            cgroups.move(proc.pid, path)
            assert main(["host", "--json", "--count", "1", "--no-trace"]) == 0
        finally:
            end(proc)
    row = json.loads(capsys.readouterr().out)["processes"][str(proc.pid)]
    assert row["unit"] == {"cgroup": path, "unit": f"docker-{cid}.scope", "slice": "system.slice",
                           "container_id": cid, "runtime": "docker"}
