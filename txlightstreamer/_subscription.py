"""
Tables (subscriptions), their per-mode item state, and the per-update object.

A `Table` never touches a transport: the client hands it the notifications that carry
its subscription id, and the table decodes them into rows and calls the user back.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from txlightstreamer._callbacks import CallbackList
from txlightstreamer.errors import (
    ClientStateError,
    LightstreamerError,
    SubscriptionError,
    ValueDecodeError,
)
from txlightstreamer.protocol import check_limit, decode_update
from txlightstreamer.protocol._hotpath import Lane, deliver

if TYPE_CHECKING:
    from txlightstreamer.client import LsClient

__all__ = [
    "MODE_COMMAND",
    "MODE_DISTINCT",
    "MODE_MERGE",
    "MODE_RAW",
    "ItemUpdate",
    "Table",
    "UpdateQueue",
]

MODE_RAW: Final = "RAW"
MODE_MERGE: Final = "MERGE"
MODE_DISTINCT: Final = "DISTINCT"
MODE_COMMAND: Final = "COMMAND"
MODES: Final = (MODE_RAW, MODE_MERGE, MODE_DISTINCT, MODE_COMMAND)
# Largest item or field count a SUBOK may announce (guards memory against a bad server).
MAX_TABLE_SIZE: Final = 100_000

Value = str | None
Row = tuple[Value, ...]

log = Logger()

_NAME_SEPARATORS = re.compile(r"[ |]+")


def _split_names(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    """Accept the seed's space/pipe-separated string or any iterable of names."""
    if isinstance(value, str):
        names = tuple(n for n in _NAME_SEPARATORS.split(value.strip()) if n)
    else:
        names = tuple(value)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"{what}: every name must be a non-empty string, got {name!r}")
            if any(c.isspace() or c == "|" for c in name):
                raise ValueError(f"{what}: name {name!r} must not contain spaces or '|'")
    if not names:
        raise ValueError(f"{what} must name at least one entry")
    return names


class ItemUpdate:
    """
    One update of one item (or of one key of a COMMAND item), as delivered to
    `Table.on_item_update` callbacks.

    Values are reachable by field name (``update["last_price"]``) or by 1-based position
    (``update[2]``); `changed_fields` lists only what this update changed.
    """

    __slots__ = (
        "table",
        "item_pos",
        "values",
        "is_snapshot",
        "_previous",
        "_changed_override",
        "_patches",
    )

    def __init__(
        self,
        table: Table,
        item_pos: int,
        values: Row,
        previous: Row | None,
        is_snapshot: bool,
        patches: Mapping[int, Any] | None = None,
        changed_override: frozenset[int] | None = None,
    ) -> None:
        self.table = table
        self.item_pos = item_pos
        self.values = values
        self.is_snapshot = is_snapshot
        self._previous = previous
        self._changed_override = changed_override
        self._patches = patches

    @property
    def item_name(self) -> str | None:
        """The item's name, when the table was given item names."""
        names = self.table.item_names
        if names is not None and 0 < self.item_pos <= len(names):
            return names[self.item_pos - 1]
        return None

    @property
    def fields(self) -> tuple[str, ...] | None:
        """The field names, when the table was given them."""
        return self.table.field_names

    def _index(self, field: str | int) -> int:
        if isinstance(field, int):
            if not 1 <= field <= len(self.values):
                raise IndexError(f"field position {field} out of range 1..{len(self.values)}")
            return field - 1
        names = self.table.field_names
        if names is None or field not in names:
            raise KeyError(field)
        return names.index(field)

    def value(self, field: str | int) -> Value:
        """The value of a field, by name or 1-based position (None means null)."""
        return self.values[self._index(field)]

    __getitem__ = value

    def _changed_indexes(self) -> frozenset[int]:
        if self._changed_override is not None:
            return self._changed_override
        prev = self._previous
        if prev is None:
            return frozenset(range(len(self.values)))
        pairs = enumerate(zip(prev, self.values, strict=False))
        return frozenset(i for i, (a, b) in pairs if a != b)

    def is_changed(self, field: str | int) -> bool:
        """Whether this update changed the field."""
        return self._index(field) in self._changed_indexes()

    @property
    def changed_fields(self) -> dict[str | int, Value]:
        """The changed fields, keyed by name (or by 1-based position without names)."""
        names = self.table.field_names
        keys: Sequence[str | int] = names if names is not None else range(1, len(self.values) + 1)
        return {keys[i]: self.values[i] for i in sorted(self._changed_indexes())}

    def json_patch(self, field: str | int) -> Any | None:
        """The JSON Patch (RFC 6902 operation list) the server sent for this field, if any."""
        if self._patches is None:
            return None
        return self._patches.get(self._index(field))

    @property
    def key(self) -> Value:
        """The COMMAND key of this update (None outside COMMAND mode)."""
        pos = self.table.key_position
        return self.values[pos - 1] if pos else None

    @property
    def command(self) -> Value:
        """``ADD``, ``UPDATE`` or ``DELETE`` in COMMAND mode (None otherwise)."""
        pos = self.table.command_position
        return self.values[pos - 1] if pos else None

    def as_dict(self) -> dict[str | int, Value]:
        """All values keyed by field name (or 1-based position without names)."""
        names = self.table.field_names
        if names is None:
            return {i + 1: v for i, v in enumerate(self.values)}
        return dict(zip(names, self.values, strict=True))

    def __repr__(self) -> str:
        return (
            f"<ItemUpdate item={self.item_name or self.item_pos} "
            f"snapshot={self.is_snapshot} values={self.as_dict()!r}>"
        )


