"""The layers: the engine is headless and knows nothing of ksmtui; the command line, the reports
and the real-kernel code work without Textual (a server with no terminal UI installed can run
them). Each check imports the modules in a fresh interpreter and looks at sys.modules."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import engine
import ksmtui.host
import ksmtui.kernel

ROOT = Path(__file__).resolve().parent.parent


def loaded_after_importing(modules: list[str]) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print('\\n'.join(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


def top_level(modules: set[str], *names: str) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in names)


def submodules(package) -> list[str]:
    return [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]


def test_engine_imports_no_ui_library_and_nothing_of_ksmtui():
    loaded = loaded_after_importing(submodules(engine))
    assert top_level(loaded, "textual", "rich", "ksmtui") == []


def test_cli_report_and_the_kernel_code_import_no_textual():
    modules = ["ksmtui.cli", "ksmtui.options", "ksmtui.report", "ksmtui.render", *submodules(ksmtui.kernel),
               *submodules(ksmtui.host)]
    loaded = loaded_after_importing(modules)
    assert top_level(loaded, "textual") == []
    assert not [m for m in loaded if m.startswith("ksmtui.ui")]


def test_the_layering_checks_can_see_an_import_of_textual():
    """The checks above would notice: the UI's modules do pull Textual in."""
    assert top_level(loaded_after_importing(["ksmtui.ui.app"]), "textual")


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Test it", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == block.strip() and "ruff check ." in ci and "mypy" in ci and "pytest" in ci
