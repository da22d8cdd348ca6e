"""
Messages at the edges (found by review, each failing before its fix): a text no UTF-8
holds, a message aborted with its session, a resent message answered REQERR 33, a huge
MSGFAIL 39 count, and a message sent between two polls.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from txlightstreamer import MODE_RAW, Table
from txlightstreamer.errors import MessageDiscarded, SessionLostError
from txlightstreamer.protocol import MsgFail
from txlightstreamer.testing import TlcpServer

from .memory import MemoryNetwork


def _setup(transport: str, **server_args: Any) -> tuple[Any, Any, MemoryNetwork]:
    clock = Clock()
    server = TlcpServer(clock=clock, keepalive_millis=1000, **server_args)
    net = MemoryNetwork(clock)
    net.serve_tlcp(server)
    client = net.client(forced_transport=transport, retry_delay=0.5)
    net.wait(client.create_session())
    return client, server, net


@pytest.mark.parametrize("transport", ["WS-STREAMING", "HTTP-STREAMING"])
def test_a_text_without_utf8_is_refused_and_blocks_nothing(transport: str) -> None:
    # A lone surrogate stuck at the head of the control queue and failed every later call.
    client, server, net = _setup(transport)
    with pytest.raises(ValueError, match="not valid Unicode"):
        client.send_message("bad \ud800")
    done: list[Any] = []
    client.send_message("hello").addBoth(done.append)
    table = Table(client, mode=MODE_RAW, item_ids=["x"], schema=["v"])
    net.advance(3)
    assert len(done) == 1 and not isinstance(done[0], Failure)
    assert table.state == "active"
    assert len(client._control._queue) == 0


def test_a_request_that_cannot_be_written_fails_alone() -> None:
    client, server, net = _setup("HTTP-STREAMING")

    def unwritable(req_id: int) -> Any:
        raise ValueError("cannot be written")

    bad: list[Any] = []
    client._control.send(unwritable).addErrback(bad.append)
    done: list[Any] = []
    client.send_message("hello").addBoth(done.append)
    net.advance(3)
    assert bad[0].check(ValueError)
    assert len(done) == 1 and not isinstance(done[0], Failure)


@pytest.mark.parametrize("transport", ["WS-STREAMING", "HTTP-STREAMING"])
def test_a_message_aborted_with_its_session_is_not_sent_in_the_next(transport: str) -> None:
    # It was told lost, then sent again in the new session: an application retrying a
    # payment told lost paid twice, and the outcome broke the stream (AlreadyCalledError).
    client, server, net = _setup(transport)
    results: list[Any] = []
    client.send_message("pay 100", enqueue_while_disconnected=True).addBoth(results.append)
    first_id = client.session_id
    server.faults.refuse_recovery(20, "session gone")
    net.reset()  # the message is lost on the wire
    net.advance(5)
    assert len(results) == 1 and results[0].check(SessionLostError)
    later = [s for sid, s in server.sessions.items() if sid != first_id]
    assert later  # the new session
    assert not [text for s in later for _, _, text in s.messages if text == "pay 100"]


@pytest.mark.parametrize("transport", ["WS-STREAMING", "HTTP-STREAMING"])
def test_a_resent_message_answered_reqerr_33_gets_its_outcome(transport: str) -> None:
    slow: list[Deferred[str]] = []

    def handler(session: Any, text: str, sequence: Any) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        slow.append(d)
        return d

    client, server, net = _setup(transport, message_handler=handler)
    results: list[Any] = []
    client.send_message("order 42", sequence="orders").addBoth(results.append)
    net.pump_until(lambda: any(s.messages for s in server.sessions.values()))
    net.reset()  # the REQOK is lost with the connection; the server has the message
    net.advance(2)  # recovered: the msg goes again and is answered REQERR 33
    slow[0].callback("accepted")
    net.advance(2)
    assert results == ["accepted"]


def test_a_huge_msgfail_39_count_takes_only_the_waiting_messages() -> None:
    client, server, net = _setup("HTTP-STREAMING")
    messages = client._messages
    out = messages.prepare("a", "orders", None)
    messages.build(out, 1)
    failed: list[Any] = []
    out.deferred.addErrback(failed.append)
    assert messages.outcome(MsgFail("orders", 1, 39, str(10**12)))
    assert failed[0].check(MessageDiscarded)


def test_a_message_sent_between_two_polls_goes_with_the_next() -> None:
    # Refused as "not connected" while the status said CONNECTED:HTTP-POLLING.
    clock = Clock()
    server = TlcpServer(clock=clock, keepalive_millis=1000)
    net = MemoryNetwork(clock)
    net.serve_tlcp(server)
    client = net.client(forced_transport="HTTP-POLLING", retry_delay=1.0, idle_timeout=0.5)
    net.wait(client.create_session())
    outcomes: list[Any] = []
    session = client._session
    bind = session._start_bind

    def bind_then_send() -> None:
        bind()
        assert client.status == "CONNECTED:HTTP-POLLING"
        client.send_message("hello").addBoth(outcomes.append)
        session._start_bind = bind  # type: ignore[method-assign]

    session._start_bind = bind_then_send  # type: ignore[method-assign]
    net.advance(3)
    assert len(outcomes) == 1 and not isinstance(outcomes[0], Failure)
