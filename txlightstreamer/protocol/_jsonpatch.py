"""
JSON Patch (RFC 6902) for ``^P`` values: ``add``/``replace``/``remove`` applied by a small
JSON-pointer walker, the other operations by ``jsonpatch``; one cached compact encoder.

The walker accepts and refuses exactly what ``jsonpatch`` does for those three operations
on parsed JSON (dicts, lists, scalars); any refusal is a `PatchError`.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from copy import deepcopy
from typing import Any, Final

__all__ = ["COPY_ALLOWANCE", "PatchError", "encode_json", "patch_document"]

#: A JSON Patch may copy at most the size of its inputs plus this much data.
COPY_ALLOWANCE: Final = 1 << 16


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _make_encoder() -> Callable[[Any], str]:
    """``json.dumps(doc, separators=(",", ":"), ensure_ascii=False)``, built once."""
    make = getattr(json.encoder, "c_make_encoder", None)
    quote = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or quote is None:
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    # The C encoder itself, made once (JSONEncoder.encode makes one per call). No cycle
    # check: parsed JSON and patch values cannot form one (a move into itself is refused).
    chunks = make(None, _refuse, quote, None, ":", ",", False, False, True)

    def encode(doc: Any) -> str:
        return "".join(chunks(doc, 0))

    return encode


#: The text of a patched value: compact, non-ASCII kept (as the official clients render it).
encode_json: Final = _make_encoder()

_FAST_OPS: Final = frozenset(("add", "replace", "remove"))


class PatchError(ValueError):
    """The patch cannot be applied (malformed, or it does not fit the document)."""


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


def _weight(node: Any, limit: int) -> int:
    """Approximate size of a JSON value (nodes plus string lengths), counted up to ``limit``."""
    total = 0
    stack = [node]
    while stack and total <= limit:
        item = stack.pop()
        total += 1
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                total += len(key)
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return total


def _apply_other(doc: Any, op: Any, budget: list[int]) -> Any:
    """Any other operation (``move``, ``copy``, ``test``, or a malformed one) by jsonpatch."""
    import jsonpatch

    if isinstance(op, dict) and op.get("op") == "copy" and isinstance(op.get("from"), str):
        try:
            source = jsonpatch.JsonPointer(op["from"]).resolve(doc)
        except Exception:
            source = None  # let jsonpatch report the bad pointer
        budget[0] -= _weight(source, budget[0])
        if budget[0] < 0:
            raise PatchError("its copy operations duplicate too much data")
    try:
        return jsonpatch.apply_patch(doc, [op], in_place=True)
    except Exception as exc:  # jsonpatch raises many exception types on bad input
        raise PatchError(str(exc)) from None


def patch_document(doc: Any, ops: Any, budget: int, copy_values: bool) -> Any:
    """
    Apply the parsed patch ``ops`` to the parsed ``doc`` (changed in place) and return the
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
            doc = _apply_other(doc, op, left)
    return doc
