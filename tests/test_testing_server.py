"""Tests of :mod:`txlightstreamer.testing` (the TLCP test server).

The server is driven over real loopback HTTP with plain treq requests and a
tiny line reader, never with the txlightstreamer client.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import jsonpatch
import pytest
import pytest_twisted
import treq
from hypothesis import given
from hypothesis import strategies as st
from treq.client import HTTPClient
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import Site

from txlightstreamer.testing import (
    CLIENT_ID,
    DEFAULT_CLIENT_IDS,
    PYTHON_SDK_CLIENT_ID,
    DataModel,
    MessageError,
    Session,
    TlcpServer,
    encode_line,
    encode_update,
    encode_value,
)
from txlightstreamer.testing._encoding import decode_percent, encode_diff_int, tlcp_diff
from txlightstreamer.testing.demo import (
    DEMO_FIELDS,
    DEMO_ITEMS,
    PORTFOLIO_FIELDS,
    PORTFOLIO_ITEM,
    DemoFeed,
)

CID = "LS_cid=" + quote(CLIENT_ID, safe="")


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


# --- a tiny independent client ------------------------------------------------


class LineReader(Protocol):
    """Collects CR LF-terminated lines of a response body."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._buffer = b""
        self.ended: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self._buffer += data
        *complete, self._buffer = self._buffer.split(b"\r\n")
        self.lines.extend(line.decode("utf-8") for line in complete)
        self._check()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]  # noqa: N802
        self.reason = reason
        self.ended.callback(None)
        self._check()

    def _check(self) -> None:
        for entry in list(self._waiters):
            predicate, d = entry
            if predicate():
                self._waiters.remove(entry)
                d.callback(None)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        if predicate():
            return
        d: Deferred[None] = Deferred()
        self._waiters.append((predicate, d))
        d.addTimeout(timeout, _reactor())
        await d

    async def wait_lines(self, count: int, timeout: float = 5.0) -> list[str]:
        await self.wait_for(lambda: len(self.lines) >= count, timeout)
        return self.lines[:count]

    async def wait_line(self, line: str, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: line in self.lines, timeout)

    async def wait_ended(self, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: self.done, timeout)

    @property
    def done(self) -> bool:
        return self.ended.called

    def stop(self) -> None:
        if not self.done and self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]


class Peer:
    """Issues TLCP requests with treq (non-persistent connections)."""

    def __init__(self, server: TlcpServer, protocol: str = "TLCP-2.5.0") -> None:
        reactor = _reactor()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = HTTPClient(Agent(reactor, pool=self.pool))
        self.server = server
        self.protocol = protocol
        self.readers: list[LineReader] = []

    async def post(
        self, name: str, body: str, *, session: str | None = None, method: str = "POST"
    ) -> IResponse:
        assert self.server.url is not None
        url = f"{self.server.url}/lightstreamer/{name}.txt?LS_protocol={self.protocol}"
        if session is not None:
            url += f"&LS_session={session}"
        if method == "GET":
            url += "&" + body
            response: IResponse = await self.http.get(url, unbuffered=True)
        else:
            response = await self.http.post(
                url,
                data=body.encode("utf-8"),
                headers=Headers({b"Content-Type": [b"text/plain; charset=utf-8"]}),
                unbuffered=True,
            )
        return response

    async def stream(self, name: str, body: str, **kw: Any) -> LineReader:
        response = await self.post(name, body, **kw)
        assert response.code == 200
        assert response.headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
        reader = LineReader()
        self.readers.append(reader)
        response.deliverBody(reader)
        return reader

    async def lines(self, name: str, body: str, **kw: Any) -> list[str]:
        reader = await self.stream(name, body, **kw)
        await reader.wait_ended()
        return reader.lines

    async def create(self, extra: str = "", **kw: Any) -> tuple[LineReader, str]:
        reader = await self.stream("create_session", CID + extra, **kw)
        (conok,) = await reader.wait_lines(1)
        assert conok.startswith("CONOK,"), conok
        return reader, conok.split(",")[1]

    async def control(self, session: str, *lines: str) -> list[str]:
        return await self.lines("control", "\r\n".join(lines), session=session)

    async def close(self) -> None:
        for reader in self.readers:
            reader.stop()
        await self.pool.closeCachedConnections()


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[TlcpServer]:
    srv = TlcpServer()
    await srv.listen(_reactor())
    yield srv
    await srv.stop()


@pytest_twisted.async_yield_fixture
async def peer(server: TlcpServer) -> AsyncIterator[Peer]:
    p = Peer(server)
    yield p
    await p.close()


def add(req: int, sub: int, mode: str, group: str, schema: str, extra: str = "") -> str:
    return (
        f"LS_reqId={req}&LS_op=add&LS_subId={sub}&LS_mode={mode}"
        f"&LS_group={quote(group, safe='')}&LS_schema={quote(schema, safe='')}{extra}"
    )


HEAD = ["SERVNAME,txlightstreamer-test", "CLIENTIP,127.0.0.1", "CONS,unlimited"]


# --- session creation ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_create_streaming_head(server: TlcpServer, peer: Peer) -> None:
    reader, sid = await peer.create()
    lines = await reader.wait_lines(4)
    assert lines == [f"CONOK,{sid},50000,5000,*", *HEAD]
    session = server.sessions[sid]
    assert session.is_bound and session.protocol == "TLCP-2.5.0"
    assert not reader.done


@pytest_twisted.ensureDeferred
async def test_create_with_get_and_reduce_head(server: TlcpServer, peer: Peer) -> None:
    reader, sid = await peer.create("&LS_reduce_head=true&LS_keepalive_millis=90000", method="GET")
    await peer.control(sid, "LS_reqId=1&LS_op=constrain&LS_requested_max_bandwidth=12.5")
    server.sessions[sid].send_raw("NOOP,marker")
    await reader.wait_line("NOOP,marker")
    assert reader.lines == [f"CONOK,{sid},50000,60000,*", "NOOP,marker"]


