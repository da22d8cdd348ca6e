"""Tests for txlightstreamer.protocol.values and diff (tlcp.md §5)."""

from __future__ import annotations

import json

import pytest

from txlightstreamer.protocol import (
    DecodedUpdate,
    ProtocolError,
    Update,
    ValueDecodeError,
    apply_tlcp_diff,
    decode_update,
    parse_line,
    percent_decode,
)

Row = list[str | None]


def _raw(line: str) -> str:
    upd = parse_line(line)
    assert isinstance(upd, Update)
    return upd.values


# --------------------------------------------------------------------------- percent_decode


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ("", ""),
        ("plain", "plain"),
        ("a+b", "a+b"),
        ("%20", " "),
        ("%2B", "+"),
        ("%2b%2C%7c", "+,|"),
        ("bar%c3%a0%C3%A8%25%23%24%5E", "baràè%#$^"),
        ("%E2%98%83", "☃"),
        ("%F0%9F%98%80", "😀"),
        ("😀%20à", "😀 à"),
        ("%25%25", "%%"),
        ("%2525", "%25"),
    ],
)
def test_percent_decode(text: str, decoded: str) -> None:
    assert percent_decode(text) == decoded


def test_percent_decode_fast_path_identity() -> None:
    text = "no escapes here"
    assert percent_decode(text) is text


@pytest.mark.parametrize(
    "text", ["%", "a%", "%2", "%G0", "%0G", "%%", "% 1", "%+1", "%-1", "%FF", "%C3", "%C3%28",
             "%ED%A0%80", "%C0%AF", "\ud800%20"],
)  # fmt: skip
def test_percent_decode_errors(text: str) -> None:
    with pytest.raises(ValueDecodeError):
        percent_decode(text)


# --------------------------------------------------------------------------- §5.2 stock example

STOCK_FIELDS = 10


def test_stock_sequence() -> None:
    lines_and_rows: list[tuple[str, Row]] = [
        (
            "U,3,1,20:00:33|3.04|0.0|2.41|3.67|3.03|3.04|#|#|$",
            ["20:00:33", "3.04", "0.0", "2.41", "3.67", "3.03", "3.04", None, None, ""],
        ),
        (
            "U,3,1,20:00:54|3.07|0.98|||3.06|3.07|||Suspended",
            ["20:00:54", "3.07", "0.98", "2.41", "3.67", "3.06", "3.07", None, None, "Suspended"],
        ),
        (
            "U,3,1,20:04:16|3.02|-0.65|||3.01|3.02|||$",
            ["20:04:16", "3.02", "-0.65", "2.41", "3.67", "3.01", "3.02", None, None, ""],
        ),
        (
            "U,3,1,20:04:40|^4|3.02|3.03|||",
            ["20:04:40", "3.02", "-0.65", "2.41", "3.67", "3.02", "3.03", None, None, ""],
        ),
        (
            "U,3,1,20:06:10|3.05|0.32|^7",
            ["20:06:10", "3.05", "0.32", "2.41", "3.67", "3.02", "3.03", None, None, ""],
        ),
        (
            "U,3,1,20:06:49|3.08|1.31|||3.08|3.09|||",
            ["20:06:49", "3.08", "1.31", "2.41", "3.67", "3.08", "3.09", None, None, ""],
        ),
    ]
    previous: Row | None = None
    for line, expected in lines_and_rows:
        snapshot = None if previous is None else list(previous)
        result = decode_update(_raw(line), previous, STOCK_FIELDS)
        assert isinstance(result, DecodedUpdate)
        assert result.values == expected, line
        assert result.patches is None
        # The previous row is never mutated and the result is a fresh list.
        assert previous == snapshot
        assert result.values is not previous
        previous = result.values


def test_escaping_examples() -> None:
    assert decode_update(_raw("U,3,1,bar%c3%a0%C3%A8%25%23%24%5E"), None, 1).values == ["baràè%#$^"]
    assert decode_update(_raw("U,3,1,😀"), None, 1).values == ["😀"]


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("#", None),
        ("$", ""),
        ("%23", "#"),
        ("%24", "$"),
        ("%5E3", "^3"),
        ("a#b", "a#b"),
        ("#abc", "#abc"),
        ("$$", "$$"),
        ("##", "##"),
        ("a,b", "a,b"),
        ("a+b", "a+b"),
    ],
)
def test_token_classification(token: str, value: str | None) -> None:
    assert decode_update(token, None, 1).values == [value]


