"""
What a session sees of a transport: a stream, a transport, and the sink a stream feeds.

A transport turns one request into a stream of TLCP lines; the sink (the session) gets
those lines and, once, the end of the stream. A clean end (the server closed the body or
the socket normally) is reported as `StreamClosed`, so that nobody above this module
needs to know the HTTP or WebSocket library's own "done" signals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface

from txlightstreamer.protocol import Request

__all__ = [
    "IControlTransport",
    "IRequestStream",
    "IStream",
    "ITransport",
    "StreamClosed",
    "StreamSink",
]


class StreamClosed(Exception):
    """The server ended a stream cleanly (end of the HTTP body, a clean WebSocket close)."""


class IStream(Interface):
    """One TLCP stream connection (a create or bind, then its notifications)."""

    url = Attribute("The address the stream is opened to (for error messages).")
    request_sent = Attribute(
        "Whether the request went out on an open connection, so the server may have acted "
        "on it (False: the connection failed first, e.g. a WebSocket that did not open).")
    connect_timeout = Attribute(
        "Seconds the stream waits for its first answer before it fails; may be raised "
        "before `start` (a create the server may hold longer).")

    def start() -> None:
        """Send the request; lines may reach the sink before this returns."""

    def stop() -> None:
        """Close the connection; no line reaches the sink after this call."""

    def pause_reading() -> None:
        """Stop reading from the connection (back-pressure), now or once it is open."""

    def resume_reading() -> None:
        """Read again after `pause_reading`."""


class IRequestStream(IStream):
    """A stream that also carries the session's control requests (WebSocket)."""

    def send_requests(requests: Sequence[Request]) -> None:
        """Write a batch of control/msg/heartbeat requests on the stream itself."""

    def rebind(request: Request) -> bool:
        """
        Send another bind on this same open connection (the next poll of WS-POLLING, as
        the official client does); False when the connection cannot take it any more.
        """


class ITransport(Interface):
    """Opens streams of one kind (HTTP or WebSocket) for one client."""

    protocol_version = Attribute("The TLCP version spoken (the session may lower it).")

    def open_stream(base_url: str, request: Request, sink: StreamSink) -> IStream:
        """A new stream for ``request`` feeding ``sink``; nothing is sent until `start`."""

    def close() -> Deferred[None]:
        """Release every connection the transport holds; fires when they are gone."""


class IControlTransport(ITransport):
    """A transport that also sends control batches on their own connections (HTTP)."""

    def send_control(
        base_url: str, session_id: str, requests: Sequence[Request]
    ) -> Deferred[list[bytes]]:
        """Send one batch (requests of the same name); fires with the reply's lines."""


class StreamSink(Protocol):
    """What a stream calls (the session implements it)."""

    def stream_lines(self, stream: IStream, lines: list[bytes]) -> None:
        """The complete lines (without CR LF) of one read, in order."""

    def stream_ended(self, stream: IStream, reason: Failure) -> None:
        """
        The stream is over (reported once, never after `IStream.stop`). ``reason``
        wraps `StreamClosed` for a clean end, a `TransportError` or `ProtocolError`
        otherwise.
        """
