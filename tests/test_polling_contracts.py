"""
Polling behind a proxy that buffers whole responses, with the official defaults
(``retry_delay`` 4 s, ``idle_timeout`` 19 s; found by review, each failing before its fix):
the polling create is synchronous (tlcp.md §3.1) and a poll may take its idle time plus
``retry_delay`` (§7.3, the polling idle guard). Every poll was cut at 4 s, so the client
never connected, or lost a quiet polling session every 20 s.
"""
from __future__ import annotations

import random
from typing import Any

import treq
from twisted.internet.task import Clock
from twisted.web.server import NOT_DONE_YET

from txlightstreamer import MODE_RAW, Table
from txlightstreamer.testing import TlcpServer

from .memory import MemoryNetwork
from .test_stream_sense import BufferingProxy


class SelectiveProxy(BufferingProxy):
    """Buffers the responses of the paths ``buffered(path)`` picks (all once ``always``
    is set); passes the others through as they come."""

    def __init__(self, upstream: str, client: Any, buffered: Any) -> None:
        super().__init__(upstream, client)
        self.buffered = buffered

    def render(self, request: Any) -> Any:
        path = request.uri.decode()
        if self.buffered(path):
            return super().render(request)
        self.paths.append(path.split("?")[0])
        d = self.client.request(
            request.method.decode(), self.upstream + path, data=request.content.read(),
            headers={"Content-Type": "text/plain; charset=utf-8"}, unbuffered=True)

        def got(response: Any) -> Any:
            request.setResponseCode(response.code)
            request.setHeader("content-type", "text/plain; charset=utf-8")
            return treq.collect(response, request.write).addCallback(
                lambda _: None if request.finished else request.finish())

        d.addCallback(got)
        d.addErrback(lambda _: None)
        self.pending.append(d)
        return NOT_DONE_YET


def _setup(proxy_factory: Any, **server_args: Any) -> tuple[MemoryNetwork, TlcpServer, Any, str]:
    random.seed(14)
    clock = Clock()
    net = MemoryNetwork(clock)
    server = TlcpServer(clock=clock, keepalive_millis=1000, **server_args)
    upstream = net.serve_tlcp(server, host="upstream.test")
    proxy = proxy_factory(upstream, net.http_client())
    return net, server, proxy, net.serve(proxy, host="proxy.test")


def _close(net: MemoryNetwork, client: Any, proxy: Any) -> None:
    net.wait(client.destroy())
    for d in proxy.pending:
        d.cancel()


def test_buffering_proxy_with_the_default_options_ends_on_http_polling() -> None:
    # tlcp.md §3.1/§7.2: the HTTP create is synchronous polling (LS_idle_millis=0),
    # answered at once even through a proxy that buffers whole responses.
    net, server, proxy, url = _setup(BufferingProxy)
    client = net.client(url)  # retry_delay 4 s, idle_timeout 19 s (official defaults)
    try:
        # WS refused at once, HTTP streaming given up after 4 s, then polling.
        net.wait(client.create_session(), limit=15)
        assert client.status == "CONNECTED:HTTP-POLLING"
    finally:
        _close(net, client, proxy)


def test_quiet_polls_through_a_buffering_proxy_keep_the_session() -> None:
    # tlcp.md §7.3, §10 "polling idle guard": a poll is guarded by idle + retryDelay.
    # Behind a buffering proxy the poll's CONOK only comes when the poll ends.
    net, server, proxy, url = _setup(
        lambda up, c: SelectiveProxy(up, c, lambda path: "bind_session" in path))
    client = net.client(url, forced_transport="HTTP-POLLING")  # defaults: 4 s, 19 s
    statuses: list[Any] = []
    client.on_status(lambda status, reason: statuses.append(status))
    try:
        net.wait(client.create_session(), limit=10)
        sid = client.session_id
        table = Table(client, mode=MODE_RAW, item_ids=["p"], schema=["v"])
        got: list[Any] = []
        table.on_update(lambda item, row: got.append(row[0]))
        net.wait(table.when_subscribed())
        del statuses[:]
        net.advance(45, step=0.05)  # nothing to send: the server holds each poll 19 s
        assert statuses == []
        assert client.status == "CONNECTED:HTTP-POLLING" and client.session_id == sid
        server.data.update("p", {"v": "1"})
        net.run_until(lambda: got == ["1"], limit=25)
    finally:
        _close(net, client, proxy)


def test_streaming_buffered_mid_session_goes_on_polling_in_the_same_session() -> None:
    # tlcp.md §7.2: HTTP streaming given up on a buffered bind, the session goes on
    # polling (the official client: force_rebind, LOOP, polling bind).
    state = {"buffering": False}
    net, server, proxy, url = _setup(
        lambda up, c: SelectiveProxy(up, c, lambda path: state["buffering"]),
        content_length=2000)
    client = net.client(url, forced_transport="HTTP")  # defaults: 4 s, 19 s
    continuity: list[str] = []
    client.on_session(lambda info: continuity.append(info.continuity))
    try:
        net.wait(client.create_session(), limit=10)
        assert client.status == "CONNECTED:HTTP-STREAMING"
        sid = client.session_id
        table = Table(client, mode=MODE_RAW, item_ids=["p"], schema=["v"])
        got: list[Any] = []
        table.on_update(lambda item, row: got.append(row[0]))
        net.wait(table.when_subscribed())
        state["buffering"] = True
        for i in range(200):  # uses the content length up: LOOP, a (buffered) rebind
            server.data.update("p", {"v": str(i)})
        net.run_until(lambda: len(got) == 200, limit=30)
        net.advance(40, step=0.05)
        assert client.status == "CONNECTED:HTTP-POLLING"
        assert client.session_id == sid and "replaced" not in continuity
    finally:
        _close(net, client, proxy)
