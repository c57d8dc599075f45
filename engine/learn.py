"""A scenario learned from a follow file (engine.follow): what the real workload's pages did over
time, said in the scenario format's own words, and the model's replay of it set beside the real
counters.

What is learned, over a steady window (every process of the run alive; its first quarter left
out, while ksmd still merges what the start made):

- families: a process that still shares physical pages with its parent (fork, copy-on-write) is
  forked from it in the scenario (a `fork` event); any other is declared on its own. This matters
  to KSM: ksmd never merges a page with another mapping of the same page ("Don't substitute a ksm
  page for a forked page", unstable_tree_search_insert), so the pages a fork still shares are
  volatile forever, however many processes hold them.
- each page's role: `forked` (still shared with the family since the fork, never changed),
  `equal` (its own copy, never changed, with a content that other own pages hold too: what KSM
  merges), `unique` (own, never changed, no twin), or changing, by how often it was seen to
  change between two samples.
- a scenario per family: the root's regions in that order, sized by the family's median; pools of
  the equal contents; forks; each child rewriting its own pages once at its fork (as the real ones
  did when they copied them on write) and every changing class rewritten at every sampling
  interval with the observed share (`fraction`) of its pages.
- pacing: the model run once on the result; where it completes full scans at another rate than
  the real ksmd did (which woke later than the jiffies the model paces in: a wait for a CPU),
  sleep_millisecs is set to what the real ksmd took between batches, with a comment saying so.

Simplified, and said in the scenario: pages are laid out by role, not by address (ksmd's visiting
order within a process changes, the counters do not); every process of a family has the
family's median page counts; equal contents are spread as a pool that each process holds whole;
processes that came or went inside the window are left out, and counted in a comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.follow import ABSENT, OWN_FRAME, Follow

STEADY_SKIP = 0.25  # the window's first quarter: ksmd still merging what the start made
STEADY_COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")


@dataclass
class Window:
    first: int  # sample indexes, inclusive
    last: int
    procs: list[int]  # process indexes alive over the whole window
    left_out: int  # processes alive for part of it only


def steady_window(f: Follow) -> Window:
    if f.samples < 4:
        raise ValueError(f"{f.path or 'the follow'}: {f.samples} samples: a steady window needs at least 4")
    alive = np.zeros(f.samples, np.int64)
    for a, b in zip(f.proc_first, f.proc_last, strict=True):
        alive[a:b + 1] += 1
    full = np.flatnonzero(alive == alive.max())
    lo, hi = int(full[0]), int(full[-1])
    first = lo + int((hi - lo) * STEADY_SKIP)
    procs = [p for p in range(len(f.proc_pid)) if f.proc_first[p] <= first and f.proc_last[p] >= hi]
    touched = [p for p in range(len(f.proc_pid)) if f.proc_first[p] <= hi and f.proc_last[p] >= first]
    return Window(first, hi, procs, len(touched) - len(procs))


@dataclass
class Roles:
    forked: int = 0
    equal: int = 0
    unique: int = 0
    # (share of intervals with a change, recurring pool or -1) -> pages
    changing: dict[tuple[float, int], int] = field(default_factory=dict)


RECURRING_MAX = 4  # a changing page with at most this many contents, all of them held by other pages too
SHARES = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)


def _share_class(p: float) -> float:
    """The nearest of SHARES on a log scale."""
    return min(SHARES, key=lambda s: abs(np.log(s) - np.log(p)))


@dataclass
class Learned:
    roles: dict[int, Roles]  # process index -> its pages' roles
    equal_copies: dict[int, int]  # content id -> own stable copies (>= 2)
    window: Window
    interval_ms: int  # the mean sampling interval over the window
    recurring: list[tuple[int, ...]]  # the contents each recurring pool stands for


def learn(f: Follow) -> Learned:
    w = steady_window(f)
    grid = f.contents()[w.first:w.last + 1]
    frames = f.contents(frames=True)[w.first:w.last + 1]
    inwin = np.isin(f.page_proc, w.procs)
    present = (grid >= 0).mean(axis=0) >= 0.9
    cols = np.flatnonzero(inwin & present)
    if not len(cols):
        raise ValueError(f"{f.path or 'the follow'}: no page of a VMA ksmd scans was present through the steady "
                         "window: nothing to learn")
    g = grid[:, cols]
    both = (g[1:] >= 0) & (g[:-1] >= 0)
    changes = ((g[1:] != g[:-1]) & both).sum(axis=0)
    share = changes / np.maximum(both.sum(axis=0), 1)
    shared_frame = (frames[:, cols] != OWN_FRAME).mean(axis=0) > 0.5
    last = np.array([col[col >= 0][-1] if (col >= 0).any() else ABSENT for col in g.T], np.int64)
    own_stable = (changes == 0) & ~shared_frame
    ids, counts = np.unique(last[own_stable], return_counts=True)
    twins = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    # a changing page whose few contents other pages hold too (a flag, a state that flips) merges
    # between its changes: it is rewritten from a pool of those contents, not with new ones
    holders: dict[int, set[int]] = {}
    for k in np.flatnonzero(changes).tolist():
        for c in np.unique(g[:, k]).tolist():
            if c >= 0:
                holders.setdefault(c, set()).add(k)
    pools: dict[tuple[int, ...], int] = {}
    roles = {p: Roles() for p in w.procs}
    for k, col in enumerate(cols):
        r = roles[int(f.page_proc[col])]
        if changes[k]:
            values = tuple(c for c in np.unique(g[:, k]).tolist() if c >= 0)
            pool = -1
            if len(values) <= RECURRING_MAX and all(len(holders[c]) >= 2 for c in values):
                pool = pools.setdefault(values, len(pools))
            key = (_share_class(float(share[k])), pool)
            r.changing[key] = r.changing.get(key, 0) + 1
        elif shared_frame[k]:
            r.forked += 1
        elif twins.get(int(last[k]), 0) >= 2:
            r.equal += 1
        else:
            r.unique += 1
    span = float(f.sample_t[w.last] - f.sample_t[w.first])
    interval = max(1, round(1000 * span / max(w.last - w.first, 1)))
    return Learned(roles, {c: n for c, n in twins.items() if n >= 2}, w, interval, list(pools))


def _name(comm: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", comm).strip("-") or "process"


def _median(values: list[int]) -> int:
    return int(round(float(np.median(values)))) if values else 0


def _changing_region(kind: tuple[float, int], interval_ms: int) -> str:
    share, pool = kind
    return f"changes-{round(interval_ms / share)}ms" + (f"-recurring-{pool + 1}" if pool >= 0 else "")


def learn_toml(f: Follow, name: str, source: str = "", command: str = "", pace: bool = True) -> str:
    """The learned scenario as a TOML file a person can read and edit. With pace, the model is run
    once on it, and if its ksmd completed full scans at another rate than the real one, the sleep
    between batches is set to what the real ksmd took (see _pacing)."""
    text = _toml(f, name, source, command, None)
    if not pace:
        return text
    from engine.scenario import parse_scenario  # the loader, for the one calibrating replay

    real = real_steady(f)
    model, _ = replay(parse_scenario(text, f"{name}.toml", Path(".")), f)
    if not real.full_scans_per_s or not model.full_scans_per_s:
        return text
    ratio = model.full_scans_per_s / real.full_scans_per_s
    if abs(ratio - 1) < PACE_TOLERANCE:
        return text
    sleep = int(f.meta.get("knobs", {}).get("sleep_millisecs", 20))
    return _toml(f, name, source, command, (sleep, max(1, round(sleep * ratio)), real.full_scans_per_s,
                                             model.full_scans_per_s))


PACE_TOLERANCE = 0.05


def _toml(f: Follow, name: str, source: str, command: str, pacing: tuple[int, int, float, float] | None) -> str:
    le = learn(f)
    w = le.window
    pid_index = {int(f.proc_pid[p]): p for p in w.procs}
    parent: dict[int, int] = {}  # child -> parent, for children that still share pages with it
    for p in w.procs:
        pp = pid_index.get(int(f.proc_ppid[p]))
        if pp is not None and le.roles[p].forked > 0:
            parent[p] = pp
    roots = [p for p in w.procs if p not in parent]
    family: dict[int, list[int]] = {r: [] for r in roots}
    for p in w.procs:
        r = p
        while r in parent:
            r = parent[r]
        if r != p:
            family[r].append(p)
    # roots with no children and the same comm are one [[process]] with a count, of their median
    # roles
    groups: dict[tuple, list[int]] = {}
    for r in roots:
        key = (str(f.proc_comm[r]), bool(f.proc_merge_any[r]), r if family[r] else -1)
        groups.setdefault(key, []).append(r)

    knobs = f.meta.get("knobs", {})
    span_ms = round(1000 * float(f.sample_t[w.last]))
    copies = sum(le.equal_copies.values())
    lines = [
        f"# Learned by `ksmtui capture --follow --scenario` from {source or 'a follow file'}"
        + (f": `{command}`" if command else "") + ".",
        f"# {f.samples} samples, every {le.interval_ms} ms in the steady window (samples {w.first}..{w.last}, "
        f"{f.sample_t[w.first]:.1f} s .. {f.sample_t[w.last]:.1f} s); kernel {f.meta.get('kernel', '?')}.",
        f"# {len(w.procs)} processes followed through the window"
        + (f"; {w.left_out} that came or went inside it are left out" if w.left_out else "") + ".",
        f"# Equal own pages: {copies} copies of {len(le.equal_copies)} contents.",
        f"name = {_q(name)}",
        f"description = {_q(_description(f, le, len(family)))}",
        "seed = 1",
        "",
        "[ksm]",
    ]
    for k in ("pages_to_scan", "sleep_millisecs", "max_page_sharing", "use_zero_pages", "smart_scan"):
        if k == "sleep_millisecs" and pacing is not None:
            knob, slept, real_fs, model_fs = pacing
            lines += [f"# The real ksmd, asked to sleep {knob} ms (sleep_millisecs) between batches, completed "
                      f"{real_fs:.2f}",
                      f"# full scans a second where the model sleeping {knob} ms completes {model_fs:.2f}: "
                      "it woke later than",
                      "# asked (the model paces in jiffies as the kernel does, but not the waits for a CPU",
                      "# among the workload's and the machine's other tasks unless its cost profile has them).",
                      f"# The replay sleeps what the real ksmd took between batches instead: {slept} ms. Set {knob}",
                      "# to run ksmd's own pacing.",
                      f"sleep_millisecs = {slept}"]
        elif k in knobs:
            lines.append(f"{k} = {int(knobs[k])}")
    pool = "equal"
    pools = ["# the contents that several own pages hold, the most held first: a region holding the",
             "# first n of them stands for that process's own equal pages",
             "[[pool]]", f"name = {_q(pool)}", f"pages = {max(len(le.equal_copies), 1)}", ""]
    for i, values in enumerate(le.recurring):
        pools += [f"# contents that changing pages come back to (pool {i + 1})", "[[pool]]",
                  f'name = "recurring-{i + 1}"', f"pages = {len(values)}", ""]
    body: list[str] = []
    events: list[str] = []
    used: set[str] = set()
    for key, members in groups.items():
        comm, merge_any = key[0], key[1]
        base = _name(comm)
        pname = base
        n = 2
        while pname in used:
            pname = f"{base}.{n}"
            n += 1
        used.add(pname)
        fam = [members[0], *family[members[0]]] if family[members[0]] else members
        regions = _family_regions(le, fam, le.interval_ms)
        if not regions:
            continue
        body += ["[[process]]", f"name = {_q(pname)}"]
        if len(members) > 1:
            body.append(f"count = {len(members)}")
        body += [f"merge_any = {str(merge_any).lower()}", ""]
        for region, pages in regions.items():
            body += ["[[process.region]]", f"name = {_q(region)}", f"pages = {pages}"]
            if region == "equal":
                body += ['fill = "pool"', f"pool = {_q(pool)}"]
            body.append("")
        kids = family[members[0]] if len(members) == 1 else []
        children = [f"{pname}-{k + 1}" for k in range(len(kids))]
        for child, kid in zip(children, kids, strict=True):
            at = round(1000 * float(f.sample_t[f.proc_first[kid]]))
            events += ["[[event]]", 'action = "fork"', f"process = {_q(pname)}", f"child = {_q(child)}",
                       f"at_ms = {at}", ""]
        target = f"{pname}-*" if children else (f"{pname}-*" if len(members) > 1 else pname)
        if children:
            at = max(round(1000 * float(f.sample_t[f.proc_first[k]])) for k in kids)
            for region in regions:
                if region == "forked":
                    continue
                fill = ['fill = "pool"', f"pool = {_q(pool)}"] if region == "equal" else []
                events += ["# the children's own copies, written as they did after the fork",
                           "[[event]]", 'action = "write"', f"process = {_q(target)}", f"region = {_q(region)}",
                           "fraction = 1", *fill, f"at_ms = {at}", ""]
        targets = [pname, target] if children else [target]
        for kind in _family_shares(le, fam):
            region = _changing_region(kind, le.interval_ms)
            if region not in regions:
                continue
            share, rpool = kind
            fill = ['fill = "pool"', f'pool = "recurring-{rpool + 1}"', 'order = "shuffled"'] if rpool >= 0 else []
            for tg in targets:
                events += [f"# seen changing in {100 * share:g}% of {le.interval_ms} ms intervals"
                           + (f", among {len(le.recurring[rpool])} contents other pages hold too"
                              if rpool >= 0 else ""),
                           "[[event]]", 'action = "write"', f"process = {_q(tg)}", f"region = {_q(region)}",
                           f"fraction = {share:g}", *fill, f"at_ms = {le.interval_ms}",
                           f"repeat_ms = {le.interval_ms}", ""]
    stop = ["[stop]", f"after_ms = {max(span_ms, 1)}"]
    return "\n".join([*lines, "", *pools, *body, *events, *stop]) + "\n"


def _family_shares(le: Learned, fam: list[int]) -> list[tuple[float, int]]:
    return sorted({s for p in fam for s in le.roles[p].changing}, reverse=True)


def _family_regions(le: Learned, fam: list[int], interval_ms: int) -> dict[str, int]:
    """Region name -> pages: the family's median count of each role, in scan order."""
    out: dict[str, int] = {}
    for role in ("forked", "equal", "unique"):
        n = _median([getattr(le.roles[p], role) for p in fam])
        if n:
            out[role] = n
    for kind in _family_shares(le, fam):
        n = _median([le.roles[p].changing.get(kind, 0) for p in fam])
        if n:
            out[_changing_region(kind, interval_ms)] = n
    return out


