"""
WS-STREAMING keeps nothing of a socket once it is gone: over many rebinds (LOOPs, streams
dropped by the server, network resets) the live WebSocket objects stay as few as the open
sockets, on the in-memory network of `tests.memory` (real autobahn, a `Clock`).

The chaos run's WS-STREAMING RSS creep was not such a leak: live objects and allocated
blocks stay flat; Twisted's start-up log buffer (200 events, whose errors pinned dead
sockets) and allocator high water made it (bench/chaos.py); these tests keep it that way.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator

import pytest
from twisted.internet.task import Clock

from txlightstreamer import MODE_MERGE, LsClient, Table
from txlightstreamer.testing import TlcpServer
from txlightstreamer.testing._websocket import TlcpWebSocketProtocol
from txlightstreamer.transport.ws import WsStream, _TlcpClientProtocol

from .memory import MemoryNetwork

#: The classes counted: the client's stream and socket, the server's socket.
COUNTED = (WsStream, _TlcpClientProtocol, TlcpWebSocketProtocol)


class _Run:
    def __init__(self) -> None:
        # Objects of earlier tests (a log buffer may hold some) are not counted.
        self.earlier: weakref.WeakSet[object] = weakref.WeakSet(_instances())
        self.clock = Clock()
        self.server = TlcpServer(clock=self.clock, keepalive_millis=1000)
        self.net = MemoryNetwork(self.clock)
        self.net.serve_tlcp(self.server)
        self.client: LsClient = self.net.client(forced_transport="WS-STREAMING",
                                                retry_delay=0.2)
        self.got: list[str | None] = []
        self.published = 0
        self.net.wait(self.client.create_session())
        table = Table(self.client, mode=MODE_MERGE, item_ids=["seq"], schema=["n"])
        table.on_update(lambda item, row: self.got.append(row[0]))
        self.net.wait(table.when_subscribed())

    def publish_and_wait(self, count: int = 5) -> None:
        for _ in range(count):
            self.published += 1
            self.server.data.update("seq", {"n": str(self.published)})
        self.net.run_until(lambda: self.got[-1:] == [str(self.published)],
                           what=f"update {self.published}")

    def loop(self) -> None:
        for stream in list(self.server._streams):
            stream.close_with("LOOP,0")

    def drop(self) -> None:
        self.server.drop_streams()

    def reset(self) -> None:
        self.net.reset()


def _instances() -> list[object]:
    gc.collect()
    return [obj for obj in gc.get_objects() if isinstance(obj, COUNTED)]


def _live(run: _Run) -> dict[str, int]:
    """Live objects of the counted classes that ``run`` created."""
    counts = dict.fromkeys((cls.__name__ for cls in COUNTED), 0)
    for obj in _instances():
        if obj not in run.earlier:
            counts[type(obj).__name__] += 1
    return counts


@pytest.fixture
def run() -> Iterator[_Run]:
    r = _Run()
    yield r
    r.net.wait(r.client.destroy())


def _repeat(run: _Run, cause: Callable[[], None]) -> tuple[dict[str, int], dict[str, int]]:
    """Live counts after a warm-up of 3 faults, and after 30 more (each followed by data)."""
    counts = []
    for times in (3, 30):  # after the warm-up, whatever is made once is made
        for _ in range(times):
            cause()
            run.publish_and_wait()
        counts.append(_live(run))
    return counts[0], counts[1]


@pytest.mark.parametrize("fault", ["loop", "drop", "reset"])
def test_rebinds_keep_no_closed_socket(run: _Run, fault: str) -> None:
    before, after = _repeat(run, getattr(run, fault))
    # One socket each side (a stream being replaced may still be counted once).
    assert all(n <= 2 for n in after.values()), (before, after)
    assert run.got == [str(i) for i in range(1, run.published + 1)]


def test_a_kept_protocol_error_pins_no_socket(run: _Run) -> None:
    # An application keeping its errors (or a log observer keeping events, as Twisted's
    # start-up buffer does until logging begins) must not keep dead sockets with them.
    kept: list[Exception] = []
    run.client.on_error(kept.append)
    before, after = _repeat(run, lambda: run.server.faults.send_line_to_all("U,abc,1,x"))
    assert len(kept) == 33
    assert all(n <= 2 for n in after.values()), (before, after)
