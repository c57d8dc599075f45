# Cython declarations augmenting engine/machine.py (see engine/tree.pxd).

cdef class VMA:
    cdef public MM mm
    cdef public object name
    cdef public long long vm_start, vm_end
    cdef public bint vm_mergeable, anon_vma
    cdef public object pte
    cdef public list written

cdef class MM:
    cdef public object pid, name, node
    cdef public list vmas
    cdef public bint alive, mmf_vm_mergeable, mmf_vm_merge_any
    cdef public long long mapped_pages, ksm_rmap_items, ksm_merging_pages, ksm_zero_pages
    cdef public object ksm_slot

cdef class Machine:
    cdef public object page_size, numa_nodes
    cdef public bytes zero_page
    cdef public list content
    cdef public object frame_prefix, mapcount, frame_nid, free_frames
    cdef public dict ksm_mapping
    cdef public list mms
    cdef public object next_pid
    cdef public object hooks
    cdef public object hpage_pmd_nr, frame_folio, next_fid, thp_split_page, thp_split_page_failed
    cdef public dict folios
    cdef public list held_frames
    cdef dict __dict__
