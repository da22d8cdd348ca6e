"""
``python -m bench.chaos``: the chaos run of issue 15 ("Faults: nothing lost").

One ``LsClient`` per transport (HTTP-STREAMING, WS-STREAMING, HTTP-POLLING, WS-POLLING)
streams ``--updates`` MERGE updates from a ``TlcpServer`` in the same process and reactor,
while the server, driven by a seeded RNG, cuts streams mid-line, truncates chunks, resets
streams, stalls them, injects corrupt lines, sends LOOPs, and restarts once (losing its
sessions). Every update carries a per-item sequence number; the run checks that within
each continuity epoch every update arrives exactly once and in order (a gap is allowed
only where ``on_session`` reported ``new``/``replaced``, where a snapshot may repeat the
last value), that the tail arrives, and that RSS and the count of live objects stay flat.
Logging begins at once (to a counting observer), as in an application: otherwise Twisted
keeps the last 200 log events, and the errors in them pin their dead connections, a
bounded creep that says nothing of the library. It prints the fault counts
and the result, writes ``--json`` (default ``bench/results/chaos.json``) and exits
non-zero on any loss, duplicate, hang or RSS growth.

Not a test: it runs for minutes (``--updates`` and ``--transports`` shorten it).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from txlightstreamer import MODE_MERGE, LsClient, Table
from txlightstreamer.testing import DataModel, TlcpServer
from txlightstreamer.testing._stream import Stream

TRANSPORTS = ("HTTP-STREAMING", "WS-STREAMING", "HTTP-POLLING", "WS-POLLING")
ITEMS = tuple(f"item{i}" for i in range(1, 11))
#: Updates published and not yet delivered, at most (the recovery log holds more).
WINDOW = 4000
RECOVERY_LOG = 50_000
#: A fault every FAULT_EVERY updates on average (scaled down for short runs).
FAULT_EVERY = 5_000
#: Seconds without progress that count as a hang.
HANG_SECONDS = 60.0
#: RSS may grow this much (MiB) between the end of the warm-up and the end of the run.
RSS_SLACK_MB = 16.0
#: Live (gc-tracked) objects may grow this much between the warm-up and the end: a dead
#: connection kept per fault would pin hundreds of them each.
OBJECTS_SLACK = 5_000
#: Corrupt lines injected on streams (not data notifications of the server).
CORRUPT_LINES = ("U,abc,1,x", "CONF,1", "U,1", "PROG,x", "SUBOK,1,1")
FAULT_KINDS = (
    "close_mid_line", "truncate_next_chunk", "close_after", "drop_streams",
    "stall", "corrupt_line", "bad_data_line", "loop",
)


def rss_mb() -> float:
    """VmRSS of this process (server and client), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def live_objects() -> int:
    """Objects the garbage collector tracks, after a collection."""
    gc.collect()
    return len(gc.get_objects())


