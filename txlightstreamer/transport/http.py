"""
HTTP transport: TLCP streams and control batches over treq.

A stream is one POST whose unbuffered body is fed, line by line, to a sink; a control
batch is one POST whose (short) body is read whole and parsed into responses. Nothing
here knows about sessions or tables.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hyperlink import EncodedURL
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from twisted.web import http as twisted_http
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer

from txlightstreamer.errors import ProtocolError, TransportError
from txlightstreamer.protocol import Request, http_body, protocol_param
from txlightstreamer.protocol.errors import redact_line
from txlightstreamer.transport._base import StreamBase, connection_error, describe_failure
from txlightstreamer.transport._chunks import can_cut_into, cut_into
from txlightstreamer.transport._lines import split_lines
from txlightstreamer.transport._reads import SocketReads
from txlightstreamer.transport.interfaces import IControlTransport, StreamClosed, StreamSink

__all__ = ["HttpStream", "HttpTransport", "server_url"]

log = Logger()

_HEADERS = {b"Content-Type": [b"text/plain; charset=utf-8"]}
# A body that ended normally (Twisted's protocols take a default reason).
_BODY_DONE = Failure(ResponseDone())
# Longest reply body we read for a control batch or an error page.
_MAX_SHORT_BODY = 1 << 20
# Twisted's private response parser and chunked decoder (None if they are gone).
try:
    from twisted.web import _newclient
except ImportError:  # a Twisted without it: every body is read chunk by chunk
    _newclient = None  # type: ignore[assignment]
_PARSER: Any = getattr(_newclient, "HTTPClientParser", None)
_CHUNKED: Any = getattr(twisted_http, "_ChunkedTransferDecoder", None)


def server_url(base: str, request_name: str) -> str:
    """The address of a TLCP request under a server base URL (which may have a path prefix)."""
    return f"{base.rstrip('/')}/lightstreamer/{request_name}.txt"


class _Uri(EncodedURL):
    """A URL already made a URI: treq's own ``to_uri()`` runs IDNA on an IPv6 literal."""

    def to_uri(self, *args: Any, **kwargs: Any) -> EncodedURL:
        return self


def request_uri(url: str, params: Sequence[tuple[str, str]]) -> EncodedURL:
    """``url`` with ``params``, as a URI treq sends as it is (IPv6 literals included)."""
    parsed = EncodedURL.from_text(url)
    for name, value in params:
        parsed = parsed.add(name, value)
    host = parsed.host
    if ":" in host:
        # An IPv6 literal: nothing for IDNA to encode, and it would refuse the colons.
        uri = parsed.replace(host="ipv6.invalid").to_uri().replace(host=host)
    else:
        uri = parsed.to_uri()
    return _Uri.from_text(uri.to_text())


def _request(client: Any, url: str, params: Sequence[tuple[str, str]], **kwargs: Any
             ) -> Deferred[Any]:
    """A POST through a treq-like client; a request that cannot even be built fails the
    Deferred with a `TransportError` (never the library's own exception)."""
    try:
        if "[" in url.split("/", 3)[2]:  # an IPv6 literal host
            d: Deferred[Any] = client.request("POST", request_uri(url, params), **kwargs)
        else:
            d = client.request("POST", url, params=params, **kwargs)
    except Exception as e:
        return fail(TransportError(
            f"cannot send a request: {type(e).__name__}: {e}", url=url,
            retryable=False))
    return d


def _chunk_decoder(response: Any) -> Any:
    """
    Twisted's chunked-body decoder of ``response``, or None where it is not found (another
    HTTP client, a test double, a body not chunked). Found through Twisted's private
    attributes, checked at each step: without them the body is read chunk by chunk.
    """
    response = getattr(response, "original", response)  # treq's wrapper of Twisted's
    node = _socket_of(response)
    parser = None
    for _ in range(5):  # socket -> endpoint's wrapper (TLS -> wrapper) -> HTTP protocol
        parser = getattr(node, "_parser", None)
        if parser is not None:
            break
        node = (getattr(node, "_wrappedProtocol", None) or getattr(node, "wrappedProtocol", None)
                or getattr(node, "protocol", None))
    if _PARSER is None or not isinstance(parser, _PARSER):
        return None
    if getattr(parser, "response", None) is not response:
        return None
    decoder = getattr(parser, "bodyDecoder", None)
    if _CHUNKED is None or type(decoder) is not _CHUNKED or "dataReceived" in vars(decoder):
        return None
    return decoder


