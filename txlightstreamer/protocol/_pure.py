"""
Which build of the hot path runs. Imported first by the package.

``TXLIGHTSTREAMER_PURE_PYTHON=1`` runs the hot path from its source even where the compiled
build is installed (to debug it, or to compare the two). In a source checkout, a compiled
build older than the source it came from is not used either (with a warning).
"""

from __future__ import annotations

import os
import sys
import warnings
from importlib.util import module_from_spec, spec_from_file_location

HOTPATH = f"{__package__}._hotpath"


def load_hotpath_source() -> None:
    """Import the hot path's ``.py`` file as the hot path module."""
    path = os.path.join(os.path.dirname(__file__), "_hotpath.py")
    spec = spec_from_file_location(HOTPATH, path)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    sys.modules[HOTPATH] = module
    spec.loader.exec_module(module)


def stale_build_in_checkout() -> bool:
    """A compiled build beside a newer ``_hotpath.py`` in a source checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.exists(os.path.join(here, os.pardir, os.pardir, "setup.py")):
        return False  # an installed package: its files come from one build
    builds = [os.path.getmtime(os.path.join(here, name)) for name in os.listdir(here)
              if name.startswith("_hotpath") and name.endswith((".so", ".pyd"))]
    # The newest file counts: a rebuild may leave an unchanged stub untouched.
    return bool(builds) and max(builds) < os.path.getmtime(os.path.join(here, "_hotpath.py"))


if HOTPATH not in sys.modules:
    if os.environ.get("TXLIGHTSTREAMER_PURE_PYTHON", "") not in ("", "0"):
        load_hotpath_source()
    elif stale_build_in_checkout():
        warnings.warn(
            "the compiled hot path is older than txlightstreamer/protocol/_hotpath.py: "
            "running the source (rebuild with `pip install .`)", RuntimeWarning, stacklevel=2)
        load_hotpath_source()
