"""
Whole WebSocket text frames cut from a receive buffer in one pass (RFC 6455 §5.2).

A TLCP stream over WebSocket is a run of small, final, unmasked text frames. autobahn parses
each through a dozen calls and copies the rest of its buffer twice per frame, which costs
more than the lines inside once messages are a few hundred bytes. `text_frames` takes the
leading run of such frames and stops at anything else (a control frame, a fragment, a masked
or oversized frame, a payload that is not UTF-8), which autobahn then handles as before.
Pure code, no Twisted or autobahn import.
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


def text_frames(data: bytes, limit: int) -> tuple[list[bytes], int]:
    """
    The payloads of the final, unmasked text frames at the start of ``data`` (each at most
    ``limit`` bytes when ``limit`` is positive, each valid UTF-8), and how many bytes of
    ``data`` they span; ``([], 0)`` when the first frame is not one.
    """
    payloads: list[bytes] = []
    size = len(data)
    pos = 0
    while size - pos >= 2:
        if data[pos] != _FINAL_TEXT:
            break
        length = data[pos + 1]  # the MASK bit set makes it 128 or more: not ours
        header = 2
        if length == 126:
            if size - pos < 4:
                break
            length = (data[pos + 2] << 8) | data[pos + 3]
            if length < 126:
                break  # not the shortest encoding: autobahn reports it
            header = 4
        elif length > 126:
            break  # masked, or a 64-bit length (larger than any stream message)
        end = pos + header + length
        if end > size or (0 < limit < length):
            break
        payload = data[pos + header : end]
        if not _utf8(payload):
            break
        payloads.append(payload)
        pos = end
    return payloads, pos
