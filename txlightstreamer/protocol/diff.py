"""TLCP-diff decoding (tlcp.md §5.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from ._hotpath import bmp_only, tlcp_diff_bmp
from .errors import ValueDecodeError

__all__ = ["apply_tlcp_diff"]

_SECTION_NAMES = ("COPY", "ADD", "DEL")


def apply_tlcp_diff(old: str, diff: str) -> str:
    """
    Apply the (already percent-decoded) TLCP-diff ``diff`` to ``old``.

    Counts are UTF-16 code units, as the official clients count them (JavaScript strings):
    they equal code points unless a value holds characters outside the BMP, which a
    conformant server never diffs; such a diff is still applied as the official client does.
    """
    fast = tlcp_diff_bmp(old, diff)  # compiled; None for astral values or a bad diff
    if fast is not None:
        return fast
    if not (bmp_only(old) and bmp_only(diff)):
        pieces = _apply(_utf16(old), _utf16(diff))
        return _from_utf16([unit for piece in pieces for unit in piece])
    return "".join(cast("list[str]", _apply(old, diff)))


def _utf16(text: str) -> list[str]:
    """The UTF-16 code units of ``text``, each as a one-character string (surrogates kept)."""
    data = text.encode("utf-16-le", "surrogatepass")
    return [chr(unit) for unit in memoryview(data).cast("H")]


def _from_utf16(units: list[str]) -> str:
    """Join code units back, pairing surrogates into characters where they form pairs."""
    # A diff that splits a pair leaves a lone surrogate, as in the official (JS) client.
    return "".join(units).encode("utf-16-le", "surrogatepass").decode(
        "utf-16-le", "surrogatepass")


def _apply(old: Sequence[str], diff: Sequence[str]) -> list[Sequence[str]]:
    """The pieces of the result: slices of ``old`` and ``diff`` (strings or unit lists)."""
    out: list[Sequence[str]] = []
    old_len = len(old)
    diff_len = len(diff)
    # No meaningful count can exceed this; stop big numbers from growing unboundedly.
    limit = old_len if old_len > diff_len else diff_len
    cursor = 0  # position in old
    i = 0  # position in diff
    section = 0  # 0 = COPY, 1 = ADD, 2 = DEL
    while i < diff_len:
        count = 0
        while True:
            if i >= diff_len:
                raise ValueDecodeError(f"Bad TLCP-diff: truncated {_SECTION_NAMES[section]} count")
            ch = diff[i]
            i += 1
            if "A" <= ch <= "Z":
                count = count * 26 + (ord(ch) - 65)
                if count > limit:
                    raise ValueDecodeError(
                        f"Bad TLCP-diff: {_SECTION_NAMES[section]} count out of range"
                    )
            elif "a" <= ch <= "z":
                count = count * 26 + (ord(ch) - 97)
                break
            else:
                raise ValueDecodeError(
                    f"Bad TLCP-diff: unexpected character {ch!r} where a number is expected"
                )
        if section == 0:
            end = cursor + count
            if end > old_len:
                raise ValueDecodeError(
                    f"Bad TLCP-diff: COPY {count} exceeds the old value ({old_len - cursor} left)"
                )
            out.append(old[cursor:end])
            cursor = end
            section = 1
        elif section == 1:
            end = i + count
            if end > diff_len:
                raise ValueDecodeError(
                    f"Bad TLCP-diff: ADD {count} exceeds the diff ({diff_len - i} left)"
                )
            out.append(diff[i:end])
            i = end
            section = 2
        else:
            end = cursor + count
            if end > old_len:
                raise ValueDecodeError(
                    f"Bad TLCP-diff: DEL {count} exceeds the old value ({old_len - cursor} left)"
                )
            cursor = end
            section = 0
    return out
