"""
The ceiling: a minimal Twisted reader that only splits the burst's bytes into lines.

* ``raw``: a plain TCP connection to the sender's ``/bench/raw`` (the same lines with no
  HTTP framing) read by a ``LineOnlyReceiver`` subclass that only counts lines. This is
  the line-split ceiling of the issue.
* ``http``: ``twisted.web.client.Agent`` reading the same chunked stream a session gets
  (``/bench/chunked``) into the same line counter: the ceiling of any client built on
  Twisted's HTTP client, as txlightstreamer is.

Usage: ``python -m bench.client_ceiling <host> <port> --kind raw --expect 200000``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from twisted.internet import defer, protocol, reactor, task
from twisted.protocols.basic import LineOnlyReceiver
from twisted.web.client import Agent

from bench.common import cpu_seconds, emit, peak_rss_mb, rss_mb


class LineCounter(LineOnlyReceiver):
    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, done: defer.Deferred[None]) -> None:
        self.done = done
        self.lines = 0
        self.marks: dict[str, float] = {}

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self.marks:
            self.marks["t0"], self.marks["cpu0"] = time.perf_counter(), cpu_seconds()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        self.lines += 1

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.marks["t1"], self.marks["cpu1"] = time.perf_counter(), cpu_seconds()
        if not self.done.called:
            self.done.callback(None)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    done: defer.Deferred[None] = defer.Deferred()
    counter = LineCounter(done)
    rss_start = rss_mb()
    if args.kind == "raw":
        class RawReader(LineCounter):
            header_done = False

            def connectionMade(self) -> None:  # noqa: N802
                assert self.transport is not None
                self.transport.write(
                    b"GET /bench/raw HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

        counter = RawReader(done)
        await protocol.ClientCreator(reactor, lambda: counter).connectTCP(args.host, args.port)
    else:
        agent = Agent(reactor)
        response = await agent.request(
            b"GET", f"http://{args.host}:{args.port}/bench/chunked".encode())
        response.deliverBody(counter)
    timeout = reactor.callLater(args.timeout, lambda: done.called or done.callback(None))
    await done
    if timeout.active():
        timeout.cancel()
    # Lines that are not updates: the raw head (status line, header, blank line) and
    # CONOK/SUBOK/CONF; the chunked head is parsed by the Agent.
    head = 3 if args.kind == "raw" else 0
    updates = counter.lines - head - 3 * args.repeat
    m = counter.marks
    wall = m["t1"] - m["t0"]
    cpu = m["cpu1"] - m["cpu0"]
    return {
        "client": f"ceiling ({args.kind})",
        "mode": "throughput",
        "expected": args.expect,
        "lines": counter.lines,
        "updates": updates,
        "seconds": round(wall, 4),
        "cpu_seconds": round(cpu, 4),
        "updates_per_s": round(updates / wall) if wall > 0 else None,
        "lines_per_s": round(counter.lines / wall) if wall > 0 else None,
        "cpu_s_per_100k": round(cpu / updates * 100_000, 4) if updates else None,
        "rss_start_mb": round(rss_start, 2),
        "rss_end_mb": round(rss_mb(), 2),
        "peak_rss_mb": round(peak_rss_mb(), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--kind", choices=("raw", "http"), default="raw")
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    task.react(lambda _: defer.Deferred.fromCoroutine(run(args)).addCallback(emit))


if __name__ == "__main__":
    main()
