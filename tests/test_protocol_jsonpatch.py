"""
The ``^P`` walker (`txlightstreamer.protocol._jsontext.patch_document`): it applies
``add``/``replace``/``remove`` exactly as ``jsonpatch`` does, refuses what it refuses,
and hands every other operation to it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txlightstreamer.protocol._jsonpatch import PatchError, encode_json
from txlightstreamer.protocol._jsontext import patch_document

BIG = 1 << 20

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", "x", "é"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "b", "", "-", "0", "a/b", "m~n", "~1"]), inner,
                      max_size=3),
    max_leaves=8,
)
PART = st.sampled_from(["a", "b", "", "-", "0", "1", "2", "3", "01", "-1", " 1", "a~1b", "m~0n",
                        "~01", "~", "~2", "x~", "1e0", "²"])
PATH = st.one_of(
    st.just(""),
    st.lists(PART, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts)),
    st.sampled_from(["a", "a/b", "//", "/"]),
)
OP = st.one_of(
    st.builds(lambda kind, path, value: {"op": kind, "path": path, "value": value},
              st.sampled_from(["add", "replace"]), PATH, JSON),
    st.builds(lambda path: {"op": "remove", "path": path}, PATH),
    st.sampled_from([{"op": "add", "path": "/a"}, {"op": "replace"}, {"path": "/a"},
                     {"op": "remove", "path": 1}, {"op": "add", "path": None, "value": 1},
                     {"op": "bogus", "path": "/a"}, 1, "add", None, [],
                     {"op": "test", "path": "/a", "value": 1},
                     {"op": "move", "from": "/a", "path": "/b"},
                     {"op": "copy", "from": "/a", "path": "/c"}]),
)


def _reference(doc: Any, ops: Any) -> Any:
    try:
        return ("ok", encode_json(jsonpatch.apply_patch(doc, ops, in_place=True)))
    except Exception:
        return ("error",)


def _ours(doc: Any, ops: Any, copy_values: bool) -> Any:
    try:
        return ("ok", encode_json(patch_document(doc, ops, BIG, copy_values)))
    except PatchError:
        return ("error",)


@settings(max_examples=3000)
@given(JSON, st.lists(OP, max_size=4), st.booleans())
def test_the_walker_agrees_with_jsonpatch(doc: Any, ops: list[Any], copy_values: bool) -> None:
    expected = _reference(copy.deepcopy(doc), copy.deepcopy(ops))
    kept = copy.deepcopy(ops)
    assert _ours(copy.deepcopy(doc), ops, copy_values) == expected
    if copy_values and expected[0] == "ok":
        assert ops == kept  # the operations handed to the application are left alone


@pytest.mark.parametrize(("doc", "ops", "expected"), [
    ({"a/b": 1, "m~n": 2}, [{"op": "replace", "path": "/a~1b", "value": 3},
                            {"op": "remove", "path": "/m~0n"}], {"a/b": 3}),
    ({"~1": 0}, [{"op": "replace", "path": "/~01", "value": 1}], {"~1": 1}),
    ([1, 2], [{"op": "add", "path": "/-", "value": 3}, {"op": "add", "path": "/0", "value": 0},
              {"op": "remove", "path": "/1"}], [0, 2, 3]),
    ({"a": [{"b": 1}]}, [{"op": "replace", "path": "/a/0/b", "value": {"c": []}},
                         {"op": "add", "path": "/a/0/b/c/0", "value": "x"}],
     {"a": [{"b": {"c": ["x"]}}]}),
    ({"-": 1}, [{"op": "remove", "path": "/-"}], {}),
    ({}, [{"op": "add", "path": "/", "value": 1}], {"": 1}),
    ({"a": 1}, [{"op": "replace", "path": "", "value": [1]}], [1]),
    ({"a": 1}, [{"op": "move", "from": "/a", "path": "/b"},
                {"op": "copy", "from": "/b", "path": "/c"},
                {"op": "test", "path": "/c", "value": 1}], {"b": 1, "c": 1}),
])
def test_operations(doc: Any, ops: list[Any], expected: Any) -> None:
    assert patch_document(doc, ops, BIG, True) == expected


@pytest.mark.parametrize(("doc", "ops"), [
    ({}, {"op": "add", "path": "/a", "value": 1}),          # not an array
    ({}, [{"op": "remove", "path": ""}]),
    ({}, [{"op": "replace", "path": "/a", "value": 1}]),
    ([], [{"op": "replace", "path": "/-", "value": 1}]),
    ([1], [{"op": "add", "path": "/2", "value": 1}]),
    ([1], [{"op": "add", "path": "/01", "value": 1}]),
    ([1], [{"op": "remove", "path": "/-"}]),
    ({"a": 1}, [{"op": "add", "path": "/a/b", "value": 1}]),
    ({"a": "xy"}, [{"op": "add", "path": "/a/0", "value": 1}]),
    ({"a": [1]}, [{"op": "add", "path": "/a/-/b", "value": 1}]),
    ({"a": 1}, [{"op": "add", "path": "/a~2", "value": 1}]),
    ({"a": 1}, [{"op": "add", "path": "a", "value": 1}]),
    ({"a": 1}, [{"op": "test", "path": "/a", "value": 2}]),
    ({"a": 1}, [{"op": "bogus", "path": "/a"}]),
])
def test_refusals(doc: Any, ops: Any) -> None:
    with pytest.raises(PatchError):
        patch_document(doc, ops, BIG, True)


def test_copies_are_bounded() -> None:
    doc = {"a": "x" * 1000}
    ops = [{"op": "copy", "from": "/a", "path": "/b"}, {"op": "copy", "from": "/a", "path": "/c"}]
    assert patch_document(copy.deepcopy(doc), ops, 2100, False)["c"] == "x" * 1000
    with pytest.raises(PatchError, match="duplicate too much"):
        patch_document(copy.deepcopy(doc), ops, 1500, False)


def test_the_encoder_is_compact_and_keeps_non_ascii() -> None:
    text = '{ "a" : [1, 2.5, null, true], "é": "€\\u00e9" }'
    assert encode_json(json.loads(text)) == '{"a":[1,2.5,null,true],"é":"€é"}'


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=1000)
@given(ANY_JSON)
def test_the_encoder_writes_what_json_dumps_writes(doc: Any) -> None:
    assert encode_json(doc) == json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def test_the_encoder_refuses_what_is_not_json() -> None:
    with pytest.raises(TypeError):
        encode_json({"a": {1, 2}})
