"""
The chunks of a chunked HTTP body (RFC 9112 §7.1) cut from one socket read in one pass.

Twisted's chunked decoder costs about 2 µs a chunk (a state machine of method calls, a
bytearray the read is copied into and cut from): when a server writes small chunks and
the client falls behind, each read holds hundreds of them, and that cost exceeds the
decoding of the lines inside. `cut_chunks` takes the run of plain chunks (a size line of
hex digits only, the data, CRLF) and stops at anything else: a chunk extension, the last
chunk (size 0) and its trailers, bad framing, or the end of the read inside a size line or
a CRLF. Twisted's decoder then takes the rest, from the state `cut_chunks` leaves, and
decides it as before (`cut_into`, which `transport/http.py` hands each read of a chunked
stream). Pure code, no Twisted import: the decoder is only read and set by its attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple

#: The decoder's states this cuts from and leaves (Twisted's names).
BODY: Final = "BODY"
CRLF: Final = "CRLF"
CHUNK_LENGTH: Final = "CHUNK_LENGTH"

_HEX_DIGITS: Final = b"0123456789abcdefABCDEF"
# Longest size line taken: 16 hex digits hold any size a 64-bit length can.
_MOST_DIGITS: Final = 16


class Cut(NamedTuple):
    """What `cut_chunks` read: the chunks' data, where it stopped and in which state."""

    #: The data of the chunks read, in order (views of the read).
    data: list[memoryview]
    #: Where the read was left: Twisted's decoder takes ``read[stop:]``.
    stop: int
    #: The decoder's state at ``stop``.
    state: str
    #: In `BODY`, how much of the chunk is still to come (more than 0); 0 otherwise.
    length: int


def cut_chunks(read: bytes, state: str, length: int) -> Cut:
    """
    The plain chunks at the start of ``read``, read from ``state`` (`BODY` with ``length``
    bytes of a chunk to come, `CRLF` or `CHUNK_LENGTH`), up to anything else.
    """
    view = memoryview(read)
    data: list[memoryview] = []
    size = len(read)
    pos = 0
    while pos < size:
        if state == BODY:
            end = pos + length
            if end > size:  # the chunk goes on in the next read
                data.append(view[pos:])
                return Cut(data, size, BODY, end - size)
            data.append(view[pos:end])
            pos, state, length = end, CRLF, 0
        if state == CRLF:
            if read[pos:pos + 2] != b"\r\n":
                break  # cut short, or bad framing: Twisted's to wait for or to refuse
            pos += 2
            state = CHUNK_LENGTH
        eol = read.find(b"\r\n", pos, pos + _MOST_DIGITS + 2)
        if eol <= pos:
            break  # cut short, an empty or long line: Twisted's
        digits = read[pos:eol]
        if digits.translate(None, _HEX_DIGITS):
            break  # an extension, or not a size: Twisted's
        length = int(digits, 16)
        if not length:
            break  # the last chunk, its trailers and what follows: Twisted's
        pos, state = eol + 2, BODY
    return Cut(data, pos, state, length if state == BODY else 0)


#: The decoder's states a read's plain chunks are cut from.
_CUT_FROM: Final = frozenset({BODY, CRLF, CHUNK_LENGTH})


def can_cut_into(decoder: Any) -> bool:
    """``decoder`` has the parts of Twisted's chunked decoder that `cut_into` reads and sets."""
    return (isinstance(getattr(decoder, "state", None), str)
            and type(getattr(decoder, "_buffer", None)) is bytearray
            and isinstance(getattr(decoder, "_start", None), int)
            and callable(getattr(decoder, "dataCallback", None)))


def cut_into(decoder: Any, decode: Callable[[bytes], object], read: bytes) -> None:
    """
    One socket ``read`` of a chunked body through Twisted's ``decoder`` (`can_cut_into`),
    whose own ``dataReceived`` is ``decode``: the plain chunks are cut here and their data
    handed to its ``dataCallback`` in one piece; the decoder then reads the rest from the
    state they leave. What it holds of a size line or a CRLF begun in the last read is
    read again here, from its start. The state is set before ``dataCallback`` runs: should
    that raise, the rest of the read is dropped (Twisted would keep it in its buffer), and
    the body fails either way.
    """
    state = decoder.state
    if state not in _CUT_FROM:
        decode(read)  # the trailers, or finished: the decoder's
        return
    pending = decoder._buffer
    if pending:
        read = bytes(pending) + read
        del pending[:]
        decoder._start = 0
    cut = cut_chunks(read, state, decoder.length if state == BODY else 0)
    decoder.state = cut.state
    if cut.state == BODY:
        decoder.length = cut.length
    if cut.data:
        decoder.dataCallback(b"".join(cut.data))
    if cut.stop < len(read):
        decode(read[cut.stop:])
