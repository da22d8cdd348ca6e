"""
Transports: each turns a connection into TLCP lines and back.

`make_transports` builds them for one client from `TransportOptions`; the session only
sees objects with ``protocol_version`` and ``open_stream(base_url, request, sink)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from txlightstreamer.transport.http import HttpTransport

__all__ = ["HttpTransport", "TransportOptions", "make_transports"]


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
    #: Extra HTTP headers for every request, and for session creation only.
    headers: dict[str, str] = field(default_factory=dict)
    create_headers: dict[str, str] = field(default_factory=dict)


def make_transports(reactor: Any, options: TransportOptions) -> tuple[HttpTransport, Any]:
    """The HTTP transport and, when available, the WebSocket one (else None)."""
    pools: list[Any] = []
    if options.http_client is None:
        stream_client, control_client, pools = _private_http_clients(reactor, options)
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
    )
    return http, None


def _private_http_clients(reactor: Any, options: TransportOptions) -> tuple[Any, Any, list[Any]]:
    """Two private treq clients: a non-persistent pool for streams, a small one for control."""
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    stream_pool = HTTPConnectionPool(reactor, persistent=False)
    control_pool = HTTPConnectionPool(reactor, persistent=True)
    control_pool.maxPersistentPerHost = 2
    control_pool.cachedConnectionTimeout = 30
    kwargs: dict[str, Any] = {"connectTimeout": options.connect_timeout}
    if options.tls_policy is not None:
        kwargs["contextFactory"] = options.tls_policy
    stream = HTTPClient(Agent(reactor, pool=stream_pool, **kwargs))
    control = HTTPClient(Agent(reactor, pool=control_pool, **kwargs))
    return stream, control, [stream_pool, control_pool]
