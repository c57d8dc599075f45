"""`ksmtui estimate CAPTURE [--set KNOB=VALUE ...] [--merge-any] [--json]`.

What KSM settles to on captured memory and what it costs to get there (engine.estimate), under
the host's knobs at capture time with --set applied. ksmd's CPU per path comes from `ksmtui bench`
where it measured this machine's ksmd, else from the cost model's built-in calibration.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from engine.capture import load
from engine.estimate import Estimate, estimate
from engine.knobs import KSM_KNOBS, KnobError
from engine.scenario import ScenarioError, parse_set_option, printable
from ksmtui.cli.options import Parser, add_costs
from ksmtui.host.sysfs import KSM_DIR
from ksmtui.host.units import GROUPINGS, Unit, group_index, group_key
from ksmtui.host.whynot import knob_reasons
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
    add_costs(p)
    p.add_argument("--group-by", choices=GROUPINGS, metavar="BY",
                   help=f"per group ({', '.join(GROUPINGS)}): rmap_items, merging pages, profit, and the KSM pages "
                   "groups share")
    p.add_argument("--isolate", choices=GROUPINGS, metavar="BY",
                   help="also the saving if pages were shared only within each group (as if salted)")
    p.add_argument("--zero-pages-only", action="store_true",
                   help="also the saving of merging only zero-filled pages, with use_zero_pages and without")
    return p


def main(argv: list[str]) -> int:
    from ksmtui.host import costs as ksmd_costs

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
    profile = ksmd_costs.load_profile(opts.costs)
    groups = _groups(cap, opts.group_by) if opts.group_by else None
    result = estimate(cap, knobs, merge_any=opts.merge_any, measured=measured, measured_source=source, groups=groups,
                      profile=profile)
    extra = extra_sections(cap, knobs, result, opts)
    if opts.json:
        print(json.dumps({"capture": str(opts.capture), "knobs": knobs, "memory": cap.by_reason(), **result.as_json(),
                          **{k: v for k, (v, _) in extra.items()}}))
    else:
        sys.stdout.write(report(result, opts.capture, knobs, opts.merge_any) + memory_report(cap, opts.merge_any)
                         + "".join(text for _, text in extra.values()))
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
    shown = ("run", "max_page_sharing", "use_zero_pages", "pages_to_scan", "sleep_millisecs")
    ps_knobs = ", ".join(f"{k} {knobs[k]}"
                         for k in shown + (("advisor_mode",) if knobs["advisor_mode"] != "none" else ()))
    scope = "every compatible VMA (as with merge-any)" if merge_any else "the VMAs KSM may merge now"
    c = e.cost
    stopped = c.get("not_merging")
    lines = [f"{printable(str(path))}: {len(e.processes):,} processes, {e.pages:,} pages ksmd scans in {scope}; "
             f"{ps_knobs}", ""]
    if stopped:
        named = re.search(r"\((\w+) \d\)", stopped)  # the knob engine.estimate.not_merging names
        knob = named.group(1) if named else "run"
        fix = "--set run=1" if knob == "run" else f"--set {knob}=N (N > 0)"
        lines += [f"{stopped}.",
                  f"With {fix}, KSM would settle to this state, as `grep . /sys/kernel/mm/ksm/*` would show it:"]
    else:
        lines.append("settled state, as `grep . /sys/kernel/mm/ksm/*` would show it:")
    lines += [f"{KSM_DIR}/{k}:{v}" for k, v in e.ksm.items()]
    saved = e.ksm["pages_sharing"] + e.ksm["ksm_zero_pages"]
    lines.append(f"memory saved: {saved:,} pages ({saved * e.page_size / 2**20:,.1f} MiB), "
                 f"general_profit {e.ksm['general_profit'] / 2**20:,.1f} MiB after {e.rmap_items:,} rmap_items")
    t = e.thp
    if t:
        lines.append(f"huge pages (THPs) in scope: {t['huge_pages']:,}; merging splits {t['split']:,} of them "
                     f"(/proc/vmstat thp_split_page +{t['thp_split_page']:,}), "
                     f"{t['huge_pages'] - t['split']:,} stay huge; "
                     f"the splits map {t['split_zero_pages']:,} zero-filled subpages to the shared zero page "
                     f"({t['split_zero_pages'] * e.page_size / 2**20:,.1f} MiB freed that no KSM counter counts)")
    lines += ["", "per process, as /proc/PID/ksm_stat would show it, and with whom it would share KSM pages:"]
    head = ("pid", "comm", "ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit", "KSM pages",
            *(("huge pages split",) if t else ()), "shares KSM pages with")
    rows = [head]
    for pid, p in e.processes.items():
        top = sorted(p["shares_with"].items(), key=lambda kv: -kv[1])
        shares = ", ".join(f"{q} ({n:,})" for q, n in top[:4]) + (f", +{len(top) - 4} more" if len(top) > 4 else "")
        split = (f"{p['thp']['split']:,} of {p['thp']['huge_pages']:,}" if "thp" in p else "-",) if t else ()
        rows.append((str(pid), printable(p["comm"]), f"{p['ksm_rmap_items']:,}", f"{p['ksm_zero_pages']:,}",
                     f"{p['ksm_merging_pages']:,}", f"{p['ksm_process_profit']:,}", f"{p['ksm_pages']:,}",
                     *split, shares or f"- ({why_no_partner(p)})"))
    lines += [f"{line}  {r[-1]}" for line, r in zip(table([r[:-1] for r in rows], left=2), rows, strict=True)]
    if stopped:
        lines += ["", f"getting there: never ({knob} {knobs[knob]}); {fix} for the time and ksmd CPU it takes"]
    else:
        lines += ["", f"getting there: {c['full_scans']} full scans, {_seconds(c.get('wall_s'))} of wall time at "
                      "pages_to_scan "
                  f"{c['pages_to_scan']} and sleep_millisecs {knobs['sleep_millisecs']}, ksmd CPU "
                  f"{_seconds(c.get('ksmd_cpu_s'))}"
                  + (f" ({c['cpu_share'] * 100:.1f}% of a CPU meanwhile)"
                     if c.get("cpu_share") is not None and c.get("wall_s") else "")]
    if c.get("advisor"):
        lines.append(f"  {c['advisor']}")
    for i, p in enumerate(c["passes"]):
        calls = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in p["calls"].items() if v)
        lines.append(f"  pass {i + 1}: {p['pages']:,} pages in {p['batches']:,} batches ({calls}): "
                     f"{_seconds(p['wall_s'])}, ksmd CPU {_seconds(p['ksmd_cpu_s'])}")
    sources = set(c["costs"]["paths"].values())
    one = sources.pop() if len(sources) == 1 else None  # said once, not after each path
    paths = ", ".join(f"{k.replace('_', ' ')} {c['ns_per_page'][k]:,} ns" + ("" if one else f" ({src})")
                      for k, src in c["costs"]["paths"].items())
    lines.append(f"  per call ({one}): {paths}" if one else f"  per call: {paths}")
    lines.append(f"  costs: {c['costs']['profile']}" + ("" if c["costs"]["profile"] != "reference costs" else
                 " (run `ksmtui calibrate` as root to measure this machine's)"))
    if c["costs"]["measured"]:
        lines.append(f"  measured: {c['costs']['measured']}")
    steady = c.get("steady")
    if steady:
        tried = steady["unmerged_tried_every"]
        lines.append(f"once settled (modelled): ksmd CPU {steady['cpu_share'] * 100:.2f}% of a CPU, a pass over the "
                     f"{steady['pages']:,} pages with an rmap_item every {_seconds(steady['pass_wall_s'])} "
                     f"({steady['ksm_pages']:,} KSM pages by their early return, {steady['unmerged_pages']:,} unmerged"
                     + (f" tried one pass in {tried}, smart_scan skipping them in the others)" if tried > 1 else ")"))
    return "\n".join(lines) + "\n"



def why_no_partner(p: dict) -> str:
    """Why a process shares no KSM page with another: what the estimate knows of it."""
    fork = p.get("fork_shared", {})
    if fork.get("with"):
        top = sorted(fork["with"].items(), key=lambda kv: -kv[1])
        who = ", ".join(f"{q} ({n:,})" for q, n in top[:3]) + (f", +{len(top) - 3} more" if len(top) > 3 else "")
        return (f"{fork['pages']:,} pages shared since fork with {who}: already the same physical page, "
                "which KSM never merges")
    if p["ksm_pages"]:
        return "its KSM pages merge copies within it only"
    if p["ksm_zero_pages"]:
        return "its zero pages map the kernel's zero page, no one's KSM page"
    return "no content of it is found in another page KSM scans"


def memory_report(cap, merge_any: bool) -> str:
    """What the capture saw, by why KSM may or may not merge it."""
    lines = ["", "memory by what KSM may do with it (VMAs, mapped, pages ksmd would scan):"]
    for name, m in cap.by_reason().items():
        pages = "" if m["pages"] is None else f", {m['pages']:,} pages"
        hint = " (counted: --merge-any)" if name.startswith("not madvised") and merge_any else \
            " (--merge-any counts them)" if name.startswith("not madvised") and m["pages"] else ""
        lines.append(f"  {name}: {m['vmas']:,} VMAs, {m['mapped_bytes'] / 2**20:,.1f} MiB mapped{pages}{hint}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------- groups, isolation, zero pages, why not --

def _groups(cap, by: str) -> tuple[list[str], np.ndarray]:
    """Each captured process's group by its unit (a capture that predates units: all unknown)."""
    keys = [group_key(Unit.from_json(int(pid), str(comm), unit), by)
            for pid, comm, unit in zip(cap.proc_pid.tolist(), cap.proc_comm.tolist(), cap.units(), strict=False)]
    names, of = group_index(keys)
    return names, np.array(of, np.int64)


