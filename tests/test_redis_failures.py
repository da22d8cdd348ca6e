"""
The Redis tier under failure (review, third round): a sink whose connection gave up
retries at its pace instead of spinning the reactor and connects again once Redis takes
its password again, a relay notices a Redis that stopped answering, and entries trimmed
before a relay read them are reported, not skipped.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred

from txlightstreamer.sinks import RedisSink, parse_redis_url
from txlightstreamer.sinks._connection import connect
from txlightstreamer.sinks._source import RedisSource

from .redis_support import RedisServer
from .support import wait_until


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


def _ev(n: int) -> dict[str, Any]:
    return {"event": "update", "sub": 1, "item": "i", "values": {"n": str(n)}}


async def _relay_and_bridge(redis: RedisServer, maxlen: int) -> Any:
    """What a relay's source reads (``[(entry id, event)]``), the stream's target, the
    source and a sink writing to it, both started."""
    got: list[tuple[str, dict[str, Any]]] = []
    target = parse_redis_url(f"{redis.url}?maxlen={maxlen}")
    source = RedisSource(target, lambda i, e: got.append((i, e)), clock=reactor, block=1.0)
    await source.start()
    sink = RedisSink(target, clock=reactor)
    await sink.start()
    return got, target, source, sink


@pytest_twisted.ensureDeferred
async def test_a_source_notices_a_redis_that_stopped_answering(redis: RedisServer) -> None:
    """XREAD BLOCK 1 s gets no answer for 6 s: the relay must not stay 'connected'
    (its /healthz says 200 while nothing is read)."""
    seen: list[str] = []
    source = RedisSource(parse_redis_url(redis.url), lambda i, e: seen.append(i),
                         clock=reactor, block=1.0)
    await source.start()
    assert source.connected
    assert redis.process is not None
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        await task.deferLater(reactor, 6.0, lambda: None)
        stalled_connected = source.connected
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    await source.stop()
    assert not stalled_connected, "6 s without any reply to XREAD BLOCK 1000: still connected"


@pytest_twisted.ensureDeferred
async def test_entries_trimmed_before_a_relay_read_them_are_reported(redis: RedisServer) -> None:
    """The relay is behind (here: 199 events in one batch, trimmed to about 10): the ones
    it never saw must be reported to it, not silently skipped."""
    got, target, source, sink = await _relay_and_bridge(redis, maxlen=10)
    sink.write(_ev(0))
    await sink.drained()
    await wait_until(lambda: len(got) == 1)
    # a burst: written in one batch, trimmed to ~10 while the relay waited
    conn = await connect(target, reactor)
    await conn.execute_command("CONFIG", "SET", "stream-node-max-entries", "1")
    await conn.disconnect()
    for n in range(1, 200):
        sink.write(_ev(n))
    await sink.drained()
    await task.deferLater(reactor, 2.0, lambda: None)
    await sink.stop()
    await source.stop()
    numbers = [int(e["values"]["n"]) for _, e in got if e.get("event") == "update"]
    reported = [e for _, e in got if e.get("event") != "update"]

    assert numbers == list(range(200)) or reported, (
        f"{200 - len(numbers)} events skipped without any report; got {numbers[:3]}...")


@pytest_twisted.ensureDeferred
async def test_a_connection_that_gave_up_does_not_spin_the_reactor() -> None:
    """The Redis password is rotated and the connection drops: txredisapi's AUTH fails on
    reconnection, it stops trying, and every command then fails at once. The sink must
    retry every retry_delay, not loop inside _flush (reactor blocked, DelayedCalls piling
    up: 8.7 GB in a few minutes before this guard)."""
    server = RedisServer(password="s3cretpw").start()
    try:
        sink = RedisSink(parse_redis_url(server.url), clock=reactor, retry_delay=1.0)
        await sink.start()
        real, calls = sink._append, [0]

        def guarded(keys: Any, args: Any, datas: Any) -> Any:
            calls[0] += 1
            if calls[0] > 100:  # the guard: break the loop so the test can end
                return Deferred()
            return real(keys, args, datas)

        sink._append = guarded
        server.cli("CONFIG", "SET", "requirepass", "rotated")
        server.password = "rotated"
        server.cli("CLIENT", "KILL", "TYPE", "normal")
        sink.write(_ev(1))
        await task.deferLater(reactor, 13.0, lambda: None)  # past the 10 s reply timeout
        # About one batch per retry_delay (1 s); in a tight loop, the guard's cap (101) at once.
        assert calls[0] <= 20, f"{calls[0]} batches sent in a tight loop"
        server.cli("CONFIG", "SET", "requirepass", "s3cretpw")  # the password works again
        server.password = "s3cretpw"
        await wait_until(lambda: sink.written == 1, timeout=15)  # connected again: written
        await sink.stop()
    finally:
        server.stop()


@pytest_twisted.ensureDeferred
async def test_a_relay_that_keeps_up_reports_no_trimmed_entries(redis: RedisServer) -> None:
    got, _, source, sink = await _relay_and_bridge(redis, maxlen=1000)
    for burst in range(5):
        for n in range(100):
            sink.write(_ev(burst * 100 + n))
        await sink.drained()
        expected = (burst + 1) * 100
        await wait_until(lambda: len(got) == expected)  # noqa: B023 (awaited here)
    await sink.stop()
    await source.stop()
    assert [int(e["values"]["n"]) for _, e in got] == list(range(500))


@pytest_twisted.ensureDeferred
async def test_a_source_recovers_after_an_auth_failure_on_reconnection() -> None:
    server = RedisServer(password="s3cretpw").start()
    try:
        got: list[str] = []
        source = RedisSource(parse_redis_url(server.url), lambda i, e: got.append(i),
                             clock=reactor, block=0.5)
        await source.start()
        server.cli("CONFIG", "SET", "requirepass", "rotated")
        server.password = "rotated"
        server.cli("CLIENT", "KILL", "TYPE", "normal")
        await task.deferLater(reactor, 2.0, lambda: None)
        assert not source.connected
        server.cli("CONFIG", "SET", "requirepass", "s3cretpw")  # put back
        server.password = "s3cretpw"
        server.cli("XADD", "txls:events", "*", "event", '{"event": "status"}')
        await task.deferLater(reactor, 15.0, lambda: None)
        ok = source.connected and got
        await source.stop()
        assert ok, "the password is right again, the source never reads again"
    finally:
        server.stop()
