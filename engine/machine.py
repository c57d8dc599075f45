"""The simulated machine under ksmd: physical frames, processes (mm), VMAs and page tables.

Frames hold immutable `bytes` contents by reference (a page used a million times costs its bytes
once); frame 0 is the zero page. A frame's refcount is its mapcount: the model runs one thread, so
no GUP pin, LRU cache or swap cache ever holds an extra reference, and write_protect_page's
"mapcount + 1 == refcount" check always passes.

KSM hooks sit where the kernel has them: COW of a KSM page and of a KSM zero page
(do_wp_page, ksm_might_unmap_zero_page), ksm_fork, ksm_exit, madvise and prctl. The machine calls
them through `hooks` (KsmHooks), set by whoever puts a ksmd on the machine (engine/sim.py).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from typing import Protocol

ZERO_PFN = 0
NO_PFN = -1
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
        self.pte = array("q", [NO_PFN]) * npages  # pfn per page; ZERO_PFN only as a KSM zero page
        self.written: list[bytes] = [b""] * npages  # what this process last wrote, for data_check


def _vm_end(vma: VMA) -> int:
    return vma.vm_end


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
        return len(self.content) - 1

    def put_frame(self, pfn: int) -> None:
        """Drop one mapping; the last one frees the frame (a freed KSM page leaves its node stale)."""
        self.mapcount[pfn] -= 1
        if self.mapcount[pfn] == 0:
            self.ksm_mapping.pop(pfn, None)
            self.content[pfn] = b""
            self.free_frames.append(pfn)

    def is_ksm_page(self, pfn: int) -> bool:
        return pfn in self.ksm_mapping


    # -- processes ------------------------------------------------------------------------

    def new_mm(self, name: str, node: int) -> MM:
        mm = MM(self.next_pid, name, node)
        self.next_pid += 1
        self.mms.append(mm)
        return mm

    def add_region(self, mm: MM, name: str, pages: list[bytes]) -> VMA:
        start = mm.vmas[-1].vm_end + self.page_size if mm.vmas else VMA_BASE
        vma = VMA(mm, name, start, len(pages), self.page_size)
        for i, data in enumerate(pages):
            pfn = self.alloc_frame(data, mm.node)
            self.mapcount[pfn] = 1
            vma.pte[i] = pfn
            vma.written[i] = data
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
        elif self.mapcount[pfn] == 1 and pfn not in self.ksm_mapping:
            self.content[pfn] = data  # exclusive anon page: reused in place
            self.frame_prefix[pfn] = int.from_bytes(data[:8], "big")
            return
        else:
            # KSM pages are never reused, always copied (cow_ksm); a page shared by fork is copied
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
            else:
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

    def read(self, vma: VMA, index: int) -> bytes:
        pfn = vma.pte[index]
        return self.zero_page if pfn == ZERO_PFN else self.content[pfn]

    def data_check(self) -> tuple[int, int]:
        checked = mismatches = 0
        for mm in self.mms:
            if not mm.alive:
                continue
            for vma in mm.vmas:
                for i, pfn in enumerate(vma.pte):
                    checked += 1
                    data = self.zero_page if pfn == ZERO_PFN else self.content[pfn]
                    if data != vma.written[i]:
                        mismatches += 1
        return checked, mismatches
