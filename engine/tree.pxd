# Cython declarations augmenting engine/tree.py (pure-Python mode): compiled, RbNode is a native
# class with typed slots. The .py stays the one source; every attribute assigned there is declared
# here (tests/test_compiled.py checks). RbRoot stays a Python class: it is Generic for mypy, and
# a cdef class cannot be; its operations are per merge or insert, not per tree level.

cdef class RbNode:
    cdef public RbNode rb_left, rb_right, rb_parent
    cdef public int rb_color
    cdef public long long touched
