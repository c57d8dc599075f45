"""Which operator's unit a process belongs to: its cgroup, the systemd unit and slice in that path,
the container (docker, podman, containerd, CRI-O, LXC; Kubernetes' pod) and the virtual machine
(QEMU's -name, libvirt's domain, Proxmox's VMID).

Read from /proc/PID/cgroup, /proc/PID/cmdline and, for a container's name, the runtime's own files;
nothing is asked of a daemon. What none of them says stays None: a name is never made up from an id
or a path that merely looks like one.

Names come from processes and files other users control: they are kept as they are, and all this
module gives for display (`group_key`, `Unit.describe`) has its control characters escaped.

The parse_* functions are pure (text in, fields out); `identify` does the reading.
"""

from __future__ import annotations

import json
import os
import pwd
import re
from dataclasses import dataclass, fields
from typing import Callable, Iterable, NamedTuple

from engine.scenario import printable

PROC = "/proc"
DOCKER_ROOT = "/var/lib/docker"  # dockerd's default --data-root
STORAGE_ROOT = "/var/lib/containers/storage"  # containers/storage (podman, CRI-O) as root
ROOTLESS_STORAGE = ".local/share/containers/storage"  # ... and rootless, under the user's home
MAX_CACHED = 4096  # runtime files whose parse is kept
GROUPINGS = ("vm", "container", "unit", "cgroup", "comm", "pid")


@dataclass(frozen=True)
class Unit:
    """What is known of one process's operator unit; None where nothing says it."""

    pid: int
    comm: str | None = None
    cgroup: str | None = None  # cgroup v2 path (systemd's v1 hierarchy on a host without cgroup2)
    unit: str | None = None  # the innermost systemd unit of the path, as systemd spells it
    slice: str | None = None  # the innermost slice of the path
    container_id: str | None = None
    container_name: str | None = None  # only as the runtime's own files (or cgroup naming) say it
    runtime: str | None = None  # docker, podman, containerd, cri-o, lxc
    pod: str | None = None  # Kubernetes pod UID
    vm: str | None = None  # the guest's name
    vmid: str | None = None  # Proxmox VE's VMID

    def to_json(self) -> dict[str, str]:
        """The identity fields that are known (pid and comm are the row's own), for a process row."""
        return {k: v for k in JSON_FIELDS if (v := getattr(self, k)) is not None}

    @classmethod
    def from_json(cls, pid: int, comm: str | None, obj: object) -> "Unit":
        """A process row's unit back (a missing or foreign one is all unknown: old recordings)."""
        known = {k: v for k, v in obj.items() if k in JSON_FIELDS and isinstance(v, str)} \
            if isinstance(obj, dict) else {}
        return cls(pid=pid, comm=comm, **known)

    def describe(self) -> str:
        """One line for people, escaped: "vm win10 · container docker/web · unit foo.service · ..."."""
        parts = []
        if self.vm is not None or self.vmid is not None:
            parts.append(f"vm {group_key(self, 'vm')}")
        if self.container_id is not None:
            parts.append(f"container {group_key(self, 'container')}")
        if self.pod is not None:
            parts.append(f"pod {printable(self.pod)}")
        if self.unit is not None:
            parts.append(f"unit {printable(self.unit)}")
        if self.slice is not None:
            parts.append(f"slice {printable(self.slice)}")
        if self.cgroup is not None:
            parts.append(f"cgroup {printable(self.cgroup)}")
        return " · ".join(parts) or "no cgroup"


JSON_FIELDS = tuple(f.name for f in fields(Unit) if f.name not in ("pid", "comm"))
_NONE = {"vm": "(no vm)", "container": "(no container)", "unit": "(no unit)", "cgroup": "(no cgroup)",
         "comm": "(no comm)"}


