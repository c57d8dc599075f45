"""A model of Linux KSM (mm/ksm.c) over a simulated multi-process machine. No UI imports here.

The hot path (tree, cost, machine, ksm) may be compiled from the same source (setup.py); with
KSMTUI_PURE=1 in the environment the .py files are imported even where the compiled modules
exist, the interpreted engine the tests compare the compiled one with. So they are in a source
checkout whose .py or .pxd changed since the build (an editable install does not rebuild by
itself): a stale extension would run a model other than the one the source says."""

from __future__ import annotations

import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path

COMPILED_MODULES = ("engine.tree", "engine.cost", "engine.machine", "engine.ksm")
_HERE = Path(__file__).resolve().parent


class _PureFinder:
    """Finds the compiled modules' .py source before the path finder finds their extension."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name in COMPILED_MODULES:
            return spec_from_file_location(name, _HERE / (name.rpartition(".")[2] + ".py"))
        return None


def _stale() -> bool:
    """In a source checkout (setup.py beside engine/), is a compiled module older than its .py or
    .pxd? Then all go interpreted: a compiled ksm expects the compiled tree's classes."""
    if not (_HERE.parent / "setup.py").exists():
        return False  # installed from a wheel: built from the files installed beside it
    for name in COMPILED_MODULES:
        stem = name.rpartition(".")[2]
        built = [p for suffix in EXTENSION_SUFFIXES if (p := _HERE / (stem + suffix)).exists()]
        if built:
            newest = max(p.stat().st_mtime for p in built)
            for source in (_HERE / (stem + ".py"), _HERE / (stem + ".pxd")):
                if source.exists() and source.stat().st_mtime > newest:
                    return True
    return False


STALE = _stale()
if (os.environ.get("KSMTUI_PURE") or STALE) and not any(isinstance(f, _PureFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _PureFinder())


def compiled() -> bool:
    """Is the engine that runs here the compiled one (engine/ksm.py built as an extension)?"""
    from engine import ksm

    origin = ksm.__spec__.origin if ksm.__spec__ else None
    return origin is not None and origin.endswith(tuple(EXTENSION_SUFFIXES))


def engine_kind() -> str:
    """One line for what prints figures: compiled or interpreted, and why."""
    if compiled():
        return "compiled (Cython)"
    if os.environ.get("KSMTUI_PURE"):
        return "interpreted (KSMTUI_PURE set)"
    if STALE:
        return "interpreted (the compiled engine is older than its source: pip install -e . again)"
    return "interpreted (no compiled engine built)"
