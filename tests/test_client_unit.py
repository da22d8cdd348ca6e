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


class RecordingStub:
    """A StubTreq that notes the path of every request."""

    def __init__(self, stub: StubTreq) -> None:
        self.stub = stub
        self.paths: list[str] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        self.paths.append(url.rsplit("/", 1)[-1])
        return self.stub.request(method, url, **kwargs)

    def flush(self) -> None:
        self.stub.flush()


def test_reverse_heartbeats_are_sent_when_idle() -> None:
    clock = Clock()
    server = TlcpServer(clock=clock, keepalive_millis=5000)
    stub = RecordingStub(StubTreq(server.resource()))
    client = LsClient("http://127.0.0.1:9", reactor=clock, http_client=stub,
                      reverse_heartbeat_interval=2.0)
    client.create_session()
    stub.flush()
    assert client.state == STATE_CONNECTED
    assert stub.paths == ["create_session.txt"]
    clock.advance(1.9)
    stub.flush()
    assert "heartbeat.txt" not in stub.paths
    clock.advance(0.1)
    stub.flush()
    assert stub.paths.count("heartbeat.txt") == 1
    # A control request counts as activity: it pushes the next heartbeat back.
    clock.advance(1.0)
    Table(client, mode=MODE_MERGE, item_ids=["a"], schema=["v"])
    stub.flush()
    clock.advance(1.5)
    stub.flush()
    assert stub.paths.count("heartbeat.txt") == 1
    clock.advance(0.5)
    stub.flush()
    assert stub.paths.count("heartbeat.txt") == 2
    for _ in range(5):
        clock.advance(2.0)
        stub.flush()
    assert stub.paths.count("heartbeat.txt") == 7
    assert client.state == STATE_CONNECTED
    client.destroy()
    stub.flush()
    clock.advance(1)
    assert [c for c in clock.getDelayedCalls() if "txlightstreamer" in repr(c.func)] == []
