"""
The fault-injection API of the test server (``TlcpServer.faults``), driving a real
``LsClient`` over loopback HTTP: each scripted fault, and how the client comes through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from txlightstreamer import MODE_RAW, LsClient, Table
from txlightstreamer.errors import (
    LightstreamerError,
    ProtocolError,
    ServerError,
    TransportError,
)
from txlightstreamer.testing import CLIENT_ID, TlcpServer

TIMEOUT = 10.0


async def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` every 10 ms; fail after ``timeout`` seconds."""
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await task.deferLater(reactor, 0.01, lambda: None)
        waited += 0.01


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


class Run:
    """A server on 127.0.0.1, a client and what the client reported."""

    def __init__(self, server: TlcpServer, **client_args: Any) -> None:
        self.server = server
        self.client_args: dict[str, Any] = {
            "forced_transport": "HTTP-STREAMING",
            "retry_delay": 0.5,
        }
        self.client_args.update(client_args)
        self.client: LsClient | None = None
        self.statuses: list[str] = []
        self.continuity: list[str] = []
        self.errors: list[LightstreamerError] = []
        self.got: list[int] = []
        self.table: Table | None = None

    async def start(self) -> None:
        await self.server.listen(reactor, port=0, interface="127.0.0.1")
        assert self.server.url is not None
        client = LsClient(self.server.url, **self.client_args)
        client.on_status(lambda status, reason: self.statuses.append(status))
        client.on_session(lambda info: self.continuity.append(info.continuity))
        client.on_error(self.errors.append)
        self.client = client

    async def subscribe(self) -> None:
        assert self.client is not None
        await self.client.create_session()
        self.table = Table(self.client, mode=MODE_RAW, item_ids=["x"], schema=["v"])
        self.table.on_update(lambda item, row: self.got.append(int(row[0])))
        await self.table.when_subscribed()

    def publish(self, numbers: range) -> None:
        for n in numbers:
            self.server.data.update("x", {"v": str(n)})

    def requests(self, name: str) -> int:
        return sum(1 for seen, _ in self.server.received if seen == name)

    def fired(self, name: str) -> int:
        return sum(1 for seen, _ in self.server.faults.fired if seen == name)

    async def close(self) -> None:
        try:
            if self.client is not None:
                await self.client.destroy()
        finally:
            await self.server.stop()


async def resubscribed(run: Run) -> None:
    """After a replacement: wait until the new session has the table's subscription."""
    assert run.table is not None
    await run.table.when_subscribed()
    await wait_until(lambda: any(
        s.subscriptions for s in run.server.sessions.values() if s.is_bound))


@pytest_twisted.async_yield_fixture
async def run() -> Any:
    r = Run(TlcpServer(keepalive_millis=1000))
    await r.start()
    yield r
    await r.close()


@pytest_twisted.async_yield_fixture
async def stall_run() -> Any:
    r = Run(TlcpServer(keepalive_millis=300), stalled_timeout=0.2, reconnect_timeout=0.3)
    await r.start()
    yield r
    await r.close()


async def _recovers_from(run: Run, arm: Callable[[], None], fault: str) -> None:
    """Arm a stream fault mid-burst: the session is recovered, each update seen once."""
    await run.subscribe()
    run.publish(range(10))
    await wait_until(lambda: len(run.got) == 10)
    arm()
    run.publish(range(10, 40))
    await wait_until(lambda: run.fired(fault) == 1)
    await wait_until(lambda: "recovered" in run.continuity and len(run.got) >= 40)
    run.publish(range(40, 50))
    await wait_until(lambda: len(run.got) >= 50)
    await sleep(0.05)
    assert run.got == list(range(50))
    assert run.continuity == ["new", "recovered"]
    assert run.errors == []


@pytest_twisted.ensureDeferred
async def test_close_after_n_notifications_is_recovered(run: Run) -> None:
    await _recovers_from(run, lambda: run.server.faults.close_after(5), "close_after")
    # The stream broke right after the fifth update: the client bound again to recover.
    assert run.requests("bind_session") == 1


@pytest_twisted.ensureDeferred
async def test_close_after_zero_resets_open_streams_now(run: Run) -> None:
    await run.subscribe()
    run.server.faults.close_after(0)
    assert run.fired("close_after") == 1
    run.publish(range(10))
    await wait_until(lambda: "recovered" in run.continuity and len(run.got) >= 10)
    assert run.got == list(range(10))


@pytest_twisted.ensureDeferred
async def test_close_mid_line_is_recovered(run: Run) -> None:
    await _recovers_from(run, run.server.faults.close_mid_line, "close_mid_line")


@pytest_twisted.ensureDeferred
async def test_truncated_chunk_is_recovered(run: Run) -> None:
    await _recovers_from(run, run.server.faults.truncate_next_chunk, "truncate_next_chunk")


