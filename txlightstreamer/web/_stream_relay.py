"""
`StreamRelay`: the web relay fed from a Redis stream (``--source``) instead of a session.

The SSE ``id:`` of each event is its Redis stream id, the same in every relay reading the
stream, so a browser resumes on any relay with ``Last-Event-ID``. The snapshot is rebuilt
from the events themselves: the state starts over at every ``session`` event whose
continuity is ``new`` or ``replaced`` (a new server session sends every snapshot again),
and follows ``subscribed``, ``update``, ``clear_snapshot``, ``unsubscribed`` and ``status``
events from there. Without the bridge's ``--subscribe`` specs, a subscription's mode is
``COMMAND`` when its ``subscribed`` event names a key field and ``MERGE`` otherwise; its
items and fields are those seen in its updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall
from twisted.web.server import Request

from txlightstreamer.sinks._source import resets, stream_id_key
from txlightstreamer.web._relay import RelayBase, RelayOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["StreamRelay", "StreamState"]

#: Seconds a browser resuming from an id this relay has not read yet waits for it.
CATCH_UP_WAIT = 5.0


class _Sub:
    """One subscription's state as rebuilt from its events."""

    def __init__(self, sub: int, event: Mapping[str, Any]) -> None:
        self.sub = sub
        self.key_field: int | None = event.get("key_field")
        self.command_field: int | None = event.get("command_field")
        self.mode = "COMMAND" if self.key_field is not None else "MERGE"
        self.subscribed = True
        self.items: list[str] = []
        self.fields: list[str] = []
        #: item -> values (MERGE), item -> key -> values (COMMAND)
        self.rows: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, dict[str, dict[str, Any]]] = {}

    def _field(self, position: int | None) -> str | None:
        if position is None or not 0 < position <= len(self.fields):
            return None
        return self.fields[position - 1]

    def update(self, event: Mapping[str, Any]) -> None:
        item = str(event.get("item") if event.get("item") is not None else event.get("pos"))
        if item not in self.items:
            self.items.append(item)
        given = event.get("values")
        values: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
        for name in values:
            if name not in self.fields:
                self.fields.append(name)
        if self.mode != "COMMAND":
            self.rows[item] = values
            return
        key = values.get(self._field(self.key_field) or "")
        command = values.get(self._field(self.command_field) or "")
        keys = self.keys.setdefault(item, {})
        if command == "DELETE":
            keys.pop(str(key), None)
        elif key is not None:
            keys[str(key)] = values

    def clear(self, item: str) -> None:
        self.rows.pop(item, None)
        self.keys.pop(item, None)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"sub": self.sub, "mode": self.mode, "items": list(self.items),
                                 "fields": list(self.fields), "subscribed": self.subscribed}
        if self.mode == "COMMAND":
            state["key_field"] = self._field(self.key_field)
            state["command_field"] = self._field(self.command_field)
            state["keys"] = {item: dict(keys) for item, keys in self.keys.items()}
        else:
            state["rows"] = dict(self.rows)
        return state


