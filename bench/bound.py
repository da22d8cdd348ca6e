"""
How far diff decoding alone can move the mixed/plain ratio: the traffic run with ``^T`` and ``^P``
made free.

``python -m bench.bound`` copies the project to a temp directory, makes every diff return the
old value unchanged (the compiled build's C line decoder, ``_updateline.c``, and the Python
hot path behind it: `_apply_diff` and `_patch`), builds that copy as ``pip install .`` does
(mypyc and the C modules) into a directory of its own, and runs ``python -m bench --only
traffic`` on it. Every other cost of a mixed line (longer lines, more fields, escapes, the
payload's decoding) is still paid, so its mixed/plain ratio is the most that cheaper diffs
could ever reach. Measurement only: the rows it decodes are wrong on purpose (the run reports
MISMATCH).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUBS = {
    # function docstring's last line -> the same line, then a stub returning the old value
    '    """The TLCP-diff ``diff`` applied to ``old``, counting characters; None if it is '
    'bad."""\n':
        "    return old  # bench.bound: free ^T\n",
    '    the C line decoder called it already)."""\n': "    return old  # bench.bound: free ^P\n",
}
# The C line decoder: both diff kinds return the old value (a payload it decodes is still
# decoded; an ASCII ^T it applies from the line's bytes has none)...
FREE = "{ value = old; Py_INCREF(value); } /* bench.bound */"
# ...or, with --copy, a new copy of it: the least any real decoding pays to produce a value.
COPY = ("{ /* bench.bound --copy */\n"
        "                    value = PyUnicode_New(PyUnicode_GET_LENGTH(old),\n"
        "                                          PyUnicode_MAX_CHAR_VALUE(old));\n"
        "                    if (value) memcpy(PyUnicode_DATA(value), PyUnicode_DATA(old),\n"
        "                        PyUnicode_GET_LENGTH(old) * PyUnicode_KIND(old));\n"
        "                }")


def c_stubs(value: str) -> list[tuple[str, str]]:
    """(anchor, replacement) pairs of ``_updateline.c``: each diff's value is ``value``."""
    return [
        ("                    value = tlcp_diff_text(old, &diff);\n",
         f"                    {value}\n"),
        ("                    if (kind == 'T')\n",
         f"                    if (1) {value}\n                    else if (kind == 'T')\n"),
        # a plain ^P, handed to the field's cut from the line's bytes
        ("                else if (plain) /* a cut takes it from the line's bytes too */\n",
         f"                else if (plain) {value}\n                else if (0)\n"),
    ]


PROJECT = ["setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.rst", "LICENSE",
           "buildsystem", "txlightstreamer", "twisted"]


def _patch_file(path: Path, anchor: str, replacement: str) -> None:
    text = path.read_text()
    if anchor not in text:
        raise SystemExit(f"bench.bound: cannot find {anchor.strip()[:60]!r} in {path.name}")
    path.write_text(text.replace(anchor, replacement))


def build(work: Path, copy: bool = False) -> Path:
    source = work / "src"
    source.mkdir()
    for name in PROJECT:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        elif (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    protocol = source / "txlightstreamer" / "protocol"
    for anchor, stub in STUBS.items():
        _patch_file(protocol / "_hotpath.py", anchor, anchor + stub)
    for anchor, stub in c_stubs(COPY if copy else FREE):
        _patch_file(protocol / "_updateline.c", anchor, stub)
    lib = work / "lib"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--target", str(lib), str(source)],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
    check = subprocess.run([sys.executable, "-c", "from txlightstreamer.protocol import _hotpath;"
                            "assert _hotpath.C_LINE is not None"], cwd=lib, timeout=120)
    if check.returncode:
        raise SystemExit("bench.bound: the stubbed copy did not build compiled")
    return lib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--copy", action="store_true",
                        help="each diff makes a copy of the old value instead (in C)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bound-") as tmp:
        lib = build(Path(tmp), args.copy)
        command = [sys.executable, "-m", "bench", "--lib", str(lib), "--only", "traffic",
                   "--out", str(Path(tmp) / "bound")]
        if args.quick:
            command.append("--quick")
        # The rows are wrong on purpose: the exit status says so, the figures stand.
        subprocess.run(command, cwd=ROOT, timeout=1800, check=False)


if __name__ == "__main__":
    main()
