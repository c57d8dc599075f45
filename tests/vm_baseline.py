"""Issue 21's three-guest experiment: capture + estimate against the real ksmd, on fresh guests.

Boots three identical guests (tests/vmlab.py), captures their QEMU processes (`ksmtui capture`),
estimates (`ksmtui estimate --json`, the same knobs as ksmd gets), then runs the real ksmd until
pages_sharing stands still for three full scans, and prints both side by side with what the guests'
huge pages became (AnonHugePages, /proc/vmstat thp_split_page and thp_collapse_alloc).

    python tests/vm_baseline.py [--uzp=0|1] [--mps=N] [--fill=byte:90:64] [--json=PATH]   # PATH.0, PATH.1

khugepaged is kept away while it runs (thp_lab.khugepaged_kept_away), so that the guests' split
ranges are not collapsed back before ksmd settles.

Needs root; holds the machine lock from boot to teardown (ksmd must not touch the guests before
their capture), and restores the knobs after.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import thp_lab
import vmlab

from ksmtui.host import sysfs

KNOBS = {"pages_to_scan": 5000, "sleep_millisecs": 10, "smart_scan": 0}
GUESTS = ("vm1", "vm2", "vm3")


def guest_thp(pid: int) -> dict:
    """Over the guest's MERGEABLE VMAs: AnonHugePages, Rss, what each page is, and the THPs."""
    out: dict = {"AnonHugePages": 0, "Rss": 0, "pages": {}, "thps": 0}
    for vma in vmlab.vmas(pid):
        if "mg" not in vma.get("VmFlags", ()):
            continue
        out["AnonHugePages"] += vma["AnonHugePages"]
        out["Rss"] += vma["Rss"]
        kinds = thp_lab.page_kinds(pid, vma["start"], (vma["end"] - vma["start"]) // thp_lab.PAGE)
        for k in kinds:
            out["pages"][k] = out["pages"].get(k, 0) + 1
        out["thps"] += kinds.count("thp-head")
    out["pages"] = dict(sorted(out["pages"].items()))
    return out


def thp_contents(pid: int) -> list[list[bytes]]:
    """The 4 KiB subpages of every THP in the guest's MERGEABLE memory (its RAM, and the small RAM
    blocks QEMU also madvises: ROMs, ACPI tables), as digests (b"" for a zero-filled one)."""
    zero = bytes(thp_lab.PAGE)
    thps = []
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        for vma in vmlab.vmas(pid):
            if "mg" not in vma.get("VmFlags", ()):
                continue
            kinds = thp_lab.page_kinds(pid, vma["start"], (vma["end"] - vma["start"]) // thp_lab.PAGE)
            for i in range(0, len(kinds), thp_lab.SUBPAGES):
                if kinds[i] == "thp-head":
                    data = os.pread(fd, thp_lab.HPAGE, vma["start"] + i * thp_lab.PAGE)
                    pages = [data[j:j + thp_lab.PAGE] for j in range(0, thp_lab.HPAGE, thp_lab.PAGE)]
                    thps.append([b"" if p == zero else hashlib.blake2b(p, digest_size=16).digest() for p in pages])
    finally:
        os.close(fd)
    return thps


def predict(guests: dict[str, list[list[bytes]]], uzp: int) -> dict:
    """Which THPs ksmd splits, by docs/thp.md: one with a non-zero subpage whose content is somewhere
    else too (both sides split and merge), or with a zero-filled subpage when use_zero_pages=1 (the
    split on the way to the zero page), or with two zero-filled subpages (the same-folio split). One
    lone zero subpage and nothing else shared (use_zero_pages=0) depends on the scan order: counted
    apart. A split THP's zero-filled subpages become the shared zero page."""
    count: dict[bytes, int] = {}
    for thps in guests.values():
        for thp in thps:
            for d in thp:
                count[d] = count.get(d, 0) + 1
    out = {}
    for name, thps in guests.items():
        split = kept = undecided = zero_after = 0
        for thp in thps:
            zeros = thp.count(b"")
            shared = any(d and count[d] > 1 for d in thp)
            if shared or zeros >= 2 or (zeros and uzp):
                split += 1
                zero_after += zeros
            elif zeros == 1:
                undecided += 1
            else:
                kept += 1
        out[name] = {"thps": len(thps), "split": split, "kept": kept, "one_zero_undecided": undecided,
                     "zero_pages_after": zero_after}
    return out


def run(uzp: int, fill: vmlab.Fill, mps: int = 256) -> dict:
    knobs = {**KNOBS, "use_zero_pages": uzp, "max_page_sharing": mps}
    lab = vmlab.VMLab()
    out: dict = {"use_zero_pages": uzp, "max_page_sharing": mps, "fill": str(fill)}
    with sysfs.machine_lock(), thp_lab.khugepaged_kept_away():
        sysfs.restore_defaults()
        try:
            t0 = time.monotonic()
            with lab.boot({name: [fill] for name in GUESTS}) as guests:
                out["boot_s"] = round(time.monotonic() - t0, 1)
                pids = [g.pid for g in guests]
                out["before"] = {g.name: guest_thp(g.pid) for g in guests}
                out["predicted"] = predict({g.name: thp_contents(g.pid) for g in guests}, uzp)
                with tempfile.TemporaryDirectory() as tmp:
                    cap = Path(tmp) / "guests.npz"
                    subprocess.run([sys.executable, "-m", "ksmtui", "capture", "-o", str(cap), *map(str, pids)],
                                   check=True, capture_output=True)
                    sets = [a for k, v in knobs.items() for a in ("--set", f"{k}={v}")]
                    t1 = time.monotonic()
                    est = subprocess.run([sys.executable, "-m", "ksmtui", "estimate", "--json", *sets, str(cap)],
                                         check=True, capture_output=True, text=True)
                    out["estimate_s"] = round(time.monotonic() - t1, 1)
                    out["estimate"] = json.loads(est.stdout)
                for k, v in knobs.items():
                    sysfs.ksm_write(k, v)
                v0 = thp_lab.read_vmstat()
                t2 = time.monotonic()
                out["full_scans"] = thp_lab.settle()
                out["ksmd_s"] = round(time.monotonic() - t2, 1)
                out["vmstat"] = {k: v - v0[k] for k, v in thp_lab.read_vmstat().items()}
                out["real"] = {"ksm": sysfs.read_counters(),
                               "processes": {g.name: sysfs.read_ksm_stat(g.pid) for g in guests}}
                out["after"] = {g.name: guest_thp(g.pid) for g in guests}
                out["pids"] = {g.name: g.pid for g in guests}
        finally:
            sysfs.restore_defaults()
    return out


def num(v) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def report(r: dict) -> str:
    est, real = r["estimate"], r["real"]
    lines = [f"#### three guests, fill {r['fill']}, use_zero_pages={r['use_zero_pages']}, "
             f"max_page_sharing={r.get('max_page_sharing', 256)}", "",
             f"boot {r['boot_s']} s, estimate {r['estimate_s']} s, ksmd {r['ksmd_s']} s over {r['full_scans']} full "
             f"scans; vmstat: " + ", ".join(f"{k} +{v}" for k, v in r["vmstat"].items()), "",
             "| | estimate | real ksmd |", "|---|---|---|"]
    for key in ("general_profit", "pages_shared", "pages_sharing", "pages_unshared", "ksm_zero_pages"):
        lines.append(f"| {key} | {num(est['ksm'].get(key, '-'))} | {num(real['ksm'][key])} |")
    split = est.get("thp", {}).get("thp_split_page", "-")
    lines.append(f"| thp_split_page | {num(split)} | {num(r['vmstat']['thp_split_page'])} |")
    for name, pid in r["pids"].items():
        e = est["processes"].get(str(pid), {})
        p = real["processes"][name]
        for key in ("ksm_rmap_items", "ksm_merging_pages", "ksm_zero_pages"):
            lines.append(f"| {name} {key} | {num(e.get(key, '-'))} | {num(p[key])} |")
    lines += ["", "| guest | AnonHugePages kB before / after | THPs before / after (predicted kept + undecided) | "
              "zero pages after (predicted) | pages after |", "|---|---|---|---|---|"]
    for name in r["pids"]:
        b, a, p = r["before"][name], r["after"][name], r["predicted"][name]
        lines.append(f"| {name} | {b['AnonHugePages']:,} / {a['AnonHugePages']:,} | {b['thps']} / {a['thps']} "
                     f"({p['kept']} + {p['one_zero_undecided']}) | {a['pages'].get('zero', 0):,} "
                     f"({p['zero_pages_after']:,}) | " + ", ".join(f"{n:,} {k}" for k, n in a["pages"].items()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    options = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
    fill = vmlab.Fill.parse(options.get("fill", "byte:90:64"))
    for uzp in ([int(options["uzp"])] if "uzp" in options else [0, 1]):
        result = run(uzp, fill, int(options.get("mps", 256)))
        if options.get("json"):
            Path(f"{options['json']}.{uzp}").write_text(json.dumps(result, indent=1))
        print(report(result), flush=True)
