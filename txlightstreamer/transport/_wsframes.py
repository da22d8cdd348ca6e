"""
Whole WebSocket text frames cut from a receive buffer in one pass (RFC 6455 §5.2).

A TLCP stream over WebSocket is a run of small, final, unmasked text frames. autobahn parses
each through a dozen calls and copies the rest of its buffer twice per frame, which costs
more than the lines inside once messages are a few hundred bytes. `text_frames` takes the
leading run of such frames and stops at anything else (a control frame, a fragment, a masked
or oversized frame, a payload that is not UTF-8), which autobahn then handles as before. A
frame it would take but that is not all there yet (`cut_short`) waits for the rest: autobahn
would take what has come and check its UTF-8 a byte at a time, about a tenth of a mixed
burst's CPU when each socket read ends inside a 32 KB message. So a frame of bad UTF-8 is
refused once it is whole rather than at its first bad byte, as RFC 6455 allows (it sets no
moment). Pure code, no Twisted or autobahn import.
"""

from __future__ import annotations

from typing import Final

# FIN set, no RSV bit, opcode 1 (text).
_FINAL_TEXT: Final = 0x81


def _utf8(payload: bytes) -> bool:
    if payload.isascii():
        return True
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _frame_at(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    """
    Where the payload of the frame at ``pos`` starts and ends when it is a final, unmasked
    text frame with its length in the shortest form and at most ``limit`` bytes (any when
    ``limit`` is 0); the end may lie beyond ``data`` (cut short). ``(0, 0)`` when nothing,
    or only part of its header, is there; ``(-1, -1)`` when it is not such a frame.
    """
    size = len(data)
    if size - pos < 2:
        return (0, 0) if size == pos or data[pos] == _FINAL_TEXT else (-1, -1)
    if data[pos] != _FINAL_TEXT:
        return -1, -1
    length = data[pos + 1]  # the MASK bit set makes it 128 or more: not ours
    header = 2
    if length == 126:
        if size - pos < 4:
            return 0, 0
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 126:
            return -1, -1  # not the shortest encoding: autobahn reports it
        header = 4
    elif length == 127:
        if size - pos < 10:
            return 0, 0
        length = int.from_bytes(data[pos + 2:pos + 10], "big")
        if length < 65536 or length >> 63:
            return -1, -1  # not the shortest encoding, or the top bit set: autobahn reports it
        header = 10
    elif length > 127:
        return -1, -1  # masked: not from a server
    if 0 < limit < length:
        return -1, -1
    return pos + header, pos + header + length


def text_frames(data: bytes, limit: int) -> tuple[list[bytes], int]:
    """
    The payloads of the final, unmasked text frames at the start of ``data`` (each at most
    ``limit`` bytes when ``limit`` is positive, each valid UTF-8), and how many bytes of
    ``data`` they span; ``([], 0)`` when the first frame is not one.
    """
    payloads: list[bytes] = []
    size = len(data)
    pos = 0
    while True:
        start, end = _frame_at(data, pos, limit)
        if start <= 0 or end > size:
            break
        payload = data[start:end]
        if not _utf8(payload):
            break
        payloads.append(payload)
        pos = end
    return payloads, pos


def cut_short(data: bytes, limit: int) -> bool:
    """
    ``data`` starts with such a frame (`text_frames`), or part of its header, not yet whole
    (or ``data`` is empty): the rest is awaited rather than handed to autobahn, which would
    take the part it has and check its UTF-8 a byte at a time. Its UTF-8 is judged once it
    is whole (by `text_frames`, then autobahn if bad).
    """
    start, end = _frame_at(data, 0, limit)
    return start == 0 or end > len(data)
