"""
The fault-injection API of the test server (``TlcpServer.faults``), driving a real
``LsClient``: each scripted fault, and how the client comes through it.

The client and the server run on one `Clock` over the in-memory network of
`tests.memory` (the real HTTP agent and `twisted.web` site, no socket), so the stall and
retry timeouts are exact and a loaded machine cannot change the outcome. The last tests
look at the bytes a fault puts on a real loopback socket.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from txlightstreamer import MODE_RAW, LsClient, Table
from txlightstreamer.errors import (
    LightstreamerError,
    ProtocolError,
    ServerError,
    TransportError,
)
from txlightstreamer.testing import CLIENT_ID, TlcpServer

from .memory import MemoryNetwork
from .support import wait_until

#: Simulated seconds a condition may take before the test fails.
TIMEOUT = 10.0


class Run:
    """A server and a client on one clock and in-memory network, and what the client reported."""

    def __init__(self, server_args: dict[str, Any] | None = None, **client_args: Any) -> None:
        self.clock = Clock()
        self.server = TlcpServer(clock=self.clock, **(server_args or {"keepalive_millis": 1000}))
        self.net = MemoryNetwork(self.clock)
        self.net.serve_tlcp(self.server)
        self.client_args: dict[str, Any] = {
            "forced_transport": "HTTP-STREAMING",
            "retry_delay": 0.5,
        }
        self.client_args.update(client_args)
        self.client: LsClient = self.net.client(**self.client_args)
        self.statuses: list[str] = []
        self.continuity: list[str] = []
        self.errors: list[LightstreamerError] = []
        self.got: list[int] = []
        self.table: Table | None = None
        self.client.on_status(lambda status, reason: self.statuses.append(status))
        self.client.on_session(lambda info: self.continuity.append(info.continuity))
        self.client.on_error(self.errors.append)

    def until(self, predicate: Callable[[], object], limit: float = TIMEOUT) -> None:
        """Advance simulated time until ``predicate`` holds (fail after ``limit`` s)."""
        self.net.run_until(predicate, limit)

    def sleep(self, seconds: float) -> None:
        self.net.advance(seconds)

    def create(self) -> Any:
        """Create the session: what `create_session` fired with (its failure is raised)."""
        return self.net.wait(self.client.create_session(), TIMEOUT)

    def subscribe(self) -> None:
        self.create()
        self.table = Table(self.client, mode=MODE_RAW, item_ids=["x"], schema=["v"])
        self.table.on_update(lambda item, row: self.got.append(int(row[0])))
        self.net.wait(self.table.when_subscribed(), TIMEOUT)

    def publish(self, numbers: range) -> None:
        for n in numbers:
            self.server.data.update("x", {"v": str(n)})

    def requests(self, name: str) -> int:
        return sum(1 for seen, _ in self.server.received if seen == name)

    def fired(self, name: str) -> int:
        return sum(1 for seen, _ in self.server.faults.fired if seen == name)

    def close(self) -> None:
        self.net.wait(self.client.destroy(), TIMEOUT)
        self.net.flush()
        leftover = [c for c in self.clock.getDelayedCalls()
                    if "txlightstreamer" in repr(c.func) and "testing" not in repr(c.func)]
        assert leftover == [], "the destroyed client left timers behind"


def resubscribed(run: Run) -> None:
    """After a replacement: run until the new session has the table's subscription."""
    assert run.table is not None
    run.net.wait(run.table.when_subscribed(), TIMEOUT)
    run.until(lambda: any(s.subscriptions for s in run.server.sessions.values() if s.is_bound))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    # The first retry after a break waits a random fraction of 0.1 s: the same one every run.
    random.seed(14)


@pytest.fixture
def run() -> Iterator[Run]:
    r = Run()
    yield r
    r.close()


@pytest.fixture
def stall_run() -> Iterator[Run]:
    r = Run({"keepalive_millis": 300}, stalled_timeout=0.2, reconnect_timeout=0.3)
    yield r
    r.close()


def _recovers_from(run: Run, arm: Callable[[], None], fault: str) -> None:
    """Arm a stream fault mid-burst: the session is recovered, each update seen once."""
    run.subscribe()
    run.publish(range(10))
    run.until(lambda: len(run.got) == 10)
    arm()
    run.publish(range(10, 40))
    run.until(lambda: run.fired(fault) == 1)
    run.until(lambda: "recovered" in run.continuity and len(run.got) >= 40)
    run.publish(range(40, 50))
    run.until(lambda: len(run.got) >= 50)
    run.sleep(0.05)
    assert run.got == list(range(50))
    assert run.continuity == ["new", "recovered"]
    assert run.errors == []


