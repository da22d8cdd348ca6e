"""
Transports: each turns a connection into TLCP lines and back.

`make_transports` builds them for one client from `TransportOptions`; the session only
sees them through `txlightstreamer.transport.interfaces` (`ITransport`, `IStream`...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from typing import Any

from twisted.internet.interfaces import IReactorTCP, IStreamClientEndpoint

from txlightstreamer.transport._endpoints import (
    ConnectTunnelEndpoint,
    EndpointRouter,
    SchemeAgent,
    hostname_endpoints,
    parse_proxy,
)
from txlightstreamer.transport._trust import trust_root
from txlightstreamer.transport.http import HttpTransport
from txlightstreamer.transport.interfaces import ITransport

__all__ = [
    "WS_EXTRA_HINT",
    "ConnectTunnelEndpoint",
    "HttpTransport",
    "TransportOptions",
    "make_transports",
    "websocket_available",
]

#: What to install for the WebSocket transport.
WS_EXTRA_HINT = "pip install 'txlightstreamer[ws]'"


@dataclass
class TransportOptions:
    """How one client reaches its server (everything is per client: no global state)."""

    protocol_version: str = "2.5.0"
    #: Timeout of every connection attempt and control request, in seconds.
    connect_timeout: float = 4.0
    max_line_length: int = 1 << 20
    #: Any treq-like object used for every HTTP request instead of private pools.
    http_client: Any = None
    #: An ``IPolicyForHTTPS`` (e.g. trust roots for a private CA); verified by default.
    tls_policy: Any = None
    #: Extra HTTP headers for every request (and WebSocket handshake), and for session
    #: creation only. Not in the repr: they may carry a token.
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    create_headers: dict[str, str] = field(default_factory=dict, repr=False)
    #: Certificates trusted instead of the platform's: a PEM file path, PEM text or bytes
    #: (possibly several certificates), a ``twisted.internet.ssl.Certificate``, a list of
    #: these, or an ``IOpenSSLTrustRoot``. Mutually exclusive with ``tls_policy``.
    trust_roots: Any = None
    #: ``http://host:port`` of an HTTP proxy: plain-HTTP requests go through it with
    #: absolute URIs, TLS and WebSocket connections through a ``CONNECT`` tunnel.
    http_proxy: str | None = None
    #: ``endpoint_factory(host, port) -> IStreamClientEndpoint`` routes every connection
    #: (HTTP and WebSocket; TLS is added on top for https/wss), e.g. through SOCKS. With
    #: ``http_proxy`` it is used to reach the proxy.
    endpoint_factory: Callable[[str, int], IStreamClientEndpoint] | None = None
    #: The cookie jar of every request of the client (a fresh one per client if None).
    cookie_jar: CookieJar | None = None
    #: WebSocket: None uses it when autobahn is installed, True requires it, False
    #: disables it.
    websocket: bool | None = None


def websocket_available() -> bool:
    """
    Whether the WebSocket transport can be used (autobahn is installed). This imports
    autobahn (several MB), so it is only asked when WebSocket is not ruled out.
    """
    try:
        import autobahn.twisted.websocket  # noqa: F401
    except ImportError:
        return False
    return True


def make_transports(
    reactor: Any, options: TransportOptions
) -> tuple[HttpTransport, ITransport | None]:
    """The HTTP transport and, when available, the WebSocket one (else None)."""
    policy = tls_policy(options)
    jar = options.cookie_jar if options.cookie_jar is not None else CookieJar()
    options.cookie_jar = jar
    router = _router(reactor, options, policy)
    pools: list[Any] = []
    if options.http_client is None:
        stream_client, control_client, pools = _private_http_clients(
            reactor, options, policy, router, jar)
    else:
        stream_client = control_client = options.http_client
    http = HttpTransport(
        stream_client=stream_client,
        control_client=control_client,
        clock=reactor,
        protocol_version=options.protocol_version,
        connect_timeout=options.connect_timeout,
        max_line_length=options.max_line_length,
        pools=pools,
        headers=options.headers,
        create_headers=options.create_headers,
    )
    ws = _ws_transport(reactor, options, router, jar)
    if ws is not None:
        http.companions.append(ws)
    return http, ws


def tls_policy(options: TransportOptions) -> Any:
    """The client's ``IPolicyForHTTPS``: given, built from trust roots, or the default."""
    from twisted.web.client import BrowserLikePolicyForHTTPS

    if options.trust_roots is not None:
        if options.tls_policy is not None:
            raise ValueError("give either tls_policy or trust_roots, not both")
        return BrowserLikePolicyForHTTPS(trustRoot=trust_root(options.trust_roots))
    if options.tls_policy is not None:
        return options.tls_policy
    return BrowserLikePolicyForHTTPS()


