"""
What the mixed-burst levers would buy, measured in one process on the burst's own lines.

``python -m bench.levers [--compiled]`` decodes the mixed burst (per-item baselines)
with the library's general decoder (``decode_update``) and with ``levers_proto`` (one
pass, ``^T`` in the loop, parsed JSON baselines for ``^P``), checks both against the
encoder's final rows, and prints µs per update by line kind. With ``--compiled`` it
first builds ``levers_proto`` with mypyc in a temp directory (needs a C compiler).
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from bench.mixed import MIXED_SCHEMA, load_burst


def _kind(raw: str, first: bool) -> str:
    if first:
        return "first"
    if "^P" in raw:
        return "with ^P"
    if "^T" in raw:
        return "with ^T"
    return "plain"


def time_library(bodies: list[tuple[int, str]]) -> tuple[dict[str, list[float]], Any]:
    from txlightstreamer.protocol.values import decode_update

    nf = len(MIXED_SCHEMA)
    prev: dict[int, Any] = {}
    out: dict[str, list[float]] = {}
    clock = time.perf_counter
    for item, raw in bodies:
        p = prev.get(item)
        k = _kind(raw, p is None)
        t = clock()
        d = decode_update(raw, p, nf)
        dt = clock() - t
        prev[item] = d.values
        slot = out.setdefault(k, [0, 0.0])
        slot[0] += 1
        slot[1] += dt
    return out, prev


def time_lane(bodies: list[tuple[int, str]]) -> tuple[dict[str, list[float]], Any]:
    """The library's hot-path decoder, as `UpdateRouter.feed` calls it for a lane."""
    from txlightstreamer.protocol._hotpath import decode_plain, decode_rich
    from txlightstreamer.protocol.values import decode_update

    nf = len(MIXED_SCHEMA)
    prev: dict[int, Any] = {}
    docs: dict[int, Any] = {}  # what the lane keeps (protocol._jsontext.JsonText)
    out: dict[str, list[float]] = {}
    clock = time.perf_counter
    for item, raw in bodies:
        p = prev.get(item)
        k = _kind(raw, p is None)
        t = clock()
        if p is None:
            row: Any = decode_update(raw, None, nf).values
        elif "^" in raw or "#" in raw or "$" in raw or "%" in raw:
            row = decode_rich(raw, p, nf, docs, (item - 1) * nf)
        else:
            row = decode_plain(raw, p, nf)
        dt = clock() - t
        assert row is not None, raw
        prev[item] = row
        slot = out.setdefault(k, [0, 0.0])
        slot[0] += 1
        slot[1] += dt
    return out, prev


def time_proto(mod: Any, bodies: list[tuple[int, str]]) -> tuple[dict[str, list[float]], Any]:
    nf = len(MIXED_SCHEMA)
    prev: dict[int, Any] = {}
    docs: dict[int, dict[int, Any]] = {}
    out: dict[str, list[float]] = {}
    clock = time.perf_counter
    decode = mod.decode_line
    for item, raw in bodies:
        p = prev.get(item)
        k = _kind(raw, p is None)
        t = clock()
        if p is None:
            row = [None if v == "#" else "" if v == "$" else unquote(v) for v in raw.split("|")]
            docs[item] = {}
        else:
            row = decode(raw, p, docs[item], nf)
        dt = clock() - t
        prev[item] = row
        slot = out.setdefault(k, [0, 0.0])
        slot[0] += 1
        slot[1] += dt
    return out, prev


def build_compiled() -> Any:
    src = Path(__file__).with_name("levers_proto.py")
    work = Path(tempfile.mkdtemp(prefix="levers-"))
    (work / "levers_proto.py").write_text(src.read_text())
    proc = subprocess.run([sys.executable, "-m", "mypyc", "levers_proto.py"], cwd=work,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    sys.path.insert(0, str(work))
    mod = importlib.import_module("levers_proto")
    assert not mod.__file__.endswith(".py"), mod.__file__
    return mod


def best_of(n: int, run: Any) -> tuple[dict[str, list[float]], Any]:
    """Per line kind, the fastest of ``n`` passes (the machine may be shared)."""
    best: dict[str, list[float]] = {}
    rows = None
    for _ in range(n):
        stats, rows = run()
        for k, (count, t) in stats.items():
            if k not in best or t < best[k][1]:
                best[k] = [count, t]
    return best, rows


def report(name: str, stats: dict[str, list[float]], updates: int) -> str:
    total = sum(t for _, t in stats.values())
    parts = [f"{k}: {n} lines, {t / n * 1e6:.2f} µs/line" for k, (n, t) in sorted(stats.items())]
    return f"{name}: {total / updates * 1e6:.2f} µs/update ({'; '.join(parts)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=60_000)
    parser.add_argument("--compiled", action="store_true")
    args = parser.parse_args()
    burst = load_burst("mixed", args.updates)
    bodies = []
    for body in burst.bodies:
        item, _, raw = body.decode().partition(",")
        bodies.append((int(item), raw))
    from txlightstreamer.protocol import _hotpath

    lib_stats, lib_rows = best_of(3, lambda: time_library(bodies))
    ok_lib = all(list(lib_rows[i]) == v for i, v in burst.final.items())
    built = "compiled" if _hotpath.COMPILED else "interpreted"
    print(report(f"library decode_update (hot path {built})", lib_stats, args.updates),
          f"rows ok: {ok_lib}")
    lane_stats, lane_rows = best_of(3, lambda: time_lane(bodies))
    ok_lane = all(list(lane_rows[i]) == v for i, v in burst.final.items())
    print(report(f"library lane decoder, decode_rich with JSON kept ({built})", lane_stats,
                 args.updates), f"rows ok: {ok_lane}")
    mods = [("prototype, interpreted", importlib.import_module("bench.levers_proto"))]
    if args.compiled:
        mods.append(("prototype, compiled with mypyc", build_compiled()))
    for name, mod in mods:
        stats, rows = best_of(3, lambda m=mod: time_proto(m, bodies))
        ok = all(_same(rows[i], v) for i, v in burst.final.items())
        print(report(name, stats, args.updates), f"rows ok: {ok}")


def _same(a: list[Any], b: list[Any]) -> bool:
    return all(json.loads(x) == json.loads(y) if i == 10 and x and y else x == y
               for i, (x, y) in enumerate(zip(a, b, strict=True)))


if __name__ == "__main__":
    main()