def group_key(unit: Unit, by: str) -> str:
    """The group a process falls in when grouping `by` one of GROUPINGS, as shown (escaped).
    A process without that identity falls in "(no vm)", "(no container)", ... ."""
    key: str | None = None
    if by == "pid":
        return str(unit.pid)
    if by == "vm":
        key = unit.vm
        if unit.vmid is not None:  # Proxmox does not make names unique: its VMID does
            key = f"{unit.vm} (vmid {unit.vmid})" if unit.vm is not None else f"vmid {unit.vmid}"
    elif by == "container":
        if unit.container_id is not None:
            label = unit.container_name if unit.container_name is not None else unit.container_id[:12]
            key = f"{unit.runtime}/{label}" if unit.runtime is not None else label
    elif by in ("unit", "cgroup", "comm"):
        key = getattr(unit, by)
    else:
        raise ValueError(f"expected one of {', '.join(GROUPINGS)}, got {by!r}")
    return _NONE[by] if key is None else printable(key)


# ------------------------------------------------------------------------ /proc/PID/cgroup --

def parse_proc_cgroup(text: str) -> tuple[str | None, dict[str, str]]:
    """/proc/PID/cgroup as (the cgroup v2 path or None, {v1 controller: path}).

    "0::/path" is cgroup v2 (a pure v2 host has only that line; systemd's hybrid layout adds one
    line per v1 hierarchy, "4:memory:/path", "1:name=systemd:/path"). Controllers mounted together
    ("3:cpu,cpuacct:/path") each get the path."""
    v2 = None
    v1: dict[str, str] = {}
    for line in text.splitlines():
        hid, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not (sep and sep2):
            continue
        if hid == "0" and controllers == "":
            v2 = path
        else:
            for c in controllers.split(","):
                v1[c] = path
    return v2, v1


def cgroup_path(v2: str | None, v1: dict[str, str]) -> str | None:
    """The process's cgroup: the v2 path, else (a v1-only host) systemd's own hierarchy."""
    return v2 if v2 is not None else v1.get("name=systemd")


# ------------------------------------------------------------------------- the path's names --

_UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap")  # units that hold processes
_HEX64 = r"([0-9a-f]{64})"
# systemd-driver container scopes: the runtime names the scope after the container's full id
_SCOPES = (
    (re.compile(rf"docker-{_HEX64}\.scope"), "docker"),
    (re.compile(rf"libpod-{_HEX64}\.scope"), "podman"),
    (re.compile(rf"cri-containerd-{_HEX64}\.scope"), "containerd"),
    (re.compile(rf"crio-{_HEX64}\.scope"), "cri-o"),
    (re.compile(rf"nerdctl-{_HEX64}\.scope"), "containerd"),
)
# cgroupfs-driver containers: the id alone (or with the runtime's prefix) under a known parent
_CGROUPFS_PREFIXED = re.compile(rf"(libpod|crio|cri-containerd)-{_HEX64}")
_CGROUPFS_RUNTIME = {"libpod": "podman", "crio": "cri-o", "cri-containerd": "containerd"}
_BARE_ID = re.compile(_HEX64)
_POD_SLICE = re.compile(r"kubepods(?:-(?:besteffort|burstable|guaranteed))?-pod([0-9a-f_]+)\.slice")
_POD_DIR = re.compile(r"pod([0-9a-f-]{32,36})")  # a UUID, or a static pod's 32-digit hash
_UNIT_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
# libvirt's machine names (src/hypervisor/domain_driver.c): "qemu-ID-NAME" (system), "qemu-USER-ID-NAME"
# (session), "qemu-embed-HASH-ID-NAME" (embedded driver)
_LIBVIRT_MACHINE = re.compile(r"qemu-(?:embed-[0-9a-f]{8}-|.*?-)??(\d+)-(.+)")
_PROXMOX_SCOPE = re.compile(r"(\d+)\.scope")


def unescape_unit(name: str) -> str:
    """A systemd unit name's escapes undone ("machine-qemu\\x2d1\\x2dwin10.scope" has "-" as \\x2d)."""
    return _UNIT_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def libvirt_domain(machine: str) -> str | None:
    """The domain name in libvirt's name of a QEMU machine ("qemu-1-win10" -> "win10"). libvirt keeps
    only a hostname's characters of the domain name and at most 64 characters in all: the name is
    the domain's as libvirt's cgroup spells it."""
    m = _LIBVIRT_MACHINE.fullmatch(machine)
    return m.group(2) if m else None


class PathIdentity(NamedTuple):
    unit: str | None = None
    slice: str | None = None
    container_id: str | None = None
    runtime: str | None = None
    container_name: str | None = None
    pod: str | None = None
    vm: str | None = None
    vmid: str | None = None


