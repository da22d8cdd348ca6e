"""Second-level decoding of ``U`` value lists (tlcp.md §5)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from ._hotpath import MARKERS, MAX_DIFF_RESULT, decode_plain, unescape
from ._jsonpatch import COPY_ALLOWANCE, encode_json
from ._jsontext import patch_document
from .diff import apply_tlcp_diff
from .errors import ValueDecodeError

__all__ = ["MAX_DIFF_RESULT", "DecodedUpdate", "decode_update", "percent_decode"]

# Every two-character hex spelling (any letter case) mapped to its byte value.
_HEX_BYTES: dict[str, int] = {}
for _value in range(256):
    for _hi in {f"{_value >> 4:x}", f"{_value >> 4:X}"}:
        for _lo in {f"{_value & 15:x}", f"{_value & 15:X}"}:
            _HEX_BYTES[_hi + _lo] = _value
del _value, _hi, _lo


def percent_decode(text: str) -> str:
    """Decode UTF-8 ``%XX`` escapes in ``text``; ``+`` is left alone."""
    decoded = unescape(text)
    if decoded is not None:
        return decoded
    # A bad escape: find which, for the message.
    parts = text.split("%")
    try:
        buf = bytearray(parts[0].encode("utf-8"))
        for part in parts[1:]:
            byte = _HEX_BYTES.get(part[:2])
            if byte is None:
                raise ValueDecodeError(f"bad percent-escape {('%' + part[:2])!r}")
            buf.append(byte)
            if len(part) > 2:
                buf += part[2:].encode("utf-8")
        return buf.decode("utf-8")
    except UnicodeError:
        raise ValueDecodeError("percent-encoded text is not valid UTF-8") from None


class DecodedUpdate(NamedTuple):
    """Result of :func:`decode_update`."""

    #: The complete new row (``None`` = null field).
    values: list[str | None]
    #: 0-based field index -> JSON Patch operations applied (``None`` if no ``^P``).
    patches: dict[int, list[Any]] | None


def _field_error(field: int, reason: str) -> ValueDecodeError:
    return ValueDecodeError(f"field {field}: {reason}", field=field)


def _apply_json_patch(
    field: int, old: str, payload: str, max_length: int
) -> tuple[str, list[Any]]:
    """Apply a ``^P`` payload (already percent-decoded) to ``old``."""
    try:
        ops = json.loads(payload)
    except Exception:  # ValueError, RecursionError, ...
        raise _field_error(field, "the JSON Patch is not well-formed") from None
    if not isinstance(ops, list):
        raise _field_error(field, "the JSON Patch is not well-formed (not an array)")
    try:
        doc = json.loads(old)
    except Exception:
        raise _field_error(field, "cannot convert the previous value to JSON") from None
    try:
        # The operations go to the application: the document gets copies of their values.
        result = patch_document(doc, ops, len(old) + len(payload) + COPY_ALLOWANCE, True)
        text = encode_json(result)
    except Exception as exc:  # jsonpatch may raise many exception types on bad input
        raise _field_error(field, f"cannot apply the JSON Patch ({exc})") from None
    if len(text) > max_length:
        raise _field_error(field, f"the JSON Patch result exceeds {max_length} characters")
    return text, ops


def decode_update(
    raw: str,
    previous: Sequence[str | None] | None,
    num_fields: int,
    *,
    max_diff_result: int = MAX_DIFF_RESULT,
) -> DecodedUpdate:
    """
    Decode the raw value list of a ``U`` line against the item's previous row.

    A ``^P``/``^T`` diff whose result would be longer than ``max_diff_result``
    characters is refused with :class:`ValueDecodeError`.
    """
    if previous is not None:
        if len(previous) != num_fields:
            raise ValueDecodeError(
                f"previous row has {len(previous)} values, expected {num_fields}")
        # Fast path (most lines): anything but ^P, unless it is malformed.
        plain = decode_plain(raw, previous, num_fields, max_diff_result)
        if plain is not None:
            return DecodedUpdate(plain, None)
    tokens = raw.split("|")
    num_tokens = len(tokens)
    if previous is None and num_tokens == num_fields and "^" not in raw \
            and "%" not in raw and "" not in tokens:
        if "#" not in raw and "$" not in raw:
            # No marker token: the values are the tokens as they are.
            return DecodedUpdate(cast("list[str | None]", tokens), None)
        return DecodedUpdate([MARKERS.get(t, t) for t in tokens], None)
    if num_tokens > num_fields:
        raise _field_error(
            num_fields + 1, f"more values than the {num_fields} fields of the schema"
        )
    values: list[str | None] = []
    append = values.append
    patches: dict[int, list[Any]] | None = None
    for index, tok in enumerate(tokens):
        if not tok:
            if previous is None:
                raise _field_error(
                    len(values) + 1, "unchanged value in the first update of the item"
                )
            append(previous[len(values)])
            continue
        first = tok[0]
        if first == "#" and len(tok) == 1:
            append(None)
        elif first == "$" and len(tok) == 1:
            append("")
        elif first == "^":
            pos = len(values)
            kind = tok[1:2]
            if kind == "P" or kind == "T":
                if previous is None:
                    raise _field_error(pos + 1, f"^{kind} diff in the first update of the item")
                old = previous[pos]
                if old is None:
                    raise _field_error(pos + 1, f"^{kind} diff on a null field")
                try:
                    payload = percent_decode(tok[2:])
                    if kind == "T":
                        if len(old) + len(payload) > max_diff_result:
                            # The result is at most this long: check the real length.
                            result = apply_tlcp_diff(old, payload)
                            if len(result) > max_diff_result:
                                raise ValueDecodeError(
                                    f"the TLCP-diff result exceeds {max_diff_result} characters"
                                )
                            append(result)
                        else:
                            append(apply_tlcp_diff(old, payload))
                        continue
                except ValueDecodeError as exc:
                    raise _field_error(pos + 1, exc.reason) from None
                text, ops = _apply_json_patch(pos + 1, old, payload, max_diff_result)
                append(text)
                if patches is None:
                    patches = {}
                patches[pos] = ops
            else:
                digits = tok[1:]
                if not (digits.isdigit() and digits.isascii()):
                    raise _field_error(pos + 1, f"unknown ^ token {tok[:20]!r}")
                # Every following token consumes at least one field.
                room = num_fields - pos - (num_tokens - index - 1)
                if len(digits) > 9 or int(digits) > room:
                    raise _field_error(
                        pos + 1, f"{tok[:20]!r} overruns the {num_fields} fields of the schema"
                    )
                count = int(digits)
                if count == 0:
                    raise _field_error(pos + 1, "^0 is not a valid unchanged-fields count")
                if previous is None:
                    raise _field_error(pos + 1, "unchanged values in the first update of the item")
                values.extend(previous[pos : pos + count])
        elif "%" in tok:
            try:
                append(percent_decode(tok))
            except ValueDecodeError as exc:
                raise _field_error(len(values) + 1, exc.reason) from None
        else:
            append(tok)
    if len(values) != num_fields:
        raise _field_error(
            len(values) + 1, f"fewer values than the {num_fields} fields of the schema"
        )
    return DecodedUpdate(values, patches)
