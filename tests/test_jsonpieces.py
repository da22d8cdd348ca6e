"""
``^P`` in C (``protocol/_jsonpieces.c``): the same text as the Python version.

Where it is built, the compiled hot path keeps a patched field's text with its cut as
offsets (``Cut``), which applies a compact run of scalar ``replace`` operations and cuts a
new server value as the last one was cut: the result must be exactly what
`._jsontext.recut` and `._jsontext.replace_compact` (with the join) give, and where C
answers None, the Python version decides (a float whose repr only Python can tell).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_hotpath_splice import (
    SCALAR,
    _reference,
    _rescalar,
    interpreted_text,
    same_shape,
)
from txlightstreamer.protocol import HOTPATH_COMPILED, _hotpath
from txlightstreamer.protocol._jsonpatch import encode_json

try:
    from txlightstreamer.protocol import _jsonpieces
except ImportError:  # pure-Python build
    _jsonpieces = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(_jsonpieces is None, reason="built without the C JSON pieces")
EXAMPLES = 2000 if os.environ.get("TXLS_FUZZ") == "full" else 400


def _cut(doc: Any) -> tuple[list[str], dict[str, int]] | None:
    cut: tuple[list[str], dict[str, int]] | None = interpreted_text.tokenize(
        encode_json(doc), False
    )
    return cut


def _python_replace(payload: str, pieces: list[str], leaves: dict[str, int]) -> str | None:
    if not interpreted_text.replace_compact(payload, pieces, leaves):
        return None
    return "".join(pieces)


@st.composite
def patches(draw: st.DrawFn) -> tuple[list[str], dict[str, int], str]:
    """A cut document and a compact patch of it: mostly scalar replaces of its leaves,
    sometimes other pointers, another form, or a payload cut short or padded."""
    doc = draw(same_shape())[0]
    cut = _cut(doc)
    if cut is None or not cut[1]:
        cut = (['{"a":', "1", "}"], {"/a": 1})
    pieces, leaves = cut
    pointers = st.sampled_from(sorted(leaves)) | st.sampled_from(["/zz", "", "/0/9"])
    ops = draw(st.lists(st.tuples(pointers, SCALAR), min_size=1, max_size=5))
    parts = []
    for pointer, value in ops:
        written = encode_json(value) if draw(st.integers(0, 5)) else json.dumps(value)
        parts.append(f'{{"op":"replace","path":{json.dumps(pointer)},"value":{written}}}')
    payload = "[" + ",".join(parts) + "]"
    mangle = draw(st.integers(0, 9))
    if mangle == 0:
        payload = payload[: draw(st.integers(0, len(payload)))]
    elif mangle == 1:
        at = draw(st.integers(0, len(payload)))
        extra = draw(st.sampled_from([" ", ",", "}", "]", '"', "é"]))
        payload = payload[:at] + extra + payload[at:]
    return pieces, leaves, payload


def test_compiled_hot_path_uses_it() -> None:
    # Built together: a compiled hot path without its C JSON pieces is a broken build.
    assert (_hotpath.C_CUT is not None) == HOTPATH_COMPILED


def test_a_number_with_an_exponent_is_taken_only_as_repr_writes_it() -> None:
    # Found by review: "2.5E3" passed for canonical; encode_json writes 2500.0.
    payload = '[{"op":"replace","path":"/a","value":2.5E3}]'
    assert _hotpath._patch('{"a":1}', payload, {}, 0, 1 << 24) == '{"a":2500.0}'
    assert interpreted_text.tokenize('{"a":2.5E3}', True) is None
    assert interpreted_text.tokenize('{"a":1e+16}', True) is not None  # repr(1e16) is that


def _floats(value: Any) -> bool:
    """``value`` holds a float: only its repr tells how encode_json writes it."""
    if isinstance(value, dict):
        return any(_floats(v) for v in value.values())
    if isinstance(value, list):
        return any(_floats(v) for v in value)
    return isinstance(value, float)


# The kept cut as offsets (``Cut``): what replace and recut do to pieces, without a str each;
# ``cut(old, payload)`` recuts (when old is a new value) and replaces.


@needs_c
@settings(max_examples=EXAMPLES, deadline=None)
@given(patches(), st.integers(0, 2))
def test_cut_replace_is_pythons(case: tuple[list[str], dict[str, int], str], again: int) -> None:
    pieces, leaves, payload = case
    old = "".join(pieces)
    cut = _jsonpieces.Cut(old, pieces, leaves)
    for _ in range(again + 1):  # and again on the text it made
        theirs = list(pieces)
        expected = _python_replace(payload, theirs, leaves)
        result = cut(old, payload)
        if result is None:
            if expected is not None:  # only where repr decides
                assert _floats([op.get("value") for op in json.loads(payload)])
            assert cut.text is old and cut.pieces() == pieces  # unchanged: Python decides
            return
        assert result == expected
        assert result.isascii() == expected.isascii()
        assert cut.text is result and cut.pieces() == theirs
        pieces, old = theirs, result


def _cut_and_another(docs: tuple[Any, Any], variant: int) -> tuple[
        tuple[list[str], dict[str, int]], str, str, list[str] | None] | None:
    """The cut of the first document and its text; the second written one way or another
    (canonical, with spaces, or nested once more) and Python's recut of it by that cut."""
    first = _cut(docs[0])
    if first is None:
        return None
    text = [encode_json(docs[1]), json.dumps(docs[1]), encode_json([docs[1]])][variant]
    return first, "".join(first[0]), text, interpreted_text.recut(text, first[0])