def parse_cgroup_path(path: str) -> PathIdentity:
    """What a cgroup path's components say. The innermost of each kind wins: a unit under
    user@1000.service is the user's own service, a container in a container (kind, minikube) is the
    inner one."""
    unit = slice_ = cid = runtime = name = pod = vm = vmid = None
    parts = [p for p in path.split("/") if p]
    under_kubepods = False
    for i, part in enumerate(parts):
        parent = parts[i - 1] if i else ""
        under_kubepods = under_kubepods or parent in ("kubepods", "kubepods.slice")
        if part.endswith(".slice"):
            slice_ = part
            m = _POD_SLICE.fullmatch(part)
            if m:
                pod = m.group(1).replace("_", "-")  # the kubelet's systemd driver writes the UID's "-" as "_"
        elif part.endswith(_UNIT_SUFFIXES):
            unit = part
        for pattern, rt in _SCOPES:
            m = pattern.fullmatch(part)
            if m:
                cid, runtime, name = m.group(1), rt, None
        m = _CGROUPFS_PREFIXED.fullmatch(part)
        if m and (parent == "libpod_parent" or under_kubepods):
            cid, runtime, name = m.group(2), _CGROUPFS_RUNTIME[m.group(1)], None
        if _BARE_ID.fullmatch(part):
            if parent == "docker":
                cid, runtime, name = part, "docker", None
            elif under_kubepods and _POD_DIR.fullmatch(parent):
                cid, runtime, name = part, None, None  # which runtime: its own files may say
        if under_kubepods and _POD_DIR.fullmatch(part):
            pod = part[3:]
        if part.startswith("lxc.payload."):  # LXC 4+ names the container's cgroup after it
            cid = name = part.removeprefix("lxc.payload.")
            runtime = "lxc"
        elif parent == "lxc" and i == 1:  # older LXC, and Proxmox VE's containers (/lxc/CTID)
            cid = name = part
            runtime = "lxc"
        if part.startswith("machine-qemu") and part.endswith(".scope"):  # libvirt through machined
            vm = libvirt_domain(unescape_unit(part).removeprefix("machine-").removesuffix(".scope"))
        elif part.endswith(".libvirt-qemu"):  # libvirt without systemd
            machine = part.removesuffix(".libvirt-qemu")
            vm = libvirt_domain(machine) or machine
        if parent == "qemu.slice":  # Proxmox VE: qemu.slice/VMID.scope
            m = _PROXMOX_SCOPE.fullmatch(part)
            if m:
                vmid = m.group(1)
    return PathIdentity(unit, slice_, cid, runtime, name, pod, vm, vmid)


# ------------------------------------------------------------------------ QEMU's command line --

_QEMU = re.compile(r"qemu-system-.+|qemu-kvm|kvm")


def parse_qemu_opts(value: str, implied: str) -> dict[str, str]:
    """A QEMU option's value ("guest=win10,debug-threads=on", "win10") as its keys: "," separates,
    ",," is a comma, a first part without "=" is the implied key's."""
    parts, cur, i = [], [], 0
    while i < len(value):
        if value[i] == ",":
            if value[i + 1:i + 2] == ",":
                cur.append(",")
                i += 2
                continue
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(value[i])
        i += 1
    parts.append("".join(cur))
    out = {}
    for n, part in enumerate(parts):
        key, sep, val = part.partition("=")
        if not sep and n == 0:
            key, val = implied, part
        if key:
            out[key] = val
    return out


def parse_qemu_name(argv: list[str]) -> str | None:
    """The guest's name from a QEMU command line (`-name guest=NAME,...`, `-name NAME`; the last
    one QEMU would merge in wins). Only QEMU's: a program whose argv[0] is not a QEMU system
    emulator (qemu-system-*, qemu-kvm, Proxmox's kvm) may use -name for anything (find -name)."""
    if not argv or not _QEMU.fullmatch(os.path.basename(argv[0])):
        return None
    name = None
    for i, arg in enumerate(argv[1:], 1):
        if arg in ("-name", "--name") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(("-name=", "--name=")):
            value = arg.partition("=")[2]
        else:
            continue
        name = parse_qemu_opts(value, "guest").get("guest") or name
    return name