@pytest_twisted.ensureDeferred
async def test_stall_goes_stalled_then_recovers(stall_run: Run) -> None:
    run = stall_run
    await run.subscribe()
    run.publish(range(5))
    await wait_until(lambda: len(run.got) == 5)
    run.server.faults.stall()
    run.publish(range(5, 15))  # held by the stalled stream, kept for recovery
    await wait_until(lambda: "STALLED" in run.statuses)
    assert run.got == list(range(5))
    await wait_until(lambda: "recovered" in run.continuity and len(run.got) >= 15)
    run.server.faults.unstall()  # nothing left to resume: the client dropped that stream
    run.publish(range(15, 20))
    await wait_until(lambda: len(run.got) >= 20)
    await sleep(0.05)
    assert run.got == list(range(20))
    assert run.continuity == ["new", "recovered"]


@pytest_twisted.ensureDeferred
async def test_unstall_before_the_client_gives_up_sends_what_was_held(run: Run) -> None:
    await run.subscribe()
    run.server.faults.stall()
    run.publish(range(10))
    await sleep(0.2)
    assert run.got == []  # nothing written on the stalled stream
    run.server.faults.unstall()
    await wait_until(lambda: len(run.got) >= 10)
    run.publish(range(10, 15))
    await wait_until(lambda: len(run.got) >= 15)
    assert run.got == list(range(15))
    assert run.continuity == ["new"]


@pytest_twisted.ensureDeferred
async def test_refused_recovery_replaces_the_session(run: Run) -> None:
    await run.subscribe()
    run.publish(range(5))
    await wait_until(lambda: len(run.got) == 5)
    run.server.faults.refuse_recovery()
    run.server.faults.close_after(0)
    await wait_until(lambda: "replaced" in run.continuity)
    assert run.fired("refuse_recovery") >= 1
    await resubscribed(run)
    run.publish(range(5, 10))
    await wait_until(lambda: len(run.got) >= 10)
    # RAW has no snapshot: the updates delivered before are not delivered again.
    assert run.got == list(range(10))
    assert run.continuity == ["new", "replaced"]


@pytest_twisted.ensureDeferred
async def test_recovery_is_accepted_with_prog_by_default(run: Run) -> None:
    await run.subscribe()
    run.publish(range(3))
    await wait_until(lambda: len(run.got) == 3)
    run.server.faults.refuse_recovery()
    run.server.faults.accept_recovery()
    run.server.drop_streams()
    run.publish(range(3, 8))  # logged while unbound, re-sent after PROG
    (session,) = run.server.sessions.values()
    await wait_until(lambda: "recovered" in run.continuity and len(run.got) >= 8)
    assert run.got == list(range(8))
    assert session.progressive >= 8
    assert run.fired("refuse_recovery") == 0


@pytest_twisted.ensureDeferred
async def test_http_500_on_create_is_retried() -> None:
    run = Run(TlcpServer(keepalive_millis=1000))
    await run.start()
    try:
        run.server.faults.fail_next(500, count=2)
        await run.subscribe()
        assert run.fired("fail_next") == 2
        assert run.requests("create_session") == 3
        run.publish(range(5))
        await wait_until(lambda: len(run.got) == 5)
        assert run.continuity == ["new"]
    finally:
        await run.close()


@pytest_twisted.ensureDeferred
async def test_http_500_on_recovery_bind_is_retried(run: Run) -> None:
    await run.subscribe()
    run.publish(range(5))
    await wait_until(lambda: len(run.got) == 5)
    run.server.faults.fail_next(503)
    run.server.faults.close_after(0)
    run.publish(range(5, 10))
    await wait_until(lambda: run.fired("fail_next") == 1)
    await wait_until(lambda: "recovered" in run.continuity and len(run.got) >= 10)
    assert run.got == list(range(10))
    assert run.requests("bind_session") == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, b"Not Found\r\n"), (200, b"<html><body>Welcome to nginx!</body></html>\r\n")],
    ids=["404", "garbage"],
)
@pytest_twisted.ensureDeferred
async def test_unusable_answer_is_fatal_without_a_retry_storm(status: int, body: bytes) -> None:
    run = Run(TlcpServer(keepalive_millis=1000))
    await run.start()
    try:
        if status == 200:
            run.server.faults.garbage_next(body, count=100)
        else:
            run.server.faults.fail_next(status, body, count=100)
        assert run.client is not None
        with pytest.raises(LightstreamerError) as caught:
            await run.client.create_session()
        await sleep(1.0)  # longer than retry_delay: a retry would show here
        assert run.requests("create_session") == 1
        assert run.statuses[-1].startswith("DISCONNECTED")
        assert run.errors, "the fatal error reaches on_error"
        if status == 404:
            assert isinstance(caught.value, TransportError)
            assert not caught.value.retryable
    finally:
        await run.close()


@pytest_twisted.ensureDeferred
async def test_conerr_next_on_create_is_reported(run: Run) -> None:
    run.server.faults.conerr_next(60, "License limit reached")
    assert run.client is not None
    with pytest.raises(ServerError) as caught:
        await run.client.create_session()
    assert caught.value.code == 60
    assert run.fired("conerr_next") == 1
    await sleep(0.3)
    assert run.requests("create_session") == 1


