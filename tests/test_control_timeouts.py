"""
Answers that never come (issue 15, item 3, control side), on a `Clock` over the in-memory
network of `tests.memory`, on every transport: a server that loses one ``REQERR``,
``REQOK`` or ``SUBOK``. A lost answer is detected on the clock, the request is sent again
when that is harmless (new ``LS_reqId``, same session) or reported; no table stays
``subscribing`` forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from txlightstreamer import MODE_RAW, LsClient, Table
from txlightstreamer._control import ANSWER_TIMEOUT, MAX_SENDS
from txlightstreamer._registry import MAX_SUBSCRIBES, SUBOK_TIMEOUT
from txlightstreamer.errors import ProtocolError, RequestTimeoutError, SubscriptionError
from txlightstreamer.testing import DataModel, TlcpServer
from txlightstreamer.testing import _control as server_control
from txlightstreamer.testing import _session as server_session

from .memory import MemoryNetwork

TRANSPORTS = [None, "HTTP-STREAMING", "HTTP-POLLING", "WS-POLLING"]


class Swallow:
    """Makes the test server lose the next ``count`` lines of a tag (its answers or data)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.left: dict[str, float] = {}
        self.lost: list[str] = []
        self.sent: list[str] = []
        encode = server_control.encode_line
        make_body = server_control.body
        emit = server_session.Session._emit_data

        def encode_line(tag: str, *args: Any) -> str:
            line = encode(tag, *args)
            self.sent.append(line)
            return "" if self._lose(tag, line) else line

        def body(*lines: str) -> bytes:
            return make_body(*(line for line in lines if line))

        def emit_data(session: Any, line: str) -> None:
            if not self._lose(line.split(",", 1)[0], line):
                emit(session, line)

        monkeypatch.setattr(server_control, "encode_line", encode_line)
        monkeypatch.setattr(server_control, "body", body)
        monkeypatch.setattr(server_session.Session, "_emit_data", emit_data)

    def next(self, tag: str, count: float = 1) -> None:
        self.left[tag] = count

    def _lose(self, tag: str, line: str) -> bool:
        if self.left.get(tag, 0) <= 0:
            return False
        self.left[tag] -= 1
        self.lost.append(line)
        return True


class Setup:
    def __init__(self, transport: str | None) -> None:
        self.clock = Clock()
        data = DataModel(modes={"merge_only": ["MERGE"]})
        self.server = TlcpServer(clock=self.clock, keepalive_millis=1000, data=data)
        self.net = MemoryNetwork(self.clock)
        self.net.serve_tlcp(self.server)
        self.client: LsClient = self.net.client(forced_transport=transport)
        self.errors: list[Exception] = []
        self.client.on_error(self.errors.append)
        self.net.wait(self.client.create_session())
        self.net.run_until(lambda: self.client.status.startswith("CONNECTED:"))

    def table(self, item: str, mode: str = MODE_RAW) -> Table:
        table = Table(self.client, mode=mode, item_ids=[item], schema=["n"])
        self.got: list[str | None] = []
        table.on_update(lambda _pos, row: self.got.append(row[0]))
        return table


@pytest.fixture(params=TRANSPORTS, ids=lambda t: t or "default")
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    s = Setup(request.param)
    yield s
    s.net.wait(s.client.destroy())
    assert s.clock.getDelayedCalls() == [] or all(
        not call.active() for call in s.clock.getDelayedCalls())


