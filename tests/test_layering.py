"""The engine is headless: importing it must not pull in any UI library."""

import subprocess
import sys


def test_engine_imports_no_ui_library():
    code = (
        "import sys, engine, engine.knobs, engine.scenario, engine.snapshot, engine.contents\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.iter_modules(engine.__path__):\n"
        "    importlib.import_module('engine.' + m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'ksmtui'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
