"""The front door of the test server: HTTP requests and WebSocket messages to TLCP requests."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, cast

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from . import _control
from ._encoding import encode_line
from ._faults import Faults
from ._outputs import HttpOutput, Output, WsOutput
from ._params import ConnectionRefused, body, conerr, parse_params
from ._session import Session

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest

    from ._websocket import TlcpWebSocketProtocol

__all__ = ["ResourceHost", "TlcpResource"]


class ResourceHost(Protocol):
    """What the resource needs of its server: settings, sessions and create/bind."""

    @property
    def faults(self) -> Faults: ...

    @property
    def received(self) -> deque[tuple[str, dict[str, str]]]: ...

    @property
    def set_cookie(self) -> str | None: ...

    @property
    def websocket(self) -> bool: ...

    @property
    def websocket_refusal(self) -> int: ...

    @property
    def _sessions(self) -> dict[str, Session]: ...

    def _create_stream(
        self, output: Output, query: Mapping[str, str], lines: list[str]
    ) -> list[str] | None: ...

    def _bind_stream(
        self, output: Output, query: Mapping[str, str], lines: list[str]
    ) -> list[str] | None: ...


class TlcpResource(Resource):
    """Serves ``…/lightstreamer/<name>.txt`` requests and ``…/lightstreamer`` upgrades."""

    isLeaf = True

    def __init__(self, server: ResourceHost) -> None:
        super().__init__()
        self._server = server
        self._ws_site_resource: Resource | None = None

    @property
    def set_cookie(self) -> str | None:
        """The server's ``Set-Cookie`` value (for WebSocket handshakes)."""
        return self._server.set_cookie

    def render(self, request: IRequest) -> bytes | int:
        return self._render(cast(Request, request))

    def _record(self, name: str, request: Request) -> None:
        headers = {
            key.decode("latin-1").lower(): ", ".join(v.decode("latin-1") for v in values)
            for key, values in request.requestHeaders.getAllRawHeaders()
        }
        self._server.received.append((name, headers))

    def _ws_resource(self) -> Resource:
        if self._ws_site_resource is None:
            from ._websocket import websocket_resource

            self._ws_site_resource = websocket_resource(self)
        return self._ws_site_resource

    def _ws_request(self, conn: TlcpWebSocketProtocol, name: str, lines: list[str]) -> None:
        """One request received as a WebSocket message on ``conn``."""
        server = self._server
        query = {"LS_protocol": conn.tlcp_protocol}
        if name == "wsok":
            conn.send_text("WSOK\r\n")
            return
        if name == "create_session":
            answer = server._create_stream(WsOutput(conn), query, lines)
            if answer:
                conn.send_text(body(*answer).decode("utf-8"))
            return
        # On a WebSocket, LS_session defaults to the last session bound on it (§2.3).
        if conn.last_session is not None:
            query["LS_session"] = conn.last_session
        if name == "bind_session":
            answer = server._bind_stream(WsOutput(conn), query, lines)
            if answer:
                conn.send_text(body(*answer).decode("utf-8"))
        elif name in ("control", "msg"):
            handler = _control.control if name == "control" else _control.msg
            # Answers go out before what the requests triggered (SUBOK, UNSUB, END...).
            conn.cork()
            reply = ""
            try:
                reply = handler(server._sessions, query, lines).decode("utf-8")
            finally:
                conn.uncork(reply)
        elif name == "heartbeat":
            answer_body = _control.heartbeat(query, lines)
            if answer_body != b"REQOK\r\n":
                conn.send_text(answer_body.decode("utf-8"))  # only errors are answered on WS
        else:
            conn.send_text(encode_line("ERROR", 67, f"Unknown request {name!r}") + "\r\n")

    def _render(self, request: Request) -> bytes | int:
        server = self._server
        path = [segment.decode("utf-8", "replace") for segment in request.postpath or ()]
        while path and path[-1] == "":
            path.pop()
        upgrade = (request.getHeader(b"upgrade") or b"").lower() == b"websocket"
        if upgrade or (path and path[-1] == "lightstreamer"):
            self._record("websocket", request)
            if not upgrade or not path or path[-1] != "lightstreamer":
                request.setResponseCode(400)
                return b"WebSocket upgrade expected on .../lightstreamer\r\n"
            if not server.websocket:
                request.setResponseCode(server.websocket_refusal)
                return b"WebSocket not available on this server\r\n"
            return self._ws_resource().render(request)  # type: ignore[no-any-return]
        if len(path) < 2 or path[-2] != "lightstreamer" or not path[-1].endswith(".txt"):
            request.setResponseCode(404)
            return b"Not a TLCP request\r\n"
        name = path[-1][: -len(".txt")]
        method = request.method
        if method not in (b"POST", b"GET"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, POST")
            return b""
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if name not in ("create_session", "bind_session", "control", "msg", "heartbeat"):
            request.setResponseCode(404)
            return b"Unknown TLCP request\r\n"
        self._record(name, request)
        if name in ("create_session", "bind_session"):
            injected = server.faults._http_answer()
            if injected is not None:
                request.setResponseCode(injected[0])
                return injected[1]
        if name == "create_session" and server.set_cookie is not None:
            request.responseHeaders.addRawHeader(b"set-cookie", server.set_cookie.encode())
        try:
            query, lines = _read_request(request)
        except ValueError as e:
            if name in ("create_session", "bind_session"):
                return body(conerr(ConnectionRefused(67, f"Malformed request: {e}")))
            return body(encode_line("ERROR", 67, f"Malformed request: {e}"))
        if name == "create_session":
            answer = server._create_stream(HttpOutput(request), query, lines)
            return NOT_DONE_YET if answer is None else body(*answer)
        if name == "bind_session":
            answer = server._bind_stream(HttpOutput(request), query, lines)
            return NOT_DONE_YET if answer is None else body(*answer)
        if name == "control":
            return _control.control(server._sessions, query, lines)
        if name == "msg":
            return _control.msg(server._sessions, query, lines)
        return _control.heartbeat(query, lines)


def _read_request(request: Request) -> tuple[dict[str, str], list[str]]:
    uri = request.uri.decode("utf-8")
    query = parse_params(uri.partition("?")[2])
    lines: list[str] = []
    if request.method == b"POST" and request.content is not None:
        text = request.content.read().decode("utf-8")
        lines = [line for line in re.split(r"\r?\n", text) if line]
    return query, lines
