"""
Client and table events as records: the JSON-lines event format, and the wiring that feeds
them to a sink.

Every output (the JSON-lines writer, the web relay, future sinks) gets its events here, so
they all see the same records: one dict per event, with an ``"event"`` key and values that
are strings, numbers, booleans or ``None``. An *event sink* is anything with
``write(event)``; `EventFeed` attaches to a client and its tables and writes to one::

    feed = EventFeed(sink)
    feed.watch_client(client)
    for sub, table in enumerate(tables):
        feed.watch_table(sub, table)
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import partial
from itertools import compress
from operator import ne
from typing import Any, Protocol

from txlightstreamer import MODE_COMMAND, ItemUpdate, LsClient, SessionInfo, Table
from txlightstreamer.errors import ProtocolError, ServerError

__all__ = [
    "DATA_EVENTS",
    "EventFeed",
    "EventSink",
    "UpdateEncoder",
    "UpdateSink",
    "encode_event",
    "error_event",
    "item_event",
    "key_lost_event",
    "lost_event",
    "session_event",
    "stamped",
    "status_event",
    "subscribed_event",
    "timestamp",
    "unsubscribed_event",
    "update_event",
]

#: The events that carry subscription data (the rest report the connection's life).
DATA_EVENTS = frozenset({"update", "eos", "clear_snapshot", "lost"})


class EventSink(Protocol):
    """Where event records go: the JSON-lines writer, the relay, any future output."""

    def write(self, event: Mapping[str, Any]) -> None:
        """Take one event record (a JSON-able dict with an ``"event"`` key)."""


class UpdateSink(EventSink, Protocol):
    """A sink that also takes updates unbuilt, to encode them without a record (faster)."""

    def write_update(self, encoder: UpdateEncoder, update: ItemUpdate) -> None:
        """Take one update: ``encoder.event(update)`` is its record, ``encoder.encode(update,
        seconds)`` the stamped JSON line of that record."""


# -- the records ---------------------------------------------------------------------------


# json.dumps(event, ensure_ascii=False) builds this encoder per call: build it once.
_ENCODER = json.JSONEncoder(ensure_ascii=False)


#: The last timestamp made, and the milliseconds (exclusive bounds) that round to it: a
#: burst stamps thousands per millisecond.
_last_stamp: tuple[float, float, str] = (0.0, 0.0, "")


def timestamp(seconds: float) -> str:
    """``ts``: ISO 8601 UTC with milliseconds, e.g. ``2026-11-28T16:00:00.123Z``."""
    global _last_stamp
    scaled = seconds * 1000
    last = _last_stamp
    if last[0] < scaled < last[1]:  # strictly inside: round() gives the same millisecond
        return last[2]
    millis = int(round(scaled))
    moment = datetime.fromtimestamp(millis // 1000, tz=timezone.utc)
    text = f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"
    _last_stamp = (millis - 0.5, millis + 0.5, text)
    return text


def stamped(event: Mapping[str, Any], seconds: float) -> dict[str, Any]:
    """``event`` with ``ts`` second (after ``event``), from a clock's ``seconds()``."""
    return {"event": event["event"], "ts": timestamp(seconds), **event}


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One JSON line (UTF-8, not ASCII-escaped, ending with a newline)."""
    text = _ENCODER.encode(event)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: fall back to \\u escapes
        data = json.dumps(event).encode("ascii")
    return data + b"\n"


def _item_name(table: Table, pos: int) -> str | None:
    names = table.item_names
    if names is not None and 0 < pos <= len(names):
        return names[pos - 1]
    return None


def status_event(status: str, reason: str | None = None) -> dict[str, Any]:
    """``{"event": "status", "status": S, "reason": WHY}`` (``reason`` may be ``null``)."""
    return {"event": "status", "status": str(status), "reason": reason}


def session_event(info: SessionInfo) -> dict[str, Any]:
    """``{"event": "session", "session_id": ID, "continuity": C}``."""
    continuity = info.continuity
    return {"event": "session", "session_id": info.session_id,
            "continuity": None if continuity is None else str(continuity)}


def subscribed_event(sub: int, table: Table) -> dict[str, Any]:
    """
    ``{"event": "subscribed", "sub": N, "items": count, "fields": count, "item_names":
    [...], "field_names": [...], ...}``: the names are ``null`` for a group or schema
    name the server expanded (the counts are always there).
    """
    items, fields = table.item_names, table.field_names
    event: dict[str, Any] = {
        "event": "subscribed",
        "sub": sub,
        "items": table.num_items,
        "fields": table.num_fields,
        "item_names": None if items is None else list(items),
        "field_names": None if fields is None else list(fields),
    }
    if table.mode == MODE_COMMAND:
        event["key_field"] = table.key_position
        event["command_field"] = table.command_position
    return event


def update_event(sub: int, update: ItemUpdate) -> dict[str, Any]:
    """``{"event": "update", "sub", "item", "pos", "values", "changed", "snapshot"}``."""
    return {
        "event": "update",
        "sub": sub,
        "item": update.item_name,
        "pos": update.item_pos,
        "values": {str(k): v for k, v in update.as_dict().items()},
        "changed": [str(k) for k in update.changed_fields],
        "snapshot": bool(update.is_snapshot),
    }


# json.JSONEncoder(ensure_ascii=False) quotes every string (keys too) with this function.
_quote: Callable[[Any], str] = json.encoder.encode_basestring
_NULL = "null"
_END = '], "snapshot": false}\n'
_SNAPSHOT_END = '], "snapshot": true}\n'


class UpdateEncoder:
    """
    The ``update`` events of one table, encoded straight to JSON lines: `encode` returns
    exactly ``encode_event(stamped(update_event(sub, update), seconds))``, without building
    the records, from texts made once per table and item (the field names quoted once).
    """

    __slots__ = ("sub", "_names", "_width", "_body", "_changed", "_all_changed",
                 "_names_by_change", "_item_names", "_heads")

    def __init__(self, sub: int) -> None:
        self.sub = sub
        #: What the texts below were made from (none yet): the field names and the width.
        self._names: tuple[str, ...] | None | bool = False
        self._width = -1
        #: The line's pieces, values and all to fill in (None: names repeat, records are
        #: built); ``"name"`` per field.
        self._body: list[str] | None = None
        self._changed: tuple[str, ...] = ()
        self._all_changed = ""
        #: The changed names' text by which fields changed (a byte each, as `_changed_names`).
        self._names_by_change: dict[bytes, str] = {}
        self._item_names: tuple[str, ...] | None | bool = False
        #: Per item position: ``"sub": N, "item": NAME, "pos": P, "values": {``.
        self._heads: dict[int, str] = {}

    def event(self, update: ItemUpdate) -> dict[str, Any]:
        """The record of ``update`` (`update_event`)."""
        return update_event(self.sub, update)

    def encode(self, update: ItemUpdate, seconds: float) -> bytes:
        """The JSON line of ``update`` stamped at ``seconds``, as `encode_event` writes it."""
        values = update.values
        table = update.table  # a second-level update's may not be the table's
        if table.field_names is not self._names or len(values) != self._width:
            self._prepare(table.field_names, len(values))
        body = self._body
        if body is None:
            return encode_event(stamped(update_event(self.sub, update), seconds))
        if table.item_names is not self._item_names:
            self._item_names = table.item_names
            self._heads.clear()
        pos = update.item_pos
        head = self._heads.get(pos)
        if head is None:
            head = self._heads[pos] = self._head(update)
        # One list for the whole line: start, ts, head, key, value..., changed names, end.
        parts = body.copy()
        stamp = _last_stamp  # timestamp()'s cache, read here: one call less per update
        scaled = seconds * 1000
        parts[1] = stamp[2] if stamp[0] < scaled < stamp[1] else timestamp(seconds)
        parts[3] = head
        try:
            parts[5:-3:2] = [_NULL if v is None else _quote(v) for v in values]
        except TypeError:  # not a string: let the JSON encoder say what it makes of it
            return encode_event(stamped(update_event(self.sub, update), seconds))
        # What ItemUpdate.changed_fields lists, in field order, without building it.
        previous, override = update._previous, update._changed_override
        if override is not None:
            every = self._changed
            parts[-2] = ", ".join([every[i] for i in sorted(override)])
        elif previous is None:
            parts[-2] = self._all_changed
        else:
            parts[-2] = self._changed_names(bytes(map(ne, previous, values)))
        parts[-1] = _SNAPSHOT_END if update.is_snapshot else _END
        try:
            return "".join(parts).encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: encode_event's ASCII fallback
            return encode_event(stamped(update_event(self.sub, update), seconds))

    def _prepare(self, names: tuple[str, ...] | None, width: int) -> None:
        self._names, self._width = names, width
        keys: list[str] = [str(n) for n in range(1, width + 1)] if names is None else list(names)
        if len(keys) != width or len(set(keys)) != width:
            self._body = None  # a mismatch (update_event raises) or repeated names
            return
        quoted = tuple(_quote(key) for key in keys)
        # The start, the ts, its end, the head; ``"a": `` then a value's text, ``, "b": ``
        # then the next one...; the values' end and the changed names; the end.
        self._body = ['{"event": "update", "ts": "', "", '", ', "", *(
            part for i, key in enumerate(quoted)
            for part in ((", " if i else "") + key + ": ", _NULL)), '}, "changed": [', "", _END]
        self._changed = quoted
        self._all_changed = ", ".join(quoted)
        self._names_by_change = {}

    def _changed_names(self, changed: bytes) -> str:
        """``"a", "c"`` for the fields flagged in ``changed`` (one byte per field)."""
        names = self._names_by_change.get(changed)
        if names is None:
            if len(self._names_by_change) >= 1024:  # bounded: 2 ** fields patterns
                self._names_by_change.clear()
            names = self._names_by_change[changed] = ", ".join(compress(self._changed, changed))
        return names

    def _head(self, update: ItemUpdate) -> str:
        name = update.item_name
        item = "null" if name is None else _quote(name)
        return f'"sub": {self.sub}, "item": {item}, "pos": {update.item_pos}, "values": {{'


def item_event(kind: str, sub: int, table: Table, pos: int) -> dict[str, Any]:
    """``eos`` and ``clear_snapshot``: ``{"event", "sub", "item", "pos"}``."""
    return {"event": kind, "sub": sub, "item": _item_name(table, pos), "pos": pos}


def lost_event(sub: int, table: Table, pos: int, count: int) -> dict[str, Any]:
    """``{"event": "lost", "sub": N, "item": NAME, "pos": P, "count": K}``."""
    return {**item_event("lost", sub, table, pos), "count": count}


def key_lost_event(sub: int, key: str, count: int) -> dict[str, Any]:
    """A two-level COMMAND key's own ``OV``: ``{"event": "lost", "sub": N, "item": null,
    "pos": null, "key": KEY, "count": K}``."""
    return {"event": "lost", "sub": sub, "item": None, "pos": None, "key": key,
            "count": count}


def unsubscribed_event(sub: int) -> dict[str, Any]:
    """``{"event": "unsubscribed", "sub": N}``."""
    return {"event": "unsubscribed", "sub": sub}


def error_event(
    error: BaseException, sub: int | None = None, key: str | None = None
) -> dict[str, Any]:
    """
    ``{"event": "error", "code": CODE, "message": TEXT}`` (plus ``"sub"``, and ``"key"``
    for a two-level COMMAND key's error). Server errors carry the server's code, protocol
    errors 61, connection errors ``null``.
    """
    code: int | None
    if isinstance(error, ServerError):
        code, message = error.code, error.message
    elif isinstance(error, ProtocolError):
        code, message = error.code, str(error)
    else:
        code, message = None, str(error)
    event: dict[str, Any] = {"event": "error", "code": code, "message": message}
    if sub is not None:
        event["sub"] = sub
    if key is not None:
        event["key"] = key
    return event


# -- the wiring ----------------------------------------------------------------------------


class EventFeed:
    """
    Attaches to a client and its tables and writes their events, as records, to ``sink``.

    An error reported both by a table and by the client (a refused subscription) is
    written once, with the table's ``sub``.
    """

    def __init__(self, sink: EventSink, *, remember_errors: int = 32) -> None:
        self.sink = sink
        self._reported: deque[BaseException] = deque(maxlen=remember_errors)

    def watch_client(self, client: LsClient) -> None:
        """Write the client's status changes, sessions and errors."""
        write = self.sink.write
        client.on_status(lambda status, reason: write(status_event(status, reason)))
        client.on_session(lambda info: write(session_event(info)))
        client.on_error(self.report_error)

    def watch_table(self, sub: int, table: Table) -> None:
        """Write ``table``'s events, numbered ``sub``."""
        write = self.sink.write
        table.on_subscribed(lambda: write(subscribed_event(sub, table)))
        write_update = getattr(self.sink, "write_update", None)
        if write_update is not None:  # an UpdateSink: no record built for an update
            table.on_item_update(partial(write_update, UpdateEncoder(sub)))
        else:
            table.on_item_update(lambda update: write(update_event(sub, update)))
        table.on_end_of_snapshot(lambda pos: write(item_event("eos", sub, table, pos)))
        table.on_clear_snapshot(
            lambda pos: write(item_event("clear_snapshot", sub, table, pos)))
        table.on_overflow(lambda pos, lost: write(lost_event(sub, table, pos, lost)))
        table.on_second_level_overflow(lambda key, lost: write(key_lost_event(sub, key, lost)))
        table.on_unsubscribed(lambda: write(unsubscribed_event(sub)))
        table.on_error(lambda error: self.report_error(error, sub))
        table.on_second_level_error(lambda key, error: self.report_error(error, sub, key))

    def report_error(
        self, error: BaseException, sub: int | None = None, key: str | None = None
    ) -> None:
        """Write ``error`` unless this very error was written already."""
        if any(seen is error for seen in self._reported):
            return
        self._reported.append(error)
        self.sink.write(error_event(error, sub, key))
