"""
The hot path: ``U`` lines of live subscriptions, decoded and delivered in one loop.

Nearly every line of a busy stream is an update whose values are plain or escaped tokens,
``#``/``$`` markers, ``^n`` runs and ``^T``/``^P`` diffs. This module decodes those, for
subscriptions that asked for nothing richer than ``on_update(item, row)``, an item's
first update (its MERGE snapshot) included; anything else (another tag, a malformed line
or a bad diff) stops the loop and goes to the general parser, which decodes it or reports
it. No Twisted import: this is
pure code, compiled with mypyc when the package is built with a C compiler, and the same
code runs interpreted otherwise (``COMPILED`` tells which). ``^P`` patches: `._jsontext`
(compiled with this module) changes the text the lane kept of a field in place of parsing,
walking and re-encoding it, and has the walker for ``add``/``replace``/``remove``;
`._jsonpatch` has the rest and the encoder. The compiled build adds three C modules, each
checked against the Python it stands for: `._updateline` decodes a line's values from its
bytes (``C_LINE``), `._tlcpdiff` applies a ``^T`` (``C_DIFF``) and `._jsonpieces` the
commonest ``^P`` (``C_CUT``, a field's text kept with its cut as offsets).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Final

from ._jsonpatch import COPY_ALLOWANCE, encode_json
from ._jsontext import (
    JsonText,
    loads,
    patch_document,
    recut,
    replace_compact,
    replace_leaves,
    splice,
    tokenize,
)

Value = str | None
Row = tuple[Value, ...]

#: Whole-token markers: null and the empty string.
MARKERS: Final[dict[str, Value]] = {"#": None, "$": ""}
#: Longest value (in characters) a ``^P`` or ``^T`` diff may produce. A diff is tiny
#: compared with what it can build (a JSON Patch ``copy`` doubles a document with a
#: 40-byte operation), so without this bound a few lines could exhaust memory.
MAX_DIFF_RESULT: Final = 1 << 24
# Longest sub id / item index the loop parses (longer ones go to the general parser).
_MAX_DIGITS: Final = 9


def _run_length(token: str) -> int:
    """n for a ``^n`` token; 0 for any other token starting with ``^`` (diff, malformed)."""
    size = len(token)
    if size == 2 or size == 3:  # the usual runs, read without a lookup (no hashing)
        n = ord(token[1]) - 48
        if n < 0 or n > 9:
            return 0
        if size == 3:
            d = ord(token[2]) - 48
            if d < 0 or d > 9:
                return 0
            n = n * 10 + d
        return n
    digits = token[1:]
    if digits.isdigit() and digits.isascii() and len(digits) < 7:
        return int(digits)
    return 0


def decode_plain(
    raw: str, previous: Sequence[Any], num_fields: int, max_result: int = MAX_DIFF_RESULT
) -> list[Value] | None:
    """
    The new row of an item from its previous row and the raw values of a ``U`` line, when
    they hold only plain or percent-escaped tokens, markers, ``^n`` runs and ``^T`` diffs of
    BMP-only values; None for anything else (``^P``, a wrong count, a bad run, escape or
    diff), which the full decoder handles or reports.
    ``previous`` is a list or a tuple (its items are taken as they are, unchecked).
    """
    if len(previous) != num_fields:
        return None
    if "^" not in raw and "#" not in raw and "$" not in raw and "%" not in raw:
        # The commonest line: new values, and empty tokens for unchanged ones.
        tokens = raw.split("|")
        if len(tokens) != num_fields:
            return None
        # A tuple, so that compiled code indexes it directly.
        before: tuple[Any, ...] = previous if type(previous) is tuple else tuple(previous)
        values: list[Any] = []
        i = 0  # index of the next field
        for token in tokens:
            values.append(token if token else before[i])
            i += 1
        return values
    return decode_rich(raw, previous, num_fields, None, 0, max_result)


def decode_rich(
    raw: str,
    previous: Sequence[Any],
    num_fields: int,
    docs: dict[int, Any] | None,
    base: int,
    max_result: int = MAX_DIFF_RESULT,
) -> list[Value] | None:
    """
    `decode_plain` for any line; with ``docs`` it also applies ``^P`` patches, keeping what
    it knows of each field's text under ``base + field index`` (its ``^P`` result) and
    ``-1 - base - field index`` (a non-ASCII ``^T`` result), valid while the field still
    holds that very string. None when the line is not valid (or needs the general
    decoder), which then decodes or reports it.
    """
    # A tuple, so that compiled code indexes and slices it directly.
    before: tuple[Any, ...] = previous if type(previous) is tuple else tuple(previous)
    return _decode_tokens(raw.split("|"), "%" in raw, before, num_fields, docs, base, max_result)


def _decode_tokens(
    tokens: list[str],
    escaped: bool,
    before: tuple[Any, ...],
    num_fields: int,
    docs: dict[int, Any] | None,
    base: int,
    max_result: int,
) -> list[Value] | None:
    """`decode_rich` on the tokens of the line (``escaped``: the line holds a ``%``)."""
    values: list[Any] = []
    i = 0  # index of the next field
    for token in tokens:
        if i >= num_fields:
            return None  # more values than fields
        if not token:
            values.append(before[i])
            i += 1
            continue
        first = ord(token[0])
        if first == 94:  # ^
            kind = ord(token[1]) if len(token) > 1 else 0
            if kind == 84 or kind == 80:  # T, P
                old = before[i]
                if old is None:
                    return None
                payload: str | None = token[2:]
                if escaped and payload is not None and "%" in payload:
                    payload = unescape(payload)
                if payload is None:
                    return None
                if kind == 84:
                    c_diff = C_DIFF
                    if c_diff is not None:  # one allocation, BMP known from the kind
                        result = c_diff(old, payload)
                    elif old.isascii():
                        result = _apply_diff(old, payload) if bmp_only(payload) else None
                    elif docs is None:
                        result = tlcp_diff_bmp(old, payload)
                    else:
                        result = _diff_kept(old, payload, docs, -1 - base - i)
                else:
                    if docs is None:
                        return None
                    result = _patch(old, payload, docs, base + i, max_result)
                if result is None or len(result) > max_result:
                    return None
                values.append(result)
                i += 1
                continue
            n = _run_length(token)
            if n == 0 or i + n > num_fields:
                return None
            values.extend(before[i : i + n])
            i += n
        elif first == 35 and len(token) == 1:  # #
            values.append(None)
            i += 1
        elif first == 36 and len(token) == 1:  # $
            values.append("")
            i += 1
        elif escaped and "%" in token:
            text = unescape(token)
            if text is None:
                return None
            values.append(text)
            i += 1
        else:
            values.append(token)
            i += 1
    return values if i == num_fields else None


def decode_first(raw: str, num_fields: int) -> list[Value] | None:
    """
    An item's first row (no previous row) from the raw values of its first ``U`` line;
    None when the general decoder must decode or report it (there an empty token, a
    ``^n`` run or a ``^T``/``^P`` diff is an error: the first update gives every field).
    """
    tokens: list[Any] = raw.split("|")
    if len(tokens) != num_fields or not first_row(tokens, "%" in raw):
        return None
    return tokens


def first_row(tokens: list[Any], escaped: bool) -> bool:
    """
    Turn the tokens of an item's first update into its values, in place (markers to
    null and empty, escapes decoded); False (tokens then unusable) if one cannot be a
    value of a first update or is malformed.
    """
    k = 0
    for token in tokens:
        if not token:
            return False  # unchanged: there is nothing to keep
        first = ord(token[0])
        if first == 94:  # ^: a run or a diff of nothing
            return False
        if first == 35 and len(token) == 1:  # #
            tokens[k] = None
        elif first == 36 and len(token) == 1:  # $
            tokens[k] = ""
        elif escaped and "%" in token:
            text = unescape(token)
            if text is None:
                return False
            tokens[k] = text
        k += 1
    return True


def _hex(c: int) -> int:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


def unescape(text: str) -> str | None:
    """``text`` with its UTF-8 ``%XX`` escapes decoded; None if one is bad."""
    pos = text.find("%")
    if pos < 0:
        return text
    buf = bytearray()
    start = 0
    n = len(text)
    try:
        while pos >= 0:
            if pos + 3 > n:
                return None
            hi = _hex(ord(text[pos + 1]))
            lo = _hex(ord(text[pos + 2]))
            if hi < 0 or lo < 0:
                return None
            if pos > start:
                buf += text[start:pos].encode("utf-8")
            buf.append(hi * 16 + lo)
            start = pos + 3
            pos = text.find("%", start)
        if start < n:
            buf += text[start:].encode("utf-8")
        return buf.decode("utf-8")
    except UnicodeError:
        return None


def bmp_only(text: str) -> bool:
    """No character outside the BMP: each is one UTF-16 unit (a lone surrogate too)."""
    # Encoding is several times faster than max(text) on a non-ASCII value.
    return text.isascii() or len(text.encode("utf-16-le", "surrogatepass")) == 2 * len(text)


def tlcp_diff_bmp(old: str, diff: str) -> str | None:
    """
    The TLCP-diff ``diff`` applied to ``old`` when neither holds a character outside the
    BMP (then UTF-16 units are characters); None otherwise, or if the diff is bad.
    """
    if not (bmp_only(old) and bmp_only(diff)):
        return None
    return _apply_diff(old, diff)


def _diff_kept(old: str, diff: str, docs: dict[int, Any], key: int) -> str | None:
    """`tlcp_diff_bmp` on a non-ASCII field: ``docs[key]`` keeps its last result, which
    (made of BMP-only pieces) needs no check when it is still the field's value."""
    kept = docs.get(key)
    result = None
    if ((kept is not None and kept.text is old) or bmp_only(old)) and bmp_only(diff):
        result = _apply_diff(old, diff)
    if result is None or result.isascii():
        if kept is not None:
            del docs[key]
    elif kept is not None:
        kept.text = result  # one object per field, updated in place
    else:
        docs[key] = JsonText(result, None, None)
    return result


