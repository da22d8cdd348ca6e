"""
Extra HTTP headers (``TransportOptions.headers`` on every request and WebSocket handshake,
``create_headers`` on session creation only) and the cookie jar shared by every request of
one client (a cookie set on create is sent on every later request, HTTP or WebSocket).
"""

from __future__ import annotations

from http.cookiejar import CookieJar
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from txlightstreamer import MODE_RAW, LsClient, Table
from txlightstreamer.testing import TlcpServer
from txlightstreamer.transport import TransportOptions

from .support import wait_until

COOKIE = "lsid=abc123; Path=/"


def _options(**kwargs: Any) -> TransportOptions:
    return TransportOptions(headers={"X-Token": "t1", "User-Agent": "probe/1"},
                            create_headers={"X-Create": "yes"}, **kwargs)


async def _stream_a_while(client: LsClient, server: TlcpServer, count: int = 60) -> None:
    """Subscribe and push enough data for the server's content length to LOOP a few times."""
    table = Table(client, mode=MODE_RAW, item_ids=["h"], schema=["n", "pad"])
    got: list[Any] = []
    table.on_update(lambda item, row: got.append(row[0]))
    await table.when_subscribed()
    for i in range(count):
        server.data.update("h", {"n": str(i), "pad": f"{i:040d}"})
        if i % 10 == 0:
            await task.deferLater(reactor, 0.01, lambda: None)
    await wait_until(lambda: len(got) == count)


@pytest.mark.parametrize("forced", ["HTTP-STREAMING", "HTTP-POLLING"])
@pytest_twisted.ensureDeferred
async def test_http_headers_and_cookies(forced: str) -> None:
    srv = TlcpServer(keepalive_millis=1000, content_length=1200, set_cookie=COOKIE)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    client = LsClient(srv.url, forced_transport=forced, idle_timeout=0.2,
                      transport_options=_options())
    try:
        await client.create_session()
        await _stream_a_while(client, srv)
        await client.destroy()
        (first_name, first), *later = srv.received
        assert first_name == "create_session"
        assert first["x-token"] == "t1" and first["x-create"] == "yes"
        assert first["user-agent"] == "probe/1"
        assert "cookie" not in first
        later_names = [name for name, _ in later]
        assert "bind_session" in later_names and "control" in later_names
        for name, headers in later:
            assert headers["x-token"] == "t1", name
            assert "x-create" not in headers, name
            assert headers.get("cookie") == "lsid=abc123", name
    finally:
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_websocket_handshake_headers_and_cookies() -> None:
    pytest.importorskip("autobahn")
    srv = TlcpServer(keepalive_millis=1000, content_length=1200, set_cookie=COOKIE)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    client = LsClient(srv.url, transport_options=_options())
    try:
        await client.create_session()
        assert client.status == "CONNECTED:WS-STREAMING"
        await _stream_a_while(client, srv)
        await client.destroy()
        handshakes = [headers for name, headers in srv.received if name == "websocket"]
        assert len(handshakes) >= 3  # create, then a bind after each LOOP
        first, *later = handshakes
        assert first["x-token"] == "t1" and first["x-create"] == "yes"
        assert first["user-agent"] == "probe/1"
        assert first["sec-websocket-protocol"] == "TLCP-2.5.0.lightstreamer.com"
        assert "cookie" not in first
        for headers in later:
            assert headers["x-token"] == "t1" and "x-create" not in headers
            assert headers.get("cookie") == "lsid=abc123"
        # The jar is shared with HTTP: destroy() goes over HTTP with the cookie the
        # WebSocket handshake set.
        (destroy,) = [headers for name, headers in srv.received if name == "control"]
        assert destroy.get("cookie") == "lsid=abc123" and destroy["x-token"] == "t1"
    finally:
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_cookie_jars_are_per_client_unless_given() -> None:
    srv = TlcpServer(keepalive_millis=1000, set_cookie=COOKIE)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    shared = CookieJar()
    try:
        for options in (TransportOptions(), TransportOptions(), TransportOptions(cookie_jar=shared),
                        TransportOptions(cookie_jar=shared)):
            client = LsClient(srv.url, forced_transport="HTTP", transport_options=options)
            await client.create_session()
            await client.destroy()
        creates = [headers.get("cookie") for name, headers in srv.received
                   if name == "create_session"]
        # Fresh clients know nothing; the second client given the same jar sends its cookie.
        assert creates == [None, None, None, "lsid=abc123"]
        assert [cookie.value for cookie in shared] == ["abc123"]
    finally:
        await srv.stop()
