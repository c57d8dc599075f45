# Cython declarations augmenting engine/ksm.py (pure-Python mode; see engine/tree.pxd): compiled,
# the rmap_item, stable node, mm_slot and cursor are native classes with typed slots, and the
# per-page functions typed. Methods the instrument overrides or a traced step shadows
# (engine/instrument.py) are cpdef: a Python subclass's or an instance's version still wins.

cimport cython

from engine.cost cimport CostModel
from engine.machine cimport MM, VMA, Machine
from engine.tree cimport RbNode

cdef Py_ssize_t KSM_PAGE, ANON_PAGE, ZERO_PAGE, N_OUTCOMES
cdef dict OUTCOME_INDEX

@cython.locals(length=cython.int)
cdef int bit_length(unsigned long long ns)


cdef class MmSlot:
    cdef public MM mm
    cdef public RmapItem rmap_list
    cdef public MmSlot prev, next


cdef class KsmScan:
    cdef public MmSlot mm_slot
    cdef public long long address
    cdef public object rmap_list
    cdef public long long seqnr


cdef class StableNode(RbNode):
    cdef public object head
    cdef public dict hlist
    cdef public list dups
    cdef public long long kpfn, rmap_hlist_len
    cdef public object chain_prune_time  # now_ns when set
    cdef public int nid
    cdef public StableNode chain


cdef class RmapItem(RbNode):
    cdef public RmapItem rmap_list
    cdef public MM mm
    cdef public VMA vma
    cdef public long long address
    cdef public unsigned int oldchecksum
    cdef public int flags, age, remaining_skips, nid
    cdef public StableNode head


cdef class Ksm:
    cdef public Machine machine
    cdef public long long page_size
    cdef public int page_shift
    cdef public object flow, latency
    cdef public dict knobs
    cdef public object zero_checksum
    # __dict__: now_ns
    # (engine/sim.py's PacedKsm makes now_ns a property, the clock running while ksmd scans: a
    # cdef attribute would be read from the struct by the compiled methods, past the property)
    cdef public dict ksm_mapping
    cdef public MmSlot ksm_mm_head
    cdef public KsmScan ksm_scan
    cdef public int nr_node_ids
    cdef public list root_stable_tree, root_unstable_tree
    cdef public dict migrate_nodes
    cdef public long long ksm_pages_shared, ksm_pages_sharing, ksm_pages_unshared, ksm_rmap_items
    cdef public long long ksm_stable_node_chains, ksm_stable_node_dups
    cdef public long long ksm_pages_scanned, ksm_pages_skipped, ksm_zero_pages
    cdef public CostModel cost
    cdef public long long ksmd_cpu_ns
    cdef public dict advisor_ctx, work_by_path, work
    cdef long long outcome_calls[33]  # len(PATHS) * len(OUTCOMES)
    cdef long long latency_calls[120]  # len(PATHS) * N_BUCKETS
    cdef public object last_call
    cdef public tuple page_refs
    cdef dict __dict__

    cpdef void free_rmap_item(self, RmapItem item)
    cpdef int get_kpfn_nid(self, Py_ssize_t pfn) except? -1
    cpdef object ksm_get_folio(self, StableNode node)
    cpdef void remove_node_from_stable_tree(self, StableNode node) except *
    cpdef void remove_rmap_item_from_tree(self, RmapItem item) except *
    cpdef void on_rmap_hlist_del(self, StableNode node) except *
    cpdef object calc_checksum(self, Py_ssize_t pfn)

    @cython.locals(prefix=object, content=list)
    cpdef int memcmp_pages(self, Py_ssize_t a, Py_ssize_t b) except? -2

    cpdef bint is_page_sharing_candidate(self, StableNode node, long long offset=*) except -1

    @cython.locals(tree_pfn=object, ret=cython.int, parent=StableNode, rb=StableNode, node=StableNode, left=cython.bint,
                   restart=cython.bint)
    cpdef object stable_tree_search(self, Py_ssize_t pfn)
    cpdef tuple walk_step(self, StableNode node, object root, bint prune)

    @cython.locals(tree_item=RmapItem, parent=RmapItem, vma=VMA, tree_pfn=cython.Py_ssize_t, prefix=cython.ulonglong[:],
                   key=cython.ulonglong, tree_key=cython.ulonglong,
                   content=list, page=bytes, shift=cython.int, compared=cython.Py_ssize_t, equal=cython.Py_ssize_t,
                   uncompared=cython.Py_ssize_t, left=cython.bint, nid=cython.int, work=dict, cost=CostModel,
                   c=CostModel, cold=cython.Py_ssize_t, wakeup=cython.longlong)
    cpdef object unstable_tree_search_insert(self, RmapItem item, Py_ssize_t pfn)
    cpdef void stable_tree_append(self, RmapItem item, StableNode node) except *

    @cython.locals(machine=Machine, stable_node=StableNode, checksum=object, migrating=cython.bint)
    cpdef object cmp_and_merge_page_v6_11(self, object pfn, RmapItem item, StableNode stable_node)
    @cython.locals(machine=Machine, stable_node=StableNode, checksum=object, migrating=cython.bint)
    cpdef object cmp_and_merge_page_v6_10(self, object pfn, RmapItem item, StableNode stable_node)

    @cython.locals(mm=MM, item=RmapItem)
    cpdef RmapItem get_next_rmap_item(self, object owner, VMA vma, long long address)
    @cython.locals(age=cython.int)
    cpdef bint should_skip_rmap_item(self, Py_ssize_t pfn, RmapItem item) except -1

    @cython.locals(cost=CostModel, machine=Machine, ksm_scan=KsmScan, ksm_mapping=dict, content=list,
                   zero_page=bytes, work_by_path=list, n_buckets=cython.Py_ssize_t, wall=cython.bint,
                   legacy=cython.bint, factors=list, done=cython.Py_ssize_t, start=cython.longlong,
                   call_start=cython.longlong, ksm_call=cython.longlong, anon_call=cython.longlong,
                   item=RmapItem, pfn=object, stable_node=StableNode, path=cython.Py_ssize_t,
                   ns=cython.longlong, factor=cython.double, bucket=cython.int)
    cpdef Py_ssize_t ksm_do_scan(self, Py_ssize_t scan_npages) except -1
