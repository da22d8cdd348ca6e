"""Where a stream of the test server writes: an HTTP response body or a WebSocket."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.interfaces import ISSLTransport
from twisted.python.failure import Failure
from twisted.web.server import Request

__all__ = ["HttpOutput", "Output", "WsConnection", "WsOutput", "client_ip"]


class Output(Protocol):
    """What a stream writes on (one HTTP response, or a binding on a WebSocket)."""

    @property
    def websocket(self) -> bool: ...

    @property
    def client_ip(self) -> str | None: ...

    def write(self, data: str) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...

    def notify_lost(self, callback: Callable[[Failure], object]) -> None: ...

    def write_truncated_chunk(self, data: str) -> None: ...

    def kill(self) -> None: ...


class WsConnection(Protocol):
    """What a :class:`WsOutput` needs of its socket."""

    @property
    def client_ip(self) -> str | None: ...

    def send_text(self, data: str) -> None: ...

    # The stream and session types live above this module; Any keeps it a leaf.
    def attach(self, stream: Any, session: Any) -> None: ...

    def detach(self, output: object) -> None: ...

    def abort(self) -> None: ...


def client_ip(request: Request) -> str | None:
    """The peer host of ``request``, if it has one."""
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else None


def is_tls(transport: Any) -> bool:
    """Whether ``transport``, or one it wraps, is a TLS connection."""
    while transport is not None:
        if ISSLTransport.providedBy(transport):
            return True
        transport = getattr(transport, "transport", None)
    return False


class HttpOutput:
    """Where an HTTP stream writes: the body of one response."""

    websocket = False

    def __init__(self, request: Request) -> None:
        self.request = request

    def write(self, data: str) -> None:
        self.request.write(data.encode("utf-8"))

    def finish(self) -> None:
        self.request.finish()

    def abort(self) -> None:
        channel = getattr(self.request, "channel", None)
        transport = getattr(channel, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def notify_lost(self, callback: Callable[[Failure], object]) -> None:
        self.request.notifyFinish().addErrback(callback)

    def write_truncated_chunk(self, data: str) -> None:
        """Write a chunk header announcing all of ``data`` but only half of its bytes."""
        raw = data.encode("utf-8")
        transport = getattr(getattr(self.request, "channel", None), "transport", None)
        if not getattr(self.request, "chunked", False) or transport is None:
            self.request.write(raw[: len(raw) // 2])
            return
        transport.write(b"%x\r\n" % len(raw) + raw[: len(raw) // 2])

    def kill(self) -> None:
        """Abort the connection once what was written so far has gone out.

        ``abortConnection`` would throw away the data still buffered in the
        transport; here the socket is set to reset on close (``SO_LINGER`` 0)
        and closed when the buffer is empty, so the client receives every byte
        written and then a reset.  Without a plain TCP socket (TLS), it aborts.
        """
        transport = getattr(getattr(self.request, "channel", None), "transport", None)
        if transport is None:
            return
        try:
            handle = transport.getHandle()
        except Exception:
            handle = None
        if isinstance(handle, socket.socket) and not is_tls(transport):
            try:
                handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                transport.abortConnection()
                return
            transport.loseConnection()
        else:
            transport.abortConnection()

    @property
    def client_ip(self) -> str | None:
        return client_ip(self.request)


class WsOutput:
    """Where a WebSocket stream writes: messages on its socket, which outlives it."""

    websocket = True

    def __init__(self, conn: WsConnection) -> None:
        self.conn = conn
        self._lost: Callable[[Failure], object] | None = None

    def write(self, data: str) -> None:
        self.conn.send_text(data)

    def finish(self) -> None:
        # LOOP/END end the binding, not the socket: the client decides about that.
        self.conn.detach(self)

    def abort(self) -> None:
        self.conn.abort()

    def notify_lost(self, callback: Callable[[Failure], object]) -> None:
        self._lost = callback

    def write_truncated_chunk(self, data: str) -> None:
        # WebSocket messages have no chunks: half a message is the closest fault.
        self.conn.send_text(data[: len(data) // 2])

    def kill(self) -> None:
        self.conn.abort()

    def lost(self, reason: Failure) -> None:
        callback, self._lost = self._lost, None
        if callback is not None:
            callback(reason)

    @property
    def client_ip(self) -> str | None:
        return self.conn.client_ip
