"""
The WebSocket transport end to end (our client against `TlcpServer` over loopback), Stream-Sense
when the server refuses WebSocket, forced transports, and the official SDK over WebSocket
against the test server.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

pytest.importorskip("autobahn")

from txlightstreamer import (  # noqa: E402
    MODE_COMMAND,
    MODE_DISTINCT,
    MODE_MERGE,
    MODE_RAW,
    LsClient,
    Table,
)
from txlightstreamer.errors import TransportError  # noqa: E402
from txlightstreamer.protocol import create_session  # noqa: E402
from txlightstreamer.testing import MessageError, TlcpServer  # noqa: E402
from txlightstreamer.transport import TransportOptions, make_transports  # noqa: E402
from txlightstreamer.transport.interfaces import StreamClosed  # noqa: E402
from txlightstreamer.transport.ws import WsStream, ws_url  # noqa: E402

from .support import stream_sequence, wait_until  # noqa: E402


class Recorded:
    """A client and what it reported; destroyed at the end of the test."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.client = LsClient(url, **kwargs)
        self.statuses: list[str] = []
        self.errors: list[Exception] = []
        self.sessions: list[Any] = []
        self.client.on_status(lambda status, reason: self.statuses.append(status))
        self.client.on_error(self.errors.append)
        self.client.on_session(self.sessions.append)


@pytest_twisted.async_yield_fixture
async def make_client() -> AsyncIterator[Callable[..., Recorded]]:
    made: list[Recorded] = []

    def make(url: str, **kwargs: Any) -> Recorded:
        r = Recorded(url, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        await r.client.destroy()


def names(server: TlcpServer) -> list[str]:
    return [name for name, _ in server.received]


# -- units -----------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "expected"), [
    ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/lightstreamer"),
    ("https://push.example.com", "wss://push.example.com/lightstreamer"),
    ("https://push.example.com/", "wss://push.example.com/lightstreamer"),
    ("http://h:1/prefix/deeper", "ws://h:1/prefix/deeper/lightstreamer"),
    ("http://[::1]:9/p", "ws://[::1]:9/p/lightstreamer"),
])
def test_ws_url(base: str, expected: str) -> None:
    assert ws_url(base) == expected


class Sink:
    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.ended: list[Failure] = []

    def stream_lines(self, stream: Any, lines: list[bytes]) -> None:
        self.lines.extend(lines)

    def stream_ended(self, stream: Any, reason: Failure) -> None:
        self.ended.append(reason)


def _ws_transport(**kwargs: Any) -> Any:
    _, ws = make_transports(reactor, TransportOptions(websocket=True, **kwargs))
    return ws


def test_messages_split_on_crlf_and_nothing_before_wsok() -> None:
    sink = Sink()
    stream = _ws_transport().open_stream("http://127.0.0.1:9", create_session(), sink)
    # A CONOK before WSOK is not processed (tlcp.md §3.6); empty pieces are ignored.
    stream._message(b"CONOK,S1,50000,5000,*\r\n", False)
    stream._message(b"WSOK", False)
    stream._message(b"CONOK,S1,50000,5000,*\r\nSERVNAME,x\r\n\r\nCONS,unlimited", False)
    stream._message(b"\r\nPROBE\r\n", False)
    assert sink.lines == [b"WSOK", b"CONOK,S1,50000,5000,*", b"SERVNAME,x", b"CONS,unlimited",
                          b"PROBE"]
    stream.stop()
    stream._message(b"PROBE", False)
    assert sink.lines[-1] == b"PROBE" and len(sink.lines) == 5
    assert sink.ended == []


def test_overlong_line_is_a_protocol_error() -> None:
    sink = Sink()
    stream = _ws_transport(max_line_length=10).open_stream(
        "http://127.0.0.1:9", create_session(), sink)
    stream._message(b"WSOK\r\nU,1,1," + b"x" * 20, False)
    assert sink.lines == [b"WSOK"]
    assert "longer than 10 bytes" in str(sink.ended[0].value)


def test_websocket_can_be_disabled() -> None:
    _, ws = make_transports(reactor, TransportOptions(websocket=False))
    assert ws is None


def test_missing_autobahn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "autobahn.twisted.websocket", None)
    monkeypatch.delitem(sys.modules, "txlightstreamer.transport.ws", raising=False)
    # Not forced: HTTP only, silently.
    http, ws = make_transports(reactor, TransportOptions())
    assert http is not None and ws is None
    client = LsClient("http://127.0.0.1:9")
    assert client._session.choice.candidates == (("HTTP", False), ("HTTP", True))
    # Required: a clear error naming the extra.
    with pytest.raises(RuntimeError, match=r"pip install 'txlightstreamer\[ws\]'"):
        make_transports(reactor, TransportOptions(websocket=True))
    with pytest.raises((ValueError, RuntimeError), match=r"txlightstreamer\[ws\]"):
        LsClient("http://127.0.0.1:9", forced_transport="WS-STREAMING")