@needs_c
@settings(max_examples=EXAMPLES, deadline=None)
@given(same_shape(), st.integers(0, 2), st.booleans())
def test_cut_recut_is_pythons(docs: tuple[Any, Any], variant: int, replaced: bool) -> None:
    texts = _cut_and_another(docs, variant)
    if texts is None:
        return
    first, previous, text, expected = texts
    cut = _jsonpieces.Cut(previous, first[0], first[1])
    # A patch of no leaf: the cut follows the new value (when it can), nothing else.
    pointer = min(first[1], default="/none") if replaced else "/none"
    payload = f'[{{"op":"replace","path":{json.dumps(pointer)},"value":0}}]'
    result = cut(text, payload)
    if expected is None or (cut.text is previous and _floats(docs[1])):
        # Not cut so (or only repr can tell): the cut as it was.
        assert result is None
        assert cut.text is previous and cut.pieces() == first[0]
        return
    if result is None:
        assert cut.text is text and cut.pieces() == expected
    else:
        assert pointer != "/none"
        assert cut.text is result and result == _python_replace(payload, expected, first[1])
        assert cut.pieces() == expected


@needs_c
@settings(max_examples=EXAMPLES, deadline=None)
@given(same_shape(), st.integers(0, 2))
def test_cut_like_is_pythons_recut(docs: tuple[Any, Any], variant: int) -> None:
    # Another item's field of the same shape: like(text) cuts it as recut does with the
    # pieces of the cut's text (None where recut refuses, or where only repr can tell); the
    # cut it was made like is left as it was, and the two patch on their own.
    texts = _cut_and_another(docs, variant)
    if texts is None:
        return
    first, previous, text, expected = texts
    shape = _jsonpieces.Cut(previous, first[0], first[1])
    made = shape.like(text)
    assert shape.text is previous and shape.pieces() == first[0]
    if made is None:
        assert expected is None or _floats(docs[1])
        return
    assert made.pieces() == expected and made.text is text and made.leaves is shape.leaves
    for pointer in sorted(first[1])[:1]:
        payload = f'[{{"op":"replace","path":{json.dumps(pointer)},"value":"patched"}}]'
        theirs = list(expected)
        assert made(text, payload) == _python_replace(payload, theirs, first[1])
        assert made.pieces() == theirs
        assert shape.text is previous and shape.pieces() == first[0]