class _LogCounter:
    """The log observer of the run: counts events by level, keeps none."""

    counts: Counter[str] = Counter()

    @classmethod
    def install(cls, keep_buffer: bool) -> None:
        from twisted.logger import ILogObserver, globalLogBeginner

        if not keep_buffer:
            observer = cast(ILogObserver, cls.observe)
            globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)

    @classmethod
    def observe(cls, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        cls.counts[getattr(level, "name", str(level))] += 1


class _LoopCounter:
    """Counts the LOOP lines the test server writes (a wrapper, behaviour unchanged)."""

    count = 0
    _installed = False

    @classmethod
    def install(cls) -> None:
        if cls._installed:
            return
        cls._installed = True
        original = Stream.close_with

        def close_with(self: Stream, line: str | None) -> None:
            if line is not None and line.startswith("LOOP"):
                cls.count += 1
            original(self, line)

        Stream.close_with = close_with  # type: ignore[method-assign]


@dataclass
class Checker:
    """Per-item sequence checks within continuity epochs."""

    last: dict[str, int] = field(default_factory=dict)
    #: Items whose next update may jump (first one after a new/replaced session).
    open_gap: set[str] = field(default_factory=set)
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    snapshots: int = 0
    skipped_by_replace: int = 0
    epochs: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    trace: Callable[[str], None] = print

    def session(self, continuity: str) -> None:
        self.epochs[continuity] += 1
        if continuity in ("new", "replaced"):
            self.open_gap = set(ITEMS)

    def update(self, item: str, seq_text: str | None) -> None:
        self.delivered += 1
        if seq_text is None:  # empty snapshot of an item the restarted server never saw
            self.snapshots += 1
            return
        seq = int(seq_text)
        last = self.last.get(item, 0)
        if item in self.open_gap:
            self.open_gap.discard(item)
            if seq == last:
                self.snapshots += 1
                return
            if seq > last:
                self.skipped_by_replace += seq - last - 1
                self.last[item] = seq
                return
        if seq == last + 1:
            self.last[item] = seq
        elif seq <= last:
            self.duplicated += 1
            self.problem(f"{item}: got {seq} after {last} (duplicate or reordered)")
        else:
            self.lost += seq - last - 1
            self.problem(f"{item}: got {seq} after {last} ({seq - last - 1} lost)")
            self.last[item] = seq

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)
            self.trace(text)


