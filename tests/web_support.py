"""Helpers for the web relay tests: a test server with a relay, and a streaming SSE reader."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import treq
from twisted.internet import reactor, task, tcp
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from txlightstreamer import MODE_COMMAND, MODE_DISTINCT, MODE_MERGE, MODE_RAW, LsClient, Table
from txlightstreamer.testing import TlcpServer
from txlightstreamer.web import Relay

from .support import wait_until

#: The ``ts`` of every JSON-lines event: ISO 8601 UTC with milliseconds.
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def without_ts(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` (a JSON-lines record) without its ``ts``, once that is checked."""
    assert TS.match(event.get("ts", "")), event
    return {k: v for k, v in event.items() if k != "ts"}


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds)


@dataclass
class SseEvent:
    id: str | None
    event: str
    data: Any

    @property
    def number(self) -> int:
        assert self.id is not None
        return int(self.id.rpartition("-")[2])


@dataclass
class SseReader(Protocol):
    """Reads a ``text/event-stream`` body as it arrives (no buffering of the whole)."""

    events: list[SseEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    raw: bytearray = field(default_factory=bytearray)
    done: Deferred[None] = field(default_factory=Deferred)
    response: Any = None
    _buffer: bytes = b""

    @classmethod
    async def open(cls, url: str, headers: dict[str, str] | None = None,
                   read_size: int | None = None) -> SseReader:
        """``read_size``: how much its socket reads at a time (Twisted's 64 KiB if None)."""
        response = await treq.get(url, headers=headers, unbuffered=True, persistent=False)
        assert response.code == 200, response.code
        assert response.headers.getRawHeaders("content-type") == [
            "text/event-stream; charset=utf-8"]
        reader = cls(response=response)
        if read_size is not None:
            # Twisted's private attributes: treq's response -> Twisted's -> its socket.
            socket = response.original._transport._producer
            assert isinstance(socket, tcp.Connection)
            socket.bufferSize = read_size
        response.deliverBody(reader)
        return reader

    def __hash__(self) -> int:
        return id(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.raw += data
        self._buffer += data
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            self._message(block.decode("utf-8"))

    def _message(self, block: str) -> None:
        event_id, name, data = None, "message", []
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "id":
                event_id = value
            elif key == "event":
                name = value
            elif key == "data":
                data.append(value)
            elif key == "retry":
                self.retry = int(value)
        if data:
            self.events.append(SseEvent(event_id, name, json.loads("\n".join(data))))

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]  # noqa: N802
        if not self.done.called:
            self.done.callback(None)

    def named(self, name: str) -> list[SseEvent]:
        return [e for e in self.events if e.event == name]

    async def wait_for(self, predicate: Callable[[SseReader], object],
                       timeout: float = 10.0, what: str = "events") -> None:
        await wait_until(lambda: predicate(self), timeout, what)

    async def close(self) -> None:
        """Disconnect (as a browser closing its tab) and wait for the connection to end."""
        if not self.done.called:
            self.transport.stopProducing()
        await self.done


class RelayEnv:
    """A test server, a client with one table per mode, a relay and its listening port."""

    server: TlcpServer
    client: LsClient
    tables: list[Table]
    relay: Relay
    port: Any
    base: str

    @classmethod
    async def start(cls, *, connect: bool = True, **relay_options: Any) -> RelayEnv:
        env = cls()
        env.server = TlcpServer(keepalive_millis=1000)
        await env.server.listen(reactor, port=0, interface="127.0.0.1")
        env.client = LsClient(env.server.url)
        client = env.client
        env.tables = [
            Table(client, mode=MODE_MERGE, item_ids=["a", "b"], schema=["v", "w"],
                  snapshot=True),
            Table(client, mode=MODE_COMMAND, item_ids=["p"], schema=["key", "command", "qty"],
                  snapshot=True),
            Table(client, mode=MODE_DISTINCT, item_ids=["d"], schema=["v"]),
            Table(client, mode=MODE_RAW, item_ids=["r"], schema=["v"]),
        ]
        env.relay = Relay(client, env.tables, clock=reactor, **relay_options)
        env.port = await env.relay.listen(reactor, "tcp:0")
        env.base = f"http://127.0.0.1:{env.port.getHost().port}/"
        if connect:
            await env.connect()
        return env

    async def connect(self) -> None:
        await self.client.create_session()
        for table in self.tables:
            await table.when_subscribed()

    async def stop(self) -> None:
        self.relay.close()
        await self.client.destroy()
        await self.server.stop()
        await self.port.stopListening()

    async def get_json(self, path: str) -> Any:
        response = await treq.get(self.base + path, persistent=False)
        assert response.code == 200
        return json.loads(await response.text())
