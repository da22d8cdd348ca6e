"""
`RedisSink` and `RedisLease` against a real ``redis-server`` on loopback: order, batching,
bounded buffer with back-pressure, a Redis restart mid-burst, bad credentials, fencing.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from txlightstreamer.sinks import (
    RedisLease,
    RedisSink,
    RedisUnavailable,
    parse_redis_url,
    parse_shard,
    shard_of,
)
from txlightstreamer.sinks._connection import connect

from .redis_support import RedisServer
from .support import wait_until


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


async def _entries(url: str) -> list[tuple[str, dict[str, Any]]]:
    target = parse_redis_url(url)
    conn = await connect(target, reactor)
    try:
        raw = await conn.execute_command("XRANGE", target.stream, "-", "+")
    finally:
        await conn.disconnect()
    return [(_s(entry_id), json.loads(_s(fields[1]))) for entry_id, fields in raw]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _event(n: int) -> dict[str, Any]:
    return {"event": "update", "sub": 1, "item": "i", "values": {"n": str(n), "u": "ünï 😀"}}


def test_parse_redis_url() -> None:
    t = parse_redis_url("redis://:s3cret@127.0.0.1:6390/2?stream=prices&maxlen=500")
    assert (t.host, t.port, t.db, t.stream, t.maxlen, t.password) == (
        "127.0.0.1", 6390, 2, "prices", 500, "s3cret")
    assert "s3cret" not in repr(t) and "s3cret" not in t.address
    d = parse_redis_url("redis://localhost")
    assert (d.port, d.db, d.stream, d.maxlen) == (6379, 0, "txls:events", 1_000_000)
    for bad in ["http://x", "redis://", "redis://h/x", "redis://h?maxlen=-1",
                "redis://h?color=red", "redis://h:99999", "redis://:pw@h/x?stream="]:
        with pytest.raises(ValueError) as e:
            parse_redis_url(bad.replace("pw", "s3cret"))
        assert "s3cret" not in str(e.value)


def test_shards_are_stable_and_cover_everything() -> None:
    items = [f"item{i}" for i in range(1000)]
    shards = [shard_of(i, 3) for i in items]
    assert set(shards) == {1, 2, 3}
    assert shard_of("item1", 3) == shard_of("item1", 3)
    assert shard_of("MARKET:CS.D.EURUSD.MINI.IP", 4) == 1  # crc32 = 3193322384; % 4 + 1
    assert parse_shard("2/3") == (2, 3)
    for bad in ["0/3", "4/3", "x", "1-2", "/2"]:
        with pytest.raises(ValueError):
            parse_shard(bad)


@pytest_twisted.ensureDeferred
async def test_events_are_appended_in_order_exactly_once(redis: RedisServer) -> None:
    sink = RedisSink(parse_redis_url(redis.url + "?maxlen=0"), clock=reactor, batch_size=300)
    await sink.start()
    for n in range(5000):
        sink.write(_event(n))
    await sink.stop()
    entries = await _entries(redis.url)
    assert [e["values"]["n"] for _, e in entries] == [str(n) for n in range(5000)]
    assert entries[0][1] == _event(0)
    ids = [tuple(map(int, i.split("-"))) for i, _ in entries]
    assert ids == sorted(ids) and len(set(ids)) == 5000
    assert sink.written == 5000 and sink.dropped == 0


@pytest_twisted.ensureDeferred
async def test_maxlen_trims_the_stream(redis: RedisServer) -> None:
    sink = RedisSink(parse_redis_url(redis.url + "?maxlen=1000"), clock=reactor, batch_size=100)
    await sink.start()
    for n in range(20_000):
        sink.write(_event(n))
    await sink.stop()
    entries = await _entries(redis.url)
    assert 1000 <= len(entries) < 20_000  # "~": Redis trims whole nodes
    assert entries[-1][1]["values"]["n"] == "19999"


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_one_clear_error() -> None:
    server = RedisServer(password="right-one").start()
    try:
        target = parse_redis_url(f"redis://:wrong-one@127.0.0.1:{server.port}")
        with pytest.raises(RedisUnavailable) as e:
            await RedisSink(target, clock=reactor).start()
        assert "wrong-one" not in str(e.value) and "right-one" not in str(e.value)
        assert f"127.0.0.1:{server.port}" in str(e.value)
        good = parse_redis_url(f"redis://:right-one@127.0.0.1:{server.port}")
        sink = RedisSink(good, clock=reactor)
        await sink.start()
        sink.write(_event(1))
        await sink.stop()
    finally:
        server.stop()


@pytest_twisted.ensureDeferred
async def test_unreachable_redis_at_start_up() -> None:
    from .redis_support import _free_port

    target = parse_redis_url(f"redis://127.0.0.1:{_free_port()}")
    with pytest.raises(RedisUnavailable) as e:
        await RedisSink(target, clock=reactor).start(timeout=2.0)
    assert "not reachable" in str(e.value)


@pytest_twisted.ensureDeferred
async def test_a_stalled_redis_pauses_the_producer_then_resumes(redis: RedisServer) -> None:
    sink = RedisSink(parse_redis_url(redis.url), clock=reactor, buffer_limit=100,
                     batch_size=50, retry_delay=1.0, reply_timeout=2.0)
    calls: list[str] = []
    sink.on_pause(lambda: calls.append("pause"))
    sink.on_resume(lambda: calls.append("resume"))
    await sink.start()
    assert redis.process is not None
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        for n in range(150):
            sink.write(_event(n))
        assert calls == ["pause"] and sink.paused
        # Past twice the limit events are dropped, and the drop is reported in the stream.
        for n in range(150, 260):
            sink.write(_event(n))
        assert sink.dropped == 60
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    await wait_until(lambda: calls == ["pause", "resume"], what="resume")
    sink.write(_event(999))
    await sink.stop()
    entries = [e for _, e in await _entries(redis.url)]
    numbers = [e["values"]["n"] for e in entries if e["event"] == "update"]
    assert numbers == [str(n) for n in range(200)] + ["999"]
    errors = [e for e in entries if e["event"] == "error"]
    assert len(errors) == 1 and "60 events dropped" in errors[0]["message"]


@pytest_twisted.ensureDeferred
async def test_redis_restart_mid_burst_loses_nothing() -> None:
    server = RedisServer(appendonly=True).start()
    try:
        sink = RedisSink(parse_redis_url(server.url), clock=reactor, batch_size=100,
                         retry_delay=0.5, reply_timeout=3.0)
        states: list[str] = []
        sink.on_status(lambda state, reason: states.append(state))
        await sink.start()
        for n in range(3000):
            sink.write(_event(n))
        server.kill()
        for n in range(3000, 6000):
            sink.write(_event(n))
        await task.deferLater(reactor, 1.0, lambda: None)
        server.start()
        for n in range(6000, 7000):
            sink.write(_event(n))
        await wait_until(lambda: sink.depth == 0 and sink.connected, what="drained")
        await sink.stop()
        numbers = [e["values"]["n"] for _, e in await _entries(server.url)]
        assert numbers == [str(n) for n in range(7000)]
        assert "disconnected" in states and states[-1] == "connected"
    finally:
        server.stop()


@pytest_twisted.ensureDeferred
async def test_lease_one_holder_and_fenced_writes(redis: RedisServer) -> None:
    target = parse_redis_url(redis.url + "?maxlen=0")
    first = RedisLease(target, "bridge", clock=reactor, ttl=2.0)
    second = RedisLease(target, "bridge", clock=reactor, ttl=2.0)
    sink1 = RedisSink(target, clock=reactor, lease=first)
    sink2 = RedisSink(target, clock=reactor, lease=second)
    await sink1.start()
    await sink2.start()
    first.start(sink1._connection)
    await wait_until(lambda: first.held, what="first holds")
    second.start(sink2._connection)
    lost: list[str] = []
    first.on_lost(lost.append)
    second.on_acquired(sink2.resume_writing)
    sink1.write({"event": "update", "from": "first"})
    await wait_until(lambda: sink1.depth == 0)
    sink2.write({"event": "update", "from": "second"})  # waits: the standby holds nothing
    assert not second.held and sink2.depth == 1
    # The holder freezes (as a stopped process would): it renews no more.
    first._cancel()
    await wait_until(lambda: second.held, what="take-over")
    await wait_until(lambda: sink2.depth == 0)
    # The old holder wakes up and writes: Redis refuses it, and it learns it lost the lease.
    first._renewed_at = reactor.seconds()
    sink1.write({"event": "update", "from": "first, too late"})
    await wait_until(lambda: bool(lost), what="lease lost")
    assert not first.held
    await second.stop()
    await sink1.stop(timeout=0.1)
    await sink2.stop()
    froms = [e["from"] for _, e in await _entries(redis.url)]
    assert froms == ["first", "second"]


@pytest_twisted.ensureDeferred
async def test_scripts_forgotten_mid_burst_lose_nothing(redis: RedisServer) -> None:
    """Redis forgets the script (as after a restart) while batches are pipelined: none
    runs out of turn (a later batch first would make Redis skip an earlier one)."""
    sink = RedisSink(parse_redis_url(redis.url + "?maxlen=0"), clock=reactor, batch_size=50)
    await sink.start()
    for n in range(3000):
        sink.write(_event(n))
        if n % 100 == 99:
            redis.cli("SCRIPT", "FLUSH")
            await task.deferLater(reactor, 0, lambda: None)
    await wait_until(lambda: sink.depth == 0, what="drained")
    await sink.stop()
    numbers = [e["values"]["n"] for _, e in await _entries(redis.url)]
    assert numbers == [str(n) for n in range(3000)]
    assert sink.written == 3000
    loads = re.search(r"cmdstat_script\|load:calls=(\d+)", redis.cli("INFO", "commandstats"))
    assert loads is not None and int(loads.group(1)) > 1  # loaded again after a NOSCRIPT


@pytest_twisted.ensureDeferred
async def test_lines_are_stored_without_their_newline_byte_for_byte(redis: RedisServer) -> None:
    """The stream holds each JSON line exactly, less its final newline (the script drops
    it): the text the JSON-lines output prints, escapes and all."""
    from txlightstreamer.events import encode_event

    events = [_event(n) for n in range(3)]
    events += [{"event": "update", "values": {"a": "\n", "b": "\ud800", "c": "😀\u2028"}},
               {"event": "x", "v": ""}]
    sink = RedisSink(parse_redis_url(redis.url), clock=reactor, encode=encode_event)
    await sink.start()
    for event in events:
        sink.write(event)
    sink.write_data(b"")  # empty, and no newline: stored as it is
    sink.write_data(b"raw\n\n")  # only the last newline goes
    await sink.stop()
    target = parse_redis_url(redis.url)
    conn = await connect(target, reactor)
    try:
        raw = await conn.execute_command("XRANGE", target.stream, "-", "+")
    finally:
        await conn.disconnect()
    stored = [fields[1] if isinstance(fields[1], bytes) else str(fields[1]).encode("utf-8")
              for _, fields in raw]
    assert stored == [encode_event(e)[:-1] for e in events] + [b"", b"raw\n"]


@pytest.mark.parametrize("by_hand", [True, False])
@pytest_twisted.ensureDeferred
async def test_batches_in_resp_by_hand_or_through_txredisapi(
    redis: RedisServer, by_hand: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's command is written by hand on the live connection, or (reconnecting, or
    a txredisapi unlike the one expected) through txredisapi: the same entries."""
    from txlightstreamer.sinks import _connection

    if not by_hand:
        monkeypatch.setattr(_connection, "_connected_protocol", lambda connection: None)
    sink = RedisSink(parse_redis_url(redis.url + "?maxlen=0"), clock=reactor, batch_size=70)
    await sink.start()
    assert (_connection._connected_protocol(sink._connection) is not None) is by_hand
    for n in range(500):
        sink.write(_event(n))
    await sink.stop()
    entries = await _entries(redis.url)
    assert [e["values"]["n"] for _, e in entries] == [str(n) for n in range(500)]
    assert entries[7][1] == _event(7) and sink.written == 500


