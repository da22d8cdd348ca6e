"""
Faults of the network: broken streams, a server that goes away and comes back, and
shutdown that never hangs. On a `Clock` over the in-memory network of `tests.memory` (real
HTTP agent and site, no socket); the prompt shutdown is also checked on a real socket.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from txlightstreamer import MODE_RAW, STATE_CONNECTED, LsClient, Table
from txlightstreamer.testing import TlcpServer

from .memory import MemoryNetwork
from .support import wait_until

TRANSPORTS = [None, "HTTP-STREAMING", "HTTP-POLLING"]


@pytest.fixture(autouse=True)
def _seeded() -> None:
    # The first retry after a break waits a random fraction of 0.1 s: the same one every run.
    random.seed(14)


def _memory(**server_args: Any) -> tuple[Clock, MemoryNetwork, TlcpServer]:
    clock = Clock()
    server = TlcpServer(clock=clock, **server_args)
    net = MemoryNetwork(clock)
    net.serve_tlcp(server)
    return clock, net, server


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t or "default")
def test_twenty_breaks_during_a_burst_lose_nothing(transport: str | None) -> None:
    # The replay buffer holds the whole burst, so recovery can never be refused; a refused
    # recovery is tested on its own. (On a clock and in memory: the same run every time.)
    clock, net, server = _memory(keepalive_millis=1000, recovery_log_size=20_000)
    client = net.client(forced_transport=transport)
    sessions: list[str] = []
    client.on_session(lambda info: sessions.append(info.continuity))
    lost: list[tuple[int, int]] = []
    try:
        net.wait(client.create_session())
        items = [f"item{i}" for i in range(5)]
        table = Table(client, mode=MODE_RAW, item_ids=items, schema=["seq"])
        table.on_overflow(lambda item, count: lost.append((item, count)))
        got: dict[int, list[int]] = defaultdict(list)
        table.on_update(lambda item, row: got[item].append(int(row[0])))
        net.wait(table.when_subscribed())
        total, breaks = 10_000, 20
        per_break = total // breaks
        for n in range(total):
            server.data.update(items[n % 5], {"seq": str(n)})
            if n % per_break == per_break // 2:
                net.flush()
                server.drop_streams()
            if n % 10 == 0:
                net.advance(0.001, step=0.001)
        net.run_until(lambda: sum(map(len, got.values())) >= total, limit=60)
        net.advance(0.2)
        for pos in range(1, 6):
            expected = list(range(pos - 1, total, 5))
            assert got[pos] == expected
        assert lost == []
        # Some drops land while the client is already reconnecting; every one that broke a
        # live stream was recovered, never replaced.
        assert sessions[0] == "new"
        assert set(sessions[1:]) <= {"recovered"}
        if transport != "HTTP-POLLING":
            # (Polls are short: most drops find no connection open to break.)
            assert len(sessions) > breaks // 2
    finally:
        net.wait(client.destroy())


@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t or "default")
def test_server_vanishes_and_comes_back_on_the_same_port(transport: str | None) -> None:
    clock, net, first = _memory(keepalive_millis=500)
    client = net.client(retry_delay=0.5, session_recovery_timeout=1.0,
                        forced_transport=transport)
    sessions: list[str] = []
    client.on_session(lambda info: sessions.append(info.continuity))
    try:
        net.wait(client.create_session())
        table = Table(client, mode=MODE_RAW, item_ids=["x"], schema=["v"])
        got: list[Any] = []
        table.on_update(lambda item, row: got.append(row[0]))
        net.wait(table.when_subscribed())
        first.data.update("x", {"v": "before"})
        net.run_until(lambda: got == ["before"])
        first.stop()
        net.stop()  # the same address refuses connections from now on
        net.advance(1.5)
        second = TlcpServer(clock=clock, keepalive_millis=500)
        net.serve_tlcp(second)
        net.run_until(lambda: client.state == STATE_CONNECTED and table.is_active, limit=30)
        second.data.update("x", {"v": "after"})
        net.run_until(lambda: got == ["before", "after"])
        assert sessions[-1] == "replaced"
    finally:
        net.wait(client.destroy())


class _Hanging(Resource):
    """Answers nothing, ever (until the test ends): a server that stopped responding."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render(self, request: Any) -> Any:
        self.requests.append(request)
        return NOT_DONE_YET


@pytest_twisted.ensureDeferred
async def test_destroy_is_prompt_when_the_server_never_answers() -> None:
    hanging = _Hanging()
    port = reactor.listenTCP(0, Site(hanging), interface="127.0.0.1")
    client = LsClient(f"http://127.0.0.1:{port.getHost().port}")
    try:
        client.create_session()
        await wait_until(lambda: len(hanging.requests) == 1)
        started = reactor.seconds()
        done: Deferred[None] = client.destroy()
        await done
        # A bound on what we wait for, not a timing assertion: destroy must not wait for
        # the server's answer (there is none).
        assert reactor.seconds() - started < 1.0
        assert [c for c in reactor.getDelayedCalls() if "txlightstreamer" in repr(c.func)] == []
    finally:
        for request in hanging.requests:
            if not request.finished and request.channel is not None:
                request.channel.transport.abortConnection()
        await port.stopListening()


def test_destroy_is_prompt_when_the_server_never_answers_on_a_clock() -> None:
    clock = Clock()
    net = MemoryNetwork(clock)
    hanging = _Hanging()
    url = net.serve(hanging)
    client = net.client(url)
    client.create_session()
    net.run_until(lambda: len(hanging.requests) == 1)
    started = clock.seconds()
    done: Deferred[None] = client.destroy()
    net.flush()
    # Not a moment of simulated time passes: destroy never waits for the server.
    assert done.called and clock.seconds() == started
    net.flush()
    assert [c for c in clock.getDelayedCalls() if "txlightstreamer" in repr(c.func)] == []