def extra_sections(cap, knobs: dict, e: Estimate, opts) -> dict[str, tuple[object, str]]:
    """The sections the options ask for, each as (its JSON, its text)."""
    out: dict[str, tuple[object, str]] = {}
    reasons = knob_reasons(knobs)
    out["why_not"] = (reasons, "" if not reasons else "\n".join(
        ["", "what the knobs (at capture time, with --set) say of ksmd (the settled state above is what run=1 gives):"]
        + [f"  {r['text']}" for r in reasons]) + "\n")
    if e.groups is not None:
        out["group_by"] = (opts.group_by, group_report(e, opts.group_by))
    if opts.isolate:
        names, of = _groups(cap, opts.isolate)
        alone = estimate(cap, knobs, merge_any=opts.merge_any, salt=of)
        body = {"by": opts.isolate, "groups": len(names), "ksm": alone.ksm, "saved_pages": alone.saved_pages,
                "unrestricted_saved_pages": e.saved_pages, "cost_pages": e.saved_pages - alone.saved_pages}
        out["isolated"] = (body, isolate_report(e, alone, opts.isolate, len(names)))
    if opts.zero_pages_only:
        body = {}
        for use_zero in (1, 0):
            z = estimate(cap, {**knobs, "use_zero_pages": use_zero}, merge_any=opts.merge_any, zero_only=True)
            body[f"use_zero_pages={use_zero}"] = {"ksm": z.ksm, "saved_pages": z.saved_pages,
                                                  "ksm_rmap_items": z.rmap_items}
        out["zero_pages_only"] = (body, zero_report(e, body, int(knobs["use_zero_pages"])))
    return out


