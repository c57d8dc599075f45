"""The compiled engine is the readable one, compiled: built from engine/*.py with the types in the
.pxd beside each (setup.py), it gives the same results bit for bit, and KSMTUI_PURE=1 runs the
interpreted one wherever the compiled one is built.

A cdef class has no __dict__: an attribute the .py assigns and its .pxd does not declare is an
AttributeError compiled and nothing interpreted, so each .pxd is checked against its .py here,
without a compiler."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine

ROOT = Path(__file__).resolve().parent.parent
PXDS = sorted((ROOT / "engine").glob("*.pxd"))


def pxd_classes(text: str) -> dict[str, tuple[str | None, set[str]]]:
    """cdef class NAME(BASE): the attributes each declares (`__dict__` for an open one, and the
    names a `    # __dict__: a, b` line says live in that dict, not in the struct)."""
    classes: dict[str, tuple[str | None, set[str]]] = {}
    current: set[str] | None = None
    for line in text.splitlines():
        if m := re.match(r"cdef class (\w+)(?:\((\w+)\))?:", line):
            current = set()
            classes[m[1]] = (m[2], current)
        elif current is not None and (m := re.match(r"    # __dict__: (.+)$", line)):
            current.update(f"dict:{n.strip()}" for n in m[1].split(","))
        elif current is not None and (m := re.match(r"    cdef (?:public |readonly )?(.+)$", line)):
            decl = m[1].split("#")[0]
            if "(" in decl:
                continue  # a method
            # "TYPE a, b" or "unsigned int a": the names are after the last type word
            names = [re.sub(r"\[.*?\]", "", n).strip() for n in decl.split(",")]  # a C array: name[N]
            names[0] = names[0].split()[-1]
            current.update(names)
        elif line and not line[0].isspace():
            current = None
    return classes


def py_classes(path: Path) -> dict[str, tuple[set[str], set[str] | None]]:
    """Each class of the .py: the attributes its methods assign on self, and its __slots__."""
    out: dict[str, tuple[set[str], set[str] | None]] = {}
    for cls in ast.parse(path.read_text()).body:
        if not isinstance(cls, ast.ClassDef):
            continue
        assigned: set[str] = set()
        slots = None
        for node in ast.walk(cls):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            else:
                continue
            for target in targets:
                for e in ast.walk(target):
                    if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == "self":
                        assigned.add(e.attr)
                    if isinstance(e, ast.Name) and e.id == "__slots__" and isinstance(node, ast.Assign):
                        slots = set(ast.literal_eval(node.value))
        out[cls.name] = (assigned, slots)
    return out


def test_the_compiled_modules_each_have_their_declarations():
    assert {p.stem for p in PXDS} == {m.rpartition(".")[2] for m in engine.COMPILED_MODULES}
    (built,) = [ast.literal_eval(n.value) for n in ast.parse((ROOT / "setup.py").read_text()).body
                if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "COMPILED"]
    assert built == [f"engine/{m.rpartition('.')[2]}.py" for m in engine.COMPILED_MODULES]


@pytest.mark.parametrize("pxd", PXDS, ids=lambda p: p.name)
def test_every_attribute_the_source_assigns_is_declared(pxd):
    declared = pxd_classes(pxd.read_text())
    for other in PXDS:  # bases declared in another .pxd (StableNode(RbNode))
        for name, decl in pxd_classes(other.read_text()).items():
            declared.setdefault(name, decl)
    source = py_classes(pxd.with_suffix(".py"))
    mine = pxd_classes(pxd.read_text())
    assert mine, f"{pxd.name} declares no class"
    for name in mine:
        assert name in source, f"{pxd.name} declares cdef class {name}, which {pxd.stem}.py does not define"
        attrs: set[str] = set()
        cls: str | None = name
        while cls is not None:
            base, own = declared[cls]
            attrs |= own
            cls = base
        in_dict = {a for a in attrs if a.startswith("dict:")}
        assert not in_dict or "__dict__" in attrs, f"{name}: {sorted(in_dict)} in a __dict__ it does not declare"
        attrs = {a.removeprefix("dict:") for a in attrs}
        assigned, slots = source[name]
        missing = sorted(assigned - attrs)
        assert not missing, (f"{pxd.stem}.py's {name} assigns {missing}, which {pxd.name} does not declare: "
                             "declare them there (cdef public TYPE name), or the compiled engine fails")
        if slots is not None:  # the interpreted engine's slots are the compiled one's fields
            own = {a for a in declared[name][1] if a != "__dict__" and not a.startswith("dict:")}
            assert slots == own, f"{name}: __slots__ {sorted(slots)} but {pxd.name} declares {sorted(own)}"


def test_the_pxd_parser_reads_what_the_checks_rely_on():
    classes = pxd_classes("cdef class A(B):\n    cdef public long long x, y\n    cdef unsigned int z\n"
                          "    # __dict__: t, u\n    # a comment\n"
                          "    cpdef void f(self, int a)\n    cdef dict __dict__\n\n"
                          "cdef class B:\n    cdef public C c\n")
    assert classes == {"A": ("B", {"x", "y", "z", "dict:t", "dict:u", "__dict__"}), "B": (None, {"c"})}


def test_no_python_subclass_shadows_a_struct_attribute():
    """A compiled method reads a declared attribute from the struct: a Python subclass's property
    or class attribute of that name (PacedKsm.now_ns, the clock running while ksmd scans) would be
    seen by the interpreted engine only. Such a name lives in the __dict__ (`# __dict__: name`)."""
    struct: dict[str, set[str]] = {}
    bases: dict[str, str | None] = {}
    for pxd in PXDS:
        for name, (base, attrs) in pxd_classes(pxd.read_text()).items():
            struct[name] = {a for a in attrs if a != "__dict__" and not a.startswith("dict:")}
            bases[name] = base
    classes = {}
    for path in sorted((ROOT / "engine").glob("*.py")):
        for cls in ast.parse(path.read_text()).body:
            if isinstance(cls, ast.ClassDef):
                classes[cls.name] = (path.name, cls)

    def declared(name: str | None) -> set[str]:
        """The struct attributes of a class and its bases, compiled or Python."""
        if name is None:
            return set()
        if name in struct:
            return struct[name] | declared(bases[name])
        if name in classes:
            return set().union(*(declared(b.id) for b in classes[name][1].bases if isinstance(b, ast.Name)))
        return set()

    checked = 0
    for name, (file, cls) in classes.items():
        if name in struct:
            continue  # compiled itself: its own assignments are the attribute test's
        inherited = declared(name)
        if not inherited:
            continue
        checked += 1
        for node in cls.body:
            own = []
            if isinstance(node, ast.FunctionDef) and node.decorator_list:
                own = [node.name]  # a property (or another descriptor)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                own = [t.id for t in targets if isinstance(t, ast.Name)]
            clash = sorted(set(own) & inherited)
            assert not clash, (f"{file}'s {name} defines {clash} at class level, which a .pxd declares in "
                               "the struct: the compiled methods would not see it; make it `# __dict__: name`")
    assert checked >= 2  # ObservedKsm, PacedKsm


def test_pure_forces_the_interpreted_engine():
    code = "import engine, engine.ksm, engine.tree; print(engine.compiled(), engine.ksm.__file__, engine.tree.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "KSMTUI_PURE": "1"}).stdout.split()
    assert out[0] == "False" and all(f.endswith(".py") for f in out[1:])


@pytest.mark.skipif(not os.environ.get("KSMTUI_REQUIRE_COMPILED"), reason="KSMTUI_REQUIRE_COMPILED is not set")
def test_the_compiled_engine_is_in_use_where_required():
    """CI sets KSMTUI_REQUIRE_COMPILED: its suite runs on the compiled engine, or fails here."""
    assert engine.compiled(), engine.engine_kind()


@pytest.mark.skipif(not engine.compiled(), reason="no compiled engine here: the suite's hashes are the interpreted")
def test_the_interpreted_engine_gives_the_same_results_bit_for_bit(interpreted_hashes):
    """The suite's own hash tests ran the compiled engine; here every hash once more, interpreted."""
    assert re.search(r"^all \d+ hashes unchanged$", interpreted_hashes, re.M)


