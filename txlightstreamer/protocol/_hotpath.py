"""
The hot path: plain ``U`` lines of live subscriptions, decoded and delivered in one loop.

Nearly every line of a busy stream is an update whose values are plain tokens, ``#``/``$``
markers and ``^n`` runs. This module handles exactly those, for subscriptions that asked
for nothing richer than ``on_update(item, row)``; anything else (another tag, escapes,
diffs, an item's first update, a malformed line) stops the loop and goes to the general
parser, which decodes it or reports it. No Twisted import: this is pure code, compiled
with mypyc when the package is built with a C compiler, and the same code runs
interpreted otherwise (``COMPILED`` tells which).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

Value = str | None
Row = tuple[Value, ...]

#: Whole-token markers: null and the empty string.
MARKERS: Final[dict[str, Value]] = {"#": None, "$": ""}
# Lengths of the usual ``^n`` runs, so that most runs need no parsing.
_RUN_LENGTHS: Final[dict[str, int]] = {f"^{n}": n for n in range(1, 65)}
# Longest sub id / item index the loop parses (longer ones go to the general parser).
_MAX_DIGITS: Final = 9


def _run_length(token: str) -> int:
    """n for a ``^n`` token; 0 for any other token starting with ``^`` (diff, malformed)."""
    n = _RUN_LENGTHS.get(token)
    if n is not None:
        return n
    digits = token[1:]
    if digits.isdigit() and digits.isascii() and len(digits) < 7:
        return int(digits)
    return 0


def decode_plain(raw: str, previous: list[Any], num_fields: int) -> list[Value] | None:
    """
    The new row of an item from its previous row and the raw values of a ``U`` line, when
    they hold only plain tokens, markers and ``^n`` runs; None for anything else (escapes,
    diffs, a wrong count, a bad run), which the full decoder handles or reports.
    ``previous`` is a list (its items are taken as they are, unchecked).
    """
    if "%" in raw or len(previous) != num_fields:
        return None
    values: list[Any] = []
    i = 0  # index of the next field
    if "^" not in raw and "#" not in raw and "$" not in raw:
        # The commonest line: new values, and empty tokens for unchanged ones.
        tokens = raw.split("|")
        if len(tokens) != num_fields:
            return None
        for token in tokens:
            values.append(token if token else previous[i])
            i += 1
        return values
    for token in raw.split("|"):
        if i >= num_fields:
            return None  # more values than fields
        if not token:
            values.append(previous[i])
            i += 1
        elif token.startswith("^"):
            n = _run_length(token)
            if n == 0 or i + n > num_fields:
                return None
            values.extend(previous[i : i + n])
            i += n
        elif token == "#":
            values.append(None)
            i += 1
        elif token == "$":
            values.append("")
            i += 1
        else:
            values.append(token)
            i += 1
    return values if i == num_fields else None


def _digits(text: str) -> bool:
    return 0 < len(text) <= _MAX_DIGITS and text.isdigit() and text.isascii()


class Lane:
    """
    What the hot path needs of one subscription: its decoded rows and whom to call.

    ``baselines`` and ``rows`` are shared with the subscription, which decodes whatever
    the lane leaves to it; ``callbacks`` is the live list of its ``on_update`` callbacks.
    While ``open`` is false (a snapshot in progress, richer callbacks, COMMAND mode...)
    every update of the subscription takes the general path.
    """

    def __init__(
        self,
        num_items: int,
        num_fields: int,
        rows: dict[int, Row],
        callbacks: list[Callable[..., Any]],
        callback_failed: Callable[[Callable[..., Any], BaseException], None],
        row_factory: Callable[[list[Value]], Any] | None = None,
    ) -> None:
        self.num_items = num_items
        self.num_fields = num_fields
        self.baselines: list[list[Value] | None] = [None] * num_items
        self.rows = rows
        self.callbacks = callbacks
        self.callback_failed = callback_failed
        #: None delivers rows as tuples.
        self.row_factory = row_factory
        self.open = False


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

    def feed(self, lines: list[bytes], start: int) -> int:
        """
        Deliver ``lines[start:]`` while they are plain updates of open lanes; returns the
        index of the first line left to the general path (``len(lines)`` when none). The
        ``result - start`` lines consumed were that many data notifications, delivered.
        """
        i = start
        n = len(lines)
        lanes = self.lanes
        while i < n and self.open:
            line = lines[i]
            if not line.startswith(b"U,"):
                break
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                break
            parts = text.split(",", 3)
            if len(parts) != 4 or not _digits(parts[1]) or not _digits(parts[2]):
                break
            lane = lanes.get(int(parts[1]))
            if lane is None or not lane.open:
                break
            item = int(parts[2])
            if item < 1 or item > lane.num_items:
                break
            previous = lane.baselines[item - 1]
            if previous is None:
                break  # the item's first update (its snapshot in MERGE mode)
            values = decode_plain(parts[3], previous, lane.num_fields)
            if values is None:
                break
            lane.baselines[item - 1] = values
            row = tuple(values)
            lane.rows[item] = row
            if lane.callbacks:
                deliver(lane, item, row)
            i += 1
        return i


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
    for callback in lane.callbacks:
        try:
            callback(item, arg)
        except Exception as exc:
            lane.callback_failed(callback, exc)


def _is_compiled() -> bool:
    # A module compiled by mypyc has no Python source loader: its file is the extension.
    return not __file__.endswith((".py", ".pyc"))


#: True when this module runs compiled (built with mypyc), False when interpreted.
COMPILED: Final = _is_compiled()