def test_a_lost_reqerr_is_asked_again_and_reported(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, swallow = setup, Swallow(monkeypatch)
    swallow.next("REQERR")
    table = s.table("merge_only")  # RAW is refused: REQERR 24
    start = s.clock.seconds()
    s.net.run_until(lambda: table.state == "failed", limit=ANSWER_TIMEOUT * MAX_SENDS)
    assert len(swallow.lost) == 1
    assert s.clock.seconds() - start <= ANSWER_TIMEOUT + 1
    (error,) = s.errors
    assert isinstance(error, SubscriptionError) and error.code == 24
    # The same add went twice, with two request ids: one answer lost, one delivered.
    refusals = [line for line in swallow.sent if line.startswith("REQERR,")]
    assert len(refusals) == 2 and refusals[0].split(",")[1] != refusals[1].split(",")[1]


def test_a_lost_reqok_of_an_idempotent_request_is_sent_again(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, swallow = setup, Swallow(monkeypatch)
    swallow.next("REQOK")
    done = s.client.set_max_bandwidth(40)
    s.net.run_until(lambda: done.called, limit=ANSWER_TIMEOUT + 1)
    s.net.wait(done)
    assert len(swallow.lost) == 1 and s.errors == []
    assert s.client.bandwidth == "40"


def test_a_request_never_answered_is_reported(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, swallow = setup, Swallow(monkeypatch)
    swallow.next("REQOK", count=float("inf"))
    done = s.client.set_max_bandwidth(40)
    failures: list[Any] = []
    done.addErrback(failures.append)
    s.net.run_until(lambda: done.called, limit=ANSWER_TIMEOUT * MAX_SENDS + 1)
    assert len(swallow.lost) == MAX_SENDS
    (failure,) = failures
    if s.client.status.startswith("CONNECTED:WS"):
        # On a stream the silence itself is the error, and the application is told.
        assert isinstance(failure.value, RequestTimeoutError)
        assert s.errors == [failure.value]
        assert f"sent {MAX_SENDS} times" in str(failure.value)
    else:
        # An HTTP reply without the answer: a protocol error, for the caller.
        assert isinstance(failure.value, ProtocolError)
        assert "no reply" in str(failure.value)


def test_a_lost_subok_subscribes_the_table_again(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, swallow = setup, Swallow(monkeypatch)
    swallow.next("SUBOK")
    table = s.table("seq")
    s.net.advance(SUBOK_TIMEOUT - 1, step=0.5)
    assert table.state == "subscribing" and len(swallow.lost) == 1
    first = table.sub_id
    s.net.run_until(lambda: table.state == "active", limit=2 + ANSWER_TIMEOUT)
    assert table.sub_id != first
    s.server.data.update("seq", {"n": "1"})
    s.net.run_until(lambda: s.got == ["1"])
    assert s.errors == []
    # The first subscription, which the server still had, was dropped.
    s.net.run_until(lambda: all(len(sess.subscriptions) == 1
                                for sess in s.server.sessions.values()))


def test_a_subok_that_never_comes_fails_the_table(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, swallow = setup, Swallow(monkeypatch)
    swallow.next("SUBOK", count=float("inf"))
    table = s.table("seq")
    subscribed = table.when_subscribed()
    failures: list[Any] = []
    subscribed.addErrback(failures.append)
    table_errors: list[Exception] = []
    table.on_error(table_errors.append)
    s.net.run_until(lambda: table.state == "failed",
                    limit=MAX_SUBSCRIBES * (SUBOK_TIMEOUT + ANSWER_TIMEOUT), step=0.5)
    assert len(swallow.lost) == MAX_SUBSCRIBES
    (error,) = s.errors
    assert isinstance(error, RequestTimeoutError) and "no SUBOK" in str(error)
    assert table_errors == [error] and failures[0].value is error


class _StubSession:
    """Just enough of a bound `Session` for a `ControlChannel`."""

    bound = True
    session_id = "S1"
    request_limit = 50_000
    stream = None
    base_url = "http://server.test"

    class options:  # noqa: N801
        retry_delay = 4.0


class _StuckTransport:
    """Control replies that never complete (e.g. headers came, the body never ends)."""

    def __init__(self) -> None:
        self.sent: list[list[Any]] = []
        self.replies: list[Deferred[list[bytes]]] = []

    def send_control(self, base_url: str, session_id: str,
                     requests: list[Any]) -> Deferred[list[bytes]]:
        self.sent.append(requests)
        self.replies.append(Deferred())
        return self.replies[-1]


def test_a_stuck_http_reply_does_not_block_the_queue() -> None:
    from txlightstreamer._control import ControlChannel
    from txlightstreamer.protocol import constrain

    clock = Clock()
    transport = _StuckTransport()
    errors: list[Exception] = []
    channel = ControlChannel(_StubSession(), transport, clock,  # type: ignore[arg-type]
                             max_pending=10, report=errors.append, sent=lambda: None)
    first = channel.send(lambda req_id: constrain(req_id, max_bandwidth=10))
    second = channel.send(lambda req_id: constrain(req_id, max_bandwidth=20))
    assert len(transport.sent) == 1  # one batch at a time
    clock.advance(ANSWER_TIMEOUT)
    assert transport.replies[0].called  # given up (cancelled), not left pending
    clock.advance(_StubSession.options.retry_delay)
    assert len(transport.sent) == 2  # sent again, with a new request id
    ids = [[r.get("LS_reqId") for r in batch] for batch in transport.sent]
    # One constrain a batch: a batch's requests run concurrently (tlcp.md §2.2).
    assert ids[0] != ids[1] and len(ids[1]) == 1
    transport.replies[1].callback([f"REQOK,{ids[1][0]}".encode()])
    assert len(transport.sent) == 3  # then the second
    last = transport.sent[2][0].get("LS_reqId")
    transport.replies[2].callback([f"REQOK,{last}".encode()])
    assert first.called and second.called and errors == []


@pytest.mark.parametrize("transport", [None, "HTTP-STREAMING"], ids=lambda t: t or "default")
def test_answers_are_not_missed_while_we_pause_reading(transport: str | None) -> None:
    # Back-pressure (pause_reading) holds the answers unread: that silence is ours.
    s = Setup(transport)
    try:
        s.client.pause_reading()
        table = s.table("seq")
        bandwidth = s.client.set_max_bandwidth(40)
        s.net.advance(MAX_SUBSCRIBES * (SUBOK_TIMEOUT + ANSWER_TIMEOUT) + 10, step=0.5)
        assert table.state == "subscribing" and s.errors == []
        s.client.resume_reading()
        s.net.run_until(lambda: table.state == "active" and bandwidth.called)
        assert s.errors == [] and len(s.server.sessions) == 1
    finally:
        s.net.wait(s.client.destroy())