def _apply_diff(old: str, diff: str) -> str | None:
    """The TLCP-diff ``diff`` applied to ``old``, counting characters; None if it is bad."""
    out: list[str] = []
    old_len = len(old)
    diff_len = len(diff)
    limit = old_len if old_len > diff_len else diff_len
    cursor = 0  # position in old
    i = 0  # position in diff
    section = 0  # 0 = COPY, 1 = ADD, 2 = DEL
    while i < diff_len:
        count = 0
        while True:
            if i >= diff_len:
                return None
            c = ord(diff[i])
            i += 1
            if 65 <= c <= 90:
                count = count * 26 + (c - 65)
                if count > limit:
                    return None
            elif 97 <= c <= 122:
                count = count * 26 + (c - 97)
                break
            else:
                return None
        if section == 1:
            end = i + count
            if end > diff_len:
                return None
            if count:
                out.append(diff[i:end])
            i = end
            section = 2
        else:
            end = cursor + count
            if end > old_len:
                return None
            if section == 0:
                if count:
                    out.append(old[cursor:end])
                section = 1
            else:
                section = 0
            cursor = end
    return "".join(out)


def _patch(
    old: str, payload: str, docs: dict[int, Any], key: int, max_result: int, tried: bool = False
) -> str | None:
    """A ``^P`` on the hot path. ``docs`` keeps, by field, the text it produced (exactly
    encode_json of its document) and its cut, which the next patch may change in place: a
    `JsonText` with its pieces, or in the compiled build a ``_jsonpieces.Cut`` (``tried``:
    the C line decoder called it already)."""
    quick = _patch_kept(docs, key, old, payload, tried)
    if quick:
        if len(quick) > max_result:
            del docs[key]
        return quick
    kept: JsonText | None = docs.pop(key, None)
    canonical = kept is not None and kept.text is old
    pieces: list[str] | None = None
    leaves: dict[str, int] | None = None
    if kept is not None and canonical:
        pieces = kept.pieces
        leaves = kept.leaves
    try:
        if pieces is None and kept is not None and kept.pieces is not None:
            # A new value from the server: most often the last one's structure again.
            pieces = recut(old, kept.pieces)
            if pieces is not None:
                leaves = kept.leaves
                canonical = True
        if pieces is None:
            made = tokenize(old, not canonical)  # not ours: it checks old is canonical
            if made is not None:
                pieces, leaves = made
                canonical = True
        text: str | None = None
        if pieces is not None and leaves is not None:
            text = _replace_join(payload, pieces, leaves)
        if text is None:
            ops = loads(payload)
            if canonical and type(ops) is list:
                done = 0
                if pieces is not None and leaves is not None:
                    done = replace_leaves(pieces, leaves, ops)
                text = "".join(pieces) if done and pieces is not None else old
                if done < len(ops):
                    pieces = None  # the structure may change: cut it again when needed
                    for op in ops[done:]:
                        text = splice(text, op)
                        if text is None:
                            break
            if text is None:
                pieces = None
                budget = len(old) + len(payload) + COPY_ALLOWANCE
                text = encode_json(patch_document(json.loads(old), ops, budget, False))
    except Exception:  # any failure: the general decoder reports it
        return None
    if len(text) <= max_result:
        if pieces is None:
            leaves = None
        elif C_CUT is not None and leaves is not None:
            try:  # the cut as offsets, which the C line decoder patches itself
                docs[key] = C_CUT(text, pieces, leaves)
                return text
            except Exception:  # pieces that are not text's: kept as they are
                pass
        if kept is not None:  # one object per field, updated in place
            kept.text = text
            kept.pieces = pieces
            kept.leaves = leaves
            docs[key] = kept
        else:
            docs[key] = JsonText(text, pieces, leaves)
    return text


