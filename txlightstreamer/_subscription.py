"""
Tables (subscriptions): `Table`, its per-mode item state, and the `TableOwner` protocol
through which it asks to be subscribed.

A `Table` never touches a transport, nor the client: it is given an owner (the client's
subscription registry) that it calls through `TableOwner`, and the owner drives it back
through the table's `TableLink`, handing it the notifications of its subscription id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from txlightstreamer._command import CommandKeys
from txlightstreamer._item_update import ItemUpdate, Row, Value, changed_indexes
from txlightstreamer._table_events import TableEvents
from txlightstreamer._table_options import (
    MODE_COMMAND,
    MODE_DISTINCT,
    MODE_MERGE,
    MODE_RAW,
    MODES,
    check_options,
    split_names,
)
from txlightstreamer._table_view import TableView
from txlightstreamer._update_queue import UpdateQueue
from txlightstreamer.errors import (
    ClientStateError,
    LightstreamerError,
    SubscriptionError,
    ValueDecodeError,
)
from txlightstreamer.protocol import check_limit, decode_update
from txlightstreamer.protocol._hotpath import Lane, deliver
from txlightstreamer.states import TableState

__all__ = [
    "MODE_COMMAND",
    "MODE_DISTINCT",
    "MODE_MERGE",
    "MODE_RAW",
    "ItemUpdate",
    "Table",
    "TableHost",
    "TableLink",
    "TableOwner",
    "UpdateQueue",
]

# Largest item or field count a SUBOK may announce (guards memory against a bad server).
MAX_TABLE_SIZE: Final = 100_000

# Life cycle of a table (the seed API's names for the `TableState` members).
PENDING: Final = TableState.PENDING
SUBSCRIBING: Final = TableState.SUBSCRIBING
ACTIVE: Final = TableState.ACTIVE
DELETING: Final = TableState.DELETING
DELETED: Final = TableState.DELETED
FAILED: Final = TableState.FAILED

log = Logger()

class TableOwner(Protocol):
    """
    What a `Table` asks of whoever subscribes it (an `LsClient`'s subscription registry).
    Each table hands its `TableLink`; the owner drives the table only through that link.
    """

    def attach(self, link: TableLink) -> None:
        """A new table: keep it, and subscribe it unless silent (ClientStateError if closed)."""

    def ready(self, link: TableLink) -> None:
        """A silent table was started: subscribe it as soon as a session allows."""

    def delete(self, link: TableLink, previous: TableState) -> None:
        """Unsubscribe a table that was in state ``previous`` (it is DELETING now)."""

    def reconf(self, link: TableLink, max_frequency: float | str) -> Deferred[None]:
        """Ask the server for a new maximum frequency of a subscribed table."""

    def abandon(self, sub_id: int) -> None:
        """Forget a subscription id and drop it on the server (errors do not matter)."""

    def forget(self, link: TableLink) -> None:
        """Drop a second-level table locally: its parent's subscription is gone."""


class TableHost(Protocol):
    """What `Table` takes as its first argument: an `LsClient` (or a test's stand-in)."""

    @property
    def table_owner(self) -> TableOwner:
        """The owner this host's tables attach to."""


class TableLink:
    """
    The owner's handle on one table: everything the subscription registry does to a table
    goes through here (never through the table's private parts, never by the application).
    """

    __slots__ = ("table", "update")

    def __init__(self, table: Table) -> None:
        self.table = table
        #: Deliver one ``U`` line the hot path left (``update(item, raw_values)``).
        self.update: Callable[[int, str], None] = table._update

    @property
    def top_level(self) -> bool:
        """False for a key's second-level table, which its parent re-creates."""
        return self.table._top_level

    def begin(self, sub_id: int) -> dict[str, Any]:
        """A fresh subscription (new id) is sent: the ``add_subscription`` arguments."""
        table = self.table
        table._begin(sub_id)
        return {
            "mode": table.mode,
            "group": " ".join(table.items),
            "schema": " ".join(table.schema),
            "data_adapter": table.data_adapter,
            "selector": table.selector,
            "buffer_size": table.buffer_size,
            "max_frequency": table.max_frequency,
            "snapshot": None if table.mode == MODE_RAW else table.snapshot,
        }

    def subscribed(
        self, num_items: int, num_fields: int, key_pos: int = 0, command_pos: int = 0
    ) -> Lane | None:
        """``SUBOK``/``SUBCMD``: the hot path's lane once active (None if it failed)."""
        table = self.table
        table._subok(num_items, num_fields, key_pos, command_pos)
        return table._lane if table.state == ACTIVE else None

    def end_of_snapshot(self, item: int) -> None:
        self.table._end_of_snapshot(item)

    def clear_snapshot(self, item: int) -> None:
        self.table._clear_snapshot(item)

    def overflow(self, item: int, lost: int) -> None:
        self.table._overflow(item, lost)

    def config(self, max_frequency: str, filtered: bool) -> None:
        self.table._conf(max_frequency, filtered)

    def unsubscribed(self, session_gone: bool = False) -> None:
        """``UNSUB``, or (``session_gone``) the subscription ended with its session."""
        self.table._unsubscribed(session_gone)

    def failed(self, error: LightstreamerError) -> None:
        """The server refused the subscription."""
        self.table._fail(error)

    def broken(self, error: LightstreamerError) -> None:
        """Undecodable data: tell the table's error callbacks."""
        self.table._error_cbs(error)

    def reset(self) -> None:
        """Back to PENDING (firing ``on_unsubscribed``), to be subscribed afresh."""
        self.table.state = ACTIVE
        self.table._unsubscribed()

    def frequency_refused(self, asked: float | str | None, in_force: float | str | None) -> None:
        """The server refused ``asked``: the next subscription asks for what is in force."""
        if self.table.max_frequency == asked:
            self.table.max_frequency = in_force

    def finished(self, session_gone: bool = False) -> None:
        """Deleted for good (the client is closing, or the delete needs no request)."""
        self.table.state = DELETING
        self.table._unsubscribed(session_gone)


class Table(TableEvents, TableView):
    """
    A subscription to a set of items and fields in one mode.

    :param client: the `LsClient` to subscribe through.
    :param data_adapter: the Data Adapter of the items (None: the adapter set's default).
    :param mode: ``MERGE`` (default), ``DISTINCT``, ``RAW`` or ``COMMAND``.
    :param item_ids: item names (a list, or one space-separated string), or a group name.
    :param schema: field names (a list, or one space-separated string), or a schema name.
    :param row_factory: builds the ``row`` given to `on_update` callbacks from the list
        of values (a tuple by default).
    :param selector: a selector name of the Metadata Adapter.
    :param buffer_size: updates the server may buffer per item (MERGE, DISTINCT), or
        ``"unlimited"``.
    :param max_frequency: updates/s per item, ``"unlimited"``, or ``"unfiltered"``.
    :param snapshot: ask for the items' current state first (DISTINCT: True or a length).
    :param silent: create without subscribing; `start` subscribes.
    :param second_level_schema: two-level COMMAND: the fields of each key's own item.
    :param second_level_adapter: the Data Adapter of those items.

    Callbacks run in the reactor thread. Created before the session exists, the table
    is subscribed as soon as the session is; after a session is replaced it is
    subscribed again (its snapshot is delivered again). Every ``on_*`` method returns
    its callback (so it works as a decorator); `remove_callback` unregisters it.
    ``table[item]`` is an item's current row; ``state`` is a `TableState`.
    """

    # A key's second-level table (see `_KeyTable`) belongs to its parent, not the owner.
    _top_level: ClassVar[bool] = True

    def __init__(
        self,
        client: TableHost,
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
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
        self.mode = mode
        #: The item names (or the group name) as given.
        self.items = split_names(item_ids, "item_ids")
        #: The field names (or the schema name) as given.
        self.schema = split_names(schema, "schema")
        check_options(mode, self.schema, snapshot, buffer_size, max_frequency,
                       data_adapter, selector)
        self.second_schema: tuple[str, ...] = ()
        if second_level_schema is not None:
            if mode != MODE_COMMAND:
                raise ValueError("second-level fields are only for COMMAND mode")
            self.second_schema = split_names(second_level_schema, "second_level_schema")
            clash = set(self.second_schema) & set(self.schema)
            if clash:
                raise ValueError(f"second-level fields repeat first-level ones: {sorted(clash)}")
        self.second_level_adapter = second_level_adapter
        self.data_adapter = data_adapter
        self.selector = selector
        self.buffer_size = buffer_size
        self.max_frequency = max_frequency
        self.snapshot = snapshot
        self.silent = silent
        self._row_factory: Callable[[list[Value]], Any] = row_factory or tuple

        self.client = client
        self.state: TableState = PENDING
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

        # The row delivered last by item - 1 (None: none yet): a list, not a dict, since
        # at 100,000 items in 1,000 tables the dicts took 3.6 MB more.
        self._rows: list[Row | None] = []
        self._command: CommandKeys[Table] | None = None
        if mode == MODE_COMMAND:
            self._command = CommandKeys(len(self.second_schema), self._spawn_child,
                                        self._dispose_child, self._deliver)
        self._in_snapshot: list[bool] = []
        self._snapshot_items = 0  # items still in their snapshot

        super().__init__(self._refresh_lane)
        self._subscribed_waiters: list[Deferred[Table]] = []
        self._never: LightstreamerError | None = None  # why it never will be (deleted, refused)
        self._delete_waiters: list[Deferred[None]] = []
        # Decoded rows per item, and what the hot path needs to deliver without us.
        self._lane = self._new_lane(0, 0)

        self._link = TableLink(self)
        self._owner = client.table_owner
        self._owner.attach(self._link)

    @property
    def row_factory(self) -> Callable[[list[Value]], Any]:
        """Builds the ``row`` given to ``on_update`` callbacks from the list of values."""
        return self._row_factory

    @row_factory.setter
    def row_factory(self, factory: Callable[[list[Value]], Any] | None) -> None:
        self._row_factory = factory or tuple
        self._lane.row_factory = None if self._row_factory is tuple else self._row_factory

    def when_subscribed(self) -> Deferred[Table]:
        """Fires with this table once the server confirms it (SUBOK), before any data;
        fails if the table is deleted (or its client destroyed) or refused first."""
        if self.state == ACTIVE:
            return succeed(self)
        if self._never is not None:
            return fail(self._never)
        d: Deferred[Table] = Deferred()
        self._subscribed_waiters.append(d)
        return d

    def start(self) -> None:
        """Subscribe a table created with ``silent=True``."""
        if self.state in (DELETED, DELETING):
            raise ClientStateError("this table was deleted")
        if self.silent:
            self.silent = False
            self._owner.ready(self._link)

    def delete(self) -> Deferred[None]:
        """Unsubscribe; fires once no more updates can arrive (at once if the session is away)."""
        if self.state == DELETED:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._delete_waiters.append(d)
        if self.state != DELETING:
            previous = self.state
            self.state = DELETING
            self._owner.delete(self._link, previous)
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
        for child in self._command.children() if self._command is not None else ():
            child.set_max_frequency(max_frequency).addErrback(  # the keys' follow (SDK)
                lambda f: log.warn("A key's frequency was not changed: {e}", e=f.value))
        return self._owner.reconf(self._link, self.max_frequency)

    def updates(self, max_queue: int = 1000) -> UpdateQueue:
        """
        The updates of this table as an async iterator (``async for update in ...``).

        At most ``max_queue`` updates wait for a slow consumer; past that the oldest are
        dropped and counted in ``dropped`` (and logged). Iteration ends when the table is
        deleted. A loop that may end first: ``async with table.updates() as updates:``.
        """
        queue = UpdateQueue(self, max_queue)
        if self.state in (DELETED, FAILED):
            queue.close()  # its end already came
        else:
            self._deleted_cbs.add(queue.close)
        return queue

    def __repr__(self) -> str:
        return (
            f"<Table {self.mode} items={' '.join(self.items)!r} "
            f"schema={' '.join(self.schema)!r} state={self.state} sub_id={self.sub_id}>"
        )

    # -- driven by the owner, through the TableLink -------------------------------------

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
        problems = _name_fields(self, num_items, num_fields, key_pos, command_pos)
        if problems:
            if self.sub_id is not None:
                self._owner.abandon(self.sub_id)
            self._fail(SubscriptionError(61, "; ".join(problems), "SUBOK"))
            return
        self.key_position = key_pos
        self.command_position = command_pos
        self.num_fields = num_fields
        if self.second_schema and self.field_names is not None:
            self.field_names = self.field_names + self.second_schema
        self._lane = self._new_lane(num_items, num_fields)
        snap = bool(self.snapshot) and self.mode != MODE_RAW
        # Only while some item is in its snapshot (an empty list means none is).
        self._in_snapshot = [True] * num_items if snap else []
        self._snapshot_items = num_items if snap else 0
        if self._snapshot_items and self.mode == MODE_MERGE:
            # The hot path decodes first updates too: it ends each item's snapshot here.
            self._lane.first_update = self._end_snapshot_of
        if self._command is not None:
            self._command.reset(num_items, key_pos, command_pos)
        self.state = DELETING if self.state == DELETING else ACTIVE  # deleted before SUBOK
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
        the hot path leaves (bad or unusual lines, richer callbacks, COMMAND).
        """
        baselines = self._lane.baselines
        if not 0 < item <= len(baselines):
            raise ValueDecodeError(
                f"item index {item} out of range for subscription {self.sub_id} "
                f"({len(baselines)} items)"
            )
        before = baselines[item - 1]
        values, patches = decode_update(raw, before, self.num_fields)
        # The delivered row is also the item's baseline: one object per item.
        row = tuple(values)
        baselines[item - 1] = row
        in_snapshot = False
        if self._snapshot_items:
            in_snapshot = self._in_snapshot[item - 1]
            if in_snapshot and self.mode == MODE_MERGE:
                self._end_snapshot_of(item)  # a MERGE snapshot is exactly one update
        if self._command is not None:
            self._command.update(item, row, patches, in_snapshot)
            return
        self._rows[item - 1] = row  # the table holds the row its callbacks are given
        if self._item_update_cbs._callbacks:
            # Changed against the item's last values, kept across a CS; a subscription's
            # first update changes every field (tlcp.md §5.1, §5.5).
            self._deliver(item, row, tuple(before) if before is not None else None,
                          in_snapshot, patches, None)
        elif self._update_cbs._callbacks:
            deliver(self._lane, item, row)

    def _end_snapshot_of(self, item: int) -> None:
        if self._in_snapshot[item - 1]:
            self._in_snapshot[item - 1] = False
            self._snapshot_items -= 1
            if not self._snapshot_items:
                self._in_snapshot = []  # all False: not worth a list per table
                self._lane.first_update = None
                self._refresh_lane()

    def _new_lane(self, num_items: int, num_fields: int) -> Lane:
        if len(self._rows) < num_items:
            self._rows.extend([None] * (num_items - len(self._rows)))
        return Lane(num_items, num_fields, self._rows, self._update_cbs._callbacks,
                    self._update_cbs.failed,
                    None if self.row_factory is tuple else self.row_factory)

    def _refresh_lane(self) -> None:
        """
        Let the hot path deliver this table's plain updates only when nothing else is
        due: no richer callbacks, no COMMAND logic, no DISTINCT snapshot in progress
        (in MERGE mode an item's snapshot is its first update, which the lane's
        ``first_update`` ends).
        """
        self._lane.open = (
            self.mode != MODE_COMMAND
            and not self._item_update_cbs._callbacks
            and (self.mode == MODE_MERGE or not self._snapshot_items)
        )

    # -- two-level COMMAND: one second-level table per key ------------------------------

    def _spawn_child(self, item: int, key: str) -> Table | None:
        return _KeyTable.spawn(self, item, key)

    def _dispose_child(self, child: Table, unsubscribe: bool) -> None:
        if unsubscribe and self.state in (ACTIVE, DELETING):
            child.delete()
        else:
            child.state = DELETING
            self._owner.forget(child._link)
            child.sub_id = None

    def _deliver(
        self, item: int, row: Row, previous: Row | None, is_snapshot: bool,
        patches: Mapping[int, Any] | None, changed: frozenset[int] | None,
    ) -> None:
        if self._update_cbs._callbacks:
            deliver(self._lane, item, row)
        if self._item_update_cbs._callbacks and self._lane.live:
            self._item_update_cbs(
                ItemUpdate(self, item, row, previous, is_snapshot, patches, changed)
            )

    def _end_of_snapshot(self, item: int) -> None:
        if 1 <= item <= len(self._in_snapshot):
            self._end_snapshot_of(item)
        self._eos_cbs(item)

    def _clear_snapshot(self, item: int) -> None:
        if self._command is not None:
            self._command.clear(item)
        elif 1 <= item <= len(self._rows):
            self._rows[item - 1] = None
        self._cs_cbs(item)

    def _overflow(self, item: int, lost: int, key: str | None = None) -> None:
        log.warn(
            "Server dropped {lost} update(s) for item {item}{key} of {table!r}",
            lost=lost, item=item, table=self, key=f" key {key!r}" if key else "",
        )
        if key:
            self._second_overflow_cbs(key, lost)
        else:
            self._overflow_cbs(item, lost)

    def _unsubscribed(self, session_gone: bool = False) -> None:
        """The server ended the subscription, or (``session_gone``) the session ended."""
        if self._command is not None:  # keys' subscriptions outlive the parent's on the server
            self._command.drop_children(unsubscribe=not session_gone)
        # on_unsubscribed pairs with on_subscribed: it fires once per confirmed subscription.
        was_live, self._live = self._live, False
        if self.state == DELETING:
            self.state = DELETED
            self.sub_id = None
            waiters, self._delete_waiters = self._delete_waiters, []
            if was_live:
                self._unsubscribed_cbs()
            self._end(ClientStateError("the table was deleted"))
            self._deleted_cbs()
            for d in waiters:
                d.callback(None)
            return
        if self.state in (ACTIVE, SUBSCRIBING):
            self.state = PENDING
            self.sub_id = None
        if was_live:
            self._unsubscribed_cbs()

    def _end(self, error: LightstreamerError) -> None:
        """Deleted or refused: never subscribed now, and no update reaches a callback any
        more, not even the rest of an event under way."""
        self._never = error
        self._lane.live = False
        self._item_update_cbs.stop()
        waiters, self._subscribed_waiters = self._subscribed_waiters, []
        for d in waiters:
            d.errback(error)

    def _fail(self, error: LightstreamerError) -> None:
        self._live = False
        self.state = FAILED
        self.sub_id = None
        self._deleted_cbs()
        self._error_cbs(error)
        if not self._error_cbs:  # critical: what Twisted prints before logging begins
            log.critical("Subscription {table!r} failed: {error}", table=self, error=error)
        self._end(error)
        deleters, self._delete_waiters = self._delete_waiters, []
        for dd in deleters:
            dd.callback(None)


def _name_fields(table: Table, num_items: int, num_fields: int, key_pos: int,
                 command_pos: int) -> list[str]:
    """
    Check a ``SUBOK``'s (``SUBCMD``'s) counts against the table's items and fields, and
    name them: the names given, or None for a group or schema name the server expanded.
    The problems.
    """
    problems = []
    if table.mode == MODE_COMMAND and not (
            0 < key_pos <= num_fields and 0 < command_pos <= num_fields
            and key_pos != command_pos):
        problems.append(f"COMMAND subscription with key at {key_pos} and command at "
                        f"{command_pos} of {num_fields} fields")
    if num_items > MAX_TABLE_SIZE or num_fields > MAX_TABLE_SIZE:
        problems.append(f"{num_items} items x {num_fields} fields is more than this "
                        f"client accepts ({MAX_TABLE_SIZE} of each)")
    else:
        table.item_names = _names(table.items, num_items, "items", problems)
    table.field_names = _names(table.schema, num_fields, "fields", problems)
    return problems


def _names(given: tuple[str, ...], count: int, what: str,
           problems: list[str]) -> tuple[str, ...] | None:
    """
    The names ``given`` for ``count`` items or fields, or None for one group or schema
    name the server expanded; several names of another count are a problem.
    """
    if count == len(given):
        return given
    if len(given) > 1:
        problems.append(f"Expected {len(given)} {what} but got {count}")
    return None


class _KeyTable(Table):
    """The second-level table of one key of a two-level COMMAND table (MERGE, snapshot)."""

    _top_level = False

    def __init__(self, parent: Table, key: str) -> None:
        super().__init__(
            parent.client,
            data_adapter=parent.second_level_adapter,
            mode=MODE_MERGE,
            item_ids=[key],
            schema=parent.second_schema,
            snapshot=True,
            # As the SDK's second-level subscriptions: the parent's frequency.
            max_frequency=parent.max_frequency,
        )

    @classmethod
    def spawn(cls, parent: Table, item: int, key: str) -> Table | None:
        """Subscribe the key's own item (MERGE, second-level fields) for this key."""
        if not key or any(c.isspace() or c == "|" for c in key) or key.isdigit():
            parent._second_error_cbs(key, SubscriptionError(
                14, f"key {key!r} is not a valid item name", "second-level"))
            return None
        child = cls(parent, key)
        command = parent._command
        assert command is not None

        def merge(update: ItemUpdate) -> None:
            command.child_update(child, item, key, update.values, changed_indexes(update),
                                 update.is_snapshot)

        child.on_item_update(merge)
        child.on_error(lambda error: parent._second_error_cbs(key, error))
        child.on_overflow(lambda _pos, lost: parent._overflow(item, lost, key))
        return child
