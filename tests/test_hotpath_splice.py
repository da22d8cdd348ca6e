"""
``^P`` by splicing (`txlightstreamer.protocol._hotpath._patch`): on a text the hot path
produced, an ``add``/``replace``/``remove`` of a scalar is applied to the text itself. The
result must be exactly ``encode_json`` of the patched document, and whatever the walker
refuses must still be refused, compiled and interpreted alike.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_hotpath import Recipient, interpreted, router_with
from txlightstreamer.protocol import _hotpath, _jsontext
from txlightstreamer.protocol._jsonpatch import encode_json
from txlightstreamer.protocol._jsontext import patch_document

BIG = 1 << 20


def _load_source(name: str) -> ModuleType:
    """A module of the hot path from its source, interpreted whatever build is installed."""
    path = _jsontext.__file__.rsplit("/", 1)[0] + f"/{name}.py"
    spec = importlib.util.spec_from_file_location(f"txlightstreamer.protocol.{name}_src", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


interpreted_text = _load_source("_jsontext")
MODULES = [pytest.param(_jsontext, id="built"), pytest.param(interpreted_text, id="src")]

KEYS = st.sampled_from(
    ["a", "b", "", "-", "0", "1", "a/b", "m~n", "~1", "é", 'q"', "b\\", "\n", "€/~", "\U0001f600"]
)
TEXT = st.text(st.sampled_from('ab"\\/\n\t\x00\x1f\x7fé€\U0001f600\ud800~|%'), max_size=6)
SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | TEXT
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.1, -0.0, 1e16, 1e-7, 183.29, 2.5e300])
)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


def _pointer(parts: list[str]) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _paths(doc: Any, prefix: list[str]) -> list[list[str]]:
    """Every pointer into ``doc`` (as unescaped parts), and one past each array's end."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, [*prefix, key])
        out.append([*prefix, "new"])
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += _paths(value, [*prefix, str(index)])
        out += [[*prefix, str(len(doc))], [*prefix, "-"], [*prefix, str(len(doc) + 1)]]
    return out


@st.composite
def doc_and_ops(draw: Any) -> tuple[Any, list[Any]]:
    doc = draw(JSON | st.lists(JSON, max_size=4) | st.dictionaries(KEYS, JSON, max_size=4))
    paths = [_pointer(parts) for parts in _paths(doc, [])]
    path = st.sampled_from(paths) | st.sampled_from(
        ["", "/", "/a/0", "/01", "/-/a", "/~2", "/a~", "/0/-", "x", "/1e0", "/ 1"]
    )
    value = st.one_of(SCALAR, SCALAR, JSON)
    op = st.one_of(
        st.builds(
            lambda k, p, v: {"op": k, "path": p, "value": v},
            st.sampled_from(["add", "replace"]),
            path,
            value,
        ),
        st.builds(lambda p: {"op": "remove", "path": p}, path),
        st.sampled_from(
            [
                {"op": "add", "path": "/a"},
                {"op": "replace", "path": 1, "value": 1},
                {"op": "test", "path": "", "value": None},
                {"op": "bogus"},
                1,
                None,
                {"op": "move", "from": "/a", "path": "/b"},
            ]
        ),
    )
    return doc, draw(st.lists(op, min_size=1, max_size=4))


def _rescalar(doc: Any, draw: Any) -> Any:
    """``doc`` with other scalars (the same structure)."""
    if isinstance(doc, dict):
        return {key: _rescalar(value, draw) for key, value in doc.items()}
    if isinstance(doc, list):
        return [_rescalar(value, draw) for value in doc]
    return draw(SCALAR)


@st.composite
def same_shape(draw: Any) -> tuple[Any, Any]:
    doc = draw(st.lists(JSON, max_size=4) | st.dictionaries(KEYS, JSON, max_size=4))
    return doc, _rescalar(doc, draw)


def _reference(text: str, ops: list[Any]) -> str | None:
    """What the full path gives: parse, walk, encode (None if the patch is refused)."""
    try:
        return encode_json(patch_document(json.loads(text), copy.deepcopy(ops), BIG, False))
    except Exception:
        return None


def _kept(module: ModuleType, text: str, how: str) -> dict[int, Any]:
    """``docs`` for a field holding ``text``: not ours, ours, or ours and already cut (as
    pieces, or as a C `Cut` where it is built); "before": not ours, and ours before it was
    its very structure."""
    if how == "theirs":
        return {}
    was = text
    if how.startswith("before"):
        was = encode_json(_rescalar(json.loads(text), lambda _: "x"))
    cut = _jsontext.tokenize(was, False) if how != "ours" else None
    pieces, leaves = cut if cut is not None else (None, None)
    if how.endswith("offsets") and pieces is not None and leaves is not None:
        return {5: module.C_CUT(was, pieces, leaves)}
    return {5: module.JsonText(was, pieces, leaves)}