# --------------------------------------------------------------------------- §5.5 examples


def _changed(old: Row | None, new: Row) -> set[int]:
    if old is None:
        return set(range(len(new)))
    return {i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b}


def test_raw_changed_fields_example() -> None:
    first = decode_update("#|#|$|z", None, 4).values
    assert first == [None, None, "", "z"]
    assert _changed(None, first) == {0, 1, 2, 3}
    second = decode_update("|n|#|#", first, 4).values
    assert second == [None, "n", None, None]
    assert _changed(first, second) == {1, 2, 3}


def test_merge_single_field_example() -> None:
    v1 = decode_update("foo", None, 1).values
    assert v1 == ["foo"]
    v2 = decode_update("", v1, 1).values
    assert v2 == ["foo"]
    assert _changed(v1, v2) == set()
    v3 = decode_update("^Tc", v2, 1).values
    assert v3 == ["fo"]
    assert _changed(v2, v3) == {0}
    v4 = decode_update("#", v3, 1).values
    assert v4 == [None]
    assert _changed(v3, v4) == {0}


def test_command_baseline_is_per_item() -> None:
    # tlcp.md §6.1: unchanged markers and diffs refer to the item's previous row.
    row = decode_update("a|b|k1|ADD", None, 4).values
    row = decode_update("|B|k3|", row, 4).values
    assert row == ["a", "B", "k3", "ADD"]
    row = decode_update("k2|ADD|foo", None, 3).values
    row = decode_update("k1|ADD|^Tc", row, 3).values
    assert row == ["k1", "ADD", "fo"]
    row = decode_update("k2|UPDATE|^Tb", row, 3).values
    assert row == ["k2", "UPDATE", "f"]


# --------------------------------------------------------------------------- JSON Patch


def test_json_patch_chain() -> None:
    first = decode_update(
        _raw(
            'U,5,1,20:00:33|{ "text": "aa%7Cbb", "attributes": [ { "font": "courier" }, "..." ] }'
        ),
        None,
        2,
    )
    assert first.values[1] == '{ "text": "aa|bb", "attributes": [ { "font": "courier" }, "..." ] }'
    assert first.patches is None
    second = decode_update(
        _raw(
            'U,5,1,20:00:54|^P[{"op":"replace","path":"/text","value":"aa%7Cbb%7Ccc"},'
            '{"op":"add","path":"/attributes/1","value":"bold"}]'
        ),
        first.values,
        2,
    )
    assert second.values[0] == "20:00:54"
    value = second.values[1]
    assert value is not None
    assert json.loads(value) == {
        "text": "aa|bb|cc",
        "attributes": [{"font": "courier"}, "bold", "..."],
    }
    assert value == '{"text":"aa|bb|cc","attributes":[{"font":"courier"},"bold","..."]}'
    assert second.patches == {
        1: [
            {"op": "replace", "path": "/text", "value": "aa|bb|cc"},
            {"op": "add", "path": "/attributes/1", "value": "bold"},
        ]
    }
    third = decode_update(_raw("U,5,1,20:04:16|"), second.values, 2)
    assert third.values == ["20:04:16", value]
    assert third.patches is None


def test_json_patch_non_ascii_and_root() -> None:
    out = decode_update('^P[{"op":"add","path":"/b","value":"é"}]', ['{"a":1}'], 1)
    assert out.values == ['{"a":1,"b":"é"}']
    out = decode_update('^P[{"op":"replace","path":"","value":[1,2]}]', ['{"a":1}'], 1)
    assert out.values == ["[1,2]"]
    out = decode_update("^P[]", ['{ "a" : 1 }'], 1)
    assert out.values == ['{"a":1}']
    assert out.patches == {0: []}


def test_json_patch_multiple_fields() -> None:
    prev: Row = ["[1]", "x", '{"k":true}']
    out = decode_update(
        '^P[{"op":"add","path":"/-","value":2}]||^P[{"op":"remove","path":"/k"}]', prev, 3
    )
    assert out.values == ["[1,2]", "x", "{}"]
    assert out.patches is not None
    assert sorted(out.patches) == [0, 2]
    assert prev == ["[1]", "x", '{"k":true}']


# --------------------------------------------------------------------------- TLCP-diff

