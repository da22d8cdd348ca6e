"""
Which build of the hot path runs. Imported first by the package.

``TXLIGHTSTREAMER_PURE_PYTHON=1`` runs the hot path from its source even where the compiled
build is installed (to debug it, or to compare the two). Otherwise Python's import picks the
installed build: the compiled module when the install compiled it, else the source.
"""

from __future__ import annotations

import os
import sys
from importlib.util import module_from_spec, spec_from_file_location

HOTPATH = f"{__package__}._hotpath"
#: The compiled modules, each imported before those that use it.
COMPILED_MODULES = (f"{__package__}._jsontext", HOTPATH)


def load_hotpath_source() -> None:
    """Import the hot path's ``.py`` files as its modules."""
    for name in COMPILED_MODULES:
        path = os.path.join(os.path.dirname(__file__), name.rsplit(".", 1)[1] + ".py")
        spec = spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


PURE_PYTHON = os.environ.get("TXLIGHTSTREAMER_PURE_PYTHON", "") not in ("", "0")

if PURE_PYTHON and HOTPATH not in sys.modules:
    load_hotpath_source()