def _errors(redis: RedisServer, code: str) -> int:
    found = re.search(rf"errorstat_{code}:count=(\d+)", redis.cli("INFO", "errorstats"))
    return int(found.group(1)) if found else 0


@pytest_twisted.ensureDeferred
async def test_a_script_reloaded_by_another_client_between_batches_loses_nothing(
    redis: RedisServer,
) -> None:
    """The script cache is flushed; batch 1 gets NOSCRIPT, then another client (another
    shard's sink) loads the script before batch 2 runs: batch 2 must not run ahead of
    batch 1 (its ids are higher: batch 1 re-sent would be skipped), and nothing is lost."""
    from txlightstreamer.sinks._scripts import APPEND

    url = redis.url + "?maxlen=0"
    sink = RedisSink(parse_redis_url(url), clock=reactor, batch_size=1)
    await sink.start()
    protocol = sink._connection._factory.pool[0]
    redis.cli("SCRIPT", "FLUSH")
    protocol.transport.pauseProducing()  # the sink reads no reply: both batches in flight
    sink.write_data(b'{"n": 1}\n')
    await wait_until(lambda: _errors(redis, "NOSCRIPT") == 1, what="batch 1 refused")
    redis.cli("SCRIPT", "LOAD", APPEND)
    sink.write_data(b'{"n": 2}\n')
    await wait_until(lambda: _errors(redis, "GAP") == 1 or redis.cli("XLEN", "txls:events")
                     != "(integer) 0\n", what="batch 2 run")
    assert redis.cli("XLEN", "txls:events") == "(integer) 0\n"  # batch 2 waited for batch 1
    protocol.transport.resumeProducing()
    await wait_until(lambda: sink.depth == 0, what="drained")
    await sink.stop()
    assert [e["n"] for _, e in await _entries(url)] == [1, 2]
    assert sink.written == 2