DIFF_TABLE = [
    ("foo", "d", "foo"),
    ("foobar", "d", "foo"),
    ("foobar", "bdzap", "fzap"),
    ("foobar", "bdzapcd", "fzapbar"),
    ("foobar", "adzapad", "zapfoo"),
    ("foobar", "aaad", "foo"),
    ("fzapbar", "aabg", "zapbar"),
    ("zapbar", "ddxyz", "zapxyz"),
    ("foobar", "baeb", "fr"),
    ("foobar", "cacc", "foar"),
    ("foo", "c", "fo"),
    ("", "adfoo", "foo"),
    ("foo", "dg%$=,+|", "foo%$=,+|"),
    ("abcdefghijklmnopqrstuvwxyz1", "aaBab", "1"),
]


@pytest.mark.parametrize(("old", "diff", "new"), DIFF_TABLE)
def test_tlcp_diff_table(old: str, diff: str, new: str) -> None:
    assert apply_tlcp_diff(old, diff) == new


@pytest.mark.parametrize(
    ("old", "wire", "new"),
    [
        ("foo", "^Td", "foo"),
        ("foobar", "^Tbdzapcd", "fzapbar"),
        ("foobar", "^Tadzapad", "zapfoo"),
        ("foo", "^Tdg%25%24%3D%2C%2B%7C", "foo%$=,+|"),
        ("abcdefghijklmnopqrstuvwxyz1", "^TaaBab", "1"),
    ],
)
def test_tlcp_diff_through_decode_update(old: str, wire: str, new: str) -> None:
    assert decode_update(wire, [old], 1).values == [new]


def test_tlcp_diff_chain_from_empty() -> None:
    # "" ($) -> foo -> foobar -> fzapbar -> zapbar -> zapxyz
    row = decode_update("x|$", None, 2).values
    for wire, expected in [
        ("^Tadfoo", "foo"),
        ("^Tddbar", "foobar"),
        ("^Tbdzapcd", "fzapbar"),
        ("^Taabg", "zapbar"),
        ("^Tddxyz", "zapxyz"),
    ]:
        row = decode_update("|" + wire, row, 2).values
        assert row == ["x", expected]


@pytest.mark.parametrize(
    ("number", "value"),
    [("a", 0), ("d", 3), ("z", 25), ("Ba", 26), ("Bd", 29), ("Ca", 52), ("BAa", 676),
     ("Zz", 675), ("AAAd", 3)],
)  # fmt: skip
def test_tlcp_diff_integers(number: str, value: int) -> None:
    old = "x" * 700
    assert apply_tlcp_diff(old, number) == "x" * value


