"""Invariants of the model, recomputed from its structures (for tests and `--check` runs).

Every counter ksmd reports must equal what its structures hold, the stable tree must be ordered,
every KSM page must be reachable from its stable node, and mapcounts must match page tables.
"""

from __future__ import annotations

from engine.ksm import (
    MIGRATE_NODES,
    SEQNR_MASK,
    STABLE_FLAG,
    STABLE_NODE_DUP_HEAD,
    UNSTABLE_FLAG,
    is_stable_node_chain,
)
from engine.machine import NO_PFN, ZERO_PFN


def check_invariants(sim) -> None:
    """Raise AssertionError naming the first broken invariant."""
    ksm, machine = sim.ksm, sim.machine

    # rmap_items: sorted lists, counted per mm and globally
    items = []
    per_mm_items: dict = {}
    for slot in ksm.registered_slots():
        prev = -1
        item = slot.rmap_list
        while item is not None:
            assert item.address > prev, f"{slot.mm.name}: rmap_list not sorted at {item.address:#x}"
            assert item.mm is slot.mm
            prev = item.address
            items.append(item)
            per_mm_items[slot.mm] = per_mm_items.get(slot.mm, 0) + 1
            item = item.rmap_list
    assert len(items) == ksm.ksm_rmap_items, f"ksm_rmap_items {ksm.ksm_rmap_items} != {len(items)} items"
    for mm in machine.mms:
        if mm.ksm_slot is not None or mm.ksm_rmap_items:
            assert mm.ksm_rmap_items == per_mm_items.get(mm, 0), f"{mm.name}: ksm_rmap_items"

    # stable nodes: accounting, chains, ordering
    nodes = []
    chains = dups = 0
    for nid, root in enumerate(ksm.root_stable_tree):
        last = None
        for node in root:
            assert node.head is None and node.nid == nid
            if is_stable_node_chain(node):
                chains += 1
                # a chain whose last dup went stale stays until a stable tree walk frees it
                for dup in node.dups:
                    assert dup.head == STABLE_NODE_DUP_HEAD and dup.chain is node
                    dups += 1
                    nodes.append(dup)
                live = [d for d in node.dups if machine.ksm_mapping.get(d.kpfn) is d]
            else:
                nodes.append(node)
                live = [node] if machine.ksm_mapping.get(node.kpfn) is node else []
            contents = {machine.content[d.kpfn] for d in live}
            assert len(contents) <= 1, "dups of one chain differ in content"
            if contents:
                content = contents.pop()
                assert last is None or last < content, "stable tree out of order"
                last = content
    for node in ksm.migrate_nodes:
        assert node.head == MIGRATE_NODES
        nodes.append(node)
    assert chains == ksm.ksm_stable_node_chains, f"stable_node_chains {ksm.ksm_stable_node_chains} != {chains}"
    assert dups == ksm.ksm_stable_node_dups, f"stable_node_dups {ksm.ksm_stable_node_dups} != {dups}"

    lens: dict = {}
    for node in nodes:
        lens[node.rmap_hlist_len] = lens.get(node.rmap_hlist_len, 0) + 1
    assert lens == ksm.hlist_lens, f"hlist_lens {ksm.hlist_lens} != {lens}"
    assert len(ksm.chains) == chains

    shared = sharing = 0
    merging: dict = {}
    for node in nodes:
        assert node.rmap_hlist_len == len(node.hlist), "rmap_hlist_len != hlist length"
        for item in node.hlist:
            assert item.head is node and item.flags == STABLE_FLAG
            merging[item.mm] = merging.get(item.mm, 0) + 1
        if node.hlist:
            shared += 1
            sharing += len(node.hlist) - 1
    assert shared == ksm.ksm_pages_shared, f"pages_shared {ksm.ksm_pages_shared} != {shared}"
    assert sharing == ksm.ksm_pages_sharing, f"pages_sharing {ksm.ksm_pages_sharing} != {sharing}"
    for mm in machine.mms:
        assert mm.ksm_merging_pages == merging.get(mm, 0), f"{mm.name}: ksm_merging_pages"
    node_set = set(nodes)
    for item in items:
        if item.flags & STABLE_FLAG:
            assert item.head in node_set, "stable rmap_item on a node that is not in any tree"

    # every KSM page with a node is reachable from it
    for pfn, node in machine.ksm_mapping.items():
        assert node is not None, "KSM page left half merged"
        assert node in node_set and node.kpfn == pfn, f"KSM page {pfn} unreachable from its node"

    # unstable items
    unshared = 0
    for item in items:
        if item.flags & UNSTABLE_FLAG:
            unshared += 1
            assert (ksm.ksm_scan.seqnr - (item.flags & SEQNR_MASK)) & 0xFF <= 1
    assert unshared == ksm.ksm_pages_unshared, f"pages_unshared {ksm.ksm_pages_unshared} != {unshared}"
    in_tree = sum(root.count for root in ksm.root_unstable_tree)
    assert in_tree <= unshared

    # page tables against frames and the eager zero-page counters
    mapcount: dict = {}
    zeros_total = 0
    for mm in machine.mms:
        zeros = 0
        for vma in mm.vmas:
            for pfn in vma.pte:
                if pfn == ZERO_PFN:
                    zeros += 1
                elif pfn > ZERO_PFN:
                    mapcount[pfn] = mapcount.get(pfn, 0) + 1
        if mm.alive:
            assert zeros == mm.ksm_zero_pages, f"{mm.name}: ksm_zero_pages {mm.ksm_zero_pages} != {zeros}"
        zeros_total += zeros
    assert zeros_total == ksm.ksm_zero_pages, f"ksm_zero_pages {ksm.ksm_zero_pages} != {zeros_total}"
    for pfn in range(1, len(machine.content)):
        assert machine.mapcount[pfn] == mapcount.get(pfn, 0), f"frame {pfn}: mapcount"

    # large folios: each subpage a live frame of its folio, never a KSM page (ksmd splits first)
    assert not machine.held_frames, "a frame ksmd held outlived its cmp_and_merge_page call"
    in_folios = 0
    for fid, folio in machine.folios.items():
        live = [pfn for pfn in folio.pfns if machine.frame_folio[pfn] == fid]
        assert len(live) == folio.live > 0, f"folio {fid}: live subpages"
        in_folios += len(live)
        for pfn in live:
            assert machine.mapcount[pfn] > 0 and pfn not in machine.ksm_mapping, f"folio {fid}: frame {pfn}"
    assert in_folios == sum(1 for f in machine.frame_folio if f), "frames of folios that are gone"

    # state the hot paths keep instead of recomputing it
    for mm in machine.mms:
        mapped = sum(len(v.pte) - v.pte.count(NO_PFN) for v in mm.vmas)
        assert mm.mapped_pages == mapped, f"{mm.name}: mapped_pages {mm.mapped_pages} != {mapped}"
    for pfn in mapcount:
        assert machine.frame_prefix[pfn] == int.from_bytes(machine.content[pfn][:8], "big"), f"frame {pfn}: prefix"
    for item in items:
        if item.mm.alive:
            vma = item.vma
            assert vma in item.mm.vmas and vma.vm_start <= item.address < vma.vm_end, "rmap_item's cached VMA"