@pytest.mark.parametrize(
    ("body", "protocol", "expected"),
    [
        (CID, "TLCP-2.3.0", "CONERR,65,Unsupported protocol version"),
        ("LS_user=x", "TLCP-2.5.0", "CONERR,65,Missing LS_cid"),
        (CID + "&LS_polling=maybe", "TLCP-2.5.0", "CONERR,65,LS_polling must be true or false"),
        (CID + "&LS_keepalive_millis=%zz", "TLCP-2.5.0", None),
    ],
)
@pytest_twisted.ensureDeferred
async def test_create_errors(
    server: TlcpServer, body: str, protocol: str, expected: str | None
) -> None:
    p = Peer(server, protocol)
    try:
        lines = await p.lines("create_session", body)
    finally:
        await p.close()
    assert len(lines) == 1
    if expected is None:
        assert lines[0].startswith("CONERR,67,")
    else:
        assert lines == [expected]
    assert not server.sessions


# The official Node client (lightstreamer-client-node 9.2.2) sends an LS_cid of its own.
@pytest.mark.parametrize("cid", [
    quote(CLIENT_ID, safe=""), quote(PYTHON_SDK_CLIENT_ID, safe=""), "someone%20else",
    "pcYgxn8m8%20feOojyA1U661h3g2.pz47Af7rmY2g", "%E2%9C%93",
])
@pytest_twisted.ensureDeferred
async def test_any_well_formed_client_id_by_default(server: TlcpServer, cid: str) -> None:
    p = Peer(server)
    try:
        reader = await p.stream("create_session", "LS_cid=" + cid)
        (conok,) = await reader.wait_lines(1)
    finally:
        await p.close()
    assert conok.startswith("CONOK,"), conok


@pytest.mark.parametrize("cid", ["", "%20%20", "a%0Ab", "a%7Fb", "a%09b"])
@pytest_twisted.ensureDeferred
async def test_malformed_client_id_is_refused(server: TlcpServer, cid: str) -> None:
    p = Peer(server)
    try:
        assert await p.lines("create_session", "LS_cid=" + cid) == [
            "CONERR,65,Invalid LS_cid"
        ]
    finally:
        await p.close()
    assert not server.sessions


@pytest.mark.parametrize(("cid", "accepted"), [
    (quote(CLIENT_ID, safe=""), True),
    (quote(PYTHON_SDK_CLIENT_ID, safe=""), True),
    ("someone%20else", False),
])
@pytest_twisted.ensureDeferred
async def test_strict_client_ids(cid: str, accepted: bool) -> None:
    srv = TlcpServer(client_ids=DEFAULT_CLIENT_IDS)
    await srv.listen(_reactor())
    p = Peer(srv)
    try:
        reader = await p.stream("create_session", "LS_cid=" + cid)
        (first,) = await reader.wait_lines(1)
    finally:
        await p.close()
        await srv.stop()
    if accepted:
        assert first.startswith("CONOK,"), first
    else:
        assert first == "CONERR,65,Invalid LS_cid"


@pytest_twisted.ensureDeferred
async def test_refuse_and_accept_sessions(server: TlcpServer, peer: Peer) -> None:
    server.refuse_sessions(10, "Blocked, for now")
    assert await peer.lines("create_session", CID) == ["CONERR,10,Blocked%2C for now"]
    server.accept_sessions()
    reader, sid = await peer.create()
    assert sid in server.sessions


@pytest_twisted.ensureDeferred
async def test_unknown_paths(server: TlcpServer, peer: Peer) -> None:
    assert server.url is not None
    response = await peer.http.get(server.url + "/lightstreamer/nothing.txt")
    assert response.code == 404
    await treq.content(response)
    response = await peer.http.get(server.url + "/elsewhere")
    assert response.code == 404
    await treq.content(response)


# --- subscriptions --------------------------------------------------------------


async def _subscribed(peer: Peer, *lines: str, extra: str = "") -> tuple[LineReader, str]:
    reader, sid = await peer.create("&LS_send_sync=false" + extra)
    await reader.wait_lines(4)
    answer = await peer.control(sid, *lines)
    assert all(line.startswith("REQOK,") for line in answer), answer
    return reader, sid


def _after_head(reader: LineReader) -> list[str]:
    return reader.lines[4:]


@pytest_twisted.ensureDeferred
async def test_merge_with_snapshot(server: TlcpServer, peer: Peer) -> None:
    server.data.update("item1", {"a": "1", "b": "x|y"})
    reader, sid = await _subscribed(
        peer, add(1, 1, "MERGE", "item1 item2", "a b c", "&LS_snapshot=true")
    )
    server.data.update("item1", {"a": "2"})
    server.data.update("item2", {"c": "#tag"})
    server.data.update("item1", {"c": ""})
    server.data.update("item1", {"zz": "not in schema"})
    server.data.update("item1", {"a": None, "b": None, "c": None})
    await reader.wait_for(lambda: len(reader.lines) >= 4 + 7)
    assert _after_head(reader) == [
        "SUBOK,1,2,3",
        "CONF,1,unlimited,filtered",
        "U,1,1,1|x%7Cy|#",
        "U,1,1,2|^2",
        "U,1,2,#|#|%23tag",
        "U,1,1,^2|$",
        "U,1,1,#|#|#",
    ]
    assert server.sessions[sid].progressive == 7


@pytest_twisted.ensureDeferred
async def test_merge_without_snapshot_and_delete(server: TlcpServer, peer: Peer) -> None:
    server.data.update("item1", {"a": "1"})
    reader, sid = await _subscribed(peer, add(1, 7, "MERGE", "item1", "a"))
    server.data.update("item1", {"a": "1"})
    server.data.update("item1", {"a": "2"})
    assert await peer.control(sid, "LS_reqId=2&LS_op=delete&LS_subId=7") == ["REQOK,2"]
    server.data.update("item1", {"a": "3"})
    await reader.wait_line("UNSUB,7")
    assert _after_head(reader) == [
        "SUBOK,7,1,1",
        "CONF,7,unlimited,filtered",
        "U,7,1,1",
        "U,7,1,2",
        "UNSUB,7",
    ]


