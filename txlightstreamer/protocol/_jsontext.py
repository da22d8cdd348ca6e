"""
``^P`` on the text itself: when a field's text is exactly `encode_json` of its document
(the hot path produced it, or `tokenize` checked it), scalar operations are applied to the
text, and the result is exactly `encode_json` of the patched document. Compiled with the
hot path; `._hotpath._patch` falls back to parsing, walking (`patch_document`, at the end of
this module) and re-encoding otherwise.
"""

from __future__ import annotations

import json
from copy import deepcopy
from math import isfinite
from typing import Any, Final

from ._jsonpatch import PatchError, apply_other, encode_json, quote_json, scan_json

# Deepest nesting `tokenize` accepts (json.loads and encode_json recurse; this stays far below).
_MAX_DEPTH: Final = 64
# JSON Patch operations the walker applies itself.
_FAST_OPS: Final = frozenset(("add", "replace", "remove"))
# "/0", "/1"...: the pointer parts of the first array indexes, made once.
_INDEXES: Final = [f"/{index}" for index in range(64)]


class JsonText:
    """A field's text that is exactly encode_json of its document, with, when `tokenize` cut
    it, its pieces (scalars at the indexes ``leaves`` gives by JSON pointer)."""

    def __init__(self, text: str, pieces: list[str] | None, leaves: dict[str, int] | None) -> None:
        self.text = text
        self.pieces = pieces
        self.leaves = leaves


def loads(payload: str) -> Any:
    """json.loads(payload), without its Python wrapper when nothing surrounds the value."""
    if payload and ord(payload[0]) > 32:
        try:
            doc, end = scan_json(payload, 0)
        except StopIteration:
            end = -1
        if end == len(payload):
            return doc
    return json.loads(payload)


def _at(text: str, i: int, word: str) -> bool:
    """``text.startswith(word, i)``, which mypyc would call as a Python method."""
    n = len(word)
    if n > 4:
        return text[i : i + n] == word
    if i + n > len(text):
        return False
    for k in range(n):  # short: no slice to allocate
        if ord(text[i + k]) != ord(word[k]):
            return False
    return True


def _string_end(text: str, i: int) -> int:
    """Index after the JSON string opening at ``text[i]``; -1 if it does not end."""
    j = text.find('"', i + 1)
    while j > 0 and ord(text[j - 1]) == 92:
        k = j - 2
        while ord(text[k]) == 92:
            k -= 1
        if (j - k) & 1:  # j - 1 - k backslashes, an even number: the quote is real
            break
        j = text.find('"', j + 1)
    return j + 1 if j > 0 else -1


def _value_end(text: str, i: int) -> int:
    """Index after the value starting at ``text[i]`` of a compact JSON text."""
    c = ord(text[i])
    if c == 34:
        return _string_end(text, i)
    n = len(text)
    if c != 91 and c != 123:
        while i < n:
            c = ord(text[i])
            if c == 44 or c == 93 or c == 125:  # , ] }
                break
            i += 1
        return i
    depth = 0
    while i < n:
        c = ord(text[i])
        if c == 34:
            i = _string_end(text, i)
            if i < 0:
                return -1
            continue
        if c == 91 or c == 123:
            depth += 1
        elif c == 93 or c == 125:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def _child(text: str, start: int, part: str) -> tuple[int, int, int]:
    """
    In the container at ``text[start]``, the member or element ``part`` names:
    (where it starts, with its key; where its value starts; where it ends), or
    (-1, index of the closing bracket, number of children) when it is not there.
    """
    obj = ord(text[start]) == 123
    key = quote_json(part) if obj else ""
    wanted = -1
    if not obj and part != "-":
        if not (part.isdigit() and part.isascii()) or (part[0] == "0" and len(part) > 1):
            return -1, -1, -1  # not an array index: the walker reports it
        wanted = int(part)
    i = start + 1
    count = 0
    if ord(text[i]) == (125 if obj else 93):
        return -1, i, 0
    while True:
        begin = i
        if obj:
            end = _string_end(text, i)
            if end < 0 or ord(text[end]) != 58:
                return -1, -1, -1
            found = end - i == len(key) and _at(text, i, key)
            i = end + 1
        else:
            found = count == wanted
        end = _value_end(text, i)
        if end < 0 or end >= len(text):
            return -1, -1, -1
        if found:
            return begin, i, end
        count += 1
        if ord(text[end]) != 44:
            return -1, end, count
        i = end + 1


