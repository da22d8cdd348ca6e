"""
The web relay over real loopback HTTP: /snapshot, /events (SSE with Last-Event-ID
resumption, heartbeats, slow consumers), the page, mounting, and endpoint strings.
"""

from __future__ import annotations

import errno
import json
import socket
import time
from collections.abc import AsyncIterator

import pytest
import pytest_twisted
import treq
from twisted.internet import error, reactor
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.web_support import RelayEnv, SseReader, sleep, wait_until
from txlightstreamer.web import Relay, endpoint_string
from txlightstreamer.web._page import CONTENT_SECURITY_POLICY, PAGE
from txlightstreamer.web._relay import _frame


@pytest_twisted.async_yield_fixture
async def env() -> AsyncIterator[RelayEnv]:
    e = await RelayEnv.start(heartbeat=0.25)
    yield e
    await e.stop()


# -- /snapshot ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_snapshot_has_every_mode_and_the_connection(env: RelayEnv) -> None:
    data = env.server.data
    data.update("a", {"v": "1", "w": None})
    data.update("b", {"v": "x", "w": ""})
    data.command("p", "k1", "ADD", {"qty": "10"})
    data.command("p", "k2", "ADD", {"qty": "20"})
    data.command("p", "k1", "UPDATE", {"qty": "11"})
    data.command("p", "k2", "DELETE")
    for i in range(3):
        data.update("d", {"v": f"d{i}"})
        data.update("r", {"v": f"r{i}"})
    await wait_until(lambda: env.relay.snapshot()["subscriptions"][3]["rows"].get("r") ==
                     {"v": "r2"}, what="the RAW update")

    snap = await env.get_json("snapshot")
    assert snap["status"].startswith("CONNECTED:")
    assert snap["session_id"] == env.client.session_id
    assert snap["continuity"] == "new"
    assert snap["last_event_id"] == env.relay.event_id(env.relay.last_number)
    merge, command, distinct, raw = snap["subscriptions"]
    assert merge == {
        "sub": 0, "mode": "MERGE", "items": ["a", "b"], "fields": ["v", "w"],
        "subscribed": True,
        # null and the empty string stay distinct
        "rows": {"a": {"v": "1", "w": None}, "b": {"v": "x", "w": ""}},
    }
    assert command["mode"] == "COMMAND"
    assert command["key_field"] == "key" and command["command_field"] == "command"
    assert command["keys"] == {"p": {"k1": {"key": "k1", "command": "UPDATE", "qty": "11"}}}
    assert distinct["rows"] == {"d": {"v": "d2"}}
    assert [u["values"]["v"] for u in distinct["recent"]] == ["d0", "d1", "d2"]
    assert [u["values"]["v"] for u in raw["recent"]] == ["r0", "r1", "r2"]
    assert raw["recent"][0] == {
        "event": "update", "sub": 3, "item": "r", "pos": 1, "values": {"v": "r0"},
        "changed": ["v"], "snapshot": False}


@pytest_twisted.ensureDeferred
async def test_snapshot_is_not_cached_and_is_json(env: RelayEnv) -> None:
    response = await treq.get(env.base + "snapshot", persistent=False)
    assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    assert "no-store" in response.headers.getRawHeaders("cache-control")[0]
    json.loads(await response.text())


# -- /events --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_events_start_with_a_snapshot_then_carry_the_json_lines_events(
        env: RelayEnv) -> None:
    env.server.data.update("a", {"v": "1", "w": "one"})
    await wait_until(lambda: 1 in env.tables[0].rows)
    reader = await SseReader.open(env.base + "events")
    await reader.wait_for(lambda r: r.events, what="the snapshot")
    first = reader.events[0]
    assert first.event == "snapshot"
    assert first.id == env.relay.event_id(env.relay.last_number)
    assert first.data["subscriptions"][0]["rows"]["a"] == {"v": "1", "w": "one"}
    assert reader.retry == 2000

    env.server.data.update("a", {"v": "2"})
    env.server.data.command("p", "k", "ADD", {"qty": "5"})
    env.server.data.clear_snapshot("p")
    env.server.data.overflow("a", 3)
    await reader.wait_for(lambda r: r.named("lost"), what="the lost event")
    live = reader.events[1:]
    assert [e.event for e in live] == ["update", "update", "clear_snapshot", "lost"]
    assert [e.data for e in live] == [
        {"event": "update", "sub": 0, "item": "a", "pos": 1, "values": {"v": "2", "w": "one"},
         "changed": ["v"], "snapshot": False},
        {"event": "update", "sub": 1, "item": "p", "pos": 1,
         "values": {"key": "k", "command": "ADD", "qty": "5"},
         "changed": ["key", "command", "qty"], "snapshot": False},
        {"event": "clear_snapshot", "sub": 1, "item": "p", "pos": 1},
        {"event": "lost", "sub": 0, "item": "a", "pos": 1, "count": 3},
    ]
    numbers = [first.number] + [e.number for e in live]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    await reader.close()
    await wait_until(lambda: env.relay.stats()["clients"] == 0, what="the client to go")


