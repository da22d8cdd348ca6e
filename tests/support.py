"""Helpers shared by the tests."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor, task

from txlightstreamer import MODE_MERGE, MODE_RAW, LsClient, Table


async def wait_until(predicate: Callable[[], object], timeout: float = 15.0,
                     what: str = "condition") -> None:
    """
    Poll ``predicate`` on the reactor (every 10 ms) until it holds; fail the test after
    ``timeout`` seconds. A bound on waiting, never a timing assertion.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await task.deferLater(reactor, 0.01, lambda: None)


async def stream_sequence(client: LsClient, server: Any, count: int,
                          pause_every: int) -> list[str | None]:
    """
    Subscribe item ``seq`` (RAW) and publish ``n = 0 .. count-1`` on ``server``, yielding
    to the reactor every ``pause_every`` updates; the ``n`` values received, in order,
    once ``count`` have arrived.
    """
    table = Table(client, mode=MODE_RAW, item_ids=["seq"], schema=["n", "pad"])
    got: list[str | None] = []
    table.on_update(lambda item, row: got.append(row[0]))
    await table.when_subscribed()
    for i in range(count):
        server.data.update("seq", {"n": str(i), "pad": f"{i:020d}"})
        if i % pause_every == 0:
            await task.deferLater(reactor, 0.01, lambda: None)
    await wait_until(lambda: len(got) >= count)
    return got


async def one_update(client: LsClient, server: Any, value: str) -> None:
    """
    Open ``client``'s session, subscribe item ``t`` (MERGE, field ``v``), publish ``value``
    on ``server`` and return once the client has it.
    """
    await client.create_session()
    table = Table(client, mode=MODE_MERGE, item_ids=["t"], schema=["v"])
    got: list[Any] = []
    table.on_update(lambda item, row: got.append(row[0]))
    await table.when_subscribed()
    server.data.update("t", {"v": value})
    await wait_until(lambda: got == [value])


def ws_frame(payload: bytes, first: int = 0x81, mask: bool = False, wide: bool = False) -> bytes:
    """
    A WebSocket frame of ``payload`` as a server writes it (RFC 6455 §5.2): ``first`` is its
    first byte (final text by default); the length in its shortest form, or in 64 bits when
    ``wide`` (which is the shortest from 64 KiB on); ``mask`` adds the MASK bit and a zero key.
    """
    size = len(payload)
    masked = 0x80 if mask else 0
    if wide or size >= 65536:
        head = bytes([first, 127 | masked]) + struct.pack("!Q", size)
    elif size < 126:
        head = bytes([first, size | masked])
    else:
        head = bytes([first, 126 | masked]) + struct.pack("!H", size)
    return head + (b"\0\0\0\0" if mask else b"") + payload
