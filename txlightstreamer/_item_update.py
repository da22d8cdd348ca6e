"""
`ItemUpdate`, the object `Table.on_item_update` callbacks get, and the row types.

It only reads a few names from its table (a `TableShape`), so this module needs nothing
from the `Table` module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

__all__ = ["ItemUpdate", "Row", "RowView", "TableShape", "Value", "changed_indexes"]

Value = str | None
Row = tuple[Value, ...]


class TableShape(Protocol):
    """What an `ItemUpdate` reads from its table (a `Table` provides it)."""

    @property
    def item_names(self) -> tuple[str, ...] | None: ...

    @property
    def field_names(self) -> tuple[str, ...] | None: ...

    @property
    def key_position(self) -> int: ...

    @property
    def command_position(self) -> int: ...


class ItemUpdate:
    """
    One update of one item (or of one key of a COMMAND item), as delivered to
    `Table.on_item_update` callbacks.

    Values are reachable by field name (``update["last_price"]``) or by 1-based position
    (``update[2]``); `changed_fields` lists only what this update changed.
    """

    # A dict: its values are the attributes' docs (the reference shows them).
    __slots__ = {
        "table": "The `Table` the update belongs to.",
        "item_pos": "The item's 1-based position in the table.",
        "values": "Every field's value after the update, as a tuple (None for null).",
        "is_snapshot": "Whether the update is part of the item's snapshot.",
        "_previous": None,
        "_changed_override": None,
        "_patches": None,
    }

    def __init__(
        self,
        table: TableShape,
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


def changed_indexes(update: ItemUpdate) -> frozenset[int]:
    """The 0-based positions ``update`` changed (a second-level update merges by them)."""
    return update._changed_indexes()


class RowView(Mapping[str | int, Value]):
    """
    One item's current row, read-only: values by field name or 1-based position (None
    means null). Iterates over the field names (positions when the table has none).
    """

    __slots__ = ("_names", "_values")

    def __init__(self, names: tuple[str, ...] | None, values: Row) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, field: str | int) -> Value:
        if isinstance(field, int) and not isinstance(field, bool):
            if not 1 <= field <= len(self._values):
                raise KeyError(field)
            return self._values[field - 1]
        if self._names is None or field not in self._names:
            raise KeyError(field)
        return self._values[self._names.index(field)]

    def __iter__(self) -> Iterator[str | int]:
        if self._names is None:
            return iter(range(1, len(self._values) + 1))
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"RowView({dict(self)!r})"