def _patch_kept(docs: dict[int, Any], key: int, old: str, payload: str, tried: bool) -> str:
    """The commonest patch, on the field's kept cut; "" for any other, ``docs[key]`` then a
    `JsonText` (or nothing) for the general path."""
    kept = docs.get(key)
    if kept is None:
        return ""
    if type(kept) is JsonText:
        return _replace_kept(kept, old, payload)
    try:  # a C cut (compiled build), which patches the text it keeps itself
        quick: str | None = None if tried else kept(old, payload)
        if quick is not None:
            return quick
        docs[key] = JsonText(kept.text, kept.pieces(), kept.leaves)  # its pieces, for Python
    except Exception:
        del docs[key]
    return ""


def _replace_kept(kept: JsonText, old: str, payload: str) -> str:
    """The commonest patch, scalars replaced in the kept pieces of ``old``, which are updated
    in place; "" (nothing changed) for any other, or when the field holds a new value."""
    pieces = kept.pieces
    leaves = kept.leaves
    if pieces is None or leaves is None or kept.text is not old:
        return ""
    text = _replace_join(payload, pieces, leaves)
    if text is None:
        return ""
    kept.text = text
    return text


def _replace_join(payload: str, pieces: list[str], leaves: dict[str, int]) -> str | None:
    """`replace_compact` and the join of the pieces; None (pieces unchanged) when the payload
    is not that simple patch."""
    try:
        if not replace_compact(payload, pieces, leaves):
            return None
    except Exception:  # the slow path tells what is wrong
        return None
    return "".join(pieces)