def splice(text: str, op: Any) -> str | None:
    """``text`` (compact, canonical) after the operation ``op``; None if ``op`` is not an
    add/replace/remove of a scalar that fits (the walker then applies or refuses it)."""
    if type(op) is not dict:
        return None
    kind = op.get("op")
    path = op.get("path")
    if type(path) is not str or not path or path[0] != "/":
        return None
    new = ""
    if kind == "replace" or kind == "add":
        if "value" not in op:
            return None
        new = scalar_json(op["value"])
        if not new:
            return None
    elif kind != "remove":
        return None
    parts = path.split("/")
    if "~" in path:
        if "~" in path.replace("~0", "").replace("~1", ""):
            return None  # a bad escape: the walker reports it
        parts = [part.replace("~1", "/").replace("~0", "~") for part in parts]
    last = len(parts) - 1
    start = 0
    for depth in range(1, last + 1):
        c = ord(text[start])
        if c != 91 and c != 123:
            return None
        begin, value, end = _child(text, start, parts[depth])
        if depth < last:
            if begin < 0:
                return None
            start = value
        elif begin >= 0:
            if kind == "remove":
                if ord(text[end]) == 44:
                    return text[:begin] + text[end + 1 :]
                if ord(text[begin - 1]) == 44:
                    return text[: begin - 1] + text[end:]
                return text[:begin] + text[end:]
            if kind == "add" and c == 91:
                return text[:begin] + new + "," + text[begin:]
            return text[:value] + new + text[end:]
        elif kind == "add" and value >= 0:
            leaf = parts[last]
            if c == 123:
                new = quote_json(leaf) + ":" + new
            elif leaf != "-" and int(leaf) != end:
                return None  # beyond the end of the array
            return text[:value] + ("," if end else "") + new + text[value:]
    return None


