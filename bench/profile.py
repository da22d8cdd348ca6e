"""
Profile txlightstreamer on the throughput burst: ``python -m bench.profile [--updates N]``.

Runs the pre-encoded sender and one ``bench.client_ours`` process under cProfile (enabled
from subscription to the last update) and, if ``py-spy`` is installed and allowed to
attach, once more under py-spy (sampling only the thread holding the GIL, with little
overhead; with ``--native`` when the hot path is compiled, since cProfile cannot see into
it). Writes ``bench/results/profile.txt`` (top functions by own time, and by
cumulative time) and the raw ``profile.pstats.tmp`` / ``pyspy.txt.tmp`` next to it (not
committed).
"""

from __future__ import annotations

import argparse
import collections
import io
import pstats
import shutil
import subprocess
import sys
from pathlib import Path

from bench.run import PY, RESULTS, ROOT, Server, _env, _use_lib, client


def cprofile_report(path: Path, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def pyspy_report(path: Path, top: int) -> str:
    """Own and inclusive sample shares per function from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    own_lines: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own_lines[frames[-1]] += n
        names = [_function(frame) for frame in frames]
        own[names[-1]] += n
        for name in set(names):
            incl[name] += n
    if not total:
        return "py-spy: no samples\n"
    lines = [f"py-spy: {total} samples", "", "own time per function (leaf frame):"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "own time per source line:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own_lines.most_common(top)]
    lines += ["", "inclusive time (txlightstreamer and twisted frames):"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in incl.most_common(top * 3)
              if "txlightstreamer/" in frame or "twisted/" in frame][:top]
    return "\n".join(lines) + "\n"


def _function(frame: str) -> str:
    """``Class.method (path/file.py:123)`` -> ``Class.method (path/file.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


#: The slow cases of issue 16: (burst, transport, piece, updates).
CASES = {
    "plain": ("plain", "http", "block", 200_000),
    "mixed": ("mixed", "http", "block", 60_000),
    "p512": ("plain", "http", "p512", 200_000),
    "line": ("plain", "http", "line", 100_000),
    "ws": ("plain", "ws", "block", 200_000),
    "ws-mixed": ("mixed", "ws", "block", 60_000),
    "ws-p512": ("plain", "ws", "p512", 200_000),
    "ws-line": ("plain", "ws", "line", 100_000),
}


def per_update_report(path: Path, updates: int, top: int) -> str:
    """Own time per function in µs per update, and calls per update."""
    stats = pstats.Stats(str(path))
    rows = []
    total = 0.0
    for (file, line, name), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += tt
        short = "/".join(file.split("/")[-2:])
        rows.append((tt, ct, nc, f"{short}:{line}({name})"))
    rows.sort(reverse=True)
    out = [f"  total {total / updates * 1e6:.2f} µs/update under cProfile "
           f"(own time per function; calls per update)",
           f"  {'own µs/upd':>10} {'cum µs/upd':>10} {'calls/upd':>10}  function"]
    for tt, ct, nc, where in rows[:top]:
        out.append(f"  {tt / updates * 1e6:>10.3f} {ct / updates * 1e6:>10.3f} "
                   f"{nc / updates:>10.3f}  {where}")
    return "\n".join(out) + "\n"


def profile_cases(names: list[str], top: int) -> str:
    report = []
    for name in names:
        if name == "scale":
            report.append(profile_scale(top))
            continue
        kind, tr, piece, updates = CASES[name]
        stats_path = RESULTS / f"profile-{name}.pstats.tmp"
        sender = Server("bench.sender", "--burst", kind, "--updates", str(updates), timeout=120)
        try:
            args = (f"{sender.url}/{piece}", "--expect", str(updates), "--burst", kind,
                    "--transport", tr)
            plain = client("bench.client_ours", *args)
            prof = client("bench.client_ours", *args, "--profile", str(stats_path))
        finally:
            sender.stop()
        report.append(f"== {name}: {kind} burst, {tr.upper()}, {piece} writes, {updates:,} "
                      f"updates; hot path {plain['hotpath']}: {plain['updates_per_s']:,}/s "
                      f"({plain['cpu_s_per_100k']} CPU s/100k) without the profiler, "
                      f"{prof['updates_per_s']:,}/s under it")
        report.append(per_update_report(stats_path, updates, top))
        print(report[-2], file=sys.stderr, flush=True)
    return "\n".join(report)


def profile_scale(top: int) -> str:
    stats_path = RESULTS / "profile-scale.pstats.tmp"
    shape = ("--tables", "1000", "--items", "100")
    server = Server("bench.scale", "server", "--rate", "5000", *shape, timeout=120)
    try:
        r = client("bench.scale", "client", server.url, "--window", "5", *shape,
                   "--profile", str(stats_path))
    finally:
        server.stop()
    flow = int(r["flow_updates_per_s"] * 5) or 1
    head = (f"== scale: 100,000 items, {r['flow_updates_per_s']:,} updates/s at "
            f"{r['flow_cpu_percent']}% CPU; setup: SUBOK {r['subscribe_all_s']} s, "
            f"RSS {r['rss_after_setup_mb']} MB (setup profiled separately below)")
    setup = stats_path.with_name("profile-scale-setup.pstats.tmp")
    return "\n".join([head, "flow window:", per_update_report(stats_path, flow, top),
                      "setup (create_session to all snapshots), per item:",
                      per_update_report(setup, 100_000, top)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=None,
                        help=f"profile these cases instead ({','.join(CASES)},scale) "
                        "into bench/results/profile-cases.txt")
    parser.add_argument("--lib", metavar="DIR", help="as for python -m bench")
    parser.add_argument("--append", action="store_true", help="add to profile-cases.txt")
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--pyspy-repeat", type=int, default=5,
                        help="burst repetitions for the py-spy run (more samples)")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.lib:
        _use_lib(args.lib)
    if args.cases:
        text = profile_cases([c.strip() for c in args.cases.split(",") if c.strip()], args.top)
        out = RESULTS / "profile-cases.txt"
        if args.append and out.exists():
            text = out.read_text() + "\n" + text
        out.write_text(text)
        print(text)
        return
    # Raw outputs end in .tmp (ignored by git); profile.txt is the summary to keep.
    stats_path = RESULTS / "profile.pstats.tmp"
    report = [f"Profile of txlightstreamer on {args.updates:,} burst updates\n"]
    sender = Server("bench.sender", "--updates", str(args.updates))
    try:
        plain = client("bench.client_ours", sender.url, "--expect", str(args.updates))
        prof = client("bench.client_ours", sender.url, "--expect", str(args.updates),
                      "--profile", str(stats_path))
    finally:
        sender.stop()
    report.append(f"hot path: {plain['hotpath']}; "
                  f"without profiler: {plain['updates_per_s']:,} updates/s, "
                  f"{plain['cpu_s_per_100k']} CPU s/100k; under cProfile: "
                  f"{prof['updates_per_s']:,} updates/s\n")
    report.append(cprofile_report(stats_path, args.top))
    pyspy = shutil.which("py-spy") or str(Path(PY).with_name("py-spy"))
    if Path(pyspy).exists():
        total = args.updates * args.pyspy_repeat
        sender = Server("bench.sender", "--updates", str(args.updates),
                        "--repeat", str(args.pyspy_repeat))
        raw = RESULTS / "pyspy.txt.tmp"
        try:
            proc = subprocess.run(
                [pyspy, "record", "--gil", "--rate", "250", "--format", "raw", "--output", str(raw),
                 *(["--native"] if plain["hotpath"] == "compiled" else []),
                 "--", PY, "-m", "bench.client_ours", sender.url, "--expect", str(total)],
                capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=600)
        finally:
            sender.stop()
        if raw.exists():
            report.append(pyspy_report(raw, args.top))
        else:
            report.append(f"py-spy failed: {proc.stderr[-1000:]}\n")
    else:
        report.append("py-spy not installed (pip install py-spy): skipped\n")
    text = "\n".join(report)
    (RESULTS / "profile.txt").write_text(text)
    print(text)
    print(f"wrote {RESULTS / 'profile.txt'}", file=sys.stderr)


if __name__ == "__main__":
    main()
