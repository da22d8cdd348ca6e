"""
An HTTP stream hands the sink the lines of one TCP read at once, however many HTTP chunks
the read holds (Twisted's chunked decoder is still the one that decodes them), and the
lines, their order and the stream's end are what they were chunk by chunk.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import treq
from hypothesis import given
from hypothesis import strategies as st
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

from txlightstreamer.errors import TransportError
from txlightstreamer.protocol import create_session
from txlightstreamer.transport import HttpTransport
from txlightstreamer.transport.http import _chunk_decoder, _LineReceiver
from txlightstreamer.transport.interfaces import StreamClosed

from .support import one_update, wait_until


def _chunks(lines: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(line) + 2, line + b"\r\n") for line in lines)


class _OneWrite(Protocol):
    """Answers any request with ``body`` (already chunk-framed), in one write."""

    body = b""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if b"\r\n\r\n" in data and self.transport is not None:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            self.transport.write(head + b"Transfer-Encoding: chunked\r\n\r\n" + self.body)
            self.body = b""


class _Sink:
    def __init__(self) -> None:
        self.reads: list[list[bytes]] = []
        self.ended: list[Failure] = []

    def stream_lines(self, stream: Any, lines: list[bytes]) -> None:
        self.reads.append(list(lines))

    def stream_ended(self, stream: Any, reason: Failure) -> None:
        self.ended.append(reason)

    @property
    def lines(self) -> list[bytes]:
        return [line for read in self.reads for line in read]


async def _run(body: bytes, sink: _Sink, done: Any) -> None:
    factory = Factory.forProtocol(_OneWrite)
    _OneWrite.body = body
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[arg-type]
    pool = HTTPConnectionPool(reactor, persistent=False)
    client = HTTPClient(Agent(reactor, pool=pool))
    transport = HttpTransport(
        stream_client=client,
        control_client=client,
        clock=reactor,
        protocol_version="2.5.0",
        connect_timeout=5.0,
        max_line_length=1 << 16,
    )
    stream = transport.open_stream(
        f"http://127.0.0.1:{port.getHost().port}", create_session(), sink
    )
    try:
        stream.start()
        await wait_until(lambda: done(sink), timeout=10)
    finally:
        stream.stop()
        await pool.closeCachedConnections()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_many_chunks_in_one_read_are_one_hand_over() -> None:
    lines = [b"U,1,%d,value %d" % (i % 5 + 1, i) for i in range(200)]
    sink = _Sink()
    await _run(_chunks(lines), sink, lambda s: len(s.lines) >= 200)
    assert sink.lines == lines
    # 200 chunks written at once on loopback: a handful of reads, not 200 hand-overs.
    assert len(sink.reads) < 20
    assert sink.ended == []


@pytest_twisted.ensureDeferred
async def test_a_line_across_chunks_and_the_end_in_the_same_read() -> None:
    body = (
        b"4\r\nU,1,\r\n"
        + b"5\r\n1,abc\r\n"
        + b"2\r\n\r\n\r\n"
        + _chunks([b"LOOP,0"])
        + b"0\r\n\r\n"
    )
    sink = _Sink()
    await _run(body, sink, lambda s: bool(s.ended))
    assert sink.lines == [b"U,1,1,abc", b"LOOP,0"]
    (reason,) = sink.ended
    assert reason.check(StreamClosed)


@pytest_twisted.ensureDeferred
async def test_lines_before_a_malformed_chunk_arrive_then_the_stream_breaks() -> None:
    body = _chunks([b"PROBE", b"U,1,1,x"]) + b"zz\r\nbroken\r\n"
    sink = _Sink()
    await _run(body, sink, lambda s: bool(s.ended))
    assert sink.lines == [b"PROBE", b"U,1,1,x"]
    (reason,) = sink.ended
    assert isinstance(reason.value, TransportError)


@pytest_twisted.ensureDeferred
async def test_the_decoder_is_found_on_a_real_response() -> None:
    found: list[Any] = []
    factory = Factory.forProtocol(_OneWrite)
    _OneWrite.body = _chunks([b"PROBE"]) + b"0\r\n\r\n"
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[arg-type]
    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        response = await HTTPClient(Agent(reactor, pool=pool)).post(
            f"http://127.0.0.1:{port.getHost().port}/", data=b"x", unbuffered=True
        )
        found.append(_chunk_decoder(response))
        assert await treq.content(response) == b"PROBE\r\n"
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()
    assert found[0] is not None
    assert _chunk_decoder(object()) is None


@pytest_twisted.ensureDeferred
async def test_the_decoder_is_found_over_tls_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.internet import ssl

    from txlightstreamer import LsClient
    from txlightstreamer.testing import TlcpServer
    from txlightstreamer.transport import TransportOptions, http

    from .test_tls import make_pki

    ca_pem, cert_pem, key_pem = make_pki()
    found: list[Any] = []
    original = http._chunk_decoder

    def spy(response: Any) -> Any:
        found.append(original(response))
        return found[-1]

    monkeypatch.setattr(http, "_chunk_decoder", spy)
    server = TlcpServer(keepalive_millis=1000)
    options = ssl.PrivateCertificate.loadPEM(cert_pem + key_pem).options()
    await server.listen(reactor, port=0, interface="127.0.0.1", tls=options)
    client = LsClient(
        server.url,
        forced_transport="HTTP-STREAMING",
        transport_options=TransportOptions(trust_roots=ca_pem),
    )
    try:
        await one_update(client, server, "over tls")
    finally:
        await client.destroy()
        await server.stop()
    assert found and all(decoder is not None for decoder in found)


class _LineSink:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def stream_lines(self, stream: Any, lines: list[bytes]) -> None:
        self.lines.extend(lines)


class _FakeStream:
    _stopped = False
    _ended = False

    def __init__(self) -> None:
        self._sink = _LineSink()


@given(st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\r\n", b"")), max_size=12),
       st.lists(st.integers(min_value=0, max_value=80), max_size=8))
def test_reads_cut_anywhere_give_the_lines_of_the_whole(lines: list[bytes],
                                                        cuts: list[int]) -> None:
    # A read joins the line begun in the last one to its first line, not itself to that
    # line: a CRLF cut between two reads (CR last, LF first) is still one separator.
    body = b"".join(line + b"\r\n" for line in lines) + b"tail\r"
    reads, at = [], 0
    for cut in sorted(cuts):
        reads.append(body[at:cut])
        at = max(at, cut)
    reads.append(body[at:])
    stream = _FakeStream()
    receiver = _LineReceiver(stream, 1000)  # type: ignore[arg-type]
    for read in reads:
        receiver.dataReceived(read)
    assert stream._sink.lines == body.split(b"\r\n")[:-1]
    assert receiver._buffer == b"tail\r"


def test_a_crlf_between_two_reads_ends_the_line() -> None:
    stream = _FakeStream()
    receiver = _LineReceiver(stream, 1000)  # type: ignore[arg-type]
    for read in (b"U,1,1,a\r", b"\nU,1,", b"1,b\r\nU", b"\r\r\n"):
        receiver.dataReceived(read)
    assert stream._sink.lines == [b"U,1,1,a", b"U,1,1,b", b"U\r"]