def _digits(text: str) -> bool:
    return 0 < len(text) <= _MAX_DIGITS and text.isdigit() and text.isascii()


class Lane:
    """
    What the hot path needs of one subscription: its decoded rows and whom to call.

    ``baselines`` (each item's last row, a list or a tuple) and ``rows`` (the rows
    delivered, by ``item - 1``: at least ``num_items`` of them, kept across lanes) are
    shared with the subscription, which decodes whatever the lane leaves to it;
    ``callbacks`` is the live list of its ``on_update`` callbacks.
    While ``open`` is false (a snapshot in progress, richer callbacks, COMMAND mode...)
    every update of the subscription takes the general path.
    """

    def __init__(
        self,
        num_items: int,
        num_fields: int,
        rows: list[Row | None],
        callbacks: list[Callable[..., Any]],
        callback_failed: Callable[[Callable[..., Any], BaseException], None],
        row_factory: Callable[[list[Value]], Any] | None = None,
    ) -> None:
        self.num_items = num_items
        self.num_fields = num_fields
        self.baselines: list[Sequence[Value] | None] = [None] * num_items
        self.rows = rows
        self.callbacks = callbacks
        self.callback_failed = callback_failed
        #: None delivers rows as tuples.
        self.row_factory = row_factory
        #: Called with the item after its first row is its baseline, before it is
        #: delivered (the end of its MERGE snapshot); None when nothing is due.
        self.first_update: Callable[[int], None] | None = None
        self.open = False
        #: The last ``^P`` result of each patched field, by ``(item - 1) * num_fields + field``
        #: (exactly encode_json of its document, so the next patch may change the text: a
        #: `JsonText`, or a ``_jsonpieces.Cut`` that the C line decoder calls), the last
        #: non-ASCII ``^T`` result, by ``-1 -`` that (BMP-only, known), and by field, far
        #: below those keys, the cut the C line decoder makes a field's first one like.
        self.docs: dict[int, Any] = {}
        #: False once the table is deleted or refused: an event under way goes no further.
        self.live = True