def _description(f: Follow, le: Learned, families: int) -> str:
    tot = Roles()
    for r in le.roles.values():
        tot.forked += r.forked
        tot.equal += r.equal
        tot.unique += r.unique
    changing = sum(n for r in le.roles.values() for n in r.changing.values())
    return (f"Learned from a real run: {len(le.roles)} processes, {tot.forked + tot.equal + tot.unique + changing:,} "
            f"pages in their mergeable VMAs: {tot.forked:,} still shared since a fork (ksmd never merges those), "
            f"{tot.equal:,} own copies of contents other pages hold too, {tot.unique:,} unique and unchanging, "
            f"{changing:,} changing.")


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# ------------------------------------------------------------------ the replay, set beside --

TRACKED = ("pages_shared", "pages_sharing", "pages_volatile", "pages_unshared", "pages_scanned", "pages_skipped",
           "full_scans")


@dataclass
class Steady:
    """A run's steady state: mean counters over the window, the share of visits smart scan
    skipped, ksmd's CPU time per second."""

    means: dict[str, float]
    skipped_per_scanned: float
    ksmd_cpu_per_s: float  # seconds of CPU per second
    full_scans_per_s: float
    skipped_per_pass: float  # pages_skipped per full scan

    def to_json(self) -> dict:
        return {**{k: round(v, 1) for k, v in self.means.items()},
                "skipped_per_scanned": round(self.skipped_per_scanned, 3),
                "ksmd_cpu_per_s": round(self.ksmd_cpu_per_s, 5), "full_scans_per_s": round(self.full_scans_per_s, 2),
                "skipped_per_pass": round(self.skipped_per_pass, 1)}