def _mib(pages: int, ps: int) -> str:
    return f"{pages * ps / 2**20:,.1f} MiB"


def group_report(e: Estimate, by: str) -> str:
    groups = e.groups or {}
    lines = ["", f"per {by} (sums of the ksm_stat of its processes), and with whom it would share KSM pages:"]
    head = (by, "processes", "ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit", "KSM pages")
    rows = [head]
    shares = []
    for name, g in groups.items():
        top = sorted(g["shares_with"].items(), key=lambda kv: -kv[1])
        shares.append(", ".join(f"{q} ({n:,})" for q, n in top[:4])
                      + (f", +{len(top) - 4} more" if len(top) > 4 else ""))
        rows.append((name, f"{len(g['processes']):,}", f"{g['ksm_rmap_items']:,}", f"{g['ksm_zero_pages']:,}",
                     f"{g['ksm_merging_pages']:,}", f"{g['ksm_process_profit']:,}", f"{g['ksm_pages']:,}"))
    lines += [f"{line}  {s or '-'}" if i else f"{line}  shares KSM pages with"
              for i, (line, s) in enumerate(zip(table(rows, left=1), ["", *shares], strict=False))]
    names = list(groups)
    if 1 < len(names) <= 8:
        lines += ["", f"KSM pages mapped by both (the diagonal: by the {by} at all):"]
        matrix = [("", *names)] + [(a, *(f"{groups[a]['ksm_pages'] if a == b else groups[a]['shares_with'].get(b, 0):,}"
                                        for b in names)) for a in names]
        lines += table(matrix, left=1)
    return "\n".join(lines) + "\n"


def isolate_report(e: Estimate, alone: Estimate, by: str, n: int) -> str:
    ps = e.page_size
    cost = e.saved_pages - alone.saved_pages
    return "\n".join([
        "", f"shared only within each {by} ({n:,} groups; as if each one's pages were salted):",
        f"  saves {alone.saved_pages:,} pages ({_mib(alone.saved_pages, ps)}), general_profit "
        f"{alone.ksm['general_profit'] / 2**20:,.1f} MiB",
        f"  unrestricted: {e.saved_pages:,} pages ({_mib(e.saved_pages, ps)}), general_profit "
        f"{e.ksm['general_profit'] / 2**20:,.1f} MiB",
        f"  isolation costs {cost:,} pages ({_mib(cost, ps)})"
        + (f", {cost / e.saved_pages * 100:.1f}% of the saving" if e.saved_pages else ""),
    ]) + "\n"


def zero_report(e: Estimate, body: dict, use_zero: int) -> str:
    ps = e.page_size
    lines = ["", "merging only zero-filled pages (every page still scanned, with its rmap_item):"]
    for key, z in body.items():
        how = "merged with the kernel's zero page" if key.endswith("1") else "merged into KSM pages of zeros"
        now = " (the knob's value now)" if key == f"use_zero_pages={use_zero}" else ""
        lines.append(f"  {key}{now}: saves {z['saved_pages']:,} pages ({_mib(z['saved_pages'], ps)}), {how}, "
                     f"general_profit {z['ksm']['general_profit'] / 2**20:,.1f} MiB")
    lines.append(f"  every page that merges: {e.saved_pages:,} pages ({_mib(e.saved_pages, ps)})")
    return "\n".join(lines) + "\n"
