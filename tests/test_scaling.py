"""
Scaling out (issue 17) against a real ``redis-server``: ``--sink`` (the stream equals the
JSON lines), ``--lease`` take-over after ``kill -9``, a Redis restart mid-burst, relays
from the stream (``--source``) resuming across processes, ``/metrics`` and ``/healthz``,
``--shard``, and the options' errors.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor, task
from twisted.python import usage

from txlightstreamer.cli import REDIS_PASSWORD_ENV, Options
from txlightstreamer.events import encode_event
from txlightstreamer.service import JsonLinesWriter, LsService, _shard_specs
from txlightstreamer.sinks import RedisSink, parse_redis_url, shard_of
from txlightstreamer.sinks._connection import connect
from txlightstreamer.testing import TlcpServer
from txlightstreamer.web._stream_relay import StreamState

from .redis_support import RedisServer, _free_port
from .support import wait_until
from .test_cli import PYTHON_M, TWISTD, Child, spawn
from .web_support import SseReader

LIVE = re.compile(r"Live tables on http://[^/\s]+:(\d+)/")
ITEMS = ["item1", "item2", "item3", "item4"]
SPEC = "MERGE item1,item2,item3,item4 n,pad snapshot=yes"


# -- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest_twisted.async_yield_fixture
async def feed() -> AsyncIterator[TlcpServer]:
    """A server whose four items tick every 10 ms (a steady burst)."""
    srv = TlcpServer(keepalive_millis=1000)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        for item in ITEMS:
            srv.data.update(item, {"n": str(count), "pad": "é" * 8})

    tick()
    ticker = task.LoopingCall(tick)
    ticker.clock = reactor
    ticker.start(0.01, now=False)
    yield srv
    ticker.stop()
    await srv.stop()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def entries(url: str) -> list[tuple[str, str]]:
    """The stream's entries as (id, the ``event`` field's text)."""
    target = parse_redis_url(url)
    conn = await connect(target, reactor)
    try:
        raw = await conn.execute_command("XRANGE", target.stream, "-", "+")
    finally:
        await conn.disconnect()
    return [(_s(entry_id), _s(fields[1])) for entry_id, fields in raw or []]


async def events(url: str) -> list[dict[str, Any]]:
    return [json.loads(text) for _, text in await entries(url)]


def parse(*args: str, environ: dict[str, str] | None = None) -> Options:
    options = Options(environ=environ or {})
    options.parseOptions(list(args))
    return options


class Bridge:
    """An in-process `LsService` writing its JSON lines into memory."""

    def __init__(self, *args: str) -> None:
        self.stream = io.BytesIO()
        self.service = LsService(parse(*args), reactor=reactor,
                                 output=JsonLinesWriter(self.stream))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


async def child_port(child: Child) -> int:
    await wait_until(lambda: LIVE.search(child.stderr) or child.status is not None,
                     what="the relay listening")
    match = LIVE.search(child.stderr)
    assert match, child.report()
    return int(match.group(1))


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--sink", "http://x"], "bad --sink"),
    (["--sink", "redis://:s3cret@h/x"], "bad --sink"),
    (["--lease", "L"], "--lease needs --sink"),
    (["--sink", "redis://h", "--lease-time", "0"], "bad --lease-time"),
    (["--shard", "3/2"], "--shard"),
    (["--source", "redis://h"], "do not combine it with --demo"),
    (["--source", "redis://h", "--http-port", "0", "--max-updates", "5"],
     "do not combine it with --max-updates"),
    (["--source", "redis://h", "--http-port", "0", "--give-up-after", "5"],
     "do not combine it with --give-up-after"),
])
def test_bad_scaling_options_are_usage_errors(args: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError) as e:
        parse("--demo", *args)
    assert message in str(e.value) and "s3cret" not in str(e.value)
    with pytest.raises(usage.UsageError, match="do not combine"):
        parse("--source", "redis://h", "--http-port", "0", "--url", "http://x")
    with pytest.raises(usage.UsageError, match="--source needs --http-port"):
        parse("--source", "redis://h")


def test_the_redis_password_comes_from_the_url_a_file_or_the_environment(
        tmp_path: Path) -> None:
    o = parse("--demo", "--sink", "redis://:from-url@h:1/2?stream=s")
    assert o.sink is not None and o.sink.password == "from-url"
    assert "from-url" not in repr(dict(o)) and o["sink"] == "redis://h:1/2?stream=s"
    # Other local users see a command line: said at start-up (never the password itself).
    assert any("--sink URL holds the Redis password" in w for w in o.warnings)
    assert not any("from-url" in w for w in o.warnings)
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    o = parse("--demo", "--sink", "redis://h", "--sink-password-file", str(secret))
    assert o.sink is not None and o.sink.password == "from-file"
    o = parse("--demo", "--sink", "redis://h", environ={REDIS_PASSWORD_ENV: "from-env"})
    assert o.sink is not None and o.sink.password == "from-env"
    o = parse("--source", "redis://h", "--http-port", "0", "--lease-time", "2.5")
    assert o.source is not None and o["lease-time"] == 2.5


@pytest_twisted.ensureDeferred
async def test_bad_sink_url_exits_2_with_one_line() -> None:
    child = spawn([*PYTHON_M, "--demo", "--sink", "redis://:s3cret@host/notanumber"])
    assert await child.wait() == 2
    assert child.stderr.count("\n") == 1 and "bad --sink" in child.stderr
    assert "s3cret" not in child.stderr


@pytest_twisted.ensureDeferred
async def test_unreachable_redis_and_wrong_password_exit_1() -> None:
    port = _free_port()
    child = spawn([*PYTHON_M, "--demo", "--sink", f"redis://127.0.0.1:{port}"])
    assert await child.wait() == 1
    assert f"cannot use --sink: Redis at redis://127.0.0.1:{port}/0" in child.stderr
    assert "Traceback" not in child.stderr
    server = RedisServer(password="right-one").start()
    try:
        child = spawn([*PYTHON_M, "--demo", "--sink", f"redis://127.0.0.1:{server.port}"],
                      env={REDIS_PASSWORD_ENV: "wrong-one"})
        assert await child.wait() == 1
        assert "cannot use --sink" in child.stderr and "Traceback" not in child.stderr
        assert "wrong-one" not in child.stderr and "right-one" not in child.stderr
    finally:
        server.stop()


# -- the sink --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [PYTHON_M, TWISTD], ids=["python-m", "twistd"])
@pytest_twisted.ensureDeferred
async def test_the_stream_holds_exactly_the_json_lines(
        command: list[str], feed: TlcpServer, redis: RedisServer) -> None:
    child = spawn([*command, "--url", str(feed.url), "--subscribe", SPEC,
                   "--max-updates", "200", "--sink", redis.url])
    assert await child.wait() == 0, child.report()
    lines = bytes(child.out).decode("utf-8").splitlines()
    stream = [text for _, text in await entries(redis.url)]
    assert stream == lines
    kinds = [json.loads(line)["event"] for line in lines]
    assert kinds[0] == "sink" and kinds.count("update") == 200


@pytest_twisted.ensureDeferred
async def test_a_redis_restart_mid_burst_loses_nothing_silently(feed: TlcpServer) -> None:
    server = RedisServer(appendonly=True).start()
    bridge = Bridge("--url", str(feed.url), "--subscribe", SPEC, "--sink", server.url)
    try:
        bridge.service.startService()
        redis_side = bridge.service.redis
        assert redis_side is not None
        await wait_until(lambda: redis_side.sink.written > 100, what="writes")
        server.kill()
        await wait_until(lambda: not redis_side.sink.connected, what="the sink notices")
        server.start()
        await wait_until(lambda: redis_side.sink.connected, what="the sink reconnects")
        written = redis_side.sink.written
        await wait_until(lambda: redis_side.sink.written > written + 100, what="more writes")
    finally:
        await bridge.service.stopService()
    try:
        stream = await events(server.url)
    finally:
        server.stop()
    # Every event of the JSON lines is in the stream, in order; nothing was dropped.
    assert stream == bridge.events
    states = [e["state"] for e in stream if e["event"] == "sink"]
    assert states == ["connected", "disconnected", "connected"]
    assert not [e for e in stream if e["event"] == "error"]


@pytest_twisted.ensureDeferred
async def test_the_standby_takes_over_after_kill_9(feed: TlcpServer, redis: RedisServer
                                                   ) -> None:
    args = ["--url", str(feed.url), "--subscribe", SPEC, "--sink", redis.url,
            "--lease", "bridge", "--lease-time", "2"]
    holder = spawn([*PYTHON_M, *args])
    standby: Child | None = None
    try:
        await wait_until(lambda: b'"update"' in holder.out, what="the holder's updates")
        standby = spawn([*PYTHON_M, *args])
        await wait_until(lambda: "Waiting for lease" in standby.stderr, what="the standby")
        await wait_until(lambda: holder.out.count(b'"update"') > 300, what="a burst")
        holder.send("KILL")  # kill -9, mid-burst
        await wait_until(lambda: b'"replaced"' in standby.out, timeout=2 * 2 + 10,
                         what="the take-over")
        await wait_until(lambda: standby.out.count(b'"update"') > 100, what="its updates")
        standby.send("TERM")
        assert await standby.wait() == 0, standby.report()
    finally:
        holder.send("KILL")
        await holder._ended
        if standby is not None:
            standby.send("KILL")
            await standby._ended
    stream = await events(redis.url)
    leases = [i for i, e in enumerate(stream) if e["event"] == "lease"]
    assert [stream[i]["state"] for i in leases] == ["holder", "holder"]
    sessions = [(i, e["continuity"]) for i, e in enumerate(stream) if e["event"] == "session"]
    assert [c for _, c in sessions] == ["new", "replaced"]
    # No interleaving: the holder's entries, then only the standby's from its lease on.
    assert sessions[0][0] < leases[1] < sessions[1][0]
    first_id = stream[sessions[0][0]]["session_id"]
    assert first_id != stream[sessions[1][0]]["session_id"]
    assert [e for e in stream[leases[1]:] if e.get("session_id") == first_id] == []
    # What the standby printed after taking over is exactly the stream's tail.
    printed = [json.loads(line) for line in bytes(standby.out).splitlines()]
    tail = printed[[e["event"] for e in printed].index("lease"):]
    assert stream[leases[1]:] == tail


# -- relays from the stream ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_browser_switching_relays_with_last_event_id_misses_nothing(
        redis: RedisServer) -> None:
    sink = RedisSink(parse_redis_url(redis.url), clock=reactor, encode=encode_event)
    await sink.start()
    sink.write({"event": "session", "session_id": "S1", "continuity": "new"})
    sink.write({"event": "subscribed", "sub": 0, "items": 1, "fields": 1})
    count = 0

    def burst(n: int) -> None:
        nonlocal count
        for _ in range(n):
            count += 1
            sink.write({"event": "update", "sub": 0, "item": "item1", "pos": 1,
                        "values": {"n": str(count)}, "changed": ["n"], "snapshot": False})

    burst(50)
    relays = [spawn([*PYTHON_M, "--source", redis.url, "--http-port", "tcp:0"])
              for _ in range(2)]
    try:
        ports = [await child_port(relay) for relay in relays]
        first = await SseReader.open(f"http://127.0.0.1:{ports[0]}/events")
        await wait_until(lambda: first.events, what="the snapshot")
        snapshot = first.events[0]
        assert snapshot.event == "snapshot"
        assert snapshot.data["subscriptions"][0]["rows"]["item1"]["n"] == "50"
        burst(100)
        await wait_until(lambda: len(first.events) > 40, what="live events")
        await first.close()  # the browser goes away
        burst(100)
        resume = first.events[-1].id
        assert resume is not None
        second = await SseReader.open(f"http://127.0.0.1:{ports[1]}/events",
                                      headers={"Last-Event-ID": resume})
        await wait_until(lambda: second.events and second.events[-1].data.get("values", {})
                         .get("n") == str(count), what="the rest")
        await second.close()
        got = [e.id for e in first.events[1:] + second.events]
        stream_ids = [i for i, _ in await entries(redis.url)]
        start = stream_ids.index(str(snapshot.id)) + 1
        assert got == stream_ids[start:]
        assert [e.event for e in second.events if e.event in ("gap", "snapshot")] == []
        # Either relay rebuilds the same snapshot from the stream.
        snaps = [json.loads(await (await treq.get(
            f"http://127.0.0.1:{port}/snapshot")).content()) for port in ports]
        assert snaps[0]["subscriptions"] == snaps[1]["subscriptions"]
        assert snaps[0]["subscriptions"][0]["rows"]["item1"]["n"] == str(count)
    finally:
        for relay in relays:
            relay.send("TERM")
        for relay in relays:
            await relay.wait()
        await sink.stop()


def test_the_snapshot_is_rebuilt_from_the_last_new_or_replaced_session() -> None:
    state = StreamState()
    state.apply({"event": "session", "session_id": "A", "continuity": "new"})
    state.apply({"event": "subscribed", "sub": 0, "items": 1, "fields": 2})
    state.apply({"event": "update", "sub": 0, "item": "x", "values": {"a": "1", "b": "2"}})
    state.apply({"event": "session", "session_id": "A", "continuity": "recovered"})
    assert state.subscriptions()[0]["rows"] == {"x": {"a": "1", "b": "2"}}
    state.apply({"event": "session", "session_id": "B", "continuity": "replaced"})
    assert state.subscriptions() == []
    state.apply({"event": "subscribed", "sub": 0, "items": 1, "fields": 3,
                 "key_field": 1, "command_field": 2})
    for key, command in [("k1", "ADD"), ("k2", "ADD"), ("k1", "DELETE")]:
        state.apply({"event": "update", "sub": 0, "item": "i",
                     "values": {"key": key, "command": command, "v": "1"}})
    sub = state.subscriptions()[0]
    assert sub["mode"] == "COMMAND" and sub["key_field"] == "key"
    assert list(sub["keys"]["i"]) == ["k2"]
    state.apply({"event": "clear_snapshot", "sub": 0, "item": "i", "pos": 1})
    state.apply({"event": "unsubscribed", "sub": 0})
    assert state.subscriptions()[0]["keys"] == {} and not state.subscriptions()[0]["subscribed"]


# -- metrics, health, shards -----------------------------------------------------------------


async def _metrics(port: int) -> dict[str, Any]:
    response = await treq.get(f"http://127.0.0.1:{port}/metrics")
    assert response.code == 200
    text = (await response.content()).decode("utf-8")
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"{{{k}={v}}}" for k, v in sample.labels.items())
            samples[key] = sample.value
    return samples


async def _health(port: int) -> int:
    response = await treq.get(f"http://127.0.0.1:{port}/healthz")
    await response.content()
    return int(response.code)


@pytest_twisted.ensureDeferred
async def test_metrics_and_health(feed: TlcpServer, redis: RedisServer) -> None:
    bridge = Bridge("--url", str(feed.url), "--subscribe", SPEC, "--sink", redis.url,
                    "--http-port", "tcp:0")
    service = bridge.service
    try:
        service.startService()
        await wait_until(lambda: service.http is not None and service.http.port is not None,
                         what="the port")
        assert service.http is not None
        port = service.http.port.getHost().port
        await wait_until(lambda: service.updates > 20, what="updates")
        samples = await _metrics(port)
        assert samples["txls_updates_received_total"] >= 20
        assert samples["txls_sink_events_written_total"] > 0
        assert samples["txls_sessions_total{continuity=new}"] == 1
        assert samples["txls_lost_updates_total"] == 0
        assert samples["txls_sink_connected"] == 1 and samples["txls_healthy"] == 1
        for name in ("txls_sink_buffer_depth", "txls_sink_pauses_total",
                     "txls_sink_events_dropped_total", "txls_relay_clients",
                     "txls_relay_dropped_clients_total"):
            assert name in samples
        assert await _health(port) == 200
        redis.kill()
        await wait_until(lambda: redis_down(service), what="the sink notices")
        assert await _health(port) == 503
        redis.start()
        await wait_until(lambda: not redis_down(service), what="the sink reconnects")
        assert await _health(port) == 200
    finally:
        await service.stopService()


async def _write_stream(redis: RedisServer, events: list[dict[str, Any]]) -> None:
    """Write ``events`` into the server's stream, as a bridge would."""
    sink = RedisSink(parse_redis_url(redis.url), clock=reactor, encode=encode_event)
    await sink.start()
    for event in events:
        sink.write(event)
    await sink.stop()