def _steady(t: np.ndarray, counters: dict[str, np.ndarray], cpu_ns: np.ndarray, a: int, b: int) -> Steady:
    span = float(t[b] - t[a]) or 1e-9
    d = {k: float(counters[k][b] - counters[k][a]) for k in ("pages_scanned", "pages_skipped", "full_scans")}
    return Steady({k: float(np.mean(counters[k][a:b + 1])) for k in STEADY_COUNTERS},
                  d["pages_skipped"] / max(d["pages_scanned"], 1), float(cpu_ns[b] - cpu_ns[a]) / 1e9 / span,
                  d["full_scans"] / span, d["pages_skipped"] / max(d["full_scans"], 1))


def real_steady(f: Follow) -> Steady:
    w = steady_window(f)
    return _steady(f.sample_t, f.counters, f.sample_ksmd_ns, w.first, w.last)


def replay(scenario, f: Follow, flow: str | None = None) -> tuple[Steady, dict[str, np.ndarray]]:
    """The scenario run in the model, its counters read at the follow's sample times (modelled:
    ksmd's CPU time is the cost model's)."""
    from engine.sim import Simulation  # the learner itself needs no simulation

    sim = Simulation(scenario, flow=flow)
    w = steady_window(f)
    times_ns = (f.sample_t[:w.last + 1] * 1e9).astype(np.int64)
    out: dict[str, list[int]] = {k: [] for k in TRACKED}
    cpu: list[int] = []
    for t in times_ns:
        while sim.now_ns < t and not sim.stuck:
            sim.step_batch()
        c = sim.ksm.counters()
        for k in TRACKED:
            out[k].append(sim.full_scans if k == "full_scans" else int(c[k]))
        cpu.append(sim.ksm.ksmd_cpu_ns)
    arrays = {k: np.array(v, np.int64) for k, v in out.items()}
    return _steady(f.sample_t, arrays, np.array(cpu, np.int64), w.first, w.last), arrays


def compare(real: Steady, model: Steady) -> list[tuple[str, float, float, float]]:
    """(what, real, modelled, relative difference) for the done-when measures."""
    rows = [(k, real.means[k], model.means[k])
            for k in ("pages_shared", "pages_sharing", "pages_volatile", "pages_unshared")]
    rows += [("skipped_per_scanned", real.skipped_per_scanned, model.skipped_per_scanned),
             ("skipped_per_pass", real.skipped_per_pass, model.skipped_per_pass),
             ("ksmd_cpu_per_s", real.ksmd_cpu_per_s, model.ksmd_cpu_per_s),
             ("full_scans_per_s", real.full_scans_per_s, model.full_scans_per_s)]
    return [(k, a, b, (b - a) / a if a else float(b != a)) for k, a, b in rows]