@pytest_twisted.ensureDeferred
async def test_distinct_snapshot_length_and_clear(server: TlcpServer, peer: Peer) -> None:
    for n in range(5):
        server.data.update("news", {"title": f"t{n}"})
    reader, sid = await _subscribed(
        peer,
        add(1, 1, "DISTINCT", "news", "title", "&LS_snapshot=2"),
        add(2, 2, "DISTINCT", "news", "title", "&LS_snapshot=true"),
    )
    server.data.update("news", {"title": "live"})
    server.data.clear_snapshot("news")
    server.data.overflow("news", 3)
    await reader.wait_line("OV,2,1,3")
    assert _after_head(reader) == [
        "SUBOK,1,1,1",
        "CONF,1,unlimited,filtered",
        "U,1,1,t3",
        "U,1,1,t4",
        "EOS,1,1",
        "SUBOK,2,1,1",
        "CONF,2,unlimited,filtered",
        *[f"U,2,1,t{n}" for n in range(5)],
        "EOS,2,1",
        "U,1,1,live",
        "U,2,1,live",
        "CS,1,1",
        "CS,2,1",
        "OV,1,1,3",
        "OV,2,1,3",
    ]


@pytest_twisted.ensureDeferred
async def test_command_snapshot_and_events(server: TlcpServer, peer: Peer) -> None:
    data = server.data
    data.command("port", "k1", "ADD", {"qty": "10"})
    data.command("port", "k2", "ADD", {"qty": "20"})
    reader, sid = await _subscribed(
        peer,
        add(1, 3, "COMMAND", "port", "qty key command", "&LS_snapshot=true"),
    )
    data.command("port", "k3", "ADD", {"qty": "30"})
    data.command("port", "k1", "UPDATE", {"qty": "11"})
    data.command("port", "k2", "DELETE")
    data.command("port", "k9", "DELETE")  # unknown key: nothing
    data.clear_snapshot("port")
    await reader.wait_line("CS,3,1")
    assert _after_head(reader) == [
        "SUBCMD,3,1,3,2,3",
        "CONF,3,unlimited,filtered",
        "U,3,1,10|k1|ADD",
        "U,3,1,20|k2|",
        "EOS,3,1",
        "U,3,1,30|k3|",
        "U,3,1,11|k1|UPDATE",
        "U,3,1,#|k2|DELETE",
        "CS,3,1",
    ]
    assert data.keys("port") == {}


@pytest_twisted.ensureDeferred
async def test_raw_and_unfiltered(server: TlcpServer, peer: Peer) -> None:
    reader, sid = await _subscribed(
        peer,
        add(1, 1, "RAW", "tick", "p", "&LS_requested_max_frequency=unfiltered"),
        add(2, 2, "MERGE", "tick", "p", "&LS_requested_max_frequency=2.5&LS_snapshot=false"),
    )
    server.data.update("tick", {"p": "1"})
    server.data.update("tick", {"p": "1"})
    assert await peer.control(
        sid,
        "LS_reqId=3&LS_op=reconf&LS_subId=2&LS_requested_max_frequency=0.5",
        "LS_reqId=4&LS_op=reconf&LS_subId=1&LS_requested_max_frequency=1",
        "LS_reqId=5&LS_op=constrain&LS_requested_max_bandwidth=40",
    ) == ["REQOK,3", "REQERR,4,13,Unfiltered subscription", "REQOK,5"]
    await reader.wait_line("CONS,40")
    assert _after_head(reader) == [
        "SUBOK,1,1,1",
        "CONF,1,unlimited,unfiltered",
        "SUBOK,2,1,1",
        "CONF,2,2.5,filtered",
        "U,1,1,1",
        "U,2,1,1",
        "U,1,1,",
        "U,2,1,",
        "CONF,2,0.5,filtered",
        "CONS,40",
    ]


