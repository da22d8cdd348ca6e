"""
An item's first update on the hot path: the same row as the general decoder, or left to
it exactly when it reports an error (compiled and interpreted builds alike), and a MERGE
snapshot ended the same way.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_hotpath import Recipient, interpreted, router_with, subscribed
from txlightstreamer import MODE_DISTINCT, MODE_MERGE, MODE_RAW
from txlightstreamer.protocol import ValueDecodeError, _hotpath, decode_update
from txlightstreamer.protocol._hotpath import decode_first

MODULES = [_hotpath, interpreted]

FIRST_TOKENS = st.one_of(
    st.sampled_from(
        [
            "",
            "#",
            "$",
            "##",
            "$$",
            "#a",
            "a#",
            "%",
            "%4",
            "%zz",
            "%41",
            "%C3%BC",
            "%C3",
            "a%25b",
            "^",
            "^0",
            "^1",
            "^2",
            "^3",
            "^9999999999",
            "^x",
            "^Tabc",
            "^TbAc",
            "^P[]",
            "^P%5B%5D",
            "a^b",
            "ü",
            "€",
            "x",
            "1.5",
        ]
    ),
    st.text(alphabet="ab#$%^|,09TP", max_size=5),
)


def general(raw: str, num_fields: int) -> tuple[Any, ...] | None:
    """The general decoder's first row, or None where it reports an error."""
    try:
        return tuple(decode_update(raw, None, num_fields).values)
    except ValueDecodeError:
        return None


def fast(module: Any, line: bytes, num_fields: int) -> tuple[int, Any, Recipient]:
    r = Recipient()
    lane = r.lane(module=module, num_items=3, num_fields=num_fields)
    router = router_with(lane, module)
    return router.feed([line], 0), lane, r


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a|b|c", ("a", "b", "c")),
        ("#|$|c", (None, "", "c")),
        ("a%7Cb|%23|%24", ("a|b", "#", "$")),
        ("%C3%BC|€|a^b", ("ü", "€", "a^b")),
        ("#a|$$|%25", ("#a", "$$", "%")),
    ],
)
def test_a_first_update_is_decoded_on_the_hot_path(
    module: Any, raw: str, expected: tuple[Any, ...]
) -> None:
    taken, lane, r = fast(module, f"U,7,2,{raw}".encode(), 3)
    assert taken == 1
    assert general(raw, 3) == expected
    assert lane.baselines[1] == expected and r.rows[2] == expected
    assert r.calls == [(2, expected)]
    assert type(lane.baselines[1]) is tuple


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize(
    "raw",
    [
        "a||c",
        "|b|c",
        "a|b|",
        "^3",
        "a|^2",
        "^1|b|c",
        "^Tabc|b|c",
        "a|^P[]|c",
        "^0|a|b|c",
        "a|b",
        "a|b|c|d",
        "%zz|b|c",
        "%C3|b|c",
        "%|b|c",
        "a|%4|c",
        "^x|b|c",
        "^|b|c",
    ],
)
def test_a_first_update_the_general_path_refuses_is_left_to_it(module: Any, raw: str) -> None:
    assert general(raw, 3) is None  # a typed error there
    taken, lane, r = fast(module, f"U,7,2,{raw}".encode(), 3)
    assert taken == 0
    assert lane.baselines == [None, None, None] and r.rows == {} and r.calls == []


@settings(max_examples=400)
@given(st.lists(FIRST_TOKENS, min_size=1, max_size=4), st.integers(1, 4))
def test_first_updates_agree_with_the_general_decoder(tokens: list[str], num_fields: int) -> None:
    raw = "|".join(tokens)
    expected = general(raw, num_fields)
    assert decode_first(raw, num_fields) == (None if expected is None else list(expected))
    for module in MODULES:
        taken, lane, r = fast(module, f"U,7,1,{raw}".encode(), num_fields)
        # Every valid first update stays on the hot path; every invalid one leaves it.
        assert taken == (expected is not None)
        assert lane.baselines[0] == expected
        assert r.calls == ([] if expected is None else [(1, expected)])


@pytest.mark.parametrize("mode", [MODE_MERGE, MODE_RAW, MODE_DISTINCT])
@pytest.mark.parametrize("snapshot", [False, True])
def test_tables_see_the_same_first_rows_and_snapshot_ends_either_way(
    mode: str, snapshot: bool
) -> None:
    if mode == MODE_RAW and snapshot:
        return
    hot = subscribed(mode, snapshot=snapshot)
    slow = subscribed(mode, snapshot=snapshot)
    got: dict[str, list[Any]] = {"hot": [], "slow": []}
    hot.on_update(lambda item, row: got["hot"].append((item, row)))
    slow.on_update(lambda item, row: got["slow"].append((item, row)))
    if mode == MODE_DISTINCT and snapshot:
        for table in (hot, slow):  # the lane opens once every snapshot is over
            table._end_of_snapshot(1)
            table._end_of_snapshot(2)
    assert hot._lane.open
    router = router_with(hot._lane)
    states = []
    for item, raw in ((2, "#|$"), (1, "a%7C|b"), (2, "|x"), (1, "^2")):
        line = f"U,7,{item},{raw}".encode()
        assert router.feed([line], 0) == 1
        slow._update(item, raw)
        states.append(
            ((hot._in_snapshot, hot._snapshot_items), (slow._in_snapshot, slow._snapshot_items))
        )
    assert (
        got["hot"]
        == got["slow"]
        == [(2, (None, "")), (1, ("a|", "b")), (2, (None, "x")), (1, ("a|", "b"))]
    )
    assert dict(hot.rows) == dict(slow.rows)
    assert [a == b for a, b in states] == [True] * 4
    assert hot._lane.first_update is None and hot._lane.open


def test_a_merge_snapshot_in_progress_is_ended_by_the_hot_path_before_delivery() -> None:
    table = subscribed(MODE_MERGE, snapshot=True)
    seen: list[Any] = []
    table.on_update(lambda item, row: seen.append((item, list(table._in_snapshot))))
    router = router_with(table._lane)
    assert router.feed([b"U,7,1,a|b", b"U,7,1,c|", b"U,7,2,|d"], 0) == 2
    assert seen == [(1, [False, True]), (1, [False, True])]
    table._update(2, "e|d")  # the general decoder's turn: same bookkeeping
    assert seen[-1] == (2, [])
    assert table._snapshot_items == 0


@pytest.mark.parametrize("module", MODULES)
def test_run_lengths_are_read_as_before(module: Any) -> None:
    def reference(token: str) -> int:
        digits = token[1:]
        ok = digits.isdigit() and digits.isascii() and len(digits) < 7
        return int(digits) if ok else 0

    tokens = [f"^{n}" for n in range(0, 130)] + [
        "^",
        "^00",
        "^05",
        "^x",
        "^1x",
        "^x1",
        "^²",
        "^1²",
        "^-1",
        "^ 1",
        "^T",
        "^P",
        "^123",
        "^999999",
        "^9999999",
        "^٣",
    ]
    assert [module._run_length(t) for t in tokens] == [reference(t) for t in tokens]
