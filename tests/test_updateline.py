"""
A ``U`` line's values decoded from its bytes in C (``protocol/_updateline.c``).

Where it is built, the compiled router decodes every line of an item past its first update
there: the row must be exactly the one the Python hot path decodes from the line's text
(`._hotpath._decode_tokens`), and None exactly where that gives None (bad UTF-8, a bad
escape, run or diff, a wrong count), which leaves the line to the general decoder.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_hotpath import interpreted
from tests.test_hotpath_splice import _reference, _rescalar, same_shape
from tests.test_jsonpieces import _replaces
from txlightstreamer.protocol import HOTPATH_COMPILED, _hotpath
from txlightstreamer.protocol._jsonpatch import encode_json

try:
    from txlightstreamer.protocol import _updateline
except ImportError:  # pure-Python build
    _updateline = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(_updateline is None, reason="built without the C line decoder")
EXAMPLES = 3000 if os.environ.get("TXLS_FUZZ") == "full" else 600
LIMIT = _hotpath.MAX_DIFF_RESULT

# Byte pieces of tokens: plain text of each UTF-8 width, markers, runs, escapes (good,
# bad, cut short, of bad UTF-8), diffs (good and bad), patches, and raw bytes that are
# not UTF-8.
PIECES = st.sampled_from([
    b"", b"a", b"b1", b"#", b"$", b"^", b"^1", b"^2", b"^3", b"^10", b"^01", b"^0", b"^0002",
    b"^1234567", b"%41", b"%7C", b"%25", b"%zz", b"%4", b"%", b"%C3%A9", b"%C3", b"%E2%82%AC",
    b"%F0%9F%98%80", b"%ED%A0%80", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xff",
    b"\xc3", b"\xa9", b"^T", b"^Tb", b"^Tbc", b"^Tabd", b"^Tbb%C3%A9", b"^Tz", b"^TBa",
    b"^Tabc\xc3\xa9", b"^T%", b"^Tb%F0%9F%98%80", b"^P", b"^P[]", b"^Pnull",
    b'^P[{"op":"replace","path":"/a","value":2}]', b'^P[{"op":"add","path":"/b","value":[]}]',
    b"^P%5B%5D", b" ", b"^Ta\xff", b"^\xc3\xa9", b"x^y",
])
PREVIOUS = st.one_of(st.none(), st.sampled_from(["", "abc", "é€", '{"a":1}', "😀", "x" * 40]))


def _python_row(line: bytes, start: int, before: tuple[Any, ...], docs: dict[int, Any],
                base: int) -> tuple[Any, ...] | None:
    try:
        text = line[start:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    values = interpreted._decode_tokens(text.split("|"), "%" in text, before, len(before),
                                        docs, base, interpreted.MAX_DIFF_RESULT)
    return None if values is None else tuple(values)


@needs_c
@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.lists(PIECES, max_size=3).map(b"".join), min_size=1, max_size=8),
       st.lists(PREVIOUS, min_size=1, max_size=8), st.integers(0, 2))
def test_same_rows_as_python(tokens: list[bytes], previous: list[str | None], base: int) -> None:
    header = b"U,7,3,"
    line = header + b"|".join(tokens)
    before = tuple(previous)
    expected = _python_row(line, len(header), before, {}, base)
    docs: dict[int, Any] = {}
    result = _updateline.decode(line, len(header), before, docs, base, _hotpath._patch, LIMIT)
    assert result == expected
    if result is not None and expected is not None:
        for ours, theirs in zip(result, expected, strict=True):
            assert type(ours) is type(theirs)
            if isinstance(ours, str):  # the same storage width too
                assert ours.isascii() == theirs.isascii()


@needs_c
def test_examples() -> None:
    before = ("a", "b", None, "foobar")
    patch = _hotpath._patch

    def decode(line: bytes, start: int, before: Any, docs: Any, base: int, patch: Any) -> Any:
        return _updateline.decode(line, start, before, docs, base, patch, LIMIT)
    assert decode(b"U,1,1,x|", 6, before, {}, 0, patch) is None  # two values for four fields
    assert decode(b"U,1,1,x||#|^Tddxyzbc", 6, before, {}, 0, patch) == ("x", "b", None, "fooxyzar")
    assert decode(b"U,1,1,^3|$", 6, before, {}, 0, patch) == ("a", "b", None, "")
    assert decode(b"U,1,1,^4", 6, before, {}, 0, patch) == before
    assert decode(b"U,1,1,^5", 6, before, {}, 0, patch) is None  # a run past the last field
    assert decode(b"U,1,1,%E2%82%AC|\xc3\xa9|%7C|", 6, before, {}, 0, patch) == (
        "€", "é", "|", "foobar")
    assert decode(b"U,1,1,^3|^Pnull", 6, before, {}, 0, patch) is None  # not JSON: Python says
    assert decode(b"U,1,1,||^Ta|", 6, before, {}, 0, patch) is None  # a diff of null
    assert decode(b"U,1,1,\xff|||", 6, before, {}, 0, patch) is None  # not UTF-8
    assert decode(b"U,1,1,%C3\xa9|||", 6, before, {}, 0, patch) is None  # raw bytes not UTF-8
    docs: dict[int, Any] = {}
    json_row = ("a", "b", None, '{"a":1}')
    patched = decode(b'U,1,1,|||^P[{"op":"replace","path":"/a","value":2}]', 6, json_row, docs,
                     4, patch)
    assert patched == ("a", "b", None, '{"a":2}')
    assert docs[4 + 3].text == '{"a":2}'  # the field's text, kept under base + field
    with pytest.raises(TypeError):
        decode("U,1,1,x", 6, before, {}, 0, patch)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start"):
        decode(b"U,1,1,x", 60, before, {}, 0, patch)


def test_compiled_hot_path_uses_it() -> None:
    # Built together: a compiled hot path without its C line decoder is a broken build.
    assert (_hotpath.C_LINE is not None) == HOTPATH_COMPILED


@needs_c
def test_the_row_is_out_of_the_collectors_sight_while_python_runs() -> None:
    # A ^P runs Python code while the row still has empty slots: a collector walking the
    # objects then must not find it (found by review: a NULL slot crashed hash()).
    import gc

    def patch(*args: Any) -> str:
        for obj in gc.get_objects():
            if type(obj) is tuple and len(obj) == 3 and obj[0] == "A":
                hash(obj)
        return "y"

    row = _updateline.decode(b"U,1,1,A|^P[]|b", 6, ("x", "z", "w"), {}, 0, patch, LIMIT)
    assert row == ("A", "y", "b")
    assert not gc.is_tracked(row)  # str and None only: nothing to collect
    odd = _updateline.decode(b"U,1,1,|", 6, ([1], "z"), {}, 0, patch, LIMIT)
    assert odd == ([1], "z") and gc.is_tracked(odd)


@needs_c
def test_only_exceptions_are_left_to_the_general_decoder() -> None:
    def interrupted(*args: Any) -> str:
        raise KeyboardInterrupt

    def failing(*args: Any) -> str:
        raise ValueError("bad")

    assert _updateline.decode(b"U,1,1,^P[]", 6, ("x",), {}, 0, failing, LIMIT) is None
    with pytest.raises(KeyboardInterrupt):
        _updateline.decode(b"U,1,1,^P[]", 6, ("x",), {}, 0, interrupted, LIMIT)


@needs_c
def test_a_str_subclass_is_a_str() -> None:
    class Text(str):
        pass

    before = (Text("foobar"),)
    assert _updateline.decode(b"U,1,1,^Tddxyzbc", 6, before, {}, 0, _hotpath._patch, LIMIT) == (
        "fooxyzar",)


@needs_c
def test_no_diff_makes_a_value_longer_than_the_limit() -> None:
    limits: list[int] = []

    def patch(
        old: str, payload: str, docs: dict[int, Any], key: int, limit: int, tried: bool
    ) -> str:
        limits.append(limit)
        return "y" * 6

    before = ("abc", "x")
    decode = _updateline.decode
    assert decode(b"U,1,1,^Tddxyz|", 6, before, {}, 0, patch, 6) == ("abcxyz", "x")
    assert decode(b"U,1,1,^Tddxyz|", 6, before, {}, 0, patch, 5) is None
    assert decode(b"U,1,1,|^P[]", 6, before, {}, 0, patch, 6) == ("abc", "yyyyyy")
    assert decode(b"U,1,1,|^P[]", 6, before, {}, 0, patch, 5) is None
    assert limits == [6, 5]  # the limit is handed on to the patch
    with pytest.raises(TypeError):
        decode(b"U,1,1,|", 6, before, {}, 0, patch)  # type: ignore[call-arg]


@pytest.mark.skipif(_hotpath.C_CUT is None, reason="only the compiled hot path keeps cuts")
def test_a_kept_cut_patches_the_field_itself() -> None:
    # The compiled hot path keeps a patched field as a _jsonpieces.Cut in docs: the line
    # decoder calls it first, and the Python patch (told it was tried) only when it refuses.
    from txlightstreamer.protocol import _jsonpieces, _jsontext

    text = '{"a":1,"b":[2,3]}'
    cut_of = _jsontext.tokenize(text, False)
    assert cut_of is not None
    calls: list[tuple[str, bool]] = []

    def patch(
        old: str, payload: str, docs: dict[int, Any], key: int, limit: int, tried: bool
    ) -> str | None:
        calls.append((payload, tried))
        return _hotpath._patch(old, payload, docs, key, limit, tried)

    docs: dict[int, Any] = {4: _jsonpieces.Cut(text, *cut_of)}
    replace = b'U,1,1,|^P[{"op":"replace","path":"/b/1","value":30}]'
    row = _updateline.decode(replace, 6, ("x", text), docs, 3, patch, LIMIT)
    assert row == ("x", '{"a":1,"b":[2,30]}') and calls == []
    assert docs[4].text is row[1]
    # Not a compact replace: the cut refuses, the Python patch decides (on pieces).
    add = b'U,1,1,|^P[{"op":"add","path":"/c","value":true}]'
    row = _updateline.decode(add, 6, row, docs, 3, patch, LIMIT)
    assert row == ("x", '{"a":1,"b":[2,30],"c":true}')
    assert calls == [('[{"op":"add","path":"/c","value":true}]', True)]
    # Cut again; a result longer than the limit is refused and not kept.
    row = _updateline.decode(replace, 6, row, docs, 3, patch, LIMIT)
    assert type(docs[4]) is _jsonpieces.Cut
    assert _updateline.decode(replace.replace(b"30", b"300"), 6, row, docs, 3, patch, 25) is None
    assert 4 not in docs


@pytest.mark.skipif(_hotpath.C_CUT is None, reason="only the compiled hot path keeps cuts")
def test_a_fields_first_cut_is_made_like_another_items() -> None:
    # The first patch of a field goes to Python, which cuts the text (tokenize); the line
    # decoder keeps that cut as the field's shape, and makes another item's first cut of the
    # field like it: its first patch does not go to Python. A text of another shape does.
    from txlightstreamer.protocol import _jsonpieces

    calls: list[int] = []

    def patch(
        old: str, payload: str, docs: dict[int, Any], key: int, limit: int, tried: bool
    ) -> str | None:
        calls.append(key)
        return _hotpath._patch(old, payload, docs, key, limit, tried)

    docs: dict[int, Any] = {}
    line = b'U,1,1,|^P[{"op":"replace","path":"/b/1","value":30}]'
    texts = {1: '{"a":1,"b":[2,3]}', 2: '{"a":10,"b":[20,3]}', 3: '{"a":1,"b":[2,3],"c":0}'}
    rows = {}
    for item, text in texts.items():  # items 1-3 of a two-field table: base 2 * (item - 1)
        base = 2 * (item - 1)
        rows[item] = _updateline.decode(line, 6, ("x", text), docs, base, patch, LIMIT)
        assert rows[item] == ("x", _hotpath._patch(text, line[9:].decode(), {}, 0, LIMIT))
        assert type(docs[base + 1]) is _jsonpieces.Cut and docs[base + 1].text is rows[item][1]
    assert calls == [1, 5]  # item 2's was made like item 1's; item 3's is another shape
    shapes = [key for key in docs if key < -(1 << 40)]
    assert len(shapes) == 1 and docs[shapes[0]] is docs[1]  # the first cut made, field 1
    again = _updateline.decode(line.replace(b"30", b"31"), 6, rows[2], docs, 2, patch, LIMIT)
    assert again == ("x", '{"a":10,"b":[20,31]}') and calls == [1, 5]


@pytest.mark.skipif(_hotpath.C_CUT is None, reason="only the compiled hot path keeps cuts")
def test_an_interrupt_in_a_kept_cut_goes_through() -> None:
    # Found by review: the line decoder cleared any exception from the cut, an interrupt too.
    from txlightstreamer.protocol import _jsonpieces

    armed = False

    class Interrupting:
        def __hash__(self) -> int:
            return hash("/a")

        def __eq__(self, other: object) -> bool:
            if armed:
                raise KeyboardInterrupt
            return False

    leaves: dict[Any, int] = {Interrupting(): 1, "/a": 1}
    docs: dict[int, Any] = {0: _jsonpieces.Cut('{"a":1}', ['{"a":', "1", "}"], leaves)}
    line = b'U,1,1,^P[{"op":"replace","path":"/a","value":2}]'
    armed = True
    with pytest.raises(KeyboardInterrupt):
        _updateline.decode(line, 6, ('{"a":1}',), docs, 0, _hotpath._patch, LIMIT)


def _token(text: str) -> bytes:
    """``text`` as a TLCP value token: its UTF-8 with ``%``, ``|``, CR and LF escaped."""
    return (text.replace("%", "%25").replace("|", "%7C").replace("\r", "%0D")
            .replace("\n", "%0A").encode("utf-8", "surrogatepass"))


@pytest.mark.skipif(_hotpath.C_CUT is None, reason="only the compiled hot path keeps cuts")
@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(same_shape(), st.lists(st.integers(0, 3), min_size=1, max_size=8), st.data())
def test_patch_lines_in_turn_give_pythons_rows(
    start: tuple[Any, Any], steps: list[int], data: st.DataObject
) -> None:
    # A field patched line after line, and sent whole in between: the C line decoder hands
    # the kept cut a plain ASCII payload straight from the line's bytes, and the rows are
    # the interpreted decoder's, step by step (escaped and non-ASCII payloads take a str).
    assert _updateline.CUT_BYTES
    doc = start[0]
    before: tuple[str | None, ...] = (encode_json(doc),)
    docs: list[dict[int, Any]] = [{}, {}]
    header = b"U,7,3,"
    for step in steps:
        new = _rescalar(doc, data.draw)
        if step == 0:  # sent whole
            token = _token(encode_json(new))
        else:
            ops = _replaces(doc, new)
            if step == 3:  # and an operation the cut does not take
                ops.append({"op": "add", "path": "/-" if isinstance(doc, list) else "/k",
                            "value": 1})
                new = json.loads(_reference(encode_json(doc), ops) or "null")
            token = b"^P" + _token(json.dumps(ops, separators=(",", ":"),
                                              ensure_ascii=step == 1))
        line = header + token
        expected = _python_row(line, len(header), before, docs[1], 3)
        row = _updateline.decode(line, len(header), before, docs[0], 3, _hotpath._patch, LIMIT)
        assert row == expected
        if row is None:
            return
        kept = docs[0].get(3)
        if kept is not None and step:
            assert kept.text is row[0]
        before = row
        doc = new


@pytest.mark.skipif(_hotpath.C_CUT is None, reason="only the compiled hot path keeps cuts")
def test_the_line_decoder_holds_the_capsule_it_reads() -> None:
    # Found by review: the line decoder kept a pointer into _jsonpieces' capsule without a
    # reference, so the capsule's end (its attribute deleted, another interpreter ending)
    # freed what each plain ^P then read (an error under AddressSanitizer).
    from txlightstreamer.protocol import _jsonpieces

    docs: dict[int, Any] = {}
    line = b'U,1,1,^P[{"op":"replace","path":"/a","value":2}]'
    assert _updateline.decode(line, 6, ('{"a":1}',), docs, 0, _hotpath._patch, LIMIT) == (
        '{"a":2}',)
    capsule = _jsonpieces._C_API  # type: ignore[attr-defined]
    del _jsonpieces._C_API  # type: ignore[attr-defined]
    try:
        junk = [bytearray(48) for _ in range(1000)]  # what may take a freed block
        again = line.replace(b"2}", b"3}")
        assert _updateline.decode(again, 6, ('{"a":2}',), docs, 0, _hotpath._patch, LIMIT) == (
            '{"a":3}',)
        del junk
    finally:
        _jsonpieces._C_API = capsule  # type: ignore[attr-defined]