def _hows(module: ModuleType) -> list[str]:
    hows = ["theirs", "before", "ours", "cut"]
    return hows + ["offsets", "before offsets"] if module.C_CUT is not None else hows


def _check_kept(kept: Any) -> None:
    """The kept text and its cut (pieces, or offsets in a C `Cut`) agree, and it is exact."""
    pieces = kept.pieces() if callable(kept.pieces) else kept.pieces
    if pieces is not None:
        assert "".join(pieces) == kept.text
        _check_cut(json.loads(kept.text), pieces, kept.leaves)


@settings(max_examples=2000, deadline=None)
@given(doc_and_ops(), st.sampled_from([(",", ":"), (", ", ": ")]))
def test_a_spliced_patch_is_exactly_the_encoded_patched_document(
    case: tuple[Any, list[Any]], separators: tuple[str, str]
) -> None:
    doc, ops = case
    text = encode_json(doc)
    payload = json.dumps(ops, separators=separators, ensure_ascii=separators[0] == ",")
    expected = _reference(text, ops)
    for module in (_hotpath, interpreted):
        for how in _hows(module):
            docs = _kept(module, text, how)
            got = module._patch(text, payload, docs, 5, BIG)
            assert got == expected
            if got is None:
                assert docs == {}
                continue
            assert docs[5].text is got
            _check_kept(docs[5])
    # Op by op, whatever the splicer applies equals the walker's result.
    current = text
    for op in ops:
        after = _reference(current, [op])
        for module in (_jsontext, interpreted_text):
            spliced = module.splice(current, copy.deepcopy(op))
            if spliced is not None:
                assert spliced == after
        if after is None:
            break
        current = after


def _scalars(doc: Any, prefix: str) -> dict[str, Any]:
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for key, value in doc.items():
            out.update(_scalars(value, prefix + "/" + _pointer([key])[1:]))
        return out
    if isinstance(doc, list):
        return {
            k: v for i, value in enumerate(doc) for k, v in _scalars(value, f"{prefix}/{i}").items()
        }
    return {prefix: doc}


def _check_cut(doc: Any, pieces: list[str], leaves: dict[str, int]) -> None:
    scalars = _scalars(doc, "")
    assert set(leaves) == set(scalars)
    for path, index in leaves.items():
        assert pieces[index] == encode_json(scalars[path])


@settings(max_examples=1000, deadline=None)
@given(JSON | st.dictionaries(KEYS, JSON, max_size=4), st.integers(0, 5))
def test_tokenize_cuts_only_exact_encodings(doc: Any, variant: int) -> None:
    text = encode_json(doc)
    if variant == 1:
        text = json.dumps(doc)  # spaces, \u escapes
    elif variant == 2:
        text = text.replace("1", "01").replace(".", ".0").replace("e", "E")
    elif variant == 3 and text.startswith("{") and len(text) > 2:
        text = text[:-1] + "," + text[1:]  # every key twice
    elif variant == 4:
        text = text.replace("0", "-0").replace("[", "[[").replace("]", "]]")
    try:
        exact = encode_json(json.loads(text)) == text
    except ValueError:
        exact = False
    for module in (_jsontext, interpreted_text):
        for verify in (True, False):
            cut = module.tokenize(text, verify)
            if cut is None:
                continue
            assert exact or not verify
            pieces, leaves = cut
            assert "".join(pieces) == text
            if exact:
                _check_cut(json.loads(text), pieces, leaves)


