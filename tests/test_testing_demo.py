"""
The demo server as a real server would serve it (`demo_server`): unknown adapter sets, items
and fields refused with the spec's codes, and frequency/buffer limits honoured for MERGE and
DISTINCT (on an injected clock).  A plain `TlcpServer` stays permissive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_twisted
from twisted.internet import task

from txlightstreamer.testing import TlcpServer
from txlightstreamer.testing.demo import (
    DEMO_FIELDS,
    DEMO_ITEMS,
    PORTFOLIO_FIELDS,
    PORTFOLIO_ITEM,
    DemoFeed,
    demo_server,
)

from .test_testing_server import CID, HEAD, LineReader, Peer, _reactor, add


class Demo:
    """A demo server on a `task.Clock` and a peer talking to it."""

    def __init__(self, server: TlcpServer, clock: task.Clock) -> None:
        self.server = server
        self.clock = clock
        self.peer = Peer(server)

    async def subscribed(self, line: str) -> tuple[LineReader, str]:
        reader, sid = await self.peer.create("&LS_send_sync=false")
        await reader.wait_lines(1 + len(HEAD))
        assert await self.peer.control(sid, line) == ["REQOK,1"]
        await reader.wait_for(lambda: any(x.startswith("CONF,") for x in reader.lines))
        return reader, sid

    def values(self, reader: LineReader) -> list[str]:
        return [x.split(",", 3)[3] for x in reader.lines if x.startswith("U,")]

    async def settle(self, reader: LineReader, count: int) -> list[str]:
        await reader.wait_for(lambda: len(self.values(reader)) >= count)
        return self.values(reader)


@pytest_twisted.async_yield_fixture
async def demo() -> AsyncIterator[Demo]:
    clock = task.Clock()
    server = demo_server(clock=clock)
    await server.listen(_reactor())
    d = Demo(server, clock)
    yield d
    await d.peer.close()
    await server.stop()
    assert clock.getDelayedCalls() == []


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "accepted"), [
    ("", True),
    ("&LS_adapter_set=DEFAULT", True),
    ("&LS_adapter_set=DEMO", True),
    ("&LS_adapter_set=WELCOME", False),
])
@pytest_twisted.ensureDeferred
async def test_demo_refuses_unknown_adapter_sets(demo: Demo, extra: str, accepted: bool) -> None:
    reader = await demo.peer.stream("create_session", CID + extra)
    (first,) = await reader.wait_lines(1)
    if accepted:
        assert first.startswith("CONOK,"), first
    else:
        assert first == "CONERR,2,Requested Adapter Set not available"
        assert not demo.server.sessions


@pytest_twisted.ensureDeferred
async def test_demo_refuses_unknown_items_and_fields(demo: Demo) -> None:
    reader, sid = await demo.peer.create()
    assert await demo.peer.control(
        sid,
        add(1, 1, "MERGE", "item1 nosuchitem", "last_price"),
        add(2, 2, "MERGE", "item1", "last_price nosuchfield"),
        add(3, 3, "MERGE", " ".join(DEMO_ITEMS), " ".join(DEMO_FIELDS)),
        add(4, 4, "COMMAND", PORTFOLIO_ITEM, " ".join(PORTFOLIO_FIELDS)),
        add(5, 5, "COMMAND", PORTFOLIO_ITEM, "key command qty last_price"),
        add(6, 6, "MERGE", "item3", "qty"),
    ) == [
        "REQERR,1,21,Bad item group name",
        "REQERR,2,23,Bad field schema name",
        "REQOK,3",
        "REQOK,4",
        "REQERR,5,23,Bad field schema name",
        "REQERR,6,23,Bad field schema name",
    ]
    assert sorted(demo.server.sessions[sid].subscriptions) == [3, 4]


@pytest_twisted.ensureDeferred
async def test_plain_server_stays_permissive() -> None:
    server = TlcpServer()
    await server.listen(_reactor())
    peer = Peer(server)
    try:
        reader, sid = await peer.create("&LS_adapter_set=ANYTHING")
        assert await peer.control(sid, add(1, 1, "MERGE", "whatever", "any fields")) == [
            "REQOK,1"]
    finally:
        await peer.close()
        await server.stop()


# --- frequency and buffer limits ----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_merge_max_frequency_keeps_the_latest_state(demo: Demo) -> None:
    # 2 updates/s per item, MERGE's default buffer of 1: what comes between two slots merges.
    reader, _ = await demo.subscribed(
        add(1, 1, "MERGE", "item1", "last_price", "&LS_requested_max_frequency=2"))
    assert "CONF,1,2,filtered" in reader.lines
    for price in ("1", "2", "3", "4"):
        demo.server.data.update("item1", {"last_price": price})
    assert await demo.settle(reader, 1) == ["1"]
    demo.clock.advance(0.49)
    assert demo.values(reader) == ["1"]
    demo.clock.advance(0.01)
    assert await demo.settle(reader, 2) == ["1", "4"]
    demo.server.data.update("item1", {"last_price": "5"})
    demo.clock.advance(0.25)
    demo.server.data.update("item1", {"last_price": "6"})
    demo.clock.advance(0.25)
    assert await demo.settle(reader, 3) == ["1", "4", "6"]
    demo.clock.advance(0.5)  # nothing waiting: the next update goes out at once
    demo.server.data.update("item1", {"last_price": "7"})
    assert await demo.settle(reader, 4) == ["1", "4", "6", "7"]


@pytest_twisted.ensureDeferred
async def test_merge_buffer_size_keeps_a_burst(demo: Demo) -> None:
    reader, _ = await demo.subscribed(add(
        1, 1, "MERGE", "item1", "last_price",
        "&LS_requested_max_frequency=1&LS_requested_buffer_size=2"))
    for price in ("1", "2", "3", "4"):
        demo.server.data.update("item1", {"last_price": price})
    assert await demo.settle(reader, 1) == ["1"]
    demo.clock.advance(1.0)
    assert await demo.settle(reader, 2) == ["1", "3"]
    demo.clock.advance(1.0)
    assert await demo.settle(reader, 3) == ["1", "3", "4"]


@pytest_twisted.ensureDeferred
async def test_distinct_max_frequency_delivers_every_event_in_time(demo: Demo) -> None:
    # DISTINCT's default buffer is unlimited: no event lost, one per slot.
    reader, _ = await demo.subscribed(
        add(1, 1, "DISTINCT", "item2", "last_price", "&LS_requested_max_frequency=4"))
    for price in ("1", "2", "3", "4"):
        demo.server.data.update("item2", {"last_price": price})
    assert await demo.settle(reader, 1) == ["1"]
    for n in (2, 3, 4):
        demo.clock.advance(0.25)
        await demo.settle(reader, n)
    assert demo.values(reader) == ["1", "2", "3", "4"]


@pytest_twisted.ensureDeferred
async def test_distinct_buffer_size_drops_the_oldest(demo: Demo) -> None:
    reader, _ = await demo.subscribed(add(
        1, 1, "DISTINCT", "item2", "last_price",
        "&LS_requested_max_frequency=1&LS_requested_buffer_size=2"))
    for price in ("1", "2", "3", "4", "5"):
        demo.server.data.update("item2", {"last_price": price})
    demo.clock.advance(1.0)
    demo.clock.advance(1.0)
    demo.clock.advance(1.0)
    assert await demo.settle(reader, 3) == ["1", "4", "5"]
    assert not any(x.startswith("OV,") for x in reader.lines)  # filtered: not reported


@pytest_twisted.ensureDeferred
async def test_reconf_and_unfiltered_are_not_held_back(demo: Demo) -> None:
    reader, sid = await demo.subscribed(
        add(1, 1, "DISTINCT", "item2", "last_price", "&LS_requested_max_frequency=1"))
    demo.server.data.update("item2", {"last_price": "1"})
    demo.server.data.update("item2", {"last_price": "2"})
    assert await demo.settle(reader, 1) == ["1"]
    assert await demo.peer.control(
        sid, "LS_reqId=2&LS_op=reconf&LS_subId=1&LS_requested_max_frequency=unlimited"
    ) == ["REQOK,2"]
    demo.clock.advance(1.0)  # what waited goes at its slot; then nothing is held back
    assert await demo.settle(reader, 2) == ["1", "2"]
    demo.server.data.update("item2", {"last_price": "3"})
    demo.server.data.update("item2", {"last_price": "4"})
    assert await demo.settle(reader, 4) == ["1", "2", "3", "4"]
    assert await demo.peer.control(sid, add(
        3, 2, "MERGE", "item3", "last_price", "&LS_requested_max_frequency=unfiltered")
    ) == ["REQOK,3"]
    for price in ("7", "8"):
        demo.server.data.update("item3", {"last_price": price})
    await reader.wait_for(lambda: "U,2,1,8" in reader.lines)


@pytest_twisted.ensureDeferred
async def test_demo_feed_runs_on_the_demo_server(demo: Demo) -> None:
    feed = DemoFeed(demo.server.data, demo.clock)
    reader, _ = await demo.subscribed(add(
        1, 1, "MERGE", " ".join(DEMO_ITEMS), " ".join(DEMO_FIELDS), "&LS_snapshot=true"))
    await demo.settle(reader, len(DEMO_ITEMS))
    feed.start()
    demo.clock.pump([0.25] * 4)
    feed.stop()
    assert feed.ticks == 4
    await demo.settle(reader, len(DEMO_ITEMS) + 4)  # each tick updates one to three items
