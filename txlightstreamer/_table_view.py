"""
What a `Table` holds now, read-only: the current row of each item (``table[item]``,
`TableView.rows`) and the key table of each COMMAND item (`TableView.command_rows`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from txlightstreamer._command import CommandKeys
from txlightstreamer._item_update import Row, RowView
from txlightstreamer.states import TableState

__all__ = ["RowsView", "TableView"]


class RowsView(Mapping[int, Row]):
    """
    A live, read-only mapping item position -> row over a table's rows, which are kept
    in a list by ``position - 1`` (None: no row yet); iterated in position order.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Row | None]) -> None:
        self._rows = rows

    def __getitem__(self, position: int) -> Row:
        rows = self._rows
        if type(position) is int and 1 <= position <= len(rows):
            row = rows[position - 1]
            if row is not None:
                return row
        raise KeyError(position)

    def __iter__(self) -> Iterator[int]:
        return (k + 1 for k, row in enumerate(self._rows) if row is not None)

    def __len__(self) -> int:
        return len(self._rows) - self._rows.count(None)

    def __repr__(self) -> str:
        return f"RowsView({dict(self)!r})"


class TableView:
    """The read side of a `Table` (one of its bases)."""

    mode: str
    state: TableState
    item_names: tuple[str, ...] | None
    field_names: tuple[str, ...] | None
    num_items: int
    _rows: list[Row | None]
    _command: CommandKeys[Any] | None

    def __getitem__(self, item: str | int) -> RowView:
        """
        The current row of ``item`` (its name, or 1-based position) as a read-only mapping
        field name (or 1-based position) -> value: the MERGE state, the last update in
        DISTINCT and RAW mode. KeyError for an unknown item or one without data yet;
        a COMMAND item has one row per key (`command_rows`).
        """
        if self._command is not None:
            raise TypeError("a COMMAND item has one row per key: use table.command_rows(item)")
        row = self.rows.get(self._position(item))
        if row is None:
            raise KeyError(item)
        return RowView(self.field_names, row)

    def _position(self, item: str | int) -> int:
        if isinstance(item, int) and not isinstance(item, bool):
            if 1 <= item <= self.num_items:
                return item
        elif self.item_names is not None and item in self.item_names:
            return self.item_names.index(item) + 1
        raise KeyError(item)

    @property
    def rows(self) -> Mapping[int, Row]:
        """
        Current row per item position (MERGE state; last update in DISTINCT/RAW): a
        live, read-only mapping, iterated in position order.
        """
        return RowsView(self._rows)

    def command_rows(self, item_pos: int | str) -> Mapping[str, Row]:
        """The current key table of one COMMAND item (by position or name; read-only),
        key -> row."""
        if self._command is None:
            return MappingProxyType({})
        if isinstance(item_pos, str):  # a name, as table[item] takes it (KeyError if none)
            item_pos = self._position(item_pos)
        return self._command.rows(item_pos)

    @property
    def is_active(self) -> bool:
        """Whether the server has confirmed the subscription and it is not deleted."""
        return self.state == TableState.ACTIVE
