# Cython declarations augmenting engine/cost.py (see engine/tree.pxd).

cdef class CostModel:
    cdef public long long total_ns
    cdef public long long _checksum_ns, _memcmp_equal_ns
    cdef public object _seq, _seed
    cdef public list factors
    cpdef void charge_checksum(self)
    cpdef void charge_memcmp_equal(self)
    cpdef void charge_get_folio(self)
    cpdef void charge_merge(self)
    cpdef void charge_insert(self)
