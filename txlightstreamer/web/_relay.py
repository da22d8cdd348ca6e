"""
`Relay`: the client's events as the JSON-lines contract's event dicts, kept in a bounded
backlog and pushed to Server-Sent Events streams without ever letting one slow reader
hold memory or the reactor.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from zope.interface import implementer

from txlightstreamer import MODE_COMMAND, MODE_DISTINCT, MODE_RAW, LsClient, Table
from txlightstreamer.events import EventFeed, encode_event
from txlightstreamer.web._endpoint import endpoint_string
from txlightstreamer.web._resource import RelayResource

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Relay", "RelayBase", "RelayOptions"]

log = Logger()

#: Default seconds between heartbeat comment lines on each /events stream.
HEARTBEAT = 15.0
#: Default bytes one /events client may fall behind before it is dropped.
CLIENT_BUFFER = 1 << 20
#: Default bytes of events kept in the backlog at most.
BACKLOG_BYTES = 16 << 20
#: The reconnection delay (ms) suggested to EventSource clients.
RETRY_MS = 2000

_HEARTBEAT_FRAME = b": heartbeat\n\n"


def _frame(event_id: str | None, event: Mapping[str, Any]) -> bytes:
    """One SSE message: ``id:``, ``event:`` and one ``data:`` line of JSON."""
    head = b"id: %s\n" % event_id.encode("ascii") if event_id is not None else b""
    # A line break in the name would end the field (and could forge another): a space.
    name = " ".join(str(event["event"]).splitlines()) or "message"
    # The same UTF-8 JSON line as the JSON-lines output, without its newline.
    return b"%sevent: %s\ndata: %s\n\n" % (
        head, name.encode("utf-8"), encode_event(event).rstrip(b"\n"))


@implementer(IPushProducer)
class _Stream:
    """
    One ``/events`` client: a push producer registered on its request.

    The stream holds no data of its own: it is a cursor into the relay's backlog. While
    the transport accepts data, frames go straight to it (the transport's own buffer is
    bounded: it pauses us past its high-water mark). While paused, the client falls
    behind; once it is more than ``limit`` bytes behind, or behind the oldest event
    kept, it is dropped. When the transport drains, the stream catches up from the
    backlog, one frame at a time.
    """

    def __init__(self, relay: RelayBase, request: Request, limit: int) -> None:
        self.relay = relay
        self.request = request
        self.limit = limit
        self.paused = False
        self.closed = False
        #: Number of the last event sent, and the relay's byte offset after it.
        self.cursor = relay.last_number
        self.offset = relay.total_bytes
        peer = request.getClientAddress()
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"

    @property
    def behind(self) -> int:
        """Bytes published that this client has not been sent yet."""
        return self.relay.total_bytes - self.offset

    def write(self, data: bytes) -> None:
        """Write outside the numbered stream (head, snapshot, heartbeat)."""
        if not self.closed:
            self.request.write(data)

    def pump(self) -> None:
        """Send what this client missed, until caught up or paused again."""
        relay = self.relay
        while not self.paused and not self.closed and self.cursor < relay.last_number:
            entry = relay._entry(self.cursor + 1)
            if entry is None:  # it fell behind the backlog
                relay._drop(self)
                return
            number, data, offset = entry
            self.cursor, self.offset = number, offset
            # May pause us synchronously (the transport's buffer is full).
            self.request.write(data)

    # IPushProducer
    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        self.pump()

    def stopProducing(self) -> None:  # noqa: N802
        self.relay._forget(self)

    def finish(self) -> None:
        """End the response normally (the relay is closing)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.request.unregisterProducer()
            self.request.finish()
        except RuntimeError:  # already finished or disconnected
            pass

    def abort(self) -> None:
        """Cut the connection at once (the client fell too far behind)."""
        self.closed = True
        transport = self.request.channel.transport if self.request.channel else None
        if transport is not None:
            abort = getattr(transport, "abortConnection", None)
            (abort or transport.loseConnection)()


