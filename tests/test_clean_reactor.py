"""
Leak checks: after `LsClient.destroy()` (and the server's stop), the reactor holds no
timer, socket or connection that the test created.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from txlightstreamer import MODE_MERGE, LsClient, Table
from txlightstreamer.testing import TlcpServer

TRANSPORTS = [None, "HTTP-STREAMING", "HTTP-POLLING", "WS-POLLING"]


def reactor_state() -> tuple[set[Any], set[Any]]:
    """Pending timers and registered readers/writers of the running reactor."""
    calls = {c for c in reactor.getDelayedCalls() if c.active()}
    selectables = set(reactor.getReaders()) | set(reactor.getWriters())
    return calls, selectables


async def assert_leaves_nothing(scenario: Callable[[], Awaitable[None]]) -> None:
    calls_before, selectables_before = reactor_state()
    await scenario()
    # Sockets closed by either side need a turn or two of the reactor to unregister.
    for _ in range(50):
        calls, selectables = reactor_state()
        if not (calls - calls_before) and not (selectables - selectables_before):
            return
        await task.deferLater(reactor, 0.02, lambda: None)
    calls, selectables = reactor_state()
    assert calls - calls_before == set()
    assert selectables - selectables_before == set()


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t or "default")
@pytest_twisted.ensureDeferred
async def test_session_with_tables_and_messages(transport: str | None) -> None:
    async def scenario() -> None:
        server = TlcpServer(keepalive_millis=1000)
        await server.listen(reactor, port=0, interface="127.0.0.1")
        client = LsClient(server.url, reverse_heartbeat_interval=1.0,
                          forced_transport=transport)
        await client.create_session()
        table = Table(client, mode=MODE_MERGE, item_ids=["a"], schema=["v"], snapshot=True)
        await table.when_subscribed()
        server.data.update("a", {"v": "1"})
        await client.send_message("hello")
        await client.destroy()
        await server.stop()

    await assert_leaves_nothing(scenario)


@pytest_twisted.ensureDeferred
async def test_destroy_while_reconnecting() -> None:
    async def scenario() -> None:
        server = TlcpServer(keepalive_millis=1000)
        await server.listen(reactor, port=0, interface="127.0.0.1")
        client = LsClient(server.url, retry_delay=0.2)
        await client.create_session()
        await server.stop()
        await task.deferLater(reactor, 0.3, lambda: None)
        await client.destroy()

    await assert_leaves_nothing(scenario)


@pytest_twisted.ensureDeferred
async def test_destroy_before_connecting() -> None:
    async def scenario() -> None:
        client = LsClient("http://127.0.0.1:9")
        Table(client, item_ids=["a"], schema=["v"])
        await client.destroy()

    await assert_leaves_nothing(scenario)
