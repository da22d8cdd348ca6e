"""
COMMAND mode: the key table of each item, and the second-level subscription of each key
(two-level COMMAND, tlcp.md §6.2). A `Table` in COMMAND mode owns one `CommandKeys`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

from txlightstreamer._item_update import Row, Value
from txlightstreamer.errors import ValueDecodeError

__all__ = ["CommandKeys"]

_C = TypeVar("_C")


class Deliver(Protocol):
    """How `CommandKeys` hands a merged row back to its table."""

    def __call__(
        self, item: int, row: Row, previous: Row | None, is_snapshot: bool,
        patches: Mapping[int, Any] | None, changed: frozenset[int] | None,
    ) -> None: ...


class CommandKeys(Generic[_C]):
    """
    The rows of a COMMAND table by item and key, with ADD/UPDATE/DELETE applied as the
    official clients apply them, and one child per key when there are second-level fields.

    ``spawn(item, key)`` makes a key's child (or None if the key cannot be one);
    ``dispose(child, unsubscribe)`` ends it.
    """

    def __init__(
        self,
        second_width: int,
        spawn: Callable[[int, str], _C | None],
        dispose: Callable[[_C, bool], None],
        deliver: Deliver,
    ) -> None:
        self.second_width = second_width
        self.keys: dict[int, dict[str, Row]] = {}
        self.key_position = 0
        self.command_position = 0
        self._spawn = spawn
        self._dispose = dispose
        self._deliver = deliver
        self._children: dict[tuple[int, str], _C] = {}

    def reset(self, num_items: int, key_position: int, command_position: int) -> None:
        """A new subscription confirmed (SUBCMD): empty key tables for every item."""
        self.key_position = key_position
        self.command_position = command_position
        self.keys = {i: {} for i in range(1, num_items + 1)}

    def rows(self, item: int) -> Mapping[str, Row]:
        return MappingProxyType(self.keys.get(item, {}))

    def update(
        self, item: int, values: Sequence[Value], patches: Mapping[int, Any] | None,
        in_snapshot: bool,
    ) -> None:
        """Apply one decoded update of ``item`` and deliver the key's new row."""
        kpos, cpos = self.key_position - 1, self.command_position - 1
        key = values[kpos]
        if key is None:
            raise ValueDecodeError(f"COMMAND update for item {item} has a null key")
        table = self.keys.setdefault(item, {})
        known = table.get(key)
        command = values[cpos]
        changed: frozenset[int] | None = None
        width = len(values) + self.second_width
        if command == "DELETE":
            row_list: list[Value] = [None] * width
            row_list[kpos] = key
            row_list[cpos] = "DELETE"
            if known is not None:
                del table[key]
                changed = frozenset(i for i in range(width) if i != kpos)
            row = tuple(row_list)
            self.drop_child(item, key, unsubscribe=True)
        else:
            values = list(values)
            values[cpos] = "UPDATE" if known is not None else "ADD"
            if self.second_width:
                values.extend(known[len(values):] if known is not None
                              else [None] * self.second_width)
            row = tuple(values)
            table[key] = row
            if self.second_width and known is None:
                # As the official clients: an ADD changes the first level only (the
                # second-level fields are still null until the key's own item answers).
                changed = frozenset(range(len(row) - self.second_width))
                self._add_child(item, key)
        self._deliver(item, row, known, in_snapshot, patches, changed)

    def clear(self, item: int) -> None:
        """``CS``: the item has no keys any more (nor their children)."""
        self.keys[item] = {}
        for child_item, key in list(self._children):
            if child_item == item:
                self.drop_child(item, key, unsubscribe=True)

    # -- second level ------------------------------------------------------------------

    def _add_child(self, item: int, key: str) -> None:
        child = self._spawn(item, key)
        if child is not None:
            self._children[(item, key)] = child

    def drop_child(self, item: int, key: str, unsubscribe: bool) -> None:
        child = self._children.pop((item, key), None)
        if child is not None:
            self._dispose(child, unsubscribe)

    def drop_children(self, unsubscribe: bool) -> None:
        for item, key in list(self._children):
            self.drop_child(item, key, unsubscribe)

    def children(self) -> list[_C]:
        """The keys' second-level tables."""
        return list(self._children.values())

    def child_update(
        self, child: _C, item: int, key: str, values: Row, changed: frozenset[int],
        is_snapshot: bool,
    ) -> None:
        """A key's second-level fields changed: merge them into the key's row."""
        if self._children.get((item, key)) is not child:
            return  # a deleted key's late update (tlcp.md §3.3), not its successor's
        known = self.keys.get(item, {}).get(key)
        if known is None:
            return  # the key was deleted meanwhile
        first = len(known) - self.second_width
        merged = list(known[:first]) + list(values)
        cpos = self.command_position - 1
        merged[cpos] = "UPDATE"
        row = tuple(merged)
        self.keys[item][key] = row
        # An ADD becomes an UPDATE: the official clients list the command as changed.
        moved = {first + i for i in changed}
        if known[cpos] != "UPDATE":
            moved.add(cpos)
        self._deliver(item, row, known, is_snapshot, None, frozenset(moved))