# -- end to end ------------------------------------------------------------------------


MODES = {
    MODE_MERGE: (["key", "v"], {"v": "1"}),
    MODE_DISTINCT: (["v"], {"v": "1"}),
    MODE_RAW: (["v"], {"v": "1"}),
    MODE_COMMAND: (["key", "command", "v"], None),
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest_twisted.ensureDeferred
async def test_ws_streaming_each_mode(server: TlcpServer, make_client: Any, mode: str) -> None:
    c = make_client(server.url)
    await c.client.create_session()
    assert c.client.status == "CONNECTED:WS-STREAMING"
    fields, _ = MODES[mode]
    table = Table(c.client, mode=mode, item_ids=["it"], schema=fields,
                  snapshot=mode != MODE_RAW)
    got: list[Any] = []
    table.on_update(lambda item, row: got.append(row))
    await table.when_subscribed()
    for i in range(5):
        if mode == MODE_COMMAND:
            server.data.command("it", f"k{i}", "ADD", {"v": str(i)})
        else:
            server.data.update("it", {"v": str(i), "key": "k"})
    await wait_until(lambda: len(got) == 5)
    assert [row[fields.index("v")] for row in got] == [str(i) for i in range(5)]
    # Everything went over the one socket: no HTTP request at all.
    assert names(server) == ["websocket"]
    assert c.errors == []


@pytest_twisted.ensureDeferred
async def test_ws_control_on_the_socket_and_unsubscribe(
        server: TlcpServer, make_client: Any) -> None:
    c = make_client(server.url)
    await c.client.create_session()
    tables = [Table(c.client, mode=MODE_MERGE, item_ids=[f"i{n}"], schema=["v"])
              for n in range(3)]
    for t in tables:
        await t.when_subscribed()
    (session,) = server.sessions.values()
    assert len(session.subscriptions) == 3
    await tables[0].delete()
    await c.client.set_max_bandwidth(12.5)
    await wait_until(lambda: c.client.bandwidth == "12.5")
    await wait_until(lambda: len(session.subscriptions) == 2)
    assert names(server) == ["websocket"]


@pytest_twisted.ensureDeferred
async def test_ws_loop_opens_a_new_socket_and_binds(make_client: Any) -> None:
    srv = TlcpServer(keepalive_millis=1000, content_length=1500)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    try:
        c = make_client(srv.url)
        await c.client.create_session()
        got = await stream_sequence(c.client, srv, 200, pause_every=20)
        assert got == [str(i) for i in range(200)]
        preserved = [s.continuity for s in c.sessions].count("preserved")
        assert preserved >= 3
        # One handshake per create/bind: LOOP closed the socket and a new one was opened.
        assert names(srv).count("websocket") == 1 + preserved
        assert "bind_session" not in names(srv)
        assert c.client.status == "CONNECTED:WS-STREAMING"
        assert c.errors == []
    finally:
        await c.client.destroy()
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_ws_messages_with_outcomes(make_client: Any) -> None:
    def handler(session: Any, message: str, sequence: str | None) -> str:
        if message == "deny":
            raise MessageError(-3, "no way")
        return "echo:" + message

    srv = TlcpServer(keepalive_millis=1000, message_handler=handler)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    try:
        c = make_client(srv.url)
        await c.client.create_session()
        assert await c.client.send_message("hello, ws") == "echo:hello, ws"
        replies = [c.client.send_message(f"m{i}", sequence="seq") for i in range(5)]
        for i, d in enumerate(replies):
            assert await d == f"echo:m{i}"
        with pytest.raises(Exception, match="no way"):
            await c.client.send_message("deny")
        (session,) = srv.sessions.values()
        assert [text for _, _, text in session.messages] == \
            ["hello, ws", "m0", "m1", "m2", "m3", "m4", "deny"]
        assert names(srv) == ["websocket"]
    finally:
        await c.client.destroy()
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_ws_polling(server: TlcpServer, make_client: Any,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    polls: list[str] = []
    rebind = WsStream.rebind

    def counted(stream: WsStream, request: Any) -> bool:
        polls.append(request.name)
        return rebind(stream, request)

    monkeypatch.setattr(WsStream, "rebind", counted)
    c = make_client(server.url, forced_transport="WS-POLLING", idle_timeout=0.2)
    await c.client.create_session()
    assert c.client.status == "CONNECTED:WS-POLLING"
    table = Table(c.client, mode=MODE_RAW, item_ids=["p"], schema=["v"])
    got: list[Any] = []
    table.on_update(lambda item, row: got.append(row[0]))
    await table.when_subscribed()
    for i in range(10):
        server.data.update("p", {"v": str(i)})
        await task.deferLater(reactor, 0.03, lambda: None)
    await wait_until(lambda: len(got) == 10)
    assert got == [str(i) for i in range(10)]
    # One socket for the whole session, every poll a bind_session on it, as the official
    # client does (was: a socket per poll).
    assert names(server).count("websocket") == 1
    assert len(polls) >= 3 and set(polls) == {"bind_session"}
    assert "CONNECTED:WS-STREAMING" not in c.statuses
    assert c.errors == []


@pytest_twisted.ensureDeferred
async def test_ws_recovers_a_dropped_socket(server: TlcpServer, make_client: Any) -> None:
    c = make_client(server.url)
    await c.client.create_session()
    table = Table(c.client, mode=MODE_RAW, item_ids=["r"], schema=["v"])
    got: list[Any] = []
    table.on_update(lambda item, row: got.append(row[0]))
    await table.when_subscribed()
    server.data.update("r", {"v": "before"})
    await wait_until(lambda: got == ["before"])
    server.drop_streams()
    server.data.update("r", {"v": "while-unbound"})
    await wait_until(lambda: any(s.continuity == "recovered" for s in c.sessions))
    server.data.update("r", {"v": "after"})
    await wait_until(lambda: got == ["before", "while-unbound", "after"])
    assert "DISCONNECTED:TRYING-RECOVERY" in c.statuses
    assert c.client.status == "CONNECTED:WS-STREAMING"


# -- Stream-Sense and forced transports ------------------------------------------------


@pytest.mark.parametrize("refusal", [400, 404])
@pytest_twisted.ensureDeferred
async def test_stream_sense_when_the_server_refuses_websocket(
        make_client: Any, refusal: int) -> None:
    srv = TlcpServer(keepalive_millis=1000, websocket=False, websocket_refusal=refusal)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    try:
        c = make_client(srv.url)
        await c.client.create_session()
        # Still CONNECTING for the HTTP attempt: no CONNECTED:* status before a CONOK
        # (issue 19; was CONNECTED:STREAM-SENSING).
        assert c.statuses[:2] == ["CONNECTING", "CONNECTED:HTTP-STREAMING"]
        assert c.statuses[-1] == "CONNECTED:HTTP-STREAMING"
        assert "CONNECTED:WS-STREAMING" not in c.statuses
        table = Table(c.client, mode=MODE_MERGE, item_ids=["s"], schema=["v"])
        got: list[Any] = []
        table.on_update(lambda item, row: got.append(row[0]))
        await table.when_subscribed()
        srv.data.update("s", {"v": "over http"})
        await wait_until(lambda: got == ["over http"])
        assert names(srv)[:2] == ["websocket", "create_session"]
        assert names(srv).count("websocket") == 1  # WS stays disabled for the cycle
    finally:
        await c.client.destroy()
        await srv.stop()


@pytest.mark.parametrize(("forced", "status"), [
    ("WS", "CONNECTED:WS-STREAMING"),
    ("HTTP", "CONNECTED:HTTP-STREAMING"),
    ("WS-STREAMING", "CONNECTED:WS-STREAMING"),
    ("HTTP-STREAMING", "CONNECTED:HTTP-STREAMING"),
    ("WS-POLLING", "CONNECTED:WS-POLLING"),
    ("HTTP-POLLING", "CONNECTED:HTTP-POLLING"),
])
@pytest_twisted.ensureDeferred
async def test_forced_transport(server: TlcpServer, make_client: Any, forced: str,
                                status: str) -> None:
    c = make_client(server.url, forced_transport=forced, idle_timeout=0.2)
    await c.client.create_session()
    assert c.client.status == status
    assert c.statuses == ["CONNECTING", status]
    table = Table(c.client, mode=MODE_RAW, item_ids=["f"], schema=["v"])
    got: list[Any] = []
    table.on_update(lambda item, row: got.append(row[0]))
    await table.when_subscribed()
    server.data.update("f", {"v": forced})
    await wait_until(lambda: got == [forced])
    handshakes = names(server).count("websocket")
    assert (handshakes > 0) == forced.startswith("WS")


@pytest_twisted.ensureDeferred
async def test_forced_websocket_refused_is_a_clear_final_error(make_client: Any) -> None:
    srv = TlcpServer(websocket=False)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    try:
        c = make_client(srv.url, forced_transport="WS-STREAMING")
        with pytest.raises(TransportError) as info:
            await c.client.create_session()
        error = info.value
        assert error.status == 400 and not error.retryable
        assert error.url == f"{srv.url.replace('http', 'ws')}/lightstreamer"
        assert "handshake refused" in str(error) and error.url in str(error)
        assert c.client.state == "DISCONNECTED"
        assert c.statuses[-1] == "DISCONNECTED"
        await task.deferLater(reactor, 0.3, lambda: None)
        assert names(srv) == ["websocket"]  # no retry loop
    finally:
        await srv.stop()


class _Hanging(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render(self, request: Any) -> Any:
        self.requests.append(request)
        return NOT_DONE_YET


@pytest_twisted.ensureDeferred
async def test_ws_connect_timeout_and_stop() -> None:
    hanging = _Hanging()
    port = reactor.listenTCP(0, Site(hanging), interface="127.0.0.1")
    ws = _ws_transport(connect_timeout=0.2)
    url = f"http://127.0.0.1:{port.getHost().port}"
    try:
        sink = Sink()
        stream = ws.open_stream(url, create_session(), sink)
        stream.start()
        await wait_until(lambda: bool(sink.ended))
        assert sink.ended[0].check(TransportError)
        assert "not answering within 0.2 s" in str(sink.ended[0].value)
        assert sink.lines == []
        # stop() before anything came: nothing is reported at all.
        quiet = Sink()
        other = ws.open_stream(url, create_session(), quiet)
        other.start()
        await wait_until(lambda: len(hanging.requests) == 2)
        other.stop()
        await task.deferLater(reactor, 0.3, lambda: None)
        assert quiet.ended == [] and quiet.lines == []
        await ws.close()
    finally:
        for request in hanging.requests:
            if request.channel is not None:
                request.channel.transport.abortConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_ws_refused_connection_is_retryable() -> None:
    port = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
    number = port.getHost().port
    await port.stopListening()
    sink = Sink()
    ws = _ws_transport(connect_timeout=2)
    ws.open_stream(f"http://127.0.0.1:{number}", create_session(), sink).start()
    await wait_until(lambda: bool(sink.ended))
    error = sink.ended[0].value
    assert isinstance(error, TransportError) and error.retryable
    assert f"127.0.0.1:{number}" in str(error)


@pytest_twisted.ensureDeferred
async def test_server_closing_the_socket_ends_the_stream(server: TlcpServer) -> None:
    sink = Sink()
    ws = _ws_transport()
    stream = ws.open_stream(server.url, create_session(), sink)
    stream.start()
    await wait_until(lambda: len(sink.lines) >= 2)
    assert sink.lines[0] == b"WSOK" and sink.lines[1].startswith(b"CONOK,")
    await server.stop()
    await wait_until(lambda: bool(sink.ended))
    assert sink.ended[0].check(TransportError, StreamClosed)


# -- the official SDK over WebSocket against the test server ---------------------------


@pytest.mark.parametrize("transport", ["WS-STREAMING", "WS-POLLING"])
@pytest_twisted.ensureDeferred
async def test_official_sdk_over_websocket(transport: str) -> None:
    pytest.importorskip("lightstreamer.client")
    from .test_official_sdk import _check_common, _handler, _publish, _run_scenario

    server = TlcpServer(message_handler=_handler)
    result, expected = await _run_scenario(
        server, _publish, spec_extra={
            "transport": transport,
            "messages": [{"text": "hello, world|%"}, {"text": "deny this"}],
        })
    _check_common(result, expected)
    assert [m["outcome"] for m in result["messages"]] == [
        ["processed", "echo:hello, world|%"],
        ["deny", -5, "denied, sorry"],
    ]
    assert f"CONNECTED:{transport}" in result["statuses"]
    if transport == "WS-STREAMING":
        # Everything went over WebSocket: no HTTP request reached the server.
        assert set(names(server)) == {"websocket"}
    else:
        # The SDK creates WS-polling sessions over HTTP, then polls on one socket.
        assert "bind_session" not in names(server) and "websocket" in names(server)


@pytest.mark.parametrize("scenario", ["loop", "drop"])
@pytest_twisted.ensureDeferred
async def test_official_sdk_over_websocket_loop_and_drop(scenario: str) -> None:
    pytest.importorskip("lightstreamer.client")
    from .test_official_sdk import (
        _check_common,
        _publish,
        _publish_diffable,
        _run_scenario,
        _session,
    )
    from .test_official_sdk import wait_until as sdk_wait

    server = TlcpServer(content_length=600 if scenario == "loop" else None)

    async def drop() -> None:
        server.drop_streams()
        await sdk_wait(lambda: _session(server).is_bound)
        _publish_diffable(server.data)

    result, expected = await _run_scenario(
        server, _publish, between=drop if scenario == "drop" else None,
        spec_extra={"transport": "WS-STREAMING"})
    _check_common(result, expected)
    assert "CONNECTED:WS-STREAMING" in result["statuses"]
    if scenario == "drop":
        assert "DISCONNECTED:TRYING-RECOVERY" in result["statuses"]
    else:
        assert names(server).count("websocket") >= 3  # a new socket after each LOOP
