"""What ksmd does to PMD-mapped transparent huge pages: the experiments behind docs/thp.md.

Each case runs processes that map THPs (2 MiB-aligned, MADV_HUGEPAGE, each faulted in as one huge
page before its subpages are written) with known subpage contents, madvise them MERGEABLE, and
lets ksmd run one full scan per batch (pages_to_scan larger than everything mergeable, so a batch
ends where a scan ends) with time between batches to look: after each full scan, the global
counters, every process's ksm_stat, its region's AnonHugePages, the /proc/vmstat THP counters,
and what each subpage has become (pagemap PFN + /proc/kpageflags: THP, KSM, zero page, small).

    python tests/thp_lab.py [--uzp=0|1] [--linger=S] [--no-khugepaged] [--json=PATH] [CASE ...]
        # as Markdown; every case, use_zero_pages 0 and 1 by default

Needs root and the machine lock (held while ksmd runs; the knobs are restored after).
"""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ksmtui.host import sysfs

PAGE = 4096
HPAGE = 2 << 20
SUBPAGES = HPAGE // PAGE
# /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h)
KPF_ANON, KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, KPF_KSM, KPF_THP, KPF_ZERO_PAGE = 12, 15, 16, 21, 22, 24
VMSTAT = ("thp_fault_alloc", "thp_split_page", "thp_split_page_failed", "thp_split_pmd", "thp_deferred_split_page",
          "thp_collapse_alloc")
STAT = ("ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit")

# A child maps its THPs (or, told "small", the same 2 MiB ranges with MADV_NOHUGEPAGE), writes
# them as told (a page is None: left zero-filled, or a string: that string repeated over the
# page; "" leaves a small page absent), madvises MERGEABLE and says where they are.
CHILD = r"""
import ctypes, json, sys
PAGE, HPAGE = 4096, 2 << 20
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
libc.munmap.argtypes = libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
thps, huge, keep_away = json.loads(sys.argv[1]), sys.argv[2] == "huge", sys.argv[3] == "1"
size = len(thps) * HPAGE
raw = libc.mmap(None, size + HPAGE, 3, 0x22, -1, 0)  # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
addr = (raw + HPAGE - 1) & ~(HPAGE - 1)
if addr > raw:
    libc.munmap(raw, addr - raw, 0)
if raw + size + HPAGE > addr + size:
    libc.munmap(addr + size, raw + size + HPAGE - addr - size, 0)
assert libc.madvise(addr, size, 14 if huge else 15) == 0, ctypes.get_errno()  # MADV_(NO)HUGEPAGE
for t, pages in enumerate(thps):
    base = addr + t * HPAGE
    ctypes.memset(base, 0, 1)  # the write fault that allocates the whole huge page, zero-filled
    for i, text in enumerate(pages):
        if text is None and not huge:
            ctypes.memset(base + i * PAGE, 0, 1)  # each small page is its own write fault
        elif text:
            data = (text.encode() * (PAGE // len(text) + 1))[:PAGE]
            ctypes.memmove(base + i * PAGE, data, PAGE)
if keep_away:  # the THPs stay, but khugepaged no longer looks at the range (THPeligible 0)
    assert libc.madvise(addr, size, 15) == 0, ctypes.get_errno()  # MADV_NOHUGEPAGE
assert libc.madvise(addr, size, 12) == 0, ctypes.get_errno()  # MADV_MERGEABLE
print(addr, flush=True)
sys.stdin.read()
"""


def fill(text: str | None) -> list[str | None]:
    return [text] * SUBPAGES


def distinct(prefix: str) -> list[str | None]:
    return [f"{prefix} page {i} " for i in range(SUBPAGES)]


# case -> process -> its THPs, each a list of SUBPAGES page contents. Content strings with the
# process name in them are unique to it; strings without are shared.
CASES: dict[str, dict[str, list[list[str | None]]]] = {
    # (a) every subpage has its twin in the other process, none within the THP
    "all-match": {"A": [distinct("shared")], "B": [distinct("shared")]},
    # a third process meets the KSM pages the first two made: its THP subpages merge from the stable tree
    "stable-match": {p: [distinct("shared")] for p in "ABC"},
    # (b) subpage 0 is in both processes, the other 511 are zero-filled
    "one-match-zero-rest": {p: [["shared page 0 "] + fill(None)[1:]] for p in "AB"},
    # (c) nothing matches anything: the THP should stay huge
    "no-match": {p: [distinct(f"{p} only")] for p in "AB"},
    # zero-filled THPs in both processes (written, so not the huge zero page)
    "all-zero": {p: [fill(None)] for p in "AB"},
    # one THP alone, unique data in subpage 0, zero-filled rest: nothing to merge with in B
    "unique-zero-rest": {"A": [["A only page 0 "] + fill(None)[1:]], "B": [distinct("B only")]},
    # one THP alone with two equal subpages (not zero) and unique rest: the same-compound path
    "twins-inside": {"A": [["twin "] * 2 + distinct("A only")[2:]], "B": [distinct("B only")]},
    # a zero subpage in each THP, unique rest: the zero subpages meet in the unstable tree, in two folios
    "one-zero-each": {p: [[None] + distinct(f"{p} only")[1:]] for p in "AB"},
    # zero-filled small pages in A and B (no THP), then a zero-filled THP in C
    "zero-small-then-thp": {p: [fill(None)] for p in "ABC"},
    # as above with 64 small pages each, so that their KSM page can take C's (max_page_sharing)
    "zero-ksm-then-thp": {"A": [[None] * 64 + [""] * 448], "B": [[None] * 64 + [""] * 448], "C": [fill(None)]},
    # one matching subpage, unique rest: what one shared page costs the guests in huge pages
    "one-match-unique-rest": {p: [["shared page 0 "] + distinct(f"{p} only")[1:]] for p in "AB"},
}


