"""
Build script. The metadata lives in setup.cfg; this file only adds the compiled hot path.

``txlightstreamer/protocol/_hotpath.py`` (plain typed Python, no Twisted) is compiled with
mypyc when a C compiler is at hand, which roughly doubles the client's throughput. When it
cannot be compiled, or with ``TXLIGHTSTREAMER_PURE_PYTHON=1`` in the environment, the same
module is installed as plain Python and behaves the same, only slower.
``txlightstreamer.protocol._hotpath.COMPILED`` tells which one runs. The build goes into the
wheel only: ``pip install .`` writes nothing into the source tree (its build products go to a
temporary directory, removed when the build ends). mypy (mypyc) is asked for
by the in-tree build backend (``buildsystem/backend.py``) only when the hot path is compiled.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# _jsontext: the hot path's JSON text splicing, which it calls.
# Build products (setuptools' build/ and egg-info, mypyc's C sources, mypy's cache) go
# here, never into the source tree; removed when the build ends.
SCRATCH = tempfile.mkdtemp(prefix="txlightstreamer-build-")
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)
os.environ.setdefault("MYPY_CACHE_DIR", os.path.join(SCRATCH, "mypy_cache"))

HOT_PATH = ["txlightstreamer/protocol/_hotpath.py", "txlightstreamer/protocol/_jsontext.py"]
# ^T (TLCP-diff) in one allocation, which the compiled hot path calls (hand-written C).
TLCP_DIFF = Extension(
    "txlightstreamer.protocol._tlcpdiff", ["txlightstreamer/protocol/_tlcpdiff.c"],
    depends=["txlightstreamer/protocol/_tlcpdiff.h", "txlightstreamer/protocol/_chars.h"],
)
# A U line's values decoded from its bytes, ^T included (hand-written C).
UPDATE_LINE = Extension(
    "txlightstreamer.protocol._updateline", ["txlightstreamer/protocol/_updateline.c"],
    depends=["txlightstreamer/protocol/_tlcpdiff.h", "txlightstreamer/protocol/_chars.h",
             "txlightstreamer/protocol/_jsonpieces.h"],
)
# ^P's commonest patches on a field's text cut at its scalars (hand-written C).
JSON_PIECES = Extension(
    "txlightstreamer.protocol._jsonpieces", ["txlightstreamer/protocol/_jsonpieces.c"],
    depends=["txlightstreamer/protocol/_chars.h", "txlightstreamer/protocol/_jsonpieces.h"],
)
# The transports' reads cut at CRLF, memchr for each LF (hand-written C).
CRLF = Extension("txlightstreamer.transport._crlf", ["txlightstreamer/transport/_crlf.c"])


class OptionalBuildExt(build_ext):
    """``build_ext`` that falls back to pure Python instead of failing the install: all or
    nothing, since a module compiled by mypyc cannot load without its shared library."""

    failed = False

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers...
            self._fall_back(exc)
        if self.failed:
            for ext in self.extensions:
                built = self.get_ext_fullpath(ext.name)
                if os.path.exists(built):
                    os.remove(built)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fall_back(exc)

    def _fall_back(self, exc: Exception) -> None:
        self.failed = True
        self.warn(f"the compiled hot path could not be built ({exc}); "
                  "txlightstreamer is installed as pure Python (same behaviour, slower)")


def compiled_modules() -> list[Any]:
    if os.environ.get("TXLIGHTSTREAMER_PURE_PYTHON", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    try:
        # Our own mypy settings (plugins for the rest of the package) are not needed here,
        # and the rest of the package is only read, never compiled.
        options = ["--config-file=", "--follow-imports=silent"]
        return [*mypycify(
            [*options, *HOT_PATH], opt_level="3", target_dir=os.path.join(SCRATCH, "mypyc")
        ), TLCP_DIFF, JSON_PIECES, UPDATE_LINE, CRLF]
    except Exception as exc:  # the module failed mypyc's checks: keep pure Python
        print(f"warning: not compiling the hot path ({exc})")
        return []


setup(
    ext_modules=compiled_modules(),
    cmdclass={"build_ext": OptionalBuildExt},
    options={
        "build": {"build_base": os.path.join(SCRATCH, "build")},
        "egg_info": {"egg_base": SCRATCH},
    },
)