@pytest_twisted.ensureDeferred
async def test_connection_events_reach_the_stream() -> None:
    env = await RelayEnv.start(connect=False)
    try:
        reader = await SseReader.open(env.base + "events")
        await reader.wait_for(lambda r: r.events)
        assert reader.events[0].data["status"] == "DISCONNECTED"
        assert reader.events[0].data["session_id"] is None
        await env.connect()
        await reader.wait_for(lambda r: len(r.named("subscribed")) == 4)
        statuses = [e.data["status"] for e in reader.named("status")]
        assert statuses[0] == "CONNECTING"
        assert statuses[-1].startswith("CONNECTED:")
        (session,) = reader.named("session")
        assert session.data == {"event": "session", "session_id": env.client.session_id,
                                "continuity": "new"}
        subscribed = {e.data["sub"]: e.data for e in reader.named("subscribed")}
        assert subscribed[0] == {"event": "subscribed", "sub": 0, "items": 2, "fields": 2,
                                 "item_names": ["a", "b"],
                                 "field_names": ["v", "w"]}
        assert subscribed[1] == {"event": "subscribed", "sub": 1, "items": 1, "fields": 3,
                                 "item_names": ["p"],
                                 "field_names": ["key", "command", "qty"],
                                 "key_field": 1, "command_field": 2}
        assert all(e.data["reason"] for e in reader.named("status")[1:])
        await env.client.destroy()
        await reader.wait_for(lambda r: r.named("status")[-1].data["status"] == "DISCONNECTED",
                              what="DISCONNECTED")
        await reader.close()
    finally:
        await env.stop()


@pytest_twisted.ensureDeferred
async def test_subscription_errors_are_relayed_once_with_their_sub() -> None:
    from txlightstreamer import Table

    env = await RelayEnv.start(connect=False)
    try:
        refused = Table(env.client, item_ids=["a"], schema=["v"])
        relay = Relay(env.client, [*env.tables, refused], clock=reactor)
        port = await relay.listen(reactor, "tcp:0")
        reader = await SseReader.open(f"http://127.0.0.1:{port.getHost().port}/events")
        env.server.data.strict_items = True  # every item is refused from now on
        await env.client.create_session()
        await reader.wait_for(lambda r: len(r.named("error")) >= 5, what="the errors")
        await sleep(0.1)
        errors = [e.data for e in reader.named("error")]
        assert sorted(e["sub"] for e in errors) == [0, 1, 2, 3, 4]
        assert all(e["code"] == 21 for e in errors)
        await reader.close()
        relay.close()
        await port.stopListening()
    finally:
        await env.stop()


@pytest_twisted.ensureDeferred
async def test_reconnect_with_last_event_id_gets_exactly_what_was_missed(
        env: RelayEnv) -> None:
    reader = await SseReader.open(env.base + "events")
    env.server.data.update("a", {"v": "1"})
    await reader.wait_for(lambda r: r.named("update"))
    seen = reader.events[-1]
    await reader.close()

    for i in range(2, 6):
        env.server.data.update("a", {"v": str(i)})
    await wait_until(lambda: env.tables[0].rows.get(1, ("",))[0] == "5")

    again = await SseReader.open(env.base + "events", headers={"Last-Event-ID": seen.id})
    await again.wait_for(lambda r: len(r.named("update")) == 4, what="the 4 missed updates")
    assert [e.event for e in again.events] == ["update"] * 4  # no snapshot, no gap
    assert [e.data["values"]["v"] for e in again.events] == ["2", "3", "4", "5"]
    assert [e.number for e in again.events] == [seen.number + k for k in range(1, 5)]

    # Then it carries on live.
    env.server.data.update("b", {"v": "live"})
    await again.wait_for(lambda r: r.events[-1].data.get("item") == "b")
    assert again.events[-1].number == seen.number + 5

    # The same through the query string (for clients that cannot set the header).
    by_query = await SseReader.open(env.base + f"events?last_event_id={seen.id}")
    await by_query.wait_for(lambda r: len(r.events) == 5)
    assert [e.id for e in by_query.events] == [e.id for e in again.events]
    await again.close()
    await by_query.close()