@pytest.mark.parametrize(
    ("supported", "expected"),
    [(None, "TP"), ("", ""), ("T", "T"), ("P,T", "TP"), ("P", "P")],
)
@pytest_twisted.ensureDeferred
async def test_supported_diffs(supported: str | None, expected: str) -> None:
    srv = TlcpServer(diffs="TP")
    await srv.listen(_reactor())
    p = Peer(srv)
    try:
        extra = "" if supported is None else "&LS_supported_diffs=" + quote(supported, safe="")
        reader, sid = await p.create(extra + "&LS_send_sync=false")
        assert srv.sessions[sid].diffs == expected
        await p.control(sid, add(1, 1, "MERGE", "t", "v"))
        text = "0123456789" * 10
        srv.data.update("t", {"v": text})
        srv.data.update("t", {"v": text + "!"})
        await reader.wait_lines(8)
        last = reader.lines[7]
        assert last == ("U,1,1,^TDwb!" if "T" in expected else "U,1,1," + text + "!")
    finally:
        await p.close()
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_plus_is_literal_and_prefix_mount(server: TlcpServer) -> None:
    root = Resource()
    root.putChild(b"prefix", server.resource())
    port = _reactor().listenTCP(0, Site(root), interface="127.0.0.1")
    other = TlcpServer()
    other._url = f"http://127.0.0.1:{port.getHost().port}/prefix"  # a peer of the mounted resource
    p = Peer(other)
    try:
        reader, sid = await p.create("&LS_send_sync=false")
        answer = await p.control(
            sid, "LS_reqId=1&LS_op=add&LS_subId=1&LS_mode=MERGE&LS_group=i+1&LS_schema=f+1%2Bx"
        )
        assert answer == ["REQOK,1"]
        sub = server.sessions[sid].subscriptions[1]
        assert sub.items == ("i+1",) and sub.fields == ("f+1+x",)
        server.data.update("i+1", {"f+1+x": "a+b"})
        await reader.wait_line("U,1,1,a+b")
    finally:
        await p.close()
        await server.stop()
        await port.stopListening()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (add(1, 1, "MERGE", "a", "f") + "&LS_snapshot=3", "REQERR,1,65,Invalid LS_snapshot"),
        (add(1, 1, "RAW", "a", "f") + "&LS_snapshot=true", "REQERR,1,65,"),
        (add(1, 1, "FANCY", "a", "f"), "REQERR,1,65,Invalid LS_mode"),
        (add(1, 0, "MERGE", "a", "f"), "REQERR,1,65,Invalid LS_subId"),
        (add(1, 1, "COMMAND", "a", "command f"), "REQERR,1,15,"),
        (add(1, 1, "COMMAND", "a", "key f"), "REQERR,1,16,"),
        (add(1, 1, "MERGE", "a", ""), "REQERR,1,23,"),
        (add(1, 1, "MERGE", "a", "f", "&LS_requested_max_frequency=fast"), "REQERR,1,65,"),
        ("LS_reqId=1&LS_op=delete&LS_subId=4", "REQERR,1,19,Subscription not found"),
        ("LS_reqId=1&LS_op=reconf&LS_subId=4", "REQERR,1,19,Subscription not found"),
        ("LS_reqId=1&LS_op=jump", "REQERR,1,65,Invalid LS_op"),
        ("LS_reqId=1&LS_op=register", "REQERR,1,40,MPN module disabled"),
        ("LS_op=add", "ERROR,65,Missing LS_reqId"),
        ("LS_reqId=1&LS_op=add&broken", "ERROR,67,"),
        ("LS_reqId=1&LS_op=add&x=%E2%28", "ERROR,67,"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_control_errors(server: TlcpServer, peer: Peer, line: str, expected: str) -> None:
    reader, sid = await peer.create()
    (answer,) = await peer.control(sid, line)
    assert answer.startswith(expected), answer
    assert not server.sessions[sid].subscriptions


@pytest_twisted.ensureDeferred
async def test_control_batch_and_session_errors(server: TlcpServer, peer: Peer) -> None:
    reader, sid = await peer.create()
    answer = await peer.control(
        sid,
        add(1, 1, "MERGE", "a", "f"),
        add(2, 1, "MERGE", "b", "f"),
        add(3, 2, "DISTINCT", "b", "f"),
        f"LS_reqId=4&LS_op=delete&LS_subId=2&LS_session={sid}",
        "LS_reqId=5&LS_op=delete&LS_subId=1&LS_session=Snope",
    )
    assert answer == [
        "REQOK,1",
        "REQERR,2,65,Subscription 1 already exists",
        "REQOK,3",
        "REQOK,4",
        "REQERR,5,20,Session not found",
    ]
    assert list(server.sessions[sid].subscriptions) == [1]
    assert await peer.lines("control", "LS_reqId=9&LS_op=destroy") == [
        "REQERR,9,65,Missing LS_session"
    ]


@pytest_twisted.ensureDeferred
async def test_resent_add_is_acknowledged_as_a_no_op(server: TlcpServer, peer: Peer) -> None:
    # The official client re-sends an unconfirmed add (same LS_subId, new LS_reqId) after a
    # LOOP: REQOK for the new request, no second SUBOK/CONF/snapshot, the subscription goes on.
    server.data.update("item1", {"a": "1"})
    first = add(1, 3, "MERGE", "item1", "a", "&LS_snapshot=true")
    reader, sid = await _subscribed(peer, first)
    await reader.wait_line("U,3,1,1")
    again = add(2, 3, "MERGE", "item1", "a", "&LS_snapshot=true&LS_ack=false")
    assert await peer.control(sid, again) == ["REQOK,2"]
    server.data.update("item1", {"a": "2"})
    await reader.wait_line("U,3,1,2")
    assert _after_head(reader) == ["SUBOK,3,1,1", "CONF,3,unlimited,filtered", "U,3,1,1",
                                   "U,3,1,2"]
    assert list(server.sessions[sid].subscriptions) == [3]
    # Another subscription under the same id is still refused (LS_subId is unique, §3.3).
    other = add(3, 3, "MERGE", "item1", "a", "&LS_snapshot=false")
    assert await peer.control(sid, other) == ["REQERR,3,65,Subscription 3 already exists"]
    # Once deleted, the id may be used again.
    assert await peer.control(sid, "LS_reqId=4&LS_op=delete&LS_subId=3") == ["REQOK,4"]
    assert await peer.control(sid, add(5, 3, "MERGE", "item1", "a")) == ["REQOK,5"]


@pytest_twisted.ensureDeferred
async def test_strict_items() -> None:
    srv = TlcpServer(data=DataModel(strict_items=True, items={"ok": ["f", "key", "command"]}))
    await srv.listen(_reactor())
    p = Peer(srv)
    try:
        reader, sid = await p.create()
        assert await p.control(
            sid,
            add(1, 1, "MERGE", "ok nope", "f"),
            add(2, 2, "MERGE", "ok", "f g"),
            add(3, 3, "COMMAND", "ok", "f key command"),
        ) == [
            "REQERR,1,21,Bad item group name",
            "REQERR,2,23,Bad field schema name",
            "REQOK,3",
        ]
    finally:
        await p.close()
        await srv.stop()


# --- stream life cycle ----------------------------------------------------------


def _values(lines: list[str]) -> list[str]:
    return [line.split(",", 3)[3] for line in lines if line.startswith("U,")]


@pytest_twisted.ensureDeferred
async def test_loop_at_content_length_then_bind(server: TlcpServer, peer: Peer) -> None:
    reader, sid = await peer.create("&LS_content_length=400&LS_send_sync=false")
    await reader.wait_lines(4)
    await peer.control(sid, add(1, 1, "RAW", "x", "n"))
    for n in range(40):
        server.data.update("x", {"n": f"value-{n:03d}"})
    await reader.wait_ended()
    assert reader.lines[-1] == "LOOP,0"
    assert not server.sessions[sid].is_bound
    first = reader.lines[4:-1]
    written = sum(len(line) + 2 for line in reader.lines[:-1])
    assert written >= 400 and written - len(reader.lines[-2]) - 2 < 400
    collected = list(first)
    binds = 0
    while len(_values(collected)) < 40:
        binds += 1
        reader = await peer.stream(
            "bind_session", f"LS_session={sid}&LS_content_length=300&LS_send_sync=false"
        )
        missing = 40 - len(_values(collected))

        def enough(r: LineReader = reader, n: int = missing) -> bool:
            return r.done or len(_values(r.lines)) >= n

        await reader.wait_for(enough)
        assert reader.lines[0] == f"CONOK,{sid},50000,5000,*"
        if reader.done:
            assert reader.lines[-1] == "LOOP,0"
            collected.extend(reader.lines[1:-1])
        else:
            collected.extend(reader.lines[1:])
    assert binds > 1
    assert _values(collected) == [f"value-{n:03d}" for n in range(40)]
    assert collected[:2] == ["SUBOK,1,1,1", "CONF,1,unlimited,filtered"]


@pytest_twisted.ensureDeferred
async def test_server_content_length_caps_request() -> None:
    srv = TlcpServer(content_length=200)
    await srv.listen(_reactor())
    p = Peer(srv)
    try:
        reader, sid = await p.create("&LS_content_length=50000000&LS_send_sync=false")
        await p.control(sid, add(1, 1, "RAW", "x", "n"))
        for n in range(20):
            srv.data.update("x", {"n": str(n) * 10})
        await reader.wait_ended()
        assert reader.lines[-1] == "LOOP,0"
    finally:
        await p.close()
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_polling(server: TlcpServer, peer: Peer) -> None:
    polling = "&LS_polling=true&LS_polling_millis=0&LS_idle_millis=0"
    lines = await peer.lines("create_session", CID + polling)
    sid = lines[0].split(",")[1]
    assert lines == [f"CONOK,{sid},50000,0,*", *HEAD, "LOOP,0"]
    assert await peer.control(sid, add(1, 1, "MERGE", "p", "v")) == ["REQOK,1"]
    server.data.update("p", {"v": "1"})
    bind = f"LS_session={sid}&LS_polling=true&LS_polling_millis=250&LS_idle_millis=3000"
    assert await peer.lines("bind_session", bind) == [
        f"CONOK,{sid},50000,3000,*",
        "SUBOK,1,1,1",
        "CONF,1,unlimited,filtered",
        "U,1,1,1",
        "LOOP,250",
    ]
    # Nothing queued: the poll waits for data.
    reader = await peer.stream("bind_session", bind)
    await reader.wait_lines(1)
    assert not reader.done
    server.data.update("p", {"v": "2"})
    server.data.update("p", {"v": "3"})
    await reader.wait_ended()
    assert reader.lines == [f"CONOK,{sid},50000,3000,*", "U,1,1,2", "U,1,1,3", "LOOP,250"]


@pytest_twisted.ensureDeferred
async def test_polling_idle_timeout_with_clock() -> None:
    clock = task.Clock()
    srv = TlcpServer(clock=clock)
    await srv.listen(_reactor())
    p = Peer(srv)
    try:
        reader, sid = await p.create("&LS_polling=true&LS_polling_millis=100&LS_idle_millis=2000")
        await reader.wait_lines(4)
        assert not reader.done
        assert len(clock.getDelayedCalls()) == 1  # the poll's idle timer
        clock.advance(1.9)
        assert not reader.done
        clock.advance(0.1)
        await reader.wait_ended()
        assert reader.lines == [f"CONOK,{sid},50000,2000,*", *HEAD, "LOOP,100"]
        lines = await p.lines("bind_session", f"LS_session={sid}&LS_polling=true&LS_idle_millis=0")
        assert lines == [f"CONOK,{sid},50000,0,*", "LOOP,0"]
    finally:
        await p.close()
        await srv.stop()
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_recovery_resends_after_prog(server: TlcpServer, peer: Peer) -> None:
    reader, sid = await _subscribed(peer, add(1, 1, "RAW", "r", "n"))
    for n in range(5):
        server.data.update("r", {"n": str(n)})
    await reader.wait_line("U,1,1,4")
    server.drop_streams()
    await reader.wait_ended()
    session = server.sessions[sid]
    assert not session.is_bound and session.progressive == 7
    server.data.update("r", {"n": "5"})
    # The client claims to have processed 4 data notifications (SUBOK, CONF, U 0, U 1).
    lines = await peer.lines(
        "bind_session",
        f"LS_session={sid}&LS_recovery_from=4&LS_polling=true&LS_polling_millis=0&LS_idle_millis=0",
    )
    assert lines == [
        f"CONOK,{sid},50000,0,*",
        "PROG,4",
        "U,1,1,2",
        "U,1,1,3",
        "U,1,1,4",
        "U,1,1,5",
        "LOOP,0",
    ]
    # Asking for more than was sent: PROG is the server's count.
    lines = await peer.lines(
        "bind_session", f"LS_session={sid}&LS_recovery_from=99&LS_polling=true"
    )
    assert lines[1:] == ["PROG,8", "LOOP,0"]


@pytest_twisted.ensureDeferred
async def test_recovery_refused_when_not_kept() -> None:
    srv = TlcpServer(recovery_log_size=3)
    await srv.listen(_reactor())
    p = Peer(srv)
    try:
        reader, sid = await p.create()
        await p.control(sid, add(1, 1, "RAW", "r", "n"))
        for n in range(5):
            srv.data.update("r", {"n": str(n)})
        lines = await p.lines(
            "bind_session", f"LS_session={sid}&LS_recovery_from=2&LS_polling=true"
        )
        assert lines == ["CONERR,4,Recovery progressive no longer available"]
        lines = await p.lines(
            "bind_session", f"LS_session={sid}&LS_recovery_from=4&LS_polling=true"
        )
        assert lines[1:] == ["PROG,4", "U,1,1,2", "U,1,1,3", "U,1,1,4", "LOOP,0"]
        assert not reader.done or reader.lines[-1] == "LOOP,0"
    finally:
        await p.close()
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_bind_errors(server: TlcpServer, peer: Peer) -> None:
    assert await peer.lines("bind_session", "LS_session=Sunknown") == [
        "CONERR,20,Session not found"
    ]
    assert await peer.lines("bind_session", "LS_polling=true") == ["CONERR,65,Missing LS_session"]
    reader, sid = await peer.create()
    old = Peer(server, "TLCP-2.4.0")
    try:
        assert await old.lines("bind_session", f"LS_session={sid}") == [
            "CONERR,3,Incompatible protocol version"
        ]
    finally:
        await old.close()


@pytest_twisted.ensureDeferred
async def test_new_bind_takes_over(server: TlcpServer, peer: Peer) -> None:
    first, sid = await peer.create()
    second = await peer.stream("bind_session", f"LS_session={sid}")
    await first.wait_ended()
    assert first.lines[-1] == "LOOP,0"
    await second.wait_lines(1)
    assert server.sessions[sid].stream is not None and not second.done


@pytest_twisted.ensureDeferred
async def test_destroy_and_force_rebind(server: TlcpServer, peer: Peer) -> None:
    reader, sid = await peer.create()
    assert await peer.control(sid, "LS_reqId=1&LS_op=force_rebind&LS_polling_millis=0") == [
        "REQOK,1"
    ]
    await reader.wait_ended()
    assert reader.lines[-1] == "LOOP,0"
    reader = await peer.stream("bind_session", f"LS_session={sid}")
    await reader.wait_lines(1)
    assert await peer.control(sid, "LS_reqId=2&LS_op=destroy") == ["REQOK,2"]
    await reader.wait_ended()
    assert reader.lines[-1] == "END,31,Destroy invoked by client"
    assert sid not in server.sessions
    # A custom cause; positive codes collapse to 0.
    reader, sid = await peer.create()
    assert await peer.control(
        sid, "LS_reqId=3&LS_op=destroy&LS_cause_code=-7&LS_cause_message=bye%2C%20bye"
    ) == ["REQOK,3"]
    await reader.wait_ended()
    assert reader.lines[-1] == "END,-7,bye%2C bye"
    reader, sid = await peer.create()
    await peer.control(sid, "LS_reqId=4&LS_op=destroy&LS_cause_code=5")
    await reader.wait_ended()
    assert reader.lines[-1] == "END,0,"


@pytest_twisted.ensureDeferred
async def test_server_side_end(server: TlcpServer, peer: Peer) -> None:
    reader, sid = await peer.create()
    server.sessions[sid].end(48, "Max duration")
    await reader.wait_ended()
    assert reader.lines[-1] == "END,48,Max duration"
    reader, sid = await peer.create()
    server.drop_streams()
    await reader.wait_ended()
    server.sessions[sid].end(32, "Admin")
    assert await peer.lines("bind_session", f"LS_session={sid}") == ["END,32,Admin"]
    assert sid not in server.sessions


@pytest_twisted.ensureDeferred
async def test_drop_streams_keeps_session_and_buffers(server: TlcpServer, peer: Peer) -> None:
    reader, sid = await _subscribed(peer, add(1, 1, "MERGE", "m", "v"))
    server.drop_streams()
    await reader.wait_ended()
    server.data.update("m", {"v": "while unbound"})
    assert not server.sessions[sid].is_bound
    reader = await peer.stream("bind_session", f"LS_session={sid}&LS_send_sync=false")
    await reader.wait_line("U,1,1,while unbound")
    assert reader.lines == [f"CONOK,{sid},50000,5000,*", "U,1,1,while unbound"]


# --- messages and heartbeats ----------------------------------------------------


def _handler(session: Session, message: str, sequence: str | None) -> Any:
    if message == "fail":
        raise MessageError(-3, "no, thanks")
    if message == "crash":
        raise RuntimeError("boom")
    if message == "later":
        return task.deferLater(_reactor(), 0.01, lambda: "eventually")
    return f"got {message}"


@pytest.mark.parametrize("protocol", ["TLCP-2.5.0", "TLCP-2.4.0"])
@pytest_twisted.ensureDeferred
async def test_messages(protocol: str) -> None:
    srv = TlcpServer(message_handler=_handler)
    await srv.listen(_reactor())
    p = Peer(srv, protocol)
    try:
        reader, sid = await p.create("&LS_send_sync=false")
        answer = await p.lines(
            "msg",
            "\r\n".join(
                [
                    "LS_reqId=1&LS_message=hello%2C%20you&LS_msg_prog=1",
                    "LS_reqId=2&LS_message=fail&LS_sequence=S1&LS_msg_prog=1",
                    "LS_reqId=3&LS_message=later&LS_sequence=S1&LS_msg_prog=2",
                    "LS_reqId=4&LS_message=quiet&LS_outcome=false",
                    "LS_reqId=5&LS_message=again&LS_sequence=S1&LS_msg_prog=2",
                    "LS_reqId=6&LS_message=x&LS_sequence=UNORDERED_MESSAGES&LS_msg_prog=3",
                    "LS_reqId=7&LS_message=crash&LS_msg_prog=9",
                ]
            ),
            session=sid,
        )
        assert answer[:5] == [
            "REQOK,1",
            "REQOK,2",
            "REQOK,3",
            "REQOK,4",
            "REQERR,5,33,Message progressive already enqueued",
        ]
        assert answer[5].startswith("REQERR,6,65,") and answer[6] == "REQOK,7"
        await reader.wait_lines(8)
        if protocol == "TLCP-2.5.0":
            expected = [
                "MSGDONE,*,1,got hello%2C you",
                "MSGFAIL,S1,1,-3,no%2C thanks",
                "MSGFAIL,*,9,35,boom",
                "MSGDONE,S1,2,eventually",
            ]
        else:
            expected = [
                "MSGDONE,*,1",
                "MSGFAIL,S1,1,-3,no%2C thanks",
                "MSGFAIL,*,9,35,boom",
                "MSGDONE,S1,2",
            ]
        assert reader.lines[4:] == expected
        assert srv.sessions[sid].messages[0] == (None, 1, "hello, you")
        assert await p.lines("heartbeat", "\r\n", session=sid) == ["REQOK"]
        assert await p.lines("heartbeat", "", session="Sunknown") == ["REQOK"]
    finally:
        await p.close()
        await srv.stop()


# --- timers with a Clock ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_probe_sync_and_session_timeout_with_clock() -> None:
    clock = task.Clock()
    srv = TlcpServer(clock=clock, keepalive_millis=2000, sync_interval_millis=5000)
    await srv.listen(_reactor())
    p = Peer(srv)
    try:
        reader, sid = await p.create()
        await reader.wait_lines(4)
        clock.advance(1.9)
        assert len(reader.lines) == 4
        clock.advance(0.1)
        await reader.wait_lines(5)
        assert reader.lines[4] == "PROBE"
        clock.advance(2)
        clock.advance(1)  # t=5: SYNC
        await reader.wait_lines(7)
        assert reader.lines[4:7] == ["PROBE", "PROBE", "SYNC,5"]
        # LS_keepalive_millis is clamped to [1000, 60000].
        reader2 = await p.stream("bind_session", f"LS_session={sid}&LS_keepalive_millis=10")
        (conok,) = await reader2.wait_lines(1)
        assert conok == f"CONOK,{sid},50000,1000,*"
        await reader.wait_ended()
        srv.drop_streams()
        await reader2.wait_ended()
        assert sid in srv.sessions
        clock.advance(29.9)
        assert sid in srv.sessions
        clock.advance(0.1)
        assert sid not in srv.sessions
        assert clock.getDelayedCalls() == []
    finally:
        await p.close()
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_stop_cleans_everything() -> None:
    clock = task.Clock()
    srv = TlcpServer(clock=clock)
    await srv.listen(_reactor())
    p = Peer(srv)
    reader, sid = await p.create()
    await p.create("&LS_polling=true&LS_idle_millis=5000")
    await srv.stop()
    await reader.wait_ended()
    assert not srv.sessions and not srv.listening
    assert clock.getDelayedCalls() == []
    await p.close()


# --- the resource without sockets -------------------------------------------------


def test_resource_with_dummy_request() -> None:
    from twisted.web.test.requesthelper import DummyRequest

    clock = task.Clock()
    srv = TlcpServer(clock=clock, keepalive_millis=1000)
    request = DummyRequest([b"lightstreamer", b"create_session.txt"])
    request.method = b"POST"
    request.uri = b"/lightstreamer/create_session.txt?LS_protocol=TLCP-2.5.0"
    request.content = io.BytesIO(f"{CID}&LS_reduce_head=true".encode())  # type: ignore[attr-defined]
    result = srv.resource().render(request)
    assert result == 1  # NOT_DONE_YET
    (sid,) = srv.sessions
    clock.advance(1)
    assert b"".join(request.written) == f"CONOK,{sid},50000,1000,*\r\nPROBE\r\n".encode()
    srv.sessions[sid].end(32, "bye")
    assert request.finished
    assert clock.getDelayedCalls() == []


# --- encoding ------------------------------------------------------------------------


def decode_values(previous: list[str | None] | None, wire: str, count: int) -> list[str | None]:
    """An independent decoder of U value lists (tlcp.md §5)."""
    out: list[str | None] = []
    for token in wire.split("|"):
        if token == "":
            assert previous is not None
            out.append(previous[len(out)])
        elif token == "#":
            out.append(None)
        elif token == "$":
            out.append("")
        elif token.startswith("^T"):
            assert previous is not None
            old = previous[len(out)]
            assert old
            out.append(apply_tlcp_diff(old, decode_percent(token[2:])))
        elif token.startswith("^P"):
            assert previous is not None
            old = previous[len(out)]
            assert old is not None
            patched = jsonpatch.apply_patch(json.loads(old), json.loads(decode_percent(token[2:])))
            out.append(json.dumps(patched))
        elif token.startswith("^"):
            assert previous is not None
            for _ in range(int(token[1:])):
                out.append(previous[len(out)])
        else:
            out.append(decode_percent(token))
    assert len(out) == count
    return out


def apply_tlcp_diff(old: str, diff: str) -> str:
    out: list[str] = []
    pos = cursor = 0
    section = 0
    while pos < len(diff):
        n = 0
        while diff[pos].isupper():
            n = n * 26 + ord(diff[pos]) - ord("A")
            pos += 1
        n = n * 26 + ord(diff[pos]) - ord("a")
        pos += 1
        if section % 3 == 0:
            assert cursor + n <= len(old)
            out.append(old[cursor : cursor + n])
            cursor += n
        elif section % 3 == 1:
            out.append(diff[pos : pos + n])
            pos += n
        else:
            cursor += n
        section += 1
    return "".join(out)


def test_encode_value() -> None:
    assert encode_value(None) == "#"
    assert encode_value("") == "$"
    assert encode_value("#") == "%23"
    assert encode_value("$x") == "%24x"
    assert encode_value("^3") == "%5E3"
    assert encode_value("a#b$^") == "a#b$^"
    assert encode_value("a|b%c\r\n,d") == "a%7Cb%25c%0D%0A,d"
    assert encode_value("àè😀") == "àè😀"


def test_encode_line() -> None:
    assert encode_line("PROBE") == "PROBE"
    assert encode_line("REQERR", "7", 65, "bad, very|bad%") == "REQERR,7,65,bad%2C very%7Cbad%25"
    assert encode_line("CONF", 1, "unlimited", "filtered") == "CONF,1,unlimited,filtered"


def test_encode_update_spec_examples() -> None:
    row1 = ["20:00:33", "3.04", "0.0", "2.41", "3.67", "3.03", "3.04", None, None, ""]
    assert encode_update(None, row1) == "20:00:33|3.04|0.0|2.41|3.67|3.03|3.04|#|#|$"
    row2 = ["20:00:54", "3.07", "0.98", "2.41", "3.67", "3.06", "3.07", None, None, "Suspended"]
    assert encode_update(row1, row2) == "20:00:54|3.07|0.98|^2|3.06|3.07|^2|Suspended"
    row3 = ["20:06:10", "3.05", "0.32", *row2[3:]]
    assert encode_update(row2, row3) == "20:06:10|3.05|0.32|^7"
    assert encode_update(["a"], ["a"]) == ""
    assert encode_update(["a", "b"], ["a", "c"]) == "|c"
    assert encode_update([None], [""]) == "$"
    assert encode_update([""], [None]) == "#"


@pytest.mark.parametrize(
    ("n", "text"), [(0, "a"), (3, "d"), (25, "z"), (26, "Ba"), (29, "Bd"), (52, "Ca"), (676, "BAa")]
)
def test_diff_integers(n: int, text: str) -> None:
    assert encode_diff_int(n) == text


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("foobar", "foo"),
        ("foobar", "fzapbar"),
        ("foobar", "zapfoo"),
        ("foobar", "fr"),
        ("abcdefghijklmnopqrstuvwxyz1", "1"),
        ("foo", "foo%$=,+|"),
        ("", "foo"),
    ],
)
def test_tlcp_diff_roundtrip(old: str, new: str) -> None:
    assert apply_tlcp_diff(old, tlcp_diff(old, new)) == new
    assert tlcp_diff("foobar", "foo") == "d"
    assert tlcp_diff("foobar", "fzapbar") == "bdzapcd"


