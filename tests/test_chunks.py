"""
`txlightstreamer.transport._chunks`: the plain chunks of a read cut in one pass, and the rest
left to Twisted's chunked decoder, which must then decide every body exactly as it does
alone: the same data, the same end (and what follows it), the same error at the same read.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.web.http import _ChunkedTransferDecoder

from txlightstreamer.transport._chunks import (
    BODY,
    CHUNK_LENGTH,
    CRLF,
    can_cut_into,
    cut_chunks,
    cut_into,
)


def chunk(data: bytes, size: str | None = None) -> bytes:
    return (size or f"{len(data):x}").encode() + b"\r\n" + data + b"\r\n"


def cut(read: bytes, state: str = CHUNK_LENGTH, length: int = 0) -> tuple[bytes, int, str, int]:
    c = cut_chunks(read, state, length)
    return b"".join(c.data), c.stop, c.state, c.length


def test_plain_chunks_are_cut_in_one_pass() -> None:
    read = chunk(b"U,1,1,a\r\n") + chunk(b"x" * 300, "12C") + chunk(b"y" * 16, "0010")
    assert cut(read) == (b"U,1,1,a\r\n" + b"x" * 300 + b"y" * 16, len(read), CHUNK_LENGTH, 0)


def test_a_chunk_that_goes_on_in_the_next_read() -> None:
    read = chunk(b"ab") + b"a\r\n0123"
    assert cut(read) == (b"ab0123", len(read), BODY, 6)
    assert cut(b"456789\r\n5\r\nhello", BODY, 6) == (b"456789hello", 16, CRLF, 0)
    assert cut(b"\r\n", CRLF) == (b"", 2, CHUNK_LENGTH, 0)
    assert cut(b"", BODY, 3) == (b"", 0, BODY, 3)


def test_stops_where_the_decoder_decides() -> None:
    head = chunk(b"ok")
    for rest, state in (
        (b"0\r\n\r\n", CHUNK_LENGTH),  # the last chunk
        (b"00\r\nTrailer: x\r\n\r\nmore", CHUNK_LENGTH),
        (b"2;name=value\r\nab\r\n", CHUNK_LENGTH),  # an extension
        (b"2 \r\nab\r\n", CHUNK_LENGTH),
        (b"+2\r\nab\r\n", CHUNK_LENGTH),
        (b"0x2\r\nab\r\n", CHUNK_LENGTH),
        (b"\r\nab\r\n", CHUNK_LENGTH),  # no size
        (b"1" * 17 + b"\r\n", CHUNK_LENGTH),  # longer than any size
        (b"2", CHUNK_LENGTH),  # cut short
        (b"2\r", CHUNK_LENGTH),
    ):
        assert cut(head + rest) == (b"ok", len(head), state, 0)
    body = b"3\r\nabc"
    for rest in (b"", b"\r", b"xy", b"\n\r"):
        assert cut(body + rest) == (b"abc", len(body), CRLF, 0)


def test_sizes_of_sixteen_digits() -> None:
    small = b"0" * 15 + b"1\r\nz\r\n"
    assert cut(small) == (b"z", len(small), CHUNK_LENGTH, 0)
    big = b"FFFFFFFFFFFFFFFF\r\n" + b"data"
    assert cut(big) == (b"data", len(big), BODY, (1 << 64) - 1 - 4)


class Received:
    """What a decoder hands on: data, the end and what followed it, the error and when."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.finished: bytes | None = None
        self.error: tuple[int, type[BaseException], str] | None = None

    def finish(self, rest: bytes) -> None:
        self.finished = rest


def run(reads: list[bytes], cut_here: bool) -> tuple[Received, list[Any]]:
    """Every read through a decoder (reads after the end too); its state after each."""
    got = Received()
    decoder = _ChunkedTransferDecoder(got.data.extend, got.finish)
    assert can_cut_into(decoder)
    decode = decoder.dataReceived
    states: list[Any] = []
    for i, read in enumerate(reads):
        try:
            if cut_here:
                cut_into(decoder, decode, read)
            else:
                decode(read)
        except Exception as e:
            got.error = (i, type(e), str(e))
            break
        states.append((decoder.state, decoder.length if decoder.state == BODY else None,
                       bytes(decoder._buffer), decoder._start))
    return got, states


def same(reads: list[bytes]) -> None:
    (alone, alone_states), (cutting, cutting_states) = run(reads, False), run(reads, True)
    assert (bytes(cutting.data), cutting.finished, cutting.error) == (
        bytes(alone.data), alone.finished, alone.error)
    assert cutting_states == alone_states


pieces = st.one_of(
    st.binary(max_size=700).map(chunk),  # plain
    st.binary(min_size=1, max_size=40).map(lambda d: chunk(d, f"{len(d):X}")),
    st.binary(min_size=1, max_size=40).map(lambda d: chunk(d, f"{len(d):06x}")),
    st.binary(min_size=1, max_size=40).map(lambda d: chunk(d, f"{len(d):x};ext=1")),
    st.sampled_from([b"0\r\n\r\n", b"0\r\nX-Trailer: 1\r\n\r\nafter", b"000\r\n\r\n",
                     b"zz\r\n", b"3\r\nabcXY", b"\r\n", b"-1\r\n", b"2 \r\nab\r\n",
                     b"2\r\nab\n\r", b"2\r\nab\r", b"2\n\rab\r\n"]),
    # Size lines near Twisted's limit of 1024 bytes: leading zeros, an extension.
    st.tuples(st.integers(14, 20) | st.integers(1015, 1030), st.binary(min_size=1, max_size=9))
    .map(lambda z: chunk(z[1], "0" * z[0] + f"{len(z[1]):x}")),
    st.tuples(st.integers(1000, 1030), st.binary(min_size=1, max_size=9)).map(
        lambda z: chunk(z[1], f"{len(z[1]):x};" + "e" * z[0])),
)


@settings(max_examples=400)
@given(st.lists(pieces, max_size=12), st.lists(st.integers(0, 8000), max_size=10),
       st.data())
def test_the_decoder_decides_every_body_as_alone(
        parts: list[bytes], cuts: list[int], data: Any) -> None:
    stream = b"".join(parts)
    if data.draw(st.booleans()):
        stream += b"0\r\n\r\n"
    points = sorted({c % (len(stream) + 1) for c in cuts})
    reads = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    same(reads)


def test_one_byte_at_a_time() -> None:
    stream = b"".join(chunk(bytes([65 + k % 26]) * k) for k in range(1, 40)) + b"0\r\n\r\nz"
    same([stream[k:k + 1] for k in range(len(stream))])
    same([stream])
    got, _ = run([stream[k:k + 3] for k in range(0, len(stream), 3)], True)
    assert got.finished == b"z" and got.error is None
    same([stream, b"", b"more"])  # after the end: nothing, then Twisted's error


def test_a_decoder_of_another_shape_is_not_cut_into() -> None:
    class Other:
        state = CHUNK_LENGTH
        _buffer = b""
        _start = 0

        def dataCallback(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
            pass

    assert not can_cut_into(Other())
    assert not can_cut_into(object())