@pytest_twisted.ensureDeferred
async def test_resuming_at_the_newest_event_sends_nothing_old(env: RelayEnv) -> None:
    last = env.relay.event_id(env.relay.last_number)
    reader = await SseReader.open(env.base + "events", headers={"Last-Event-ID": last})
    env.server.data.update("a", {"v": "new"})
    await reader.wait_for(lambda r: r.events)
    assert [e.event for e in reader.events] == ["update"]
    await reader.close()


@pytest_twisted.ensureDeferred
async def test_an_id_older_than_the_backlog_gets_a_gap_then_a_snapshot() -> None:
    env = await RelayEnv.start(backlog=5)
    try:
        reader = await SseReader.open(env.base + "events")
        env.server.data.update("a", {"v": "0"})
        await reader.wait_for(lambda r: r.named("update"))
        old = reader.events[-1]
        await reader.close()
        for i in range(1, 11):
            env.server.data.update("a", {"v": str(i)})
        await wait_until(lambda: env.tables[0].rows.get(1, ("",))[0] == "10")
        assert env.relay.stats()["backlog"] == 5

        again = await SseReader.open(env.base + "events", headers={"Last-Event-ID": old.id})
        await again.wait_for(lambda r: len(r.events) >= 2)
        gap, snapshot = again.events[:2]
        assert gap.event == "gap" and gap.id is None
        assert gap.data["requested"] == old.id
        assert gap.data["reason"] == "too old"
        assert gap.data["oldest"] == env.relay.event_id(env.relay.last_number - 4)
        assert snapshot.event == "snapshot"
        assert snapshot.id == env.relay.event_id(env.relay.last_number)
        assert snapshot.data["subscriptions"][0]["rows"]["a"]["v"] == "10"
        await again.close()
    finally:
        await env.stop()


@pytest.mark.parametrize("bad_id", ["garbage", "0", "ffffffff-1", "", "-1"])
@pytest_twisted.ensureDeferred
async def test_an_id_from_elsewhere_gets_a_gap_then_a_snapshot(env: RelayEnv,
                                                                bad_id: str) -> None:
    # An id of another run (the service restarted) must not replay this run's events.
    reader = await SseReader.open(env.base + "events", headers={"Last-Event-ID": bad_id})
    await reader.wait_for(lambda r: len(r.events) >= 2)
    assert [e.event for e in reader.events[:2]] == ["gap", "snapshot"]
    assert reader.events[0].data["reason"] == "unknown id"
    await reader.close()


@pytest_twisted.ensureDeferred
async def test_a_future_id_of_this_run_gets_a_gap(env: RelayEnv) -> None:
    future = env.relay.event_id(env.relay.last_number + 10)
    reader = await SseReader.open(env.base + "events", headers={"Last-Event-ID": future})
    await reader.wait_for(lambda r: len(r.events) >= 2)
    assert [e.event for e in reader.events[:2]] == ["gap", "snapshot"]
    await reader.close()


@pytest_twisted.ensureDeferred
async def test_idle_streams_get_heartbeat_comments(env: RelayEnv) -> None:
    reader = await SseReader.open(env.base + "events")
    await reader.wait_for(lambda r: len(r.comments) >= 2, timeout=5, what="two heartbeats")
    assert set(reader.comments) == {"heartbeat"}
    await reader.close()
    # The heartbeat timer stops with the last client.
    await wait_until(lambda: env.relay._heartbeat_call is None)


@pytest_twisted.ensureDeferred
async def test_closing_the_relay_ends_every_stream(env: RelayEnv) -> None:
    readers = [await SseReader.open(env.base + "events") for _ in range(3)]
    await wait_until(lambda: env.relay.stats()["clients"] == 3)
    env.relay.close()
    for reader in readers:
        await reader.done
    response = await treq.get(env.base + "events", persistent=False)
    assert response.code == 503