# processes whose 2 MiB ranges are small pages (MADV_NOHUGEPAGE), by case
SMALL = {"zero-small-then-thp": {"A", "B"}, "zero-ksm-then-thp": {"A", "B"}}


KHUGEPAGED = Path("/sys/kernel/mm/transparent_hugepage/khugepaged")


@contextlib.contextmanager
def khugepaged_kept_away():
    """khugepaged collapses back the ranges ksmd splits (docs/thp.md, finding 12), where a process
    cannot be made to madvise NOHUGEPAGE (a QEMU guest): with max_ptes_none and max_ptes_shared
    0, a range that maps the zero page or a KSM page is not collapsed. Restored after."""
    saved = {name: (KHUGEPAGED / name).read_text().strip() for name in ("max_ptes_none", "max_ptes_shared")}
    try:
        for name in saved:
            (KHUGEPAGED / name).write_text("0")
        yield
    finally:
        for name, value in saved.items():
            (KHUGEPAGED / name).write_text(value)


def settle(timeout: float = 300) -> int:
    """Run ksmd until it has settled on live guests, and stop it; the full scans it took. Settled:
    over the last three full scans, pages_sharing stood still (within 0.01%: a live guest's kernel
    writes a page or two) and no huge page was split (ksmd splits some only scans later: after a
    stale node, or a split that failed on a folio's extra reference; pages_sharing may stand still
    meanwhile)."""
    sysfs.ksm_write("run", 1)
    deadline = time.monotonic() + timeout
    history: list[tuple[int, int]] = []
    scans = int(sysfs.ksm_read("full_scans"))
    try:
        while True:
            if time.monotonic() > deadline:
                raise sysfs.KernelError(f"ksmd did not settle in {timeout:.0f} s: {history[-8:]}")
            full = int(sysfs.ksm_read("full_scans"))
            if full > scans:
                scans = full
                history.append((int(sysfs.ksm_read("pages_sharing")), read_vmstat()["thp_split_page"]))
                sharing = [h[0] for h in history[-4:]]
                if len(history) >= 5 and max(sharing) - min(sharing) <= max(2, sharing[-1] // 10000) \
                        and len({h[1] for h in history[-4:]}) == 1:
                    return len(history)
            time.sleep(0.02)
    finally:
        sysfs.ksm_write("run", 0)


def read_vmstat() -> dict[str, int]:
    out = {}
    for line in Path("/proc/vmstat").read_text().splitlines():
        key, value = line.split()
        if key in VMSTAT:
            out[key] = int(value)
    return out


def region_smaps(pid: int, addr: int) -> dict[str, int]:
    """Rss and AnonHugePages (kB) of the VMAs inside the region starting at addr."""
    out = {"Rss": 0, "AnonHugePages": 0}
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            inside = int(head.split("-")[0], 16) == addr
        elif inside and head[:-1] in out:
            out[head[:-1]] += int(line.split()[1])
    return out


def page_kinds(pid: int, addr: int, n_pages: int) -> list[str]:
    """What each page of the region is: absent, zero (the shared zero page), ksm, thp-head, thp-tail,
    small (an order-0 anonymous page)."""
    with open(f"/proc/{pid}/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
        pm.seek(addr // PAGE * 8)
        entries = struct.unpack(f"{n_pages}Q", pm.read(8 * n_pages))
        kinds = []
        for e in entries:
            if not e >> 63 & 1:
                kinds.append("absent")
                continue
            kf.seek((e & ((1 << 55) - 1)) * 8)
            flags = struct.unpack("Q", kf.read(8))[0]
            if flags >> KPF_ZERO_PAGE & 1:
                kinds.append("zero")
            elif flags >> KPF_KSM & 1:
                kinds.append("ksm")
            elif flags >> KPF_THP & 1:
                kinds.append("thp-head" if flags >> KPF_COMPOUND_HEAD & 1 else "thp-tail")
            else:
                kinds.append("small")
        return kinds


@dataclass
class Child:
    name: str
    thps: list
    huge: bool = True
    keep_khugepaged_away: bool = False
    proc: subprocess.Popen = field(init=False)
    addr: int = 0

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(self.thps),
                                      "huge" if self.huge else "small", str(int(self.keep_khugepaged_away))],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.addr = int(self.proc.stdout.readline())

    def state(self) -> dict:
        kinds = page_kinds(self.proc.pid, self.addr, len(self.thps) * SUBPAGES)
        stat = sysfs.read_ksm_stat(self.proc.pid)
        return {**{k: stat[k] for k in STAT}, **region_smaps(self.proc.pid, self.addr), "pages": dict(Counter(kinds))}

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def run_case(name: str, use_zero_pages: int, passes: int = 5, sleep_ms: int = 400, linger: float = 0,
             khugepaged: bool = True) -> list[dict]:
    """States before ksmd and after each of `passes` full scans; with `linger`, ksmd is stopped (its
    merges kept) for that many seconds and the last state is what khugepaged left. The caller holds
    the machine lock. Without `khugepaged`, the children madvise NOHUGEPAGE once their THPs are in,
    so that khugepaged cannot collapse back what ksmd splits (it does, within seconds at times)."""
    children = [Child(p, thps, p not in SMALL.get(name, ()), not khugepaged) for p, thps in CASES[name].items()]
    sysfs.restore_defaults()
    try:
        for c in children:
            c.start()  # one after the other: ksmd scans them in this order
        for knob, value in {"pages_to_scan": 1 << 20, "sleep_millisecs": sleep_ms, "smart_scan": 0,
                            "use_zero_pages": use_zero_pages}.items():
            sysfs.ksm_write(knob, value)

        def snapshot(scan: int) -> dict:
            return {"scan": scan, "ksm": sysfs.read_counters(), "vmstat": read_vmstat(),
                    **{c.name: c.state() for c in children}}

        states = [snapshot(0)]
        sysfs.ksm_write("run", 1)
        for scan in range(1, passes + 1):
            # a batch is one whole scan; its end leaves sleep_ms to look before the next begins
            if not wait_for(lambda scan=scan: int(sysfs.ksm_read("full_scans")) >= scan, 30):
                raise sysfs.KernelError(f"{name}: full scan {scan} not done in 30 s")
            states.append(snapshot(scan))
        sysfs.ksm_write("run", 0)
        if linger:
            # khugepaged may collapse what ksmd split; ksmd then meets the new THPs again
            time.sleep(linger)
            states.append(snapshot(-1))
            sysfs.ksm_write("run", 1)
            for scan in range(passes + 1, 2 * passes + 1):
                if not wait_for(lambda scan=scan: int(sysfs.ksm_read("full_scans")) >= scan, 30):
                    raise sysfs.KernelError(f"{name}: full scan {scan} not done in 30 s")
                states.append(snapshot(scan))
            sysfs.ksm_write("run", 0)
        return states
    finally:
        for c in children:
            if c.proc.poll() is None:
                c.stop()
        sysfs.restore_defaults()


def delta_vmstat(states: list[dict]) -> dict[str, int]:
    return {k: states[-1]["vmstat"][k] - states[0]["vmstat"][k] for k in VMSTAT}


def markdown(name: str, uzp: int, states: list[dict]) -> str:
    procs = [k for k in states[0] if k not in ("scan", "ksm", "vmstat")]
    lines = [f"#### {name}, use_zero_pages={uzp}", "",
             "| scan | shared | sharing | unshared | volatile | ksm_zero | profit | split | " +
             " | ".join(f"{p}: rmap / merging / zero / AnonHuge kB / pages" for p in procs) + " |",
             "|" + "---|" * (8 + len(procs))]
    v0 = states[0]["vmstat"]
    for s in states:
        k = s["ksm"]
        cells = [str(s["scan"]), *(str(k[c]) for c in ("pages_shared", "pages_sharing", "pages_unshared",
                                                        "pages_volatile", "ksm_zero_pages", "general_profit")),
                 f"+{s['vmstat']['thp_split_page'] - v0['thp_split_page']}"]
        for p in procs:
            st = s[p]
            pages = ", ".join(f"{n} {kind}" for kind, n in sorted(st["pages"].items()))
            cells.append(f"{st['ksm_rmap_items']} / {st['ksm_merging_pages']} / {st['ksm_zero_pages']} / "
                         f"{st['AnonHugePages']} / {pages}")
        lines.append("| " + " | ".join(cells) + " |")
    d = delta_vmstat(states)
    lines += ["", "vmstat over the run: " + ", ".join(f"{k} +{v}" for k, v in d.items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    reason = sysfs.unavailable_reason()
    if reason:
        sys.exit(reason)
    options = dict((a[2:] + "=").split("=")[:2] for a in sys.argv[1:] if a.startswith("--"))
    linger = float(options.get("linger", 0))
    zero_pages = [int(options["uzp"])] if "uzp" in options else [0, 1]
    khugepaged = "no-khugepaged" not in options
    names = [a for a in sys.argv[1:] if not a.startswith("--")] or list(CASES)
    results = {}
    with sysfs.machine_lock():
        for name in names:
            for uzp in zero_pages:
                states = run_case(name, uzp, linger=linger, khugepaged=khugepaged)
                results[f"{name}/{uzp}"] = states
                print(markdown(name, uzp, states), flush=True)
    if options.get("json"):
        Path(options["json"]).write_text(json.dumps(results, indent=1))