@pytest.mark.parametrize(
    ("old", "diff"),
    [
        ("foo", "z"),  # COPY out of range
        ("foo", "e"),
        ("foo", "aaz"),  # DEL out of range
        ("foo", "ad"),  # ADD longer than the rest of the diff
        ("foo", "adab"),
        ("foo", "!"),
        ("foo", "a1"),
        ("foo", "B"),  # truncated number
        ("foo", "aB"),
        ("foo", "aaB"),
        ("foo", "é"),
        ("foo", "ÀÉa"),
        ("foo", "A" * 5000),
        ("foo", "Z" * 5000 + "z"),
        ("", "b"),
    ],
)
def test_tlcp_diff_errors(old: str, diff: str) -> None:
    with pytest.raises(ValueDecodeError) as info:
        apply_tlcp_diff(old, diff)
    assert "TLCP-diff" in info.value.reason


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("raw", "previous", "num_fields", "field"),
    [
        # unchanged / ^n / diffs in the first update
        ("", None, 1, 1),
        ("a|", None, 2, 2),
        ("^2", None, 2, 1),
        ("a|^1", None, 2, 2),
        ("^Tc", None, 1, 1),
        ("^P[]", None, 1, 1),
        # diffs on null fields
        ("^Tc", [None], 1, 1),
        ("a|^P[]", ["x", None], 2, 2),
        # wrong number of values
        ("a", None, 2, 2),
        ("a|b|c", None, 2, 3),
        ("^3", ["a", "b"], 2, 1),
        ("^2|a", ["a", "b"], 2, 1),
        ("a|^2", ["a", "b"], 2, 2),
        ("^1", ["a", "b"], 2, 2),
        ("^99999999999999999999", ["a", "b"], 2, 1),
        ("a|b|", ["a", "b"], 2, 3),
        ("", [], 0, 1),
        # malformed ^ tokens
        ("^0", ["a"], 1, 1),
        ("a|^0", ["a", "b"], 2, 2),
        ("^", ["a"], 1, 1),
        ("^X1", ["a"], 1, 1),
        ("^p[]", ["[]"], 1, 1),
        ("^t", ["a"], 1, 1),
        ("^-1", ["a"], 1, 1),
        ("^ 1", ["a"], 1, 1),
        ("^²", ["a"], 1, 1),
        ("^1a", ["a"], 1, 1),
        # bad percent escapes
        ("%zz", None, 1, 1),
        ("ok|%C3", None, 2, 2),
        ("^T%", ["a"], 1, 1),
        ("^P%", ["[]"], 1, 1),
        # JSON Patch failures
        ("^P", ["{}"], 1, 1),
        ("^Pnot json", ["{}"], 1, 1),
        ('^P{"op":"add","path":"/a","value":1}', ["{}"], 1, 1),
        ("^P[1]", ["{}"], 1, 1),
        ('^P[{"op":"bogus","path":"/a"}]', ["{}"], 1, 1),
        ('^P[{"op":"add"}]', ["{}"], 1, 1),
        ('^P[{"op":"remove","path":"/missing"}]', ["{}"], 1, 1),
        ('^P[{"op":"replace","path":"/0","value":1}]', ["[]"], 1, 1),
        ('^P[{"op":"test","path":"/a","value":2}]', ['{"a":1}'], 1, 1),
        ('^P[{"op":"add","path":"a","value":1}]', ["{}"], 1, 1),
        ('^P[{"op":"add","path":"/a/b","value":1}]', ['{"a":1}'], 1, 1),
        ('^P[{"op":"move","from":"/x","path":"/a"}]', ["{}"], 1, 1),
        ('^P[{"op":"add","path":"/a","value":1}]', ["not json"], 1, 1),
        ('^P[{"op":"add","path":"/a","value":1}]', [""], 1, 1),
        ("^P[]", ["[" * 100000], 1, 1),
        # TLCP-diff failures
        ("^Tz", ["foo"], 1, 1),
        ("^T!", ["foo"], 1, 1),
        ("x|^TB", ["foo", "foo"], 2, 2),
        # previous row of the wrong length
        ("a", ["a", "b"], 1, None),
    ],
)
def test_decode_update_errors(
    raw: str, previous: Row | None, num_fields: int, field: int | None
) -> None:
    snapshot = None if previous is None else list(previous)
    with pytest.raises(ValueDecodeError) as info:
        decode_update(raw, previous, num_fields)
    err = info.value
    assert err.field == field
    assert isinstance(err, ProtocolError)
    assert err.code == 61
    if field is not None:
        assert f"field {field}" in err.reason
    assert previous == snapshot


def test_first_update_reason_mentions_first_update() -> None:
    with pytest.raises(ValueDecodeError, match="first update"):
        decode_update("a|", None, 2)
    with pytest.raises(ValueDecodeError, match="null"):
        decode_update("^Tc", [None], 1)


def test_caret_digits_valid_forms() -> None:
    prev: Row = ["a", "b", "c"]
    assert decode_update("^3", prev, 3).values == ["a", "b", "c"]
    assert decode_update("^1|x|^1", prev, 3).values == ["a", "x", "c"]
    assert decode_update("^01|^2", prev, 3).values == ["a", "b", "c"]
    assert decode_update("x|^2", prev, 3).values == ["x", "b", "c"]


def test_decode_update_never_mutates_previous() -> None:
    prev: Row = ["a", None, "foo"]
    out = decode_update("b|^1|^Tc", prev, 3)
    assert out.values == ["b", None, "fo"]
    assert prev == ["a", None, "foo"]


def test_tlcp_diff_counts_utf16_code_units_as_the_official_clients_do() -> None:
    # Issue 15 #6: the official (JavaScript) clients count ^T positions in UTF-16 code units;
    # an emoji is two. COPY 3 = "a" and the emoji, ADD "X", DEL 0, COPY 1 = "b".
    assert apply_tlcp_diff("a😀b", "dbXab") == "a😀Xb"
    assert apply_tlcp_diff("😀😀", "cbYa") == "😀Y"  # COPY 2 units, ADD "Y", DEL 0
    # A diff that splits a pair keeps the lone half, as a JavaScript string would.
    assert apply_tlcp_diff("😀", "b") == "\ud83d"
    with pytest.raises(ValueDecodeError):
        apply_tlcp_diff("😀", "d")  # COPY 3 > 2 units
