"""
`LsClient` with injected collaborators: `treq.testing.StubTreq` in front of the test
server's resource and a `Clock`, so timers are driven by hand and nothing touches a socket.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock

from txlightstreamer import MODE_MERGE, STATE_CONNECTED, STATE_DISCONNECTED, LsClient, Table
from txlightstreamer.testing import TlcpServer


def make(**kwargs: Any) -> tuple[LsClient, TlcpServer, StubTreq, Clock]:
    clock = Clock()
    server = TlcpServer(clock=clock, keepalive_millis=5000)
    stub = StubTreq(server.resource())
    client = LsClient("http://127.0.0.1:9", reactor=clock, http_client=stub, **kwargs)
    return client, server, stub, clock


def test_stub_treq_session_and_updates() -> None:
    client, server, stub, clock = make()
    d = client.create_session("DEMO", "user", "secret")
    stub.flush()
    info = d.result
    assert info.continuity == "new"
    assert client.state == STATE_CONNECTED
    server.data.update("item1", {"price": "1"})
    table = Table(client, mode=MODE_MERGE, item_ids=["item1"], schema=["price"], snapshot=True)
    rows: list[Any] = []
    table.on_update(lambda item, row: rows.append(row))
    stub.flush()
    server.data.update("item1", {"price": "2"})
    stub.flush()
    assert rows == [("1",), ("2",)]
    done = client.destroy()
    stub.flush()
    clock.advance(1)
    stub.flush()
    assert done.called
    assert client.state == STATE_DISCONNECTED


def test_reverse_heartbeats_are_sent_when_idle() -> None:
    client, server, stub, clock = make(reverse_heartbeat_interval=2.0)
    client.create_session()
    stub.flush()
    (session,) = server.sessions.values()
    before = getattr(session, "heartbeats", None)
    for _ in range(3):
        clock.advance(2.0)
        stub.flush()
    assert client.state == STATE_CONNECTED
    if before is not None:
        assert session.heartbeats >= before + 3
