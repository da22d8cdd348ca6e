"""
Transports at the edges (found by review, each failing before its fix): an HTTP control
answer may take the 10 s a control request waits, every HTTP connection is dropped when
its request times out, its stream stops or its client is destroyed, and thousands of
requests queued between two WebSocket polls go out in order, with no recursion.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET

from txlightstreamer import MODE_MERGE, MODE_RAW, Table
from txlightstreamer._session import State

from .memory import MemoryNetwork
from .test_faults import Run
from .test_transport_edges import _Scripted


def _open(net: MemoryNetwork) -> list[Any]:
    return [c for c in net.connections if not c.closed and not c.client.disconnecting]


def _streaming(held: list[Any], clock: Clock, answer_after: float | None = None) -> Any:
    """A server whose stream says CONOK and whose control ``add`` is held (or late)."""

    def handler(name: str, params: dict[str, str], request: Any) -> Any:
        if name in ("create_session", "bind_session"):
            request.write(b"CONOK,S1,50000,5000,*\r\n")
            return NOT_DONE_YET
        if name == "control" and params.get("LS_op") == "add":
            held.append(request)
            if answer_after is not None:
                def answer() -> None:
                    if not request._disconnected:
                        request.write(f"REQOK,{params['LS_reqId']}\r\n".encode())
                        request.finish()
                clock.callLater(answer_after, answer)
            return NOT_DONE_YET
        return ["REQOK"]

    return _Scripted(handler)


# -- 1. HTTP control requests are cut at connect_timeout, not the answer timeout ----------

def test_an_http_control_answer_may_take_the_documented_10_s() -> None:
    # docs/howto/tuning.rst: "A control request waits 10 s for its answer"; over HTTP a
    # server that sends nothing until its answer is ready was cut at 4 s (retry_delay)
    # and the add was sent again while the server still handled the first.
    clock = Clock()
    net = MemoryNetwork(clock)
    adds: list[Any] = []
    client = net.client(net.serve(_streaming(adds, clock, answer_after=6.0)),
                        forced_transport="HTTP-STREAMING")
    net.wait(client.create_session())
    table = Table(client, mode=MODE_MERGE, item_ids=["a"], schema=["v"])
    net.advance(9.0, step=0.05)
    assert len(adds) == 1, f"the add was sent {len(adds)} times"
    assert table.state != "failed"


# -- 2. HTTP connections left open ----------------------------------------------------------

def _an_add_held() -> tuple[Clock, MemoryNetwork, Any, list[Any]]:
    """A session whose first ``add`` the server holds: a slow Metadata Adapter."""
    clock = Clock()
    net = MemoryNetwork(clock)
    held: list[Any] = []
    client = net.client(net.serve(_streaming(held, clock)), forced_transport="HTTP-STREAMING")
    net.wait(client.create_session())
    Table(client, mode=MODE_MERGE, item_ids=["a"], schema=["v"])
    net.run_until(lambda: len(held) == 1)
    return clock, net, client, held


def test_destroy_closes_an_http_control_request_in_flight() -> None:
    clock, net, client, _ = _an_add_held()
    net.wait(client.destroy())
    assert not _open(net), "destroy() fired with a control connection still open"
    assert not [c for c in clock.getDelayedCalls() if c.active()]


def test_a_timed_out_control_reply_drops_its_connection() -> None:
    _, net, _, held = _an_add_held()
    held[0].write(b"REQ")  # headers and part of the reply, then nothing
    net.advance(12.0, step=0.1)  # the client gave up on it after 10 s (tlcp.md §7.2 item 4)
    assert held[0].channel is None or held[0].channel.transport.disconnected


def test_an_error_page_that_never_ends_does_not_keep_its_connection() -> None:
    clock = Clock()
    net = MemoryNetwork(clock)

    def handler(name: str, params: dict[str, str], request: Any) -> Any:
        request.setResponseCode(503)
        request.write(b"Service Unavailable")  # and the page never ends
        return NOT_DONE_YET

    client = net.client(net.serve(_Scripted(handler)), forced_transport="HTTP-STREAMING",
                        retry_delay=1.0)
    client.create_session()
    net.advance(20.0, step=0.05)
    assert len(_open(net)) <= 1, f"{len(_open(net))} connections open"


# -- 3. Recursion in ControlChannel.flush over WebSocket ----------------------------------

def test_requests_queued_between_two_polls_are_all_sent() -> None:
    run = Run(forced_transport="WS-POLLING", polling_interval=1.0, idle_timeout=0.5)
    run.create()
    client, net = run.client, run.net
    net.run_until(lambda: not client._session.bound)  # between two polls
    done: list[Any] = []
    tables = []
    for i in range(300):  # subscribe an item, and tell the server so: msg, control, msg...
        tables.append(Table(client, mode=MODE_RAW, item_ids=[f"i{i}"], schema=["v"]))
        client.send_message(f"subscribed i{i}").addBoth(done.append)
    net.advance(5.0, step=0.05)
    assert len(done) == 300 and not [d for d in done if isinstance(d, Failure)]
    assert all(t.state == "active" for t in tables)


# -- 4. destroy() between two polls -------------------------------------------------------

@pytest.mark.parametrize("transport", ["HTTP-POLLING", "WS-POLLING"])
def test_destroy_between_two_polls_ends_the_session_on_the_server(transport: str) -> None:
    # The session was only told while bound: between two polls (most of a polling
    # client's time) it lived on, on the server, until its own timeout.
    run = Run(forced_transport=transport, polling_interval=1.0, idle_timeout=0.5)
    run.create()
    run.until(lambda: run.client._session.state is State.BINDING)
    assert not run.client._session.bound
    sessions = [s for s in run.server.sessions.values() if not s.closed]
    assert len(sessions) == 1
    run.close()
    assert sessions[0].closed
