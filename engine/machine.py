"""The simulated machine under ksmd: physical frames, processes (mm), VMAs and page tables.

Frames hold immutable `bytes` contents by reference (a page used a million times costs its bytes
once); frame 0 is the zero page. A frame's refcount is its mapcount: the model runs one thread, so
no GUP pin, LRU cache or swap cache ever holds an extra reference, and write_protect_page's
"mapcount + 1 == refcount" check always passes.

Transparent huge pages: a region may be backed by large folios (Folio): PMD-sized ones, one per
aligned extent of hpage_pmd_nr pages, or a capture's, where and as large as they were; each subpage
is its own frame. The model keeps them only as ksmd meets
them in 6.18 (docs/thp.md): a folio stays one until split_huge_page, which sends every zero-filled
subpage to the shared zero page (a clean pte, SPLIT_ZERO_PFN: no KSM zero page) and leaves the
others order-0 pages. Model simplifications, said here once: khugepaged never collapses a range
back into a folio (the real runs keep it away with MADV_NOHUGEPAGE, docs/thp.md finding 12); the
deferred-split shrinker never runs (at default settings it splits nothing, finding 13); a subpage
unmapped from every process is freed at once, where the kernel frees the folio's 2 MiB only with
its last subpage; a folio is always mapped whole, by a PMD or, after fork and a COW, by PTEs, the
difference being invisible to ksmd (it splits the folio either way).

KSM hooks sit where the kernel has them: COW of a KSM page and of a KSM zero page
(do_wp_page, ksm_might_unmap_zero_page), ksm_fork, ksm_exit, madvise and prctl. The machine calls
them through `hooks` (KsmHooks), set by whoever puts a ksmd on the machine (engine/sim.py).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Sequence
from typing import Protocol

ZERO_PFN = 0  # the zero page as KSM maps it (a dirty special pte): counted in ksm_zero_pages
NO_PFN = -1
# the zero page as a THP split maps it for a zero-filled subpage (a clean special pte,
# try_to_map_unused_to_zeropage): not KSM's, counted nowhere in KSM, never scanned
SPLIT_ZERO_PFN = -2
VMA_BASE = 0x7F0000000000  # where a process's first region starts


class KsmHooks(Protocol):
    """mm/ksm.c's entry points from the rest of mm: what the machine calls when it changes."""

    def ksm_enter(self, mm: "MM") -> None: ...  # __ksm_enter: madvise(MERGEABLE), prctl
    def ksm_fork(self, child: "MM", parent: "MM") -> None: ...
    def ksm_exit(self, mm: "MM") -> None: ...
    def ksm_might_unmap_zero_page(self, mm: "MM") -> None: ...  # a KSM zero page's PTE goes
    def unmerge_ksm_pages(self, vma: "VMA") -> None: ...  # madvise(UNMERGEABLE), prctl off


class VMA:
    """One region: a private anonymous mapping, filled at creation (so it always has an anon_vma)."""

    __slots__ = ("mm", "name", "vm_start", "vm_end", "vm_mergeable", "anon_vma", "pte", "written")

    def __init__(self, mm: "MM", name: str, vm_start: int, npages: int, page_size: int):
        self.mm = mm
        self.name = name
        self.vm_start = vm_start
        self.vm_end = vm_start + npages * page_size
        self.vm_mergeable = False
        self.anon_vma = True
        self.pte = array("q", [NO_PFN]) * npages  # pfn per page; ZERO_PFN a KSM zero page, SPLIT_ZERO_PFN a split's
        self.written: list[bytes] = [b""] * npages  # what this process last wrote, for data_check


def _vm_end(vma: VMA) -> int:
    return vma.vm_end


class Folio:
    """A large folio (a THP: PMD-sized, or a capture's of any size) until split: its subpages'
    frames in address order, and the VMAs that map it, all at the same page index (fork copies
    the mapping; nothing moves VMAs)."""

    __slots__ = ("fid", "index", "pfns", "vmas", "live")

    def __init__(self, fid: int, vma: VMA, index: int, pfns: list[int]):
        self.fid = fid
        self.index = index  # the page index of its first subpage in each VMA mapping it
        self.pfns = pfns
        self.vmas = [vma]
        self.live = len(pfns)  # subpages whose frame is still the folio's