def test_encode_update_diffs() -> None:
    old = "x" * 50 + "middle" + "y" * 50
    new = "x" * 50 + "MID|DLE" + "y" * 50
    wire = encode_update([old], [new], diffs="T")
    assert wire.startswith("^T") and "%7C" in wire
    assert decode_values([old], wire, 1) == [new]
    assert encode_update([old], [new]) == new.replace("|", "%7C")
    assert encode_update(["😀" + old], ["😀" + new], diffs="T").startswith("😀")
    doc = {"a": list(range(20)), "b": "c" * 30}
    new_doc = {**doc, "b": "d"}
    wire = encode_update([json.dumps(doc)], [json.dumps(new_doc)], diffs="P")
    assert wire.startswith("^P")
    assert json.loads(decode_values([json.dumps(doc)], wire, 1)[0] or "") == new_doc
    # No ^T on a JSON value while ^P is enabled.
    long_json = json.dumps({"k": "v" * 60})
    assert not encode_update([long_json], [long_json[:-2] + 'w"}'], diffs="TP").startswith("^T")


values = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["#", "$", "^2", "a|b", "%"]))


@given(
    st.integers(1, 6).flatmap(
        lambda n: st.tuples(
            st.lists(values, min_size=n, max_size=n), st.lists(values, min_size=n, max_size=n)
        )
    ),
    st.sampled_from(["", "T", "P", "TP"]),
)
def test_encode_update_roundtrip(
    rows: tuple[list[str | None], list[str | None]], diffs: str
) -> None:
    first, second = rows
    wire1 = encode_update(None, first, diffs=diffs)
    assert decode_values(None, wire1, len(first)) == first
    wire2 = encode_update(first, second, diffs=diffs)
    assert decode_values(first, wire2, len(second)) == second