def _socket_of(response: Any) -> Any:
    """The connection ``response`` is read from (Twisted's private attribute), or None."""
    response = getattr(response, "original", response)
    return getattr(getattr(response, "_transport", None), "_producer", None)


class _LineReceiver(LineOnlyReceiver):
    """Splits the response body into lines for one `HttpStream`."""

    delimiter = b"\r\n"

    def __init__(self, stream: HttpStream, max_length: int) -> None:
        self._stream = stream
        self.MAX_LENGTH = max_length
        #: The chunks of the TCP read being decoded (None: each chunk is read alone).
        self._pieces: list[bytes] | None = None

    def gather_reads(self, decoder: Any, reads: SocketReads) -> None:
        """
        Read what ``decoder`` (Twisted's chunked decoder of this body) decodes from one TCP
        read as one piece: one split and one hand-over per read, not per HTTP chunk. Each
        read reaches this wrapper of the decoder whole, so ``reads`` sizes the socket's next
        reads by it. Its plain chunks are cut in one pass (`cut_into`); the decoder's own
        ``dataReceived`` reads only the rest.
        """
        decode = decoder.dataReceived
        if can_cut_into(decoder):
            def cut(data: bytes) -> None:
                cut_into(decoder, decode, data)
        else:  # a decoder of another shape: its own reading only
            cut = decode

        def read(data: bytes) -> None:
            reads.saw(len(data))
            self.as_one_read(cut, data)

        decoder.dataReceived = read

    def as_one_read(self, deliver: Callable[..., object], *args: Any) -> None:
        """Call ``deliver``; the chunks it hands this receiver are read as one piece."""
        self._pieces = []
        try:
            deliver(*args)
        finally:
            pieces, self._pieces = self._pieces, None
            if pieces:
                self._read(b"".join(pieces))

    def dataReceived(self, data: bytes) -> None:
        if self._pieces is not None:
            self._pieces.append(data)  # one chunk of a read: read once the read is decoded
        else:
            self._read(data)

    def _read(self, data: bytes) -> None:
        # LineOnlyReceiver's job, specialised: one split per read and all its lines to
        # the sink in one call (this is where the hot path of the whole client starts).
        carry = self._buffer
        size = len(carry) + len(data)
        if carry and not carry.endswith(b"\r"):
            # The line begun in the last read joins the first of this one, not the whole
            # read (a copy of up to 128 KiB): no CRLF can straddle the two.
            lines = split_lines(data)
            lines[0] = carry + lines[0]
        else:
            lines = split_lines(carry + data if carry else data)
        self._buffer = lines.pop()
        stream = self._stream
        if stream._stopped or stream._ended:
            return
        limit = self.MAX_LENGTH
        if size > limit:
            for index, line in enumerate(lines):
                if len(line) > limit:
                    if index:
                        stream._sink.stream_lines(stream, lines[:index])
                    if not (stream._stopped or stream._ended):
                        self.lineLengthExceeded(line)
                    return
        if lines:
            stream._sink.stream_lines(stream, lines)
        if len(self._buffer) > limit and not (stream._stopped or stream._ended):
            self.lineLengthExceeded(self._buffer)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._buffer = b""
        self._stream._fail(
            ProtocolError(f"line longer than {self.MAX_LENGTH} bytes", line[:200].decode(
                "utf-8", "replace"))
        )

    def connectionLost(self, reason: Failure = _BODY_DONE) -> None:
        pieces, self._pieces = self._pieces, None
        if pieces:  # the body ended within a read: its last chunks first
            self._read(b"".join(pieces))
        self._stream._body_lost(reason)


class _ShortBody(TwistedProtocol):
    """Collects a bounded response body."""

    def __init__(self, done: Deferred[bytes], limit: int = _MAX_SHORT_BODY) -> None:
        self._done = done
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = limit

    def dataReceived(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            if self.transport is not None:
                self.transport.stopProducing()  # type: ignore[attr-defined]
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = _BODY_DONE) -> None:
        if self._done.called:  # cancelled: its connection was dropped
            return
        body = b"".join(self._parts)
        if reason.check(ResponseDone, PotentialDataLoss) or self._size > self._limit:
            self._done.callback(body)
        else:
            self._done.errback(reason)


