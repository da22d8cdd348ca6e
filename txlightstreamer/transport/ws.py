"""
WebSocket transport: TLCP streams (and control requests) over autobahn's Twisted client.

Each stream is a new WebSocket to ``ws[s]://<server>[/prefix]/lightstreamer`` with the
subprotocol ``TLCP-<version>.lightstreamer.com``: it sends ``wsok`` and the create/bind
request, then feeds every line of every server message to the sink. Control requests of
the bound session go on the same socket (`WsStream.send_requests`); their answers come
back as lines of the stream.

Connections go through the client's `EndpointRouter` (direct TCP, a user endpoint or a
proxy tunnel, with TLS verified by the client's policy): never autobahn's ``connectWS``,
which does not verify certificates.
"""

from __future__ import annotations

import email.message
import re
import urllib.request
from collections.abc import Mapping, Sequence
from http.cookiejar import CookieJar
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from hyperlink import URL
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from zope.interface import implementer

from txlightstreamer._version import __version__
from txlightstreamer.errors import ProtocolError, TransportError
from txlightstreamer.protocol import WSOK_MESSAGE, Request, ws_message, ws_subprotocol
from txlightstreamer.protocol.errors import redact_line
from txlightstreamer.transport._base import StreamBase, connection_error, describe_failure
from txlightstreamer.transport._endpoints import EndpointRouter
from txlightstreamer.transport._lines import split_lines
from txlightstreamer.transport._reads import SocketReads
from txlightstreamer.transport._wsframes import cut_short, text_frames
from txlightstreamer.transport.interfaces import (
    IRequestStream,
    ITransport,
    StreamClosed,
    StreamSink,
)

__all__ = ["WsStream", "WsTransport", "ws_url"]

log = Logger()

_WSOK = b"WSOK"
_STATUS = re.compile(r"^HTTP/\d\.\d\s+(\d{3})")


def ws_url(base: str) -> str:
    """The WebSocket address of a server base URL: http→ws, https→wss, ``/lightstreamer``."""
    url = URL.from_text(base)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(url.scheme)
    if scheme is None:
        raise ValueError(f"cannot open a WebSocket to {base!r}")
    path = [segment for segment in url.path if segment] + ["lightstreamer"]
    return url.replace(scheme=scheme, path=path, query=(), fragment="").to_text()


def _http_equivalent(url: str) -> str:
    """The http(s) address matching a ws(s) one (cookies are matched on it)."""
    return "http" + url[2:] if url.startswith("ws") else url


def _abort(proto: WebSocketClientProtocol | None) -> None:
    """Drop a socket at once (no close handshake)."""
    if proto is not None and proto.transport is not None:
        cast(Any, proto.transport).abortConnection()


class _CookieResponse:
    """What `CookieJar.extract_cookies` needs from a response: its headers."""

    def __init__(self, set_cookies: Sequence[str]) -> None:
        self._headers = email.message.Message()
        for value in set_cookies:
            self._headers["Set-Cookie"] = value

    def info(self) -> email.message.Message:
        return self._headers


