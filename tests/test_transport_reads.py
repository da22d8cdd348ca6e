"""
A stream's socket (WebSocket, or an HTTP stream's chunked body) reads nearly 128 KiB at a
time while reads come back full, and Twisted's 64 KiB otherwise (`SocketReads`): the stream
tells it the size of every socket read, and it sizes nothing but a socket connection.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, ssl, tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory

from txlightstreamer import LsClient
from txlightstreamer.testing import TlcpServer
from txlightstreamer.transport._reads import BURST_READ, DEFAULT_READ, SocketReads

from .support import one_update


@pytest.fixture
def connection() -> Iterator[tcp.Connection]:
    """A real, unregistered socket connection (nothing reads it: only its size matters)."""
    left, right = socket.socketpair()
    try:
        yield tcp.Connection(left, Protocol(), reactor)
    finally:
        left.close()
        right.close()


def test_the_sizes_are_twisteds_and_under_the_mmap_threshold() -> None:
    assert DEFAULT_READ == 64 * 1024 == tcp.Connection.bufferSize
    # recv() allocates a buffer of the full size for each read; glibc maps one of 128 KiB.
    assert DEFAULT_READ < BURST_READ < 128 * 1024 - 64


def test_full_reads_raise_the_size_and_a_small_one_lowers_it(
        connection: tcp.Connection) -> None:
    reads = SocketReads(connection)
    assert reads.socket is connection
    reads.saw(1000)
    assert connection.bufferSize == DEFAULT_READ
    reads.saw(DEFAULT_READ)  # a full read: more was waiting
    assert connection.bufferSize == BURST_READ
    reads.saw(BURST_READ)
    reads.saw(DEFAULT_READ + 1)  # not full, but larger than Twisted's reads: a burst still
    assert connection.bufferSize == BURST_READ
    reads.saw(DEFAULT_READ - 1)
    assert connection.bufferSize == DEFAULT_READ
    reads.saw(DEFAULT_READ)
    assert connection.bufferSize == BURST_READ


@pytest.mark.parametrize("size", [4096, 1 << 20])
def test_a_size_set_by_someone_else_is_left_alone(connection: tcp.Connection,
                                                  size: int) -> None:
    connection.bufferSize = size
    reads = SocketReads(connection)
    for seen in (size, 10, size, BURST_READ):
        reads.saw(seen)
        assert connection.bufferSize == size


def test_anything_but_a_socket_connection_is_left_alone() -> None:
    tls = TLSMemoryBIOFactory(ssl.optionsForClientTLS("localhost"), True,
                              Factory.forProtocol(Protocol)).buildProtocol(None)
    for transport in (None, object(), tls):
        reads = SocketReads(transport)
        assert reads.socket is None
        reads.saw(DEFAULT_READ)  # no error, nothing to size


class _Recorded(SocketReads):
    made: list[_Recorded] = []

    def __init__(self, transport: Any) -> None:
        super().__init__(transport)
        self.sizes: list[int] = []
        self.made.append(self)

    def saw(self, size: int) -> None:
        self.sizes.append(size)
        super().saw(size)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[_Recorded]:
    made: list[_Recorded] = []
    monkeypatch.setattr(_Recorded, "made", made)
    ws = pytest.importorskip("txlightstreamer.transport.ws")
    monkeypatch.setattr(ws, "SocketReads", _Recorded)
    from txlightstreamer.transport import http

    monkeypatch.setattr(http, "SocketReads", _Recorded)
    return made


@pytest.mark.parametrize("transport", ["WS-STREAMING", "HTTP-STREAMING"])
@pytest_twisted.ensureDeferred
async def test_a_stream_sizes_its_socket_from_every_read(
        recorded: list[_Recorded], transport: str) -> None:
    # HTTP: the chunked decoder is handed each read whole (one split per read), and so is
    # the sizer.
    server = TlcpServer()
    await server.listen(reactor, port=0, interface="127.0.0.1")
    client = LsClient(server.url, forced_transport=transport)
    try:
        await one_update(client, server, "x" * 1000)
    finally:
        await client.destroy()
        await server.stop()
    assert recorded and all(isinstance(r.socket, tcp.Connection) for r in recorded)
    assert sum(sum(r.sizes) for r in recorded) > 1000
