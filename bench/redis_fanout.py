"""
Scaling out through Redis (issue 17): how fast the bridge writes a Lightstreamer burst into
a Redis stream, and how quickly relays reading that stream fan it out over SSE.

Three measurements, each against its own ``redis-server`` on a free loopback port:

* ``sink``: `RedisSink` alone, fed pre-built ``update`` records 1,000 per reactor turn
  (JSON-lines encoding, Lua batches of 1,000 while the next ones are encoded): events/s.
* ``bridge``: ``python -m txlightstreamer --sink`` reading a pre-encoded burst from
  ``bench.sender`` (HTTP streaming): update events/s into Redis, timed by the stream ids
  of the first and last update (Redis's own clock, ms).
* ``fanout``: two ``--source`` relay processes serving 100 SSE clients each (raw sockets
  in this process); a writer appends paced updates carrying ``time_ns()``; the delay from
  writing to each client's receipt: p50/p99/max over every (event, client), at 200 and
  1,000 events/s (the 200 clients' parsing in this one process is part of the delay).

Usage: ``python -m bench.redis_fanout [--updates 200000] [--clients 200]``; writes
``bench/results/redis_fanout.json``. ``--only sink,bridge`` runs some measurements (and
writes nothing); ``--lib installed`` (or ``--lib DIR``) measures another txlightstreamer
(the compiled build installed in this Python) from a directory holding only ``bench``;
``--profile FILE`` runs the bridge under cProfile (its figures are then slower).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint

from bench.burst import ITEMS, SCHEMA
from bench.common import machine, proc_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "redis_fanout.json"
LIVE = re.compile(rb"Live tables on http://[^/\s]+:(\d+)/")
STAMP = re.compile(rb'"t": "(\d+)"')
#: Runs of each sink measurement (the best is reported: a shared machine is noisy).
RUNS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    """A throw-away redis-server (no persistence)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="txls-bench-redis-")
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # set-up only, before the reactor runs

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0?maxlen=0"

    def cli(self, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], check=True,
                              capture_output=True, text=True).stdout

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


#: Set by ``--lib``: where the measured processes find txlightstreamer and ``bench``.
LIB: dict[str, Any] = {"path": None, "cwd": ROOT}


