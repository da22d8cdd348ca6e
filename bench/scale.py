"""
Scale: one session with many items (e.g. 1,000 tables x 100 items) against ``TlcpServer``.

``python -m bench.scale server --rate 1000`` runs the test server in its own process and
publishes about ``rate`` updates/s spread over all items (prints ``LISTENING <port>``);
``python -m bench.scale client <url>`` measures, in the client process: the time from
``create_session`` and from the first ``Table`` to every table's ``SUBOK`` and to every
item's snapshot (each item has a state, so all rows are held after setup), RSS before and
after, and then RSS, CPU and received updates over a ``--window`` of seconds of flow.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from typing import Any

from twisted.internet import defer, reactor, task

from bench.common import cpu_seconds, emit, peak_rss_mb, proc_cpu_seconds, rss_mb

FIELDS = ("last_price", "bid", "ask", "time")


def item_name(table: int, item: int) -> str:
    return f"t{table}i{item}"


async def serve(args: argparse.Namespace) -> None:
    from txlightstreamer.testing import TlcpServer

    server = TlcpServer()
    await server.listen(reactor, port=0, interface="127.0.0.1")
    names = [item_name(t, i) for t in range(args.tables) for i in range(args.items)]
    rng = random.Random(7)
    price = {name: 100.0 for name in names}
    for name in names:  # every item has a state, delivered as the snapshot
        server.data.set_item(name, {"last_price": "100.00", "bid": "99.99", "ask": "100.01",
                                    "time": time.strftime("%H:%M:%S")})
    tick = 0.01
    per_tick = args.rate * tick
    owed = 0.0

    def publish() -> None:
        nonlocal owed
        owed += per_tick
        n = int(owed)
        owed -= n
        stamp = time.strftime("%H:%M:%S")
        for _ in range(n):
            name = names[rng.randrange(len(names))]
            p = price[name] = round(price[name] + rng.choice((-0.01, 0.01)), 2)
            server.data.update(name, {"last_price": f"{p:.2f}", "bid": f"{p - 0.01:.2f}",
                                      "ask": f"{p + 0.01:.2f}", "time": stamp})

    loop = task.LoopingCall(publish)
    loop.start(tick)
    print(f"LISTENING {server.url.rsplit(':', 1)[1]}", flush=True)
    stop: defer.Deferred[None] = defer.Deferred()
    # Serve until stdin closes (bounded by --lifetime).
    threading.Thread(target=lambda: (sys.stdin.read(), reactor.callFromThread(
        lambda: stop.called or stop.callback(None))), daemon=True).start()
    reactor.callLater(args.lifetime, lambda: stop.called or stop.callback(None))
    await stop
    loop.stop()
    await server.stop()


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from txlightstreamer import MODE_MERGE, LsClient, Table

    rss_before = rss_mb()
    count = 0

    def on_update(item: int, row: Any) -> None:
        nonlocal count
        count += 1

    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start()
    if args.profile:
        import cProfile

        setup_profiler = cProfile.Profile()
        setup_profiler.enable()
    t_start = time.perf_counter()
    cpu_start = cpu_seconds()
    server_cpu_start = proc_cpu_seconds(args.server_pid) if args.server_pid else 0.0
    client = LsClient(args.url, forced_transport="HTTP-STREAMING")
    await client.create_session()
    t_session = time.perf_counter()
    tables = []
    for t in range(args.tables):
        table = Table(client, mode=MODE_MERGE,
                      item_ids=[item_name(t, i) for i in range(args.items)],
                      schema=list(FIELDS), snapshot=True)
        table.on_update(on_update)
        tables.append(table)
    await defer.gatherResults([table.when_subscribed() for table in tables])
    t_subscribed = time.perf_counter()
    cpu_subscribed = cpu_seconds() - cpu_start
    server_cpu_subscribed = (proc_cpu_seconds(args.server_pid) - server_cpu_start
                             if args.server_pid else None)
    items = args.tables * args.items
    for _ in range(600):  # every item's snapshot (bounded: 60 s)
        if count >= items:
            break
        await task.deferLater(reactor, 0.1, lambda: None)
    t_snapshot = time.perf_counter()
    profiler = None
    if args.profile:
        import cProfile

        setup_profiler.disable()
        setup_profiler.dump_stats(args.profile.replace("profile-scale", "profile-scale-setup"))
        profiler = cProfile.Profile()
    cpu_setup = cpu_seconds() - cpu_start
    rss_setup = rss_mb()
    memory_sites = []
    if args.tracemalloc:
        import tracemalloc

        snap = tracemalloc.take_snapshot()
        tracemalloc.stop()
        for stat in snap.statistics("lineno")[:15]:
            frame = stat.traceback[0]
            where = "/".join(frame.filename.split("/")[-2:])
            memory_sites.append(f"{stat.size / 2**20:7.2f} MB {stat.count:>8} blocks  "
                                f"{where}:{frame.lineno}")
    # Let the flow settle, then measure a window.
    await task.deferLater(reactor, 1.0, lambda: None)
    if profiler is not None:
        profiler.enable()
    c0, cpu0, w0 = count, cpu_seconds(), time.perf_counter()
    rss_samples = []
    for _ in range(int(args.window)):
        await task.deferLater(reactor, 1.0, lambda: None)
        rss_samples.append(round(rss_mb(), 2))
    c1, cpu1, w1 = count, cpu_seconds(), time.perf_counter()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    result = {
        "client": "txlightstreamer",
        "items": args.tables * args.items,
        "tables": args.tables,
        "create_session_s": round(t_session - t_start, 4),
        "subscribe_all_s": round(t_subscribed - t_session, 4),
        "setup_total_s": round(t_subscribed - t_start, 4),
        "snapshots_s": round(t_snapshot - t_subscribed, 4),
        "snapshots_received": min(count, items),
        "setup_cpu_s": round(cpu_setup, 4),
        "subscribe_cpu_s": round(cpu_subscribed, 4),
        "rss_before_mb": round(rss_before, 2),
        "rss_after_setup_mb": round(rss_setup, 2),
        "flow_updates_per_s": round((c1 - c0) / (w1 - w0), 1),
        "flow_cpu_percent": round((cpu1 - cpu0) / (w1 - w0) * 100, 2),
        "flow_rss_mb": rss_samples,
        "rss_end_mb": round(rss_mb(), 2),
        "peak_rss_mb": round(peak_rss_mb(), 2),
        "delayed_calls": len(reactor.getDelayedCalls()),
    }
    if server_cpu_subscribed is not None:
        result["server_subscribe_cpu_s"] = round(server_cpu_subscribed, 4)
    if memory_sites:
        result["memory_sites_after_setup"] = memory_sites
    d = client.destroy()
    d.addTimeout(5, reactor)
    try:
        await d
    except Exception as e:
        print(f"destroy failed: {e!r}", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server")
    s.add_argument("--rate", type=float, default=1000.0)
    s.add_argument("--lifetime", type=float, default=600.0)
    s.add_argument("--profile", default=None, help="cProfile the server's whole life")
    c = sub.add_parser("client")
    c.add_argument("url")
    c.add_argument("--window", type=float, default=10.0)
    c.add_argument("--profile", default=None, help="cProfile the setup and the flow window")
    c.add_argument("--server-pid", type=int, default=None,
                   help="also report this (server) process's CPU seconds until every SUBOK")
    c.add_argument("--tracemalloc", action="store_true",
                   help="report the largest allocation sites after setup")
    for p in (s, c):
        p.add_argument("--tables", type=int, default=100)
        p.add_argument("--items", type=int, default=100)
    args = parser.parse_args()
    if args.role == "server":
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
            try:
                task.react(lambda _: defer.Deferred.fromCoroutine(serve(args)))
            finally:
                profiler.disable()
                profiler.dump_stats(args.profile)  # task.react exits through here
        else:
            task.react(lambda _: defer.Deferred.fromCoroutine(serve(args)))
    else:
        task.react(lambda _: defer.Deferred.fromCoroutine(measure(args)).addCallback(emit))


if __name__ == "__main__":
    main()