@pytest_twisted.ensureDeferred
async def test_a_user_not_allowed_script_load_writes_with_eval(redis: RedisServer) -> None:
    """ACL ``-script``: each batch is sent with its script (EVAL), every event written."""
    redis.cli("ACL", "SETUSER", "default", "-script")
    sink = RedisSink(parse_redis_url(redis.url + "?maxlen=0"), clock=reactor, batch_size=30)
    await sink.start()
    for n in range(200):
        sink.write(_event(n))
    await sink.stop()
    entries = await _entries(redis.url)
    assert [e["values"]["n"] for _, e in entries] == [str(n) for n in range(200)]
    assert sink.written == 200
    stats = redis.cli("INFO", "commandstats")
    assert "cmdstat_evalsha" not in stats and "cmdstat_eval:" in stats


@pytest_twisted.ensureDeferred
async def test_a_user_not_allowed_scripts_at_all_cannot_start(redis: RedisServer) -> None:
    redis.cli("ACL", "SETUSER", "default", "-script", "-eval")
    sink = RedisSink(parse_redis_url(redis.url), clock=reactor)
    with pytest.raises(RedisUnavailable) as e:
        await sink.start()
    message = str(e.value)
    assert "\n" not in message and "SCRIPT LOAD" in message and "EVAL" in message
    assert f"127.0.0.1:{redis.port}" in message
    await sink.stop()