def _router(reactor: Any, options: TransportOptions, policy: Any) -> EndpointRouter:
    direct = options.endpoint_factory or hostname_endpoints(reactor, options.connect_timeout)
    if options.http_proxy is None:
        return EndpointRouter(reactor, policy, direct)
    proxy_host, proxy_port = parse_proxy(options.http_proxy)

    def tunnel(host: str, port: int) -> IStreamClientEndpoint:
        return ConnectTunnelEndpoint(direct(proxy_host, proxy_port), host, port)

    return EndpointRouter(reactor, policy, tunnel)


def _private_http_clients(
    reactor: Any, options: TransportOptions, policy: Any, router: EndpointRouter,
    jar: CookieJar,
) -> tuple[Any, Any, list[Any]]:
    """Two private treq clients: a non-persistent pool for streams, a small one for control."""
    from treq.client import HTTPClient
    from twisted.web.client import HTTPConnectionPool

    stream_pool = HTTPConnectionPool(reactor, persistent=False)
    control_pool = HTTPConnectionPool(reactor, persistent=True)
    control_pool.maxPersistentPerHost = 2
    control_pool.cachedConnectionTimeout = 30
    shared: Any = jar  # treq reads it as a plain CookieJar
    stream = HTTPClient(_agent(reactor, options, policy, router, stream_pool), cookiejar=shared)
    control = HTTPClient(_agent(reactor, options, policy, router, control_pool),
                         cookiejar=shared)
    return stream, control, [stream_pool, control_pool]


def _agent(reactor: Any, options: TransportOptions, policy: Any, router: EndpointRouter,
           pool: Any) -> Any:
    from twisted.web.client import Agent, ProxyAgent

    if options.http_proxy is not None:
        host, port = parse_proxy(options.http_proxy)
        direct = options.endpoint_factory or hostname_endpoints(reactor, options.connect_timeout)
        plain = ProxyAgent(direct(host, port), reactor, pool=pool)
        return SchemeAgent(plain, Agent.usingEndpointFactory(reactor, router, pool=pool))
    if options.endpoint_factory is not None:
        return Agent.usingEndpointFactory(reactor, router, pool=pool)
    return Agent(reactor, contextFactory=policy, connectTimeout=options.connect_timeout,
                 pool=pool)


def _can_connect(reactor: Any, options: TransportOptions) -> bool:
    """
    Whether sockets can be opened for a WebSocket: through the configured endpoint
    factory, or the reactor's TCP (a reactor that is only a clock cannot).
    """
    return options.endpoint_factory is not None or IReactorTCP.providedBy(reactor)


def _ws_transport(reactor: Any, options: TransportOptions, router: EndpointRouter,
                  jar: CookieJar) -> ITransport | None:
    if options.websocket is False:
        return None
    if not websocket_available():
        if options.websocket:
            raise RuntimeError(
                f"the WebSocket transport needs autobahn: {WS_EXTRA_HINT}")
        return None
    if options.websocket is None and not _can_connect(reactor, options):
        return None
    from txlightstreamer.transport.ws import WsTransport

    return WsTransport(
        reactor=reactor,
        router=router,
        protocol_version=options.protocol_version,
        connect_timeout=options.connect_timeout,
        max_line_length=options.max_line_length,
        headers=options.headers,
        create_headers=options.create_headers,
        cookie_jar=jar,
    )
