"""The state KSM settles to on captured memory, computed directly (numpy), and the cost of getting there.

For memory that does not change, ksmd's end state depends only on which pages are equal, the
knobs, and the order it visits the pages; not on timing. The rules, from mm/ksm.c:

- ksmd scans every present anonymous page of every VM_MERGEABLE VMA (KSM pages included; not the
  kernel's shared zero page); each such page has one rmap_item.
- Pass 1 only stores each page's checksum (cmp_and_merge_page returns when the checksum changed,
  and it starts at 0). Pass 2 merges: with use_zero_pages, an all-zero page is merged with the
  zero page (ksm_zero_pages), and its rmap_item is freed when pass 3 finds no anonymous page
  there. Every other content with n >= 2 copies ends in KSM pages: in scan order, the first
  copy is inserted in the unstable tree, the second merges with it into a KSM page, later copies
  merge into it through the stable tree until it has max_page_sharing (M) mappers; the next copy
  starts the next KSM page (a dup of the content's stable_node chain) the same way. So copy k
  (0-based, in scan order) lands in KSM page k // M, except when n mod M == 1 (n > 1): the last
  copy is alone in the unstable tree and stays unmerged. A content with two or more KSM pages is
  one chain (stable_node_chains) with that many dups (stable_node_dups); with one it is a plain
  stable node.
- pages_shared counts KSM pages, pages_sharing their other mappers; per mm, ksm_merging_pages
  counts its rmap_items in stable nodes; general_profit = (pages_sharing + ksm_zero_pages) *
  PAGE_SIZE - rmap_items * sizeof(rmap_item), ksm_process_profit the same with the mm's own
  ksm_merging_pages.

Scan order is the capture's: processes in the order captured (ksmd visits mms in the order they
registered, which /proc does not show), VMAs and pages by address. It decides only which process
keeps a leftover page and which processes share which dup, never a global counter.

Pages already merged when captured are counted as the pages they map (a KSM page is read through
each mapping): the estimate is the state KSM settles to on this memory, the same whether it starts
merged or not. KSM zero pages mapped at capture time cannot be located (only the page table
marks them) and are counted as zero pages at the end of their process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine import cost as cm
from engine.capture import CAPTURED_REASONS, MERGEABLE, ZERO_ID, Capture, one_physical_page
from engine.ksm import SIZEOF_RMAP_ITEM, skip_age
from engine.timeline import ksmd_wakes_at

COUNTERS = ("pages_shared", "pages_sharing", "ksm_zero_pages", "stable_node_chains", "stable_node_dups",
            "general_profit", "full_scans")

# The kinds of cmp_and_merge_page() call on the way to the settled state, and the `ksmtui bench`
# workload that measures each on the real ksmd (None: not measured, always the cost model's).
PATHS = {
    "first_visit": "changing",  # checksum computed, differs from the stored one: return
    "unique": "unique",  # checksum, zero-page try, stable tree search, unstable walk, insert
    "merge": "unique",  # the same searches ending in a merge; measured as the unique path
    "zero_merge": None,  # use_zero_pages: merged with the zero page
    "ksm_page": "settled",  # a KSM page: the early return
}


def builtin_costs(page_size: int, stable_nodes: int, unstable_nodes: int,
                  profile: cm.CostProfile = cm.REFERENCE, pairs: float = 0.0) -> dict[str, float]:
    """ns per call of each path from the cost profile's constants (engine/cost.py), for trees of
    these sizes; pairs: the KSM pages made per page merged (the rest join one)."""
    c = profile.ns
    scale = page_size / 4096
    checksum, memcmp_equal = c["checksum_4k"] * scale, c["memcmp_equal_4k"] * scale
    # a level of the stable tree looks at its node's page through ksm_get_folio's keyhole, one of
    # the unstable tree gets its rmap_item's page with get_mergeable_page (engine/ksm.py)
    stable_level = c["stable_step"] + c["get_folio"] + c["memcmp_differ"]
    unstable_level = c["tree_step"] + c["mergeable_page"] + c["memcmp_differ"]
    stable_walk = math.log2(stable_nodes + 1) * stable_level
    unstable_walk = math.log2(unstable_nodes + 1) * unstable_level
    visit = c["scan_step"] + c["call"]
    unique = visit + checksum + stable_walk + unstable_walk + c["insert"]
    # a page joining a KSM page finds it in the stable tree; a KSM page is made by two pages that
    # each took the checksum and the unstable walk, the first inserted there, the second merging
    # and inserting the new stable node
    join = visit + stable_walk + memcmp_equal + c["merge"]
    pair = 2 * (checksum + unstable_walk + c["insert"]) + stable_walk - memcmp_equal
    return {
        "first_visit": visit + checksum,
        "unique": unique,
        "merge": join + pairs * pair,
        "zero_merge": visit + checksum + c["merge"] + memcmp_equal,
        "ksm_page": visit + c["ksm_early"],
    }


@dataclass
class Estimate:
    ksm: dict  # the settled counters by their sysfs names
    processes: dict  # pid -> ksm_stat-like dict, with "comm" and "shares_with"
    rmap_items: int
    pages: int  # pages ksmd scans (rmap_items before zero-page merges)
    cost: dict
    notes: list[str]
    page_size: int
    # with `groups`: name -> the group's processes (pids), the sums of their ksm_stat fields,
    # "ksm_pages" (KSM pages its processes map) and "shares_with" (group: KSM pages both map)
    groups: dict | None = None
    # with large folios (THPs) in scope: what merging does to them (_thp_summary); per process too,
    # as processes[pid]["thp"]
    thp: dict | None = None

    def as_json(self) -> dict:
        out = {"ksm": self.ksm, "processes": {str(pid): p for pid, p in self.processes.items()},
               "ksm_rmap_items": self.rmap_items, "cost": self.cost, "notes": self.notes}
        if self.thp is not None:
            out["thp"] = self.thp
        if self.groups is not None:
            out["groups"] = self.groups
        return out

    @property
    def saved_pages(self) -> int:
        """Pages of memory KSM frees: pages_sharing + ksm_zero_pages."""
        return int(self.ksm["pages_sharing"] + self.ksm["ksm_zero_pages"])


def _scanned_pages(capture: Capture, merge_any: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(content id, process index, shared frame, large folio or -1) of every page ksmd scans, in
    scan order."""
    reasons = np.asarray(CAPTURED_REASONS if merge_any else (MERGEABLE,), dtype=np.uint8)
    keep_vma = np.isin(capture.vma_reason, reasons)
    keep = np.repeat(keep_vma, capture.vma_count) & (capture.page_content >= 0)
    ids = capture.page_content[keep]
    procs = np.repeat(capture.vma_proc, capture.vma_count)[keep]
    frames = capture.page_frame[keep]
    folios = capture.page_folio[keep]
    extra = capture.proc_ksm_zero_pages
    if extra.any():  # KSM zero pages of capture time: zero pages at the end of their process
        at = np.repeat(np.searchsorted(procs, np.arange(len(extra)), side="right"), extra)
        ids = np.insert(ids, at, ZERO_ID)
        procs = np.insert(procs, at, np.repeat(np.arange(len(extra), dtype=procs.dtype), extra))
        frames = np.insert(frames, at, -1)
        folios = np.insert(folios, at, -1)
    return ids, procs, frames, folios