def test_close_after_n_notifications_is_recovered(run: Run) -> None:
    _recovers_from(run, lambda: run.server.faults.close_after(5), "close_after")
    # The stream broke right after the fifth update: the client bound again to recover.
    assert run.requests("bind_session") == 1


def test_close_after_zero_resets_open_streams_now(run: Run) -> None:
    run.subscribe()
    run.server.faults.close_after(0)
    assert run.fired("close_after") == 1
    run.publish(range(10))
    run.until(lambda: "recovered" in run.continuity and len(run.got) >= 10)
    assert run.got == list(range(10))


def test_close_mid_line_is_recovered(run: Run) -> None:
    _recovers_from(run, run.server.faults.close_mid_line, "close_mid_line")


def test_truncated_chunk_is_recovered(run: Run) -> None:
    _recovers_from(run, run.server.faults.truncate_next_chunk, "truncate_next_chunk")


def test_stall_goes_stalled_then_recovers(stall_run: Run) -> None:
    run = stall_run
    run.subscribe()
    run.publish(range(5))
    run.until(lambda: len(run.got) == 5)
    run.server.faults.stall()
    run.publish(range(5, 15))  # held by the stalled stream, kept for recovery
    run.until(lambda: "STALLED" in run.statuses)
    assert run.got == list(range(5))
    run.until(lambda: "recovered" in run.continuity and len(run.got) >= 15)
    run.server.faults.unstall()  # nothing left to resume: the client dropped that stream
    run.publish(range(15, 20))
    run.until(lambda: len(run.got) >= 20)
    run.sleep(0.05)
    assert run.got == list(range(20))
    assert run.continuity == ["new", "recovered"]


def test_unstall_before_the_client_gives_up_sends_what_was_held(run: Run) -> None:
    run.subscribe()
    run.server.faults.stall()
    run.publish(range(10))
    run.sleep(0.2)
    assert run.got == []  # nothing written on the stalled stream
    run.server.faults.unstall()
    run.until(lambda: len(run.got) >= 10)
    run.publish(range(10, 15))
    run.until(lambda: len(run.got) >= 15)
    assert run.got == list(range(15))
    assert run.continuity == ["new"]


def test_refused_recovery_replaces_the_session(run: Run) -> None:
    run.subscribe()
    run.publish(range(5))
    run.until(lambda: len(run.got) == 5)
    run.server.faults.refuse_recovery()
    run.server.faults.close_after(0)
    run.until(lambda: "replaced" in run.continuity)
    assert run.fired("refuse_recovery") >= 1
    resubscribed(run)
    run.publish(range(5, 10))
    run.until(lambda: len(run.got) >= 10)
    # RAW has no snapshot: the updates delivered before are not delivered again.
    assert run.got == list(range(10))
    assert run.continuity == ["new", "replaced"]


def test_recovery_is_accepted_with_prog_by_default(run: Run) -> None:
    run.subscribe()
    run.publish(range(3))
    run.until(lambda: len(run.got) == 3)
    run.server.faults.refuse_recovery()
    run.server.faults.accept_recovery()
    run.server.drop_streams()
    run.publish(range(3, 8))  # logged while unbound, re-sent after PROG
    (session,) = run.server.sessions.values()
    run.until(lambda: "recovered" in run.continuity and len(run.got) >= 8)
    assert run.got == list(range(8))
    assert session.progressive >= 8
    assert run.fired("refuse_recovery") == 0


def test_delete_while_the_session_is_away_fires_at_once_and_reaches_the_server(
    run: Run,
) -> None:
    # Found by a docs review: with the server unreachable, delete() waited for it forever.
    run.subscribe()
    assert run.table is not None
    run.publish(range(3))
    run.until(lambda: len(run.got) == 3)
    run.server.faults.fail_next(503, count=1000)  # every bind fails: the session stays away
    run.server.faults.close_after(0)
    run.until(lambda: run.fired("fail_next") >= 2)
    deleted = run.table.delete()
    assert deleted.called and run.table.state == "deleted"
    assert run.table not in run.client.tables
    run.publish(range(3, 6))  # kept for the recovery, for the deleted subscription
    run.server.faults.reset()
    run.until(lambda: "recovered" in run.continuity)
    (session,) = run.server.sessions.values()
    run.until(lambda: not session.subscriptions)  # the deletion reached the server
    run.sleep(0.5)
    assert run.got == [0, 1, 2]
    assert [type(e) for e in run.errors] == [TransportError]  # the 503s, reported once