@needs_c
def test_cut_like_examples() -> None:
    pieces = ['{"seq":', "1", ',"bids":[[', "1.5", ",", "100", ']],"venue":', '"X"', "}"]
    leaves = {"/seq": 1, "/bids/0/0": 3, "/bids/0/1": 5, "/venue": 7}
    shape = _jsonpieces.Cut("".join(pieces), pieces, leaves)
    other = '{"seq":77,"bids":[[10.25,3]],"venue":"Xetra"}'
    made = shape.like(other)
    assert made is not None and made.pieces() == interpreted_text.tokenize(other, True)[0]
    payload = '[{"op":"replace","path":"/bids/0/1","value":4}]'
    assert made(other, payload) == '{"seq":77,"bids":[[10.25,4]],"venue":"Xetra"}'
    # Not of the shape, or not written as encode_json writes it: no cut.
    assert shape.like('{"seq":1,"bids":[[1.5,100]]}') is None
    assert shape.like('{"seq":1,"bids":[[1.5,100]],"venue":"X","x":0}') is None
    assert shape.like('{"seq":1.50,"bids":[[1.5,100]],"venue":"X"}') is None
    assert shape.like('{"seq":1, "bids":[[1.5,100]],"venue":"X"}') is None
    assert shape.like('{"seq":1,"bids":[[1.5,100]],"venue":"X\\u00e9"}') is None
    assert shape.like(b"{}") is None  # type: ignore[arg-type]
    # Wider characters: made as well.
    wide = '{"seq":2,"bids":[[1.5,100]],"venue":"Zürich €"}'
    made = shape.like(wide)
    assert made is not None and made.text is wide
    assert made(wide, '[{"op":"replace","path":"/seq","value":3}]') == wide.replace(":2,", ":3,")


@needs_c
def test_cuts_made_like_a_shape_outlive_it() -> None:
    # The cuts made like another share its table of pointers: it lives while any holds it.
    import gc

    pieces = ['{"seq":', "1", ',"bids":[[', "1.5", ",", "100", ']],"venue":', '"X"', "}"]
    leaves = {"/seq": 1, "/bids/0/0": 3, "/bids/0/1": 5, "/venue": 7}
    shape = _jsonpieces.Cut("".join(pieces), pieces, leaves)
    texts = [f'{{"seq":{n},"bids":[[{n}.5,{n * 100}]],"venue":"V{n}"}}' for n in range(50)]
    made = [shape.like(text) for text in texts]
    second = made[7].like(texts[8])  # made like one that was made like the shape
    del shape
    made[3:20] = []  # some let go of it first
    gc.collect()
    payload = ('[{"op":"replace","path":"/bids/0/1","value":4},'
               '{"op":"replace","path":"/seq","value":9}]')
    for cut, text in [*zip(made, texts[:3] + texts[20:], strict=True), (second, texts[8])]:
        assert cut is not None
        patched = cut(text, payload)
        want = json.loads(text)
        want["bids"][0][1], want["seq"] = 4, 9
        assert patched == encode_json(want)
        assert cut(patched, '[{"op":"replace","path":"/zz","value":1}]') is None  # not a leaf