@settings(max_examples=1000, deadline=None)
@given(same_shape(), st.integers(0, 2))
def test_recut_takes_the_same_structure_with_exact_scalars(
    docs: tuple[Any, Any], variant: int
) -> None:
    first = _jsontext.tokenize(encode_json(docs[0]), False)
    if first is None:  # escapes, NaN...: not cut
        return
    text = [encode_json(docs[1]), json.dumps(docs[1]), encode_json([docs[1]])][variant]
    again = _jsontext.tokenize(text, True)
    same = again is not None and again[0][::2] == first[0][::2]
    for module in (_jsontext, interpreted_text):
        pieces = module.recut(text, first[0])
        assert (pieces is not None) == same
        if pieces is not None and again is not None:
            assert pieces == again[0]
            assert again[1] == first[1]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize(
    ("doc", "ops", "expected"),
    [
        (
            {"seq": 1, "bids": [[1.5, 100], [1.4, 200]]},
            [
                {"op": "replace", "path": "/seq", "value": 2},
                {"op": "replace", "path": "/bids/1/1", "value": 300},
                {"op": "replace", "path": "/bids/0/0", "value": 1.55},
            ],
            '{"seq":2,"bids":[[1.55,100],[1.4,300]]}',
        ),
        (
            {"a/b": "x", "m~n": [1], 'q"': "\\"},
            [
                {"op": "replace", "path": "/a~1b", "value": 'é"€'},
                {"op": "add", "path": "/m~0n/-", "value": None},
                {"op": "add", "path": "/m~0n/0", "value": True},
                {"op": "remove", "path": '/q"'},
            ],
            '{"a/b":"é\\"€","m~n":[true,1,null]}',
        ),
        (
            {"a": []},
            [
                {"op": "add", "path": "/a/0", "value": 1},
                {"op": "add", "path": "/b", "value": 2},
                {"op": "remove", "path": "/a/0"},
                {"op": "replace", "path": "/b", "value": 1e400},
            ],
            '{"a":[],"b":Infinity}',
        ),
    ],
)
def test_splices(module: ModuleType, doc: Any, ops: list[Any], expected: str) -> None:
    text = encode_json(doc)
    current: str | None = text
    for op in ops:
        assert current is not None
        current = module.splice(current, op)
    assert current == expected == _reference(text, ops)
    for how in ("theirs", "ours", "cut"):
        docs = _kept(_hotpath, text, how)
        assert _hotpath._patch(text, json.dumps(ops), docs, 5, BIG) == expected


@pytest.mark.parametrize("module", [_hotpath, interpreted])
@pytest.mark.parametrize(
    "op",
    [
        {"op": "replace", "path": "/c", "value": 1},  # missing member
        {"op": "remove", "path": "/a/2"},  # beyond the array
        {"op": "replace", "path": "/a/-", "value": 1},
        {"op": "add", "path": "/a/3", "value": 1},  # past the end
        {"op": "add", "path": "/a/01", "value": 1},  # leading zero
        {"op": "add", "path": "/b/x", "value": 1},  # into a scalar
        {"op": "replace", "path": "/~2", "value": 1},  # bad escape
        {"op": "replace", "path": "/a/1/x", "value": 1},  # into a scalar
        {"op": "remove", "path": ""},
    ],
)
def test_what_the_walker_refuses_stays_refused(module: ModuleType, op: dict[str, Any]) -> None:
    text = '{"a":[1,2],"b":3}'
    assert _reference(text, [op]) is None
    for how in ("theirs", "ours", "cut"):
        docs = _kept(module, text, how)
        assert module._patch(text, json.dumps([op]), docs, 5, BIG) is None
        assert docs == {}


@pytest.mark.parametrize("module", [_hotpath, interpreted])
def test_only_its_own_texts_are_spliced(module: ModuleType) -> None:
    # Not compact, duplicate keys, non-canonical numbers: the full path re-encodes.
    for text in [
        '{"a": 1, "b": 2}',
        '{"a":1,"a":2,"b":2}',
        '{"a":1.50,"b":2}',
        '{"a":-0,"b":1}',
        '{"a":"\\u00e9","b":1}',
        '{"a":1E2,"b":1}',
    ]:
        payload = '[{"op":"replace","path":"/b","value":3}]'
        docs: dict[int, Any] = {}
        got = module._patch(text, payload, docs, 5, BIG)
        assert got == _reference(text, json.loads(payload)) == docs[5].text


def test_a_non_ascii_tlcp_diff_result_is_checked_once() -> None:
    # The router keeps a non-ASCII ^T result: made of BMP-only pieces, it needs no check
    # while it is the field's value; anything else is checked (astral: the general path).
    # With the C TLCP-diff (compiled builds) the width is known from the str itself: no kept
    # results, same rows.
    for module in (_hotpath, interpreted):
        keeps = module.C_DIFF is None
        r = Recipient()
        lane = r.lane(module=module, num_fields=2)
        lane.baselines[0] = ["é1", "x"]
        lane.baselines[1] = ["é1", "x"]
        router = router_with(lane, module)
        lines = [
            b"U,7,1,^Tbb2b|",
            b"U,7,1,^Tbb3b|",
            b"U,7,1,\xc3\xa9\xf0\x9f\x98\x80|",
            b"U,7,1,^Tdaa|",
            b"U,7,2,^Tbb4b|",
        ]
        assert router.feed(lines, 0) == 3
        assert [row for _, row in r.calls] == [("é2", "x"), ("é3", "x"), ("é😀", "x")]
        assert -1 not in lane.docs  # "é3" was dropped when the astral value was checked
        assert router.feed(lines, 3) == 3  # the astral value goes to the general path
        assert router.feed(lines, 4) == 5
        assert r.calls[-1] == (2, ("é4", "x"))
        assert (lane.docs[-1 - 2].text is lane.baselines[1][0]) if keeps else not lane.docs
