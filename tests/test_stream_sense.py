"""
Stream-Sense over real loopback HTTP: a proxy that buffers whole responses makes HTTP
streaming useless, and the client must end up polling with updates flowing.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
import treq
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from txlightstreamer import MODE_RAW, LsClient, Table
from txlightstreamer.testing import TlcpServer

from .support import wait_until


class BufferingProxy(Resource):
    """Forwards each request upstream and answers only once the whole reply is in."""

    isLeaf = True

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.client = treq.client.HTTPClient(Agent(reactor, pool=self.pool))
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


@pytest_twisted.ensureDeferred
async def test_buffering_proxy_ends_on_http_polling() -> None:
    server = TlcpServer(keepalive_millis=1000)
    await server.listen(reactor, port=0, interface="127.0.0.1")
    proxy = BufferingProxy(server.url)
    port = reactor.listenTCP(0, Site(proxy), interface="127.0.0.1")
    client = LsClient(f"http://127.0.0.1:{port.getHost().port}", retry_delay=0.5,
                      idle_timeout=0.3)
    statuses: list[tuple[str, str | None]] = []
    client.on_status(lambda status, reason: statuses.append((status, reason)))
    try:
        await client.create_session()
        assert client.status == "CONNECTED:HTTP-POLLING"
        assert any(s == "CONNECTED:STREAM-SENSING" for s, _ in statuses)
        table = Table(client, mode=MODE_RAW, item_ids=["p"], schema=["v"])
        got: list[Any] = []
        table.on_update(lambda item, row: got.append(row[0]))
        await table.when_subscribed()
        for i in range(10):
            server.data.update("p", {"v": str(i)})
            await task.deferLater(reactor, 0.02, lambda: None)
        await wait_until(lambda: len(got) == 10)
        assert got == [str(i) for i in range(10)]
    finally:
        await client.destroy()
        await server.stop()
        for d in proxy.pending:
            d.cancel()
        await proxy.pool.closeCachedConnections()
        await port.stopListening()
