"""The layers, read from the code: every import (module level, function level, under TYPE_CHECKING)
of every module under engine/ and ksmtui/, parsed with ast. No import cycle between modules, no
arrow from a lower layer to a higher one, Textual only under ksmtui/ui/, and a headless core that
a server without a terminal UI can run (checked in a fresh interpreter, as harlequin does)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "ksmtui", "scenarios")

# Each layer may import from the layers before it and from itself, never from one after it.
LAYERS = (
    ("engine", "scenarios"),  # the model and the built-in scenarios
    ("ksmtui.text",),  # pure renderers and units
    ("ksmtui.host",),  # the live machine: sysfs, ksm_stat, tracefs, /proc; no Textual
    ("ksmtui.kernel", "ksmtui.sweep"),  # a scenario on the real KSM; many model runs on Dask
    ("ksmtui.ui",),  # Textual only
    ("ksmtui.bench",),  # measures all of the above
    ("ksmtui.cli",),  # one module per subcommand
    ("ksmtui.__main__", "ksmtui"),
)
UI_LIBRARIES = ("textual", "rich")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Every module name the file imports, at any depth, relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = set()
        for imported in imports(name, path):
            # the project module it names: itself if it is one, else its nearest enclosing one
            parts = imported.split(".")
            while parts and ".".join(parts) not in mods:
                parts.pop()
            target = ".".join(parts)
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)  # a package's __init__ imported on the way to its child is no arrow
        edges[name] = targets
    return edges


def layer(name: str) -> int:
    best, rank = -1, -1
    for i, members in enumerate(LAYERS):
        for m in members:
            if (name == m or name.startswith(m + ".")) and len(m) > best:
                best, rank = len(m), i
    assert rank >= 0, f"{name} is in no layer: add its package to LAYERS"
    return rank


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_at_any_depth():
    assert cycles(graph()) == []


def test_no_arrow_runs_up_the_layers():
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in sorted(targets) if layer(b) > layer(a)]
    assert upward == []


def test_only_the_ui_imports_textual_or_rich():
    outside = [f"{name} imports {imported}" for name, path in modules().items() if not name.startswith("ksmtui.ui")
               for imported in sorted(imports(name, path)) if imported.split(".")[0] in UI_LIBRARIES]
    assert outside == []


def test_the_checks_see_function_level_imports_and_cycles():
    """They would notice: an import inside a function is an arrow, and a two-module loop is a cycle."""
    source = "def f():\n    from ksmtui.ui.apps.model import run_app\n"
    tree_imports = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    assert tree_imports == {"ksmtui.ui.apps.model"}
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert layer("ksmtui.ui.apps.model") > layer("ksmtui.host.sampler") > layer("engine.ksm")


def test_declared_dependencies_match_what_the_code_imports():
    import tomllib

    declared = {d.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower().replace("_", "-")
                for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    stdlib = set(sys.stdlib_module_names)
    third_party = {imported.split(".")[0] for name, path in modules().items() for imported in imports(name, path)
                   if imported.split(".")[0] not in stdlib and imported.split(".")[0] not in PACKAGES
                   and imported.split(".")[0] != "__future__"}
    # the distribution that provides each imported top-level name
    provides = {"distributed": "dask"}
    # imported where present, with a stand-in where not: Cython builds the compiled engine and
    # engine/_cython_shim.py takes its place in the interpreted one
    optional = {"cython"}
    missing = sorted(m for m in third_party - optional if provides.get(m, m).replace("_", "-") not in declared)
    assert missing == []


def loaded_after_importing(names: list[str]) -> set[str]:
    code = (f"import importlib, sys\nfor m in {names!r}:\n    importlib.import_module(m)\n"
            "print('\\n'.join(sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


@pytest.mark.parametrize("prefix", ["engine", "ksmtui.cli", "ksmtui.host", "ksmtui.kernel", "ksmtui.text"])
def test_the_headless_layers_load_no_ui_library(prefix):
    names = [m for m in modules() if m == prefix or m.startswith(prefix + ".")]
    loaded = loaded_after_importing(names)
    assert sorted(m for m in loaded if m.split(".")[0] in UI_LIBRARIES or m.startswith("ksmtui.ui")) == []


def test_the_layering_checks_can_see_an_import_of_textual():
    assert any(m.startswith("textual") for m in loaded_after_importing(["ksmtui.ui.apps.model"]))


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Test it", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == block.strip() and "ruff check ." in ci and "mypy" in ci and "pytest" in ci
