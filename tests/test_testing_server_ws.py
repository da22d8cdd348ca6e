"""
`TlcpServer` over WebSocket, driven by a bare autobahn socket (none of the client's code):
requests as text messages, answers and notifications collected line by line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.defer import Deferred

pytest.importorskip("autobahn")

from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketClientFactory,
    WebSocketClientProtocol,
    connectWS,
)

from txlightstreamer.testing import CLIENT_ID, TlcpServer  # noqa: E402

from .support import wait_until  # noqa: E402

CID = "LS_cid=" + quote(CLIENT_ID, safe="")
#: An LS_cid of the official Node client's kind (not one of the known ones).
OTHER_CID = "LS_cid=" + quote("pcYgxn8m8 feOojyA1U661h3g2.pz47Af7rmY2g", safe="")


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class _Socket(WebSocketClientProtocol):
    owner: RawWs  # (autobahn's protocol has a ``peer`` of its own)

    def onOpen(self) -> None:  # noqa: N802
        self.owner.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        self.owner.lines.extend(line for line in payload.decode("utf-8").split("\r\n") if line)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:  # noqa: N802, N803
        self.owner.closed = True
        if not self.owner.opened.called:
            self.owner.opened.errback(ConnectionError(f"WebSocket closed: {reason}"))


class _Factory(WebSocketClientFactory):
    protocol = _Socket

    def __init__(self, owner: RawWs, url: str) -> None:
        super().__init__(url, protocols=["TLCP-2.5.0.lightstreamer.com"])
        self.owner = owner

    def buildProtocol(self, addr: Any) -> _Socket:  # noqa: N802
        proto: _Socket = super().buildProtocol(addr)
        proto.owner = self.owner
        return proto


class RawWs:
    """One WebSocket to the server, speaking TLCP by hand."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.opened: Deferred[_Socket] = Deferred()
        self.closed = False
        self.socket: _Socket | None = None

    async def connect(self, url: str) -> None:
        connectWS(_Factory(self, url.replace("http://", "ws://") + "/lightstreamer"))
        self.socket = await self.opened

    def send(self, name: str, *lines: str) -> None:
        assert self.socket is not None
        self.socket.sendMessage("\r\n".join((name, *lines)).encode("utf-8"), isBinary=False)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        await wait_until(predicate, timeout=5.0)

    async def wait_line(self, line: str) -> None:
        await self.wait_for(lambda: line in self.lines)

    def close(self) -> None:
        if self.socket is not None and not self.closed:
            self.socket.dropConnection(abort=True)


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[TlcpServer]:
    srv = TlcpServer()
    await srv.listen(_reactor())
    yield srv
    await srv.stop()


@pytest_twisted.async_yield_fixture
async def ws(server: TlcpServer) -> AsyncIterator[RawWs]:
    peer = RawWs()
    assert server.url is not None
    await peer.connect(server.url)
    yield peer
    peer.close()
    await wait_until(lambda: peer.closed, timeout=5.0)
    await defer.succeed(None)


def _add(req: int, extra: str = "") -> str:
    return (f"LS_reqId={req}&LS_op=add&LS_subId=8&LS_mode=MERGE&LS_group=item1"
            f"&LS_schema=a&LS_snapshot=true{extra}")


@pytest_twisted.ensureDeferred
async def test_any_well_formed_client_id_over_websocket(server: TlcpServer, ws: RawWs) -> None:
    ws.send("wsok")
    ws.send("create_session", OTHER_CID + "&LS_send_sync=false")
    await ws.wait_for(lambda: any(line.startswith(("CONOK,", "CONERR,")) for line in ws.lines))
    assert ws.lines[0] == "WSOK" and ws.lines[1].startswith("CONOK,"), ws.lines


@pytest_twisted.ensureDeferred
async def test_resent_add_after_a_loop_is_a_no_op(server: TlcpServer, ws: RawWs) -> None:
    # What the official client does on a WebSocket: add with LS_ack=false, LOOP, rebind, and
    # the same add again (same LS_subId, new LS_reqId).  REQOK, no second SUBOK, no REQERR.
    server.data.update("item1", {"a": "1"})
    ws.send("wsok")
    ws.send("create_session", CID + "&LS_send_sync=false")
    await ws.wait_for(lambda: any(line.startswith("CONOK,") for line in ws.lines))
    ws.send("control", _add(1, "&LS_ack=false"))
    await ws.wait_line("U,8,1,1")
    ws.send("control", "LS_reqId=2&LS_op=force_rebind")
    await ws.wait_line("LOOP,0")
    ws.send("bind_session", "LS_send_sync=false")
    await ws.wait_for(lambda: sum(line.startswith("CONOK,") for line in ws.lines) == 2)
    ws.send("control", _add(3, "&LS_ack=false"))
    await ws.wait_line("REQOK,3")
    server.data.update("item1", {"a": "2"})
    await ws.wait_line("U,8,1,2")
    relevant = [line for line in ws.lines
                if line.split(",")[0] in ("SUBOK", "CONF", "U", "REQOK", "REQERR")]
    assert relevant == ["REQOK,1", "SUBOK,8,1,1", "CONF,8,unlimited,filtered", "U,8,1,1",
                        "REQOK,2", "REQOK,3", "U,8,1,2"]
    (session,) = server.sessions.values()
    assert list(session.subscriptions) == [8]


@pytest_twisted.ensureDeferred
async def test_readd_with_other_parameters_is_refused_over_websocket(
    server: TlcpServer, ws: RawWs
) -> None:
    ws.send("wsok")
    ws.send("create_session", CID + "&LS_send_sync=false")
    await ws.wait_for(lambda: any(line.startswith("CONOK,") for line in ws.lines))
    ws.send("control", _add(1))
    await ws.wait_line("SUBOK,8,1,1")
    ws.send("control", _add(2).replace("LS_group=item1", "LS_group=item2"))
    await ws.wait_line("REQERR,2,65,Subscription 8 already exists")
