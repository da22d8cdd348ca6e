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

from bench.burst import ITEMS, SCHEMA
from bench.common import cpu_seconds, emit, peak_rss_mb, rss_mb


class Counter(SubscriptionListener):  # type: ignore[misc]
    def __init__(self, expect: int) -> None:
        self.expect = expect
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
    args = parser.parse_args()
    rss_start = rss_mb()
    client = LightstreamerClient(args.url, "DEFAULT")
    client.connectionOptions.setForcedTransport("HTTP-STREAMING")
    sub = Subscription("MERGE", list(ITEMS), list(SCHEMA))
    sub.setRequestedSnapshot("no")
    counter = Counter(args.expect)
    sub.addListener(counter)
    client.subscribe(sub)
    client.connect()
    counter.done.wait(args.timeout)
    rss_end = rss_mb()
    marks = counter.marks
    count = counter.count
    final = {
        str(pos): [upd.getValue(i) for i in range(1, len(SCHEMA) + 1)]
        for pos, upd in sorted(counter.last.items())
    }
    result: dict[str, Any] = {
        "client": "official SDK",
        "mode": "throughput",
        "expected": args.expect,
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
