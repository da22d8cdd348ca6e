"""
A text frame that one socket read brings only part of waits in the buffer for the rest, and
is then cut whole (`_wsframes.cut_short`), instead of going through autobahn's frame path,
which takes what has come and checks its UTF-8 a byte at a time. autobahn still decides
whatever is not such a frame. The client is autobahn's, on an in-memory transport, so each
`dataReceived` is one read.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
from twisted.internet.testing import StringTransport

pytest.importorskip("autobahn")

from txlightstreamer.transport.ws import _Factory, _TlcpClientProtocol  # noqa: E402

from .support import ws_frame as _frame  # noqa: E402

_SUBPROTOCOL = "TLCP-2.5.0.lightstreamer.com"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _Stream:
    """What the protocol reports to its `WsStream`, recorded."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.opened = False
        self.closed: tuple[bool, int | None] | None = None
        self._transport = self

    def _track(self, proto: Any) -> None:
        pass

    def _forget(self, proto: Any) -> None:
        pass

    def _handshake(self, proto: Any, response: Any) -> None:
        pass

    def _opened(self, proto: Any) -> None:
        self.opened = True

    def _message(self, payload: bytes, is_binary: bool) -> None:
        assert not is_binary
        self.messages.append(payload)

    def _closed(self, proto: Any, was_clean: bool, code: int | None, reason: str | None) -> None:
        self.closed = (was_clean, code)


class _Transport(StringTransport):
    def unregisterProducer(self) -> None:  # noqa: N802 (autobahn's drop calls it regardless)
        self.producer = None


def _open_client(**limits: int) -> tuple[_TlcpClientProtocol, _Stream, _Transport]:
    stream = _Stream()
    factory = _Factory(stream, "ws://127.0.0.1:8080/lightstreamer", protocols=[_SUBPROTOCOL])
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0,
                               serverConnectionDropTimeout=0, autoPingInterval=0,
                               perMessageCompressionOffers=[], **limits)
    proto = factory.buildProtocol(None)
    transport = _Transport()
    proto.makeConnection(transport)
    request = transport.value().decode("latin-1")
    match = re.search(r"Sec-WebSocket-Key: (\S+)", request, re.IGNORECASE)
    assert match
    accept = base64.b64encode(hashlib.sha1(match.group(1).encode() + _GUID).digest())
    transport.clear()
    proto.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                       + b"\r\nSec-WebSocket-Protocol: " + _SUBPROTOCOL.encode() + b"\r\n\r\n")
    assert stream.opened
    return proto, stream, transport


def _frames_begun(monkeypatch: pytest.MonkeyPatch, proto: _TlcpClientProtocol) -> list[Any]:
    """The frames autobahn's own path begins to read."""
    begun: list[Any] = []
    original = proto.onFrameBegin

    def on_frame_begin() -> Any:
        begun.append(proto.current_frame)
        return original()

    monkeypatch.setattr(proto, "onFrameBegin", on_frame_begin)
    return begun


@pytest.mark.parametrize("payload", [b"U,1,1,x\r\n" * 3000, "U,1,1,€ üè\r\n".encode() * 2000,
                                     b"U,1,1,y\r\n" * 20000])  # a 64-bit length
def test_a_frame_split_across_reads_waits_for_its_rest(
        monkeypatch: pytest.MonkeyPatch, payload: bytes) -> None:
    proto, stream, _ = _open_client()
    begun = _frames_begun(monkeypatch, proto)
    first = _frame(b"WSOK\r\n")
    data = first + _frame(payload) + _frame(b"PROBE\r\n")
    for cut in (len(first) + 1, len(first) + 3, len(first) + 4000, len(data) - 5):
        proto.dataReceived(data[:cut])
        proto.dataReceived(data[cut:])
    assert stream.messages == [b"WSOK\r\n", payload, b"PROBE\r\n"] * 4
    assert begun == []  # every frame was cut whole, none went through autobahn's path
    assert proto.data == b""


def test_one_byte_at_a_time() -> None:
    proto, stream, _ = _open_client()
    data = _frame(b"U,1,1," + "é".encode() * 100 + b"\r\n") + _frame(b"PROBE\r\n")
    for k in range(len(data)):
        proto.dataReceived(data[k:k + 1])
    assert stream.messages == [b"U,1,1," + "é".encode() * 100 + b"\r\n", b"PROBE\r\n"]


def test_a_frame_of_bad_utf8_split_across_reads_still_fails_the_connection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    proto, stream, transport = _open_client()
    begun = _frames_begun(monkeypatch, proto)
    data = _frame(b"U,1,1," + b"x" * 300 + b"\xff\r\n")
    proto.dataReceived(data[:100])
    assert begun == [] and stream.messages == []
    proto.dataReceived(data[100:])
    assert len(begun) == 1  # autobahn's path decides it, as before
    assert stream.messages == []
    assert proto.state != proto.STATE_OPEN  # failed (invalid payload)
    assert transport.disconnecting  # autobahn drops the connection


@pytest.mark.parametrize("option", ["maxFramePayloadSize", "maxMessagePayloadSize"])
def test_a_frame_over_the_limit_goes_to_autobahn_at_once(
        monkeypatch: pytest.MonkeyPatch, option: str) -> None:
    proto, stream, _ = _open_client(**{option: 1000})
    begun = _frames_begun(monkeypatch, proto)
    data = _frame(b"U,1,1," + b"x" * 2000 + b"\r\n")
    proto.dataReceived(data[:100])  # no waiting for a frame autobahn must refuse
    assert len(begun) == 1
    assert stream.messages == []
    assert proto.state != proto.STATE_OPEN