class RelayOptions(TypedDict, total=False):
    """
    The keyword arguments of every relay (`RelayBase`, `Relay`, `StreamRelay`), all
    optional: the one place they are listed.
    """

    #: For heartbeats (the global reactor by default).
    clock: IReactorTime | None
    #: How many events are kept for ``Last-Event-ID`` resumption and for slow clients to
    #: catch up from (1000 by default).
    backlog: int
    #: How many bytes of events are kept at most (the oldest go first; the newest event
    #: is always kept); 16 MiB by default.
    backlog_bytes: int
    #: How many bytes an ``/events`` client may fall behind (while its connection does
    #: not take more) before it is dropped; its browser then reconnects and resumes from
    #: the backlog. Nothing is copied per client: a client is a position in the shared
    #: backlog. 1 MiB by default. The events of one read of the upstream stream (up to
    #: 128 KiB of TLCP, over WebSocket or HTTP) go out in one reactor turn, before any
    #: client can take them: keep it above what they weigh, or a client reading at full
    #: speed is dropped too.
    client_buffer: int
    #: Seconds between comment lines keeping idle streams alive (15 by default).
    heartbeat: float
    #: Concurrent ``/events`` streams allowed (more get 503); 100 by default.
    max_clients: int


class RelayBase:
    """
    The fan-out half of a relay: numbered events in a bounded backlog, pushed to
    Server-Sent Events streams; subclasses say where events come from (`snapshot`).
    The keyword arguments are `RelayOptions`.
    """

    def __init__(self, **options: Unpack[RelayOptions]) -> None:
        unknown = options.keys() - RelayOptions.__optional_keys__
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        backlog = options.get("backlog", 1000)
        backlog_bytes = options.get("backlog_bytes", BACKLOG_BYTES)
        client_buffer = options.get("client_buffer", CLIENT_BUFFER)
        heartbeat = options.get("heartbeat", HEARTBEAT)
        if backlog < 1 or backlog_bytes < 1:
            raise ValueError("backlog and backlog_bytes must be at least 1")
        if client_buffer < 1:
            raise ValueError("client_buffer must be at least 1 byte")
        if heartbeat <= 0:
            raise ValueError("heartbeat must be a positive number of seconds")
        clock = options.get("clock")
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self.clock = clock
        self.client_buffer = client_buffer
        self.heartbeat = heartbeat
        self.max_clients = options.get("max_clients", 100)
        #: Identifies this relay's ids: a resumption id from another run means a gap.
        self.run = os.urandom(4).hex()
        #: Number of the last event (0 before the first).
        self.last_number = 0
        #: ``/events`` clients dropped for falling behind, since the start.
        self.dropped_clients = 0
        #: Bytes of every numbered frame published so far.
        self.total_bytes = 0
        self.backlog = backlog
        self.backlog_bytes = backlog_bytes
        #: (number, frame, total_bytes after it), oldest first; numbers are consecutive.
        self._backlog: deque[tuple[int, bytes, int]] = deque()
        self._backlog_size = 0
        self._streams: list[_Stream] = []
        self._heartbeat_call: LoopingCall | None = None
        self._resource: IResource | None = None
        self.closed = False

    def snapshot(self) -> dict[str, Any]:
        """Every subscription's current state (``GET /snapshot``)."""
        raise NotImplementedError

    # -- the event stream ------------------------------------------------------------------

    def event_id(self, number: int) -> str:
        """The SSE id of event ``number`` (``RUN-NUMBER``)."""
        return f"{self.run}-{number}"

    def publish(self, event: Mapping[str, Any]) -> None:
        """
        Number ``event`` (a JSON-able dict with an ``"event"`` key), keep it in the
        backlog and send it to every ``/events`` client. The client's events come
        through here; an application may publish its own too.
        """
        if self.closed:
            return
        number = self.last_number + 1
        data = _frame(self.event_id(number), event)  # may raise: nothing changed yet
        self.last_number = number
        self.total_bytes += len(data)
        backlog = self._backlog
        backlog.append((number, data, self.total_bytes))
        self._backlog_size += len(data)
        while len(backlog) > 1 and (
                len(backlog) > self.backlog or self._backlog_size > self.backlog_bytes):
            self._backlog_size -= len(backlog.popleft()[1])
        for stream in list(self._streams):
            if stream.paused:
                if stream.behind > stream.limit or stream.cursor + 1 < backlog[0][0]:
                    self._drop(stream)
            elif stream.cursor == number - 1:  # caught up: the common case
                stream.cursor, stream.offset = number, self.total_bytes
                stream.request.write(data)
            else:
                stream.pump()

    def _entry(self, number: int) -> tuple[int, bytes, int] | None:
        """The backlog entry of event ``number``, if still kept."""
        backlog = self._backlog
        if not backlog:
            return None
        index = number - backlog[0][0]
        return backlog[index] if 0 <= index < len(backlog) else None

    def _parse_id(self, text: str) -> int | None:
        """The event number of an id this run issued, else None."""
        run, sep, number = text.strip().rpartition("-")
        if not sep or run != self.run or not number.isdigit() or not number.isascii():
            return None
        return int(number)

    @property
    def full(self) -> bool:
        """Whether ``max_clients`` streams are open."""
        return len(self._streams) >= self.max_clients

    def open_stream(self, request: Request, last_event_id: str | None) -> _Stream | None:
        """Open an SSE stream on ``request``: resume or snapshot, then live events."""
        if self.full:
            return None
        stream = _Stream(self, request, self.client_buffer)
        request.registerProducer(stream, True)
        parts = [b"retry: %d\n\n" % RETRY_MS]
        if last_event_id is None:
            parts.append(self._snapshot_frame())
        else:
            number = self._parse_id(last_event_id)
            oldest = self._backlog[0][0] if self._backlog else self.last_number + 1
            if number is not None and oldest - 1 <= number <= self.last_number:
                # Resume: the stream catches up from the backlog as its client reads.
                stream.cursor = number
                entry = self._entry(number)
                stream.offset = entry[2] if entry is not None else (
                    self._backlog[0][2] - len(self._backlog[0][1]) if self._backlog
                    else self.total_bytes)
                # What it missed does not count against it: only falling further behind.
                stream.limit += stream.behind
            else:
                parts.append(_frame(None, {
                    "event": "gap",
                    "requested": last_event_id[:200],
                    "oldest": self.event_id(oldest) if self._backlog else None,
                    "last": self.event_id(self.last_number),
                    "reason": "too old" if number is not None and number < oldest else
                              "unknown id",
                }))
                parts.append(self._snapshot_frame())
        self._streams.append(stream)
        stream.write(b"".join(parts))
        stream.pump()
        d = request.notifyFinish()
        d.addBoth(lambda _: self._forget(stream))
        if self._heartbeat_call is None:
            call = self._heartbeat_call = LoopingCall(self._beat)
            call.clock = self.clock
            call.start(self.heartbeat, now=False)
        return stream

    def _snapshot_frame(self) -> bytes:
        return _frame(self.event_id(self.last_number), {"event": "snapshot", **self.snapshot()})

    def _beat(self) -> None:
        for stream in list(self._streams):
            if not stream.paused:  # a paused stream is not idle
                stream.write(_HEARTBEAT_FRAME)

    def _forget(self, stream: _Stream) -> None:
        stream.closed = True
        if stream in self._streams:
            self._streams.remove(stream)
        if not self._streams and self._heartbeat_call is not None:
            call, self._heartbeat_call = self._heartbeat_call, None
            if call.running:
                call.stop()

    def _drop(self, stream: _Stream) -> None:
        self.dropped_clients += 1
        log.warn(
            "Dropped /events client {peer}: {behind} bytes behind (limit {limit}) "
            "({count} slow client(s) dropped so far)",
            peer=stream.peer, behind=stream.behind, limit=self.client_buffer,
            count=self.dropped_clients)
        self._forget(stream)
        stream.abort()

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring and tests."""
        return {
            "clients": len(self._streams),
            "dropped_clients": self.dropped_clients,
            "max_client_behind_bytes": max((s.behind for s in self._streams), default=0),
            "backlog": len(self._backlog),
            "backlog_bytes": self._backlog_size,
            "last_event_id": self.event_id(self.last_number),
        }

    # -- serving ---------------------------------------------------------------------------

    def resource(self) -> IResource:
        """
        The ``twisted.web`` resource: ``/`` page, ``/snapshot``, ``/events``. Mount it
        anywhere (``putChild``, a Klein ``branch=True`` route); the page uses relative
        links, so it is served at the mount point with a trailing slash.
        """
        if self._resource is None:
            self._resource = RelayResource(self)
        return self._resource

    def site(self) -> Site:
        """A `Site` serving `resource` at its root."""
        site = Site(self.resource())
        site.displayTracebacks = False
        site.noisy = False
        return site

    def listen(self, reactor: Any, endpoint: str) -> Deferred[IListeningPort]:
        """
        Serve `site` on a server endpoint string (``tcp:8080``, ``8080``,
        ``tcp:8080:interface=0.0.0.0``...). TCP and SSL endpoints bind 127.0.0.1 unless
        the string names an ``interface``.
        """
        description = endpoint_string(endpoint)
        d: Deferred[IListeningPort] = serverFromString(reactor, description).listen(self.site())
        return d

    def close(self) -> None:
        """Stop relaying and end every ``/events`` stream (stop the listening port too)."""
        self.closed = True
        streams, self._streams = self._streams, []
        for stream in streams:
            stream.finish()
        if self._heartbeat_call is not None:
            call, self._heartbeat_call = self._heartbeat_call, None
            if call.running:
                call.stop()


class Relay(RelayBase):
    """
    Relays a client's tables to web clients.

    It listens to ``client`` and every table of ``tables`` through an
    `~txlightstreamer.events.EventFeed` (the relay is its sink), so it gets the event
    records of the JSON-lines output (``sub`` is the table's index in ``tables``),
    numbered with increasing ids and kept in a backlog of the last
    ``backlog`` events. `resource` gives a plain ``twisted.web`` resource serving
    ``/`` (a live page), ``/snapshot`` (JSON) and ``/events`` (Server-Sent Events).
    The keyword arguments are `RelayOptions`, plus:

    :param recent: DISTINCT/RAW updates kept per subscription for ``/snapshot``.
    """

    def __init__(self, client: LsClient, tables: Sequence[Table], *, recent: int = 20,
                 **options: Unpack[RelayOptions]) -> None:
        super().__init__(**options)
        self._recent_size = recent
        self.session: dict[str, Any] | None = None
        self.attach(client, tables)

    def attach(self, client: LsClient, tables: Sequence[Table]) -> None:
        """Relay ``client`` and ``tables`` from now on (a bridge's new session)."""
        self.client = client
        self.tables: tuple[Table, ...] = tuple(tables)
        self._recent: dict[int, deque[dict[str, Any]]] = {
            index: deque(maxlen=self._recent_size)
            for index, table in enumerate(self.tables)
            if table.mode in (MODE_DISTINCT, MODE_RAW)
        }
        feed = EventFeed(self)
        feed.watch_client(client)
        for index, table in enumerate(self.tables):
            feed.watch_table(index, table)

    # -- events from the client ------------------------------------------------------------

    def write(self, event: Mapping[str, Any]) -> None:
        """
        The event sink `EventFeed` feeds: note what `snapshot` needs, then `publish`.
        """
        kind = event["event"]
        if kind == "update":
            recent = self._recent.get(event["sub"])
            if recent is not None:
                recent.append(dict(event))
        elif kind == "session":
            self.session = dict(event)
        self.publish(event)

    # -- state -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """
        Every subscription's current state, the connection status and the id of the last
        event included (resume ``/events`` from it with ``Last-Event-ID``).
        """
        return {
            "status": self.client.status,
            "session_id": self.client.session_id,
            "continuity": self.session["continuity"] if self.session else None,
            "last_event_id": self.event_id(self.last_number),
            "clients": len(self._streams),
            "dropped_clients": self.dropped_clients,
            "subscriptions": [self._table_state(i, t) for i, t in enumerate(self.tables)],
        }

    def _table_state(self, index: int, table: Table) -> dict[str, Any]:
        names = table.item_names
        fields = (list(table.field_names) if table.field_names is not None
                  else [str(i) for i in range(1, table.num_fields + 1)])

        def item(pos: int) -> str:
            return names[pos - 1] if names is not None and 0 < pos <= len(names) else str(pos)

        state: dict[str, Any] = {
            "sub": index,
            "mode": table.mode,
            "items": list(names) if names is not None else [
                str(pos) for pos in range(1, table.num_items + 1)],
            "fields": fields,
            "subscribed": table.is_active,
        }
        if table.mode == MODE_COMMAND:
            kpos, cpos = table.key_position, table.command_position
            state["key_field"] = fields[kpos - 1] if 0 < kpos <= len(fields) else None
            state["command_field"] = fields[cpos - 1] if 0 < cpos <= len(fields) else None
            count = table.num_items
            state["keys"] = {
                item(pos): {key: dict(zip(fields, row, strict=False))
                            for key, row in table.command_rows(pos).items()}
                for pos in range(1, count + 1)
            }
        else:
            state["rows"] = {item(pos): dict(zip(fields, row, strict=False))
                             for pos, row in sorted(table.rows.items())}
        if index in self._recent:
            state["recent"] = list(self._recent[index])
        return state
