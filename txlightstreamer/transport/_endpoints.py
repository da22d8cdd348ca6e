"""
How one client's connections reach the server: plain TCP, any user endpoint, or an HTTP
proxy (absolute-URI requests for plain HTTP, a ``CONNECT`` tunnel for TLS and WebSocket),
with TLS on top for ``https``/``wss``.

Everything here is per client: no process-wide state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hyperlink import URL
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import URI
from twisted.web.iweb import IAgent, IAgentEndpointFactory
from zope.interface import implementer

__all__ = [
    "ConnectTunnelEndpoint", "EndpointRouter", "SchemeAgent", "parse_proxy", "refuse_userinfo",
]

EndpointFactory = Callable[[str, int], IStreamClientEndpoint]

# Longest reply head we accept from a proxy answering CONNECT.
_MAX_PROXY_HEAD = 16 * 1024


def refuse_userinfo(url: str, what: str, instead: str) -> None:
    """A ``ValueError`` for a ``user:password@`` in ``url`` (named ``what``), which would be
    carried into reprs, logs and errors; the message never quotes the URL."""
    rest = url.partition("://")[2] if "://" in url else url
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority:
        raise ValueError(f"{what} must not hold credentials (user:password@): {instead}")


def parse_proxy(proxy_url: str) -> tuple[str, int]:
    """The host and port of an ``http://host[:port]`` proxy address."""
    refuse_userinfo(proxy_url, "http_proxy",
                    "the tunnel sends none; give an endpoint_factory that authenticates")
    url = URL.from_text(proxy_url)
    if url.scheme != "http" or not url.host:
        raise ValueError(f"http_proxy must look like http://host:port, not {proxy_url!r}")
    return url.host, url.port or 80


class _TunnelProtocol(Protocol):
    """Asks the proxy for a tunnel, then hands the connection to the real protocol."""

    def __init__(self, endpoint: ConnectTunnelEndpoint, factory: IProtocolFactory,
                 done: Deferred[IProtocol]) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self._done = done
        self._buffer = b""
        self._inner: IProtocol | None = None

    def connectionMade(self) -> None:  # noqa: N802
        target = self._endpoint.authority
        head = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        head += [f"{k}: {v}" for k, v in self._endpoint.headers.items()]
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._inner is not None:
            self._inner.dataReceived(data)
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_PROXY_HEAD:
                self._refuse("the proxy's reply to CONNECT is too long")
            return
        head, rest = self._buffer[:end], self._buffer[end + 4:]
        self._buffer = b""
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[1].startswith("2"):
            self._refuse(f"the proxy refused CONNECT {self._endpoint.authority}: {status_line!r}")
            return
        inner = self._factory.buildProtocol(self.transport.getPeer())  # type: ignore[union-attr]
        if inner is None:
            self._refuse("the protocol factory declined the connection")
            return
        self._inner = inner
        inner.makeConnection(self.transport)  # type: ignore[arg-type]
        if not self._done.called:
            self._done.callback(inner)
        if rest:
            inner.dataReceived(rest)

    def _refuse(self, reason: str) -> None:
        if not self._done.called:
            self._done.errback(ConnectError(string=reason))
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self._inner is not None:
            self._inner.connectionLost(reason)
        elif not self._done.called:
            self._done.errback(ConnectError(
                string=f"the proxy closed the connection before CONNECT completed: {reason.value}"))


class _TunnelFactory(Factory):
    noisy = False

    def __init__(self, endpoint: ConnectTunnelEndpoint, factory: IProtocolFactory,
                 done: Deferred[IProtocol]) -> None:
        self._args = (endpoint, factory, done)
        self.built: _TunnelProtocol | None = None

    def buildProtocol(self, addr: Any) -> _TunnelProtocol:  # noqa: N802
        self.built = _TunnelProtocol(*self._args)
        return self.built


@implementer(IStreamClientEndpoint)
class ConnectTunnelEndpoint:
    """
    Connects to ``host:port`` through an HTTP proxy with ``CONNECT``.

    ``proxy`` is the endpoint of the proxy itself; the protocol of ``connect`` sees a plain
    byte stream to the target (wrap this endpoint with `wrapClientTLS` for TLS).
    """

    def __init__(self, proxy: IStreamClientEndpoint, host: str, port: int,
                 headers: Mapping[str, str] | None = None) -> None:
        self._proxy = proxy
        self.authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.headers = dict(headers or {})

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:  # noqa: N803
        tunnel: _TunnelFactory

        def cancel(d: Deferred[IProtocol]) -> None:
            if not connecting.called:
                connecting.cancel()
            elif tunnel.built is not None and tunnel.built.transport is not None:
                tunnel.built.transport.abortConnection()  # type: ignore[attr-defined]

        done: Deferred[IProtocol] = Deferred(cancel)
        tunnel = _TunnelFactory(self, protocolFactory, done)
        connecting = self._proxy.connect(tunnel)

        def failed(failure: Failure) -> None:
            if not done.called:
                done.errback(failure)

        connecting.addErrback(failed)
        return done


class EndpointRouter:
    """
    Builds the endpoint for each connection of one client: ``tcp(host, port)`` (the
    user's endpoint factory, a proxy tunnel, or a `HostnameEndpoint`), wrapped in TLS with
    the client's policy for secure schemes.

    It is also an ``IAgentEndpointFactory``, so an `Agent` uses the same routes.
    """

    def __init__(self, reactor: Any, tls_policy: Any, tcp: EndpointFactory) -> None:
        self._reactor = reactor
        self.tls_policy = tls_policy
        self._tcp = tcp

    def endpoint(self, host: str, port: int, secure: bool) -> IStreamClientEndpoint:
        endpoint = self._tcp(host, port)
        if secure:
            creator = self.tls_policy.creatorForNetloc(host.encode("idna"), port)
            endpoint = wrapClientTLS(creator, endpoint)
        return endpoint

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:  # noqa: N802
        host = uri.host.decode("ascii").strip("[]")
        return self.endpoint(host, uri.port, uri.scheme == b"https")


implementer(IAgentEndpointFactory)(EndpointRouter)


def hostname_endpoints(reactor: Any, timeout: float) -> EndpointFactory:
    """The default route: a direct TCP connection (happy eyeballs, with a timeout)."""

    def make(host: str, port: int) -> IStreamClientEndpoint:
        return HostnameEndpoint(reactor, host.encode("idna"), port, timeout=timeout)

    return make


@implementer(IAgent)
class SchemeAgent:
    """Sends ``http://`` requests with one agent and ``https://`` requests with another."""

    def __init__(self, plain: IAgent, secure: IAgent) -> None:
        self._plain = plain
        self._secure = secure

    def request(self, method: bytes, uri: bytes, headers: Any = None,
                bodyProducer: Any = None) -> Deferred[Any]:  # noqa: N803
        agent = self._secure if uri.lower().startswith(b"https:") else self._plain
        return agent.request(method, uri, headers, bodyProducer)