@pytest_twisted.ensureDeferred
async def test_too_many_clients_get_503() -> None:
    env = await RelayEnv.start(max_clients=2)
    try:
        readers = [await SseReader.open(env.base + "events") for _ in range(2)]
        response = await treq.get(env.base + "events", persistent=False)
        assert response.code == 503
        assert response.headers.getRawHeaders("retry-after") == ["10"]
        assert env.relay.stats()["clients"] == 2
        for reader in readers:
            await reader.close()
    finally:
        await env.stop()


@pytest_twisted.ensureDeferred
async def test_head_of_events_does_not_open_a_stream(env: RelayEnv) -> None:
    response = await treq.head(env.base + "events", persistent=False)
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["text/event-stream; charset=utf-8"]
    assert env.relay.stats()["clients"] == 0


@pytest_twisted.ensureDeferred
async def test_an_application_can_publish_its_own_events(env: RelayEnv) -> None:
    reader = await SseReader.open(env.base + "events")
    env.relay.publish({"event": "note", "text": "hello"})
    await reader.wait_for(lambda r: r.named("note"))
    assert reader.named("note")[0].data == {"event": "note", "text": "hello"}
    await reader.close()


# -- slow consumers -------------------------------------------------------------------------


def _transport_buffered(relay: Relay) -> int:
    """The most bytes waiting in the server-side transport of one /events stream."""
    most = 0
    for stream in relay._streams:
        transport = stream.request.channel.transport if stream.request.channel else None
        waiting = sum(len(b) for b in getattr(transport, "_tempDataBuffer", ()))
        waiting += len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
        most = max(most, waiting)
    return most


@pytest_twisted.ensureDeferred
async def test_a_client_that_never_reads_is_dropped_and_others_are_served() -> None:
    # Well above what one upstream read brings (up to 128 KiB of 16 KB events, fanned out in
    # one reactor turn, while the kernel's buffers of a new connection are still small): the
    # client that reads must not be dropped with the one that does not.
    limit = 512 * 1024
    env = await RelayEnv.start(client_buffer=limit, backlog=50)
    stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # The client that reads runs in this reactor too: with Twisted's 64 KiB reads it
        # takes half of what the upstream's reads bring in a saturated reactor turn, and
        # falls behind as a slow client does. It reads more than they bring.
        good = await SseReader.open(env.base + "events", read_size=256 * 1024)
        # A raw TCP client that asks for the stream and then never reads a byte.
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", env.port.getHost().port))
        stuck.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        stuck.setblocking(False)
        await wait_until(lambda: env.relay.stats()["clients"] == 2, what="the stuck client")

        payload = "x" * 16_000
        frame = 16_000 + 200
        sent = 0
        peaks = {"behind": 0, "transport": 0, "behind_samples": 0}

        def sample(_: object) -> None:
            # Runs after the relay's own callback for every update: the worst moments.
            behind = env.relay.stats()["max_client_behind_bytes"]
            peaks["behind"] = max(peaks["behind"], behind)
            peaks["behind_samples"] += bool(behind)
            peaks["transport"] = max(peaks["transport"], _transport_buffered(env.relay))

        env.tables[0].on_item_update(sample)
        snapshot_latency = 0.0
        deadline = time.monotonic() + 30
        while env.relay.stats()["dropped_clients"] == 0:
            assert time.monotonic() < deadline, (
                f"the stuck client was never dropped after {sent} updates: "
                f"{env.relay.stats()}")
            assert sent < 3000, f"not dropped after {sent} updates: {env.relay.stats()}"
            for _ in range(10):
                sent += 1
                env.server.data.update("a", {"v": f"{sent}:{payload}"})
            await sleep(0.005)
            if sent % 50 == 0:
                # The reactor keeps answering other requests meanwhile.
                started = time.monotonic()
                snap = await env.get_json("snapshot")
                snapshot_latency = max(snapshot_latency, time.monotonic() - started)
                # The stuck client may be dropped while this request is answered.
                assert snap["clients"] == 2 - snap["dropped_clients"]

        # Memory stayed bounded: nothing is copied per client (a client is a position in
        # the shared, bounded backlog), it was dropped once client_buffer bytes behind,
        # and its transport held at most its high-water mark (64 KiB) and a frame or two.
        assert peaks["behind_samples"] > 0  # the stuck client was paused, fell behind
        assert peaks["behind"] <= limit + frame
        assert peaks["transport"] <= 64 * 1024 + 2 * frame
        assert snapshot_latency < 2.0
        stats = env.relay.stats()
        assert stats["clients"] == 1
        assert stats["dropped_clients"] == 1
        assert stats["backlog"] == 50
        assert (await env.get_json("snapshot"))["dropped_clients"] == 1

        # The reading client got every update, in order, and is still served.
        await good.wait_for(lambda r: any(
            e.data.get("values", {}).get("v", "").startswith(f"{sent}:")
            for e in r.events[-5:]), timeout=20, what="the good client to catch up")
        values = [int(e.data["values"]["v"].split(":")[0]) for e in good.named("update")]
        assert values == list(range(1, sent + 1))
        assert not good.done.called

        # The stuck client's connection was cut (reset, or closed after its buffered bytes).
        async def cut() -> bool:
            cut_deadline = time.monotonic() + 10
            while time.monotonic() < cut_deadline:
                try:
                    if stuck.recv(1 << 20) == b"":
                        return True
                except ConnectionResetError:
                    return True
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                        raise
                    await sleep(0.02)
            return False

        assert await cut()
        await good.close()
    finally:
        stuck.close()
        await env.stop()


