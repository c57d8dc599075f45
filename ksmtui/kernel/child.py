"""One scenario process on the real kernel: a forked child that owns its regions and obeys commands.

The controller (ksmtui.kernel.run) forks one child per scenario process. A child maps one private
anonymous area and carves its regions out of it in declaration order, so they lie at ascending
addresses as the scenario format promises. It takes commands over a multiprocessing Connection
(pickled messages over a Unix socket pair; a fork's new connection is passed as a file
descriptor with multiprocessing.reduction): write pages,
register with ksmd (prctl and madvise), madvise, fork, exit, check its data. It remembers an
xxh64 digest of what it last wrote to each page, so it can tell whether every page still reads
back that (KSM must never lose data).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
from array import array
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle

import xxhash

PR_SET_PDEATHSIG = 1
MADV_HUGEPAGE, MADV_NOHUGEPAGE = 14, 15
PR_SET_MEMORY_MERGE = 67
MPOL_MF_MOVE_ALL = 1 << 2  # KSM pages are mapped by several processes: MOVE alone skips them
SYS_MOVE_PAGES = {"x86_64": 279, "aarch64": 239}.get(os.uname().machine)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def digest(page: bytes) -> int:
    return xxhash.xxh64_intdigest(page)


class Child:
    """The state of one scenario process, living in its own forked process."""

    def __init__(self, name: str, regions: list[tuple[str, int, list[int]]], page_size: int):
        """regions: (name, pages, the extents of PMD size, counted from its start, to fault in
        as THPs). A region with THPs starts PMD-aligned, as in the model."""
        self.name = name
        self.page_size = page_size
        nr = page_size // 8  # the pages a PMD maps, the model's hpage_pmd_nr
        thp = any(huge for _, _, huge in regions)
        total = sum(pages for _, pages, _ in regions) + (nr * len(regions) if thp else 0)
        self.area = mmap.mmap(-1, total * page_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        # no THP but those the scenario asks for: others would make ksmd see (and split) huge
        # pages the model does not have
        self.area.madvise(mmap.MADV_NOHUGEPAGE)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.area))
        self.regions: dict[str, tuple[int, int]] = {}  # name -> (first page, pages)
        self.huge: list[tuple[int, int]] = []  # (first page, pages) of each extent faulted in huge
        first = 0
        for rname, pages, huge in regions:
            if huge:
                first += (-(self.base // page_size + first)) % nr  # up to the next PMD boundary
            self.regions[rname] = (first, pages)
            self.huge += [(first + k * nr, nr) for k in huge]
            first += pages
        for start, pages in self.huge:
            # the first write fault in the extent allocates the THP
            _check(_libc.madvise(self.base + start * page_size, pages * page_size, MADV_HUGEPAGE),
                   "madvise(MADV_HUGEPAGE)")
        total = first
        self.expected = array("Q", bytes(8 * total))  # digest of what was last written, per page
        self.written = bytearray(total)  # 1 once the page was written (mapped)
        self.merge_any = False

    # ------------------------------------------------------------------ commands --

    def write(self, region: str, indexes: list[int], pages: list[bytes] | bytes) -> None:
        first, _ = self.regions[region]
        ps = self.page_size
        same = isinstance(pages, bytes)  # one page standing for all of them (zero and byte fills)
        d = digest(pages) if isinstance(pages, bytes) else 0
        for k, i in enumerate(indexes):
            data = pages if isinstance(pages, bytes) else pages[k]
            p = first + i
            self.area[p * ps:(p + 1) * ps] = data
            self.expected[p] = d if same else digest(data)
            self.written[p] = 1

    def _madvise(self, region: str, advice: int) -> None:
        first, pages = self.regions[region]
        ps = self.page_size
        _check(_libc.madvise(self.base + first * ps, pages * ps, advice), f"madvise {region}")

    def register(self, merge_any: bool, mergeable: list[str]) -> None:
        """Become known to ksmd: prctl(PR_SET_MEMORY_MERGE) and/or madvise, in that order."""
        if merge_any:
            _check(_libc.prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0), "prctl(PR_SET_MEMORY_MERGE)")
            self.merge_any = True
        for region in mergeable:
            self._madvise(region, mmap.MADV_MERGEABLE)

    def madvise(self, region: str, mergeable: bool) -> None:
        self._madvise(region, mmap.MADV_MERGEABLE if mergeable else mmap.MADV_UNMERGEABLE)

    def migrate(self, region: str, indexes: list[int], node: int) -> None:
        """move_pages(2) of these pages to a NUMA node."""
        if SYS_MOVE_PAGES is None:
            raise OSError(f"move_pages: syscall number unknown on {os.uname().machine}")
        first, _ = self.regions[region]
        n = len(indexes)
        pages = (ctypes.c_void_p * n)(*[self.base + (first + i) * self.page_size for i in indexes])
        nodes = (ctypes.c_int * n)(*([node] * n))
        status = (ctypes.c_int * n)()
        rc = _libc.syscall(SYS_MOVE_PAGES, 0, ctypes.c_ulong(n), pages, nodes, status,
                           ctypes.c_int(MPOL_MF_MOVE_ALL))
        _check(0 if rc >= 0 else -1, f"move_pages {region}")

    def keep_interpreter_unmergeable(self) -> None:
        """Under prctl merge-any every VMA becomes mergeable, the interpreter's own heap, stacks and
        libraries included, and so does every VMA mapped later. The scenario's process owns only
        its regions, so take VM_MERGEABLE off everything else before ksmd can scan it (a no-op
        for VMAs that are not mergeable)."""
        lo, hi = self.base, self.base + len(self.area)
        with open("/proc/self/maps") as f:
            for line in f:
                a, b = line.split(" ", 1)[0].split("-")
                start, end = int(a, 16), int(b, 16)
                if end <= lo or start >= hi:
                    # failures (e.g. [vsyscall]) leave a VMA ksmd cannot use anyway
                    _libc.madvise(start, end - start, mmap.MADV_UNMERGEABLE)

    def thp_settle(self) -> int:
        """Once the THPs are faulted in: MADV_NOHUGEPAGE keeps khugepaged from collapsing back what
        ksmd splits (the THPs stay; the model has no khugepaged, docs/thp.md finding 12).
        Returns how many THPs the area has."""
        ps = self.page_size
        for start, pages in self.huge:
            _check(_libc.madvise(self.base + start * ps, pages * ps, MADV_NOHUGEPAGE), "madvise(MADV_NOHUGEPAGE)")
        return self.thp_count()

    def thp_count(self) -> int:
        """The THPs mapped whole (by a PMD) in the area: its VMAs' AnonHugePages in smaps."""
        lo, hi = self.base, self.base + len(self.area)
        kb = 0
        inside = False
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split(None, 1)[0]
                if not head.endswith(":"):
                    start, end = (int(x, 16) for x in head.split("-"))
                    inside = start < hi and end > lo
                elif inside and head == "AnonHugePages:":
                    kb += int(line.split()[1])
        return kb * 1024 // (self.page_size * (self.page_size // 8))

    def data_check(self) -> tuple[int, int]:
        ps = self.page_size
        checked = mismatches = 0
        for p, was_written in enumerate(self.written):
            if was_written:
                checked += 1
                if digest(self.area[p * ps:(p + 1) * ps]) != self.expected[p]:
                    mismatches += 1
        return checked, mismatches


