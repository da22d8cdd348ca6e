"""
End-to-end: `LsClient` over real loopback HTTP against `txlightstreamer.testing.TlcpServer`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from txlightstreamer import (
    MODE_COMMAND,
    MODE_DISTINCT,
    MODE_MERGE,
    MODE_RAW,
    STATE_CONNECTED,
    STATE_DISCONNECTED,
    ItemUpdate,
    LsClient,
    ServerError,
    Table,
)
from txlightstreamer.testing import TlcpServer

from .support import stream_sequence, wait_until

TIMEOUT = 10.0


class Client:
    """An LsClient plus what it reported, destroyed at the end of the test."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.client = LsClient(url, **kwargs)
        self.states: list[str] = []
        self.errors: list[Exception] = []
        self.sessions: list[Any] = []
        self.client.on_connection_state(self.states.append)
        self.client.on_error(self.errors.append)
        self.client.on_session(self.sessions.append)


# Every transport: Stream-Sense's default (WebSocket streaming) and the forced others.
TRANSPORTS = [None, "HTTP-STREAMING", "HTTP-POLLING", "WS-POLLING"]


@pytest.fixture(params=TRANSPORTS, ids=lambda t: t or "default")
def transport(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


@pytest_twisted.async_yield_fixture
async def make_client(
    server: TlcpServer, transport: str | None
) -> AsyncIterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**kwargs: Any) -> Client:
        kwargs.setdefault("forced_transport", transport)
        c = Client(server.url, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.client.destroy()


def collect(table: Table) -> list[ItemUpdate]:
    updates: list[ItemUpdate] = []
    table.on_item_update(updates.append)
    return updates


@pytest_twisted.ensureDeferred
async def test_connect_and_merge_with_snapshot(server: TlcpServer, make_client: Any) -> None:
    server.data.update("item1", {"last_price": "10.5", "time": "12:00:00"})
    server.data.update("item2", {"last_price": None, "time": None})
    c = make_client()
    info = await c.client.create_session("DEMO", "user")
    assert info.continuity == "new"
    assert c.client.state == STATE_CONNECTED
    rows: list[tuple[int, Any]] = []
    table = Table(c.client, mode=MODE_MERGE, item_ids="item1 item2",
                  schema=["last_price", "time"], snapshot=True)
    table.on_update(lambda item, row: rows.append((item, row)))
    updates = collect(table)
    await table.when_subscribed()
    await wait_until(lambda: len(updates) == 2)
    by_item = {u.item_name: u for u in updates}
    assert by_item["item1"].is_snapshot
    assert by_item["item1"]["last_price"] == "10.5"
    assert by_item["item2"].values == (None, None)

    server.data.update("item1", {"last_price": "10.6"})
    await wait_until(lambda: len(updates) == 3)
    last = updates[-1]
    assert not last.is_snapshot
    assert last.as_dict() == {"last_price": "10.6", "time": "12:00:00"}
    assert last.changed_fields == {"last_price": "10.6"}
    assert rows[-1] == (1, ("10.6", "12:00:00"))
    assert table.rows[1] == ("10.6", "12:00:00")


@pytest_twisted.ensureDeferred
async def test_merge_without_snapshot_and_values(server: TlcpServer, make_client: Any) -> None:
    server.data.update("item1", {"a": "old"})
    c = make_client()
    await c.client.create_session()
    table = Table(c.client, mode=MODE_MERGE, item_ids=["item1"], schema=["a", "b"],
                  row_factory=lambda values: dict(zip("ab", values, strict=True)))
    rows: list[Any] = []
    table.on_update(lambda item, row: rows.append(row))
    await table.when_subscribed()
    tricky = ["", None, "#", "$", "^3", "a|b", "100%", "x,y", "ünïcødé ☃ 😀", "+ plus"]
    for value in tricky:
        server.data.update("item1", {"a": value, "b": "const"})
    await wait_until(lambda: len(rows) == len(tricky))
    assert [r["a"] for r in rows] == tricky
    assert all(r["b"] == "const" for r in rows)


@pytest_twisted.ensureDeferred
async def test_distinct_snapshot_and_eos(server: TlcpServer, make_client: Any) -> None:
    for i in range(3):
        server.data.update("news", {"headline": f"h{i}"})
    c = make_client()
    await c.client.create_session()
    table = Table(c.client, mode=MODE_DISTINCT, item_ids=["news"], schema=["headline"],
                  snapshot=True)
    updates = collect(table)
    eos: list[int] = []
    table.on_end_of_snapshot(eos.append)
    await wait_until(lambda: eos == [1])
    assert [u["headline"] for u in updates] == ["h0", "h1", "h2"]
    assert all(u.is_snapshot for u in updates)
    server.data.update("news", {"headline": "live"})
    await wait_until(lambda: len(updates) == 4)
    assert not updates[-1].is_snapshot


@pytest_twisted.ensureDeferred
async def test_raw_mode(server: TlcpServer, make_client: Any) -> None:
    c = make_client()
    await c.client.create_session()
    table = Table(c.client, mode=MODE_RAW, item_ids=["ticks"], schema=["v"])
    updates = collect(table)
    await table.when_subscribed()
    for i in range(5):
        server.data.update("ticks", {"v": str(i)})
    await wait_until(lambda: len(updates) == 5)
    assert [u["v"] for u in updates] == ["0", "1", "2", "3", "4"]


@pytest_twisted.ensureDeferred
async def test_command_mode_key_table(server: TlcpServer, make_client: Any) -> None:
    server.data.command("portfolio", "AAPL", "ADD", {"qty": "10"})
    c = make_client()
    await c.client.create_session()
    table = Table(c.client, mode=MODE_COMMAND, item_ids=["portfolio"],
                  schema=["key", "command", "qty"], snapshot=True)
    updates = collect(table)
    eos: list[int] = []
    table.on_end_of_snapshot(eos.append)
    await wait_until(lambda: eos == [1])
    assert [(u.key, u.command, u["qty"]) for u in updates] == [("AAPL", "ADD", "10")]
    server.data.command("portfolio", "MSFT", "ADD", {"qty": "5"})
    server.data.command("portfolio", "AAPL", "UPDATE", {"qty": "12"})
    server.data.command("portfolio", "MSFT", "DELETE")
    await wait_until(lambda: len(updates) == 4)
    assert [(u.key, u.command, u["qty"]) for u in updates[1:]] == [
        ("MSFT", "ADD", "5"), ("AAPL", "UPDATE", "12"), ("MSFT", "DELETE", None)]
    assert updates[2].changed_fields == {"command": "UPDATE", "qty": "12"}
    assert dict(table.command_rows(1)) == {"AAPL": ("AAPL", "UPDATE", "12")}


@pytest_twisted.ensureDeferred
async def test_table_created_before_session(server: TlcpServer, make_client: Any) -> None:
    server.data.update("item1", {"f": "x"})
    c = make_client()
    table = Table(c.client, item_ids=["item1"], schema=["f"], snapshot=True)
    updates = collect(table)
    await c.client.create_session()
    await wait_until(lambda: len(updates) == 1)
    assert updates[0]["f"] == "x"


@pytest_twisted.ensureDeferred
async def test_loop_rebind_mid_burst_loses_nothing(make_client: Any) -> None:
    srv = TlcpServer(keepalive_millis=1000)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    try:
        # content_length applies to HTTP streams (a WebSocket has no response length).
        c = Client(srv.url, content_length=3000, forced_transport="HTTP")
        await c.client.create_session()
        got = await stream_sequence(c.client, srv, 400, pause_every=50)
        await task.deferLater(reactor, 0.1, lambda: None)
        assert got == [str(i) for i in range(400)]
        assert [s.continuity for s in c.sessions].count("preserved") >= 3
        assert c.errors == []
        await c.client.destroy()
    finally:
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_delete_stops_updates(server: TlcpServer, make_client: Any) -> None:
    c = make_client()
    await c.client.create_session()
    table = Table(c.client, mode=MODE_RAW, item_ids=["x"], schema=["v"])
    updates = collect(table)
    await table.when_subscribed()
    server.data.update("x", {"v": "1"})
    await wait_until(lambda: len(updates) == 1)
    await table.delete()
    assert table.state == "deleted"
    server.data.update("x", {"v": "2"})
    await task.deferLater(reactor, 0.1, lambda: None)
    assert len(updates) == 1
    assert table not in c.client.tables


@pytest_twisted.ensureDeferred
async def test_destroy_closes_everything(server: TlcpServer) -> None:
    c = Client(server.url)
    await c.client.create_session()
    table = Table(c.client, item_ids=["x"], schema=["v"])
    await table.when_subscribed()
    await c.client.destroy()
    assert c.client.state == STATE_DISCONNECTED
    assert table.state == "deleted"
    await wait_until(lambda: all(s.closed for s in server.sessions.values()))


@pytest_twisted.ensureDeferred
async def test_conerr_surfaces_code_and_text(server: TlcpServer) -> None:
    server.refuse_sessions(1, "User/password check failed")
    c = Client(server.url)
    with pytest.raises(ServerError) as info:
        await c.client.create_session("DEMO", "user", "pa55word")
    assert info.value.code == 1
    assert info.value.message == "User/password check failed"
    assert info.value.tag == "CONERR"
    assert "pa55word" not in str(info.value)
    assert c.client.state == STATE_DISCONNECTED
    await c.client.destroy()


@pytest_twisted.ensureDeferred
async def test_protocol_240_on_request(server: TlcpServer, make_client: Any) -> None:
    c = make_client(protocol_version="2.4.0")
    await c.client.create_session()
    (session,) = server.sessions.values()
    assert not session.is_v25


@pytest_twisted.ensureDeferred
async def test_dropped_stream_recovers_without_loss(server: TlcpServer, make_client: Any) -> None:
    c = make_client()
    await c.client.create_session()
    table = Table(c.client, mode=MODE_RAW, item_ids=["seq"], schema=["n"])
    got: list[str | None] = []
    table.on_update(lambda item, row: got.append(row[0]))
    await table.when_subscribed()
    for i in range(50):
        server.data.update("seq", {"n": str(i)})
    await wait_until(lambda: len(got) == 50)
    # Drop while the server holds an open stream for the session: a poll can be between
    # LOOP and the next bind, when there is nothing to drop (and so nothing to recover).
    # Checked and dropped in one reactor turn; every interleaving is in test_client_memory.
    await wait_until(lambda: any(s.is_bound for s in server.sessions.values()))
    server.drop_streams()
    for i in range(50, 100):
        server.data.update("seq", {"n": str(i)})
    await wait_until(lambda: len(got) >= 100)
    await defer.succeed(None)
    assert got == [str(i) for i in range(100)]
    assert c.sessions[-1].continuity == "recovered"


# test_http_polling_end_to_end (idle_timeout=0.2) runs on a Clock in test_client_memory.py.
