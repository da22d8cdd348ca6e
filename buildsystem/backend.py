"""
In-tree PEP 517 build backend: setuptools', plus mypy only when the hot path is compiled.

mypy (its mypyc) compiles ``txlightstreamer/protocol/_hotpath.py``; with
``TXLIGHTSTREAMER_PURE_PYTHON=1`` nothing is compiled, so a pure-Python install does not
download it. Every other hook is setuptools' own.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the hooks this backend does not change)

MYPYC = "mypy>=2.4,<2.5"


def _compiles() -> bool:
    return os.environ.get("TXLIGHTSTREAMER_PURE_PYTHON", "") in ("", "0")


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    extra = [MYPYC] if _compiles() else []
    return [*_setuptools.get_requires_for_build_wheel(config_settings), *extra]


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    extra = [MYPYC] if _compiles() else []
    return [*_setuptools.get_requires_for_build_editable(config_settings), *extra]