def _merge_ranks(cids: np.ndarray, top: int, M: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(copies per content, rank of each page among its content's copies in scan order, whether
    it ends in a KSM page) for candidate pages of content cids: rule 3 of docs/capture.md."""
    n = np.bincount(cids, minlength=top).astype(np.int64)
    order = _stable_order(cids, len(n))
    starts = np.cumsum(n) - n
    rank = np.empty(len(cids), np.int64)
    rank[order] = np.arange(len(cids), dtype=np.int64) - starts[cids[order]]
    nc = n[cids]
    merged = (nc >= 2) & ~((nc % M == 1) & (rank == nc - 1))
    return n, rank, merged


def thp_splits(keys: np.ndarray, is_zero: np.ndarray, folios: np.ndarray, nfolios: int, fork_only: np.ndarray,
               top: int, M: int, use_zero: bool, zero_only: bool = False) -> np.ndarray:
    """Which large folios (THPs) ksmd splits, per folio, for the scanned pages (content keys,
    zero-filled or not, their folio or -1, in scan order). docs/thp.md: a folio is split iff one
    of its subpages is about to merge (try_to_merge_one_page splits before write-protecting),
    whether the merge then succeeds or not:
    - a non-zero subpage that ends in a KSM page by the usual rule (another copy anywhere in the
      scope, the same folio included: finding 7), not the leftover copy a full dup leaves;
    - use_zero_pages=1: any zero-filled subpage (try_to_merge_with_zero_page, finding 5a);
    - use_zero_pages=0: two or more zero-filled subpages (they meet each other, finding 7); one,
      when it meets another zero-filled page: a small one anywhere (in the unstable tree or as
      KSM pages of zeros: every such folio splits, finding 5b and 5c), else another one-zero
      folio: the scanned one splits and the one in the tree stays (5c), so all but the first in
      scan order split. The model simplifies here: stale nodes (finding 8) and splits later in
      the same scan can let a later one meet the first before it is split; the estimate takes
      the scan order as if each split happened where its folio is scanned."""
    split = np.zeros(nfolios, bool)
    inf = folios >= 0
    if not inf.any():
        return split
    nz = ~is_zero & ~fork_only
    if not zero_only:
        merged = np.zeros(len(keys), bool)
        merged[nz] = _merge_ranks(keys[nz], top, M)[2]
        split[folios[inf & merged]] = True
    zf = inf & is_zero & ~fork_only
    if use_zero:
        split[folios[zf]] = True
        return split
    zeros_in = np.bincount(folios[zf], minlength=nfolios)
    split |= zeros_in >= 2
    one = np.flatnonzero(zf)
    one = one[(zeros_in[folios[one]] == 1) & ~split[folios[one]]]
    if len(one):
        small = is_zero & ~inf & ~fork_only
        k = keys[one]
        keep = np.zeros(len(one), bool)
        keep[np.unique(k, return_index=True)[1]] = True  # the first of each zero content (salted: per group)
        keep &= ~np.isin(k, keys[small])
        split[folios[one[~keep]]] = True
    return split


def estimate(capture: Capture, knobs: dict, merge_any: bool = False, measured: dict | None = None,
             measured_source: str = "", groups: tuple[list[str], np.ndarray] | None = None,
             salt: np.ndarray | None = None, zero_only: bool = False,
             profile: cm.CostProfile = cm.REFERENCE) -> Estimate:
    """The settled state under `knobs` (sysfs names; max_page_sharing, use_zero_pages,
    pages_to_scan, sleep_millisecs are used). merge_any: count the VMAs no one marked mergeable
    too, as if every process had set prctl(PR_SET_MEMORY_MERGE). measured: ns per page by `ksmtui
    bench` workload name, used where a path was measured.

    groups: (names, the group index of each process): the per-group sums and the sharing matrix
    between groups (Estimate.groups). salt: a group index per process, pages shared only within
    a group: as if each group's contents were salted, which is what ksmd settles to when it runs
    on one group at a time, summed (the zero page of use_zero_pages stays everyone's). zero_only:
    only zero-filled pages merge (every page still has its rmap_item: ksmd scans them all)."""
    ps = capture.page_size
    M = int(knobs["max_page_sharing"])
    use_zero = bool(knobs["use_zero_pages"])
    nprocs = len(capture.proc_pid)
    ids, procs, frames, folios = _scanned_pages(capture, merge_any)
    pages = len(ids)
    notes: list[str] = []

    is_zero = ids == ZERO_ID
    top = len(capture.hashes)
    if salt is not None:  # a content per (content, group): equal pages of two groups never meet
        salted = ids.astype(np.int64) * (int(np.max(salt, initial=0)) + 1) + np.asarray(salt, np.int64)[procs]
        uniq, inverse = np.unique(salted, return_inverse=True)
        ids, top = inverse.astype(np.int64).reshape(-1), max(len(uniq), 1)
    fork_only = one_physical_page(ids, frames, top)
    if fork_only.any():
        notes.append(f"{int(fork_only.sum()):,} pages map a physical page shared since fork by several "
                     "mappings and holding a content found nowhere else: KSM never merges those")

    # THPs: the folios merging splits; their zero-filled subpages become the shared zero page in
    # the split (finding 4), which ksmd never scans again: no rmap_item, no counter
    nfolios = len(capture.folio_pages)
    split = thp_splits(ids, is_zero, folios, nfolios, fork_only, top, M, use_zero, zero_only)
    in_folio = folios >= 0
    gone = is_zero & in_folio
    gone[in_folio] &= split[folios[in_folio]]
    thp = _thp_summary(capture, folios, procs, split, gone, nprocs) if in_folio.any() else None
    if gone.any():
        keep = ~gone
        columns = (ids, procs, frames, folios, is_zero, fork_only)
        ids, procs, frames, folios, is_zero, fork_only = (a[keep] for a in columns)

    zero_procs = procs[is_zero] if use_zero else procs[:0]
    ksm_zero = len(zero_procs)
    cand = (~is_zero if use_zero else np.ones(len(ids), bool)) & ~fork_only
    if zero_only:
        cand &= is_zero
    cids, cprocs = ids[cand], procs[cand]

    n, rank, merged = _merge_ranks(cids, top, M)
    shared_per = np.where(n >= 2, n // M + (n % M >= 2), 0)
    leftover_per = (n > 1) & (n % M == 1)
    sharing_per = np.where(n >= 2, n - shared_per - leftover_per, 0)
    pages_shared = int(shared_per.sum())
    pages_sharing = int(sharing_per.sum())
    chains = shared_per >= 2

    rmap_per_proc = np.bincount(procs, minlength=nprocs) - np.bincount(zero_procs, minlength=nprocs)
    zero_per_proc = np.bincount(zero_procs, minlength=nprocs)
    merging_per_proc = np.bincount(cprocs[merged], minlength=nprocs)
    rmap_items = len(ids) - ksm_zero
    general_profit = (pages_sharing + ksm_zero) * ps - rmap_items * SIZEOF_RMAP_ITEM
    matrix = _sharing_matrix(cids[merged], rank[merged] // M, cprocs[merged], nprocs)
    # physical pages mapped by several processes since fork (one frame): the reason two processes
    # with the same contents share no KSM page
    fork_frames = frames[fork_only]
    forked = _sharing_matrix(fork_frames, np.zeros(len(fork_frames), np.int64), procs[fork_only], nprocs)

    processes = {}
    for p, pid in enumerate(capture.proc_pid.tolist()):
        shares = {int(capture.proc_pid[q]): int(matrix[p, q]) for q in np.flatnonzero(matrix[p]).tolist() if q != p}
        processes[pid] = {
            "comm": str(capture.proc_comm[p]),
            "ksm_rmap_items": int(rmap_per_proc[p]),
            "ksm_zero_pages": int(zero_per_proc[p]),
            "ksm_merging_pages": int(merging_per_proc[p]),
            "ksm_process_profit": int((merging_per_proc[p] + zero_per_proc[p]) * ps
                                      - rmap_per_proc[p] * SIZEOF_RMAP_ITEM),
            "ksm_pages": int(matrix[p, p]),
            "shares_with": shares,
            "fork_shared": {"pages": int(forked[p, p]),
                            "with": {int(capture.proc_pid[q]): int(forked[p, q])
                                     for q in np.flatnonzero(forked[p]).tolist() if q != p}},
        }

    group_sums = None
    if groups is not None:
        names, of = groups[0], np.asarray(groups[1], np.int64)
        gm = _sharing_matrix(cids[merged], rank[merged] // M, of[cprocs[merged]], len(names))
        group_sums = {}
        for g, name in enumerate(names):
            members = np.flatnonzero(of == g)
            rmap_g, zero_g = int(rmap_per_proc[members].sum()), int(zero_per_proc[members].sum())
            merging_g = int(merging_per_proc[members].sum())
            group_sums[name] = {
                "processes": capture.proc_pid[members].tolist(),
                "ksm_rmap_items": rmap_g, "ksm_zero_pages": zero_g, "ksm_merging_pages": merging_g,
                "ksm_process_profit": (merging_g + zero_g) * ps - rmap_g * SIZEOF_RMAP_ITEM,
                "ksm_pages": int(gm[g, g]),
                "shares_with": {names[h]: int(gm[g, h]) for h in np.flatnonzero(gm[g]).tolist() if h != g},
            }

    # a split frees its zero subpages' rmap_items a scan later (finding 9), and two equal subpages
    # of one folio merge only in the scan after their split (finding 7)
    passes = 0 if pages == 0 else 3 if ksm_zero or split.any() else 2
    ksm = {
        "pages_shared": pages_shared, "pages_sharing": pages_sharing, "ksm_zero_pages": ksm_zero,
        "stable_node_chains": int(chains.sum()), "stable_node_dups": int(shared_per[chains].sum()),
        "general_profit": int(general_profit), "full_scans": passes,
    }
    unstable = int((n == 1).sum() + leftover_per.sum())
    pairs = pages_shared / max(int(merged.sum()), 1)
    costs, source = _costs(ps, pages_shared, max(unstable, 1), measured, measured_source, profile, pairs)
    per_pass = [{"first_visit": pages}] if pages else []
    unmerged = len(ids) - ksm_zero - int(merged.sum())
    if pages:  # the zero subpages of split folios: visited in pass 2 (the split), then gone
        per_pass.append({"zero_merge": ksm_zero, "merge": int(merged.sum()), "unique": unmerged + int(gone.sum())})
    if passes == 3:
        per_pass.append({"ksm_page": int(merged.sum()), "unique": unmerged})
    cost = _settle_cost(per_pass, costs, source, knobs, profile, (pages_shared, unstable))
    if pages and "not_merging" not in cost:
        cost["steady"] = _steady_cost(int(merged.sum()), unmerged, costs, knobs, profile, pages_shared)
    if int(knobs.get("merge_across_nodes", 1)) == 0 and int(capture.meta.get("numa_nodes", 1)) > 1:
        notes.append("merge_across_nodes=0 on a machine with several NUMA nodes: the capture does not record "
                     "pages' nodes, so the estimate merges across nodes")
    if thp is not None:
        for pid, t in zip(capture.proc_pid.tolist(), thp.pop("per_process"), strict=True):
            processes[pid]["thp"] = t
        notes += thp_notes(capture, thp, use_zero)
    return Estimate(ksm, processes, int(rmap_items), pages, cost, notes, ps, group_sums, thp)


def _thp_summary(capture: Capture, folios: np.ndarray, procs: np.ndarray, split: np.ndarray, gone: np.ndarray,
                 nprocs: int) -> dict:
    """What merging does to the large folios in scope, in all and per process: huge_pages (large
    folios), split (those merging splits), thp_split_page (the PMD-sized ones among them: what
    /proc/vmstat's counter rises by), split_zero_pages (their zero-filled subpages, which the split
    maps to the shared zero page: memory freed that no KSM counter counts)."""
    inf = folios >= 0
    present = np.zeros(len(split), bool)
    present[folios[inf]] = True
    owner = np.zeros(len(split), np.int64)
    owner[folios[inf][::-1]] = procs[inf][::-1]  # a folio's process: its first page's
    pmd = capture.folio_pages == capture.pmd_pages
    per_process = []
    for p in range(nprocs):
        mine = present & (owner == p)
        per_process.append({"huge_pages": int(mine.sum()), "split": int((mine & split).sum()),
                            "thp_split_page": int((mine & split & pmd).sum()),
                            "split_zero_pages": int(gone[procs == p].sum())})
    return {"huge_pages": int(present.sum()), "split": int((present & split).sum()),
            "thp_split_page": int((present & split & pmd).sum()), "split_zero_pages": int(gone.sum()),
            "per_process": per_process, "_split_folios": np.flatnonzero(present & split)}


def thp_notes(capture: Capture, thp: dict, use_zero: bool) -> list[str]:
    """What the estimate leaves out of THP, said when it matters."""
    split_folios = thp.pop("_split_folios")
    if not thp["huge_pages"]:
        return []
    settings = capture.meta.get("thp", {})
    page_vma = np.repeat(np.arange(len(capture.vma_start)), capture.vma_count)
    vmas = np.unique(page_vma[np.isin(capture.page_folio, split_folios)])
    notes = []
    eligible = capture.vma_thp_eligible[vmas]
    if len(vmas) and (eligible != 0).any() and settings.get("enabled", "") != "never":
        notes.append(f"{thp['split']:,} huge pages split by merging lie where khugepaged may collapse them back "
                     "(THPeligible 1, or unknown); ksmd then splits them again: the estimate is the state before "
                     "khugepaged comes round, and does not model it (nor the deferred-split shrinker)")
    locked = [i for i in vmas.tolist() if "lo" in str(capture.vma_flags[i]).split()]
    if locked:
        notes.append(f"{len(locked):,} VMAs with huge pages merging splits are mlocked: the split leaves their "
                     "zero-filled subpages in place there (no shared zero page), which the estimate does not model")
    return notes


def _costs(ps: int, stable: int, unstable: int, measured: dict | None, source: str,
           profile: cm.CostProfile, pairs: float) -> tuple[dict, dict]:
    costs = builtin_costs(ps, stable, unstable, profile, pairs)
    used = {path: "cost model" for path in costs}
    for path, workload in PATHS.items():
        if measured and workload and measured.get(workload):
            costs[path] = float(measured[workload])
            used[path] = f"measured ({workload})"
    return costs, {"paths": used, "measured": source if any(v != "cost model" for v in used.values()) else "",
                   "profile": profile.label}


def not_merging(knobs: dict) -> str | None:
    """Why ksmd merges nothing under these knobs (None: it scans and merges)."""
    run = int(knobs.get("run", 1))
    if run == 0:
        return "ksmd is not running (run 0): nothing is scanned and nothing merges"
    if run == 2:
        return "ksmd unmerges every KSM page and stops (run 2): nothing stays merged"
    knob = "advisor_min_pages_to_scan" if knobs.get("advisor_mode", "none") != "none" else "pages_to_scan"
    if int(knobs[knob]) == 0:
        return f"ksmd wakes every sleep_millisecs but scans nothing ({knob} 0): nothing merges"
    return None


def cold_entries(walks: float, nodes: int) -> float:
    """How many entries of a balanced tree of `nodes` a batch of `walks` random root-to-leaf walks
    reads, each cold the first time (engine/cost.py TREE_COLD): an entry of level k, one of 2**k,
    is on a walk's path with chance 2**-k."""
    total, width, left = 0.0, 1, nodes
    while left > 0 and walks > 0:
        level = min(width, left)
        total += level * (1 - (1 - 1 / level) ** walks)
        left -= level
        width *= 2
    return total


def _wakeup_ns(profile: cm.CostProfile, trees: tuple[tuple[float, int, int], ...]) -> float:
    """A wake-up's own cost and its cold tree entries: per tree, (walks a wake-up makes, its first
    size and its last) over a pass in which it grows, taken at the mean over the pass (the unstable
    tree is rebuilt from empty every pass, the stable tree fills in the pass that merges)."""
    cold = sum(cold_entries(walks, first + (last - first) * (2 * k + 1) // 16) for walks, first, last in trees
               for k in range(8)) / 8
    return profile.ns["wakeup"] + profile.ns["tree_cold"] * cold


def _settle_cost(per_pass: list[dict], costs: dict, source: dict, knobs: dict, profile: cm.CostProfile,
                 trees: tuple[int, int]) -> dict:
    """trees: the stable and the unstable tree's sizes once settled."""
    pts, sleep_ms = int(knobs["pages_to_scan"]), int(knobs["sleep_millisecs"])
    passes: list[dict] = []
    out = {"full_scans": len(per_pass), "ns_per_page": {k: round(v) for k, v in costs.items()},
           "costs": source, "passes": passes}
    if knobs.get("advisor_mode", "none") != "none":
        # The model does not run the advisor here: it times the passes at the pages_to_scan the
        # advisor starts from (the kernel sets advisor_min_pages_to_scan when advisor_mode is
        # written, as engine.sim does), which the advisor raises when a pass is too slow.
        pts = int(knobs["advisor_min_pages_to_scan"])
        out["advisor"] = (f"advisor_mode scan-time sets pages_to_scan as ksmd goes (between "
                          f"advisor_min_pages_to_scan {pts:,} and advisor_max_pages_to_scan "
                          f"{int(knobs['advisor_max_pages_to_scan']):,}, aiming at a full scan in "
                          f"advisor_target_scan_time {knobs['advisor_target_scan_time']} s); these times "
                          f"assume it stays at {pts:,}, where the advisor starts")
    out["pages_to_scan"] = pts
    reason = not_merging(knobs)
    if reason is not None and per_pass:
        out.update(wall_s=None, ksmd_cpu_s=None, not_merging=reason, full_scans=0)
        return out
    wall_ns = cpu_total = 0.0
    for calls in per_pass:
        pages = sum(calls.values())
        batches = pages // pts + 1  # the batch that meets the end of the pass stops there
        work = sum(costs[path] * k for path, k in calls.items())
        # every unique page and merge walks the stable tree; the unstable tree, the unique pages
        # and both pages of each pair that makes a KSM page (a page joining one finds it in the
        # stable tree)
        stable, unstable = trees
        unique, merge = calls.get("unique", 0), calls.get("merge", 0)
        first = len(passes) == 1  # the pass after the first fills the stable tree
        grow = (((unique + merge) / batches, 0 if first else stable, stable),
                ((unique + (min(2 * stable, merge) if first else 0)) / batches, 0, unstable))
        cpu = work + batches * _wakeup_ns(profile, grow)
        # each wake-up: its scan, then the sleep to the tick its timer fires on (engine/timeline.py),
        # its batches taken as equally long; and ksmd's mean wait for a CPU (engine/sim.py _end_batch)
        wall = batches * ksmd_wakes_at(int(cpu / batches), sleep_ms, profile.hz) + cpu * profile.wait_per_cpu
        passes.append({"pages": pages, "calls": calls, "batches": batches,
                              "ksmd_cpu_s": round(cpu / 1e9, 3), "wall_s": round(wall / 1e9, 3)})
        wall_ns += wall
        cpu_total += cpu
    out.update(wall_s=round(wall_ns / 1e9, 3), ksmd_cpu_s=round(cpu_total / 1e9, 3),
               cpu_share=round(cpu_total / wall_ns, 4) if wall_ns else 0.0)
    return out


def _steady_cost(ksm_pages: int, unmerged: int, costs: dict, knobs: dict, profile: cm.CostProfile,
                 stable: int) -> dict:
    """ksmd's CPU once settled (modelled): every pass visits each page with an rmap_item, a KSM
    page by its early return, an unmerged one by the whole unique path; with smart_scan an
    unmerged page's age saturates and it is tried one pass in skip_age + 1 (skipped in the others,
    at the scan step's cost, without taking a pages_to_scan slot: scan_get_next_rmap_item moves on
    to the next page). Zero pages merged with use_zero_pages have no rmap_item and are not visited."""
    pts = int(knobs["advisor_min_pages_to_scan"] if knobs.get("advisor_mode", "none") != "none"
              else knobs["pages_to_scan"])
    sleep_ms = int(knobs["sleep_millisecs"])
    every = skip_age(255) + 1 if int(knobs.get("smart_scan", 1)) else 1
    tried = unmerged / every
    skipped = unmerged - tried
    visits = ksm_pages + tried
    batches = visits // pts + 1
    work = costs["ksm_page"] * ksm_pages + costs["unique"] * tried + profile.ns["scan_step"] * skipped
    cpu = work + batches * _wakeup_ns(profile, ((tried / batches, stable, stable), (tried / batches, 0, int(tried))))
    # paced as _settle_cost paces a pass: jiffies, ticks, and the profile's mean wait for a CPU
    wall = batches * ksmd_wakes_at(int(cpu / batches), sleep_ms, profile.hz) + cpu * profile.wait_per_cpu
    return {"pages": ksm_pages + unmerged, "ksm_pages": ksm_pages, "unmerged_pages": unmerged,
            "unmerged_tried_every": every, "pass_wall_s": round(wall / 1e9, 3), "pass_cpu_s": round(cpu / 1e9, 4),
            "cpu_share": round(cpu / wall, 4), "modelled": True}


def _stable_order(keys: np.ndarray, top: int) -> np.ndarray:
    """argsort(keys, kind="stable") for keys in [0, top): one sort of key * len + position when
    that fits in 63 bits (numpy's vectorised sort of int64 is several times faster)."""
    n = len(keys)
    shift = max(n, 1).bit_length()
    if max(top, 1).bit_length() + shift > 63:
        return np.argsort(keys, kind="stable")
    combined = (keys.astype(np.int64) << shift) | np.arange(n, dtype=np.int64)
    combined.sort()
    return combined & ((1 << shift) - 1)


def _sharing_matrix(cids: np.ndarray, dup: np.ndarray, procs: np.ndarray, nprocs: int) -> np.ndarray:
    """matrix[i, j]: KSM pages that processes i and j both map (the diagonal: KSM pages i maps)."""
    matrix = np.zeros((nprocs, nprocs), np.int64)
    if not len(cids):
        return matrix
    key = cids.astype(np.int64) * (int(dup.max()) + 1) + dup
    if int(key.max()) < (1 << 62) // max(nprocs, 1):
        kp = key * nprocs + procs
        kp.sort()  # a sort and a diff: np.unique hashes, many times slower on 10^7 int64
        kp = kp[np.r_[True, kp[1:] != kp[:-1]]]
    else:
        kp = np.unique(np.stack([key, procs.astype(np.int64)], axis=1), axis=0) @ np.array([nprocs, 1])
    k, p = kp // nprocs, kp % nprocs  # distinct (KSM page, process) pairs, by KSM page
    np.add.at(matrix, (p, p), 1)
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    sizes = np.diff(np.r_[starts, len(k)])
    multi = sizes >= 2
    if not multi.any():
        return matrix
    # KSM pages mapped by the same set of processes count once, weighted: a set's signature is the
    # sum of random 64-bit tags of its processes (two tags, so that a collision is beyond reach)
    rng = np.random.default_rng(0)
    tags = rng.integers(0, 2**63, size=(2, nprocs), dtype=np.int64).astype(np.uint64)
    sig_a = np.add.reduceat(tags[0][p], starts)[multi]
    sig_b = np.add.reduceat(tags[1][p], starts)[multi]
    sigs = np.stack([sig_a, sig_b], axis=1)
    _, rep, weight = np.unique(sigs, axis=0, return_index=True, return_counts=True)
    rep_starts, rep_sizes = starts[multi][rep], sizes[multi][rep]
    sq = rep_sizes * rep_sizes
    total = int(sq.sum())
    g = np.repeat(np.arange(len(rep)), sq)
    within = np.arange(total) - np.repeat(np.cumsum(sq) - sq, sq)
    size_g = rep_sizes[g]
    a = p[rep_starts[g] + within // size_g]
    b = p[rep_starts[g] + within % size_g]
    off = a != b
    flat = np.bincount(a[off] * nprocs + b[off], weights=weight[g][off], minlength=nprocs * nprocs)
    return matrix + flat.reshape(nprocs, nprocs).astype(np.int64)
