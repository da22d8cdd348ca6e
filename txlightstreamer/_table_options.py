"""
What a `Table` may be created with: its modes, and the names and options the server would
refuse, refused before anything is sent. Pure code, no Twisted import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from txlightstreamer.protocol import check_limit, check_text

__all__ = [
    "MODES",
    "MODE_COMMAND",
    "MODE_DISTINCT",
    "MODE_MERGE",
    "MODE_RAW",
    "check_options",
    "split_names",
]

MODE_RAW: Final = "RAW"
MODE_MERGE: Final = "MERGE"
MODE_DISTINCT: Final = "DISTINCT"
MODE_COMMAND: Final = "COMMAND"
MODES: Final = (MODE_RAW, MODE_MERGE, MODE_DISTINCT, MODE_COMMAND)

_NAME_SEPARATORS = re.compile(r"[ |]+")
# Any character str.isspace() accepts, or "|" (one search instead of a loop per character).
_BAD_NAME_CHAR = re.compile(r"[\s|]")


def split_names(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    """Accept the seed's space/pipe-separated string or any iterable of names."""
    if isinstance(value, str):
        names = tuple(n for n in _NAME_SEPARATORS.split(value.strip()) if n)
    else:
        names = tuple(value)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"{what}: every name must be a non-empty string, got {name!r}")
            if _BAD_NAME_CHAR.search(name):
                raise ValueError(f"{what}: name {name!r} must not contain spaces or '|'")
    for name in names:
        check_text(name, f"{what}: name {name!r}")
    if not names:
        raise ValueError(f"{what} must name at least one entry")
    return names


def check_options(
    mode: str, schema: tuple[str, ...], snapshot: bool | int, buffer_size: int | str | None,
    max_frequency: float | str | None, data_adapter: str | None, selector: str | None,
) -> None:
    """Refuse, before anything is sent, what the server would refuse for this mode."""
    for text, what in ((data_adapter, "data_adapter"), (selector, "selector")):
        if text is not None:
            check_text(text, what)
    if mode == MODE_RAW and snapshot:
        raise ValueError("RAW mode has no snapshot: use snapshot=False")
    if isinstance(snapshot, int) and not isinstance(snapshot, bool):
        if mode != MODE_DISTINCT:
            raise ValueError("a snapshot length is only allowed in DISTINCT mode")
        if snapshot < 1:
            raise ValueError("the snapshot length must be a positive integer")
    if max_frequency is not None and max_frequency != "unfiltered":
        # py-lightstreamer's 0 ("no limit") is "unlimited" here; the server refuses 0.
        check_limit(max_frequency, "max_frequency (updates/s)")
    if buffer_size is not None and buffer_size != "unlimited" and (
            isinstance(buffer_size, bool) or not isinstance(buffer_size, int)
            or buffer_size < 1):
        raise ValueError(
            f"buffer_size must be a positive integer or 'unlimited', not {buffer_size!r}")
    if buffer_size is not None and mode not in (MODE_MERGE, MODE_DISTINCT):
        raise ValueError("buffer_size is only allowed in MERGE and DISTINCT mode")
    if buffer_size is not None and max_frequency == "unfiltered":
        raise ValueError("buffer_size cannot be combined with max_frequency='unfiltered'")
    if mode == MODE_COMMAND and len(schema) > 1:
        missing = {"key", "command"} - set(schema)
        if missing:
            raise ValueError(
                f"a COMMAND schema must contain the fields 'key' and 'command' "
                f"(missing: {', '.join(sorted(missing))})"
            )
    for name, value in (("data_adapter", data_adapter), ("selector", selector)):
        # Names the adapters read, sent percent-encoded: a space is theirs to allow, as
        # the official clients let it through (``price > 10``).
        if value is not None and not value:
            raise ValueError(f"{name} must not be empty")
