"""
JSON Patch (RFC 6902) for ``^P`` values, the parts that stay interpreted: ``move``,
``copy`` and ``test`` by ``jsonpatch`` (`apply_other`), and one cached compact encoder.
``add``/``replace``/``remove`` are applied by the compiled walker,
`._jsontext.patch_document`; any refusal is a `PatchError`.
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
from collections.abc import Callable
from typing import Any, Final, cast

__all__ = ["COPY_ALLOWANCE", "PatchError", "apply_other", "encode_json", "quote_json", "scan_json"]

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
#: How `encode_json` writes a string (a key or a value).
quote_json: Final[Callable[[str], str]] = json.encoder.encode_basestring
#: ``scan_json(text, index)``: the value at ``index`` and where it ends, as json.loads parses
#: it (StopIteration if there is none), without json.loads' wrapper.
scan_json: Final[Callable[[str, int], tuple[Any, int]]] = json.scanner.make_scanner(
    cast(Any, json.JSONDecoder())  # typeshed types the decoder argument oddly
)

class PatchError(ValueError):
    """The patch cannot be applied (malformed, or it does not fit the document)."""


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


def apply_other(doc: Any, op: Any, budget: list[int]) -> Any:
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
