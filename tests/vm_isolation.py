"""Issue 23's isolation experiment, bigger than its test: the estimate isolated by VM (`ksmtui
estimate --isolate vm`) against the real ksmd settled on one guest at a time, summed, and the
unrestricted estimate against the real ksmd on all guests, on fresh guests.

Boots three guests (tests/vmlab.py, `ram_merge_only`: guest RAM is the only memory QEMU madvises
MERGEABLE, and QMP switches it per guest), each with its own mix of fills (one byte value some
share, pools of which the guests share a part, zero-filled and unique pages); pauses them (QMP
`stop`), captures them, estimates both ways, then runs the real ksmd on each guest alone
(vmlab.settle_each_alone) and, last, on all of them. A boot per use_zero_pages value.

    python tests/vm_isolation.py [--uzp=0|1] [--mps=N] [--thp=0] [--json=PATH] [NAME=FILL,FILL ...]

--thp=0: guest RAM in small pages (PR_SET_THP_DISABLE), so that zero-filled pages merge (a split
huge page's zero-filled subpages become the zero page instead, counted by no KSM counter).

Needs root; holds the machine lock from boot to teardown, keeps khugepaged away
(thp_lab.khugepaged_kept_away) and restores the knobs after.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import thp_lab
import vmlab

from engine.estimate import estimate
from engine.knobs import KSM_KNOBS
from ksmtui.cli.estimate import _groups
from ksmtui.host import sysfs
from ksmtui.host.procmem import capture

KNOBS = {"pages_to_scan": 5000, "sleep_millisecs": 10, "smart_scan": 0}
GUESTS = {"iso1": "byte:90:48,pools:64:32,byte:0:16", "iso2": "byte:90:48,pools:32:32,unique:16",
          "iso3": "pools:64:32,byte:0:32,unique:16"}
COUNTERS = ("general_profit", "pages_shared", "pages_sharing", "ksm_zero_pages", "stable_node_chains",
            "stable_node_dups")
PER_GUEST = ("ksm_rmap_items", "ksm_merging_pages", "ksm_zero_pages", "ksm_process_profit")


def run(guests: dict[str, str], uzp: int, mps: int, thp: bool = True) -> dict:
    knobs = {**{k: v.default for k, v in KSM_KNOBS.items()}, **KNOBS, "use_zero_pages": uzp, "max_page_sharing": mps}
    out: dict = {"use_zero_pages": uzp, "max_page_sharing": mps, "guests": guests, "thp": thp}
    lab = vmlab.VMLab()
    with sysfs.machine_lock(), thp_lab.khugepaged_kept_away():
        sysfs.restore_defaults()
        try:
            t0 = time.monotonic()
            specs = {name: [vmlab.Fill.parse(f) for f in fills.split(",")] for name, fills in guests.items()}
            with lab.boot(specs, ram_merge_only=True, thp=thp) as booted:
                out["boot_s"] = round(time.monotonic() - t0, 1)
                for g in booted:
                    g.qmp("stop")
                pids = [g.pid for g in booted]
                cap, notes = capture(pids, explicit=True, show_progress=False, key=os.urandom(32))
                out["capture_notes"] = notes
                t1 = time.monotonic()
                free = estimate(cap, knobs)
                names, of = _groups(cap, "vm")
                assert names == list(guests), names
                isolated = estimate(cap, knobs, salt=of)
                out["estimate_s"] = round(time.monotonic() - t1, 1)
                for e, key in ((free, "estimate"), (isolated, "isolated_estimate")):
                    out[key] = {"ksm": e.ksm, "saved_pages": e.saved_pages,
                                "thp_split_page": e.thp["thp_split_page"] if e.thp else 0,
                                "processes": {g.name: e.processes[g.pid] for g in booted}}
                for k, v in knobs.items():
                    if k in KNOBS or k in ("use_zero_pages", "max_page_sharing"):
                        sysfs.ksm_write(k, v)
                alone = vmlab.settle_each_alone(booted)
                out["alone"] = [{"guest": g.name, "scans": r["scans"], "seconds": round(r["seconds"], 1),
                                 "ksm": r["ksm"], "thp_split_page": r["thp_split_page"],
                                 "processes": {h.name: r["processes"][h.pid] for h in booted}}
                                for g, r in zip(booted, alone, strict=True)]
                v0 = thp_lab.read_vmstat()["thp_split_page"]
                t2 = time.monotonic()
                out["all_scans"] = thp_lab.settle()
                out["all_s"] = round(time.monotonic() - t2, 1)
                out["all"] = {"ksm": sysfs.read_counters(),
                              "thp_split_page": thp_lab.read_vmstat()["thp_split_page"] - v0,
                              "processes": {g.name: sysfs.read_ksm_stat(g.pid) for g in booted}}
        finally:
            sysfs.restore_defaults()
    return out


def diff(e: int, r: int) -> str:
    return "equal" if e == r else f"{e - r:+,} ({(e - r) / max(abs(r), 1) * 100:+.3f}%)"


def report(r: dict) -> str:
    iso, free, alone, both = r["isolated_estimate"], r["estimate"], r["alone"], r["all"]
    summed = {k: sum(a["ksm"][k] for a in alone) for k in COUNTERS}
    lines = [f"#### {len(r['guests'])} guests, use_zero_pages={r['use_zero_pages']}, "
             f"max_page_sharing={r['max_page_sharing']}, {'THP-backed' if r['thp'] else 'small pages (no THP)'}", "",
             ", ".join(f"{n}: {f}" for n, f in r["guests"].items()), "",
             f"boot {r['boot_s']} s, both estimates {r['estimate_s']} s; ksmd alone: "
             + ", ".join(f"{a['guest']} {a['scans']} scans {a['seconds']} s" for a in alone)
             + f"; all: {r['all_scans']} scans {r['all_s']} s", "",
             "| | isolated estimate | real, one guest at a time, summed | difference | unrestricted estimate "
             "| real, all guests | difference |", "|---|---|---|---|---|---|---|"]
    for k in COUNTERS:
        lines.append(f"| {k} | {iso['ksm'][k]:,} | {summed[k]:,} | {diff(iso['ksm'][k], summed[k])} | "
                     f"{free['ksm'][k]:,} | {both['ksm'][k]:,} | {diff(free['ksm'][k], both['ksm'][k])} |")
    saved_alone = summed["pages_sharing"] + summed["ksm_zero_pages"]
    saved_all = both["ksm"]["pages_sharing"] + both["ksm"]["ksm_zero_pages"]
    lines.append(f"| saved pages | {iso['saved_pages']:,} | {saved_alone:,} | "
                 f"{diff(iso['saved_pages'], saved_alone)} | {free['saved_pages']:,} | {saved_all:,} | "
                 f"{diff(free['saved_pages'], saved_all)} |")
    split_alone = sum(a["thp_split_page"] for a in alone)
    lines.append(f"| thp_split_page | {iso['thp_split_page']:,} | {split_alone:,} | "
                 f"{diff(iso['thp_split_page'], split_alone)} | {free['thp_split_page']:,} | "
                 f"{split_alone + both['thp_split_page']:,} (alone runs + {both['thp_split_page']}) | "
                 f"{diff(free['thp_split_page'], split_alone + both['thp_split_page'])} |")
    for a in alone:
        name = a["guest"]
        for k in PER_GUEST:
            e, real = iso["processes"][name][k], a["processes"][name][k]
            fe, fr = free["processes"][name][k], both["processes"][name][k]
            lines.append(f"| {name} {k} | {e:,} | {real:,} (alone) | {diff(e, real)} | {fe:,} | {fr:,} | "
                         f"{diff(fe, fr)} |")
    cost_e, cost_r = free["saved_pages"] - iso["saved_pages"], saved_all - saved_alone
    lines += ["", f"isolation costs {cost_e:,} pages estimated, {cost_r:,} real ({diff(cost_e, cost_r)})"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    options = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
    guests = dict(a.split("=", 1) for a in sys.argv[1:] if not a.startswith("--")) or GUESTS
    for uzp in ([int(options["uzp"])] if "uzp" in options else [0, 1]):
        result = run(guests, uzp, int(options.get("mps", 256)), options.get("thp", "1") != "0")
        if options.get("json"):
            Path(f"{options['json']}.{uzp}").write_text(json.dumps(result, indent=1))
        print(report(result), flush=True)
