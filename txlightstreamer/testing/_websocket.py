"""The WebSocket side of :class:`TlcpServer` (autobahn, imported only when needed).

A socket carries TLCP requests as text messages (``name\\r\\nparams…``, tlcp.md §2.3):
``wsok`` is answered with ``WSOK``; create/bind bind a session to the socket (the stream
writes its notifications as messages; ``LOOP``/``END`` end the binding, not the socket);
control/msg answers come back on the socket, before what the requests triggered;
heartbeat is answered only when malformed.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET

from ._connections import TrackedConnection
from ._encoding import encode_line
from ._outputs import WsOutput
from ._params import SUPPORTED_PROTOCOLS
from ._stream import Stream, StreamSession

log = Logger()

_SUFFIX = ".lightstreamer.com"


class WsHost(Protocol):
    """What a socket needs of the server: its handshake cookie and a request handler."""

    @property
    def set_cookie(self) -> str | None: ...

    def _ws_request(self, conn: TlcpWebSocketProtocol, name: str, lines: list[str]) -> None: ...


class TlcpWebSocketProtocol(WebSocketServerProtocol):
    """One client socket."""

    server: WsHost

    def __init__(self) -> None:
        super().__init__()
        self.tlcp_protocol = ""
        self.last_session: str | None = None
        self.client_ip: str | None = None
        self.closed = False
        self._stream: Stream | None = None
        self._held: list[str] | None = None

    # -- autobahn callbacks ------------------------------------------------------------

    def onConnect(self, request: Any) -> tuple[str, dict[str, str]]:  # noqa: N802
        for offered in request.protocols:
            if offered.endswith(_SUFFIX) and offered[: -len(_SUFFIX)] in SUPPORTED_PROTOCOLS:
                break
        else:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST,
                                 "a TLCP-<version>.lightstreamer.com subprotocol is required")
        self.tlcp_protocol = offered[: -len(_SUFFIX)]
        peer = self.transport.getPeer() if self.transport is not None else None
        self.client_ip = getattr(peer, "host", None)
        headers = {}
        if self.server.set_cookie is not None:
            headers["Set-Cookie"] = self.server.set_cookie
        return offered, headers

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        if isBinary:
            self.send_text(encode_line("ERROR", 67, "Binary messages are not TLCP") + "\r\n")
            return
        text = payload.decode("utf-8", "replace")
        name, _, rest = text.partition("\r\n")
        lines = [line for line in rest.split("\r\n") if line]
        self.server._ws_request(self, name, lines)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:  # noqa: N802, N803
        self.closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            output = cast(WsOutput, stream.output)
            output.lost(Failure(ConnectionLost(f"WebSocket closed: {reason}")))

    # -- what the server's streams use ---------------------------------------------------

    def send_text(self, data: str) -> None:
        if self.closed or self.state != WebSocketServerProtocol.STATE_OPEN:
            return
        if self._held is not None:
            self._held.append(data)
        else:
            self.sendMessage(data.encode("utf-8"), isBinary=False)

    def cork(self) -> None:
        self._held = []

    def uncork(self, first: str) -> None:
        held, self._held = self._held or [], None
        if first:
            self.send_text(first)
        for data in held:
            self.send_text(data)

    def attach(self, stream: Stream, session: StreamSession) -> None:
        """``stream`` (of ``session``) is now bound to this socket."""
        previous = self._stream
        if previous is not None and not previous.closed and previous.session is not session:
            previous.close_with(encode_line("LOOP", 0))  # one session at a time per socket
        self._stream = stream
        self.last_session = session.session_id

    def detach(self, output: object) -> None:
        if self._stream is not None and self._stream.output is output:
            self._stream = None

    def abort(self) -> None:
        if self.transport is not None:
            cast(Any, self.transport).abortConnection()


class _Factory(WebSocketServerFactory):
    protocol = TlcpWebSocketProtocol
    noisy = False

    def __init__(self, server: WsHost) -> None:
        super().__init__()
        self.server = server
        self.setProtocolOptions(perMessageCompressionAccept=lambda offers: None)

    def buildProtocol(self, addr: Any) -> TlcpWebSocketProtocol:  # noqa: N802
        proto = cast(TlcpWebSocketProtocol, super().buildProtocol(addr))
        proto.server = self.server
        return proto


class _UpgradeResource(WebSocketResource):
    """
    autobahn's resource, except on connections tracked by `TlcpServer.listen`: there the
    WebSocket protocol takes the tracking wrapper's place and talks to the real transport
    underneath (TCP or TLS: autobahn needs to see which).
    """

    def render(self, request: Any) -> Any:
        channel = request.channel
        wrapper = getattr(channel, "transport", None)
        if not isinstance(wrapper, TrackedConnection) or wrapper.transport is None:
            return super().render(request)
        protocol = self._factory.buildProtocol(wrapper.getPeer())
        channel.transport = None  # twisted.web writes nothing more on this connection
        wrapper.wrappedProtocol = protocol
        protocol.makeConnection(wrapper.transport)
        data = request.method + b" " + request.uri + b" HTTP/1.1\r\n"
        for name, values in request.requestHeaders.getAllRawHeaders():
            data += name + b": " + b",".join(values) + b"\r\n"
        data += b"\r\n" + request.content.read()
        protocol.dataReceived(data)
        return NOT_DONE_YET


def websocket_resource(server: WsHost) -> Any:
    """A ``twisted.web`` resource taking over upgrade requests for ``server``."""
    return _UpgradeResource(_Factory(server))