# Life cycle of a table, as seen by the client.
PENDING: Final = "pending"  # waiting for a session (or for start() when silent)
SUBSCRIBING: Final = "subscribing"  # add sent, waiting for SUBOK
ACTIVE: Final = "active"  # SUBOK received
DELETING: Final = "deleting"  # delete sent, waiting for UNSUB
DELETED: Final = "deleted"  # gone for good
FAILED: Final = "failed"  # the server refused it


class Table:
    """
    A subscription to a set of items and fields in one mode.

    Callbacks run in the reactor thread. Created before the session exists, the table
    is subscribed as soon as the session is; after a session is replaced it is
    subscribed again (its snapshot is delivered again).
    """

    def __init__(
        self,
        client: LsClient,
        data_adapter: str | None = None,
        mode: str = MODE_MERGE,
        item_ids: str | Iterable[str] = (),
        schema: str | Iterable[str] = (),
        row_factory: Callable[[list[Value]], Any] | None = None,
        selector: str | None = None,
        buffer_size: int | str | None = None,
        max_frequency: float | str | None = None,
        snapshot: bool | int = False,
        silent: bool = False,
        *,
        second_level_schema: str | Iterable[str] | None = None,
        second_level_adapter: str | None = None,
        _parent: tuple[Table, int, str] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
        self.mode = mode
        self.items = _split_names(item_ids, "item_ids")
        self.schema = _split_names(schema, "schema")
        if mode == MODE_RAW and snapshot:
            raise ValueError("RAW mode has no snapshot: use snapshot=False")
        if isinstance(snapshot, int) and not isinstance(snapshot, bool):
            if mode != MODE_DISTINCT:
                raise ValueError("a snapshot length is only allowed in DISTINCT mode")
            if snapshot < 1:
                raise ValueError("the snapshot length must be a positive integer")
        if buffer_size is not None and mode not in (MODE_MERGE, MODE_DISTINCT):
            raise ValueError("buffer_size is only allowed in MERGE and DISTINCT mode")
        if buffer_size is not None and max_frequency == "unfiltered":
            raise ValueError("buffer_size cannot be combined with max_frequency='unfiltered'")
        if mode == MODE_COMMAND and len(self.schema) > 1:
            missing = {"key", "command"} - set(self.schema)
            if missing:
                raise ValueError(
                    f"a COMMAND schema must contain the fields 'key' and 'command' "
                    f"(missing: {', '.join(sorted(missing))})"
                )
        for name, value in (("data_adapter", data_adapter), ("selector", selector)):
            if value is not None and (not value or any(c.isspace() for c in value)):
                raise ValueError(f"{name} must be a non-empty name without spaces")
        self.second_schema: tuple[str, ...] = ()
        if second_level_schema is not None:
            if mode != MODE_COMMAND:
                raise ValueError("second-level fields are only for COMMAND mode")
            self.second_schema = _split_names(second_level_schema, "second_level_schema")
            clash = set(self.second_schema) & set(self.schema)
            if clash:
                raise ValueError(f"second-level fields repeat first-level ones: {sorted(clash)}")
        self.second_level_adapter = second_level_adapter
        # (parent table, item position, key) for a second-level table.
        self._parent = _parent
        self._children: dict[tuple[int, str], Table] = {}
        self.data_adapter = data_adapter
        self.selector = selector
        self.buffer_size = buffer_size
        self.max_frequency = max_frequency
        self.snapshot = snapshot
        self.silent = silent
        self._row_factory: Callable[[list[Value]], Any] = row_factory or tuple

        self.client = client
        self.state: str = PENDING
        self.sub_id: int | None = None
        # Filled by SUBOK / SUBCMD.
        self.item_names: tuple[str, ...] | None = self.items
        self.field_names: tuple[str, ...] | None = self.schema
        self.key_position: int = 0
        self.command_position: int = 0
        self.num_fields = len(self.schema)
        #: Items in the subscription (known for sure once subscribed: a group name may
        #: stand for several).
        self.num_items = len(self.items)
        self._live = False  # between on_subscribed and on_unsubscribed
        self.max_frequency_granted: str | None = None
        self.filtered: bool | None = None

        self._rows: dict[int, Row] = {}
        self._keys: dict[int, dict[str, Row]] = {}
        self._in_snapshot: list[bool] = []
        self._snapshot_items = 0  # items still in their snapshot

        self._update_cbs = CallbackList("on_update")
        self._item_update_cbs = CallbackList("on_item_update", self._refresh_lane)
        self._eos_cbs = CallbackList("on_end_of_snapshot")
        self._cs_cbs = CallbackList("on_clear_snapshot")
        self._overflow_cbs = CallbackList("on_overflow")
        self._error_cbs = CallbackList("on_error")
        self._subscribed_cbs = CallbackList("on_subscribed")
        self._unsubscribed_cbs = CallbackList("on_unsubscribed")
        self._config_cbs = CallbackList("on_config")
        self._deleted_cbs = CallbackList("deleted")
        self._second_error_cbs = CallbackList("on_second_level_error")
        self._subscribed_waiters: list[Deferred[Table]] = []
        self._delete_waiters: list[Deferred[None]] = []
        # Decoded rows per item, and what the hot path needs to deliver without us.
        self._lane = self._new_lane(0, 0)

        client._attach_table(self)

    # -- public API --------------------------------------------------------------------

    @property
    def row_factory(self) -> Callable[[list[Value]], Any]:
        """Builds the ``row`` given to ``on_update`` callbacks from the list of values."""
        return self._row_factory

    @row_factory.setter
    def row_factory(self, factory: Callable[[list[Value]], Any] | None) -> None:
        self._row_factory = factory or tuple
        self._lane.row_factory = None if self._row_factory is tuple else self._row_factory

    def on_update(self, callback: Callable[[int, Any], object]) -> Callable[[int, Any], object]:
        """Call ``callback(item_id, row)`` on every update (1-based item position)."""
        return self._update_cbs.add(callback)

    def on_item_update(
        self, callback: Callable[[ItemUpdate], object]
    ) -> Callable[[ItemUpdate], object]:
        """Call ``callback(update)`` with the richer `ItemUpdate` on every update."""
        return self._item_update_cbs.add(callback)

    def on_end_of_snapshot(self, callback: Callable[[int], object]) -> Callable[[int], object]:
        """Call ``callback(item_id)`` when an item's snapshot is complete (``EOS``)."""
        return self._eos_cbs.add(callback)

    def on_clear_snapshot(self, callback: Callable[[int], object]) -> Callable[[int], object]:
        """Call ``callback(item_id)`` when the server clears an item (``CS``)."""
        return self._cs_cbs.add(callback)

    def on_overflow(self, callback: Callable[[int, int], object]) -> Callable[[int, int], object]:
        """Call ``callback(item_id, lost)`` when the server dropped updates (``OV``)."""
        return self._overflow_cbs.add(callback)

    def on_error(
        self, callback: Callable[[LightstreamerError], object]
    ) -> Callable[[LightstreamerError], object]:
        """Call ``callback(error)`` when the subscription fails."""
        return self._error_cbs.add(callback)

    def on_second_level_error(
        self, callback: Callable[[str, LightstreamerError], object]
    ) -> Callable[[str, LightstreamerError], object]:
        """Call ``callback(key, error)`` when a key's second-level subscription fails."""
        return self._second_error_cbs.add(callback)

    def on_subscribed(self, callback: Callable[[], object]) -> Callable[[], object]:
        """Call ``callback()`` each time the server confirms the subscription."""
        return self._subscribed_cbs.add(callback)

    def on_unsubscribed(self, callback: Callable[[], object]) -> Callable[[], object]:
        """Call ``callback()`` when the subscription ends (``UNSUB`` or session end)."""
        return self._unsubscribed_cbs.add(callback)

    def on_config(
        self, callback: Callable[[str, bool], object]
    ) -> Callable[[str, bool], object]:
        """Call ``callback(max_frequency, filtered)`` on each ``CONF`` from the server."""
        return self._config_cbs.add(callback)

    def when_subscribed(self) -> Deferred[Table]:
        """A Deferred that fires with this table once the server confirms it."""
        if self.state == ACTIVE:
            return succeed(self)
        d: Deferred[Table] = Deferred()
        self._subscribed_waiters.append(d)
        return d

    def start(self) -> None:
        """Subscribe a table created with ``silent=True``."""
        if self.state in (DELETED, DELETING):
            raise ClientStateError("this table was deleted")
        if self.silent:
            self.silent = False
            self.client._table_ready(self)

    def delete(self) -> Deferred[None]:
        """Unsubscribe; the Deferred fires once no more updates can arrive."""
        if self.state == DELETED:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._delete_waiters.append(d)
        if self.state != DELETING:
            previous = self.state
            self.state = DELETING
            self.client._delete_table(self, previous)
        return d

    def set_max_frequency(self, max_frequency: float | str) -> Deferred[None]:
        """
        Change the maximum update frequency (updates/s, or ``"unlimited"``) while live.

        The server confirms with ``CONF`` (see `on_config`). Not possible for a table
        subscribed with ``max_frequency="unfiltered"``.
        """
        if self.max_frequency == "unfiltered":
            raise ValueError("an unfiltered subscription cannot change its frequency")
        if max_frequency == "unfiltered":
            raise ValueError("'unfiltered' can only be chosen when the table is created")
        self.max_frequency = check_limit(max_frequency, "max_frequency")
        return self.client._reconf(self, max_frequency)

    def updates(self, max_queue: int = 1000) -> UpdateQueue:
        """
        The updates of this table as an async iterator (``async for update in ...``).

        At most ``max_queue`` updates wait for a slow consumer; past that the oldest are
        dropped and counted in ``dropped`` (and logged). Iteration ends when the table is
        deleted.
        """
        return UpdateQueue(self, max_queue)

    @property
    def rows(self) -> Mapping[int, Row]:
        """Current row per item position (MERGE state; last update in DISTINCT/RAW)."""
        return MappingProxyType(self._rows)

    def command_rows(self, item_pos: int) -> Mapping[str, Row]:
        """The current key table of one COMMAND item (read-only)."""
        return MappingProxyType(self._keys.get(item_pos, {}))

    @property
    def is_active(self) -> bool:
        """Whether the server has confirmed the subscription and it is not deleted."""
        return self.state == ACTIVE

    def __repr__(self) -> str:
        return (
            f"<Table {self.mode} items={' '.join(self.items)!r} "
            f"schema={' '.join(self.schema)!r} state={self.state} sub_id={self.sub_id}>"
        )

    # -- called by the client ----------------------------------------------------------

    def _add_params(self) -> dict[str, Any]:
        """Keyword arguments for the protocol's ``add_subscription`` request builder."""
        snapshot: bool | int | None
        if self.mode == MODE_RAW:
            snapshot = None
        else:
            snapshot = self.snapshot
        return {
            "mode": self.mode,
            "group": " ".join(self.items),
            "schema": " ".join(self.schema),
            "data_adapter": self.data_adapter,
            "selector": self.selector,
            "buffer_size": self.buffer_size,
            "max_frequency": self.max_frequency,
            "snapshot": snapshot,
        }

    def _begin(self, sub_id: int) -> None:
        """A fresh subscription (new id) is about to be sent: forget old item state."""
        self.sub_id = sub_id
        self.state = SUBSCRIBING
        self._lane = self._new_lane(0, 0)
        self._in_snapshot = []
        self._snapshot_items = 0

    def _subok(
        self, num_items: int, num_fields: int, key_pos: int = 0, command_pos: int = 0
    ) -> None:
        problems = []
        if num_items > MAX_TABLE_SIZE or num_fields > MAX_TABLE_SIZE:
            problems.append(f"{num_items} items x {num_fields} fields is more than this "
                            f"client accepts ({MAX_TABLE_SIZE} of each)")
        elif num_items != len(self.items):
            if len(self.items) > 1:
                problems.append(f"Expected {len(self.items)} items but got {num_items}")
            else:
                self.item_names = None  # a group name, expanded by the server
        else:
            self.item_names = self.items
        if num_fields != len(self.schema):
            if len(self.schema) > 1:
                problems.append(f"Expected {len(self.schema)} fields but got {num_fields}")
            else:
                self.field_names = None  # a schema name, expanded by the server
        else:
            self.field_names = self.schema
        if problems:
            if self.sub_id is not None:
                self.client._abandon_subscription(self.sub_id)
            self._fail(SubscriptionError(61, "; ".join(problems), "SUBOK"))
            return
        self.key_position = key_pos
        self.command_position = command_pos
        self.num_fields = num_fields
        if self.second_schema and self.field_names is not None:
            self.field_names = self.field_names + self.second_schema
        self._lane = self._new_lane(num_items, num_fields)
        snap = bool(self.snapshot) and self.mode != MODE_RAW
        self._in_snapshot = [snap] * num_items
        self._snapshot_items = num_items if snap else 0
        if self.mode == MODE_COMMAND:
            self._keys = {i: {} for i in range(1, num_items + 1)}
        self.state = ACTIVE
        self.num_items = num_items
        self._live = True
        self._refresh_lane()
        self._subscribed_cbs()
        waiters, self._subscribed_waiters = self._subscribed_waiters, []
        for d in waiters:
            d.callback(self)

    def _conf(self, max_frequency: str, filtered: bool) -> None:
        self.max_frequency_granted = max_frequency
        self.filtered = filtered
        self._config_cbs(max_frequency, filtered)

    def _update(self, item: int, raw: str) -> None:
        """
        Decode one ``U`` line for this table and deliver it: the general path, for what
        the hot path leaves (first updates, escapes, diffs, richer callbacks, COMMAND).
        """
        baselines = self._lane.baselines
        if not 0 < item <= len(baselines):
            raise ValueDecodeError(
                f"item index {item} out of range for subscription {self.sub_id} "
                f"({len(baselines)} items)"
            )
        values, patches = decode_update(raw, baselines[item - 1], self.num_fields)
        baselines[item - 1] = values
        in_snapshot = False
        if self._snapshot_items:
            in_snapshot = self._in_snapshot[item - 1]
            if in_snapshot and self.mode == MODE_MERGE:
                self._end_snapshot_of(item)  # a MERGE snapshot is exactly one update
        if self.mode == MODE_COMMAND:
            self._command_update(item, values, patches, in_snapshot)
            return
        row = tuple(values)
        rows = self._rows
        if self._item_update_cbs._callbacks:
            self._deliver(item, row, rows.get(item), in_snapshot, patches, None)
            rows[item] = row
        else:
            rows[item] = row
            if self._update_cbs._callbacks:
                deliver(self._lane, item, row)

    def _end_snapshot_of(self, item: int) -> None:
        if self._in_snapshot[item - 1]:
            self._in_snapshot[item - 1] = False
            self._snapshot_items -= 1
            if not self._snapshot_items:
                self._refresh_lane()

    def _new_lane(self, num_items: int, num_fields: int) -> Lane:
        return Lane(num_items, num_fields, self._rows, self._update_cbs._callbacks,
                    self._update_cbs.failed,
                    None if self.row_factory is tuple else self.row_factory)

    def _refresh_lane(self) -> None:
        """
        Let the hot path deliver this table's plain updates only when nothing else is
        due: no richer callbacks, no COMMAND logic, no DISTINCT snapshot in progress
        (in MERGE mode an item's snapshot is its first update, which the hot path leaves
        to `_update`).
        """
        self._lane.open = (
            self.mode != MODE_COMMAND
            and not self._item_update_cbs._callbacks
            and (self.mode == MODE_MERGE or not self._snapshot_items)
        )

    def _command_update(
        self, item: int, values: list[Value], patches: Mapping[int, Any] | None,
        in_snapshot: bool,
    ) -> None:
        kpos, cpos = self.key_position - 1, self.command_position - 1
        key = values[kpos]
        if key is None:
            raise ValueDecodeError(f"COMMAND update for item {item} has a null key")
        table = self._keys.setdefault(item, {})
        known = table.get(key)
        command = values[cpos]
        changed: frozenset[int] | None = None
        width = len(values) + len(self.second_schema)
        if command == "DELETE":
            row_list: list[Value] = [None] * width
            row_list[kpos] = key
            row_list[cpos] = "DELETE"
            if known is not None:
                del table[key]
                changed = frozenset(i for i in range(width) if i != kpos)
            row = tuple(row_list)
            self._drop_child(item, key, unsubscribe=True)
        else:
            values = list(values)
            values[cpos] = "UPDATE" if known is not None else "ADD"
            if self.second_schema:
                values.extend(known[len(values):] if known is not None
                              else [None] * len(self.second_schema))
            row = tuple(values)
            table[key] = row
            if self.second_schema and known is None:
                self._add_child(item, key)
        self._deliver(item, row, known, in_snapshot, patches, changed)

    # -- two-level COMMAND -------------------------------------------------------------

    def _add_child(self, item: int, key: str) -> None:
        """Subscribe the key's own item (MERGE, second-level fields) for this key."""
        if not key or any(c.isspace() or c == "|" for c in key) or key.isdigit():
            self._second_error_cbs(key, SubscriptionError(
                14, f"key {key!r} is not a valid item name", "second-level"))
            return
        child = Table(
            self.client,
            data_adapter=self.second_level_adapter,
            mode=MODE_MERGE,
            item_ids=[key],
            schema=self.second_schema,
            snapshot=True,
            _parent=(self, item, key),
        )
        self._children[(item, key)] = child
        child.on_item_update(self._child_update)
        child.on_error(lambda error: self._second_error_cbs(key, error))
        child.on_overflow(lambda _pos, lost: self._overflow(item, lost, key))

    def _drop_child(self, item: int, key: str, unsubscribe: bool) -> None:
        child = self._children.pop((item, key), None)
        if child is None:
            return
        if unsubscribe and self.state == ACTIVE:
            child.delete()
        else:
            child.state = DELETING
            self.client._forget_table(child)

    def _drop_children(self, unsubscribe: bool) -> None:
        for item, key in list(self._children):
            self._drop_child(item, key, unsubscribe)

    def _child_update(self, update: ItemUpdate) -> None:
        assert update.table._parent is not None
        _, item, key = update.table._parent
        known = self._keys.get(item, {}).get(key)
        if known is None:
            return  # the key was deleted meanwhile
        first = len(known) - len(self.second_schema)
        values = list(known[:first]) + list(update.values)
        values[self.command_position - 1] = "UPDATE"
        row = tuple(values)
        self._keys[item][key] = row
        changed = frozenset(first + i for i in update._changed_indexes())
        self._deliver(item, row, known, update.is_snapshot, None, changed)

    def _deliver(
        self, item: int, row: Row, previous: Row | None, is_snapshot: bool,
        patches: Mapping[int, Any] | None, changed: frozenset[int] | None,
    ) -> None:
        if self._update_cbs._callbacks:
            deliver(self._lane, item, row)
        if self._item_update_cbs._callbacks:
            self._item_update_cbs(
                ItemUpdate(self, item, row, previous, is_snapshot, patches, changed)
            )

    def _end_of_snapshot(self, item: int) -> None:
        if 1 <= item <= len(self._in_snapshot):
            self._end_snapshot_of(item)
        self._eos_cbs(item)

    def _clear_snapshot(self, item: int) -> None:
        if self.mode == MODE_COMMAND:
            self._keys[item] = {}
            for child_item, key in list(self._children):
                if child_item == item:
                    self._drop_child(item, key, unsubscribe=True)
        else:
            self._rows.pop(item, None)
        self._cs_cbs(item)

    def _overflow(self, item: int, lost: int, key: str | None = None) -> None:
        log.warn(
            "Server dropped {lost} update(s) for item {item}{key} of {table!r}",
            lost=lost, item=item, table=self, key=f" key {key!r}" if key else "",
        )
        self._overflow_cbs(item, lost)

    def _unsubscribed(self) -> None:
        """The server ended the subscription, or the session ended."""
        self._drop_children(unsubscribe=self.state == DELETING)
        # on_unsubscribed pairs with on_subscribed: it fires once per confirmed subscription.
        was_live, self._live = self._live, False
        if self.state == DELETING:
            self.state = DELETED
            self.sub_id = None
            waiters, self._delete_waiters = self._delete_waiters, []
            if was_live:
                self._unsubscribed_cbs()
            self._deleted_cbs()
            for d in waiters:
                d.callback(None)
            return
        if self.state in (ACTIVE, SUBSCRIBING):
            self.state = PENDING
            self.sub_id = None
        if was_live:
            self._unsubscribed_cbs()

    def _fail(self, error: LightstreamerError) -> None:
        self._live = False
        self.state = FAILED
        self.sub_id = None
        self._deleted_cbs()
        self._error_cbs(error)
        if not self._error_cbs:
            log.error("Subscription {table!r} failed: {error}", table=self, error=error)
        waiters, self._subscribed_waiters = self._subscribed_waiters, []
        for d in waiters:
            d.errback(error)
        deleters, self._delete_waiters = self._delete_waiters, []
        for dd in deleters:
            dd.callback(None)


class UpdateQueue:
    """
    A bounded queue of one table's updates, consumed with ``async for``.

    Works in Deferred-based coroutines and, under Twisted's asyncio reactor, in asyncio
    tasks. A consumer slower than the feed never makes memory grow: past ``max_queue``
    the oldest updates are dropped and counted.
    """

    def __init__(self, table: Table, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.table = table
        self.max_queue = max_queue
        self.dropped = 0
        self._queue: deque[ItemUpdate] = deque()
        self._waiter: Deferred[ItemUpdate] | None = None
        self._closed = False
        table.on_item_update(self._put)
        table._deleted_cbs.add(self.close)

    def _put(self, update: ItemUpdate) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(update)
            return
        if len(self._queue) >= self.max_queue:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warn("Slow consumer of {table!r}: {n} update(s) dropped so far",
                         table=self.table, n=self.dropped)
        self._queue.append(update)

    def close(self) -> None:
        """Stop iterating (pending updates are still delivered first)."""
        if self._closed:
            return
        self._closed = True
        self.table._item_update_cbs.remove(self._put)
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.errback(StopAsyncIteration())

    def __aiter__(self) -> UpdateQueue:
        return self

    def __anext__(self) -> Any:
        d: Deferred[ItemUpdate]
        if self._queue:
            d = succeed(self._queue.popleft())
        elif self._closed:
            d = fail(StopAsyncIteration())
        else:
            d = self._waiter = Deferred()
        return _awaitable(d)


def _awaitable(d: Deferred[Any]) -> Any:
    """The Deferred itself, or an asyncio future of it inside an asyncio task."""
    try:
        import asyncio

        loop = asyncio.get_running_loop()
        if asyncio.current_task(loop) is not None:
            return d.asFuture(loop)
    except RuntimeError:
        pass
    return d