@pytest_twisted.ensureDeferred
async def test_a_paused_client_that_catches_up_keeps_its_stream() -> None:
    # Flow control without a drop: a reader that pauses for a while, then reads, gets
    # every event once its transport drains.
    env = await RelayEnv.start(client_buffer=4 << 20)
    try:
        reader = await SseReader.open(env.base + "events")
        reader.transport.pauseProducing()
        payload = "y" * 8_000
        for i in range(1, 301):
            env.server.data.update("a", {"v": f"{i}:{payload}"})
            if i % 50 == 0:
                await sleep(0.01)
        await wait_until(lambda: env.tables[0].rows.get(1, ("",))[0].startswith("300:"))
        reader.transport.resumeProducing()
        await reader.wait_for(lambda r: len(r.named("update")) == 300, timeout=20)
        values = [int(e.data["values"]["v"].split(":")[0]) for e in reader.named("update")]
        assert values == list(range(1, 301))
        assert env.relay.stats()["dropped_clients"] == 0
        await reader.close()
    finally:
        await env.stop()


@pytest_twisted.ensureDeferred
async def test_a_fast_client_resuming_a_replay_bigger_than_its_buffer_is_kept() -> None:
    env = await RelayEnv.start(client_buffer=32 * 1024, backlog=400)
    try:
        reader = await SseReader.open(env.base + "events")
        await reader.wait_for(lambda r: r.events)
        start = reader.events[-1]
        await reader.close()
        payload = "z" * 10_000
        for i in range(1, 301):  # 3 MB missed, 100 times the client's buffer
            env.server.data.update("a", {"v": f"{i}:{payload}"})
            if i % 50 == 0:
                await sleep(0.01)
        await wait_until(lambda: env.tables[0].rows.get(1, ("",))[0].startswith("300:"))
        again = await SseReader.open(env.base + "events", headers={"Last-Event-ID": start.id})
        # New events keep coming while it catches up.
        for i in range(301, 321):
            env.server.data.update("a", {"v": f"{i}:{payload}"})
        await again.wait_for(lambda r: len(r.named("update")) == 320, timeout=20)
        values = [int(e.data["values"]["v"].split(":")[0]) for e in again.named("update")]
        assert values == list(range(1, 321))
        assert env.relay.stats()["dropped_clients"] == 0
        await again.close()
    finally:
        await env.stop()


@pytest_twisted.ensureDeferred
async def test_a_client_falling_behind_the_backlog_is_dropped() -> None:
    # A generous client_buffer, a short backlog: it is the backlog that runs out.
    env = await RelayEnv.start(client_buffer=1 << 30, backlog=20)
    try:
        reader = await SseReader.open(env.base + "events")
        await reader.wait_for(lambda r: r.events)
        reader.transport.pauseProducing()
        payload = "w" * 16_000
        for i in range(1, 1001):
            env.server.data.update("a", {"v": f"{i}:{payload}"})
            if i % 20 == 0:
                await sleep(0.005)
                if env.relay.stats()["dropped_clients"]:
                    break
        await wait_until(lambda: env.relay.stats()["dropped_clients"] == 1, what="the drop")
        reader.transport.resumeProducing()
        await reader.done
    finally:
        await env.stop()


