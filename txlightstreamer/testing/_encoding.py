"""Server-side TLCP encoders (notification lines and ``U`` value lists).

Pure functions, no Twisted.  This module is deliberately independent of the
client codec in :mod:`txlightstreamer.protocol`, so that a bug in one of them
cannot hide itself by being mirrored in the other (see ``tlcp.md`` §2.5, §5).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import jsonpatch

__all__ = [
    "decode_percent",
    "encode_arg",
    "encode_diff_int",
    "encode_line",
    "encode_update",
    "encode_value",
    "json_patch_diff",
    "tlcp_diff",
]

_HEX = "0123456789ABCDEF"

# Characters percent-encoded inside ``U`` values: the value separator, the
# escape character itself, line breaks and other C0 controls plus DEL.
_VALUE_SPECIALS = frozenset("%|") | frozenset(chr(c) for c in range(0x20)) | {"\x7f"}
# Characters percent-encoded inside the other notification arguments: also the
# argument separator.  The official client splits those lines on every comma
# (tlcp.md §12.16), so commas are always encoded, even in a last argument.
_ARG_SPECIALS = _VALUE_SPECIALS | {","}


# One search finds whether a value needs any encoding at all (most do not).
_VALUE_SPECIALS_RE = re.compile("[%|\x00-\x1f\x7f]")
_ARG_SPECIALS_RE = re.compile("[%|,\x00-\x1f\x7f]")
_SEARCH = {_VALUE_SPECIALS: _VALUE_SPECIALS_RE.search, _ARG_SPECIALS: _ARG_SPECIALS_RE.search}
# A value written as it is: no special character, and not led by ``#``, ``$`` or ``^``.
_LITERAL_VALUE = re.compile("[^#$^%|\x00-\x1f\x7f][^%|\x00-\x1f\x7f]*")
# In ``|``-joined values: a special character, or a value empty or led by ``#$^``.
_ROW_NEEDS_WORK = re.compile("[%\x00-\x1f\x7f]|(?:^|\\|)(?:[#$^|]|$)")
# A ``%`` not followed by two hex digits.
_BAD_ESCAPE = re.compile("%(?![0-9a-fA-F]{2})")


def _quote(text: str, specials: frozenset[str]) -> str:
    """Percent-encode (UTF-8 based) every character of ``text`` in ``specials``."""
    search = _SEARCH.get(specials)
    if search is not None:
        if search(text) is None:
            return text
    elif not any(ch in specials for ch in text):
        return text
    out: list[str] = []
    for ch in text:
        if ch in specials:
            for byte in ch.encode("utf-8"):
                out.append("%" + _HEX[byte >> 4] + _HEX[byte & 15])
        else:
            out.append(ch)
    return "".join(out)


def encode_arg(text: str) -> str:
    """Encode one (non-``U``-value) notification argument."""
    return _quote(text, _ARG_SPECIALS)


def encode_line(tag: str, *args: str | int) -> str:
    """Build a notification line (without the trailing CR LF).

    ``int`` arguments are written in decimal; ``str`` arguments are
    percent-encoded (``%``, ``,``, ``|``, CR, LF and other controls).
    """
    if not args:
        return tag
    parts = [tag]
    for arg in args:
        if isinstance(arg, bool):
            raise TypeError("boolean notification argument")
        parts.append(str(arg) if isinstance(arg, int) else encode_arg(arg))
    return ",".join(parts)


def encode_value(text: str | None) -> str:
    """Encode one literal field value for a ``U`` value list (§5.1).

    ``None`` is ``#``, the empty string is ``$``; otherwise special characters
    are percent-encoded and a leading ``#``, ``$`` or ``^`` is always encoded.
    """
    if text is None:
        return "#"
    if _LITERAL_VALUE.fullmatch(text) is not None:
        return text
    if text == "":
        return "$"
    quoted = _quote(text, _VALUE_SPECIALS)
    first = quoted[0]
    if first == "#":
        return "%23" + quoted[1:]
    if first == "$":
        return "%24" + quoted[1:]
    if first == "^":
        return "%5E" + quoted[1:]
    return quoted


def decode_percent(text: str) -> str:
    """Decode UTF-8 based percent-encoding; ``+`` stays a plus.

    Raises :class:`ValueError` on a malformed escape or invalid UTF-8.
    """
    if "%" not in text:
        return text
    bad = _BAD_ESCAPE.search(text)
    if bad is not None:
        raise ValueError(f"malformed percent-escape at {bad.start()} in {text!r}")
    # Every escape is well formed: the rest is the standard decoding, strict on UTF-8.
    return unquote_to_bytes(text).decode("utf-8")


# --- TLCP-diff (§5.3) --------------------------------------------------------


def encode_diff_int(n: int) -> str:
    """Encode a TLCP-diff integer: base 26, upper-case digits, last digit lower-case."""
    if 0 <= n < _SMALL_DIFF_INTS:
        return _DIFF_INTS[n]
    return _encode_diff_int(n)


def _encode_diff_int(n: int) -> str:
    if n < 0:
        raise ValueError("negative TLCP-diff integer")
    digits = [n % 26]
    n //= 26
    while n:
        digits.append(n % 26)
        n //= 26
    digits.reverse()
    head = "".join(chr(ord("A") + d) for d in digits[:-1])
    return head + chr(ord("a") + digits[-1])


# The common lengths and offsets, encoded once.
_SMALL_DIFF_INTS = 26 * 26
_DIFF_INTS = [_encode_diff_int(n) for n in range(_SMALL_DIFF_INTS)]


def _bmp_only(text: str) -> bool:
    # The largest code point decides (one C-level pass instead of a Python loop).
    return text.isascii() or max(text) < "\U00010000"


def tlcp_diff(old: str, new: str) -> str:
    """Return the (not yet percent-encoded) TLCP-diff turning ``old`` into ``new``.

    Shape: COPY(common prefix) ADD(new middle) DEL(old middle) COPY(common
    suffix); trailing sections that are not needed are omitted (nothing is
    implicitly copied at the end, so a trailing DEL is never needed).
    Both strings must consist of BMP characters only.
    """
    limit = min(len(old), len(new))
    prefix = 0
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    added = new[prefix : len(new) - suffix]
    deleted = len(old) - prefix - suffix
    out = encode_diff_int(prefix)
    if suffix:
        return (
            out
            + encode_diff_int(len(added))
            + added
            + encode_diff_int(deleted)
            + encode_diff_int(suffix)
        )
    if added:
        out += encode_diff_int(len(added)) + added
    return out


_JSON_LEADS = ("[", "{")


def _as_json_container(text: str) -> Any:
    """Parse ``text`` as a JSON object or array, or return ``None``."""
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, (dict, list)) else None


def json_patch_diff(old: str, new: str) -> str | None:
    """Return a compact RFC 6902 patch from ``old`` to ``new`` (both JSON texts).

    ``None`` if either is not a JSON object/array or the computed patch does
    not reproduce ``new`` when applied to ``old``.
    """
    old_obj = _as_json_container(old)
    new_obj = _as_json_container(new)
    if old_obj is None or new_obj is None:
        return None
    try:
        patch = jsonpatch.make_patch(old_obj, new_obj)
        if jsonpatch.apply_patch(old_obj, patch.patch) != new_obj:
            return None
    except Exception:  # a library bug must only cost us the optimisation
        return None
    return json.dumps(patch.patch, separators=(",", ":"), ensure_ascii=False)


def _changed_token(old: str | None, new: str | None, diffs: str) -> str:
    literal = encode_value(new)
    if not diffs or old is None or new is None or old == "" or new == "":
        return literal
    best = literal
    # Only a text led by "[" or "{" can be a JSON container (see _as_json_container).
    old_may_be_json = old.lstrip()[:1] in _JSON_LEADS
    if "P" in diffs and old_may_be_json and new.lstrip()[:1] in _JSON_LEADS:
        patch = json_patch_diff(old, new)
        if patch is not None:
            candidate = "^P" + _quote(patch, _VALUE_SPECIALS)
            if len(candidate) < len(best):
                best = candidate
    # After a ^P the official client holds the field as JSON and refuses a
    # later ^T on it, so ^T is never used on an old value that is a JSON
    # container while ^P is enabled (stateless, conservative rule).
    if (
        "T" in diffs
        and len(best) > 3  # "^T" and at least one character: never shorter
        and _bmp_only(old)
        and _bmp_only(new)
        and not ("P" in diffs and old_may_be_json and _as_json_container(old) is not None)
    ):
        candidate = "^T" + _quote(tlcp_diff(old, new), _VALUE_SPECIALS)
        if len(candidate) < len(best):
            best = candidate
    return best


def encode_first_row(values: Sequence[str | None]) -> str:
    """``encode_update(None, values)``: every value literal (an item's first update)."""
    if None not in values:
        # Usually the joined values are the answer: one check instead of one per value.
        joined = "|".join(values)  # type: ignore[arg-type]  # no None
        if joined.count("|") == len(values) - 1 and _ROW_NEEDS_WORK.search(joined) is None:
            return joined
    literal = _LITERAL_VALUE.fullmatch
    tokens = [
        value if value is not None and literal(value) is not None else encode_value(value)
        for value in values
    ]
    return "|".join(tokens)


def encode_update(
    previous: Sequence[str | None] | None,
    new: Sequence[str | None],
    *,
    diffs: str = "",
) -> str:
    """Encode the ``|``-separated value list of one ``U`` line (§5.1).

    ``previous`` is the row last sent to the same subscription for the same
    item (``None`` for the first update, which is always fully literal).
    Unchanged fields become empty tokens, runs of two or more become ``^n``.
    ``diffs`` may contain ``"T"`` (TLCP-diff) and/or ``"P"`` (JSON Patch);
    a diff is used only when it is shorter than the literal value.
    """
    if previous is None or len(previous) != len(new):
        return encode_first_row(new)
    tokens: list[str] = []
    run = 0

    def close_run() -> None:
        if run == 1:
            tokens.append("")
        elif run > 1:
            tokens.append(f"^{run}")

    for old, cur in zip(previous, new, strict=True):
        if old == cur:
            run += 1
            continue
        close_run()
        run = 0
        tokens.append(_changed_token(old, cur, diffs))
    close_run()
    return "|".join(tokens)
