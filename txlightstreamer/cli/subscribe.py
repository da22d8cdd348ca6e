"""
The ``--subscribe`` mini-language: ``MODE ITEMS FIELDS [key=value ...]`` parsed into a
`SubscriptionSpec`, which creates the `Table` it describes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.python import usage

from txlightstreamer import MODE_COMMAND, MODE_DISTINCT, MODE_MERGE, MODE_RAW, LsClient, Table

__all__ = ["MODES", "SubscriptionSpec", "demo_subscriptions", "parse_subscription"]

MODES = (MODE_MERGE, MODE_DISTINCT, MODE_RAW, MODE_COMMAND)

_SPEC_FORMAT = "expected 'MODE ITEMS FIELDS [key=value ...]'"
#: A positive decimal number as the options accept it (no exponent, no sign).
DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_SPEC_KEYS = ("snapshot", "adapter", "selector", "max_frequency", "buffer_size",
              "second_level", "second_level_adapter")


@dataclass(frozen=True)
class SubscriptionSpec:
    """One parsed ``--subscribe`` SPEC: the arguments of a `Table`."""

    mode: str
    items: tuple[str, ...]
    fields: tuple[str, ...]
    snapshot: bool | int = False
    adapter: str | None = None
    selector: str | None = None
    max_frequency: float | str | None = None
    buffer_size: int | str | None = None
    second_level: tuple[str, ...] | None = None
    second_level_adapter: str | None = None

    def table(self, client: LsClient) -> Table:
        """Create the `Table` this SPEC describes on ``client``."""
        return Table(
            client,
            data_adapter=self.adapter,
            mode=self.mode,
            item_ids=self.items,
            schema=self.fields,
            selector=self.selector,
            buffer_size=self.buffer_size,
            max_frequency=self.max_frequency,
            snapshot=self.snapshot,
            second_level_schema=self.second_level,
            second_level_adapter=self.second_level_adapter,
        )


def _names(text: str, what: str, spec: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    for name in names:
        if not name:
            raise usage.UsageError(f"bad --subscribe SPEC {spec!r}: empty name in {what}")
        if "|" in name:
            raise usage.UsageError(
                f"bad --subscribe SPEC {spec!r}: {what} name {name!r} must not contain '|'")
    return names


def positive_int(text: str) -> int | None:
    """``text`` as an integer if it is a positive one in ASCII digits, else None."""
    if text.isdigit() and text.isascii() and int(text) > 0:
        return int(text)
    return None


def parse_subscription(spec: str) -> SubscriptionSpec:
    """
    Parse ``MODE ITEMS FIELDS [key=value ...]`` (space-separated; ITEMS and FIELDS
    comma-separated). Raises `usage.UsageError` with a one-line message.
    """
    parts = spec.split()
    if len(parts) < 3:
        raise usage.UsageError(f"bad --subscribe SPEC {spec!r}: {_SPEC_FORMAT}")
    mode = parts[0].upper()
    if mode not in MODES:
        raise usage.UsageError(
            f"unknown mode {parts[0]!r} in --subscribe {spec!r}: use {', '.join(MODES)}")
    items = _names(parts[1], "ITEMS", spec)
    fields = _names(parts[2], "FIELDS", spec)
    values: dict[str, str] = {}
    for part in parts[3:]:
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise usage.UsageError(
                f"bad key=value {part!r} in --subscribe {spec!r}: {_SPEC_FORMAT}")
        if key not in _SPEC_KEYS:
            raise usage.UsageError(
                f"unknown key {key!r} in --subscribe {spec!r}: use {', '.join(_SPEC_KEYS)}")
        if key in values:
            raise usage.UsageError(f"key {key!r} given twice in --subscribe {spec!r}")
        values[key] = value

    def bad(key: str, allowed: str) -> usage.UsageError:
        return usage.UsageError(
            f"bad value {key}={values[key]!r} in --subscribe {spec!r}: use {allowed}")

    snapshot: bool | int = False
    if "snapshot" in values:
        raw = values["snapshot"].lower()
        if raw in ("yes", "true"):
            snapshot = True
        elif raw in ("no", "false"):
            snapshot = False
        elif (length := positive_int(raw)) is not None:
            if mode != MODE_DISTINCT:
                raise usage.UsageError(
                    f"snapshot=N in --subscribe {spec!r} is only allowed in DISTINCT mode")
            snapshot = length
        else:
            raise bad("snapshot", "yes, no or a positive integer")
        if mode == MODE_RAW and snapshot:
            raise usage.UsageError(f"RAW mode has no snapshot: --subscribe {spec!r}")

    max_frequency: float | str | None = None
    if "max_frequency" in values:
        raw = values["max_frequency"].lower()
        if raw in ("unlimited", "unfiltered"):
            max_frequency = raw
        elif DECIMAL.match(raw) and float(raw) > 0:
            max_frequency = float(raw)
        else:
            raise bad("max_frequency", "a positive number, unlimited or unfiltered")

    buffer_size: int | str | None = None
    if "buffer_size" in values:
        raw = values["buffer_size"].lower()
        if raw == "unlimited":
            buffer_size = raw
        elif (size := positive_int(raw)) is not None:
            buffer_size = size
        else:
            raise bad("buffer_size", "a positive integer or unlimited")
        if mode not in (MODE_MERGE, MODE_DISTINCT):
            raise usage.UsageError(
                f"buffer_size in --subscribe {spec!r} is only allowed in MERGE and DISTINCT mode")
        if max_frequency == "unfiltered":
            raise usage.UsageError(
                f"buffer_size cannot be combined with max_frequency=unfiltered: {spec!r}")

    if mode == MODE_COMMAND and len(fields) > 1:
        missing = [f for f in ("key", "command") if f not in fields]
        if missing:
            raise usage.UsageError(
                f"COMMAND FIELDS must include 'key' and 'command' (missing "
                f"{', '.join(missing)}) in --subscribe {spec!r}")

    second_level: tuple[str, ...] | None = None
    if "second_level" in values:
        if mode != MODE_COMMAND:
            raise usage.UsageError(
                f"second_level in --subscribe {spec!r} is only allowed in COMMAND mode")
        second_level = _names(values["second_level"], "second_level", spec)
        clash = set(second_level) & set(fields)
        if clash:
            raise usage.UsageError(
                f"second_level repeats FIELDS ({', '.join(sorted(clash))}) in "
                f"--subscribe {spec!r}")
    elif "second_level_adapter" in values:
        raise usage.UsageError(
            f"second_level_adapter needs second_level=FIELDS in --subscribe {spec!r}")

    return SubscriptionSpec(
        mode=mode,
        items=items,
        fields=fields,
        snapshot=snapshot,
        adapter=values.get("adapter"),
        selector=values.get("selector"),
        max_frequency=max_frequency,
        buffer_size=buffer_size,
        second_level=second_level,
        second_level_adapter=values.get("second_level_adapter"),
    )


def demo_subscriptions() -> list[SubscriptionSpec]:
    """What ``--demo`` subscribes with no ``--subscribe``: the stocks and the portfolio."""
    from txlightstreamer.testing.demo import (
        DEMO_FIELDS,
        DEMO_ITEMS,
        PORTFOLIO_FIELDS,
        PORTFOLIO_ITEM,
    )

    portfolio = tuple(PORTFOLIO_FIELDS)
    for required in ("command", "key"):
        if required not in portfolio:
            portfolio = (required, *portfolio)
    return [
        SubscriptionSpec(MODE_MERGE, tuple(DEMO_ITEMS), tuple(DEMO_FIELDS), snapshot=True),
        SubscriptionSpec(MODE_COMMAND, (PORTFOLIO_ITEM,), portfolio, snapshot=True),
    ]