async def _served(service: LsService) -> int:
    """Start ``service`` and wait for its HTTP port; the port."""
    service.startService()
    await wait_until(lambda: service.http is not None and service.http.port is not None,
                     what="the port")
    assert service.http is not None
    return int(service.http.port.getHost().port)


def redis_down(service: LsService) -> bool:
    return service.redis is not None and not service.redis.sink.connected


@pytest_twisted.ensureDeferred
async def test_a_relay_from_the_stream_has_metrics_and_health(redis: RedisServer) -> None:
    await _write_stream(redis, [{"event": "session", "session_id": "S", "continuity": "new"}])
    service = Bridge("--source", redis.url, "--http-port", "tcp:0").service
    try:
        port = await _served(service)
        samples = await _metrics(port)
        assert samples["txls_source_events_read_total"] == 1
        assert samples["txls_source_connected"] == 1
        assert await _health(port) == 200
    finally:
        await service.stopService()


def test_shards_split_each_subscription() -> None:
    spec = parse("--demo", "--subscribe", "MERGE a,b,c,d,e,f x")["subscribe"][0]
    parts = [_shard_specs([spec], k, 3) for k in (1, 2, 3)]
    kept = [item for part in parts for s in part for item in s.items]
    assert sorted(kept) == ["a", "b", "c", "d", "e", "f"]
    for k, part in enumerate(parts, 1):
        assert all(shard_of(item, 3) == k for s in part for item in s.items)
    assert _shard_specs([spec], 1, 1) == [spec]


