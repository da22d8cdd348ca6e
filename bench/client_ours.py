"""
txlightstreamer as a benchmark client (one process per run).

Modes:

* ``throughput``: count ``Table.on_update`` calls until ``--expect`` updates arrived;
  report updates/s and CPU time between the first and the last update, and the final row
  of every item.
* ``endurance``: the same over a long burst, sampling RSS and the number of pending
  delayed calls every tenth of the way.
* ``latency``: the first field holds the sender's ``time_ns()``; record send -> callback
  delays.

Usage: ``python -m bench.client_ours <url> --mode throughput --expect 200000
[--profile FILE.pstats]``. Prints one ``BENCH-RESULT`` JSON line.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from array import array
from typing import Any

from twisted.internet import defer, reactor, task

from bench.burst import SAMPLE_EVERY
from bench.common import cpu_seconds, emit, peak_rss_mb, rss_mb
from bench.mixed import KINDS, shape
from txlightstreamer import MODE_MERGE, LsClient, Table
from txlightstreamer.protocol import _hotpath


async def run(args: argparse.Namespace) -> dict[str, Any]:
    expect = args.expect
    done: defer.Deferred[None] = defer.Deferred()
    last: dict[int, Any] = {}
    marks: dict[str, float] = {}
    samples: list[dict[str, float]] = []
    rows: dict[str, list[Any]] = {}
    delays = array("q")
    count = 0
    sample_every = max(1, expect // 10)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()

    def finish() -> None:
        if not done.called:
            done.callback(None)

    def on_throughput(item: int, row: Any) -> None:
        nonlocal count
        if count % SAMPLE_EVERY == 0:
            rows[str(count)] = list(row)
        count += 1
        last[item] = row
        if count == 1:
            marks["t0"], marks["cpu0"] = time.perf_counter(), cpu_seconds()
        if count == expect:
            marks["t1"], marks["cpu1"] = time.perf_counter(), cpu_seconds()
            reactor.callLater(0, finish)

    def on_endurance(item: int, row: Any) -> None:
        nonlocal count
        count += 1
        last[item] = row
        if count == 1 or count % sample_every == 0:
            if count == 1:
                marks["t0"], marks["cpu0"] = time.perf_counter(), cpu_seconds()
            samples.append({
                "updates": count,
                "rss_mb": round(rss_mb(), 2),
                "delayed_calls": len(reactor.getDelayedCalls()),
                "seconds": round(time.perf_counter() - marks["t0"], 3),
            })
        if count == expect:
            marks["t1"], marks["cpu1"] = time.perf_counter(), cpu_seconds()
            reactor.callLater(0, finish)

    def on_latency(item: int, row: Any) -> None:
        nonlocal count
        now = time.time_ns()
        count += 1
        delays.append(now - int(row[0]))
        if count == 1:
            marks["t0"], marks["cpu0"] = time.perf_counter(), cpu_seconds()
        if count == expect:
            marks["t1"], marks["cpu1"] = time.perf_counter(), cpu_seconds()
            reactor.callLater(0, finish)

    callback = {"throughput": on_throughput, "endurance": on_endurance,
                "latency": on_latency}[args.mode]
    rss_start = rss_mb()
    transport = {"http": "HTTP-STREAMING", "ws": "WS-STREAMING"}[args.transport]
    client = LsClient(args.url, content_length=args.content_length,
                      forced_transport=transport)
    items, schema = shape(args.burst)
    continuity: list[str] = []
    client.on_session(lambda info: continuity.append(str(info.continuity)))
    await client.create_session()
    table = Table(client, mode=MODE_MERGE, item_ids=list(items), schema=list(schema),
                  snapshot=False)
    table.on_update(callback)
    if profiler is not None:
        profiler.enable()
    await table.when_subscribed()
    timeout = reactor.callLater(args.timeout, finish)
    await done
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    if timeout.active():
        timeout.cancel()
    rss_end = rss_mb()
    # Let a trailing END/LOOP settle, then leave.
    try:
        await defer.Deferred.fromCoroutine(_destroy(client))
    except Exception as e:  # a benchmark must still report
        print(f"destroy failed: {e!r}", file=sys.stderr)
    result: dict[str, Any] = {
        "client": "txlightstreamer",
        "hotpath": "compiled" if _hotpath.COMPILED else "interpreted",
        "mode": args.mode,
        "burst": args.burst,
        "transport": transport,
        "expected": expect,
        "updates": count,
        "rss_start_mb": round(rss_start, 2),
        "rss_end_mb": round(rss_end, 2),
        "delayed_calls_end": len(reactor.getDelayedCalls()),
        "session_events": continuity,
        "peak_rss_mb": round(peak_rss_mb(), 2),
    }
    if "t1" in marks:
        wall = marks["t1"] - marks["t0"]
        cpu = marks["cpu1"] - marks["cpu0"]
        result.update({
            "seconds": round(wall, 4),
            "cpu_seconds": round(cpu, 4),
            "updates_per_s": round((count - 1) / wall) if wall > 0 else None,
            "cpu_s_per_100k": round(cpu / (count - 1) * 100_000, 4) if count > 1 else None,
        })
    if args.mode == "throughput":
        result["samples"] = rows
    if args.mode in ("throughput", "endurance"):
        result["final"] = {str(k): list(v) for k, v in sorted(last.items())}
    if args.mode == "endurance":
        result["samples"] = samples
    if args.mode == "latency":
        ordered = sorted(delays)

        def pct(p: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] / 1e6, 3)

        result["latency_ms"] = {
            "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": pct(100),
            "mean": round(sum(ordered) / len(ordered) / 1e6, 3) if ordered else None,
        }
    return result


async def _destroy(client: LsClient) -> None:
    d = client.destroy()
    d.addTimeout(5, reactor)
    await d


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--mode", choices=("throughput", "endurance", "latency"),
                        default="throughput")
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--burst", choices=KINDS, default="plain")
    parser.add_argument("--transport", choices=("http", "ws"), default="http")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--content-length", type=int, default=50_000_000,
                        help="LS_content_length: the sender ends a stream with LOOP past it")
    parser.add_argument("--profile", default=None, help="write cProfile stats here")
    args = parser.parse_args()
    gc.collect()

    def go(_: Any) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(run(args)).addCallback(emit)

    task.react(go)


if __name__ == "__main__":
    main()