def test_create_session_again_after_a_refusal(run: Run) -> None:
    # Found by a review of the migration guides: py-lightstreamer and the official SDK
    # connect again after a session ended for good; create_session refused to.
    run.server.refuse_sessions(1, "User/password check failed")
    with pytest.raises(ServerError) as refused:
        run.net.wait(run.client.create_session(), TIMEOUT)
    assert refused.value.code == 1
    table = Table(run.client, mode=MODE_RAW, item_ids=["x"], schema=["v"])
    table.on_update(lambda item, row: run.got.append(int(row[0])))
    run.server.accept_sessions()
    run.create()
    run.net.wait(table.when_subscribed(), TIMEOUT)
    run.publish(range(3))
    run.until(lambda: len(run.got) == 3)
    assert run.continuity == ["new"]


def test_create_session_again_after_the_server_ended_the_session(run: Run) -> None:
    run.subscribe()
    assert run.table is not None
    run.publish(range(2))
    run.until(lambda: len(run.got) == 2)
    run.server.faults.end_streams(32)
    run.until(lambda: run.client.state == "DISCONNECTED")
    assert [e.code for e in run.errors if isinstance(e, ServerError)] == [32]
    run.create()  # a new session, where the table is subscribed again
    run.net.wait(run.table.when_subscribed(), TIMEOUT)
    run.publish(range(2, 4))
    run.until(lambda: len(run.got) == 4)
    assert run.got == [0, 1, 2, 3]
    assert run.continuity == ["new", "new"]


def test_http_500_on_create_is_retried(run: Run) -> None:
    run.server.faults.fail_next(500, count=2)
    run.subscribe()
    assert run.fired("fail_next") == 2
    assert run.requests("create_session") == 3
    run.publish(range(5))
    run.until(lambda: len(run.got) == 5)
    assert run.continuity == ["new"]


def test_http_500_on_recovery_bind_is_retried(run: Run) -> None:
    run.subscribe()
    run.publish(range(5))
    run.until(lambda: len(run.got) == 5)
    run.server.faults.fail_next(503)
    run.server.faults.close_after(0)
    run.publish(range(5, 10))
    run.until(lambda: run.fired("fail_next") == 1)
    run.until(lambda: "recovered" in run.continuity and len(run.got) >= 10)
    assert run.got == list(range(10))
    assert run.requests("bind_session") == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, b"Not Found\r\n"), (200, b"<html><body>Welcome to nginx!</body></html>\r\n")],
    ids=["404", "garbage"],
)
def test_unusable_answer_is_fatal_without_a_retry_storm(
    run: Run, status: int, body: bytes
) -> None:
    if status == 200:
        run.server.faults.garbage_next(body, count=100)
    else:
        run.server.faults.fail_next(status, body, count=100)
    with pytest.raises(LightstreamerError) as caught:
        run.create()
    run.sleep(1.0)  # longer than retry_delay: a retry would show here
    assert run.requests("create_session") == 1
    assert run.statuses[-1].startswith("DISCONNECTED")
    assert run.errors, "the fatal error reaches on_error"
    if status == 404:
        assert isinstance(caught.value, TransportError)
        assert not caught.value.retryable


def test_conerr_next_on_create_is_reported(run: Run) -> None:
    run.server.faults.conerr_next(60, "License limit reached")
    with pytest.raises(ServerError) as caught:
        run.create()
    assert caught.value.code == 60
    assert run.fired("conerr_next") == 1
    run.sleep(0.3)
    assert run.requests("create_session") == 1


def test_retryable_conerr_on_bind_then_new_session(run: Run) -> None:
    run.subscribe()
    run.server.faults.conerr_next(20, "Session not found")
    run.server.faults.close_after(0)
    run.until(lambda: "replaced" in run.continuity)
    assert run.fired("conerr_next") == 1
    resubscribed(run)
    run.publish(range(3))
    run.until(lambda: len(run.got) >= 3)
    assert run.got == list(range(3))


def test_end_streams_with_a_fatal_code(run: Run) -> None:
    run.subscribe()
    run.server.faults.end_streams(32, "Closed by the administrator")
    run.until(lambda: any(isinstance(e, ServerError) for e in run.errors))
    (error,) = [e for e in run.errors if isinstance(e, ServerError)]
    assert error.code == 32
    run.until(lambda: run.statuses[-1].startswith("DISCONNECTED"))
    assert run.server.sessions == {}


def test_end_streams_with_a_retryable_code_replaces_the_session(run: Run) -> None:
    run.subscribe()
    run.server.faults.end_streams(48, "Session rebalanced")
    run.until(lambda: "replaced" in run.continuity)
    resubscribed(run)
    run.publish(range(3))
    run.until(lambda: len(run.got) >= 3)
    assert run.got == list(range(3))


