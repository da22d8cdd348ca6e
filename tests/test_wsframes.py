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

from .support import ws_frame as frame


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


def test_a_frame_with_a_64_bit_length() -> None:
    payload = b"U,1,1,x\r\n" * 8000  # 72,000 bytes: over what 16 bits hold
    data = frame(payload, wide=True) + frame(b"ok")
    assert text_frames(data, 0) == ([payload, b"ok"], len(data))
    assert text_frames(data, len(payload) - 1) == ([], 0)  # over the limit: autobahn's
    for top in (bytes([0x81, 127]) + struct.pack("!Q", 1 << 63) + b"x",  # top bit set
                frame(b"x" * 65535, wide=True)):  # not the shortest encoding
        assert text_frames(top, 0) == ([], 0) and not cut_short(top, 0)


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
    for payload, wide in ((b"y" * 20, False), (b"y" * 200, False),
                          ("é€".encode() * 40, False), (b"z" * 70000, True)):
        whole = frame(payload, wide=wide)
        for cut in [*range(min(len(whole), 300)), len(whole) // 2, len(whole) - 1]:
            assert cut_short(whole[:cut], 0)
            assert cut_short(whole[:cut], len(payload))
        assert not cut_short(whole, 0)  # whole: text_frames takes it
        assert not cut_short(whole[:-1], len(payload) - 1)  # too large: autobahn fails it


def test_anything_else_is_not_cut_short() -> None:
    # Each says it is not such a frame from its first ``known`` bytes; until then it may be
    # one, and waiting is what autobahn would do too.
    for other, known in (
        (frame(b"", first=0x89), 1),  # ping
        (frame(b"part", first=0x01), 1),  # a first fragment
        (frame(b"bin", first=0x82), 1),  # binary
        (frame(b"rsv", first=0xC1), 1),  # RSV1 (compression)
        (frame(b"masked", mask=True), 2),
        (frame(b"wide" * 40, wide=True), 10),  # a 64-bit length not the shortest
        (bytes([0x81, 126, 0, 5]) + b"short", 4),  # a 16-bit length not the shortest
    ):
        for cut in range(1, len(other) + 1):
            assert cut_short(other[:cut], 0) == (cut < known)