class StreamState:
    """Tables rebuilt from the JSON-lines events (the bridge's connection status too)."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.session: dict[str, Any] | None = None
        self.subs: dict[int, _Sub] = {}

    def apply(self, event: Mapping[str, Any]) -> None:
        """Take one event into the state."""
        kind = event.get("event")
        sub = self.subs.get(event["sub"]) if isinstance(event.get("sub"), int) else None
        if kind == "update" and sub is not None:
            sub.update(event)
        elif kind == "status":
            self.status = event.get("status")
        elif kind == "session":
            self.session = dict(event)
            if resets(event):
                self.subs.clear()
        elif kind == "subscribed" and isinstance(event.get("sub"), int):
            self.subs[event["sub"]] = _Sub(event["sub"], event)
        elif kind == "clear_snapshot" and sub is not None:
            sub.clear(str(event.get("item") or event.get("pos")))
        elif kind == "unsubscribed" and sub is not None:
            sub.subscribed = False

    def subscriptions(self) -> list[dict[str, Any]]:
        return [self.subs[index].state() for index in sorted(self.subs)]


class StreamRelay(RelayBase):
    """
    A relay whose events are a Redis stream's entries (`write_entry`), ids and all.

    Feed it from a `~txlightstreamer.sinks.RedisSource`; the keyword arguments are
    `RelayOptions`.
    """

    def __init__(self, **options: Unpack[RelayOptions]) -> None:
        super().__init__(**options)
        self.state = StreamState()
        #: Whether the stream is being read (for /healthz).
        self.connected = False
        self._ids: dict[int, str] = {}
        self._numbers: dict[str, int] = {}
        self._waiting: list[tuple[Request, str, tuple[int, int], IDelayedCall]] = []

    def write_entry(self, entry_id: str, event: Mapping[str, Any]) -> None:
        """One stream entry: update the state, publish with the entry's id."""
        self.state.apply(event)
        number = self.last_number + 1
        self._ids[number] = entry_id
        self._numbers[entry_id] = number
        self.publish(event)
        oldest = self._backlog[0][0] if self._backlog else number
        ids = self._ids
        while ids:  # numbers go in increasing, so the first key is the smallest
            first = next(iter(ids))
            if first >= oldest - 1:
                break
            self._numbers.pop(ids.pop(first), None)
        if self._waiting:
            self._release_waiting(False)

    def event_id(self, number: int) -> str:
        """The Redis stream id of event ``number`` (``0-0`` before the first)."""
        return self._ids.get(number, "0-0")

    def _parse_id(self, text: str) -> int | None:
        return self._numbers.get(text.strip())

    @property
    def last_id(self) -> tuple[int, int]:
        return stream_id_key(self.event_id(self.last_number)) or (0, 0)

    @property
    def full(self) -> bool:
        """Whether ``max_clients`` streams are open or waiting for this relay to catch up."""
        return len(self._streams) + len(self._waiting) >= self.max_clients

    def open_stream(self, request: Request, last_event_id: str | None) -> Any:
        """As `RelayBase.open_stream`; an id this relay has not read yet is waited for."""
        wanted = stream_id_key(last_event_id) if last_event_id is not None else None
        if wanted is None or wanted <= self.last_id or last_event_id is None:
            return super().open_stream(request, last_event_id)
        if self.full:
            return None
        # Another relay is ahead of this one: wait (bounded) until we read that entry.
        timer = self.clock.callLater(CATCH_UP_WAIT, self._release_waiting, True)
        self._waiting.append((request, last_event_id, wanted, timer))
        request.write(b": catching up with the stream\n\n")  # the headers go out now
        return request

    def _release_waiting(self, timed_out: bool) -> None:
        waiting, self._waiting = self._waiting, []
        for request, last_event_id, wanted, timer in waiting:
            if request.finished or getattr(request, "_disconnected", False):
                if timer.active():
                    timer.cancel()
            elif wanted <= self.last_id or (timed_out and not timer.active()) or self.closed:
                if timer.active():
                    timer.cancel()
                if self.closed or super().open_stream(request, last_event_id) is None:
                    request.finish()  # the headers are out: the browser reconnects
            else:
                self._waiting.append((request, last_event_id, wanted, timer))

    def snapshot(self) -> dict[str, Any]:
        """The state rebuilt from the stream, and the id of the last entry included."""
        session = self.state.session or {}
        return {
            "status": self.state.status,
            "session_id": session.get("session_id"),
            "continuity": session.get("continuity"),
            "last_event_id": self.event_id(self.last_number),
            "clients": len(self._streams),
            "dropped_clients": self.dropped_clients,
            "subscriptions": self.state.subscriptions(),
        }

    def close(self) -> None:
        """Stop relaying; end every stream, waiting ones too."""
        super().close()
        self._release_waiting(True)