def serve(child: Child, conn: Connection) -> None:
    """The command loop: one reply per command; never returns."""
    while True:
        try:
            cmd, *args = conn.recv()
        except EOFError:
            os._exit(0)
        reply: object = None
        try:
            if cmd == "write":
                child.write(*args)
            elif cmd == "register":
                child.register(*args)
            elif cmd == "madvise":
                child.madvise(*args)
            elif cmd == "migrate":
                child.migrate(*args)
            elif cmd == "fork":
                reply = _fork(child, conn, *args)
            elif cmd == "exit":
                conn.send(("ok", None))
                os._exit(0)
            elif cmd == "check":
                reply = child.data_check()
            elif cmd == "thp_settle":
                reply = child.thp_settle()
            elif cmd == "thp_count":
                reply = child.thp_count()
            else:
                raise ValueError(f"unknown command {cmd!r}")
            if child.merge_any:
                child.keep_interpreter_unmergeable()
            conn.send(("ok", reply))
        except Exception as err:  # reported to the controller, which stops the run
            conn.send(("error", f"{child.name}: {cmd}: {err}"))


def _fork(child: Child, conn: Connection, name: str) -> int:
    """fork(2) of this process; the child serves the connection whose end came with the command."""
    new = Connection(recv_handle(conn))
    pid = os.fork()
    if pid == 0:
        conn.close()
        child.name = name
        _child_setup()
        # a scenario's parent may exit before its forked child: die with the controller (EOF on
        # the connection), not with the parent
        _libc.prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)
        new.send(("ok", os.getpid()))
        serve(child, new)
    new.close()
    return pid


def _child_setup() -> None:
    # Ctrl-C is the controller's to handle (it tears everything down); die with the parent
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked children are reaped automatically
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(name: str, regions: list[tuple[str, int, list[int]]], page_size: int) -> tuple[int, Connection]:
    """Fork a child for one scenario process; returns its pid and the controller's connection."""
    ours, theirs = Pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            _child_setup()
            child = Child(name, regions, page_size)
            theirs.send(("ok", os.getpid()))
            serve(child, theirs)
        finally:
            os._exit(1)
    theirs.close()
    status, reply = ours.recv()
    if status != "ok":
        raise RuntimeError(reply)
    return pid, ours


def fork(parent: Connection, parent_pid: int, name: str) -> tuple[int, Connection]:
    """Have the child behind `parent` fork one named `name`; returns the new pid and connection."""
    ours, theirs = Pipe()
    try:
        parent.send(("fork", name))
        send_handle(parent, theirs.fileno(), parent_pid)
    finally:
        theirs.close()
    status, pid = ours.recv()  # the new child's hello
    if status != "ok":
        raise RuntimeError(pid)
    status, reply = parent.recv()
    if status != "ok":
        raise RuntimeError(reply)
    return pid, ours