class _TlcpClientProtocol(WebSocketClientProtocol):
    """Forwards autobahn's callbacks to the `WsStream` that opened the socket."""

    stream: WsStream
    lost_reason: Failure | None = None
    reads = SocketReads(None)

    def connectionMade(self) -> None:  # noqa: N802
        self.reads = SocketReads(self.transport)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.reads.saw(len(data))  # sizes the socket's next reads
        super().dataReceived(data)

    def onConnect(self, response: Any) -> None:  # noqa: N802
        self.stream._handshake(self, response)

    def onOpen(self) -> None:  # noqa: N802
        self.stream._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        self.stream._message(payload, isBinary)

    def processData(self) -> bool:  # noqa: N802
        # Whole final text frames, nearly all a stream receives, are cut from the buffer in
        # one pass, and one not yet whole waits in the buffer for the rest; anything else
        # (control frames, fragments, limits, compression, logs, timings) goes through
        # autobahn as before.
        try:
            plain = (self.current_frame is None and not self.inside_message
                     and self.state == WebSocketProtocol.STATE_OPEN and not self.logFrames
                     and self._perMessageCompress is None and not self.trackedTimings)
            sizes = (self.maxFramePayloadSize,  # type: ignore[attr-defined]
                     self.maxMessagePayloadSize)  # type: ignore[attr-defined]
            limits = [size for size in sizes if size > 0]
        except AttributeError:  # another autobahn: its own path only
            plain = False
        if not plain:
            return bool(super().processData())
        limit = min(limits) if limits else 0
        payloads, used = text_frames(self.data, limit)
        if not used:
            if cut_short(self.data, limit):
                return False  # the rest of the frame comes with a later read
            return bool(super().processData())
        self.data = self.data[used:]
        stats = self.trafficStats
        octets = sum(map(len, payloads))
        stats.incomingOctetsWebSocketLevel += octets
        stats.incomingOctetsAppLevel += octets
        stats.incomingWebSocketFrames += len(payloads)
        stats.incomingWebSocketMessages += len(payloads)
        if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
            self._cancelAutoPingTimeoutCall()
        stream = self.stream
        for payload in payloads:
            stream._message(payload, False)
        return len(self.data) > 0

    def onMessageEnd(self) -> None:  # noqa: N802
        # autobahn's also fires a "message" event (a Deferred and callbacks per message)
        # that nothing here listens to; a WS message is often a few lines only.
        parts = getattr(self, "message_data", None)
        if (type(parts) is not list or getattr(self, "failedByMe", True)
                or getattr(self, "trackedTimings", None)):
            super().onMessageEnd()
            return
        setattr(self, "message_data", None)  # noqa: B010 (autobahn's, untyped)
        self.stream._message(b"".join(parts), bool(getattr(self, "message_is_binary", False)))

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> Any:  # noqa: N802, N803
        done = super().onCloseFrame(code, reasonRaw)
        # The server's close ends the stream now: no autobahn timer waits for its TCP drop.
        if self.transport is not None:
            self.transport.loseConnection()
        return done

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        self.stream._closed(self, wasClean, code, reason)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.lost_reason = reason
        try:
            super().connectionLost(reason)
        finally:
            self.stream._transport._forget(self)