def scalar_json(value: Any) -> str:
    """encode_json(value) for a JSON scalar; "" for a container."""
    kind = type(value)
    if kind is str:
        return quote_json(value)
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value) if isfinite(value) else encode_json(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return ""


def replace_leaves(pieces: list[str], leaves: dict[str, int], ops: list[Any]) -> int:
    """Apply the leading ``replace`` operations of ``ops`` that put a scalar where a scalar
    is; returns how many it applied."""
    done = 0
    for op in ops:
        if type(op) is not dict or op.get("op") != "replace" or "value" not in op:
            break
        path = op.get("path")
        index = leaves.get(path, -1) if type(path) is str else -1
        if index < 0:
            break
        new = scalar_json(op["value"])
        if not new:
            break
        pieces[index] = new
        done += 1
    return done


def replace_compact(payload: str, pieces: list[str], leaves: dict[str, int]) -> bool:
    """
    Apply ``payload`` when it is a compact JSON Patch of ``replace`` operations only, written
    ``{"op":"replace","path":...,"value":...}``, each putting a scalar written as encode_json
    writes it where a scalar is; False, with ``pieces`` unchanged, for any other payload
    (json.loads then reads it).
    """
    n = len(payload)
    if n < 3 or ord(payload[0]) != 91:
        return False
    targets: list[int] = []
    values: list[str] = []
    i = 1
    while True:
        if not _at(payload, i, '{"op":"replace","path":"'):
            return False
        i += 24
        end = payload.find('"', i)
        # A pointer of leaves has no escape nor control character: if found, it is as read.
        index = leaves.get(payload[i:end], -1) if end > 0 else -1
        if index < 0 or not _at(payload, end, '","value":'):
            return False
        i = end + 10
        end = _scalar_end(payload, i, True) if i < n else -1
        if end < 0 or end + 1 >= n or ord(payload[end]) != 125:
            return False
        targets.append(index)
        values.append(payload[i:end])
        c = ord(payload[end + 1])
        i = end + 2
        if c == 93:
            break
        if c != 44:
            return False
    if i != n:
        return False
    for k in range(len(targets)):
        pieces[targets[k]] = values[k]
    return True


def recut(text: str, template: list[str]) -> list[str] | None:
    """
    ``text`` cut as `tokenize` cut the text of ``template`` (its pieces), when it has the
    very same structure (the pieces between scalars) and each of its scalars is written as
    encode_json writes it; None otherwise. The template's leaves then hold for it.
    """
    pieces: list[str] = []
    n = len(text)
    i = 0
    last = len(template) - 1
    for k in range(0, last, 2):
        between = template[k]
        if not _at(text, i, between):
            return None
        i += len(between)
        end = _scalar_end(text, i, True) if i < n else -1
        if end < 0:
            return None
        pieces.append(between)
        pieces.append(text[i:end])
        i = end
    if i + len(template[last]) != n or not _at(text, i, template[last]):
        return None
    pieces.append(template[last])
    return pieces


def _scalar_end(text: str, i: int, verify: bool) -> int:
    """Index after the scalar at ``text[i]``; -1 if it is not one `tokenize` takes (with
    ``verify``: exactly as encode_json writes it)."""
    n = len(text)
    c = ord(text[i])
    if c == 34:  # a string without escapes or control characters
        i += 1
        while i < n:
            c = ord(text[i])
            if c == 34:
                return i + 1
            if c == 92 or c < 32:
                return -1
            i += 1
        return -1
    if c == 116 or c == 102 or c == 110:  # t f n
        word = "true" if c == 116 else "false" if c == 102 else "null"
        return i + len(word) if _at(text, i, word) else -1
    start = i
    if c == 45:  # -
        i += 1
    digits = i
    while i < n and 48 <= ord(text[i]) <= 57:
        i += 1
    if i == digits or (ord(text[digits]) == 48 and i - digits > 1):
        return -1  # no digits, or a leading zero
    whole = i
    if i < n and ord(text[i]) == 46:  # .
        i += 1
        mark = i
        while i < n and 48 <= ord(text[i]) <= 57:
            i += 1
        if i == mark:
            return -1
    exponent = i < n and (ord(text[i]) | 32) == 101  # e or E
    if exponent:
        i += 1
        if i < n and (ord(text[i]) == 43 or ord(text[i]) == 45):
            i += 1
        mark = i
        while i < n and 48 <= ord(text[i]) <= 57:
            i += 1
        if i == mark:
            return -1
    if verify:
        if i == whole:  # an integer: "-0" and huge ones are written otherwise
            if (c == 45 and i - start == 2 and ord(text[digits]) == 48) or i - start > 400:
                return -1
        elif exponent or not _shortest(text, digits, whole, i):  # only repr tells
            number = text[start:i]
            if repr(float(number)) != number:
                return -1
    return i


def _shortest(text: str, digits: int, point: int, end: int) -> bool:
    """
    True when the number ``text[digits:end]`` (a dot at ``point``, no exponent) is surely
    how repr writes its float: at most 15 significant digits (no other such decimal is as
    close to that float), the fraction without trailing zeros (but "x.0"), and no more than
    3 zeros after "0." (repr writes 1e-05 and smaller with an exponent).
    """
    if point >= end or ord(text[point]) != 46:
        return False
    last = ord(text[end - 1])
    if last == 48 and end - point != 2:
        return False  # a trailing zero: repr drops it
    first = digits
    if ord(text[digits]) == 48:  # 0.xxx: count from the first non-zero digit
        first = point + 1
        while first < end and ord(text[first]) == 48:
            first += 1
        if first == end:
            return end - point == 2  # 0.0
        if first - point > 4:
            return False
        return end - first <= 15
    return (point - digits) + (end - point - 1) <= 15


def tokenize(text: str, verify: bool) -> tuple[list[str], dict[str, int]] | None:
    """
    ``text`` cut into pieces at its scalars, and the piece index of each scalar by its JSON
    pointer; None for a text it does not take (a string with escapes, deep nesting...) or,
    with ``verify``, one that is not exactly encode_json of its document.
    """
    pieces: list[str] = []
    leaves: dict[str, int] = {}
    kinds: list[int] = []  # the open containers: 91 ([) or 123 ({)
    paths: list[str] = []  # their pointers
    counts: list[int] = []  # their children so far
    seen: set[str] = set()  # member pointers (a repeated key is not encode_json's)
    n = len(text)
    i = 0
    last = 0  # where the piece being built starts
    path = ""
    while True:
        if i >= n:
            return None
        c = ord(text[i])
        opened = False
        if c == 91 or c == 123:
            i += 1
            if i < n and ord(text[i]) == c + 2:
                i += 1  # empty
            elif len(kinds) >= _MAX_DEPTH:
                return None
            else:
                kinds.append(c)
                paths.append(path)
                counts.append(0)
                opened = True
        else:
            end = _scalar_end(text, i, verify)
            if end < 0:
                return None
            pieces.append(text[last:i])
            leaves[path] = len(pieces)
            pieces.append(text[i:end])
            last = i = end
        if not opened:  # close what ends here, up to the next sibling
            while True:
                if not kinds:
                    if i != n:
                        return None
                    pieces.append(text[last:])
                    return pieces, leaves
                if i >= n:
                    return None
                c = ord(text[i])
                i += 1
                if c == 44:
                    break
                if c != kinds[-1] + 2:
                    return None
                kinds.pop()
                paths.pop()
                counts.pop()
        # the next child of the innermost open container starts at i
        count = counts[-1]
        counts[-1] = count + 1
        if kinds[-1] == 91:
            path = paths[-1] + _INDEXES[count] if count < 64 else f"{paths[-1]}/{count}"
            continue
        if i >= n or ord(text[i]) != 34:
            return None
        end = _scalar_end(text, i, False)
        if end < 0 or end >= n or ord(text[end]) != 58:
            return None
        key = text[i + 1 : end - 1]
        if "~" in key or "/" in key:
            key = key.replace("~", "~0").replace("/", "~1")
        path = f"{paths[-1]}/{key}"
        if verify:
            if path in seen:
                return None
            seen.add(path)
        i = end + 1


# -- JSON Patch: add/replace/remove walked here, as jsonpatch applies them ----------------
# (property-tested against jsonpatch; any other operation is jsonpatch's, via apply_other)

def _unescape(part: str) -> str:
    # RFC 6901: "~1" is "/", "~0" is "~", in that order; any other "~" is invalid.
    if "~" not in part:
        return part
    rest = part.replace("~0", "").replace("~1", "")
    if "~" in rest:
        raise PatchError(f"invalid escape in JSON pointer part {part[:40]!r}")
    return part.replace("~1", "/").replace("~0", "~")


def _index(part: str, container: list[Any]) -> int:
    """An array index as RFC 6901 spells it (no sign, no leading zero); '-' is the end."""
    if part == "-":
        return len(container)
    if not (part.isdigit() and part.isascii()) or (part[0] == "0" and len(part) > 1):
        raise PatchError(f"{part[:40]!r} is not a valid array index")
    return int(part)


def _parent(doc: Any, parts: list[str], end: int) -> Any:
    """The container that ``parts[end]`` refers into (``parts[0]`` is the empty root)."""
    for index in range(1, end):
        part = parts[index]
        if type(doc) is dict:
            if part not in doc:
                raise PatchError(f"member {part[:40]!r} not found")
            doc = doc[part]
        elif type(doc) is list:
            index = _index(part, doc)
            if index >= len(doc):
                raise PatchError(f"index {part[:40]!r} is out of bounds")
            doc = doc[index]
        else:
            raise PatchError(f"cannot apply {part[:40]!r} to a JSON scalar")
    return doc


def _apply_fast(doc: Any, kind: str, op: dict[str, Any], copy_values: bool) -> Any:
    path = op.get("path")
    if type(path) is not str:
        raise PatchError("operation without a valid 'path'")
    value: Any = None
    if kind != "remove":
        if "value" not in op:
            raise PatchError(f"{kind} operation without a 'value'")
        value = op["value"]
        if copy_values and type(value) in (dict, list):
            value = deepcopy(value)  # the operations are handed to the application
    if not path:
        if kind == "remove":
            raise PatchError("cannot remove the whole document")
        return value
    parts = path.split("/")
    if parts[0]:
        raise PatchError("a JSON pointer must start with '/'")
    if "~" in path:
        parts = [_unescape(part) for part in parts]
    target = _parent(doc, parts, len(parts) - 1) if len(parts) > 2 else doc
    leaf = parts[-1]
    if type(target) is dict:
        if kind == "add":
            target[leaf] = value
        elif leaf not in target:
            raise PatchError(f"cannot {kind} the missing member {leaf[:40]!r}")
        elif kind == "replace":
            target[leaf] = value
        else:
            del target[leaf]
    elif type(target) is list:
        index = _index(leaf, target)
        size = len(target)
        if kind == "add":
            if index > size:
                raise PatchError("cannot insert outside of the array")
            target.insert(index, value)
        elif index >= size or leaf == "-":
            raise PatchError(f"cannot {kind} outside of the array")
        elif kind == "replace":
            target[index] = value
        else:
            del target[index]
    else:
        raise PatchError(f"cannot {kind} {leaf[:40]!r} in a JSON scalar")
    return doc


def patch_document(doc: Any, ops: Any, budget: int, copy_values: bool) -> Any:
    """
    Apply the parsed JSON Patch ``ops`` to the parsed ``doc`` (changed in place) and return the
    result; ``copy`` operations may duplicate at most ``budget`` of data. ``copy_values``
    inserts copies of the operations' values, when the operations are kept elsewhere.
    """
    if type(ops) is not list:
        raise PatchError("the JSON Patch is not an array")
    left = [budget]
    for op in ops:
        kind = op.get("op") if type(op) is dict else None
        if type(kind) is str and kind in _FAST_OPS:
            doc = _apply_fast(doc, kind, op, copy_values)
        else:
            doc = apply_other(doc, op, left)
    return doc