@needs_c
def test_cuts_made_like_a_shape_take_little_memory() -> None:
    # An order book of 22 leaves: each item's cut held a 2 KB copy of the table of pointers
    # and two arrays of its 45 pieces' ends (3.1 KB a cut in all); now the table is the
    # shape's, a recut fills a buffer of its own, and a cut holds one array and itself.
    import tracemalloc

    book = {
        "seq": 170,
        "bids": [[183.92, 400], [183.93, 2700], [183.92, 2200], [183.91, 3700], [183.9, 4200]],
        "asks": [[183.96, 4300], [183.97, 2600], [183.98, 2400], [183.99, 200], [184.0, 3000]],
        "venue": "XLON",
    }
    cut = _cut(book)
    assert cut is not None and len(cut[1]) == 22
    text = encode_json(book)
    shape = _jsonpieces.Cut(text, *cut)
    texts = [text.replace('"seq":170', f'"seq":{1000 + n}') for n in range(2000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        made = [shape.like(t) for t in texts]
        per_cut = (tracemalloc.get_traced_memory()[0] - before) / len(made)
    finally:
        tracemalloc.stop()
    assert all(m is not None for m in made)
    assert per_cut < 700, per_cut


@needs_c
def test_cut_like_with_a_collection_that_patches_the_shape_midway() -> None:
    # like() reads the cut it copies before it allocates: a finalizer that runs in that
    # allocation and patches the shape cannot leave it a text and ends of two moments.
    import gc

    pieces = ['{"a":', "1", ',"b":', "2", "}"]
    leaves = {"/a": 1, "/b": 3}
    text = '{"a":333,"b":4444}'

    class Trap:
        def __init__(self, shape: Any) -> None:
            self.me = self  # a cycle: only a collection finalizes it
            self.shape = shape

        def __del__(self) -> None:
            shape = self.shape
            shape(shape.text, '[{"op":"replace","path":"/a","value":123456}]')

    threshold = gc.get_threshold()
    try:
        for spare in range(20):  # one of these puts the collection on like()'s allocation
            shape = _jsonpieces.Cut("".join(pieces), list(pieces), leaves)
            gc.collect()
            gc.set_threshold(20)
            keep = [[] for _ in range(spare)]
            Trap(shape)
            made = shape.like(text)
            gc.set_threshold(*threshold)
            del keep
            assert made is not None and made.pieces() == ['{"a":', "333", ',"b":', "4444", "}"]
            payload = '[{"op":"replace","path":"/b","value":5}]'
            assert made(text, payload) == '{"a":333,"b":5}'
    finally:
        gc.set_threshold(*threshold)


@needs_c
def test_cut_examples() -> None:
    pieces = ['{"seq":', "1", ',"bids":[[', "1.5", ",", "100", "]]}"]
    leaves = {"/seq": 1, "/bids/0/0": 3, "/bids/0/1": 5}
    old = "".join(pieces)
    cut = _jsonpieces.Cut(old, pieces, leaves)
    assert cut.text is old and cut.leaves is leaves
    payload = (
        '[{"op":"replace","path":"/bids/0/1","value":7},'
        '{"op":"replace","path":"/seq","value":22},{"op":"replace","path":"/seq","value":3}]'
    )
    text = cut(old, payload)
    assert text == '{"seq":3,"bids":[[1.5,7]]}'  # out of order, the last one wins
    # Wider and narrower again: the text is as narrow as its widest character.
    for value in ('"é"', '"€"', '"😀"', "4"):
        made = cut(text, f'[{{"op":"replace","path":"/seq","value":{value}}}]')
        assert made == f'{{"seq":{value},"bids":[[1.5,7]]}}'
        assert made is not None and made.isascii() == value.isascii()
        assert cut.pieces()[1] == value
        text = made
    # A new value (another str) cut as the last one was: recut, then patched.
    wide = '{"seq":4,"bids":[["€",7]]}'
    text = cut(wide, '[{"op":"replace","path":"/seq","value":5}]')
    assert text == '{"seq":5,"bids":[["€",7]]}'
    # Refused, the cut as it was: not a leaf, not compact, an escape, a bad number, another
    # structure, a number only repr can tell.
    for refused in (
        '[{"op":"replace","path":"/bids","value":1}]',
        '[{"op": "replace","path":"/seq","value":1}]',
        '[{"op":"replace","path":"/seq","value":"a\\"b"}]',
        '[{"op":"replace","path":"/seq","value":01}]',
        '[{"op":"replace","path":"/seq","value":-0}]',
        '[{"op":"replace","path":"/seq","value":1.50}]',
        '[{"op":"replace","path":"/seq","value":1e+16}]',
        '[{"op":"replace","path":"/seq","value":1}',
        '[{"op":"replace","path":"/seq","value":1}] ',
        '[{"op":"add","path":"/seq","value":1}]',
        "[]",
    ):
        assert cut(text, refused) is None, refused
        assert cut.text is text
    payload = '[{"op":"replace","path":"/seq","value":6}]'
    for other in ('{"seq":5,"bids":[["€",7],1]}', '{"seq":5,"bids":[["€",7]]} ',
                  '{"seq":5.0e1,"bids":[["€",7]]}'):
        assert cut(other, payload) is None
        assert cut.text is text
    assert cut.pieces() == ['{"seq":', "5", ',"bids":[[', '"€"', ",", "7", "]]}"]
    with pytest.raises(TypeError):
        cut(text, b"[]")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cut(text)  # type: ignore[call-arg]
    # Built from pieces that are the text's, and at odd indexes only.
    with pytest.raises(ValueError):
        _jsonpieces.Cut(old + " ", pieces, leaves)
    with pytest.raises(ValueError):
        _jsonpieces.Cut('{"a":1', ['{"a":', "1"], {"/a": 1})
    with pytest.raises(TypeError):
        _jsonpieces.Cut('{"a":1}', ['{"a":', 1, "}"], {"/a": 1})  # type: ignore[list-item]
    even = _jsonpieces.Cut('{"a":1}', ['{"a":', "1", "}"], {"/a": 0, "/b": -1, "/c": 9})
    for pointer in ("/a", "/b", "/c"):
        assert even('{"a":1}', f'[{{"op":"replace","path":"{pointer}","value":2}}]') is None


@needs_c
@pytest.mark.parametrize("key", ["/é", "/€", "/😀", 7])
def test_cut_leaves_of_any_kind(key: Any) -> None:
    # Keys of one-byte characters are looked up in the cut's own table, wider ones in the
    # dict; a key that is not a str makes it look up the dict for all: the same answers.
    pieces = ['{"a":', "1", ',"b":', "2", "}"]
    leaves: dict[Any, int] = {"/a": 1, key: 3}
    cut = _jsonpieces.Cut("".join(pieces), pieces, leaves)
    text = cut('{"a":1,"b":2}', '[{"op":"replace","path":"/a","value":5}]')
    assert text == '{"a":5,"b":2}'
    if isinstance(key, str):
        assert cut(text, f'[{{"op":"replace","path":"{key}","value":6}}]') == '{"a":5,"b":6}'
        text = '{"a":5,"b":6}'
    assert cut(text, '[{"op":"replace","path":"/z","value":6}]') is None


@needs_c
@pytest.mark.parametrize("wide", [False, True])
def test_cut_many_pointers(wide: bool) -> None:
    # Many pointers, found in the cut's own table (one-byte ones) or, for a payload of wider
    # characters, in the dict.
    names = [f"/k{n}" for n in range(200)] + (["/é", "/€", "/😀"] if wide else ["/~0"])
    pieces: list[str] = []
    leaves = {}
    for n, name in enumerate(names):
        key = name[1:].replace("~0", "~")
        pieces += [("," if n else "{") + json.dumps(key, ensure_ascii=False) + ":", "0"]
        leaves[name] = len(pieces) - 1
    pieces.append("}")
    text = "".join(pieces)
    cut = _jsonpieces.Cut(text, pieces, leaves)
    for rounds in range(2):
        for name in names:
            value = rounds + 1
            made = cut(text, f'[{{"op":"replace","path":"{name}","value":{value}}}]')
            assert made is not None
            assert json.loads(made)[name[1:].replace("~0", "~")] == value
            text = made
    # The same payload on cuts whose leaves differ: each cut's own leaves decide.
    payload = '[{"op":"replace","path":"/a","value":5}]'
    first = _jsonpieces.Cut('{"a":1,"b":2}', ['{"a":', "1", ',"b":', "2", "}"], {"/a": 1, "/b": 3})
    second = _jsonpieces.Cut('{"b":2,"a":1}', ['{"b":', "2", ',"a":', "1", "}"], {"/a": 3, "/b": 1})
    no_a = _jsonpieces.Cut('{"a":1,"b":2}', ['{"a":', "1", ',"b":', "2", "}"], {"/b": 3})
    assert first(first.text, payload) == '{"a":5,"b":2}'
    assert second(second.text, payload) == '{"b":2,"a":5}'
    assert no_a(no_a.text, payload) is None


@needs_c
def test_cut_lookup_running_python_code() -> None:
    # A key that is not a str runs Python code in a lookup: here it patches through the same
    # cut midway. The cut reads its text and offsets again once the lookups are done.
    cut: Any = None
    armed = False

    class Evil:
        def __hash__(self) -> int:
            return hash("/b")

        def __eq__(self, other: object) -> bool:
            nonlocal armed
            if armed:
                armed = False
                assert cut('{"a":1,"b":2}', '[{"op":"replace","path":"/a","value":123}]')
            return False

    pieces = ['{"a":', "1", ',"b":', "2", "}"]
    leaves: dict[Any, int] = {Evil(): 0, "/a": 1, "/b": 3}
    first = "".join(pieces)
    cut = _jsonpieces.Cut(first, pieces, leaves)
    armed = True
    payload = '[{"op":"replace","path":"/b","value":8}]'
    # The text it was given is no longer the one described: refused, not spliced.
    assert cut(first, payload) is None
    assert cut.text == '{"a":123,"b":2}'
    assert cut(cut.text, payload) == '{"a":123,"b":8}'


@needs_c
@settings(max_examples=EXAMPLES, deadline=None)
@given(same_shape(), st.lists(st.integers(0, 3), min_size=1, max_size=8), st.data())
def test_a_field_patched_and_replaced_in_turn(
    start: tuple[Any, Any], steps: list[int], data: st.DataObject
) -> None:
    # The hot path keeps a field's cut across patches and across new values sent whole:
    # compiled (offsets) and interpreted (pieces) give the same texts, step by step.
    from tests.test_hotpath import interpreted

    modules = (_hotpath, interpreted)
    doc = start[0]
    texts = [encode_json(doc)] * 2
    docs: list[dict[int, Any]] = [{}, {}]
    for step in steps:
        new = _rescalar(doc, data.draw)
        if step == 0:  # sent whole: a new str, of the same structure as the kept one
            texts = [encode_json(new)] * 2
            doc = new
            continue
        ops = _replaces(doc, new)
        if step == 3:  # and one the cut does not take
            ops.append({"op": "add", "path": "/-" if isinstance(doc, list) else "/k", "value": 1})
            new = json.loads(_reference(encode_json(doc), ops) or "null")
        payload = json.dumps(ops, separators=(",", ":"), ensure_ascii=step == 2)
        got = [m._patch(texts[k], payload, docs[k], 3, 1 << 24) for k, m in enumerate(modules)]
        assert got[0] == got[1] == _reference(texts[0], ops)
        if got[0] is None:
            return
        texts = [got[0], got[1]]
        kept = docs[0][3]
        assert kept.text is got[0]
        pieces = kept.pieces() if callable(kept.pieces) else kept.pieces
        assert pieces is None or "".join(pieces) == kept.text
        doc = new


def _replaces(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    if isinstance(old, dict):
        return [op for k in old for op in _replaces(old[k], new[k], f"{path}/{_escape(k)}")]
    if isinstance(old, list):
        return [op for i, (a, b) in enumerate(zip(old, new, strict=True))
                for op in _replaces(a, b, f"{path}/{i}")]
    return [] if old == new and type(old) is type(new) else [
        {"op": "replace", "path": path, "value": new}]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


@needs_c
def test_a_collection_that_empties_the_pieces_midway() -> None:
    # Found by review: an allocation may collect garbage, and a finalizer may then empty the
    # list being read: Cut() reads it all before it allocates.
    import gc

    text = '{"a":1,"b":2,"c":3,"d":4}'
    first = ['{"a":', "1", ',"b":', "2", ',"c":', "3", ',"d":', "4", "}"]
    leaves = {"/a": 1, "/b": 3, "/c": 5, "/d": 7}

    class Trap:
        def __init__(self, victim: list[str]) -> None:
            self.me = self  # a cycle: only a collection finalizes it
            self.victim = victim

        def __del__(self) -> None:
            self.victim.clear()

    threshold = gc.get_threshold()
    try:
        for spare in range(20):  # one of these puts the collection on C's own allocation
            gc.collect()
            gc.set_threshold(20)
            pieces = list(first)
            args = (text, pieces, leaves)
            keep = [[] for _ in range(spare)]
            Trap(pieces)
            try:
                _jsonpieces.Cut(*args)
            except (TypeError, ValueError):
                pass
            gc.set_threshold(*threshold)
            del keep
    finally:
        gc.set_threshold(*threshold)