# --- demo feed ----------------------------------------------------------------------


def test_demo_feed_with_clock() -> None:
    clock = task.Clock()
    data = DataModel()
    updates: list[str] = []
    commands: list[str] = []

    class Listener:
        def item_updated(self, item: str, state: Any, changed: Any) -> None:
            updates.append(item)
            assert set(state) == set(DEMO_FIELDS)

        def item_command(self, item: str, row: Any) -> None:
            commands.append(row["command"])
            assert set(row) <= set(PORTFOLIO_FIELDS)

        def item_cleared(self, item: str) -> None:
            pass

        def item_overflow(self, item: str, lost: int) -> None:
            pass

    listener = Listener()
    for item in (*DEMO_ITEMS, PORTFOLIO_ITEM):
        data.add_listener(item, listener)
    feed = DemoFeed(data, clock, interval=0.25)
    feed.start()
    clock.pump([0.25] * 200)
    feed.stop()
    assert clock.getDelayedCalls() == []
    assert len(updates) >= 200 and set(updates) == set(DEMO_ITEMS)
    assert {"ADD", "UPDATE", "DELETE"} <= set(commands)
    assert all(float(data.state(item)["last_price"] or 0) > 0 for item in DEMO_ITEMS)


def test_data_model_validation() -> None:
    data = DataModel()
    with pytest.raises(TypeError):
        data.update("i", {"f": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        data.command("i", "k", "UPSERT")
    with pytest.raises(ValueError):
        data.overflow("i", 0)
    data.set_item("i", {"f": "v"})
    assert data.state("i") == {"f": "v"} and data.history("i") == []
    with pytest.raises(ValueError):
        TlcpServer(diffs="X")
    _ = defer