def test_legacy_sync_error_line_replaces_the_session(run: Run) -> None:
    run.subscribe()
    run.publish(range(3))
    run.until(lambda: len(run.got) == 3)
    run.server.faults.send_line_to_all("SYNC ERROR")
    assert run.fired("send_line_to_all") == 1
    # Reported, then a new session with every table subscribed again.
    run.until(lambda: any(isinstance(e, ProtocolError) for e in run.errors))
    run.until(lambda: "replaced" in run.continuity)
    resubscribed(run)
    run.publish(range(3, 6))
    run.until(lambda: len(run.got) >= 6)
    run.sleep(0.05)
    assert run.got == list(range(6))


def test_legacy_sync_error_answer_to_create_is_fatal(run: Run) -> None:
    run.server.faults.garbage_next(b"SYNC ERROR\r\n")
    with pytest.raises(ProtocolError):
        run.create()
    run.sleep(0.3)
    assert run.requests("create_session") == 1
    assert run.statuses[-1].startswith("DISCONNECTED")


def test_reset_disarms_every_fault(run: Run) -> None:
    faults = run.server.faults
    faults.close_after(1)
    faults.close_mid_line()
    faults.truncate_next_chunk()
    faults.fail_next(500)
    faults.conerr_next(60)
    faults.refuse_recovery()
    faults.reset()
    run.subscribe()
    run.publish(range(20))
    run.until(lambda: len(run.got) >= 20)
    assert run.got == list(range(20))
    assert faults.fired == []
    assert run.continuity == ["new"]


# -- the bytes on a real socket ------------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def real_server() -> Any:
    """A `TlcpServer` listening on 127.0.0.1 (on the reactor's clock)."""
    srv = TlcpServer(keepalive_millis=1000)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    yield srv
    await srv.stop()


class _Raw(Protocol):
    """Sends one raw HTTP request and keeps every byte of the answer."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.data = b""
        self.reason: Failure | None = None

    def connectionMade(self) -> None:  # noqa: N802
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.reason = reason


async def _raw_stream(server: TlcpServer, arm: Callable[[], None]) -> tuple[bytes, Failure]:
    """Open a raw HTTP stream, subscribe, arm a fault, publish: the bytes and the ending."""
    assert server.url is not None
    port = int(server.url.rsplit(":", 1)[1])
    body = f"LS_cid={CLIENT_ID.replace(' ', '%20')}&LS_polling=false".encode()
    request = (
        b"POST /lightstreamer/create_session.txt?LS_protocol=TLCP-2.5.0 HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    raw = _Raw(request)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    await connectProtocol(endpoint, raw)
    await wait_until(lambda: len(server.sessions) == 1 and b"CONOK" in raw.data,
                     timeout=TIMEOUT)
    (session,) = server.sessions.values()
    session._op_add(
        {"LS_subId": "1", "LS_mode": "RAW", "LS_group": "x", "LS_schema": "v"})
    arm()
    server.data.update("x", {"v": "first-notification-value"})
    server.data.update("x", {"v": "second"})
    await wait_until(lambda: raw.reason is not None, timeout=TIMEOUT)
    assert raw.reason is not None
    return raw.data, raw.reason


@pytest_twisted.ensureDeferred
async def test_close_mid_line_writes_half_a_line_on_the_wire(real_server: TlcpServer) -> None:
    data, _ = await _raw_stream(real_server, real_server.faults.close_mid_line)
    # Whole chunks, the last one holding half of the update line, then the end.
    tail = data.rsplit(b"\r\n", 2)
    assert data.count(b"U,1,1,") == 1
    assert b"first-notification-value" not in data
    assert b"U,1,1,first" in data and not tail[-1]
    assert b"second" not in data
    assert real_server.sessions  # the session survives, unbound, for recovery


@pytest_twisted.ensureDeferred
async def test_truncated_chunk_on_the_wire(real_server: TlcpServer) -> None:
    data, _ = await _raw_stream(real_server, real_server.faults.truncate_next_chunk)
    line = b"U,1,1,first-notification-value\r\n"
    header = b"%x\r\n" % len(line)
    assert data.endswith(header + line[: len(line) // 2])


@pytest_twisted.ensureDeferred
async def test_close_after_flushes_what_was_written(real_server: TlcpServer) -> None:
    data, _ = await _raw_stream(real_server, lambda: real_server.faults.close_after(1))
    # SUBOK and CONF went out before the fault was armed; the first update is the
    # last thing sent, and reaches the client whole before the reset.
    assert data.endswith(b"U,1,1,first-notification-value\r\n\r\n")
    assert b"second" not in data
    (session,) = real_server.sessions.values()
    assert not session.is_bound and session.progressive == 4
