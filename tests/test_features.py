"""
Messages, live reconfiguration, bandwidth and async iteration, over loopback HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from txlightstreamer import MODE_MERGE, MODE_RAW, LsClient, SessionLostError, Table
from txlightstreamer.errors import MessageDenied, MessageDiscarded, MessageError
from txlightstreamer.testing import MessageError as ServerMessageError
from txlightstreamer.testing import TlcpServer

from .support import wait_until


def handler(session: Any, text: str, sequence: str | None) -> str | None:
    if text.startswith("late"):
        raise ServerMessageError(38, "skipped by timeout")
    if text.startswith("gap"):
        raise ServerMessageError(39, "2")  # this one and its predecessor
    if text.startswith("deny"):
        raise ServerMessageError(-5, "not allowed: " + text)
    if text.startswith("fail"):
        raise ServerMessageError(34, "could not process")
    if text == "silent":
        return None
    return "echo:" + text


@pytest_twisted.async_yield_fixture
async def connected() -> AsyncIterator[tuple[TlcpServer, LsClient]]:
    server = TlcpServer(keepalive_millis=1000, message_handler=handler)
    await server.listen(reactor, port=0, interface="127.0.0.1")
    client = LsClient(server.url)
    await client.create_session()
    yield server, client
    await client.destroy()
    await server.stop()


@pytest_twisted.ensureDeferred
async def test_message_outcomes(connected: tuple[TlcpServer, LsClient]) -> None:
    server, client = connected
    assert await client.send_message("hello") == "echo:hello"
    assert await client.send_message("hi", sequence="orders") == "echo:hi"
    with pytest.raises(MessageDenied) as denied:
        await client.send_message("deny me", sequence="orders")
    assert (denied.value.code, denied.value.message) == (-5, "not allowed: deny me")
    with pytest.raises(MessageError) as failed:
        await client.send_message("fail please")
    assert failed.value.code == 34
    assert not isinstance(failed.value, (MessageDenied, MessageDiscarded))
    with pytest.raises(MessageDiscarded) as late:
        await client.send_message("late one", sequence="S", delay_timeout=0.5)
    assert late.value.code == 38


@pytest_twisted.ensureDeferred
async def test_msgfail_39_discards_the_preceding_ones_too(
    connected: tuple[TlcpServer, LsClient],
) -> None:
    server, client = connected
    never: defer.Deferred[str] = defer.Deferred()
    # The first message of the sequence hangs on the server; the second is answered with
    # MSGFAIL 39 "2", which covers both progressives.
    server.message_handler = lambda s, t, q: never if t == "first" else handler(s, t, q)
    first = client.send_message("first", sequence="G")
    second = client.send_message("gap", sequence="G")
    for d in (first, second):
        with pytest.raises(MessageDiscarded) as info:
            await d
        assert info.value.code == 39


@pytest_twisted.ensureDeferred
async def test_sequence_numbering_is_per_sequence(
    connected: tuple[TlcpServer, LsClient],
) -> None:
    server, client = connected
    results = await defer.gatherResults([
        client.send_message(f"m{i}", sequence="A" if i % 2 else "B") for i in range(6)
    ])
    assert results == [f"echo:m{i}" for i in range(6)]
    (session,) = server.sessions.values()
    progs: dict[str | None, list[int | None]] = {}
    for sequence, prog, _ in session.messages:
        progs.setdefault(sequence, []).append(prog)
    assert progs == {"A": [1, 2, 3], "B": [1, 2, 3]}


@pytest_twisted.ensureDeferred
async def test_message_while_disconnected() -> None:
    server = TlcpServer(message_handler=handler)
    await server.listen(reactor, port=0, interface="127.0.0.1")
    client = LsClient(server.url)
    try:
        with pytest.raises(SessionLostError):
            await client.send_message("too early")
        queued = client.send_message("queued", enqueue_while_disconnected=True)
        await client.create_session()
        assert await queued == "echo:queued"
    finally:
        await client.destroy()
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_messages_pending_at_destroy_are_aborted(
    connected: tuple[TlcpServer, LsClient],
) -> None:
    server, client = connected
    never: defer.Deferred[str] = defer.Deferred()
    server.message_handler = lambda s, t, q: never
    pending = client.send_message("slow")
    await task.deferLater(reactor, 0.05, lambda: None)
    await client.destroy()
    with pytest.raises(SessionLostError):
        await pending


@pytest_twisted.ensureDeferred
async def test_reconf_reflects_conf(connected: tuple[TlcpServer, LsClient]) -> None:
    server, client = connected
    table = Table(client, mode=MODE_MERGE, item_ids=["a"], schema=["v"], max_frequency=5)
    confs: list[tuple[str, bool]] = []
    table.on_config(lambda freq, filtered: confs.append((freq, filtered)))
    await table.when_subscribed()
    await wait_until(lambda: len(confs) == 1)
    await table.set_max_frequency(2.5)
    await wait_until(lambda: len(confs) == 2)
    assert confs[-1] == ("2.5", True)
    await table.set_max_frequency("unlimited")
    await wait_until(lambda: len(confs) == 3)
    assert confs[-1] == ("unlimited", True)
    assert table.max_frequency_granted == "unlimited"


def test_reconf_refused_locally_for_unfiltered() -> None:
    client = LsClient("http://127.0.0.1:9")
    table = Table(client, mode=MODE_RAW, item_ids="a", schema="v", max_frequency="unfiltered")
    with pytest.raises(ValueError, match="unfiltered"):
        table.set_max_frequency(3)


@pytest.mark.parametrize(("options", "refused"), [
    ({"max_frequency": 0}, "max_frequency .*'unlimited'"),  # py-lightstreamer's "no limit"
    ({"max_frequency": -2}, "max_frequency"),
    ({"max_frequency": "fast"}, "max_frequency"),
    ({"buffer_size": 0}, "buffer_size must be a positive integer or 'unlimited'"),
    ({"buffer_size": 2.5}, "buffer_size"),
])
def test_limits_refused_locally(options: dict[str, Any], refused: str) -> None:
    # Found by a review of the migration guides: these went to the server, which refused
    # them with a REQERR after the subscription was sent.
    client = LsClient("http://127.0.0.1:9")
    with pytest.raises(ValueError, match=refused):
        Table(client, mode=MODE_MERGE, item_ids="a", schema="v", **options)
    for fine in ({"max_frequency": 0.5}, {"max_frequency": "unlimited"},
                 {"buffer_size": 1}, {"buffer_size": "unlimited"}):
        Table(client, mode=MODE_MERGE, item_ids="a", schema="v", **fine)


@pytest_twisted.ensureDeferred
async def test_bandwidth_constrain(connected: tuple[TlcpServer, LsClient]) -> None:
    server, client = connected
    seen: list[str] = []
    client.on_bandwidth(seen.append)
    await client.set_max_bandwidth(40.5)
    await wait_until(lambda: seen[-1:] == ["40.5"])
    await client.set_max_bandwidth("unlimited")
    await wait_until(lambda: seen[-1:] == ["unlimited"])
    with pytest.raises(ValueError):
        client.set_max_bandwidth(-1)


@pytest_twisted.ensureDeferred
async def test_async_iteration_in_a_deferred_coroutine(
    connected: tuple[TlcpServer, LsClient],
) -> None:
    server, client = connected
    table = Table(client, mode=MODE_RAW, item_ids=["t"], schema=["v"])
    updates = table.updates()
    await table.when_subscribed()
    for i in range(5):
        server.data.update("t", {"v": str(i)})
    seen = []
    async for update in updates:
        seen.append(update["v"])
        if len(seen) == 5:
            break
    assert seen == ["0", "1", "2", "3", "4"]


@pytest_twisted.ensureDeferred
async def test_async_iteration_ends_when_table_deleted(
    connected: tuple[TlcpServer, LsClient],
) -> None:
    server, client = connected
    table = Table(client, mode=MODE_RAW, item_ids=["t"], schema=["v"])
    await table.when_subscribed()
    seen: list[str | None] = []

    async def consume() -> None:
        async for update in table.updates():
            seen.append(update["v"])

    done = defer.ensureDeferred(consume())
    server.data.update("t", {"v": "x"})
    await wait_until(lambda: seen == ["x"])
    await table.delete()
    await done
    assert seen == ["x"]


@pytest_twisted.ensureDeferred
async def test_slow_consumer_drops_oldest_and_counts(
    connected: tuple[TlcpServer, LsClient],
) -> None:
    server, client = connected
    table = Table(client, mode=MODE_RAW, item_ids=["t"], schema=["v"])
    queue = table.updates(max_queue=10)
    await table.when_subscribed()
    for i in range(25):
        server.data.update("t", {"v": str(i)})
    await wait_until(lambda: queue.dropped == 15)
    first = await queue.__anext__()
    assert first["v"] == "15"


@pytest_twisted.ensureDeferred
async def test_async_iteration_in_an_asyncio_task(
    connected: tuple[TlcpServer, LsClient],
) -> None:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        pytest.skip("needs --reactor=asyncio")
    server, client = connected
    table = Table(client, mode=MODE_RAW, item_ids=["t"], schema=["v"])
    await table.when_subscribed()

    async def consume() -> list[str | None]:
        seen = []
        async for update in table.updates():
            seen.append(update["v"])
            if len(seen) == 3:
                break
        return seen

    future = asyncio.ensure_future(consume())
    for i in range(3):
        server.data.update("t", {"v": str(i)})
    assert await defer.Deferred.fromFuture(future) == ["0", "1", "2"]


@pytest_twisted.ensureDeferred
async def test_two_level_command(connected: tuple[TlcpServer, LsClient]) -> None:
    from txlightstreamer import MODE_COMMAND

    server, client = connected
    server.data.update("AAPL", {"last_price": "190.1", "volume": "10"})
    server.data.update("MSFT", {"last_price": "410.0", "volume": "20"})
    server.data.command("portfolio", "AAPL", "ADD", {"qty": "5"})
    table = Table(client, mode=MODE_COMMAND, item_ids=["portfolio"],
                  schema=["key", "command", "qty"], snapshot=True,
                  second_level_schema=["last_price", "volume"])
    errors: list[tuple[str, Exception]] = []
    table.on_second_level_error(lambda key, error: errors.append((key, error)))
    updates = collect(table)
    await wait_until(lambda: table.command_rows(1).get("AAPL", ())[3:] == ("190.1", "10"))
    server.data.command("portfolio", "MSFT", "ADD", {"qty": "1"})
    await wait_until(lambda: table.command_rows(1).get("MSFT", ())[3:] == ("410.0", "20"))
    server.data.update("AAPL", {"last_price": "191.0"})
    await wait_until(lambda: table.command_rows(1)["AAPL"][3] == "191.0")
    last = updates[-1]
    assert last.key == "AAPL" and last.command == "UPDATE"
    assert last.changed_fields == {"last_price": "191.0"}
    assert last.as_dict() == {"key": "AAPL", "command": "UPDATE", "qty": "5",
                              "last_price": "191.0", "volume": "10"}
    server.data.command("portfolio", "MSFT", "DELETE")
    await wait_until(lambda: "MSFT" not in table.command_rows(1))
    # The key's second-level subscription is gone: its updates no longer arrive.
    count = len(updates)
    server.data.update("MSFT", {"last_price": "1"})
    await task.deferLater(reactor, 0.1, lambda: None)
    assert len(updates) == count
    server.data.command("portfolio", "123", "ADD", {"qty": "1"})
    await wait_until(lambda: len(errors) == 1)
    assert errors[0][0] == "123" and errors[0][1].code == 14  # type: ignore[attr-defined]
    live = [s for sess in server.sessions.values() for s in getattr(sess, "subscriptions", {})]
    assert len(live) in (0, 2)  # the portfolio and AAPL, when the server exposes them


def collect(table: Table) -> list[Any]:
    updates: list[Any] = []
    table.on_item_update(updates.append)
    return updates