def test_without_cython_installed_the_engine_runs_the_same():
    """Where Cython is missing, engine/ksm.py's declarations fall back to engine/_cython_shim.py."""
    from tests.result_hashes import WALL_CLOCK, key, recorded

    code = ("import sys; sys.modules['cython'] = None; sys.argv = ['ksmtui', 'run', 'fleet', '--flow', 'legacy', "
            "'--json', '--costs', 'reference']; from ksmtui.__main__ import main; sys.exit(main())")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "KSMTUI_PURE": "1"}, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads(p.stdout)
    for field in WALL_CLOCK:
        del result[field]
    digest = hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()
    assert digest == recorded()["run"][key("fleet", "legacy")]


@pytest.mark.skipif(not engine.compiled(), reason="no compiled engine here")
def test_a_source_newer_than_its_build_runs_interpreted(tmp_path):
    """In a checkout, a .py or .pxd changed since the build makes the engine the .py files, not a
    stale extension that would run another model than the source says."""
    shutil.copytree(ROOT / "engine", tmp_path / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "setup.py").write_text("")
    code = "import engine, engine.ksm; print(engine.compiled(), engine.ksm.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "KSMTUI_PURE"}

    def kind() -> list[str]:
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                              check=True, env=env).stdout.split()

    assert kind()[0] == "True"
    built = max(p.stat().st_mtime for p in (tmp_path / "engine").glob("tree.*.so"))
    os.utime(tmp_path / "engine" / "tree.pxd", (built + 10, built + 10))
    compiled, path = kind()
    assert compiled == "False" and path.endswith("ksm.py")