class ChaosRun:
    """One transport: a server, one client, the publisher and the fault scheduler."""

    def __init__(self, reactor: Any, transport: str, updates: int, seed: int,
                 verbose: bool, kinds: tuple[str, ...] = FAULT_KINDS,
                 restart: bool = True, content_length: int | None = None) -> None:
        self.reactor = reactor
        self.transport = transport
        self.updates = updates
        self.rng = random.Random(f"{seed}-{transport}")
        self.verbose = verbose
        self.streaming = transport.endswith("STREAMING")
        self.check = Checker(trace=self.trace)
        self.faults: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.published = 0
        self.pub: dict[str, int] = dict.fromkeys(ITEMS, 0)
        self.next_fault = self._fault_gap()
        self.restart_at = updates // 2
        self.restarted = False
        self.restarting = False
        self.port = 0
        self.server: TlcpServer | None = None
        self.client: LsClient | None = None
        self.rss: dict[str, float] = {}
        self.objects: dict[str, int] = {}
        #: Memory blocks Python's allocator has handed out (strings and bytes included).
        self.blocks: dict[str, int] = {}
        self.warm_at = max(1, updates // 10)
        self.kinds = kinds
        self.content_length = content_length
        #: RSS (MiB) at every tenth of the updates published.
        self.rss_curve: list[float] = []
        self.restarted = not restart

    # --- set-up -------------------------------------------------------------------

    def _new_server(self) -> TlcpServer:
        # LOOPs come from the "loop" fault (and from --content-length, if given).
        return TlcpServer(
            keepalive_millis=300,
            content_length=self.content_length if self.streaming else None,
            recovery_log_size=RECOVERY_LOG,
            data=DataModel(),
            session_timeout_millis=10_000,
        )

    async def _listen(self) -> None:
        self.server = self._new_server()
        await self.server.listen(self.reactor, port=self.port)
        assert self.server.url is not None
        self.port = int(self.server.url.rsplit(":", 1)[1])

    async def run(self) -> dict[str, Any]:
        gc.collect()
        self.rss["start"] = rss_mb()
        await self._listen()
        assert self.server is not None and self.server.url is not None
        client = self.client = LsClient(
            self.server.url, reactor=self.reactor, forced_transport=self.transport,
            retry_delay=0.2, stalled_timeout=0.3, reconnect_timeout=0.5,
            session_recovery_timeout=15.0,
        )
        client.on_session(self._session)
        client.on_error(self._error)
        await client.create_session("DEMO")
        table = Table(client, mode=MODE_MERGE, item_ids=list(ITEMS), schema=["seq"],
                      snapshot=True)
        table.on_update(lambda position, row: self.check.update(ITEMS[position - 1], row[0]))
        table.on_overflow(self._overflow)
        await table.when_subscribed()
        start = time.monotonic()
        cpu0 = time.process_time()
        await self._pump()
        seconds = time.monotonic() - start
        cpu = time.process_time() - cpu0
        await client.destroy()
        assert self.server is not None
        await self.server.stop()
        gc.collect()
        self.rss["after_close"] = rss_mb()
        return self._result(seconds, cpu)

    def trace(self, what: str) -> None:
        if self.verbose:
            print(f"    [{self.published} pub, {self.inflight()} in flight] {what}", flush=True)

    def _session(self, info: Any) -> None:
        self.trace(f"session {info.continuity}")
        self.check.session(str(info.continuity))

    def _overflow(self, position: int, lost: int) -> None:
        self.check.lost += lost
        self.check.problems.append(f"OV: {lost} updates of {ITEMS[position - 1]} dropped")

    def _error(self, error: Exception) -> None:
        kind = type(error).__name__
        self.trace(f"error {kind}: {str(error)[:200]}")
        self.errors[kind] += 1
        if len(self.error_samples) < 8:
            self.error_samples.append(f"{kind}: {str(error)[:160]}")

    # --- publishing -----------------------------------------------------------------

    def inflight(self) -> int:
        return sum(self.pub[i] - self.check.last.get(i, 0) for i in ITEMS)

    def _publish(self, n: int) -> None:
        assert self.server is not None
        data = self.server.data
        items = ITEMS
        pub = self.pub
        k = len(items)
        for _ in range(n):
            item = items[self.published % k]
            pub[item] += 1
            self.published += 1
            data.update(item, {"seq": str(pub[item])})

    async def _pump(self) -> None:
        last_progress = time.monotonic()
        last_seen = -1
        batch = 400 if self.streaming else 2000
        report = time.monotonic()
        while True:
            if self.published < self.updates and not self.restarting:
                room = WINDOW - self.inflight()
                if room > 0:
                    self._publish(min(batch, room, self.updates - self.published))
                    if self.kinds and self.published >= self.next_fault:
                        self._inject()
                        self.next_fault = self.published + self._fault_gap()
                    if not self.restarted and self.published >= self.restart_at:
                        self.restarted = True
                        await self._restart()
            if self.published >= self.warm_at and "warm" not in self.rss:
                self.objects["warm"] = live_objects()
                self.blocks["warm"] = sys.getallocatedblocks()
                self.rss["warm"] = rss_mb()
            if self.published >= len(self.rss_curve) * self.updates // 10:
                self.rss_curve.append(round(rss_mb(), 1))
            if self.published >= self.updates and self.inflight() == 0:
                break
            done = sum(self.check.last.values())
            now = time.monotonic()
            if done != last_seen:
                last_seen, last_progress = done, now
            elif now - last_progress > HANG_SECONDS:
                self.check.problems.append(
                    f"hang: no progress for {HANG_SECONDS:.0f} s, {self.inflight()} in flight,"
                    f" client status {self.client.status if self.client else None}")
                break
            if self.verbose and now - report > 5:
                report = now
                print(f"  {self.transport}: {self.published} published, "
                      f"{self.inflight()} in flight, rss {rss_mb():.1f} MiB", flush=True)
            await task.deferLater(self.reactor, 0 if self.inflight() < WINDOW else 0.001,
                                  lambda: None)
        self.objects["end"] = live_objects()
        self.blocks["end"] = sys.getallocatedblocks()
        self.rss["end"] = rss_mb()

    # --- faults ---------------------------------------------------------------------

    def _fault_gap(self) -> int:
        every = min(FAULT_EVERY, max(500, self.updates // 60))
        return self.rng.randint(every // 2, every * 3 // 2)

    def _inject(self) -> None:
        assert self.server is not None
        server, faults, rng = self.server, self.server.faults, self.rng
        kind = rng.choice(self.kinds)
        self.trace(f"fault {kind}")
        if kind == "close_mid_line":
            faults.close_mid_line()
        elif kind == "truncate_next_chunk":
            faults.truncate_next_chunk()
        elif kind == "close_after":
            faults.close_after(rng.randint(1, 300))
        elif kind == "drop_streams":
            server.drop_streams()
        elif kind == "stall":
            faults.stall()
            # Half the stalls end before the client gives up (held lines then flow).
            delay = rng.choice((0.1, 0.2, 1.5, 3.0))
            self.reactor.callLater(delay, self._unstall, server)
        elif kind == "corrupt_line":
            faults.send_line_to_all(rng.choice(CORRUPT_LINES))
        elif kind == "bad_data_line":
            # A bad line the server really sends: counted and kept for recovery.
            for session in list(server.sessions.values()):
                session._emit_data("U,1,1")
        elif kind == "loop":
            # Not on a stalled stream: held lines cannot be overtaken by a LOOP on a real
            # connection (and the test server would drop them as if written).
            for stream in list(server._streams):
                if not stream.stalled:
                    stream.close_with("LOOP,0")
        self.faults[kind] += 1

    def _unstall(self, server: TlcpServer) -> None:
        if server is self.server:
            server.faults.unstall()

    async def _restart(self) -> None:
        """Stop the server (its sessions are gone) and listen again on the same port."""
        self.restarting = True
        self.faults["restart"] += 1
        self.trace("restart")
        assert self.server is not None
        await self.server.stop()
        await task.deferLater(self.reactor, 0.3, lambda: None)
        await self._listen()
        # The data adapter of a restarted server knows each item's current value again.
        for item, seq in self.pub.items():
            self.server.data.update(item, {"seq": str(seq)})
        self.restarting = False

    # --- result -----------------------------------------------------------------------

    def _result(self, seconds: float, cpu: float) -> dict[str, Any]:
        c = self.check
        tail_lost = sum(self.pub[i] - c.last.get(i, 0) for i in ITEMS)
        if tail_lost:
            c.lost += tail_lost
            c.problems.append(f"{tail_lost} updates never arrived at the end")
        faults = {k: self.faults.get(k, 0) for k in (*FAULT_KINDS, "restart")}
        faults["loop_lines"] = _LoopCounter.count
        log_events = dict(_LogCounter.counts)
        _LogCounter.counts.clear()
        return {
            "transport": self.transport,
            "published": self.published,
            "delivered": c.delivered,
            "lost": c.lost,
            "duplicated": c.duplicated,
            "snapshots": c.snapshots,
            "not_delivered_across_replace": c.skipped_by_replace,
            "epochs": dict(c.epochs),
            "faults": faults,
            "errors_reported": dict(self.errors),
            "error_samples": self.error_samples,
            "rss_mb": {k: round(v, 1) for k, v in self.rss.items()},
            "rss_curve_mb": self.rss_curve,
            "live_objects": self.objects,
            "allocated_blocks": self.blocks,
            "log_events": log_events,
            "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu, 1),
            "updates_per_s": round(self.published / seconds) if seconds else None,
            "problems": c.problems,
        }


def _ok(result: dict[str, Any]) -> bool:
    rss = result["rss_mb"]
    flat = rss.get("end", 0) - rss.get("warm", rss.get("start", 0)) <= RSS_SLACK_MB
    objects = result.get("live_objects", {})
    flat = flat and objects.get("end", 0) - objects.get("warm", 0) <= OBJECTS_SLACK
    replaced_reported = result["faults"]["restart"] == 0 or result["epochs"].get("replaced", 0) > 0
    return (result["lost"] == 0 and result["duplicated"] == 0 and not result["problems"]
            and flat and replaced_reported)


def _print_table(results: list[dict[str, Any]]) -> None:
    head = (f"{'transport':15} {'updates':>9} {'lost':>4} {'dup':>4} {'epochs':34} "
            f"{'RSS start/warm/end MiB':>23} {'s':>6}  ok")
    print(head)
    print("-" * len(head))
    for r in results:
        ep = " ".join(f"{k}:{v}" for k, v in sorted(r["epochs"].items()))
        rss = r["rss_mb"]
        mem = f"{rss.get('start', 0):.1f}/{rss.get('warm', 0):.1f}/{rss.get('end', 0):.1f}"
        print(f"{r['transport']:15} {r['published']:>9} {r['lost']:>4} {r['duplicated']:>4} "
              f"{ep:34} {mem:>23} {r['seconds']:>6}  {'yes' if _ok(r) else 'NO'}")
    print()
    kinds = list(results[0]["faults"]) if results else []
    print(f"{'faults':15} " + " ".join(f"{k[:12]:>12}" for k in kinds))
    for r in results:
        print(f"{r['transport']:15} " + " ".join(f"{r['faults'][k]:>12}" for k in kinds))
    for r in results:
        for p in r["problems"]:
            print(f"PROBLEM {r['transport']}: {p}")


async def _main(reactor: Any, args: argparse.Namespace) -> int:
    _LoopCounter.install()
    _LogCounter.install(args.keep_log_buffer)
    results = []
    began = time.monotonic()
    for transport in args.transports.split(","):
        n = args.updates if transport.endswith("STREAMING") else args.polling_updates
        print(f"{transport}: {n} updates, seed {args.seed}", flush=True)
        _LoopCounter.count = 0
        kinds = tuple(k for k in args.faults.split(",") if k and k != "none")
        run = ChaosRun(reactor, transport, n, args.seed, args.verbose, kinds,
                       not args.no_restart, args.content_length)
        result = await run.run()
        results.append(result)
        brief = {k: result[k] for k in ("lost", "duplicated", "epochs", "faults", "rss_mb",
                                         "live_objects", "seconds")}
        print(f"  {json.dumps(brief)}", flush=True)
    total = time.monotonic() - began
    print()
    _print_table(results)
    ok = all(_ok(r) for r in results)
    print(f"\n{sum(r['published'] for r in results)} updates in {total:.0f} s: "
          f"{'PASS' if ok else 'FAIL'}")
    if args.json:
        from bench.common import machine

        with open(args.json, "w") as f:
            json.dump({
                "command": "python -m bench.chaos " + " ".join(sys.argv[1:]),
                "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                "machine": machine(),
                "seed": args.seed,
                "seconds": round(total, 1),
                "pass": ok,
                "results": results,
            }, f, indent=2)
            f.write("\n")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split(
        "\n\n")[1] if __doc__ else None)
    parser.add_argument("--updates", type=int, default=1_000_000,
                        help="updates per streaming transport (default 1,000,000)")
    parser.add_argument("--polling-updates", type=int, default=None,
                        help="updates per polling transport (default: --updates)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument("--json", default="bench/results/chaos.json",
                        help="where to write the figures ('' for nowhere)")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS),
                        help="fault kinds to inject, comma-separated ('none': no faults)")
    parser.add_argument(
        "--content-length", type=int, default=None,
        help="the server's content length on streaming transports (LOOPs); off by default:"
             " TlcpServer drops lines held by a stall when it LOOPs while releasing them")
    parser.add_argument("--no-restart", action="store_true", help="no server restart")
    parser.add_argument(
        "--keep-log-buffer", action="store_true",
        help="do not begin logging: Twisted keeps the last 200 events (and what their errors"
             " pin), as in the runs before the observer was added")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="progress, and every fault, session event and error")
    args = parser.parse_args(argv)
    if args.polling_updates is None:
        args.polling_updates = args.updates
    code: list[int] = []
    from twisted.internet import reactor

    def failed(failure: Failure) -> None:
        failure.printTraceback()  # type: ignore[no-untyped-call]

    def go() -> None:
        d: Deferred[int] = defer.Deferred.fromCoroutine(_main(reactor, args))
        d.addCallback(code.append)
        d.addErrback(failed)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    sys.exit(code[0] if code else 2)

if __name__ == "__main__":
    main()