def test_the_backlog_is_bounded_in_bytes_too() -> None:
    from txlightstreamer import LsClient

    relay = Relay(LsClient("http://127.0.0.1:9"), [], backlog=1000, backlog_bytes=10_000)
    for i in range(100):
        relay.publish({"event": "note", "text": "x" * 1000, "i": i})
    stats = relay.stats()
    assert stats["backlog_bytes"] <= 10_000
    assert 5 <= stats["backlog"] < 10
    relay.publish({"event": "note", "text": "y" * 50_000})  # bigger than the bound: kept
    assert relay.stats()["backlog"] == 1


# -- the page and mounting ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_page_is_self_contained(env: RelayEnv) -> None:
    response = await treq.get(env.base, persistent=False)
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
    csp = response.headers.getRawHeaders("content-security-policy")[0]
    assert csp == CONTENT_SECURITY_POLICY.decode()
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    body = await response.content()
    assert body == PAGE
    text = body.decode()
    # No CDN, no external anything: every reference is relative or inline.
    for marker in ("http://", "https://", "//cdn", " src=", "@import", "url("):
        assert marker not in text, marker
    assert 'new EventSource("events")' in text
    assert "innerHTML" not in text  # server values only ever go in as text


@pytest_twisted.ensureDeferred
async def test_the_resource_mounts_under_a_path(env: RelayEnv) -> None:
    root = Resource()
    root.putChild(b"live", env.relay.resource())
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}"
    try:
        response = await treq.get(base + "/live?x=1", allow_redirects=False, persistent=False)
        assert response.code == 302
        assert response.headers.getRawHeaders("location") == ["/live/?x=1"]
        response = await treq.get(base + "/live/", persistent=False)
        assert await response.content() == PAGE
        response = await treq.get(base + "/live/snapshot", persistent=False)
        assert json.loads(await response.text())["subscriptions"][0]["sub"] == 0
        reader = await SseReader.open(base + "/live/events")
        await reader.wait_for(lambda r: r.events)
        assert reader.events[0].event == "snapshot"
        await reader.close()
        response = await treq.get(base + "/live/nothing", persistent=False)
        assert response.code == 404
    finally:
        await port.stopListening()


# -- endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("8080", "tcp:8080:interface=127.0.0.1"),
    ("tcp:8080", "tcp:8080:interface=127.0.0.1"),
    ("tcp:port=0", "tcp:port=0:interface=127.0.0.1"),
    ("tcp:8080:interface=0.0.0.0", "tcp:8080:interface=0.0.0.0"),
    ("tcp:8080:backlog=5:interface=192.0.2.1", "tcp:8080:backlog=5:interface=192.0.2.1"),
    ("tcp6:8080", "tcp6:8080:interface=\\:\\:1"),
    ("unix:/tmp/relay.sock", "unix:/tmp/relay.sock"),
])
def test_endpoint_strings_bind_loopback_by_default(given: str, expected: str) -> None:
    assert endpoint_string(given) == expected


@pytest.mark.parametrize("bad", ["", "tcp:http", "nosuchtype:1", "tcp:8080:what=1"])
def test_bad_endpoint_strings_raise_one_line_value_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="^bad endpoint|^empty endpoint") as info:
        endpoint_string(bad)
    assert "\n" not in str(info.value)


@pytest_twisted.ensureDeferred
async def test_listen_binds_loopback(env: RelayEnv) -> None:
    assert env.port.getHost().host == "127.0.0.1"


def test_relay_checks_its_arguments() -> None:
    from txlightstreamer import LsClient

    client = LsClient("http://127.0.0.1:9")
    for bad in ({"backlog": 0}, {"backlog_bytes": 0}, {"client_buffer": 0}, {"heartbeat": 0}):
        with pytest.raises(ValueError):
            Relay(client, [], **bad)