class MM:
    __slots__ = (
        "pid", "name", "node", "vmas", "alive", "mapped_pages", "mmf_vm_mergeable", "mmf_vm_merge_any",
        "ksm_rmap_items", "ksm_merging_pages", "ksm_zero_pages", "ksm_slot",
    )

    def __init__(self, pid: int, name: str, node: int):
        self.pid = pid
        self.name = name
        self.node = node
        self.vmas: list[VMA] = []
        self.alive = True  # False once exited: mm_users == 0, ksmd drops it when it comes by
        self.mapped_pages = 0  # PTEs mapping a page (the zero page included), kept as they change
        self.mmf_vm_mergeable = False
        self.mmf_vm_merge_any = False
        self.ksm_rmap_items = 0
        self.ksm_merging_pages = 0
        self.ksm_zero_pages = 0
        self.ksm_slot: object = None  # mm_slots_hash: the mm's ksm_mm_slot while registered (engine/ksm.py)

    def first_vma(self, address: int) -> int:
        """Index of the first VMA ending above address, as vma_iter_init() finds it in the maple
        tree: a lookup, not a walk, so that scanning a process of 30,000 VMAs is not quadratic
        (VMAs are added at increasing addresses and never move)."""
        vmas = self.vmas
        if not vmas or vmas[0].vm_end > address:
            return 0
        return bisect_right(vmas, address, key=_vm_end)

    def find_vma(self, address: int) -> VMA | None:
        vmas = self.vmas
        i = self.first_vma(address)
        if i < len(vmas) and vmas[i].vm_start <= address:
            return vmas[i]
        return None

    def region(self, name: str) -> VMA:
        for vma in self.vmas:
            if vma.name == name:
                return vma
        raise KeyError(name)


