"""
Stream-Sense: a proxy that buffers whole responses makes HTTP streaming useless, and the
client must end up polling with updates flowing. On a `Clock` over the in-memory network of
`tests.memory`: the proxy and the server are real `twisted.web` sites, and the client's
``idle_timeout``/``retry_delay`` are exact.
"""

from __future__ import annotations

import random
from typing import Any

import treq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from txlightstreamer import MODE_RAW, Table
from txlightstreamer.testing import TlcpServer

from .memory import MemoryNetwork


class BufferingProxy(Resource):
    """Forwards each request upstream and answers only once the whole reply is in."""

    isLeaf = True

    def __init__(self, upstream: str, client: Any) -> None:
        super().__init__()
        self.upstream = upstream
        self.client = client
        self.pending: list[Deferred[Any]] = []
        self.paths: list[str] = []

    def render(self, request: Any) -> Any:
        path = request.uri.decode()
        self.paths.append(path.split("?")[0])
        body = request.content.read()
        d = self.client.request(
            request.method.decode(), self.upstream + path, data=body,
            headers={"Content-Type": "text/plain; charset=utf-8"})
        d.addCallback(lambda response: treq.content(response).addCallback(
            lambda content: (response.code, content)))
        self.pending.append(d)

        def answer(result: tuple[int, bytes]) -> None:
            if request.finished or request.channel is None:
                return
            request.setResponseCode(result[0])
            request.setHeader("content-type", "text/plain; charset=utf-8")
            request.write(result[1])
            request.finish()

        d.addCallback(answer)
        d.addErrback(lambda _: None)
        return NOT_DONE_YET


def test_buffering_proxy_ends_on_http_polling() -> None:
    random.seed(14)
    clock = Clock()
    net = MemoryNetwork(clock)
    server = TlcpServer(clock=clock, keepalive_millis=1000)
    upstream = net.serve_tlcp(server, host="upstream.test")
    proxy = BufferingProxy(upstream, net.http_client())
    url = net.serve(proxy, host="proxy.test")
    client = net.client(url, retry_delay=0.5, idle_timeout=0.3)
    statuses: list[tuple[str, str | None]] = []
    client.on_status(lambda status, reason: statuses.append((status, reason)))
    try:
        net.wait(client.create_session())
        assert client.status == "CONNECTED:HTTP-POLLING"
        # Stream-Sense gave HTTP streaming up before any CONOK: CONNECTING until the
        # server accepted a session, then straight to polling (issue 19).
        assert [s for s, _ in statuses if s.startswith("CONNECTED")] == [
            "CONNECTED:HTTP-POLLING"]
        table = Table(client, mode=MODE_RAW, item_ids=["p"], schema=["v"])
        got: list[Any] = []
        table.on_update(lambda item, row: got.append(row[0]))
        net.wait(table.when_subscribed())
        for i in range(10):
            server.data.update("p", {"v": str(i)})
            net.advance(0.02)
        net.run_until(lambda: len(got) == 10)
        assert got == [str(i) for i in range(10)]
    finally:
        net.wait(client.destroy())
        for d in proxy.pending:
            d.cancel()
