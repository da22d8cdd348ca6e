"""
`txlightstreamer.transport._wsframes.text_frames`: the run of whole final text frames at the
start of a buffer, cut in one pass; everything else is left to autobahn, byte for byte, but
such a frame not yet all there, which waits for the rest (`cut_short`).
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from txlightstreamer.transport._wsframes import cut_short, text_frames


def frame(payload: bytes, first: int = 0x81, mask: bool = False, wide: bool = False) -> bytes:
    size = len(payload)
    masked = 0x80 if mask else 0
    if wide:
        head = bytes([first, 127 | masked]) + struct.pack("!Q", size)
    elif size < 126:
        head = bytes([first, size | masked])
    else:
        head = bytes([first, 126 | masked]) + struct.pack("!H", size)
    return head + (b"\0\0\0\0" if mask else b"") + payload


def test_a_run_of_text_frames() -> None:
    data = frame(b"U,1,1,a\r\n") + frame(b"x" * 300) + frame(b"\xc3\xa9")
    assert text_frames(data, 0) == ([b"U,1,1,a\r\n", b"x" * 300, b"\xc3\xa9"], len(data))


def test_stops_at_anything_else() -> None:
    text = frame(b"ok")
    for other in (
        frame(b"", first=0x89),  # ping
        frame(b"\x03\xe8", first=0x88),  # close
        frame(b"part", first=0x01),  # a first fragment
        frame(b"bin", first=0x82),  # binary
        frame(b"rsv", first=0xC1),  # RSV1 (compression)
        frame(b"masked", mask=True),
        frame(b"wide", wide=True),
        bytes([0x81, 126, 0, 5]) + b"short",  # not the shortest length
        frame(b"\xff"),  # not UTF-8
        frame(b"\xc3"),  # cut inside a character
    ):
        assert text_frames(text + other + text, 0) == ([b"ok"], len(text))
        assert text_frames(other, 0) == ([], 0)


def test_incomplete_and_oversized_frames_wait_for_autobahn() -> None:
    whole = frame(b"y" * 200)
    for cut in range(len(whole)):
        assert text_frames(whole[:cut], 0) == ([], 0)
    assert text_frames(whole, 199) == ([], 0)
    assert text_frames(whole, 200) == ([b"y" * 200], len(whole))


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=300), max_size=6), st.binary(max_size=8))
def test_payloads_and_count_match_the_frames(payloads: list[bytes], tail: bytes) -> None:
    data = b"".join(frame(p) for p in payloads) + tail
    got, used = text_frames(data, 0)
    valid = []
    for payload in payloads:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            break
        valid.append(payload)
    assert got[: len(valid)] == valid  # every whole valid frame up to the first bad one
    assert len(got) == len(valid) or len(valid) == len(payloads)  # more only from the tail
    assert used == sum(len(frame(p)) for p in got)


def test_a_frame_not_yet_all_there_is_cut_short() -> None:
    for payload in (b"y" * 20, b"y" * 200, "é€".encode() * 40):
        whole = frame(payload)
        for cut in range(len(whole)):
            assert cut_short(whole[:cut], 0)
            assert cut_short(whole[:cut], len(payload))
        assert not cut_short(whole, 0)  # whole: text_frames takes it
        assert not cut_short(whole[:-1], len(payload) - 1)  # too large: autobahn fails it


def test_anything_else_is_not_cut_short() -> None:
    for other in (
        frame(b"", first=0x89),  # ping
        frame(b"part", first=0x01),  # a first fragment
        frame(b"bin", first=0x82),  # binary
        frame(b"rsv", first=0xC1),  # RSV1 (compression)
        frame(b"masked", mask=True),
        frame(b"wide" * 40, wide=True),
        bytes([0x81, 126, 0, 5]) + b"short",  # not the shortest length
    ):
        # Its first byte, or its header's first four, say it is not such a frame; until
        # then it may be one, and waiting is what autobahn would do too.
        for cut in range(1 if other[0] != 0x81 else 4, len(other) + 1):
            assert not cut_short(other[:cut], 0)
    assert cut_short(b"\x81", 0) and cut_short(bytes([0x81, 126, 0]), 0)