@pytest_twisted.ensureDeferred
async def test_a_shard_subscribes_only_its_items(feed: TlcpServer) -> None:
    bridge = Bridge("--url", str(feed.url), "--subscribe", SPEC, "--shard", "2/2")
    mine = [item for item in ITEMS if shard_of(item, 2) == 2]
    try:
        bridge.service.startService()
        await wait_until(lambda: len([e for e in bridge.events if e["event"] == "update"])
                         > 20, what="updates")
    finally:
        await bridge.service.stopService()
    seen = {e["item"] for e in bridge.events if e["event"] == "update"}
    assert seen == set(mine)



@pytest_twisted.ensureDeferred
async def test_a_stalled_redis_pauses_reading_the_lightstreamer_stream(
        feed: TlcpServer, redis: RedisServer) -> None:
    bridge = Bridge("--url", str(feed.url), "--subscribe", SPEC, "--sink", redis.url)
    service = bridge.service
    assert service.redis is not None and redis.process is not None
    sink = service.redis.sink
    sink._buffer_limit = 200  # small, so the test fills it quickly
    try:
        service.startService()
        await wait_until(lambda: sink.written > 20, what="writes")
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            await wait_until(lambda: sink.paused, what="a full buffer")
            received = service.updates
            await task.deferLater(reactor, 1.0, lambda: None)
            # The client stopped reading: no update comes while paused.
            assert service.updates == received and sink.depth <= 2 * 200
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        await wait_until(lambda: not sink.paused, what="drained")
        updates = service.updates
        await wait_until(lambda: service.updates > updates + 100, what="reading again")
    finally:
        await service.stopService()
    assert sink.pauses >= 1
    # Nothing silent: the stream has every JSON line but those the sink dropped (events
    # already read when it paused, past its headroom), and says how many it dropped.
    stream = await events(redis.url)
    errors = [e for e in stream if e["event"] == "error"]
    assert sum(int(e["message"].split()[0]) for e in errors) == sink.dropped
    kept = iter(bridge.events)
    assert all(any(line == e for line in kept) for e in stream if e not in errors)
    assert len(stream) - len(errors) == len(bridge.events) - sink.dropped