def _read_short_body(response: Any) -> tuple[Deferred[bytes], Any]:
    """The body of ``response`` (bounded in size), and its transport: cancelling the
    Deferred drops the connection, as stopping the transport does."""
    def cancel(_: Deferred[bytes]) -> None:
        if reader.transport is not None:
            reader.transport.stopProducing()  # type: ignore[attr-defined]

    done: Deferred[bytes] = Deferred(cancel)
    reader = _ShortBody(done)
    response.deliverBody(reader)
    return done, reader.transport


def request_headers(
    base: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[bytes, list[bytes]]:
    """The TLCP content type plus the configured headers (later ones win)."""
    headers = dict(_HEADERS)
    for source in (base, extra or {}):
        for name, value in source.items():
            headers[name.encode("latin-1")] = [value.encode("latin-1")]
    return headers


def _readable(body: bytes, secret: str | None = None) -> str:
    """
    An error page as one short line of text: an HTML page's tags go (issue 19), and so
    does the password (``secret``), which a proxy may echo in any form.
    """
    text = body[:4000].decode("utf-8", "replace")
    if re.search(r"<(!doctype|html|head|body|title|h1|p)\b", text, re.I):
        text = re.sub(r"<(script|style)\b.*?</\1\s*>", " ", text, flags=re.I | re.S)
        text = html.unescape(re.sub(r"<[^>]*>", " ", text))
    return redact_line(" ".join(text.split()), secret)


def _status_error(response: Any, body: bytes, url: str,
                  secret: str | None = None) -> TransportError:
    code = int(response.code)
    snippet = _readable(body, secret)
    # Server-side failures may pass; client-side ones (4xx, redirects) will not.
    retryable = code >= 500
    kind = "redirect" if 300 <= code < 400 else "HTTP error"
    return TransportError(
        f"{kind} {code} from server: {snippet!r}" if snippet else f"{kind} {code} from server",
        url=url, status=code, retryable=retryable,
    )


class HttpStream(StreamBase):
    """
    One TLCP stream connection (a ``create_session`` or ``bind_session`` POST).

    Lines go to the sink as they arrive; `stop` ends the connection and guarantees
    no further line is delivered.
    """

    def __init__(
        self,
        transport: HttpTransport,
        base_url: str,
        request: Request,
        sink: StreamSink,
    ) -> None:
        super().__init__(server_url(base_url, request.name), request, sink,
                         transport.clock, transport.connect_timeout)
        self._transport = transport
        self._request_d: Deferred[Any] | None = None
        self._body_transport: Any = None

    def start(self) -> None:
        """Send the request. Lines may reach the sink before this returns."""
        t = self._transport
        create = self._request.name == "create_session"
        d = _request(
            t.stream_client,
            self.url,
            [("LS_protocol", protocol_param(t.protocol_version))],
            data=http_body([self._request]),
            headers=request_headers(t.headers, t.create_headers if create else None),
            unbuffered=True,
            allow_redirects=False,
        )
        self._request_d = d
        # Whether the request reached the server is unknown until a connection fails.
        self.request_sent = True
        self._arm_timeout()
        d.addCallbacks(self._got_response, self._connect_failed)

    def _close(self) -> None:
        if self._body_transport is not None:
            self._body_transport.stopProducing()
        elif self._request_d is not None:
            self._request_d.cancel()

    def _abort(self) -> None:
        self.stop()

    def _expire(self) -> None:
        if self._request_d is not None and self._body_transport is None:
            self._finish(Failure(self._timeout_error("no response")))
            self._request_d.cancel()

    def _got_response(self, response: Any) -> None:
        self._cancel_timeout()
        if self._stopped or self._ended:
            unwanted, _ = _read_short_body(response)
            unwanted.addErrback(lambda _: None)
            unwanted.cancel()  # nobody reads it: drop its connection
            return
        code = int(response.code)
        ctype = b";".join(response.headers.getRawHeaders(b"content-type", [])).lower()
        if code != 200:
            # Read to give the cause; the stream's stop drops it (an error page may not end).
            body_d, self._body_transport = _read_short_body(response)
            body_d.addBoth(
                lambda body: self._finish(Failure(_status_error(
                    response, body if isinstance(body, bytes) else b"", self.url,
                    self._request.get("LS_password"))))
            )
            return
        if b"html" in ctype:
            body_d, self._body_transport = _read_short_body(response)
            body_d.addBoth(lambda _: self._finish(Failure(TransportError(
                "the server answered with an HTML page, not TLCP "
                "(wrong URL, or a proxy/captive portal in the way)",
                url=self.url, status=code, retryable=False))))
            return
        receiver = _LineReceiver(self, self._transport.max_line_length)
        decoder = _chunk_decoder(response)
        # What came with the headers was kept chunk by chunk: one piece as well.
        receiver.as_one_read(response.deliverBody, receiver)
        if decoder is not None:
            receiver.gather_reads(decoder, SocketReads(_socket_of(response)))
        self._body_transport = receiver.transport
        self._producer_ready()

    def _producer(self) -> Any:
        return self._body_transport

    def _body_lost(self, reason: Failure) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self._finish(Failure(StreamClosed()))
        else:
            self._finish(Failure(TransportError(
                f"stream broken: {describe_failure(reason)}", url=self.url)))


@implementer(IControlTransport)
class HttpTransport:
    """
    Opens HTTP streams and sends control batches for one client.

    ``stream_client`` and ``control_client`` are treq-like objects (the ``treq``
    module, an ``HTTPClient``, or ``treq.testing.StubTreq``).
    """

    def __init__(
        self,
        *,
        stream_client: Any,
        control_client: Any,
        clock: IReactorTime,
        protocol_version: str,
        connect_timeout: float,
        max_line_length: int,
        pools: Sequence[Any] = (),
        headers: Mapping[str, str] | None = None,
        create_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.stream_client = stream_client
        self.control_client = control_client
        self.clock = clock
        self.protocol_version = protocol_version
        self.connect_timeout = connect_timeout
        self.max_line_length = max_line_length
        self._pools = pools
        #: Extra headers for every request, and for ``create_session`` only.
        self.headers: dict[str, str] = dict(headers or {})
        self.create_headers: dict[str, str] = dict(create_headers or {})
        #: Other transports of the same client, closed together with this one.
        self.companions: list[Any] = []
        # Control requests on their way: `close` drops them with the pools.
        self._in_flight: set[Deferred[list[bytes]]] = set()

    def open_stream(self, base_url: str, request: Request, sink: StreamSink) -> HttpStream:
        """A new stream for ``request``; nothing is sent until its `start`."""
        return HttpStream(self, base_url, request, sink)

    def send_control(
        self, base_url: str, session_id: str, requests: Sequence[Request]
    ) -> Deferred[list[bytes]]:
        """POST one batch (all requests of the same name); fires with the reply's lines."""
        url = server_url(base_url, requests[0].name)
        d = _request(
            self.control_client,
            url,
            [
                ("LS_protocol", protocol_param(self.protocol_version)),
                ("LS_session", session_id),
            ],
            data=http_body(requests),
            headers=request_headers(self.headers),
            unbuffered=True,
            allow_redirects=False,
        )
        # No time limit here: connecting has the agent's, and the whole reply the caller's
        # (a control answer may take 10 s, tlcp.md §7.2; a heartbeat's, a destroy's).

        def got_response(response: Any) -> Deferred[list[bytes]]:
            body_d, _ = _read_short_body(response)
            if int(response.code) != 200:
                def fail(body: bytes) -> list[bytes]:
                    raise _status_error(response, body, url)
                return body_d.addCallback(fail)
            return body_d.addCallback(lambda body: [ln for ln in body.split(b"\r\n") if ln])

        def failed(failure: Failure) -> Failure:
            if failure.check(TransportError):
                return failure
            return Failure(connection_error(failure, url))

        result: Deferred[list[bytes]] = d.addCallback(got_response).addErrback(failed)
        self._in_flight.add(result)

        def settled(outcome: Any) -> Any:
            self._in_flight.discard(result)
            return outcome

        return result.addBoth(settled)

    def close(self) -> Deferred[None]:
        """Drop the control requests on their way, close the connection pools this
        transport owns, and its companion transports."""
        from twisted.internet.defer import gatherResults

        for request in list(self._in_flight):
            request.cancel()
        ds = [pool.closeCachedConnections() for pool in self._pools]
        ds += [companion.close() for companion in self.companions]
        return gatherResults(ds).addCallback(lambda _: None)
