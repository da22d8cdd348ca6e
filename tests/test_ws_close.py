"""WebSocket close frames and wss hostname checks (review, third round): a server's close
frame ends the stream at once, no write raises after it, and a wss hostname mismatch is a
clear TLS failure, not retried."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, ssl, task

pytest.importorskip("autobahn")

from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketServerFactory,
    WebSocketServerProtocol,
)

from txlightstreamer import LsClient  # noqa: E402
from txlightstreamer.errors import TransportError  # noqa: E402
from txlightstreamer.protocol import create_session  # noqa: E402
from txlightstreamer.testing import TlcpServer  # noqa: E402
from txlightstreamer.transport import TransportOptions, make_transports  # noqa: E402

from .support import wait_until  # noqa: E402
from .test_transport_ws import Sink  # noqa: E402


class _Lingering(WebSocketServerProtocol):
    """Answers wsok/create/bind; after its Close frame it keeps the TCP connection open."""

    def onConnect(self, request: Any) -> str:  # noqa: N802
        self.factory.sockets.append(self)
        return "TLCP-2.5.0.lightstreamer.com"

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        if payload == b"wsok":
            self.sendMessage(b"WSOK")
        elif payload.startswith((b"create_session", b"bind_session")):
            self.sendMessage(self.factory.conok)
            if payload.startswith(b"bind_session") and self.factory.close_on_bind:
                self.factory.close_on_bind = False
                self.sendClose(1000, "going away")

    def dropConnection(self, abort: bool = False) -> None:  # noqa: N802
        pass  # a server (or proxy) slow to close TCP after the closing handshake


async def _lingering(conok: bytes = b"CONOK,S1,50000,5000,*\r\n",
                     close_on_bind: bool = False) -> Any:
    factory = WebSocketServerFactory()
    factory.protocol = _Lingering
    factory.sockets = []
    factory.conok = conok
    factory.close_on_bind = close_on_bind
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return factory, port, f"http://127.0.0.1:{port.getHost().port}"


async def _shut(factory: Any, port: Any) -> None:
    for s in factory.sockets:
        if s.transport is not None:
            s.transport.abortConnection()
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_server_close_frame_ends_the_stream() -> None:
    factory, port, url = await _lingering()
    _, ws = make_transports(reactor, TransportOptions(websocket=True))
    sink = Sink()
    stream = ws.open_stream(url, create_session(), sink)
    try:
        stream.start()
        await wait_until(lambda: len(sink.lines) >= 2, timeout=5)
        factory.sockets[0].sendClose(1000, "going away")
        # The server's Close frame says the socket is over: the stream ends (and its TCP
        # connection is dropped) without waiting for the server to close TCP.
        await wait_until(lambda: bool(sink.ended), timeout=3, what="the stream's end")
    finally:
        stream.stop()
        await _shut(factory, port)


@pytest_twisted.ensureDeferred
async def test_requests_after_a_server_close_frame_do_not_raise() -> None:
    factory, port, url = await _lingering()
    client = LsClient(url, forced_transport="WS-STREAMING")
    try:
        await client.create_session()
        factory.sockets[0].sendClose(1000, "going away")
        await task.deferLater(reactor, 0.3, lambda: None)  # the client answered the Close
        # autobahn.exception.Disconnected was raised out of send_message.
        d = client.send_message("hello")
        d.addErrback(lambda f: None)
    finally:
        await client.destroy()  # it raised autobahn.exception.Disconnected too
        await _shut(factory, port)


@pytest_twisted.ensureDeferred
async def test_ws_polling_close_frame_between_polls_is_noticed() -> None:
    factory, port, url = await _lingering(
        conok=b"CONOK,S1,50000,1000,*\r\nLOOP,300\r\n", close_on_bind=True)
    client = LsClient(url, forced_transport="WS-POLLING", polling_interval=0.5,
                      idle_timeout=1.0, retry_delay=1.0)
    try:
        await client.create_session()
        # The first poll's socket gets a Close frame after its LOOP; the next poll must go
        # on a new socket (rebind() raised Disconnected in a timer and the session stayed
        # CONNECTED:WS-POLLING with no timer left, for good).
        await wait_until(lambda: len(factory.sockets) >= 2, timeout=8, what="a new socket")
    finally:
        try:
            await client.destroy()
        finally:
            await _shut(factory, port)


@pytest_twisted.ensureDeferred
async def test_wss_hostname_mismatch_is_a_clear_tls_failure() -> None:
    from .test_tls import make_pki

    ca_pem, cert_pem, key_pem = make_pki()  # a certificate for 127.0.0.1 and localhost
    srv = TlcpServer()
    # A loopback address the certificate does not name.
    await srv.listen(reactor, port=0, interface="127.0.0.2",
                     tls=ssl.PrivateCertificate.loadPEM(cert_pem + key_pem).options())
    number = srv.url.rsplit(":", 1)[1]
    _, ws = make_transports(reactor, TransportOptions(websocket=True, trust_roots=ca_pem))
    sink = Sink()
    stream = ws.open_stream(f"https://127.0.0.2:{number}", create_session(), sink)
    try:
        stream.start()
        await wait_until(lambda: bool(sink.ended or sink.lines), timeout=5)
        assert sink.lines == []  # refused, as it must be
        error = sink.ended[0].value
        assert isinstance(error, TransportError)
        # It was 'WebSocket handshake failed: connection was closed uncleanly', retried.
        assert "TLS failure with 127.0.0.2" in str(error), str(error)
        assert not error.retryable
    finally:
        stream.stop()
        await ws.close()
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_close_code_and_reason_are_reported() -> None:
    factory, port, url = await _lingering()
    client = LsClient(url, forced_transport="WS-STREAMING")
    reasons: list[tuple[str, str | None]] = []
    client.on_status(lambda status, reason: reasons.append((status, reason)))
    try:
        await client.create_session()
        factory.sockets[0].sendClose(4000, "adapter crashed")
        factory.sockets[0].transport.loseConnection()
        await wait_until(lambda: any(s == "DISCONNECTED:TRYING-RECOVERY" for s, _ in reasons),
                         timeout=5)
        reason = next(r for s, r in reasons if s == "DISCONNECTED:TRYING-RECOVERY")
        # It was "the server closed the stream without LOOP or END" (both lost).
        assert "4000" in reason and "adapter crashed" in reason, reason
    finally:
        await client.destroy()
        await _shut(factory, port)