class UpdateRouter:
    """
    Routes runs of plain ``U`` lines to the lanes of their subscriptions.

    It keeps no count: `feed` says how far it read, and every line it took is one data
    notification delivered, which the session counts (tlcp.md §7.6).
    """

    def __init__(self) -> None:
        self.lanes: dict[int, Lane] = {}
        #: Cleared by the session as soon as the stream must not be read any further.
        self.open = False
        # Held as objects: compiled, every line would otherwise box the int and look the
        # function up in the module's dict (~150 instructions a line, 4% of a plain one).
        self._patch_function: Callable[..., Any] = _patch
        self._max_result: object = MAX_DIFF_RESULT

    def feed(self, lines: list[bytes], start: int) -> int:
        """
        Deliver ``lines[start:]`` while they are plain updates of open lanes; returns the
        index of the first line left to the general path (``len(lines)`` when none). The
        ``result - start`` lines consumed were that many data notifications, delivered.
        """
        i = start
        n = len(lines)
        lanes = self.lanes
        patch_function = self._patch_function
        max_result = self._max_result
        while i < n and self.open:
            line = lines[i]
            # "U,<sub id>,<item>,": the numbers are read from the bytes, as ASCII digits.
            size = len(line)
            if size < 6 or line[0] != 85 or line[1] != 44:  # U ,
                break
            sub = 0
            pos = 2
            limit = min(size, pos + _MAX_DIGITS + 1)
            while pos < limit:
                c = line[pos]
                if c < 48 or c > 57:
                    break
                sub = sub * 10 + c - 48
                pos += 1
            if pos == 2 or pos >= limit or line[pos] != 44:
                break
            pos += 1
            mark = pos
            item = 0
            limit = min(size, pos + _MAX_DIGITS + 1)
            while pos < limit:
                c = line[pos]
                if c < 48 or c > 57:
                    break
                item = item * 10 + c - 48
                pos += 1
            if pos == mark or pos >= limit or line[pos] != 44:
                break
            lane = lanes.get(sub)
            if lane is None or not lane.open or item < 1 or item > lane.num_items:
                break
            num_fields = lane.num_fields
            previous = lane.baselines[item - 1]
            c_line = C_LINE
            if c_line is not None and previous is not None:
                # Decoded from the bytes in C, exactly as below (None: the general path).
                if len(previous) != num_fields:
                    break
                decoded = c_line(
                    line, pos + 1, previous if type(previous) is tuple else tuple(previous),
                    lane.docs, (item - 1) * num_fields, patch_function, max_result)
                if decoded is None:
                    break
                _deliver_row(lane, item, decoded, False)
                i += 1
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                break
            # The header holds no "|" and no special character: split the whole line.
            tokens: list[Any] = text.split("|")
            tokens[0] = tokens[0][pos + 1 :]
            escaped = "%" in text
            if previous is None:
                # The item's first update (its snapshot in MERGE mode): every field given.
                if len(tokens) != num_fields or not first_row(tokens, escaped):
                    break
                row = tuple(tokens)
            else:
                if len(previous) != num_fields:
                    break
                # A tuple, so that compiled code indexes it directly.
                before: tuple[Any, ...] = previous if type(previous) is tuple else tuple(previous)
                if escaped or "^" in text or "#" in text or "$" in text:
                    values = _decode_tokens(
                        tokens, escaped, before, num_fields, lane.docs,
                        (item - 1) * num_fields, MAX_DIFF_RESULT)
                    if values is None:
                        break
                    row = tuple(values)
                else:
                    # The commonest line: new values, and empty tokens for unchanged ones.
                    if len(tokens) != num_fields:
                        break
                    k = 0
                    for token in tokens:
                        if not token:
                            tokens[k] = before[k]
                        k += 1
                    row = tuple(tokens)
            _deliver_row(lane, item, row, previous is None)
            i += 1
        return i