@pytest_twisted.ensureDeferred
async def test_an_unexpected_reply_queue_is_not_used_by_hand(redis: RedisServer) -> None:
    """A queue that is not txredisapi's ReplyQueue (one that drops cancelled waiters would
    give a timed-out batch's reply to the next one): batches go through txredisapi."""
    import txredisapi  # type: ignore[import-untyped]

    from txlightstreamer.sinks import _connection

    class OtherQueue(txredisapi.ReplyQueue):  # type: ignore[misc]
        pass

    sink = RedisSink(parse_redis_url(redis.url + "?maxlen=0"), clock=reactor, batch_size=7)
    await sink.start()
    assert _connection._connected_protocol(sink._connection) is not None
    sink._connection._factory.pool[0].replyQueue.__class__ = OtherQueue
    assert _connection._connected_protocol(sink._connection) is None
    for n in range(50):
        sink.write(_event(n))
    await sink.stop()
    assert [e["values"]["n"] for _, e in await _entries(redis.url)] == [
        str(n) for n in range(50)]


@pytest_twisted.ensureDeferred
async def test_script_load_refused_after_start_switches_to_eval(redis: RedisServer) -> None:
    """The ACL changes while writing and the script cache is flushed: NOSCRIPT, SCRIPT LOAD
    refused, the batches are sent again with EVAL, in order."""
    sink = RedisSink(parse_redis_url(redis.url + "?maxlen=0"), clock=reactor, batch_size=20)
    await sink.start()
    for n in range(100):
        sink.write(_event(n))
    await wait_until(lambda: sink.depth == 0, what="first drained")
    redis.cli("SCRIPT", "FLUSH")  # the sink is idle: nothing reloads it in between
    redis.cli("ACL", "SETUSER", "default", "-script")
    for n in range(100, 300):
        sink.write(_event(n))
    await sink.stop()
    numbers = [e["values"]["n"] for _, e in await _entries(redis.url)]
    assert numbers == [str(n) for n in range(300)] and sink.written == 300
    assert _errors(redis, "NOSCRIPT") >= 1 and _errors(redis, "NOPERM") == 1