class Machine:
    def __init__(self, page_size: int, numa_nodes: int):
        self.page_size = page_size
        self.numa_nodes = numa_nodes
        self.zero_page = bytes(page_size)
        self.content: list[bytes] = [self.zero_page]  # per frame
        # the first 8 bytes of each frame's content, big-endian: they order two different pages
        # as memcmp does, nearly always, without a cache miss on either page
        self.frame_prefix = array("Q", [0])
        self.mapcount = array("q", [1])  # the zero page is never freed
        self.frame_nid = array("b", [0])
        # page->mapping of KSM pages: frame -> its stable_node (None while half merged)
        self.ksm_mapping: dict[int, object] = {}
        self.free_frames = array("q")  # 8 bytes a frame: merging frees most of a settled machine's
        self.mms: list[MM] = []
        self.next_pid = 1001
        # PMD-sized folios: PTRS_PER_PTE pages (512 of 4 KiB: 2 MiB)
        self.hpage_pmd_nr = page_size // 8
        self.frame_folio = array("q", [0])  # per frame: its folio's fid, 0 for an order-0 page
        self.folios: dict[int, Folio] = {}
        self.next_fid = 1
        # /proc/vmstat's thp_split_page and thp_split_page_failed (of PMD-sized folios only)
        self.thp_split_page = 0
        self.thp_split_page_failed = 0
        # frames ksmd holds a reference to (the page in cmp_and_merge_page) whose last mapping a
        # split removed: freed when ksmd puts its reference, at the end of the call
        self.held_frames: list[int] = []
        self.hooks: KsmHooks  # set by the builder once the KSM that watches this machine exists

    # -- frames ---------------------------------------------------------------------------

    def alloc_frame(self, data: bytes, nid: int) -> int:
        if self.free_frames:
            pfn = self.free_frames.pop()
            self.content[pfn] = data
            self.frame_prefix[pfn] = int.from_bytes(data[:8], "big")
            self.mapcount[pfn] = 0
            self.frame_nid[pfn] = nid
            return pfn
        self.content.append(data)
        self.frame_prefix.append(int.from_bytes(data[:8], "big"))
        self.mapcount.append(0)
        self.frame_nid.append(nid)
        self.frame_folio.append(0)
        return len(self.content) - 1

    def put_frame(self, pfn: int) -> None:
        """Drop one mapping; the last one frees the frame (a freed KSM page leaves its node stale)."""
        self.mapcount[pfn] -= 1
        if self.mapcount[pfn] == 0:
            self._free_frame(pfn)

    def _free_frame(self, pfn: int) -> None:
        self.ksm_mapping.pop(pfn, None)
        if self.frame_folio[pfn]:
            self._folio_subpage_gone(pfn)
        self.content[pfn] = b""
        self.free_frames.append(pfn)

    def release_held_frames(self) -> None:
        """ksmd's put_page of pages a split unmapped while it held them."""
        for pfn in self.held_frames:
            self._free_frame(pfn)
        self.held_frames.clear()

    def is_ksm_page(self, pfn: int) -> bool:
        return pfn in self.ksm_mapping

    # -- large folios ---------------------------------------------------------------------

    def _folio_subpage_gone(self, pfn: int) -> None:
        fid = self.frame_folio[pfn]
        self.frame_folio[pfn] = 0
        folio = self.folios[fid]
        folio.live -= 1
        if not folio.live:
            del self.folios[fid]

    def folio_test_large(self, pfn: int) -> bool:
        return self.frame_folio[pfn] != 0

    def split_huge_page(self, pfn: int, held: tuple[int, ...], extra_ref: bool = False,
                        remap_zero: bool = True) -> bool:
        """split_huge_page(page) of the folio holding pfn (mm/huge_memory.c __folio_split): False,
        counted in thp_split_page_failed, when a reference the caller holds besides its own
        (extra_ref: ksmd's second page of the same folio) makes the refcount check fail.
        remap_page with RMP_USE_SHARED_ZEROPAGE then maps every zero-filled subpage, in every VMA
        mapping it, to the shared zero page (try_to_map_unused_to_zeropage; no VM_LOCKED in the
        model) and frees it; `held` are frames ksmd holds, freed only at release_held_frames.
        remap_zero False: before 6.12 (b1f202060afe), zero-filled subpages stay order-0 pages."""
        fid = self.frame_folio[pfn]
        pmd = len(self.folios[fid].pfns) == self.hpage_pmd_nr  # vmstat counts HPAGE_PMD_ORDER splits only
        if extra_ref:
            self.thp_split_page_failed += pmd
            return False
        folio = self.folios.pop(fid)
        self.thp_split_page += pmd
        content = self.content
        zero = self.zero_page
        frame_folio = self.frame_folio
        for i, sub in enumerate(folio.pfns):
            if frame_folio[sub] != fid:
                continue  # freed since (and maybe reused)
            frame_folio[sub] = 0
            if not remap_zero or content[sub] != zero:
                continue
            index = folio.index + i
            for vma in folio.vmas:
                if vma.pte[index] == sub:
                    vma.pte[index] = SPLIT_ZERO_PFN
                    self.mapcount[sub] -= 1
            if self.mapcount[sub] == 0:
                if sub in held:
                    self.held_frames.append(sub)
                else:
                    self._free_frame(sub)
        return True


    # -- processes ------------------------------------------------------------------------

    def new_mm(self, name: str, node: int) -> MM:
        mm = MM(self.next_pid, name, node)
        self.next_pid += 1
        self.mms.append(mm)
        return mm

    def add_region(self, mm: MM, name: str, pages: list[bytes], folios: Sequence[tuple[int, int]] = ()) -> VMA:
        """A region filled with pages; `folios` lists its large folios as (first page, pages),
        counted from its start: THPs of a `thp` share, hpage_pmd_nr pages at multiples of it, or
        a capture's, anywhere and of any size (a folio's subpages are consecutive pages). A region
        with folios starts PMD-aligned, as the kernel's THP fault needs (the real runner aligns it
        the same way); nothing in the model depends on where a folio lies."""
        start = mm.vmas[-1].vm_end + self.page_size if mm.vmas else VMA_BASE
        if folios:
            align = self.hpage_pmd_nr * self.page_size
            start = (start + align - 1) // align * align
        vma = VMA(mm, name, start, len(pages), self.page_size)
        for i, data in enumerate(pages):
            pfn = self.alloc_frame(data, mm.node)
            self.mapcount[pfn] = 1
            vma.pte[i] = pfn
            vma.written[i] = data
        for first, size in folios:
            fid = self.next_fid
            self.next_fid += 1
            pfns = list(vma.pte[first:first + size])
            for pfn in pfns:
                self.frame_folio[pfn] = fid
            self.folios[fid] = Folio(fid, vma, first, pfns)
        mm.mapped_pages += len(pages)
        mm.vmas.append(vma)
        if mm.mmf_vm_merge_any:
            vma.vm_mergeable = True
        return vma

    def write(self, vma: VMA, index: int, data: bytes) -> None:
        """A store to every byte of the page: copy-on-write first unless the frame is private."""
        pfn = vma.pte[index]
        vma.written[index] = data
        if pfn == ZERO_PFN:
            # wp_page_copy replacing a KSM zero page: ksm_might_unmap_zero_page
            self.hooks.ksm_might_unmap_zero_page(vma.mm)
        elif pfn == SPLIT_ZERO_PFN:
            pass  # wp_page_copy of the shared zero page: a new page, nothing of KSM's
        elif self.mapcount[pfn] == 1 and pfn not in self.ksm_mapping:
            # an exclusive THP subpage too: written in place, its folio stays huge
            self.content[pfn] = data  # exclusive anon page: reused in place
            self.frame_prefix[pfn] = int.from_bytes(data[:8], "big")
            return
        else:
            # KSM pages are never reused, always copied (cow_ksm); a page shared by fork is copied
            # (a THP shared by fork too: its PMD is split, the subpage copied, the folio stays)
            self.put_frame(pfn)
        new = self.alloc_frame(data, vma.mm.node)
        self.mapcount[new] = 1
        vma.pte[index] = new

    def unshare(self, vma: VMA, index: int) -> None:
        """A fault with FAULT_FLAG_UNSHARE (break_ksm's): a KSM page or KSM zero page at this
        address is swapped for a private copy; any other page stays."""
        pfn = vma.pte[index]
        if pfn == ZERO_PFN:
            self.hooks.ksm_might_unmap_zero_page(vma.mm)
            data = self.zero_page
        elif pfn in self.ksm_mapping:
            data = self.content[pfn]
            self.put_frame(pfn)
        else:
            return
        new = self.alloc_frame(data, vma.mm.node)
        self.mapcount[new] = 1
        vma.pte[index] = new

    def fork(self, parent: MM, child_name: str) -> MM:
        child = self.new_mm(child_name, parent.node)
        child.mmf_vm_merge_any = parent.mmf_vm_merge_any
        for pvma in parent.vmas:
            vma = VMA(child, pvma.name, pvma.vm_start, len(pvma.pte), self.page_size)
            vma.vm_mergeable = pvma.vm_mergeable
            vma.pte = array("q", pvma.pte)
            vma.written = list(pvma.written)
            for pfn in pvma.pte:
                if pfn > ZERO_PFN:
                    self.mapcount[pfn] += 1
            if self.folios:  # the child maps its parent's THPs (copy_huge_pmd)
                frame_folio = self.frame_folio
                for fid in {frame_folio[pfn] for pfn in pvma.pte if pfn > ZERO_PFN} - {0}:
                    self.folios[fid].vmas.append(vma)
            child.vmas.append(vma)
        child.mapped_pages = parent.mapped_pages
        # KSM zero pages are inherited as dirty zero PTEs; 6.18's ksm_fork counts them again globally
        child.ksm_zero_pages = parent.ksm_zero_pages
        self.hooks.ksm_fork(child, parent)
        return child

    def exit(self, mm: MM) -> None:
        self.hooks.ksm_exit(mm)
        for vma in mm.vmas:
            self._zap(vma)
        mm.vmas = []
        mm.alive = False

    def _zap(self, vma: VMA) -> None:
        for i, pfn in enumerate(vma.pte):
            if pfn == ZERO_PFN:
                self.hooks.ksm_might_unmap_zero_page(vma.mm)
            elif pfn > ZERO_PFN:
                self.put_frame(pfn)
            elif pfn != SPLIT_ZERO_PFN:
                continue
            vma.pte[i] = NO_PFN
            vma.mm.mapped_pages -= 1

    def madvise(self, vma: VMA, mergeable: bool) -> None:
        """MADV_MERGEABLE / MADV_UNMERGEABLE on a whole region."""
        mm = vma.mm
        if mergeable:
            if vma.vm_mergeable:
                return
            if not mm.mmf_vm_mergeable:
                self.hooks.ksm_enter(mm)
            vma.vm_mergeable = True
        else:
            if not vma.vm_mergeable:
                return
            self.hooks.unmerge_ksm_pages(vma)
            vma.vm_mergeable = False

    def prctl_set_memory_merge(self, mm: MM, enable: bool) -> None:
        if enable:
            if mm.mmf_vm_merge_any:
                return
            if not mm.mmf_vm_mergeable:
                self.hooks.ksm_enter(mm)
            mm.mmf_vm_merge_any = True
            for vma in mm.vmas:
                vma.vm_mergeable = True
        else:
            if not mm.mmf_vm_merge_any:
                return
            for vma in mm.vmas:
                if vma.vm_mergeable:
                    self.hooks.unmerge_ksm_pages(vma)
                    vma.vm_mergeable = False
            mm.mmf_vm_merge_any = False

    def migrate(self, vma: VMA, indexes: list[int], to_node: int) -> None:
        """Move pages (KSM pages included) to another node.

        Model simplification: the frame keeps its pfn and changes node. The kernel copies to a new
        pfn and folio_migrate_ksm updates stable_node->kpfn; either way get_kpfn_nid(kpfn) now
        names the new node, which is all KSM looks at.
        """
        for i in indexes:
            pfn = vma.pte[i]
            if pfn > ZERO_PFN:
                self.frame_nid[pfn] = to_node
                fid = self.frame_folio[pfn]
                if fid:
                    # a THP migrates whole (migrate_pages of the folio): not verified on a kernel
                    for sub in self.folios[fid].pfns:
                        if self.frame_folio[sub] == fid:
                            self.frame_nid[sub] = to_node

    def read(self, vma: VMA, index: int) -> bytes:
        pfn = vma.pte[index]
        return self.zero_page if pfn == ZERO_PFN or pfn == SPLIT_ZERO_PFN else self.content[pfn]

    def data_check(self) -> tuple[int, int]:
        checked = mismatches = 0
        for mm in self.mms:
            if not mm.alive:
                continue
            for vma in mm.vmas:
                for i, pfn in enumerate(vma.pte):
                    checked += 1
                    data = self.zero_page if pfn == ZERO_PFN or pfn == SPLIT_ZERO_PFN else self.content[pfn]
                    if data != vma.written[i]:
                        mismatches += 1
        return checked, mismatches
