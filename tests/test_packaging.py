"""ksmtui as a user installs it: a wheel built from the checkout, installed in a fresh venv, run
from outside the checkout. The built-in scenarios are package data, so `list` and `run` work with
no source tree around.

The wheel is built the way pip builds any project (an isolated build with pip's configured
indexes and caches); the fresh venv gets only the wheel, and sees the running venv's packages for
the dependencies through a .pth line, so nothing is downloaded. A .pth line adds a directory to
sys.path without running the .pth files in it: the running venv's editable install of this
checkout stays out of the fresh venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
                              "tests", "*.so", "*.c", "*.html")  # the wheel compiles the engine itself


def run(*cmd, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))}: exit {p.returncode}\n{p.stderr[-2000:]}"
    return p.stdout


def test_a_wheel_installs_in_a_fresh_venv_and_runs_outside_the_checkout(tmp_path):
    source = tmp_path / "source"  # a copy: building writes build/ and egg-info next to the sources
    shutil.copytree(ROOT, source, ignore=SKIP)
    # the wheel compiles the engine as a user's does, unoptimised (CFLAGS=-O0): that it builds,
    # installs and runs compiled is what is tested here, and gcc -O3 on the engine's generated C
    # takes a minute of the suite's time on two CPUs (-O0: seconds)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", source, cwd=tmp_path,
        timeout=600, env={**os.environ, "CFLAGS": "-O0"})
    (wheel,) = (tmp_path / "dist").glob("ksmtui-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel,
        cwd=tmp_path)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())
    (site / "ksmtui-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(python, "-c", "import engine, ksmtui, scenarios; print(engine.__file__, ksmtui.__file__, "
                "scenarios.__file__)", cwd=elsewhere)
    assert all(Path(f).is_relative_to(site) for f in where.split())  # the wheel's, not the checkout's
    if sysconfig.get_config_var("CC") and shutil.which(sysconfig.get_config_var("CC").split()[0]):
        # where a C compiler exists, the wheel carries the compiled engine
        assert run(python, "-c", "import engine; print(engine.engine_kind())", cwd=elsewhere).strip() == (
            "compiled (Cython)")

    names = [line.split()[0] for line in run(venv / "bin" / "ksmtui", "list", cwd=elsewhere).splitlines()
             if line and not line[0].isspace()]
    assert "default" in names and "fleet" in names
    out = run(venv / "bin" / "ksmtui", "run", "default", cwd=elsewhere)
    assert out.startswith("default: flow optimized") and out.rstrip().endswith(" 0 mismatches: ok")
