# Cython declarations augmenting engine/cost.py (see engine/tree.pxd). CostProfile stays a Python
# class (a frozen dataclass, read once per Simulation); the constants ksm.py charges per page are
# the CostModel's typed attributes, copied from the profile.

cdef class CostModel:
    cdef public long long total_ns
    cdef public long long _checksum_ns, _memcmp_equal_ns
    cdef public long long call, ksm_early, memcmp_differ, tree_step, stable_step, get_folio, mergeable_page
    cdef public long long merge, insert, scan_step, wakeup, tree_cold, wakeups
    cdef public object _seq, _seed
    cdef public list factors
    cpdef void charge_checksum(self)
    cpdef void charge_memcmp_equal(self)
    cpdef void charge_get_folio(self)
    cpdef void charge_merge(self)
    cpdef void charge_insert(self)
