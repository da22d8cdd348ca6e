"""
The official SDK (``lightstreamer-client-lib``) as a benchmark client, in its own process.

Forced to HTTP-STREAMING, one MERGE subscription of the burst's 100 items x 10 fields,
snapshot off; the listener counts updates and keeps the last update object per item.
Rate and CPU time are taken between the first and the last update, as for ours (the SDK
runs its own threads; ``time.process_time`` covers them all).

Usage: ``python -m bench.client_sdk <url> --expect 200000``. Prints one ``BENCH-RESULT``
JSON line, then exits without waiting for the SDK's threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

from lightstreamer.client import LightstreamerClient, Subscription, SubscriptionListener

from bench.burst import SAMPLE_EVERY
from bench.common import cpu_seconds, emit, peak_rss_mb, rss_mb
from bench.mixed import KINDS, shape


class Counter(SubscriptionListener):  # type: ignore[misc]
    def __init__(self, expect: int, nfields: int) -> None:
        self.expect = expect
        self.nfields = nfields
        self.rows: dict[str, list[Any]] = {}
        self.count = 0
        self.last: dict[int, Any] = {}
        self.marks: dict[str, float] = {}
        self.done = threading.Event()
        self.subscribed = threading.Event()
        self.errors: list[Any] = []

    def onSubscription(self) -> None:  # noqa: N802
        self.subscribed.set()

    def onSubscriptionError(self, code: int, message: str) -> None:  # noqa: N802
        self.errors.append([code, message])
        self.done.set()

    def onItemUpdate(self, update: Any) -> None:  # noqa: N802
        if self.count >= self.expect:
            return  # the SDK's threads deliver more while the result is being written
        if self.count % SAMPLE_EVERY == 0:
            self.rows[str(self.count)] = [update.getValue(i) for i in range(1, self.nfields + 1)]
        self.count += 1
        self.last[update.getItemPos()] = update
        if self.count == 1:
            self.marks["t0"], self.marks["cpu0"] = time.perf_counter(), cpu_seconds()
        if self.count == self.expect:
            self.marks["t1"], self.marks["cpu1"] = time.perf_counter(), cpu_seconds()
            self.done.set()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--burst", choices=KINDS, default="plain")
    parser.add_argument("--transport", choices=("http", "ws"), default="http")
    args = parser.parse_args()
    rss_start = rss_mb()
    items, schema = shape(args.burst)
    client = LightstreamerClient(args.url, "DEFAULT")
    transport = {"http": "HTTP-STREAMING", "ws": "WS-STREAMING"}[args.transport]
    client.connectionOptions.setForcedTransport(transport)
    sub = Subscription("MERGE", list(items), list(schema))
    sub.setRequestedSnapshot("no")
    counter = Counter(args.expect, len(schema))
    sub.addListener(counter)
    client.subscribe(sub)
    client.connect()
    counter.done.wait(args.timeout)
    rss_end = rss_mb()
    marks = counter.marks
    count = counter.count
    final = {
        str(pos): [upd.getValue(i) for i in range(1, len(schema) + 1)]
        for pos, upd in sorted(counter.last.items())
    }
    result: dict[str, Any] = {
        "client": "official SDK",
        "mode": "throughput",
        "burst": args.burst,
        "transport": transport,
        "expected": args.expect,
        "samples": counter.rows,
        "updates": count,
        "errors": counter.errors,
        "rss_start_mb": round(rss_start, 2),
        "rss_end_mb": round(rss_end, 2),
        "peak_rss_mb": round(peak_rss_mb(), 2),
        "final": final,
    }
    if "t1" in marks:
        wall = marks["t1"] - marks["t0"]
        cpu = marks["cpu1"] - marks["cpu0"]
        result.update({
            "seconds": round(wall, 4),
            "cpu_seconds": round(cpu, 4),
            "updates_per_s": round((count - 1) / wall) if wall > 0 else None,
            "cpu_s_per_100k": round(cpu / (count - 1) * 100_000, 4),
        })
    emit(result)
    sys.stderr.flush()
    # The SDK's threads would keep the process alive; the result is out, leave now.
    try:
        client.disconnect()
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