@pytest_twisted.ensureDeferred
async def test_a_lost_lease_destroys_the_session_and_a_regained_one_replaces_it(
        feed: TlcpServer, redis: RedisServer) -> None:
    bridge = Bridge("--url", str(feed.url), "--subscribe", SPEC, "--sink", redis.url,
                    "--lease", "solo", "--lease-time", "1")
    service = bridge.service
    assert service.redis is not None and service.redis.lease is not None
    lease = service.redis.lease
    try:
        service.startService()
        await wait_until(lambda: service.updates > 10, what="updates")
        first = service.client
        assert first is not None and lease.held
        # Another bridge takes the key (as after a long stall of ours): we must stop at once.
        redis.cli("SET", lease.key, "someone-else", "PX", "2000")
        await wait_until(lambda: not lease.held, what="the loss")
        assert service.client is None and first.status == "DISCONNECTED"
        await wait_until(lambda: lease.held and service.client is not None, timeout=15,
                         what="the lease again")
        await wait_until(lambda: [e for e in bridge.events if e["event"] == "session"
                                  and e["continuity"] == "replaced"], what="a new session")
    finally:
        await service.stopService()
    states = [e["state"] for e in bridge.events if e["event"] == "lease"]
    assert states == ["holder", "standby", "holder"]
    assert service.exit_code == 0
    # The stream has neither the standby event nor the destroyed session's last events.
    stream = await events(redis.url)
    assert [e["state"] for e in stream if e["event"] == "lease"] == ["holder", "holder"]
    statuses = [e["status"] for e in stream if e["event"] == "status"]
    assert statuses.count("DISCONNECTED") == 1 and statuses[-1] == "DISCONNECTED"


