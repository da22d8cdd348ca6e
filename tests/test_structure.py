"""Structure limits (issue 14): no import cycle, no class over 400 lines, no module over 700.

The check itself is ``tools/check_structure.py`` (CI runs it too); it reads the checkout's
source, so it needs the checkout beside the tests.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "check_structure.py"

pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="not run from a source checkout")


def _load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_structure", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_package_structure_within_limits() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--root", str(ROOT)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_counts_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    checker = _load_checker()
    root = _tree(tmp_path, {
        "txlightstreamer/__init__.py": "",
        "txlightstreamer/a.py": "from typing import TYPE_CHECKING\n"
                                "if TYPE_CHECKING:\n    from .b import X\n",
        "txlightstreamer/b.py": "def f():\n    import txlightstreamer.a\n",
        "txlightstreamer/c.py": "from importlib import import_module\n"
                                "import_module('txlightstreamer.d')\n",
        "txlightstreamer/d.py": "from txlightstreamer import c\n",
    })
    problems = checker.check(root)
    assert "import cycle among 2 modules: txlightstreamer.a, txlightstreamer.b" in problems
    assert "import cycle among 2 modules: txlightstreamer.c, txlightstreamer.d" in problems


def test_checker_package_init_is_a_module(tmp_path: Path) -> None:
    checker = _load_checker()
    # A submodule importing a sibling is no edge to the package's __init__...
    root = _tree(tmp_path / "ok", {
        "txlightstreamer/__init__.py": "from .sub import a\n",
        "txlightstreamer/sub/__init__.py": "from . import a\n",
        "txlightstreamer/sub/a.py": "from txlightstreamer.sub import b\n"
                                    "import txlightstreamer.sub.c\n",
        "txlightstreamer/sub/b.py": "",
        "txlightstreamer/sub/c.py": "",
    })
    assert checker.check(root) == []
    # ...but a name taken from the package is, and __init__ imports the submodule.
    root = _tree(tmp_path / "bad", {
        "txlightstreamer/__init__.py": "",
        "txlightstreamer/sub/__init__.py": "from .a import f\nX = 1\n",
        "txlightstreamer/sub/a.py": "from . import X\n",
    })
    assert checker.check(root)[0] == (
        "import cycle among 2 modules: txlightstreamer.sub, txlightstreamer.sub.a")


def test_checker_sizes(tmp_path: Path) -> None:
    checker = _load_checker()
    body = "".join(f"    x{i} = {i}\n" for i in range(400))
    root = _tree(tmp_path, {
        "txlightstreamer/__init__.py": "",
        "txlightstreamer/big.py": "class Big:\n" + body + "\n" * 300,
        "txlightstreamer/fine.py": "class Fine:\n" + body[: -len("    x399 = 399\n")],
    })
    assert checker.check(root) == [
        "module over 700 lines: txlightstreamer/big.py (701 lines)",
        "class over 400 lines: txlightstreamer/big.py:1 Big (401 lines)",
    ]
