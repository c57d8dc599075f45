"""`ksmtui estimate CAPTURE [--set KNOB=VALUE ...] [--merge-any] [--json]`.

What KSM settles to on captured memory and what it costs to get there (engine.estimate), under
the host's knobs at capture time with --set applied. ksmd's CPU per path comes from `ksmtui bench`
where it measured this machine's ksmd, else from the cost model's built-in calibration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.capture import load
from engine.estimate import Estimate, estimate
from engine.knobs import KSM_KNOBS, KnobError
from engine.scenario import ScenarioError, parse_set_option, printable
from ksmtui.cli.options import Parser
from ksmtui.host.sysfs import KSM_DIR
from ksmtui.text.report import table

PROG = "ksmtui estimate"



def _setting(text: str) -> tuple[str, int | str]:
    knob, value = parse_set_option(text)
    if knob not in KSM_KNOBS:
        raise ScenarioError("--set", "", knob, "an estimate takes [ksm] knobs only")
    return knob, value


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="The state KSM settles to on a capture, and the cost of getting there.")
    p.add_argument("capture", type=Path, help="a file written by ksmtui capture")
    p.add_argument("--set", dest="settings", metavar="KNOB=VALUE", action="append", default=[],
                   help="a /sys/kernel/mm/ksm knob (repeatable; default: the host's at capture time)")
    p.add_argument("--merge-any", action="store_true",
                   help="count memory no one marked mergeable too, as if every process set prctl merge-any")
    p.add_argument("--json", action="store_true", help='one JSON object: "ksm", "processes" (by pid), "cost"')
    return p


def main(argv: list[str]) -> int:
    from ksmtui.bench import costs as ksmd_costs

    opts = build_parser().parse_args(argv)
    settings = dict(_setting(s) for s in opts.settings)
    cap = load(opts.capture)
    knobs = {k: v.default for k, v in KSM_KNOBS.items()}
    for k, v in cap.meta.get("knobs", {}).items():
        if k in KSM_KNOBS:
            try:
                knobs[k] = KSM_KNOBS[k].parse(v)
            except KnobError as e:
                raise KnobError(f"{opts.capture}: meta.knobs.{k}: {e}") from None
    knobs.update(settings)
    measured, source = ksmd_costs.load(int((cap.page_content >= 0).sum()))
    result = estimate(cap, knobs, merge_any=opts.merge_any, measured=measured, measured_source=source)
    if opts.json:
        print(json.dumps({"capture": str(opts.capture), "knobs": knobs, "memory": cap.by_reason(), **result.as_json()}))
    else:
        sys.stdout.write(report(result, opts.capture, knobs, opts.merge_any) + memory_report(cap, opts.merge_any))
    for note in result.notes:
        print(f"{PROG}: note: {printable(note)}", file=sys.stderr)
    return 0


def _seconds(s: float | None) -> str:
    if s is None:
        return "never"
    if s < 1:
        return f"{s * 1000:,.0f} ms"
    if s < 120:
        return f"{s:,.1f} s"
    if s < 7200:
        return f"{s / 60:,.1f} min"
    return f"{s / 3600:,.1f} h"


def report(e: Estimate, path: Path, knobs: dict, merge_any: bool) -> str:
    ps_knobs = ", ".join(f"{k} {knobs[k]}" for k in ("max_page_sharing", "use_zero_pages", "pages_to_scan", "sleep_millisecs"))
    scope = "every compatible VMA (as with merge-any)" if merge_any else "the VMAs KSM may merge now"
    lines = [f"{printable(str(path))}: {len(e.processes):,} processes, {e.pages:,} pages ksmd scans in {scope}; {ps_knobs}", "",
             "settled state, as `grep . /sys/kernel/mm/ksm/*` would show it:"]
    lines += [f"{KSM_DIR}/{k}:{v}" for k, v in e.ksm.items()]
    saved = e.ksm["pages_sharing"] + e.ksm["ksm_zero_pages"]
    lines.append(f"memory saved: {saved:,} pages ({saved * e.page_size / 2**20:,.1f} MiB), "
                 f"general_profit {e.ksm['general_profit'] / 2**20:,.1f} MiB after {e.rmap_items:,} rmap_items")
    lines += ["", "per process, as /proc/PID/ksm_stat would show it, and with whom it would share KSM pages:"]
    head = ("pid", "comm", "ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit", "KSM pages", "shares KSM pages with")
    rows = [head]
    for pid, p in e.processes.items():
        top = sorted(p["shares_with"].items(), key=lambda kv: -kv[1])
        shares = ", ".join(f"{q} ({n:,})" for q, n in top[:4]) + (f", +{len(top) - 4} more" if len(top) > 4 else "")
        rows.append((str(pid), printable(p["comm"]), f"{p['ksm_rmap_items']:,}", f"{p['ksm_zero_pages']:,}",
                     f"{p['ksm_merging_pages']:,}", f"{p['ksm_process_profit']:,}", f"{p['ksm_pages']:,}", shares or "-"))
    lines += [f"{line}  {r[-1]}" for line, r in zip(table([r[:-1] for r in rows], left=2), rows)]
    c = e.cost
    lines += ["", f"getting there: {c['full_scans']} full scans, {_seconds(c.get('wall_s'))} of wall time at pages_to_scan "
              f"{knobs['pages_to_scan']} and sleep_millisecs {knobs['sleep_millisecs']}, ksmd CPU {_seconds(c.get('ksmd_cpu_s'))}"
              + (f" ({c['cpu_share'] * 100:.1f}% of a CPU meanwhile)" if c.get("cpu_share") is not None and c.get("wall_s") else "")]
    for i, p in enumerate(c["passes"]):
        calls = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in p["calls"].items() if v)
        lines.append(f"  pass {i + 1}: {p['pages']:,} pages in {p['batches']:,} batches ({calls}): "
                     f"{_seconds(p['wall_s'])}, ksmd CPU {_seconds(p['ksmd_cpu_s'])}")
    paths = ", ".join(f"{k.replace('_', ' ')} {c['ns_per_page'][k]:,} ns ({src})" for k, src in c["costs"]["paths"].items())
    lines.append(f"  per call: {paths}")
    lines.append(f"  measured: {c['costs']['measured']}" if c["costs"]["measured"] else
                 "  ksmd's costs: the cost model's built-in calibration (run `ksmtui bench` as root to measure this machine's)")
    return "\n".join(lines) + "\n"



def memory_report(cap, merge_any: bool) -> str:
    """What the capture saw, by why KSM may or may not merge it."""
    lines = ["", "memory by what KSM may do with it (VMAs, mapped, pages ksmd would scan):"]
    for name, m in cap.by_reason().items():
        pages = "" if m["pages"] is None else f", {m['pages']:,} pages"
        hint = " (counted: --merge-any)" if name.startswith("not madvised") and merge_any else \
            " (--merge-any counts them)" if name.startswith("not madvised") and m["pages"] else ""
        lines.append(f"  {name}: {m['vmas']:,} VMAs, {m['mapped_bytes'] / 2**20:,.1f} MiB mapped{pages}{hint}")
    return "\n".join(lines) + "\n"