@pytest_twisted.ensureDeferred
async def test_a_relay_waits_for_an_id_another_relay_already_sent() -> None:
    from txlightstreamer.web import StreamRelay

    relay = StreamRelay(clock=reactor)
    port = await relay.listen(reactor, "tcp:0")
    try:
        relay.write_entry("1-0", {"event": "session", "session_id": "S", "continuity": "new"})
        url = f"http://127.0.0.1:{port.getHost().port}/events"
        reader = await SseReader.open(url, headers={"Last-Event-ID": "5-0"})
        for n in range(2, 8):
            relay.write_entry(f"{n}-0", {"event": "status", "status": f"S{n}"})
        await wait_until(lambda: [e.id for e in reader.events] == ["6-0", "7-0"],
                         what="the events after 5-0")
        await reader.close()
    finally:
        relay.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_standby_serves_health_and_metrics(feed: TlcpServer, redis: RedisServer
                                                   ) -> None:
    args = ("--url", str(feed.url), "--subscribe", SPEC, "--sink", redis.url,
            "--lease", "pair", "--lease-time", "1", "--http-port", "tcp:0")
    holder, standby = Bridge(*args), Bridge(*args)
    try:
        holder.service.startService()
        assert holder.service.redis is not None and holder.service.redis.lease is not None
        lease = holder.service.redis.lease
        await wait_until(lambda: lease.held and holder.service.updates > 5, what="holder")
        standby.service.startService()
        service = standby.service
        await wait_until(lambda: service.http is not None and service.http.port is not None,
                         what="the standby's port")
        assert service.http is not None
        port = service.http.port.getHost().port
        assert await _health(port) == 200
        samples = await _metrics(port)
        assert samples["txls_lease_held"] == 0 and samples["txls_updates_received_total"] == 0
        await holder.service.stopService()  # a clean stop gives the lease up at once
        await wait_until(lambda: service.updates > 5, what="the standby's session")
        samples = await _metrics(port)
        assert samples["txls_lease_held"] == 1
        assert samples["txls_sessions_total{continuity=replaced}"] == 1
    finally:
        await holder.service.stopService()
        await standby.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_relay_skips_an_entry_it_cannot_take_and_reads_on(redis: RedisServer) -> None:
    # An update whose values were a string stopped the read loop for good (healthz stayed
    # ok), and any relay started later on that stream exited at once.
    await _write_stream(redis, [
        {"event": "session", "session_id": "S", "continuity": "new"},
        {"event": "subscribed", "sub": 0, "mode": "MERGE", "items": ["a"], "fields": ["x"]},
        {"event": "session", "session_id": "S", "continuity": ["new"]},
        {"event": "update", "sub": 0, "item": "a", "values": "abc"},
        {"event": "update", "sub": 0, "item": "a", "values": {"x": "1"}},
    ])
    service = Bridge("--source", redis.url, "--http-port", "tcp:0").service
    try:
        port = await _served(service)
        await wait_until(lambda: service.source is not None and service.source.read == 5,
                         what="every entry read")
        await wait_until(lambda: bool(service.source and service.source.connected),
                         what="reading on")
        assert await _health(port) == 200
    finally:
        await service.stopService()
