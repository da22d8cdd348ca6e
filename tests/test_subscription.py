"""
Per-mode item state of `Table`, fed notifications directly (tlcp.md §5.4, §5.5, §6.2).
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed

from txlightstreamer import (
    MODE_COMMAND,
    MODE_DISTINCT,
    MODE_MERGE,
    MODE_RAW,
    ItemUpdate,
    SubscriptionError,
    Table,
    ValueDecodeError,
)
from txlightstreamer._subscription import TableLink, TableOwner
from txlightstreamer.states import TableState


class StubOwner:
    """A `TableOwner` that subscribes nothing and notes what tables ask of it."""

    def __init__(self) -> None:
        self.abandoned: list[int] = []
        self.links: list[TableLink] = []

    def attach(self, link: TableLink) -> None:
        self.links.append(link)

    def ready(self, link: TableLink) -> None:
        pass

    def delete(self, link: TableLink, previous: TableState) -> None:
        link.finished()

    def reconf(self, link: TableLink, max_frequency: float | str) -> Deferred[None]:
        return succeed(None)

    def abandon(self, sub_id: int) -> None:
        self.abandoned.append(sub_id)

    def forget(self, link: TableLink) -> None:
        pass


class StubClient:
    """Just enough of LsClient (a `TableHost`) for a Table to attach to."""

    def __init__(self) -> None:
        self.owner = StubOwner()

    @property
    def table_owner(self) -> TableOwner:
        return self.owner


def make_table(**kwargs: Any) -> tuple[Table, list[ItemUpdate], list[tuple[int, Any]]]:
    table = Table(StubClient(), **kwargs)
    updates: list[ItemUpdate] = []
    rows: list[tuple[int, Any]] = []
    table.on_item_update(updates.append)
    table.on_update(lambda item, row: rows.append((item, row)))
    table._begin(1)
    return table, updates, rows


def test_raw_changed_fields_follow_the_official_examples() -> None:
    table, updates, _ = make_table(mode=MODE_RAW, item_ids=["i"], schema="f1 f2 f3 f4")
    table._subok(1, 4)
    table._update(1, "#|#|$|z")
    assert updates[0].values == (None, None, "", "z")
    assert set(updates[0].changed_fields) == {"f1", "f2", "f3", "f4"}
    table._update(1, "|n|#|#")
    assert updates[1].values == (None, "n", None, None)
    assert set(updates[1].changed_fields) == {"f2", "f3", "f4"}
    assert not updates[1].is_changed("f1")


def test_merge_snapshot_flag_is_first_update_only() -> None:
    table, updates, rows = make_table(mode=MODE_MERGE, item_ids="a b", schema="x",
                                      snapshot=True)
    table._subok(2, 1)
    table._update(1, "1")
    table._update(1, "2")
    table._update(2, "3")
    assert [u.is_snapshot for u in updates] == [True, False, True]
    assert rows == [(1, ("1",)), (1, ("2",)), (2, ("3",))]
    assert dict(table.rows) == {1: ("2",), 2: ("3",)}


def test_rows_is_a_live_read_only_mapping_by_position() -> None:
    table, _, _ = make_table(mode=MODE_MERGE, item_ids="a b c", schema="x y")
    rows = table.rows
    assert dict(rows) == {} and len(rows) == 0 and 1 not in rows
    table._subok(3, 2)
    table._update(3, "c|3")
    table._update(1, "a|1")
    # Live, and in position order whatever order the items arrived in.
    assert list(rows) == [1, 3] and len(rows) == 2
    assert rows[3] == ("c", "3") and rows.get(2) is None and 2 not in rows
    assert table["a"] == {"x": "a", "y": "1"} and table[3]["y"] == "3"
    for missing in (0, 2, 4, -1, "1", True):
        with pytest.raises(KeyError):
            rows[missing]  # type: ignore[index]
    with pytest.raises(KeyError):
        table["b"]
    with pytest.raises(TypeError):
        rows[1] = ("z", "z")  # type: ignore[index]
    assert repr(rows) == "RowsView({1: ('a', '1'), 3: ('c', '3')})"
    # A new subscription (a reconnection) starts new baselines; the rows stay until the
    # new snapshot replaces them, as before.
    table._subok(3, 2)
    assert dict(rows) == {1: ("a", "1"), 3: ("c", "3")}
    table._update(1, "b|2")
    assert rows[1] == ("b", "2")


def test_distinct_snapshot_until_eos_and_clear_snapshot() -> None:
    table, updates, _ = make_table(mode=MODE_DISTINCT, item_ids="a", schema="x", snapshot=5)
    cleared: list[int] = []
    table.on_clear_snapshot(cleared.append)
    table._subok(1, 1)
    table._update(1, "s1")
    table._update(1, "s2")
    table._end_of_snapshot(1)
    table._update(1, "live")
    assert [u.is_snapshot for u in updates] == [True, True, False]
    table._clear_snapshot(1)
    assert cleared == [1]
    assert 1 not in table.rows


def test_command_key_semantics() -> None:
    # tlcp.md §6.2 example: fields f1, f2, key, command.
    table, updates, _ = make_table(mode=MODE_COMMAND, item_ids="i",
                                   schema="f1 f2 key command")
    table._subok(1, 4, 3, 4)
    table._update(1, "a|b|k1|ADD")
    table._update(1, "c|d|k2|")
    table._update(1, "x||k1|DELETE")
    table._update(1, "c|D|k2|UPDATE")
    assert [(u.key, u.command) for u in updates] == [
        ("k1", "ADD"), ("k2", "ADD"), ("k1", "DELETE"), ("k2", "UPDATE")]
    assert updates[1].values == ("c", "d", "k2", "ADD")
    assert updates[2].values == (None, None, "k1", "DELETE")
    assert set(updates[2].changed_fields) == {"f1", "f2", "command"}
    assert updates[3].changed_fields == {"f2": "D", "command": "UPDATE"}
    assert dict(table.command_rows(1)) == {"k2": ("c", "D", "k2", "UPDATE")}


def test_command_forces_add_and_update() -> None:
    table, updates, _ = make_table(mode=MODE_COMMAND, item_ids="i", schema="key command v")
    table._subok(1, 3, 1, 2)
    table._update(1, "k|UPDATE|1")  # unknown key: delivered as ADD
    table._update(1, "k|ADD|2")  # known key: delivered as UPDATE
    table._update(1, "z|DELETE|#")  # early delete: nothing stored
    assert [u.command for u in updates] == ["ADD", "UPDATE", "DELETE"]
    assert set(updates[2].changed_fields) == {"key", "command", "v"}
    assert list(table.command_rows(1)) == ["k"]


def test_command_clear_snapshot_forgets_keys() -> None:
    table, updates, _ = make_table(mode=MODE_COMMAND, item_ids="i", schema="key command")
    table._subok(1, 2, 1, 2)
    table._update(1, "k|ADD")
    table._clear_snapshot(1)
    assert dict(table.command_rows(1)) == {}
    table._update(1, "k|ADD")
    assert updates[-1].command == "ADD"


def test_subok_count_mismatch_fails_the_table() -> None:
    table, _, _ = make_table(mode=MODE_MERGE, item_ids="a b", schema="x y")
    errors: list[Exception] = []
    table.on_error(errors.append)
    table._subok(3, 2)
    assert isinstance(errors[0], SubscriptionError)
    assert errors[0].code == 61
    assert "Expected 2 items but got 3" in errors[0].message
    assert table.client.owner.abandoned == [1]  # type: ignore[attr-defined]


def test_group_and_schema_names_take_server_counts() -> None:
    table, updates, _ = make_table(mode=MODE_MERGE, item_ids="nasdaq_top", schema="quote")
    table._subok(3, 2)
    table._update(3, "a|b")
    assert updates[0].item_name is None
    assert updates[0].as_dict() == {1: "a", 2: "b"}
    assert updates[0][2] == "b"


def test_update_for_out_of_range_item_is_an_error() -> None:
    table, _, _ = make_table(mode=MODE_MERGE, item_ids="a", schema="x")
    table._subok(1, 1)
    with pytest.raises(ValueDecodeError):
        table._update(2, "v")


def test_callback_exception_does_not_break_delivery() -> None:
    table, updates, _ = make_table(mode=MODE_RAW, item_ids="a", schema="x")

    def boom(item: int, row: Any) -> None:
        raise RuntimeError("user bug")

    table.on_update(boom)
    table._subok(1, 1)
    table._update(1, "1")
    table._update(1, "2")
    assert [u["x"] for u in updates] == ["1", "2"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "FOO", "item_ids": "a", "schema": "x"}, "unknown mode"),
        ({"item_ids": "", "schema": "x"}, "item_ids"),
        ({"item_ids": "a", "schema": []}, "schema"),
        ({"item_ids": ["a b"], "schema": "x"}, "spaces"),
        ({"mode": MODE_RAW, "item_ids": "a", "schema": "x", "snapshot": True}, "RAW"),
        ({"mode": MODE_MERGE, "item_ids": "a", "schema": "x", "snapshot": 3}, "DISTINCT"),
        ({"mode": MODE_COMMAND, "item_ids": "a", "schema": "x y"}, "key"),
        ({"mode": MODE_RAW, "item_ids": "a", "schema": "x", "buffer_size": 3}, "buffer_size"),
    ],
)
def test_misuse_fails_fast(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Table(StubClient(), **kwargs)


def test_two_level_command_children_go_through_the_owner() -> None:
    table, updates, _ = make_table(mode=MODE_COMMAND, item_ids="i", schema="key command",
                                   second_level_schema="price")
    owner: StubOwner = table.client.owner  # type: ignore[attr-defined]
    table._subok(1, 2, 1, 2)
    table._update(1, "k1|ADD")
    children = [link for link in owner.links if not link.top_level]
    assert [link.table.items for link in children] == [("k1",)]
    child = children[0]
    assert child.begin(2)["mode"] == MODE_MERGE
    assert child.subscribed(1, 1) is not None
    child.update(1, "10")
    assert updates[-1].values == ("k1", "UPDATE", "10")
    # ADD became UPDATE: the command is listed as changed (issue 15 #4, as the official clients)
    assert updates[-1].changed_fields == {"command": "UPDATE", "price": "10"}
    table._update(1, "k1|DELETE")
    assert child.table.state == "deleted"
    assert updates[-1].command == "DELETE"


def test_two_level_command_changed_lists_match_the_official_clients() -> None:
    # Issue 15 #4: an ADD lists key, command and the first-level fields only (not the
    # still-null second-level ones); the key's first second-level update lists the command
    # (ADD became UPDATE) and its second-level fields; later ones only what they change.
    table, updates, _ = make_table(mode=MODE_COMMAND, item_ids="i", schema="key command qty",
                                   second_level_schema="price volume")
    owner: StubOwner = table.client.owner  # type: ignore[attr-defined]
    table._subok(1, 3, 1, 2)
    table._update(1, "k1|ADD|5")
    assert updates[-1].values == ("k1", "ADD", "5", None, None)
    assert sorted(updates[-1].changed_fields) == ["command", "key", "qty"]
    child = next(link for link in owner.links if not link.top_level)
    child.begin(2)
    child.subscribed(1, 2)
    child.update(1, "10|20")
    assert updates[-1].values == ("k1", "UPDATE", "5", "10", "20")
    assert sorted(updates[-1].changed_fields) == ["command", "price", "volume"]
    child.update(1, "11|")
    assert updates[-1].changed_fields == {"price": "11"}
    table._update(1, "k1|UPDATE|6")
    assert updates[-1].changed_fields == {"qty": "6"}
    # A key re-added after its DELETE starts over.
    table._update(1, "k1|DELETE|")
    table._update(1, "k1|ADD|7")
    assert sorted(updates[-1].changed_fields) == ["command", "key", "qty"]
