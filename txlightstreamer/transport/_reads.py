"""
How much a stream's socket reads at a time: Twisted's 64 KiB, and nearly 128 KiB while a
burst fills every read.

Each read costs a ``recv``, the kernel's window update and ACK, and one trip through
autobahn or Twisted's HTTP parser and chunked decoder, whatever it holds. On the mixed
burst of ``python -m bench`` the larger reads take 10-12% off the WebSocket client's CPU
per update (plain and mixed alike), and 3-4% off the HTTP client's (medians of five
300,000-update runs: plain 0.0567 -> 0.0542, mixed 0.1076 -> 0.1044 CPU s per 100,000). A
larger read takes only what has arrived, so a stream that trickles is read as before.

The larger size stays under glibc's mmap threshold (128 KiB): ``recv`` allocates a fresh
buffer of the full size for each read, and above the threshold each read mapped its
buffer, or grew and trimmed the heap, and faulted its pages in (256 KiB reads mostly cost
more CPU than 64 KiB ones).

Only a socket read directly counts: under TLS the layer above sees records of at most
32 KiB, never a full read, and the size stays Twisted's.
"""

from __future__ import annotations

from typing import Any, Final

from twisted.internet.tcp import Connection

__all__ = ["BURST_READ", "DEFAULT_READ", "SocketReads"]

#: Twisted's read size (``tcp.Connection.bufferSize``), kept outside bursts.
DEFAULT_READ: Final = Connection.bufferSize
#: The read size while reads come back full: under 128 KiB with the bytes object's header
#: and malloc's own.
BURST_READ: Final = 128 * 1024 - 256


class SocketReads:
    """
    Sizes the reads of the socket ``transport`` from what they bring: `saw` is told the size
    of each read. A full read raises the size from Twisted's to `BURST_READ`; a read smaller
    than Twisted's size lowers it back. A size set by anyone else is left alone, and so is
    anything but a socket connection (TLS, a test double).
    """

    __slots__ = ("socket",)

    def __init__(self, transport: Any) -> None:
        #: The connection whose reads are sized, or None.
        self.socket: Connection | None = transport if isinstance(transport, Connection) else None

    def saw(self, size: int) -> None:
        """One read of ``size`` bytes came from the socket."""
        socket = self.socket
        if socket is None:
            return
        current = socket.bufferSize
        if current == DEFAULT_READ:
            if size >= DEFAULT_READ:
                socket.bufferSize = BURST_READ
        elif current == BURST_READ and size < DEFAULT_READ:
            socket.bufferSize = DEFAULT_READ
