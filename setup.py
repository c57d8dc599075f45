"""Builds the engine's hot path with Cython where it can, from the same source: engine/*.py, with
the types in the .pxd beside each (Cython's pure-Python mode). Where Cython or a C compiler is
missing, or the build fails, ksmtui installs as plain Python and runs the same model, bit for bit
(tests/test_compiled.py). KSMTUI_PURE=1 at build time skips the build; at run time it makes
`engine` import the .py files even where the compiled ones exist (engine/__init__.py)."""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = ["engine/tree.py", "engine/cost.py", "engine/machine.py", "engine/ksm.py"]
DIRECTIVES = {
    "language_level": 3,
    "annotation_typing": False,  # the .py's annotations are for mypy; the C types are the .pxd's
    "infer_types": True,
}


class OptionalBuildExt(build_ext):
    """A failed compile is a warning, not a failed install: the .py files are the engine too."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # no compiler, no Python headers: DistutilsPlatformError and kin
            self._warn(e)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        if self.compiler.compiler_type == "unix":
            # no debug info: on 6 MB of generated C it is a third of the compile, and nobody
            # steps through it (the .py is the source)
            ext.extra_compile_args = [*ext.extra_compile_args, "-g0"]
        try:
            super().build_extension(ext)
        except Exception as e:  # CompileError, LinkError
            self._warn(e)

    @staticmethod
    def _warn(e: Exception) -> None:
        print(f"ksmtui: the compiled engine was not built ({e}); the engine runs as plain Python",
              file=sys.stderr)


def ext_modules() -> list:
    if os.environ.get("KSMTUI_PURE"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("ksmtui: Cython is not installed; the engine runs as plain Python", file=sys.stderr)
        return []
    try:
        return cythonize(COMPILED, compiler_directives=DIRECTIVES, quiet=True)
    except Exception as e:  # a .pxd out of step with its .py: say so, install the .py
        print(f"ksmtui: Cython failed ({e}); the engine runs as plain Python", file=sys.stderr)
        return []


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