def test_events_in_flight_when_the_lease_is_lost_are_never_sent_again() -> None:
    # Their batches failed after the lease was lost; the bridge got the lease back later
    # and wrote them under new ids after another bridge's session (review).
    clock = Clock()
    sink = RedisSink(parse_redis_url("redis://127.0.0.1:1"), clock=clock, batch_size=2)
    sent: list[tuple[list[Any], Deferred[Any]]] = []

    def append(keys: list[str], args: list[Any], datas: list[bytes]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        sent.append(([json.loads(bytes(x)) for x in datas], d))
        return d

    sink._append = append
    sink._connection = object()
    for n in range(3):
        sink.write({"event": "update", "n": n})
    clock.advance(0)
    assert [[e["n"] for e in events] for events, _ in sent] == [[0, 1], [2]]
    assert sink.discard() == 0  # all three are in flight
    sent[0][1].errback(Failure(ConnectionError("Redis went away")))
    sent[1][1].errback(Failure(ConnectionError("Redis went away")))
    assert sink.depth == 0  # not kept for a retry
    sink.write({"event": "session", "continuity": "new"})
    clock.advance(5)
    assert [[e["event"] for e in events] for events, _ in sent[2:]] == [["session"]]


def test_a_standby_lease_says_whether_redis_answers() -> None:
    # A standby writes nothing: /healthz read the sink's state, frozen at its last write.
    clock = Clock()
    lease = RedisLease(parse_redis_url("redis://127.0.0.1:1"), "a", clock=clock, ttl=10.0)
    answers: list[Any] = [ConnectionError("Redis went away")]

    class Connection:
        def execute_command(self, *args: Any) -> Deferred[Any]:
            answer = answers[0]
            if isinstance(answer, Exception):
                return fail(answer)
            return succeed(answer)

    lease.start(Connection())
    assert not lease.reachable and lease.state == "standby"
    answers[0] = None  # SET NX answered: another bridge holds it
    clock.advance(1.0)
    assert lease.reachable and lease.state == "standby"
    answers[0] = ConnectionError("Redis went away again")
    clock.advance(1.0)
    assert not lease.reachable


def test_a_timeout_reads_as_one() -> None:
    # It showed as "(10.0, 'Deferred')" in sink events and logs.
    from twisted.internet.defer import TimeoutError as DeferredTimeout

    from txlightstreamer.sinks._connection import failure_text

    assert failure_text(Failure(DeferredTimeout(10.0, "Deferred"))) == \
        "no reply from Redis in time"
    assert failure_text(Failure(ConnectionError("refused"))) == "refused"
