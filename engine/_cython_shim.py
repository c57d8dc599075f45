"""Stands in for the `cython` module where Cython is not installed: engine/ksm.py's few
compile-time declarations (cython.locals) do nothing in the interpreted engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
compiled = False
# the C types the declarations name
longlong = Py_ssize_t = bint = int
int = int  # cython.int, the C int


def locals(**types: object) -> Callable[[F], F]:
    return lambda function: function
