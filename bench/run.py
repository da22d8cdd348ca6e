"""
Run every benchmark of issue 10 and report: ``python -m bench [--quick] [--only NAMES]``.

Each measured client runs in its own process against a server process on 127.0.0.1:

* throughput: the pre-encoded sender (bench/sender.py) streams the same burst to
  txlightstreamer, the official SDK and the two line-split ceilings;
* scale: 100 tables x 100 items against ``TlcpServer`` (bench/scale.py);
* endurance: 1,000,000 updates through one client, with LOOP rebinds;
* latency: send -> callback delay at 1,000 and 20,000 updates/s.

Prints a table, writes bench/results/latest.json and, when matplotlib is importable,
bench/results/latest.png.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.burst import make_burst
from bench.common import machine, parse_result, proc_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
ALL = ("throughput", "traffic", "scale", "endurance", "latency")
PIECES = ("block", "p512", "line")
TRANSPORTS = ("http", "ws")


#: Set by ``--lib``: where the measured processes find txlightstreamer and ``bench``.
LIB: dict[str, Any] = {"path": None, "cwd": ROOT}


def _use_lib(lib: str) -> None:
    """Measure another txlightstreamer: a directory holding the package, or ``installed``.

    The processes then run from a directory holding only a link to ``bench``, so that the
    checkout (half-edited, or the editable install) does not shadow it.
    """
    home = Path(tempfile.mkdtemp(prefix="txls-bench-"))
    (home / "bench").symlink_to(ROOT / "bench")
    LIB["cwd"] = home
    LIB["path"] = None if lib == "installed" else str(Path(lib).resolve())


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    paths = [LIB["path"], str(LIB["cwd"]), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


class Server:
    """A server process that prints ``LISTENING <port>`` and stops when stdin closes."""

    def __init__(self, *args: str, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            [PY, "-m", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=LIB["cwd"], env=_env())
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()  # type: ignore[union-attr]
                if line.startswith("LISTENING") or not line:
                    break
            if self.proc.poll() is not None:
                break
        if not line.startswith("LISTENING"):
            self.stop()
            raise RuntimeError(f"{args[0]} did not start: {self.proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # only the process we started
            self.proc.wait(10)


def client(*args: str, timeout: float = 600.0, server: Server | None = None,
           env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one client process; its result, plus the server's CPU seconds meanwhile."""
    cpu0 = server.cpu() if server else 0.0
    t0 = time.perf_counter()
    proc = subprocess.run([PY, "-m", *args], capture_output=True, text=True, cwd=LIB["cwd"],
                          env=_env(**(env or {})), timeout=timeout)
    wall = time.perf_counter() - t0
    result = parse_result(proc.stdout)
    if result is None:
        raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    result["process_seconds"] = round(wall, 3)
    if server is not None:
        result["server_cpu_s"] = round(server.cpu() - cpu0, 3)
    return result


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r.get("updates_per_s") or 0)
    best = dict(ordered[len(ordered) // 2])
    best["runs_updates_per_s"] = [r.get("updates_per_s") for r in runs]
    return best


def _final_matches(got: dict[str, Any], expected: dict[int, list[str | None]]) -> bool:
    return got == {str(k): v for k, v in expected.items()}


def bench_throughput(cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    updates = cfg["updates"]
    log(f"throughput: encoding {updates} updates, starting the sender")
    burst = make_burst(updates)
    sender = Server("bench.sender", "--scenario", "burst", "--updates", str(updates))
    try:
        expect = ["--expect", str(updates)]
        ours, pure, raw, http = [], [], [], []
        for i in range(cfg["repeats"]):
            log(f"  run {i + 1}/{cfg['repeats']}: txlightstreamer (as built, and pure "
                "Python), ceilings")
            ours.append(client("bench.client_ours", sender.url, *expect, server=sender))
            pure.append(client("bench.client_ours", sender.url, *expect, server=sender,
                               env={"TXLIGHTSTREAMER_PURE_PYTHON": "1"}))
            raw.append(client("bench.client_ceiling", "127.0.0.1", str(sender.port),
                              "--kind", "raw", *expect, server=sender))
            http.append(client("bench.client_ceiling", "127.0.0.1", str(sender.port),
                               "--kind", "http", *expect, server=sender))
        sdk_updates = cfg["sdk_updates"]
        log(f"  official SDK ({sdk_updates} updates, expect ~{sdk_updates // 5000 + 5} s)")
        sdk = client("bench.client_sdk", sender.url, "--expect", str(sdk_updates),
                     server=sender)
    finally:
        sender.stop()
    o, s, cr, ch = _median_run(ours), sdk, _median_run(raw), _median_run(http)
    p = _median_run(pure)
    if o["hotpath"] != "compiled":
        log("  NOTE: the hot path ran interpreted (build it with `pip install .`)")
    # Every run is checked, not only the median one.
    checks = {
        "ours_count_ok": all(r["updates"] == updates for r in ours),
        "pure_count_ok": all(r["updates"] == updates for r in pure),
        "pure_final_ok": all(_final_matches(r.get("final"), burst.final) for r in pure),
        "sdk_count_ok": s["updates"] == sdk_updates,
        # The SDK may get a shorter run (it is slow): then its sampled rows are checked.
        "same_count": o["updates"] == s["updates"] or sdk_updates < updates,
        "ours_final_ok": all(_final_matches(r.get("final"), burst.final) for r in ours),
        "sdk_final_ok": _final_matches(s.pop("final"), burst.final) if sdk_updates == updates
        else check_rows(s, burst, final=False)["samples_ok"],
    }
    checks["same_final_values"] = checks["ours_final_ok"] and checks["sdk_final_ok"]
    for r in (s, o, p, *ours, *pure):
        r.pop("samples", None)
        r.pop("final", None)
    ratio_sdk = o["updates_per_s"] / s["updates_per_s"] if s.get("updates_per_s") else None
    ratio_raw = o["updates_per_s"] / cr["updates_per_s"]
    ratio_http = o["updates_per_s"] / ch["updates_per_s"]
    return {
        "burst": burst.stats,
        "ours": o,
        "ours_pure": p,
        "sdk": s,
        "ceiling_raw": cr,
        "ceiling_http": ch,
        "checks": checks,
        "ratios": {
            "ours_over_sdk": round(ratio_sdk, 2) if ratio_sdk else None,
            "ours_over_ceiling_raw": round(ratio_raw, 4),
            "ours_over_ceiling_http": round(ratio_http, 4),
            "pure_over_sdk": round(p["updates_per_s"] / s["updates_per_s"], 2)
            if s.get("updates_per_s") else None,
            "pure_over_ceiling_raw": round(p["updates_per_s"] / cr["updates_per_s"], 4),
            "ours_over_pure": round(o["updates_per_s"] / p["updates_per_s"], 2),
            "cpu_sdk_over_ours": round(s["cpu_s_per_100k"] / o["cpu_s_per_100k"], 2)
            if s.get("cpu_s_per_100k") else None,
            # CPU-based: less sensitive to other load on the machine than wall-clock rates.
            "cpu_ceiling_raw_over_ours": round(cr["cpu_s_per_100k"] / o["cpu_s_per_100k"], 4),
        },
        "targets": {
            "ours_over_sdk>=20": bool(ratio_sdk and ratio_sdk >= 20),
            "ours_over_ceiling>=0.10": ratio_raw >= 0.10,
        },
    }


def _same_row(got: list[Any], want: list[str | None], json_fields: tuple[int, ...]) -> bool:
    if len(got) != len(want):
        return False
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if i in json_fields and a is not None and b is not None:
            if json.loads(a) != json.loads(b):
                return False
        elif a != b:
            return False
    return True


def check_rows(result: dict[str, Any], burst: Any, *, final: bool = True) -> dict[str, Any]:
    """Count, final rows and sampled rows of one client run against the encoder's values."""
    got_final = result.pop("final", {}) or {}
    got_samples = result.pop("samples", {}) or {}
    jf = burst.json_fields
    upto = result.get("expected", 0)
    want = {k: v for k, v in burst.samples.items() if k < upto}
    sampled = [int(k) for k in got_samples if int(k) in want]
    out = {
        "count_ok": result.get("updates") == result.get("expected"),
        "samples_checked": len(sampled),
        "samples_ok": len(sampled) == len(want) and all(
            _same_row(got_samples[str(k)], want[k], jf) for k in sampled),
    }
    if final:
        out["final_ok"] = set(got_final) == {str(k) for k in burst.final} and all(
            _same_row(got_final[str(k)], v, jf) for k, v in burst.final.items())
    return out


def _check_ok(check: dict[str, Any]) -> bool:
    return all(v for k, v in check.items() if k != "samples_checked")


def _keep_check(checks: dict[str, Any], key: str, check: dict[str, Any]) -> None:
    """Keeps the check of a case's latest run, or of the first of its runs that failed."""
    if key not in checks or _check_ok(checks[key]):
        checks[key] = check


def _ours_runs(cfg: dict[str, Any], log: Any, sender: Any, burst: Any, kind: str, tr: str,
               piece: str, checks: dict[str, Any]) -> dict[str, Any]:
    """Ours on one case, ``cfg["repeats"]`` times (a 512 B or 1-line run races the sender):
    the median run; each run's rows checked into ``checks``."""
    n = burst.stats["updates"]
    runs = []
    for _ in range(cfg["repeats"]):
        r = client("bench.client_ours", f"{sender.url}/{piece}", "--expect", str(n),
                   "--burst", kind, "--transport", tr, server=sender)
        _keep_check(checks, f"ours_{tr}_{piece}", check_rows(r, burst))
        runs.append(r)
    median = _median_run(runs)
    log(f"  ours {tr} {piece}: {median['updates_per_s']:,}/s")
    return median


def bench_traffic(cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    """Plain and mixed bursts x HTTP/WS x block/512-byte/line writes; SDK; ceilings."""
    from bench.mixed import load_burst

    out: dict[str, Any] = {}
    for kind in ("plain", "mixed"):
        n = cfg[f"{kind}_updates"]
        sdk_n = min(n, cfg[f"sdk_{kind}_updates"])
        log(f"traffic: {kind} burst, {n} updates")
        burst = load_burst(kind, n)
        sender = Server("bench.sender", "--burst", kind, "--updates", str(n), timeout=120)
        res: dict[str, Any] = {"burst": burst.stats, "ours": {}, "sdk": {}, "checks": {}}
        try:
            for tr in TRANSPORTS:
                res["ours"][tr] = {}
                for piece in PIECES:
                    res["ours"][tr][piece] = _ours_runs(cfg, log, sender, burst, kind, tr,
                                                        piece, res["checks"])
            for ck in ("raw", "http"):
                runs = [client("bench.client_ceiling", "127.0.0.1", str(sender.port), "--kind",
                               ck, "--expect", str(n), server=sender)
                        for _ in range(cfg["repeats"])]
                res[f"ceiling_{ck}"] = _median_run(runs)
            for tr in TRANSPORTS:
                log(f"  official SDK {tr}, {sdk_n} updates")
                try:
                    r = client("bench.client_sdk", sender.url, "--expect", str(sdk_n),
                               "--burst", kind, "--transport", tr, server=sender)
                    res["checks"][f"sdk_{tr}"] = check_rows(r, burst, final=sdk_n == n)
                    res["sdk"][tr] = r
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    res["sdk"][tr] = {"error": str(e)[-500:]}
        finally:
            sender.stop()
        out[kind] = res
    out["whole"] = _traffic_whole(cfg, log)
    checks_ok = all(_check_ok(c) for res in out.values() for c in res["checks"].values())
    return {**out, **traffic_ratios(out), "checks_ok": checks_ok}


def _traffic_whole(cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    """The mixed burst's updates with every value sent whole (no ``^T`` nor ``^P``), ours
    only, 32 KB writes: what the diffs cost against the bytes they save."""
    from bench.mixed import load_burst

    n = cfg["mixed_updates"]
    log(f"traffic: whole burst (the mixed updates without diffs), {n} updates")
    burst = load_burst("whole", n)
    sender = Server("bench.sender", "--burst", "whole", "--updates", str(n), timeout=120)
    res: dict[str, Any] = {"burst": burst.stats, "ours": {}, "checks": {}}
    try:
        for tr in TRANSPORTS:
            res["ours"][tr] = {"block": _ours_runs(cfg, log, sender, burst, "whole", tr,
                                                   "block", res["checks"])}
    finally:
        sender.stop()
    return res


def traffic_ratios(out: dict[str, Any]) -> dict[str, Any]:
    """Ratios by wall-clock rate and by CPU per update; the targets judged on the latter."""

    def rate(kind: str, tr: str = "http", piece: str = "block") -> float:
        return float(out[kind]["ours"][tr][piece]["updates_per_s"])

    def speed(kind: str, tr: str = "http", piece: str = "block") -> float:
        # Updates per CPU second: steadier than wall-clock rates on a shared machine.
        return 1e5 / out[kind]["ours"][tr][piece]["cpu_s_per_100k"]

    def ceiling(kind: str, ck: str, name: str) -> float:
        r = out[kind][f"ceiling_{ck}"]
        return float(r["updates_per_s"]) if name == "wall" else 1e5 / r["cpu_s_per_100k"]

    ratios: dict[str, Any] = {}
    cpu: dict[str, Any] = {}
    for name, fn, digits in (("wall", rate, 3), ("cpu", speed, 3)):
        r = ratios if name == "wall" else cpu
        r["mixed_over_plain"] = round(fn("mixed") / fn("plain"), digits)
        r["mixed_over_plain_ws"] = round(fn("mixed", "ws") / fn("plain", "ws"), digits)
        if "whole" in out:  # the same updates with no diff: above 1 when diffs pay
            for tr in TRANSPORTS:
                r[f"mixed_over_whole_{tr}"] = round(fn("mixed", tr) / fn("whole", tr), digits)
        for ck in ("raw", "http"):  # what the bytes alone cost: a reader that only splits
            r[f"ceiling_{ck}_mixed_over_plain"] = round(
                ceiling("mixed", ck, name) / ceiling("plain", ck, name), digits)
        for kind in ("plain", "mixed"):
            for tr in TRANSPORTS:
                sdk = out[kind]["sdk"].get(tr, {})
                ref = sdk.get("updates_per_s") if name == "wall" else (
                    1e5 / sdk["cpu_s_per_100k"] if sdk.get("cpu_s_per_100k") else None)
                r[f"{kind}_{tr}_over_sdk"] = round(fn(kind, tr) / ref, 1) if ref else None
                r[f"{kind}_{tr}_p512_over_block"] = round(
                    fn(kind, tr, "p512") / fn(kind, tr), digits)
                r[f"{kind}_{tr}_line_over_block"] = round(
                    fn(kind, tr, "line") / fn(kind, tr), digits)
            for piece in PIECES:
                r[f"{kind}_ws_over_http_{piece}"] = round(
                    fn(kind, "ws", piece) / fn(kind, "http", piece), digits)
    m_sdk = cpu["mixed_http_over_sdk"]
    targets = {
        "mixed>=60%_of_plain": cpu["mixed_over_plain"] >= 0.6,
        "mixed>=100x_sdk": bool(m_sdk and m_sdk >= 100),
        "p512>=50%_of_block": all(cpu[f"{k}_{t}_p512_over_block"] >= 0.5
                                  for k in ("plain", "mixed") for t in TRANSPORTS),
        "ws>=70%_of_http": all(cpu[f"{k}_ws_over_http_block"] >= 0.7
                               for k in ("plain", "mixed")),
    }
    return {"ratios": ratios, "ratios_cpu": cpu, "targets": targets}


def bench_scale(cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    tables, items, rate = cfg["scale_tables"], cfg["scale_items"], cfg["scale_rate"]
    log(f"scale: TlcpServer with {tables * items:,} items, {rate:,} updates/s")
    shape = ("--tables", str(tables), "--items", str(items))
    server = Server("bench.scale", "server", "--rate", str(rate), *shape, timeout=120)
    try:
        # --server-pid: the server's CPU until the last SUBOK, beside the client's own
        result = client("bench.scale", "client", server.url, "--window",
                        str(cfg["scale_window"]), *shape, "--server-pid",
                        str(server.proc.pid), server=server)
    finally:
        server.stop()
    result["rate_asked"] = rate
    result["targets"] = {
        "rss<100MB": result["rss_end_mb"] < 100,
        "subscribe<2s": result["subscribe_all_s"] < 2,
        "cpu<15%": result["flow_cpu_percent"] < 15,
    }
    return result


def bench_endurance(cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    total = cfg["endurance_updates"]
    chunk = cfg["updates"]
    repeat = max(1, total // chunk)
    total = repeat * chunk
    log(f"endurance: {total} updates through one client")
    sender = Server("bench.sender", "--scenario", "burst", "--updates", str(chunk),
                    "--repeat", str(repeat))
    try:
        result = client("bench.client_ours", sender.url, "--mode", "endurance",
                        "--expect", str(total), "--content-length",
                        str(cfg["content_length"]), server=sender)
    finally:
        sender.stop()
    result.pop("final", None)
    samples = result["samples"]
    start = samples[0]
    middle = min(samples, key=lambda s: abs(s["updates"] - total / 2))
    end = samples[-1]
    result["rss_start_mb"], result["rss_middle_mb"], result["rss_final_mb"] = (
        start["rss_mb"], middle["rss_mb"], end["rss_mb"])
    result["rss_middle_to_end_percent"] = round(
        (end["rss_mb"] - middle["rss_mb"]) / middle["rss_mb"] * 100, 2)
    calls = [s["delayed_calls"] for s in samples]
    result["delayed_calls_min_max"] = [min(calls), max(calls)]
    result["targets"] = {
        "rss_middle_end_within_5%": abs(result["rss_middle_to_end_percent"]) <= 5,
        "delayed_calls_flat": max(calls) - min(calls) <= 2,
    }
    return result


def bench_latency(cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate in (1000, 20000):
        duration = cfg["latency_seconds"]
        total = int(rate * duration)
        log(f"latency: {rate} updates/s for {duration} s")
        sender = Server("bench.sender", "--scenario", "paced", "--rate", str(rate),
                        "--duration", str(duration), "--updates", str(min(total, 200_000)))
        try:
            r = client("bench.client_ours", sender.url, "--mode", "latency",
                       "--expect", str(total), "--timeout", str(duration + 60),
                       server=sender)
        finally:
            sender.stop()
        r["rate"] = rate
        r["client_cpu_percent"] = round(r["cpu_seconds"] / r["seconds"] * 100, 1) \
            if r.get("seconds") else None
        out[str(rate)] = r
    return out


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}"
    if isinstance(v, (int, float)):
        return f"{v:,.0f}"
    return str(v)


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; "
        f"Python {m['python']}, Twisted {m['twisted']}, "
        f"lightstreamer-client-lib {m['lightstreamer_client_lib']}",
        f"Mode: {'quick' if results['quick'] else 'full'}; {results['date']}; load average "
        f"{results['load_before'][0]:.2f} before, {results['load_after'][0]:.2f} after"
        + (" (BUSY MACHINE: other processes competed for the CPU)"
           if results["load_before"][0] > (m["cores"] or 1) else ""),
        "",
    ]
    tp = results.get("throughput")
    if tp:
        b = tp["burst"]
        lines += [
            f"Throughput: MERGE, 100 items x 10 fields, {b['updates']:,} updates, "
            f"{b['avg_line_bytes']} B/line, {b['empty_token_share']:.0%} empty tokens, "
            f"{b['caret_runs_per_update']} ^n runs/update",
            f"  {'client':<28}{'updates/s':>12}{'CPU s/100k':>12}{'RSS MB':>9}"
            f"{'sender CPU':>12}",
        ]
        pure_row = (("ours_pure", "  same, pure Python"),) if "ours_pure" in tp else ()
        built = tp["ours"].get("hotpath", "compiled")
        for key, name in (("ours", f"txlightstreamer ({built})"), *pure_row,
                          ("sdk", "official SDK 2.2.3"),
                          ("ceiling_raw", "ceiling: raw lines"),
                          ("ceiling_http", "ceiling: Twisted HTTP")):
            r = tp[key]
            share = (r["server_cpu_s"] / r["seconds"] * 100) if r.get("seconds") else None
            lines.append(
                f"  {name:<28}{_fmt(r.get('updates_per_s')):>12}"
                f"{_fmt(r.get('cpu_s_per_100k'), 3):>12}{_fmt(r.get('peak_rss_mb'), 1):>9}"
                f"{(_fmt(r['server_cpu_s'], 2) + ' s'):>12}"
                + (f" ({share:.0f}% of run)" if share is not None and r["seconds"] >= 0.5
                   else ""))
        ra = tp["ratios"]
        c = tp["checks"]
        lines += [
            f"  ours/SDK = {ra['ours_over_sdk']}x (target >= 20x); "
            f"ours/ceiling = {ra['ours_over_ceiling_raw']:.1%} raw (target >= 10%), "
            f"{ra['ours_over_ceiling_http']:.1%} of the Twisted-HTTP ceiling; "
            f"SDK uses {ra['cpu_sdk_over_ours']}x our CPU per update; by CPU per update ours "
            f"is at {ra['cpu_ceiling_raw_over_ours']:.1%} of the raw ceiling",
            *([f"  pure-Python hot path: {ra['pure_over_sdk']}x the SDK, "
               f"{ra['pure_over_ceiling_raw']:.1%} of the raw ceiling; the compiled one is "
               f"{ra['ours_over_pure']}x faster"] if "pure_over_sdk" in ra else []),
            f"  same count ours/SDK: {c['same_count']}; same final values "
            f"(and equal to the encoder's): {c['same_final_values']}",
            "",
        ]
    tr = results.get("traffic")
    if tr:
        lines += traffic_table(tr)
    sc = results.get("scale")
    if sc:
        lines += [
            f"Scale: {sc['items']:,} items in {sc['tables']} tables (TlcpServer)",
            f"  create_session {sc['create_session_s']:.3f} s, "
            f"all SUBOK {sc['subscribe_all_s']:.3f} s"
            f" (target < 2 s), all snapshots +{sc['snapshots_s']:.3f} s",
            f"  client CPU for the setup {_fmt(sc.get('setup_cpu_s'), 2)} s, "
            f"server CPU until every SUBOK {_fmt(sc.get('server_subscribe_cpu_s'), 2)} s",
            f"  RSS {sc['rss_before_mb']:.1f} MB before, {sc['rss_after_setup_mb']:.1f} MB after "
            f"setup, {sc['rss_end_mb']:.1f} MB after the flow (target < 100 MB)",
            f"  flow {sc['flow_updates_per_s']:,.0f} updates/s (asked {sc.get('rate_asked', '-')}) "
            f"at {sc['flow_cpu_percent']}% of one core (target < 15%)",
            "",
        ]
    en = results.get("endurance")
    if en:
        lines += [
            f"Endurance: {en['updates']:,} updates at {_fmt(en.get('updates_per_s'))}/s, "
            f"{len(en['session_events'])} stream(s) (LOOP every "
            f"{results['config']['content_length'] / 1e6:g} MB)",
            f"  RSS start {en['rss_start_mb']:.1f} / middle {en['rss_middle_mb']:.1f} / end "
            f"{en['rss_final_mb']:.1f} MB ({en['rss_middle_to_end_percent']:+.2f}% "
            f"middle->end, target within 5%); pending delayed calls "
            f"{en['delayed_calls_min_max'][0]}..{en['delayed_calls_min_max'][1]}",
            "",
        ]
    la = results.get("latency")
    if la:
        lines.append("Latency (send -> on_update callback, txlightstreamer):")
        for rate, r in la.items():
            lt = r["latency_ms"]
            lines.append(
                f"  {int(rate):>6,} updates/s: p50 {lt['p50']:.3f} ms, p90 {lt['p90']:.3f} ms, "
                f"p99 {lt['p99']:.3f} ms, max {lt['max']:.3f} ms "
                f"({r['updates']:,} updates, client CPU {r['client_cpu_percent']}%)")
    return "\n".join(lines)


_PIECE_NAMES = {"block": "32 KB writes", "p512": "512 B writes", "line": "1 line/write"}


def _ours_row(tr_name: str, piece: str, r: dict[str, Any]) -> str:
    return (f"  {'txlightstreamer ' + tr_name.upper() + ', ' + _PIECE_NAMES[piece]:<34}"
            f"{_fmt(r.get('updates_per_s')):>12}{_fmt(r.get('cpu_s_per_100k'), 3):>12}"
            f"{_fmt(r.get('server_cpu_s'), 2) + ' s':>12}")


def _verdict(checks: dict[str, Any]) -> str:
    bad = [k for k, c in checks.items() if not _check_ok(c)]
    return "all equal" if not bad else "MISMATCH in " + ", ".join(bad)


def traffic_table(tr: dict[str, Any]) -> list[str]:
    lines = []
    for kind in ("plain", "mixed"):
        res = tr[kind]
        b = res["burst"]
        desc = (f"{b['tlcp_diffs_per_update']} ^T and {b['json_patches_per_update']} ^P per "
                f"update, {b['lines_with_tlcp_diff']:.0%} of lines with ^T, "
                if kind == "mixed" else f"{b['empty_token_share']:.0%} empty tokens, ")
        lines.append(f"Traffic, {kind} burst: {b['updates']:,} updates, "
                     f"{b['avg_line_bytes']} B/line, {desc}"
                     f"{b['caret_runs_per_update']} ^n runs/update")
        lines.append(f"  {'client':<34}{'updates/s':>12}{'CPU s/100k':>12}{'sender CPU':>12}")
        for tr_name in TRANSPORTS:
            for piece in PIECES:
                lines.append(_ours_row(tr_name, piece, res["ours"][tr_name][piece]))
        for tr_name in TRANSPORTS:
            r = res["sdk"].get(tr_name, {})
            label = f"official SDK {tr_name.upper()} ({_fmt(r.get('updates'))})"
            lines.append(f"  {label:<34}"
                         f"{_fmt(r.get('updates_per_s')):>12}{_fmt(r.get('cpu_s_per_100k'), 3):>12}"
                         + ("" if "error" not in r else "  failed"))
        for ck in ("raw", "http"):
            r = res[f"ceiling_{ck}"]
            lines.append(f"  {'ceiling: ' + ck:<34}{_fmt(r.get('updates_per_s')):>12}"
                         f"{_fmt(r.get('cpu_s_per_100k'), 3):>12}")
        lines.append(f"  rows checked against the encoder (final rows and every "
                     f"997th update): {_verdict(res['checks'])}")
    wh = tr.get("whole")
    if wh:
        b = wh["burst"]
        lines.append(f"Traffic, whole burst: the mixed burst's {b['updates']:,} updates with "
                     f"every changed value sent whole (no ^T, no ^P), {b['avg_line_bytes']} B/line")
        for tr_name in TRANSPORTS:
            lines.append(_ours_row(tr_name, "block", wh["ours"][tr_name]["block"]))
        lines.append(f"  rows checked against the encoder: {_verdict(wh['checks'])}")
    ra, tg = tr["ratios"], tr["targets"]
    rc = tr.get("ratios_cpu", ra)

    def both(key: str, pct: bool = True) -> str:
        if pct:
            return f"{ra[key]:.0%}/{rc[key]:.0%}"
        return f"{ra[key]}x/{rc[key]}x"

    lines += [
        "  ratios as wall-clock/CPU-per-update; targets judged by CPU per update:",
        f"  mixed/plain (HTTP, 32 KB) = {both('mixed_over_plain')} (target >= 60%: "
        f"{tg['mixed>=60%_of_plain']}); WS {both('mixed_over_plain_ws')}; the line-splitting "
        f"ceilings' own mixed/plain: raw {both('ceiling_raw_mixed_over_plain')}, Twisted HTTP "
        f"{both('ceiling_http_mixed_over_plain')}",
        *([f"  mixed/whole (the same updates, every value sent whole: "
            f"{tr['whole']['burst']['avg_line_bytes']} B/line): "
            f"HTTP {both('mixed_over_whole_http')}, WS {both('mixed_over_whole_ws')}"]
          if "mixed_over_whole_http" in ra else []),
        f"  ours/SDK: mixed HTTP {both('mixed_http_over_sdk', False)} (target >= 100x: "
        f"{tg['mixed>=100x_sdk']}), mixed WS {both('mixed_ws_over_sdk', False)}, "
        f"plain HTTP {both('plain_http_over_sdk', False)}, "
        f"plain WS {both('plain_ws_over_sdk', False)}",
        f"  512 B/32 KB: plain HTTP {both('plain_http_p512_over_block')}, WS "
        f"{both('plain_ws_p512_over_block')}; mixed HTTP {both('mixed_http_p512_over_block')},"
        f" WS {both('mixed_ws_p512_over_block')} (target >= 50%: {tg['p512>=50%_of_block']})",
        f"  1 line/32 KB: plain HTTP {both('plain_http_line_over_block')}, WS "
        f"{both('plain_ws_line_over_block')}; mixed HTTP {both('mixed_http_line_over_block')}"
        f", WS {both('mixed_ws_line_over_block')}",
        f"  WS/HTTP (32 KB): plain {both('plain_ws_over_http_block')}, mixed "
        f"{both('mixed_ws_over_http_block')} (target >= 70%: {tg['ws>=70%_of_http']}); "
        f"512 B: plain {both('plain_ws_over_http_p512')}, mixed "
        f"{both('mixed_ws_over_http_p512')}",
        "",
    ]
    return lines


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 3, figsize=(17, 8.5))
    m = results["machine"]
    fig.suptitle(f"txlightstreamer benchmarks — {m['cpu_model']}, {m['cores']} cores, "
                 f"Python {m['python']}, Twisted {m['twisted']}", fontsize=11)
    tp = results.get("throughput")
    ax = axes[0][0]
    if tp:
        names = [f"txlightstreamer\n({tp['ours'].get('hotpath', 'compiled')})", "official SDK",
                 "ceiling\n(Twisted HTTP)", "ceiling\n(raw lines)"]
        keys = ["ours", "sdk", "ceiling_http", "ceiling_raw"]
        if "ours_pure" in tp:
            names.insert(1, "txlightstreamer\n(pure Python)")
            keys.insert(1, "ours_pure")
        vals = [tp[k]["updates_per_s"] for k in keys]
        colors = ["tab:blue", *(["lightsteelblue"] if "ours_pure" in tp else []),
                  "tab:orange", "tab:gray", "silver"]
        bars = ax.bar(names, vals, color=colors)
        ax.set_yscale("log")
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylabel("updates/s (log)")
        ax.set_title(f"Throughput, {tp['burst']['updates']:,} MERGE updates")
        for bar, v in zip(bars, vals, strict=True):
            ax.annotate(f"{v:,.0f}", (bar.get_x() + bar.get_width() / 2, v),
                        ha="center", va="bottom", fontsize=8)
        ax2 = axes[0][1]
        cpu = [tp[k]["cpu_s_per_100k"] for k in keys]
        bars = ax2.bar(names, cpu, color=colors)
        ax2.set_yscale("log")
        ax2.tick_params(axis="x", labelsize=8)
        ax2.set_ylabel("CPU seconds per 100,000 updates (log)")
        ax2.set_title("CPU cost")
        for bar, v in zip(bars, cpu, strict=True):
            ax2.annotate(f"{v:.3f}", (bar.get_x() + bar.get_width() / 2, v),
                         ha="center", va="bottom", fontsize=8)
    en = results.get("endurance")
    ax = axes[1][0]
    if en:
        xs = [s["updates"] for s in en["samples"]]
        ax.plot(xs, [s["rss_mb"] for s in en["samples"]], marker="o", label="RSS (MB)")
        ax.set_xlabel("updates received")
        ax.set_ylabel("RSS MB")
        ax.set_ylim(0, max(s["rss_mb"] for s in en["samples"]) * 1.2)
        ax.set_title(f"Endurance, {en['updates']:,} updates")
        axb = ax.twinx()
        axb.plot(xs, [s["delayed_calls"] for s in en["samples"]], color="tab:red",
                 marker="x", label="pending delayed calls")
        axb.set_ylabel("pending delayed calls")
        axb.set_ylim(0, max(5, max(s["delayed_calls"] for s in en["samples"]) * 2))
        ax.legend(loc="lower left", fontsize=8)
        axb.legend(loc="lower right", fontsize=8)
    la = results.get("latency")
    ax = axes[1][1]
    if la:
        rates = list(la)
        width = 0.25
        for i, p in enumerate(("p50", "p90", "p99")):
            vals = [la[r]["latency_ms"][p] for r in rates]
            pos = [j + (i - 1) * width for j in range(len(rates))]
            bars = ax.bar(pos, vals, width, label=p)
            for bar, v in zip(bars, vals, strict=True):
                ax.annotate(f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, v),
                            ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(rates)), [f"{int(r):,} updates/s" for r in rates])
        ax.set_ylabel("send -> callback, ms")
        ax.set_title("Latency")
        ax.legend(fontsize=8)
    tr = results.get("traffic")
    if tr:
        for ax, kind in ((axes[0][2], "plain"), (axes[1][2], "mixed")):
            res = tr[kind]
            width = 0.38
            top = 1.0
            for i, tname in enumerate(TRANSPORTS):
                vals = [res["ours"][tname][p]["updates_per_s"] for p in PIECES]
                pos = [j + (i - 0.5) * width for j in range(len(PIECES))]
                bars = ax.bar(pos, vals, width, label=f"ours {tname.upper()}")
                top = max([top, *vals])
                for bar, v in zip(bars, vals, strict=True):
                    ax.annotate(f"{v / 1000:,.0f}k", (bar.get_x() + bar.get_width() / 2, v),
                                ha="center", va="bottom", fontsize=7)
            for tname, style in zip(TRANSPORTS, ("--", ":"), strict=True):
                v = res["sdk"].get(tname, {}).get("updates_per_s")
                if v:
                    ax.axhline(v, color="black", linestyle=style,
                               label=f"SDK {tname.upper()} {v:,.0f}/s")
            ax.set_yscale("log")
            ax.set_xticks(range(len(PIECES)), ["32 KB writes", "512 B writes", "1 line/write"])
            ax.set_ylabel("updates/s (log)")
            ax.set_title(f"{kind} burst, {res['burst']['updates']:,} updates "
                         f"(raw ceiling {res['ceiling_raw']['updates_per_s'] / 1e6:.1f}M/s)",
                         fontsize=10)
            ax.set_ylim(top=top * 20)  # a decade above the bars for the legend
            ax.legend(fontsize=7, ncol=2, loc="upper center")
    sc = results.get("scale")
    if sc:
        fig.text(0.01, 0.01,
                 f"Scale: {sc['items']:,} items subscribed in {sc['subscribe_all_s']:.2f} s, "
                 f"RSS {sc['rss_end_mb']:.1f} MB, {sc['flow_cpu_percent']}% CPU at "
                 f"{sc['flow_updates_per_s']:,.0f} updates/s", fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--only", default=",".join(ALL),
                        help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--out", default=str(RESULTS / "latest"),
                        help="path prefix of the .json and .png written")
    parser.add_argument("--lib", metavar="DIR",
                        help="measure the txlightstreamer package in DIR (or 'installed': the "
                        "running Python's) instead of this checkout's")
    parser.add_argument("--from-json", metavar="PATH",
                        help="measure nothing: redo the table and plot of a saved result")
    args = parser.parse_args(argv)
    if args.from_json:
        path = Path(args.from_json)
        saved = json.loads(path.read_text())
        if "traffic" in saved:
            saved["traffic"].update(traffic_ratios(saved["traffic"]))
        saved["table"] = table(saved)
        print(saved["table"])
        path.write_text(json.dumps(saved, indent=2) + "\n")
        plot(saved, path.with_suffix(".png"))
        return
    if args.lib:
        _use_lib(args.lib)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    cfg = {
        "updates": 40_000 if args.quick else 200_000,
        "sdk_updates": 10_000 if args.quick else 40_000,
        "repeats": 3,
        "plain_updates": 40_000 if args.quick else 200_000,
        "mixed_updates": 20_000 if args.quick else 60_000,
        "sdk_plain_updates": 10_000 if args.quick else 30_000,
        "sdk_mixed_updates": 5_000 if args.quick else 15_000,
        "scale_tables": 1000,
        "scale_items": 100,
        "scale_rate": 5000,
        "endurance_updates": 400_000 if args.quick else 1_000_000,
        "content_length": 4_000_000 if args.quick else 10_000_000,
        "scale_window": 3 if args.quick else 10,
        "latency_seconds": 3 if args.quick else 10,
    }
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "config": cfg,
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    runners = {"throughput": bench_throughput, "traffic": bench_traffic, "scale": bench_scale,
               "endurance": bench_endurance, "latency": bench_latency}
    for name in ALL:
        if name in only:
            try:
                results[name] = runners[name](cfg, log)
            except Exception as e:  # keep the other benchmarks' results
                log(f"{name} FAILED: {e!r}"[:3000])
                results.setdefault("errors", {})[name] = repr(e)[-3000:]
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    text = table(results)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results["table"] = text
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    if plot(results, out.with_suffix(".png")):
        log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    else:
        log(f"wrote {out.with_suffix('.json')} (no matplotlib: no plot)")
    failed = [k for k, v in results.get("throughput", {}).get("checks", {}).items() if not v]
    if results.get("traffic", {}).get("checks_ok") is False:
        failed.append("traffic")
    if failed:
        log(f"CHECKS FAILED: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