def _deliver_row(lane: Lane, item: int, row: Row, first: bool) -> None:
    """Make ``row`` the item's row and baseline (one object, not two) and deliver it."""
    lane.baselines[item - 1] = row
    if first and lane.first_update is not None:
        lane.first_update(item)
    lane.rows[item - 1] = row
    callbacks = lane.callbacks
    if callbacks:
        if len(callbacks) == 1 and lane.row_factory is None:
            callback = callbacks[0]  # the usual case, without a call to deliver
            try:
                callback(item, row)
            except Exception as exc:
                lane.callback_failed(callback, exc)
        else:
            deliver(lane, item, row)


def deliver(lane: Lane, item: int, row: Row) -> None:
    """Call the lane's callbacks with ``(item, row)``; a failing one is reported, not raised."""
    factory = lane.row_factory
    arg: Any = row
    if factory is not None:
        try:
            arg = factory(list(row))
        except Exception as exc:
            lane.callback_failed(factory, exc)
            return
    for callback in tuple(lane.callbacks):  # one that removes itself skips no other
        if not lane.live:
            break  # one deleted the table: once delete() fired, no update arrives
        try:
            callback(item, arg)
        except Exception as exc:
            lane.callback_failed(callback, exc)


def _is_compiled() -> bool:
    # A module compiled by mypyc has no Python source loader: its file is the extension.
    return not __file__.endswith((".py", ".pyc"))


#: True when this module runs compiled (built with mypyc), False when interpreted.
COMPILED: Final = _is_compiled()


def c_function(module: str, name: str) -> Any:
    """``name`` from the C module ``module`` (its full name; built with the compiled hot
    path), or None when it was not built or the hot path runs interpreted (the package then
    stays pure Python throughout)."""
    if not COMPILED:
        return None
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:  # built without it
        return None


_PACKAGE: Final = __name__.rpartition(".")[0]
#: `_apply_diff` in C (``_tlcpdiff.c``), or None.
C_DIFF: Final[Callable[[str, str], str | None] | None] = c_function(
    f"{_PACKAGE}._tlcpdiff", "apply")
#: ``_jsonpieces.Cut``: a field's kept text and its cut as offsets, which patches the text
#: itself (`recut`, then `replace_compact`, in C), or None.
C_CUT: Final[Callable[..., Any] | None] = c_function(f"{_PACKAGE}._jsonpieces", "Cut")
#: The values of a line decoded from its bytes in C (``_updateline.c``), or None.
C_LINE: Final[Callable[..., Row | None] | None] = c_function(
    f"{_PACKAGE}._updateline", "decode")