def parse_cmdline(raw: bytes) -> list[str]:
    """/proc/PID/cmdline's arguments (each ends in a NUL; a process that rewrote its title may not)."""
    args = raw.split(b"\0")
    if args[-1] == b"":
        args.pop()
    return [a.decode(errors="replace") for a in args]


# ----------------------------------------------------------------- the runtimes' own files --

def parse_docker_config(text: str) -> str | None:
    """A container's name from dockerd's containers/ID/config.v2.json ("Name": "/web")."""
    try:
        name = json.loads(text).get("Name")
    except (ValueError, AttributeError):
        return None
    return (name.removeprefix("/") or None) if isinstance(name, str) else None


def parse_containers_json(text: str) -> dict[str, str]:
    """containers/storage's list of containers (podman's and CRI-O's): id -> its first name."""
    try:
        items = json.loads(text)
    except ValueError:
        return {}
    out = {}
    for c in items if isinstance(items, list) else []:
        if isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("names"), list) \
                and c["names"] and isinstance(c["names"][0], str):
            out[c["id"]] = c["names"][0]
    return out


_USER_SERVICE = re.compile(r"user@(\d+)\.service")


class ContainerNames:
    """Container names from the runtimes' files, cached while a file keeps its mtime."""

    def __init__(self, docker_root: str = DOCKER_ROOT, storage_root: str = STORAGE_ROOT,
                 home_of: Callable[[int], str | None] | None = None) -> None:
        self.docker_root = docker_root
        self.storage_root = storage_root
        self.home_of = home_of or _home_of
        self._files: dict[str, tuple[float, object]] = {}

    def _cached(self, path: str, parse: Callable[[str], object]) -> object:
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            self._files.pop(path, None)
            return None
        hit = self._files.get(path)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                value = parse(f.read())
        except OSError:
            return None
        if len(self._files) >= MAX_CACHED:  # containers come and go: forget the gone ones at times
            self._files.clear()
        self._files[path] = (mtime, value)
        return value

    def _storage_roots(self, cgroup: str | None) -> list[str]:
        roots = [self.storage_root]
        m = _USER_SERVICE.search(cgroup or "")
        if m:  # rootless: the user's own storage
            home = self.home_of(int(m.group(1)))
            if home:
                roots.append(os.path.join(home, ROOTLESS_STORAGE))
        return roots

    def _storage(self, cid: str, cgroup: str | None) -> str | None:
        for root in self._storage_roots(cgroup):
            try:
                dirs = sorted(d for d in os.listdir(root) if d.endswith("-containers"))  # overlay-, vfs-, ...
            except OSError:
                continue
            for d in dirs:
                for f in ("containers.json", "volatile-containers.json"):  # volatile: podman run --rm
                    names = self._cached(os.path.join(root, d, f), parse_containers_json)
                    if isinstance(names, dict) and cid in names:
                        return names[cid]
        return None

    def _docker(self, cid: str) -> str | None:
        name = self._cached(os.path.join(self.docker_root, "containers", cid, "config.v2.json"), parse_docker_config)
        return name if isinstance(name, str) else None

    def lookup(self, cid: str, runtime: str | None, cgroup: str | None) -> tuple[str | None, str | None]:
        """(name, runtime) of a container id: a runtime the path did not say is the one whose
        files hold that id."""
        if runtime in ("docker", None):
            name = self._docker(cid)
            if name is not None:
                return name, "docker"
        if runtime in ("podman", "cri-o", None):
            name = self._storage(cid, cgroup)
            if name is not None:
                return name, runtime
        return None, runtime