def _use_lib(lib: str) -> None:
    """Run the processes from a directory holding only a link to ``bench``, so that the
    checkout (or its editable install) does not shadow the package measured."""
    home = Path(tempfile.mkdtemp(prefix="txls-bench-"))
    (home / "bench").symlink_to(ROOT / "bench")
    LIB["cwd"] = home
    LIB["path"] = None if lib == "installed" else str(Path(lib).resolve())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [LIB["path"], str(LIB["cwd"]), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _update(n: int) -> dict[str, Any]:
    return {"event": "update", "sub": 0, "item": ITEMS[n % len(ITEMS)], "pos": n % 100 + 1,
            "values": {name: f"{n}.{i}" for i, name in enumerate(SCHEMA)},
            "changed": list(SCHEMA[:3]), "snapshot": False}


# -- sink alone ------------------------------------------------------------------------------


async def bench_sink(updates: int) -> dict[str, Any]:
    """Events/s through `RedisSink`: encoding included, and pre-encoded (as the bridge,
    which encodes each event once for both the JSON lines and the stream)."""
    from txlightstreamer.events import encode_event

    records = [_update(n) for n in range(updates)]
    encoded = [encode_event(record) for record in records]
    result: dict[str, Any] = {"events": updates}
    for name, items, write in [("with_encoding", records, "write"),
                               ("pre_encoded", encoded, "write_data")]:
        runs = [await _sink_run(items, write) for _ in range(RUNS)]
        best = max(runs, key=lambda run: int(run["events_per_s"]))
        result[name] = {**best, "runs_events_per_s": [run["events_per_s"] for run in runs]}
    return result


async def _sink_run(items: list[Any], method: str) -> dict[str, Any]:
    from txlightstreamer.events import encode_event
    from txlightstreamer.sinks import RedisSink, parse_redis_url

    redis = Redis()
    updates = len(items)
    try:
        sink = RedisSink(parse_redis_url(redis.url), clock=reactor, encode=encode_event,
                         buffer_limit=updates + 1)
        await sink.start()
        write = getattr(sink, method)
        t0 = time.perf_counter()
        for start in range(0, updates, 1000):
            # As from the network: a slice per reactor turn, so Redis works meanwhile.
            for item in items[start:start + 1000]:
                write(item)
            await task.deferLater(reactor, 0, lambda: None)
        while sink.written < updates:
            await task.deferLater(reactor, 0.001, lambda: None)
        seconds = time.perf_counter() - t0
        await sink.stop()
        length = int(redis.cli("XLEN", "txls:events"))
    finally:
        redis.stop()
    return {"in_stream": length, "seconds": round(seconds, 3),
            "events_per_s": round(updates / seconds)}


# -- the bridge, end to end ------------------------------------------------------------------


def bench_bridge(updates: int, runs: int = RUNS, profile: str | None = None) -> dict[str, Any]:
    """The best of ``runs`` bridge runs, with every run's events/s."""
    results = [_bridge_run(updates, profile) for _ in range(runs)]
    best = max(results, key=lambda run: int(run["events_per_s"]))
    return {**best, "runs_events_per_s": [run["events_per_s"] for run in results],
            "runs_cpu_us_per_update": [run["cpu_us_per_update"] for run in results]}


def _bridge_run(updates: int, profile: str | None) -> dict[str, Any]:
    redis = Redis()
    sender = subprocess.Popen(
        [sys.executable, "-m", "bench.sender", "--scenario", "burst", "--updates",
         str(updates)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=LIB["cwd"],
        env=_env())
    try:
        assert sender.stdout is not None
        line = sender.stdout.readline().decode()
        port = int(line.split()[1])
        spec = f"MERGE {','.join(ITEMS)} {','.join(SCHEMA)} snapshot=no"
        runner = ["-m", "cProfile", "-o", str(Path(profile).resolve())] if profile else []
        t0 = time.perf_counter()
        cpu0 = _children_cpu()  # the sender is reaped later: this counts the bridge only
        redis0, sender0 = proc_cpu_seconds(redis.process.pid), proc_cpu_seconds(sender.pid)
        bridge = subprocess.run(
            [sys.executable, *runner, "-m", "txlightstreamer", "--url",
             f"http://127.0.0.1:{port}", "--subscribe", spec, "--max-updates", str(updates),
             "--sink", redis.url, "--output", os.devnull], cwd=LIB["cwd"], env=_env(),
            capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - t0
        cpu = _children_cpu() - cpu0
        redis_cpu = proc_cpu_seconds(redis.process.pid) - redis0
        sender_cpu = proc_cpu_seconds(sender.pid) - sender0
        if bridge.returncode != 0:
            raise RuntimeError(f"bridge failed: {bridge.stderr[-2000:]}")
        length = int(redis.cli("XLEN", "txls:events"))
        first = _first_update_id(redis)
        last = redis.cli("XREVRANGE", "txls:events", "+", "-", "COUNT", "1").split()[0]
        ms = int(last.split("-")[0]) - int(first.split("-")[0])
    finally:
        if sender.stdin is not None:
            sender.stdin.close()
        sender.wait(timeout=30)
        redis.stop()
    return {"updates": updates, "entries": length, "stream_seconds": ms / 1000,
            "events_per_s": round(updates / max(ms / 1000, 1e-3)),
            "process_seconds": round(wall, 2), "process_cpu_seconds": round(cpu, 2),
            "cpu_us_per_update": round(cpu / updates * 1e6, 2),
            "redis_cpu_seconds": round(redis_cpu, 2), "sender_cpu_seconds": round(sender_cpu, 2)}


def _first_update_id(redis: Redis) -> str:
    """The id of the first update entry (entries print as id, field, value lines)."""
    lines = redis.cli("--raw", "XRANGE", "txls:events", "-", "+", "COUNT", "100").splitlines()
    for index in range(0, len(lines) - 2, 3):
        if json.loads(lines[index + 2])["event"] == "update":
            return lines[index]
    raise RuntimeError("no update in the stream")


# -- SSE fan-out -----------------------------------------------------------------------------


class SseClient(protocol.Protocol):
    """A raw /events client: the delay of each stamped event, nothing else parsed."""

    def __init__(self, delays: list[int]) -> None:
        self.delays = delays
        self.buffer = b""
        self.received = 0

    def connectionMade(self) -> None:  # noqa: N802
        assert self.transport is not None
        self.transport.write(b"GET /events HTTP/1.1\r\nHost: bench\r\n"
                             b"Accept: text/event-stream\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        now = time.time_ns()
        self.buffer += data
        end = self.buffer.rfind(b"\n\n")
        if end < 0:
            return
        complete, self.buffer = self.buffer[:end], self.buffer[end + 2:]
        for stamp in STAMP.findall(complete):
            self.delays.append(now - int(stamp))
            self.received += 1


async def bench_fanout(clients: int, rate: int, seconds: float) -> dict[str, Any]:
    from txlightstreamer.events import encode_event
    from txlightstreamer.sinks import RedisSink, parse_redis_url

    redis = Redis()
    logs = [Path(redis.dir) / f"relay{n}.log" for n in range(2)]
    relays = [subprocess.Popen(
        [sys.executable, "-m", "txlightstreamer", "--source", redis.url, "--http-port",
         "tcp:0"], cwd=LIB["cwd"], env=_env(), stdout=subprocess.DEVNULL,
        stderr=log.open("wb")) for log in logs]
    connected: list[SseClient] = []
    try:
        ports = [await _relay_port(log) for log in logs]
        delays: list[int] = []
        factory = protocol.Factory.forProtocol(lambda: SseClient(delays))
        for n in range(clients):
            endpoint_port = ports[n % 2]
            client = await TCP4ClientEndpoint(reactor, "127.0.0.1", endpoint_port).connect(
                factory)
            connected.append(client)
        await task.deferLater(reactor, 0.5, lambda: None)  # every stream is open
        sink = RedisSink(parse_redis_url(redis.url), clock=reactor, encode=encode_event)
        await sink.start()
        per_tick = max(1, rate // 100)
        sent = 0

        def tick() -> None:
            nonlocal sent
            for _ in range(per_tick):
                sent += 1
                sink.write({"event": "update", "sub": 0, "item": "item1", "pos": 1,
                            "values": {"t": str(time.time_ns())}, "changed": ["t"],
                            "snapshot": False})

        ticker = task.LoopingCall(tick)
        ticker.start(0.01)
        await task.deferLater(reactor, seconds, lambda: None)
        ticker.stop()
        deadline = time.monotonic() + 30
        while sum(c.received for c in connected) < sent * clients \
                and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.05, lambda: None)
        await sink.stop()
    finally:
        for client in connected:
            if client.transport is not None:
                client.transport.loseConnection()
        for relay in relays:
            relay.terminate()
            relay.wait(timeout=30)
        redis.stop()
    delays.sort()

    def pct(p: float) -> float:
        return round(delays[min(len(delays) - 1, int(len(delays) * p))] / 1e6, 2)

    return {"relays": 2, "clients": clients, "events": sent, "rate_per_s": rate,
            "deliveries": len(delays), "expected_deliveries": sent * clients,
            "delay_ms_p50": pct(0.50), "delay_ms_p99": pct(0.99),
            "delay_ms_max": round(delays[-1] / 1e6, 2)}


async def _relay_port(log: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = LIVE.search(log.read_bytes())
        if match:
            return int(match.group(1))
        await task.deferLater(reactor, 0.05, lambda: None)
    raise RuntimeError(f"no relay port: {log.read_bytes()[-2000:]!r}")


async def main(reactor_: Any, args: argparse.Namespace) -> None:
    results: dict[str, Any] = {"machine": machine(), "date": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "lib": args.lib or "checkout",
        "load_average_before": list(os.getloadavg())}
    only = set(args.only.split(",")) if args.only else {"sink", "bridge", "fanout"}
    if "sink" in only:
        results["sink"] = await bench_sink(args.updates)
        print("sink", results["sink"], flush=True)
    if "bridge" in only:
        results["bridge"] = bench_bridge(args.updates, args.runs, args.profile)
        print("bridge", results["bridge"], flush=True)
    if "fanout" in only:
        results["fanout"] = []
        for rate in args.rates:
            results["fanout"].append(await bench_fanout(args.clients, rate, args.seconds))
            print("fanout", results["fanout"][-1], flush=True)
    if args.only or args.profile:
        return  # partial or profiled figures: printed only
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rates", type=lambda text: [int(r) for r in text.split(",")],
                        default=[200, 1000], help="fan-out events/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--only", help="some of sink,bridge,fanout (nothing is written)")
    parser.add_argument("--runs", type=int, default=RUNS, help="bridge runs (best reported)")
    parser.add_argument("--lib", help="measure the txlightstreamer in DIR, or 'installed'")
    parser.add_argument("--profile", help="run the bridge under cProfile, stats to this file")
    parsed = parser.parse_args()
    if parsed.lib:
        _use_lib(parsed.lib)
    task.react(lambda r: defer.ensureDeferred(main(r, parsed)))
