"""The data model behind :class:`~txlightstreamer.testing.TlcpServer`.

It plays the role of a Lightstreamer Data Adapter plus the server's item
cache: tests push events into it and it dispatches them to every live
subscription of every session.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping
from typing import Literal, Protocol

__all__ = ["COMMANDS", "Command", "DataModel", "FieldValues", "ItemListener"]

FieldValues = Mapping[str, "str | None"]
Command = Literal["ADD", "UPDATE", "DELETE"]
COMMANDS: tuple[str, ...] = ("ADD", "UPDATE", "DELETE")


class ItemListener(Protocol):
    """What a subscription implements to receive events of one item."""

    def item_updated(
        self, item: str, state: Mapping[str, str | None], changed: Collection[str]
    ) -> None:
        """A MERGE/DISTINCT/RAW event; ``state`` is the merged item state."""

    def item_command(self, item: str, row: Mapping[str, str | None]) -> None:
        """A COMMAND event; ``row`` holds the full row of the key (``key``/``command`` set)."""

    def item_cleared(self, item: str) -> None:
        """The item's snapshot was cleared."""

    def item_overflow(self, item: str, lost: int) -> None:
        """``lost`` events of the item were dropped."""


def _check_fields(fields: Mapping[str, str | None]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, value in fields.items():
        if not isinstance(name, str):
            raise TypeError(f"field name must be str, not {type(name).__name__}")
        if value is not None and not isinstance(value, str):
            raise TypeError(f"value of field {name!r} must be str or None")
        out[name] = value
    return out


class _Item:
    """State of one item: MERGE state, DISTINCT history and COMMAND key table."""

    # Slots, and the history made on first use: fewer objects for the collector to scan.
    __slots__ = ("has_state", "history", "keys", "state")

    def __init__(self) -> None:
        self.state: dict[str, str | None] = {}
        self.has_state = False
        self.history: deque[dict[str, str | None]] | None = None
        self.keys: dict[str, dict[str, str | None]] = {}


class DataModel:
    """Items by name, their current state, and the subscriptions listening to them.

    Items need not be declared: any item or field name is valid, unless
    ``strict_items`` is true, in which case only the items of ``items``
    (a mapping item name -> allowed field names) may be subscribed
    (``REQERR`` 21 for an unknown item, 23 for an unknown field).

    ``history_size`` bounds the DISTINCT history kept per item (the events
    replayed as a DISTINCT snapshot).  ``modes`` maps items to the subscription
    modes allowed for them (``REQERR`` 24 for another; items not in it: any mode).
    """

    def __init__(
        self,
        *,
        strict_items: bool = False,
        items: Mapping[str, Iterable[str]] | None = None,
        history_size: int = 100,
        modes: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.strict_items = strict_items
        self._allowed: dict[str, frozenset[str]] = {
            name: frozenset(fields) for name, fields in (items or {}).items()
        }
        self._modes: dict[str, frozenset[str]] = {
            name: frozenset(allowed) for name, allowed in (modes or {}).items()
        }
        self._history_size = history_size
        self._items: dict[str, _Item] = {}
        self._listeners: dict[str, list[ItemListener]] = {}

    # --- validation ---------------------------------------------------------

    def is_valid_item(self, item: str) -> bool:
        """Whether ``item`` may be subscribed."""
        return not self.strict_items or item in self._allowed

    def is_valid_field(self, item: str, field: str) -> bool:
        """Whether ``field`` may be subscribed for ``item``."""
        if not self.strict_items:
            return True
        return field in self._allowed.get(item, frozenset())

    def is_allowed_mode(self, item: str, mode: str) -> bool:
        """Whether ``item`` may be subscribed in ``mode``."""
        allowed = self._modes.get(item)
        return allowed is None or mode in allowed

    # --- inspection ---------------------------------------------------------

    def _item(self, item: str) -> _Item:
        found = self._items.get(item)
        if found is None:
            found = self._items[item] = _Item()
        return found

    def has_state(self, item: str) -> bool:
        """Whether the item has ever been given a MERGE state."""
        found = self._items.get(item)
        return found is not None and found.has_state

    def state(self, item: str) -> dict[str, str | None]:
        """A copy of the item's current (merged) field values."""
        found = self._items.get(item)
        return dict(found.state) if found else {}

    def history(self, item: str) -> list[dict[str, str | None]]:
        """The item's kept DISTINCT history (merged rows), oldest first."""
        found = self._items.get(item)
        return [dict(row) for row in found.history] if found and found.history else []

    def keys(self, item: str) -> dict[str, dict[str, str | None]]:
        """The item's COMMAND table: key -> row (in insertion order)."""
        found = self._items.get(item)
        return {k: dict(v) for k, v in found.keys.items()} if found else {}

    # --- listeners ------------------------------------------------------------

    def add_listener(self, item: str, listener: ItemListener) -> None:
        """Register ``listener`` for events of ``item``."""
        self._listeners.setdefault(item, []).append(listener)

    def remove_listener(self, item: str, listener: ItemListener) -> None:
        """Unregister ``listener`` (no error if it was not registered)."""
        listeners = self._listeners.get(item)
        if listeners and listener in listeners:
            listeners.remove(listener)
            if not listeners:
                del self._listeners[item]

    def _for(self, item: str) -> list[ItemListener]:
        return list(self._listeners.get(item, ()))

    # --- events -----------------------------------------------------------------

    def update(self, item: str, fields: Mapping[str, str | None]) -> None:
        """Publish a MERGE/DISTINCT/RAW event.

        The fields are merged into the item's current state, the merged row is
        appended to the item's DISTINCT history, and every MERGE, DISTINCT and
        RAW subscription to the item receives it.
        """
        values = _check_fields(fields)
        it = self._item(item)
        it.state.update(values)
        it.has_state = True
        snapshot = dict(it.state)
        if it.history is None:
            it.history = deque(maxlen=self._history_size)
        it.history.append(snapshot)
        changed = frozenset(values)
        for listener in self._for(item):
            listener.item_updated(item, snapshot, changed)

    def set_item(self, item: str, fields: Mapping[str, str | None]) -> None:
        """Replace the item's MERGE state silently (no event; used by later snapshots)."""
        it = self._item(item)
        it.state = _check_fields(fields)
        it.has_state = True

    def command(
        self,
        item: str,
        key: str,
        command: Command | str,
        fields: Mapping[str, str | None] | None = None,
    ) -> None:
        """Publish a COMMAND event for ``key`` of ``item``.

        Maintains the item's key table: ``ADD`` of an existing key is sent as
        ``UPDATE`` and ``UPDATE`` of an unknown key as ``ADD`` (as a real server
        does); ``DELETE`` removes the key and is sent with its other fields
        null.  The ``key`` and ``command`` fields are set automatically.
        """
        if command not in COMMANDS:
            raise ValueError(f"command must be one of {COMMANDS}, not {command!r}")
        if not isinstance(key, str):
            raise TypeError("key must be str")
        values = _check_fields(fields or {})
        it = self._item(item)
        row: dict[str, str | None]
        if command == "DELETE":
            if key not in it.keys:
                return
            del it.keys[key]
            row = {"key": key, "command": "DELETE"}
        else:
            existing = it.keys.get(key)
            if existing is None:
                row = {**values, "key": key, "command": "ADD"}
            else:
                row = {**existing, **values, "key": key, "command": "UPDATE"}
            it.keys[key] = row
        for listener in self._for(item):
            listener.item_command(item, dict(row))

    def clear_snapshot(self, item: str) -> None:
        """Clear the item's snapshot.

        DISTINCT and COMMAND subscriptions receive ``CS`` (and the history and
        key table are emptied); MERGE subscriptions receive an update with all
        fields null (and the state is nulled).
        """
        it = self._item(item)
        if it.history is not None:
            it.history.clear()
        it.keys.clear()
        it.state = {name: None for name in it.state}
        for listener in self._for(item):
            listener.item_cleared(item)

    def overflow(self, item: str, lost: int) -> None:
        """Tell every subscription of ``item`` that ``lost`` events were dropped (``OV``)."""
        if lost < 1:
            raise ValueError("lost must be positive")
        for listener in self._for(item):
            listener.item_overflow(item, lost)
