"""Stands in for the `cython` module where Cython is not installed: engine/ksm.py's few
compile-time declarations (cython.locals) do nothing in the interpreted engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
compiled = False
longlong = Py_ssize_t = bint = int


def locals(**types: object) -> Callable[[F], F]:
    return lambda function: function