def test_both_relays_take_the_same_options() -> None:
    # One list of options (RelayOptions) for Relay and StreamRelay, defaults included.
    from txlightstreamer import LsClient
    from txlightstreamer.web import RelayOptions, StreamRelay

    client = LsClient("http://127.0.0.1:9")
    options: RelayOptions = {"clock": Clock(), "backlog": 7, "backlog_bytes": 700,
                             "client_buffer": 70, "heartbeat": 0.5, "max_clients": 3}
    for relay in (Relay(client, [], recent=2, **options), StreamRelay(**options)):
        assert (relay.clock, relay.backlog, relay.backlog_bytes, relay.client_buffer,
                relay.heartbeat, relay.max_clients) == tuple(options.values())
    defaults = (1000, 16 << 20, 1 << 20, 15.0, 100)
    for relay in (Relay(client, []), StreamRelay()):
        assert (relay.backlog, relay.backlog_bytes, relay.client_buffer, relay.heartbeat,
                relay.max_clients) == defaults
        assert relay.clock is reactor
    # A misspelt option: mypy says so at the call, Python when it runs.
    with pytest.raises(TypeError, match="backlgo"):
        Relay(client, [], backlgo=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="backlgo"):
        StreamRelay(backlgo=5)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        StreamRelay(client_buffer=0)


def _relay_timers(relay: Relay) -> list[object]:
    """The reactor's pending calls that belong to ``relay`` (its heartbeat)."""
    mine = []
    for call in reactor.getDelayedCalls():
        owner = getattr(call.func, "__self__", call.func)
        target = getattr(owner, "f", owner)  # a LoopingCall's function
        if getattr(target, "__self__", None) is relay:
            mine.append(call)
    return mine


@pytest_twisted.ensureDeferred
async def test_closing_leaves_no_timer_and_no_connection() -> None:
    env = await RelayEnv.start(heartbeat=0.05)
    readers = [await SseReader.open(env.base + "events") for _ in range(2)]
    await readers[0].wait_for(lambda r: len(r.comments) >= 1, what="a heartbeat")
    assert _relay_timers(env.relay)
    await env.stop()
    for reader in readers:
        await reader.done  # the server ended each stream
    assert _relay_timers(env.relay) == []
    assert env.relay.stats()["clients"] == 0
    with pytest.raises(error.ConnectionRefusedError):
        await treq.get(env.base + "snapshot", persistent=False)


@pytest_twisted.ensureDeferred
async def test_clients_that_leave_stop_the_heartbeat(env: RelayEnv) -> None:
    reader = await SseReader.open(env.base + "events")
    await reader.wait_for(lambda r: len(r.comments) >= 1, what="a heartbeat")
    await reader.close()
    await wait_until(lambda: env.relay.stats()["clients"] == 0)
    assert env.relay._heartbeat_call is None
    assert _relay_timers(env.relay) == []


@pytest_twisted.ensureDeferred
async def test_second_level_errors_are_relayed_with_their_key() -> None:
    from txlightstreamer import MODE_COMMAND, LsClient, Table
    from txlightstreamer.testing import TlcpServer

    server = TlcpServer()
    await server.listen(reactor, port=0, interface="127.0.0.1")
    server.data.update("AAPL", {"price": "190.1"})
    server.data.command("portfolio", "AAPL", "ADD", {"qty": "5"})
    server.data.command("portfolio", "12", "ADD", {"qty": "1"})  # no such second-level item
    client = LsClient(server.url)
    table = Table(client, mode=MODE_COMMAND, item_ids=["portfolio"],
                  schema=["key", "command", "qty"], snapshot=True,
                  second_level_schema=["price"])
    relay = Relay(client, [table], clock=reactor)
    port = await relay.listen(reactor, "tcp:0")
    try:
        reader = await SseReader.open(f"http://127.0.0.1:{port.getHost().port}/events")
        await client.create_session()
        await reader.wait_for(lambda r: bool(r.named("error")), what="the key's error")
        await reader.wait_for(lambda r: any(
            e.data["values"].get("price") == "190.1" for e in r.named("update")),
            what="the second-level price")
        await sleep(0.1)
        errors = [e.data for e in reader.named("error")]
        assert errors == [{"event": "error", "code": 14, "message": errors[0]["message"],
                           "sub": 0, "key": "12"}]
        await reader.close()
    finally:
        relay.close()
        await client.destroy()
        await port.stopListening()
        await server.stop()


def test_an_event_name_with_a_line_break_stays_one_field() -> None:
    # Written as it was, "x\ndata: forged" ended the event: line and added a data line.
    frame = _frame("r-1", {"event": "x\ndata: forged\r", "n": 1})
    lines = frame.decode().split("\n")
    assert lines[1] == "event: x data: forged"
    assert sum(line.startswith("data:") for line in lines) == 1
