"""Sphinx configuration: build with ``sphinx-build -W --keep-going -b html docs build/docs``."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
# The installed package wins; the checkout is only a fall-back for an uninstalled tree.
sys.path.append(str(HERE.parent))

import txlightstreamer  # noqa: E402

project = "txlightstreamer"
author = "the txlightstreamer authors"
copyright = "the txlightstreamer authors"  # noqa: A001
release = txlightstreamer.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "txls_cli",
]
# No intersphinx: the build must never need the network.

exclude_patterns = ["_build", "*.py"]
templates_path: list[str] = []
html_static_path: list[str] = []
html_theme = "furo"
html_title = f"txlightstreamer {release}"
html_theme_options = {
    "navigation_with_keys": True,
}
pygments_style = "friendly"
pygments_dark_style = "monokai"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
default_role = "py:obj"
nitpicky = False
suppress_warnings: list[str] = []
