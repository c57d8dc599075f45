"""engine/ksm.py reads beside mm/ksm.c: the table at its top names a place for the kernel's
functions, every place it names exists, and Ksm's methods come in the table's order, which is
ksm.c's. Read from the source (engine/ksm.py), which is what the compiled engine is built from."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from engine import ksm

SOURCE = (Path(__file__).resolve().parent.parent / "engine" / "ksm.py").read_text()


def ksm_methods() -> list[str]:
    """Ksm's functions, in the order the source defines them."""
    (cls,) = [n for n in ast.parse(SOURCE).body if isinstance(n, ast.ClassDef) and n.name == "Ksm"]
    return [n.name for n in cls.body if isinstance(n, ast.FunctionDef)]


def table_places() -> list[str]:
    """The Ksm methods the table names, in the order it names them."""
    table = ksm.__doc__.split("mm/ksm.c function", 1)[1]
    names = re.findall(r"\bKsm\.(\w+)", table)
    return list(dict.fromkeys(names))


def test_every_place_the_table_names_exists():
    missing = [name for name in table_places() if name not in ksm_methods() or not callable(getattr(ksm.Ksm, name))]
    assert missing == []
    assert len(table_places()) > 50  # the table is no stub


def test_the_methods_come_in_the_tables_order():
    named = set(table_places())
    defined = [name for name in ksm_methods() if name in named]
    assert defined == table_places()


def test_the_engine_only_hook_is_the_one_the_instrument_overrides():
    """ksm.py calls out to what only the UI shows through one hook, and the instrument keeps its
    counts by overriding it (engine/instrument.py says why there, not a wrapper)."""
    from engine.instrument import ObservedKsm

    source = SOURCE
    assert re.findall(r"self\.(on_\w+)\(", source) == ["on_rmap_hlist_del"]
    assert "on_rmap_hlist_del" in vars(ObservedKsm)
    for word in ("walk_trace", "trace_walk", "hlist_lens", "pass_done", "chains[", "traced"):
        assert word not in source