@pytest_twisted.ensureDeferred
async def test_retryable_conerr_on_bind_then_new_session(run: Run) -> None:
    await run.subscribe()
    run.server.faults.conerr_next(20, "Session not found")
    run.server.faults.close_after(0)
    await wait_until(lambda: "replaced" in run.continuity)
    assert run.fired("conerr_next") == 1
    await resubscribed(run)
    run.publish(range(3))
    await wait_until(lambda: len(run.got) >= 3)
    assert run.got == list(range(3))


@pytest_twisted.ensureDeferred
async def test_end_streams_with_a_fatal_code(run: Run) -> None:
    await run.subscribe()
    run.server.faults.end_streams(32, "Closed by the administrator")
    await wait_until(lambda: any(isinstance(e, ServerError) for e in run.errors))
    (error,) = [e for e in run.errors if isinstance(e, ServerError)]
    assert error.code == 32
    await wait_until(lambda: run.statuses[-1].startswith("DISCONNECTED"))
    assert run.server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_end_streams_with_a_retryable_code_replaces_the_session(run: Run) -> None:
    await run.subscribe()
    run.server.faults.end_streams(48, "Session rebalanced")
    await wait_until(lambda: "replaced" in run.continuity)
    await resubscribed(run)
    run.publish(range(3))
    await wait_until(lambda: len(run.got) >= 3)
    assert run.got == list(range(3))


@pytest_twisted.ensureDeferred
async def test_legacy_sync_error_line_replaces_the_session(run: Run) -> None:
    await run.subscribe()
    run.publish(range(3))
    await wait_until(lambda: len(run.got) == 3)
    run.server.faults.send_line_to_all("SYNC ERROR")
    assert run.fired("send_line_to_all") == 1
    # Reported, then a new session with every table subscribed again.
    await wait_until(lambda: any(isinstance(e, ProtocolError) for e in run.errors))
    await wait_until(lambda: "replaced" in run.continuity)
    await resubscribed(run)
    run.publish(range(3, 6))
    await wait_until(lambda: len(run.got) >= 6)
    await sleep(0.05)
    assert run.got == list(range(6))


@pytest_twisted.ensureDeferred
async def test_legacy_sync_error_answer_to_create_is_fatal() -> None:
    run = Run(TlcpServer(keepalive_millis=1000))
    await run.start()
    try:
        run.server.faults.garbage_next(b"SYNC ERROR\r\n")
        assert run.client is not None
        with pytest.raises(ProtocolError):
            await run.client.create_session()
        await sleep(0.3)
        assert run.requests("create_session") == 1
        assert run.statuses[-1].startswith("DISCONNECTED")
    finally:
        await run.close()


@pytest_twisted.ensureDeferred
async def test_reset_disarms_every_fault(run: Run) -> None:
    faults = run.server.faults
    faults.close_after(1)
    faults.close_mid_line()
    faults.truncate_next_chunk()
    faults.fail_next(500)
    faults.conerr_next(60)
    faults.refuse_recovery()
    faults.reset()
    await run.subscribe()
    run.publish(range(20))
    await wait_until(lambda: len(run.got) >= 20)
    assert run.got == list(range(20))
    assert faults.fired == []
    assert run.continuity == ["new"]


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
    await wait_until(lambda: len(server.sessions) == 1 and b"CONOK" in raw.data)
    (session,) = server.sessions.values()
    session._op_add(
        {"LS_subId": "1", "LS_mode": "RAW", "LS_group": "x", "LS_schema": "v"})
    arm()
    server.data.update("x", {"v": "first-notification-value"})
    server.data.update("x", {"v": "second"})
    await wait_until(lambda: raw.reason is not None)
    assert raw.reason is not None
    return raw.data, raw.reason


@pytest_twisted.ensureDeferred
async def test_close_mid_line_writes_half_a_line_on_the_wire(run: Run) -> None:
    data, _ = await _raw_stream(run.server, run.server.faults.close_mid_line)
    # Whole chunks, the last one holding half of the update line, then the end.
    tail = data.rsplit(b"\r\n", 2)
    assert data.count(b"U,1,1,") == 1
    assert b"first-notification-value" not in data
    assert b"U,1,1,first" in data and not tail[-1]
    assert b"second" not in data
    assert run.server.sessions  # the session survives, unbound, for recovery


@pytest_twisted.ensureDeferred
async def test_truncated_chunk_on_the_wire(run: Run) -> None:
    data, _ = await _raw_stream(run.server, run.server.faults.truncate_next_chunk)
    line = b"U,1,1,first-notification-value\r\n"
    header = b"%x\r\n" % len(line)
    assert data.endswith(header + line[: len(line) // 2])


@pytest_twisted.ensureDeferred
async def test_close_after_flushes_what_was_written(run: Run) -> None:
    data, _ = await _raw_stream(run.server, lambda: run.server.faults.close_after(1))
    # SUBOK and CONF went out before the fault was armed; the first update is the
    # last thing sent, and reaches the client whole before the reset.
    assert data.endswith(b"U,1,1,first-notification-value\r\n\r\n")
    assert b"second" not in data
    (session,) = run.server.sessions.values()
    assert not session.is_bound and session.progressive == 4
