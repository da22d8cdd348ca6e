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
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

from txlightstreamer import MODE_COMMAND, ItemUpdate, LsClient, SessionInfo, Table
from txlightstreamer.errors import ProtocolError, ServerError

__all__ = [
    "DATA_EVENTS",
    "EventFeed",
    "EventSink",
    "encode_event",
    "error_event",
    "item_event",
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


# -- the records ---------------------------------------------------------------------------


# json.dumps(event, ensure_ascii=False) builds this encoder per call: build it once.
_ENCODER = json.JSONEncoder(ensure_ascii=False)


def timestamp(seconds: float) -> str:
    """``ts``: ISO 8601 UTC with milliseconds, e.g. ``2026-11-28T16:00:00.123Z``."""
    millis = int(round(seconds * 1000))
    moment = datetime.fromtimestamp(millis // 1000, tz=timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


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


def item_event(kind: str, sub: int, table: Table, pos: int) -> dict[str, Any]:
    """``eos`` and ``clear_snapshot``: ``{"event", "sub", "item", "pos"}``."""
    return {"event": kind, "sub": sub, "item": _item_name(table, pos), "pos": pos}


def lost_event(sub: int, table: Table, pos: int, count: int) -> dict[str, Any]:
    """``{"event": "lost", "sub": N, "item": NAME, "pos": P, "count": K}``."""
    return {**item_event("lost", sub, table, pos), "count": count}


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
        table.on_item_update(lambda update: write(update_event(sub, update)))
        table.on_end_of_snapshot(lambda pos: write(item_event("eos", sub, table, pos)))
        table.on_clear_snapshot(
            lambda pos: write(item_event("clear_snapshot", sub, table, pos)))
        table.on_overflow(lambda pos, lost: write(lost_event(sub, table, pos, lost)))
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