class _Factory(WebSocketClientFactory):
    protocol = _TlcpClientProtocol
    noisy = False

    def __init__(self, stream: WsStream, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stream = stream

    def buildProtocol(self, addr: Any) -> _TlcpClientProtocol:  # noqa: N802
        proto = cast(_TlcpClientProtocol, super().buildProtocol(addr))
        proto.stream = self.stream
        self.stream._transport._track(proto)
        return proto


@implementer(IRequestStream)
class WsStream(StreamBase):
    """
    One WebSocket carrying one TLCP stream (a create or bind, then its notifications).

    Lines reach the sink as they arrive (``WSOK`` included; anything before it is
    dropped, as the official client does); `stop` closes the socket and guarantees no
    further line is delivered.
    """

    def __init__(self, transport: WsTransport, base_url: str, request: Request,
                 sink: StreamSink) -> None:
        super().__init__(ws_url(base_url), request, sink, transport.reactor,
                         transport.connect_timeout)
        self._transport = transport
        self._open = False
        self._wsok = False
        self._connect_d: Deferred[Any] | None = None
        self._proto: _TlcpClientProtocol | None = None
        self._subprotocol = ""

    # -- the stream API ------------------------------------------------------------------

    def start(self) -> None:
        """Open the socket; the request is sent once the handshake is done."""
        t = self._transport
        url = URL.from_text(self.url)
        secure = url.scheme == "wss"
        port = url.port or (443 if secure else 80)
        self._subprotocol = ws_subprotocol(t.protocol_version)
        create = self._request.name == "create_session"
        headers = t.handshake_headers(self.url, create)
        useragent = f"txlightstreamer/{__version__}"
        for name in [n for n in headers if n.lower() == "user-agent"]:
            useragent = headers.pop(name)  # autobahn writes this header itself
        factory = _Factory(
            self, self.url, protocols=[self._subprotocol],
            useragent=useragent, headers=headers, reactor=t.reactor)
        # No autobahn timers (they outlive the socket in txaio's batched timer): our own
        # timeout covers the opening, and stop() closes the socket without waiting.
        factory.setProtocolOptions(
            openHandshakeTimeout=0, closeHandshakeTimeout=0, serverConnectionDropTimeout=0,
            perMessageCompressionOffers=[], autoPingInterval=0)
        self._arm_timeout()
        try:
            endpoint = t.router.endpoint(url.host, port, secure)
            d = endpoint.connect(factory)
        except Exception:
            self._connect_failed(Failure())
            return
        self._connect_d = d
        d.addCallbacks(self._connected, self._connect_failed)

    def _close(self) -> None:
        proto = self._proto
        if proto is None:
            if self._connect_d is not None and not self._connect_d.called:
                self._connect_d.cancel()
            return
        if proto.transport is None or proto.state == WebSocketProtocol.STATE_CLOSED:
            return
        if proto.state == WebSocketProtocol.STATE_OPEN:
            proto.sendClose(1000)  # a polite close frame, then the socket goes at once
            proto.transport.loseConnection()
        else:
            _abort(proto)

    def send_requests(self, requests: Sequence[Request]) -> None:
        """Write a batch of control/msg requests (one WS message) on this socket."""
        proto = self._proto
        if proto is None or not self._writable(proto):
            log.debug("Requests not sent: {stream!r} is not open", stream=self)
            return
        proto.sendMessage(ws_message(requests).encode("utf-8"), isBinary=False)

    def rebind(self, request: Request) -> bool:
        """The next bind (a poll) on this same socket; False if it is not open any more."""
        proto = self._proto
        if proto is None or not self._writable(proto):
            return False
        self._request = request
        proto.sendMessage(ws_message([request]).encode("utf-8"), isBinary=False)
        return True

    def _writable(self, proto: _TlcpClientProtocol) -> bool:
        # Not once a close frame came: autobahn's sendMessage would raise.
        return (not (self._stopped or self._ended) and self._open
                and proto.state == WebSocketProtocol.STATE_OPEN)

    # -- connection events ---------------------------------------------------------------

    def _connected(self, proto: _TlcpClientProtocol) -> None:
        self._proto = proto
        if self._stopped:
            _abort(proto)

    def _handshake(self, proto: _TlcpClientProtocol, response: Any) -> None:
        self._proto = proto
        selected = getattr(response, "protocol", None)
        if selected not in (None, self._subprotocol):
            raise ProtocolError(f"server selected subprotocol {selected!r}")
        raw = getattr(proto, "http_response_data", b"") or b""
        self._transport.store_cookies(self.url, raw)

    def _opened(self, proto: _TlcpClientProtocol) -> None:
        self._proto = proto
        self._open = True
        if self._stopped:
            proto.sendClose(1000)
            if proto.transport is not None:
                proto.transport.loseConnection()
            return
        proto.sendMessage(WSOK_MESSAGE.encode("ascii"), isBinary=False)
        proto.sendMessage(ws_message([self._request]).encode("utf-8"), isBinary=False)
        # A create before WSOK is Stream-Sense's "WebSocket unavailable" (tlcp.md §7.2): at
        # most the server made a session we never hear of, and HTTP creates another.
        self.request_sent = self._request.name != "create_session"
        self._producer_ready()

    def _producer(self) -> Any:
        # Paused only once WSOK came: a paused socket would stall the handshake, or hold
        # the WSOK back and be taken for a WebSocket not answering (tlcp.md §7.2).
        proto = self._proto
        return proto.transport if proto is not None and self._wsok else None

    def _message(self, payload: bytes, is_binary: bool) -> None:
        if self._stopped or self._ended:
            return
        if is_binary:
            self._fail(ProtocolError("binary WebSocket message from the server"))
            return
        limit = self._transport.max_line_length
        lines = split_lines(payload)
        if self._wsok and len(payload) <= limit:
            # The usual message: no line can be too long; a message ends with its last CRLF.
            if lines[-1] == b"":
                lines.pop()
            if b"" in lines:
                lines = [line for line in lines if line]
            self._deliver(lines)
            return
        kept: list[bytes] = []
        for line in lines:
            if not line:
                continue
            if len(line) > limit:
                self._deliver(kept)
                if not (self._stopped or self._ended):
                    self._fail(ProtocolError(f"line longer than {limit} bytes",
                                             line[:200].decode("utf-8", "replace")))
                return
            if not self._wsok:
                if line != _WSOK:
                    log.warn("Ignoring {line!r} received before WSOK on {url}",
                             line=redact_line(line.decode("utf-8", "replace"),
                                              self._request.get("LS_password"))[:80],
                             url=self.url)
                    continue
                self._wsok = True
                self.request_sent = True
                self._producer_ready()  # what follows is held by a paused reader
            kept.append(line)
        self._deliver(kept)

    def _closed(self, proto: _TlcpClientProtocol, was_clean: bool, code: int | None,
                reason: str | None) -> None:
        self._cancel_timeout()
        if self._stopped or self._ended:
            return
        if not self._open:
            self._finish(Failure(self._handshake_error(proto, reason)))
        elif was_clean and (reason or code not in (None, 1000, 1005)):
            # The server's own words on why (1011, an adapter failure...): told and logged.
            self._finish(Failure(TransportError(
                f"the server closed the WebSocket (code {code}: "
                f"{redact_line(reason or 'no reason', self._request.get('LS_password'))})",
                url=self.url)))
        elif was_clean:
            self._finish(Failure(StreamClosed()))
        else:
            lost = proto.lost_reason
            detail = describe_failure(lost) if lost is not None else reason
            self._finish(Failure(TransportError(
                f"WebSocket broken (code {code}): {detail}", url=self.url)))

    def _handshake_error(self, proto: _TlcpClientProtocol, reason: str | None) -> TransportError:
        status_line = getattr(proto, "http_status_line", None) or ""
        match = _STATUS.match(status_line)
        if match and match.group(1) != "101":
            code = int(match.group(1))
            return TransportError(
                f"WebSocket handshake refused by the server: {status_line.strip()}",
                url=self.url, status=code, retryable=code >= 500)
        lost = proto.lost_reason
        if lost is not None and not lost.check(ResponseDone):
            error = connection_error(lost, self.url)
            if not error.retryable:
                return error
            reason = f"{reason} ({describe_failure(lost)})"
        return TransportError(f"WebSocket handshake failed: {reason}", url=self.url)

    def _expire(self) -> None:
        self._finish(Failure(self._timeout_error("WebSocket not answering")))
        if self._connect_d is not None and not self._connect_d.called:
            self._connect_d.cancel()
        else:
            _abort(self._proto)

    def _abort(self) -> None:
        _abort(self._proto)


@implementer(ITransport)
class WsTransport:
    """Opens WebSocket streams for one client."""

    def __init__(
        self,
        *,
        reactor: Any,
        router: EndpointRouter,
        protocol_version: str,
        connect_timeout: float,
        max_line_length: int,
        headers: Mapping[str, str] | None = None,
        create_headers: Mapping[str, str] | None = None,
        cookie_jar: CookieJar | None = None,
    ) -> None:
        self.reactor = reactor
        self.router = router
        self.protocol_version = protocol_version
        self.connect_timeout = connect_timeout
        self.max_line_length = max_line_length
        self.headers: dict[str, str] = dict(headers or {})
        self.create_headers: dict[str, str] = dict(create_headers or {})
        self.cookie_jar = cookie_jar
        self._live: dict[_TlcpClientProtocol, Deferred[None]] = {}

    def open_stream(self, base_url: str, request: Request, sink: StreamSink) -> WsStream:
        """A new stream for ``request``; nothing is sent until its `start`."""
        return WsStream(self, base_url, request, sink)

    def handshake_headers(self, url: str, create: bool) -> dict[str, str]:
        """Headers of a handshake: configured ones, creation ones, and the jar's cookies."""
        headers = dict(self.headers)
        if create:
            headers.update(self.create_headers)
        if self.cookie_jar is not None:
            probe = urllib.request.Request(_http_equivalent(url))
            self.cookie_jar.add_cookie_header(probe)
            cookie = probe.unredirected_hdrs.get("Cookie")
            if cookie:
                headers["Cookie"] = cookie
        return headers

    def store_cookies(self, url: str, raw_response: bytes) -> None:
        """Put the ``Set-Cookie`` headers of a handshake reply in the jar."""
        if self.cookie_jar is None:
            return
        values = []
        for line in raw_response.decode("latin-1").split("\r\n")[1:]:
            name, sep, value = line.partition(":")
            if sep and name.strip().lower() == "set-cookie":
                values.append(value.strip())
        if values:
            self.cookie_jar.extract_cookies(
                _CookieResponse(values),  # type: ignore[arg-type]
                urllib.request.Request(_http_equivalent(url)))

    def close(self) -> Deferred[None]:
        """Drop every socket still open; fires once they are all gone."""
        waits = list(self._live.values())
        for proto in list(self._live):
            _abort(proto)
        return gatherResults(waits).addCallback(lambda _: None)

    def _track(self, proto: _TlcpClientProtocol) -> None:
        self._live[proto] = Deferred()

    def _forget(self, proto: _TlcpClientProtocol) -> None:
        d = self._live.pop(proto, None)
        if d is not None:
            d.callback(None)
