"""
`LsClient` with injected collaborators: `treq.testing.StubTreq` in front of the test
server's resource and a `Clock`, so timers are driven by hand and nothing touches a socket.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock

from txlightstreamer import (
    MODE_MERGE,
    STATE_CONNECTED,
    STATE_DISCONNECTED,
    ConnectionState,
    Continuity,
    LsClient,
    Status,
    Table,
    TableState,
)
from txlightstreamer.testing import TlcpServer
from txlightstreamer.transport import TransportOptions


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


# -- the public API around the client (issue 14) ---------------------------------------------

def test_states_and_statuses_are_enums_equal_to_the_old_strings() -> None:
    client, _, stub, clock = make()
    assert client.state is ConnectionState.DISCONNECTED
    assert client.status is Status.DISCONNECTED
    states: list[Any] = []
    statuses: list[Any] = []
    client.on_connection_state(states.append)
    client.on_status(lambda status, reason: statuses.append(status))
    d = client.create_session()
    stub.flush()
    assert d.result.continuity is Continuity.NEW and d.result.continuity == "new"
    assert client.state is STATE_CONNECTED and client.state == "CONNECTED"
    assert client.status.is_connected and client.status == "CONNECTED:HTTP-STREAMING"
    assert all(isinstance(s, Status) for s in statuses)
    assert states == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
    table = Table(client, mode=MODE_MERGE, item_ids=["a"], schema=["v"])
    stub.flush()
    assert table.state is TableState.ACTIVE and table.state == "active"
    client.destroy()
    stub.flush()
    clock.advance(1)


def test_callbacks_can_be_removed() -> None:
    client, server, stub, clock = make()
    seen: list[Any] = []

    @client.on_status
    def status(status: Status, reason: str | None) -> None:
        seen.append(status)

    client.create_session()
    stub.flush()
    assert seen
    client.remove_callback(status)
    client.remove_callback(status)  # twice is harmless
    count = len(seen)
    table = Table(client, mode=MODE_MERGE, item_ids=["a"], schema=["v"])
    rows: list[Any] = []
    updates: list[Any] = []
    assert table.on_update(lambda item, row: rows.append(row)) is not None
    on_item = table.on_item_update(updates.append)
    stub.flush()
    server.data.update("a", {"v": "1"})
    stub.flush()
    table.remove_callback(on_item)
    server.data.update("a", {"v": "2"})
    stub.flush()
    assert rows == [("1",), ("2",)]
    assert [u["v"] for u in updates] == ["1"]
    client.destroy()
    stub.flush()
    clock.advance(1)
    assert len(seen) == count


def test_transport_options_are_copied_not_changed() -> None:
    options = TransportOptions()
    before = dataclasses.asdict(options)
    client = LsClient("http://127.0.0.1:9", reactor=Clock(), http_client=object(),
                      protocol_version="2.4.0", retry_delay=7.0, forced_transport="HTTP",
                      transport_options=options)
    assert dataclasses.asdict(options) == before
    assert options.cookie_jar is None and options.websocket is None
    client.destroy()


def test_retry_policy_reaches_the_session() -> None:
    def policy(attempt: int) -> float:
        return 1.5

    client = LsClient("http://127.0.0.1:9", reactor=Clock(), http_client=object(),
                      retry_policy=policy)
    assert client._session.options.retry_policy is policy
    client.destroy()


def test_session_callbacks_are_not_client_methods() -> None:
    for name in ("session_started", "session_rebound", "session_interrupted",
                 "session_closed", "status_changed", "notification", "line_received",
                 "update", "error"):
        assert not hasattr(LsClient, name), name


def test_table_signature_has_no_private_parameter() -> None:
    params = inspect.signature(Table).parameters
    assert list(params)[0] == "client"
    assert not [name for name in params if name.startswith("_")]


def test_every_public_exception_is_in_errors() -> None:
    import txlightstreamer
    from txlightstreamer import _messages, errors

    for name in ("MessageDenied", "MessageDiscarded", "MessageError"):
        assert getattr(errors, name) is getattr(_messages, name) is getattr(txlightstreamer, name)
    public = [name for name in txlightstreamer.__all__
              if isinstance(getattr(txlightstreamer, name), type)
              and issubclass(getattr(txlightstreamer, name), Exception)]
    assert public and all(getattr(errors, name) for name in public)