def _home_of(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return None


_NAMES = ContainerNames()


# ----------------------------------------------------------------------- the cgroup2 mount --

class Mount(NamedTuple):
    root: str  # the cgroup the mount shows at its mount point ("/" unless a namespace or a bind)
    point: str


def _unoctal(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup2 mounts of a /proc/PID/mountinfo, in its order: where the unified hierarchy is
    (/sys/fs/cgroup on a pure v2 host, /sys/fs/cgroup/unified in systemd's hybrid layout)."""
    out = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        f = head.split()
        if sep and len(f) >= 5 and tail.split()[:1] == ["cgroup2"]:
            out.append(Mount(_unoctal(f[3]), _unoctal(f[4])))
    return out


def cgroup2_mounts(proc_root: str = PROC) -> list[Mount]:
    try:
        with open(f"{proc_root}/self/mountinfo") as f:
            return parse_mountinfo(f.read())
    except OSError:
        return []


def cgroup_dir(path: str, mounts: Iterable[Mount]) -> str | None:
    """Where a cgroup v2 path is in the file system: under the first mount that shows it."""
    for m in mounts:
        root = m.root.rstrip("/")  # "" for the whole hierarchy
        if path == root or path.startswith(root + "/"):
            return m.point.rstrip("/") + path[len(root):].rstrip("/") or "/"
    return None


# ----------------------------------------------------------------------------- reading --

_CHUNK = 65536


def _read(path: str) -> bytes | None:
    # os.read, not open(): a sample reads three files of every process and the buffered file
    # object costs four times the read
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = [os.read(fd, _CHUNK)]
        while len(chunks[-1]) == _CHUNK:  # /proc gives all it has at once: a short read is the end
            chunks.append(os.read(fd, _CHUNK))
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def identify(pid: int | str, proc_root: str = PROC, names: ContainerNames | None = None) -> Unit | None:
    """Everything /proc and the runtimes' files say of a process's unit; None if it is gone."""
    base = f"{proc_root}/{pid}"
    raw_cgroup = _read(f"{base}/cgroup")
    if raw_cgroup is None:
        return None
    raw_comm = _read(f"{base}/comm")
    comm = raw_comm.decode(errors="replace").rstrip("\n") if raw_comm is not None else None
    v2, v1 = parse_proc_cgroup(raw_cgroup.decode(errors="replace"))
    cgroup = cgroup_path(v2, v1)
    ident = parse_cgroup_path(cgroup) if cgroup is not None else PathIdentity()
    if ident.container_id is None:
        # systemd's hybrid layout: a runtime on the cgroupfs driver may have put the container in
        # the v1 hierarchies only ("4:memory:/docker/ID" next to "0::/user.slice/...")
        for path in sorted(set(v1.values())):
            found = parse_cgroup_path(path)
            if found.container_id is not None:
                ident = ident._replace(container_id=found.container_id, runtime=found.runtime,
                                       container_name=found.container_name, pod=found.pod)
                break
    name, runtime = ident.container_name, ident.runtime
    if ident.container_id is not None and name is None:
        name, runtime = (names or _NAMES).lookup(ident.container_id, runtime, cgroup)
    raw_cmdline = _read(f"{base}/cmdline")
    vm = parse_qemu_name(parse_cmdline(raw_cmdline)) if raw_cmdline else None
    return Unit(pid=int(pid), comm=comm, cgroup=cgroup, unit=ident.unit, slice=ident.slice,
                container_id=ident.container_id, container_name=name, runtime=runtime, pod=ident.pod,
                vm=vm if vm is not None else ident.vm, vmid=ident.vmid)


# ------------------------------------------------------------------------- grouping rows --

GROUP_FIELDS = ("ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit")


def group_index(keys: Iterable[str]) -> tuple[list[str], list[int]]:
    """(the distinct keys in order of first appearance, each key's index among them)."""
    names: dict[str, int] = {}
    of = [names.setdefault(k, len(names)) for k in keys]
    return list(names), of


def group_totals(processes: dict[str, dict], by: str) -> dict[str, dict]:
    """A host sample's rows (pid -> comm, ksm_stat fields or "error", "unit") summed per group:
    "processes" (pids), the GROUP_FIELDS, and "unreadable" (rows whose ksm_stat could not be read,
    in no sum). Groups in the order of their first row."""
    out: dict[str, dict] = {}
    for pid, row in processes.items():
        unit = Unit.from_json(int(pid), row.get("comm"), row.get("unit"))
        g = out.setdefault(group_key(unit, by), {"processes": [], **dict.fromkeys(GROUP_FIELDS, 0), "unreadable": 0})
        g["processes"].append(int(pid))
        if "error" in row:
            g["unreadable"] += 1
        for k in GROUP_FIELDS:
            if isinstance(row.get(k), int):
                g[k] += row[k]
    return out
