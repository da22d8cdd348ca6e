"""
How far diff decoding alone can move the mixed/plain ratio: the traffic run with ``^T`` and ``^P``
made free.

``python -m bench.bound`` copies the package to a temp directory, makes the hot path's TLCP-diff
(`_apply_diff`) and JSON Patch (`_patch`) return the old value unchanged, compiles that copy with
mypyc (without the C TLCP-diff, so the stubbed Python one runs) and runs ``python -m bench
--only traffic`` on it. Every other cost of a mixed line (longer lines, more fields, escapes)
is still paid, so its mixed/plain ratio is the most that cheaper diffs could ever reach.
Measurement only: the rows it decodes are wrong on purpose (the run reports MISMATCH).
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
    "    encode_json of its document) and its pieces, which the next patch may change in place."
    '"""\n': "    return old  # bench.bound: free ^P\n",
}


def build(work: Path) -> Path:
    package = work / "txlightstreamer"
    shutil.copytree(ROOT / "txlightstreamer", package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    hotpath = package / "protocol" / "_hotpath.py"
    text = hotpath.read_text()
    for anchor, stub in STUBS.items():
        if anchor not in text:
            raise SystemExit(f"bench.bound: cannot find {anchor.strip()[:60]!r} in _hotpath.py")
        text = text.replace(anchor, anchor + stub)
    hotpath.write_text(text)
    sources = ["txlightstreamer/protocol/_hotpath.py", "txlightstreamer/protocol/_jsontext.py"]
    proc = subprocess.run([sys.executable, "-m", "mypyc", *sources], cwd=work,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bound-") as tmp:
        lib = build(Path(tmp))
        command = [sys.executable, "-m", "bench", "--lib", str(lib), "--only", "traffic",
                   "--out", str(Path(tmp) / "bound")]
        if args.quick:
            command.append("--quick")
        # The rows are wrong on purpose: the exit status says so, the figures stand.
        subprocess.run(command, cwd=ROOT, timeout=1800, check=False)


if __name__ == "__main__":
    main()
