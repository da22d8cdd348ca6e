"""
Routing a client's connections: ``TransportOptions(endpoint_factory=...)`` (any Twisted client
endpoint, for every HTTP and WebSocket connection) and ``TransportOptions(http_proxy=...)``
(absolute-URI requests for plain HTTP, ``CONNECT`` tunnels for WebSocket and TLS), checked
with a tiny forwarding proxy on 127.0.0.1 that counts what went through it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from hyperlink import URL
from twisted.internet import defer, reactor, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from txlightstreamer import MODE_MERGE, LsClient, Table
from txlightstreamer.testing import TlcpServer
from txlightstreamer.transport import TransportOptions

from .test_client_e2e import wait_until

pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")

_REQUEST_LINE = re.compile(rb"(?:^|\r\n)([A-Z]+) (\S+) HTTP/1\.1\r\n")


class _Upstream(Protocol):
    def __init__(self, downstream: _Downstream) -> None:
        self.downstream = downstream

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.downstream.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self.downstream.transport is not None:
            self.downstream.transport.loseConnection()


class _Downstream(Protocol):
    """One client connection: forwarded to a fixed target, or served as an HTTP proxy."""

    def __init__(self, proxy: ForwardingProxy) -> None:
        self.proxy = proxy
        self.buffer = b""
        self.upstream: _Upstream | None = None
        self.started = False
        self.tunnel = False

    def connectionMade(self) -> None:  # noqa: N802
        self.proxy.connections.append(self)
        if self.proxy.target is not None:
            self._connect(*self.proxy.target, reply=None)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.proxy.bytes += len(data)
        if not self.tunnel and self.proxy.target is None:
            self.proxy.request_lines += [(m.group(1).decode(), m.group(2).decode())
                                         for m in _REQUEST_LINE.finditer(self.buffer[-2:] + data)
                                         if m.group(1) != b"CONNECT"]
        if self.upstream is not None:
            self.upstream.transport.write(data)  # type: ignore[union-attr]
            return
        self.buffer += data
        if self.started or b"\r\n\r\n" not in self.buffer:
            return
        method, target, _ = self.buffer.split(b"\r\n", 1)[0].decode().split(" ")
        if method == "CONNECT":
            self.tunnel = True
            self.proxy.tunnels.append(target)
            self.buffer = self.buffer.split(b"\r\n\r\n", 1)[1]
            if self.proxy.refuse_connect:
                self.transport.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                self.transport.loseConnection()  # type: ignore[union-attr]
                return
            host, port = target.rsplit(":", 1)
            self._connect(host, int(port), reply=b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            # Absolute form ("POST http://host:port/path"): servers must accept it as is.
            url = URL.from_text(target)
            self._connect(url.host, url.port or 80, reply=None)

    def _connect(self, host: str, port: int, reply: bytes | None) -> None:
        self.started = True
        upstream = _Upstream(self)
        d = TCP4ClientEndpoint(reactor, host, port).connect(
            Factory.forProtocol(lambda: upstream))

        def ready(_: Any) -> None:
            self.upstream = upstream
            self.proxy.upstreams.append(upstream)
            if reply is not None:
                self.transport.write(reply)  # type: ignore[union-attr]
            if self.buffer:
                upstream.transport.write(self.buffer)  # type: ignore[union-attr]
                self.buffer = b""

        d.addCallbacks(ready, lambda _: self.transport.loseConnection())  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.loseConnection()


class ForwardingProxy:
    """A loopback proxy; ``target=(host, port)`` makes it a plain TCP forwarder."""

    def __init__(self, target: tuple[str, int] | None = None, refuse_connect: bool = False):
        self.target = target
        self.refuse_connect = refuse_connect
        self.connections: list[_Downstream] = []
        self.upstreams: list[_Upstream] = []
        self.tunnels: list[str] = []
        self.request_lines: list[tuple[str, str]] = []
        self.bytes = 0
        self.port: Any = None

    def listen(self) -> int:
        self.port = reactor.listenTCP(0, Factory.forProtocol(lambda: _Downstream(self)),
                                      interface="127.0.0.1")
        return int(self.port.getHost().port)

    async def stop(self) -> None:
        for proto in [*self.connections, *self.upstreams]:
            if proto.transport is not None:
                proto.transport.abortConnection()  # type: ignore[attr-defined]
        await defer.maybeDeferred(self.port.stopListening)


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[TlcpServer]:
    srv = TlcpServer(keepalive_millis=1000)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    yield srv
    await srv.stop()


def _port(url: str | None) -> int:
    assert url is not None
    return int(URL.from_text(url).port or 0)


async def _session_works(client: LsClient, server: TlcpServer, status: str) -> None:
    await client.create_session()
    assert client.status == status
    table = Table(client, mode=MODE_MERGE, item_ids=["x"], schema=["v"])
    got: list[Any] = []
    table.on_update(lambda item, row: got.append(row[0]))
    await table.when_subscribed()
    server.data.update("x", {"v": "through"})
    await wait_until(lambda: got == ["through"])


def _needs_ws(forced: str | None) -> None:
    if forced is None or forced.startswith("WS"):
        pytest.importorskip("autobahn")


@pytest.mark.parametrize(("forced", "status"), [
    (None, "CONNECTED:WS-STREAMING"),
    ("HTTP-STREAMING", "CONNECTED:HTTP-STREAMING"),
    ("HTTP-POLLING", "CONNECTED:HTTP-POLLING"),
    ("WS-POLLING", "CONNECTED:WS-POLLING"),
])
@pytest_twisted.ensureDeferred
async def test_endpoint_factory_routes_every_connection(
        server: TlcpServer, forced: str | None, status: str) -> None:
    _needs_ws(forced)
    forwarder = ForwardingProxy(target=("127.0.0.1", _port(server.url)))
    forwarder_port = forwarder.listen()
    asked: list[tuple[str, int]] = []

    def route(host: str, port: int) -> Any:
        asked.append((host, port))
        return TCP4ClientEndpoint(reactor, "127.0.0.1", forwarder_port)

    client = LsClient(server.url, forced_transport=forced, idle_timeout=0.2,
                      transport_options=TransportOptions(endpoint_factory=route))
    try:
        await _session_works(client, server, status)
        assert asked and set(asked) == {("127.0.0.1", _port(server.url))}
        # Every connection the client made went through the forwarder (a poll's may be
        # on its way: the counts meet once it arrived).
        await wait_until(lambda: len(forwarder.connections) == len(asked))
        assert forwarder.bytes > 0
    finally:
        await client.destroy()
        await forwarder.stop()


@pytest.mark.parametrize("forced", ["HTTP-STREAMING", "HTTP-POLLING"])
@pytest_twisted.ensureDeferred
async def test_http_proxy_for_plain_http(server: TlcpServer, forced: str) -> None:
    proxy = ForwardingProxy()
    proxy_port = proxy.listen()
    client = LsClient(server.url, forced_transport=forced, idle_timeout=0.2,
                      transport_options=TransportOptions(
                          http_proxy=f"http://127.0.0.1:{proxy_port}"))
    try:
        await _session_works(client, server, f"CONNECTED:{forced}")
        targets = [target for _, target in proxy.request_lines]
        base = f"{server.url}/lightstreamer/"
        assert targets[0].startswith(base + "create_session.txt?LS_protocol=")
        assert any(t.startswith(base + "control.txt?") for t in targets)
        if forced == "HTTP-POLLING":
            assert any(t.startswith(base + "bind_session.txt?") for t in targets)
        assert all(t.startswith(base) for t in targets)  # absolute-URI requests only
        assert proxy.tunnels == []
    finally:
        await client.destroy()
        await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_http_proxy_tunnels_websocket(server: TlcpServer) -> None:
    pytest.importorskip("autobahn")
    proxy = ForwardingProxy()
    proxy_port = proxy.listen()
    client = LsClient(server.url, transport_options=TransportOptions(
        http_proxy=f"http://127.0.0.1:{proxy_port}"))
    try:
        await _session_works(client, server, "CONNECTED:WS-STREAMING")
        assert proxy.tunnels == [f"127.0.0.1:{_port(server.url)}"]
        assert [name for name, _ in server.received] == ["websocket"]
    finally:
        await client.destroy()
        await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_proxy_refusing_connect_senses_http(server: TlcpServer) -> None:
    pytest.importorskip("autobahn")
    proxy = ForwardingProxy(refuse_connect=True)
    proxy_port = proxy.listen()
    client = LsClient(server.url, transport_options=TransportOptions(
        http_proxy=f"http://127.0.0.1:{proxy_port}"))
    statuses: list[str] = []
    client.on_status(lambda status, reason: statuses.append(status))
    try:
        await _session_works(client, server, "CONNECTED:HTTP-STREAMING")
        # WebSocket given up before any CONOK: no CONNECTED:* status until the server
        # accepted the session over HTTP (issue 19; was CONNECTED:STREAM-SENSING).
        assert statuses == ["CONNECTING", "CONNECTED:HTTP-STREAMING"]
        assert len(proxy.tunnels) == 1
        assert proxy.request_lines  # the HTTP requests went through the proxy
    finally:
        await client.destroy()
        await proxy.stop()


@pytest.mark.parametrize("forced", ["HTTP-STREAMING", "WS-STREAMING"])
@pytest_twisted.ensureDeferred
async def test_https_through_http_proxy_and_private_ca(forced: str) -> None:
    _needs_ws(forced)
    from .test_tls import make_pki

    ca_pem, cert_pem, key_pem = make_pki()
    srv = TlcpServer(keepalive_millis=1000)
    await srv.listen(reactor, port=0, interface="127.0.0.1",
                     tls=ssl.PrivateCertificate.loadPEM(cert_pem + key_pem).options())
    proxy = ForwardingProxy()
    proxy_port = proxy.listen()
    client = LsClient(srv.url, forced_transport=forced, transport_options=TransportOptions(
        http_proxy=f"http://127.0.0.1:{proxy_port}", trust_roots=ca_pem))
    try:
        await _session_works(client, srv, f"CONNECTED:{forced}")
        # TLS end to end inside CONNECT tunnels: the proxy saw no request line.
        assert proxy.tunnels and set(proxy.tunnels) == {f"127.0.0.1:{_port(srv.url)}"}
        assert proxy.request_lines == []
    finally:
        await client.destroy()
        await proxy.stop()
        await srv.stop()


@pytest.mark.parametrize("forced", ["HTTP-STREAMING", "WS-STREAMING"])
@pytest_twisted.ensureDeferred
async def test_endpoint_factory_with_tls(forced: str) -> None:
    _needs_ws(forced)
    from .test_tls import make_pki

    ca_pem, cert_pem, key_pem = make_pki()
    srv = TlcpServer(keepalive_millis=1000)
    await srv.listen(reactor, port=0, interface="127.0.0.1",
                     tls=ssl.PrivateCertificate.loadPEM(cert_pem + key_pem).options())
    forwarder = ForwardingProxy(target=("127.0.0.1", _port(srv.url)))
    forwarder_port = forwarder.listen()
    client = LsClient(srv.url, forced_transport=forced, transport_options=TransportOptions(
        trust_roots=ca_pem,
        endpoint_factory=lambda host, port: TCP4ClientEndpoint(
            reactor, "127.0.0.1", forwarder_port)))
    try:
        await _session_works(client, srv, f"CONNECTED:{forced}")
        assert forwarder.connections
    finally:
        await client.destroy()
        await forwarder.stop()
        await srv.stop()


def test_bad_proxy_address() -> None:
    with pytest.raises(ValueError, match="http_proxy must look like"):
        LsClient("http://127.0.0.1:9", transport_options=TransportOptions(
            http_proxy="socks5://127.0.0.1:1080"))
