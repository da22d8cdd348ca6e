"""
`UpdateEncoder`: its JSON lines are byte-identical to ``encode_event(stamped(update_event()))``
for every update, random or odd (unicode, nulls, escapes, astral and lone surrogates, no
names, repeated names, COMMAND keys, snapshots), and `timestamp`'s cache changes nothing.
"""

from __future__ import annotations

import io
import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest
from twisted.internet.task import Clock

from txlightstreamer._item_update import ItemUpdate, Row
from txlightstreamer._jsonlines import JsonLinesWriter
from txlightstreamer.events import (
    UpdateEncoder,
    encode_event,
    stamped,
    timestamp,
    update_event,
)

ODD = ["", " ", '"', "\\", "/", "\b\f\n\r\t", "\x00\x01\x1f\x7f", "ünï", "€", "😀𝄞",
       "\u2028\u2029", "\ud800", "a\udfffb", "null", "true", "1.5", "{}", "[1]", "#", "$",
       "é" * 50, "\u0000null"]


@dataclass
class Shape:
    """A `TableShape`: what an `ItemUpdate` reads from its table."""

    item_names: tuple[str, ...] | None
    field_names: tuple[str, ...] | None
    key_position: int = 0
    command_position: int = 0


def _text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        return rng.choice(ODD)
    if kind < 0.6:
        return str(rng.randint(-10**6, 10**6) / 100)
    alphabet = [chr(c) for c in (*range(0x20, 0x7f), 0xe9, 0x20ac, 0x1f600, 0x0a, 0x22, 0x5c)]
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def _value(rng: random.Random) -> str | None:
    return None if rng.random() < 0.15 else _text(rng)


def _reference(sub: int, update: ItemUpdate, seconds: float) -> bytes:
    return encode_event(stamped(update_event(sub, update), seconds))


def _check(encoder: UpdateEncoder, update: ItemUpdate, seconds: float) -> None:
    assert encoder.encode(update, seconds) == _reference(encoder.sub, update, seconds)


def test_random_updates_encode_as_the_records_do() -> None:
    rng = random.Random(17)
    for _ in range(300):
        width = rng.randint(1, 12)
        names = None if rng.random() < 0.2 else tuple(_text(rng) + str(i) for i in range(width))
        items = None if rng.random() < 0.2 else tuple(_text(rng) for _ in range(5))
        command = rng.random() < 0.3 and width >= 2
        shape = Shape(items, names, key_position=1 if command else 0,
                      command_position=2 if command else 0)
        encoder = UpdateEncoder(rng.randint(0, 5))
        previous: Row | None = None
        for _ in range(20):
            values = tuple(_value(rng) for _ in range(width))
            if previous is not None and rng.random() < 0.5:  # some fields unchanged
                values = tuple(old if rng.random() < 0.6 else new
                               for old, new in zip(previous, values, strict=True))
            override = (frozenset(rng.sample(range(width), rng.randint(0, width)))
                        if rng.random() < 0.2 else None)
            update = ItemUpdate(shape, rng.randint(1, 7), values,
                                previous if rng.random() < 0.8 else None,
                                rng.random() < 0.3, changed_override=override)
            _check(encoder, update, 1_700_000_000 + rng.random() * 10**6)
            previous = values


def test_edge_updates() -> None:
    shape = Shape(("i😀", 'q"uote', "\ud800"), ("a", "b\n", "%s%%"))
    encoder = UpdateEncoder(3)
    cases = [(1, ("x", None, "😀")), (2, (None, None, None)), (3, ("\\", "\x00", "\u2028")),
             (4, ("", "", "")), (1, ("\udc00", "a", "b"))]
    for pos, values in cases:
        for snapshot in (False, True):
            for previous in (None, ("x", "y", "😀"), values):
                _check(encoder, ItemUpdate(shape, pos, values, previous, snapshot), 1.0005)
    surrogate = encoder.encode(ItemUpdate(shape, 1, ("\udc00", "a", "b"), None, False), 0)
    assert surrogate.isascii() and json.loads(surrogate)["values"]["a"] == "\udc00"


def test_many_change_patterns() -> None:
    """More patterns of changed fields than the encoder keeps texts for."""
    rng = random.Random(3)
    shape = Shape(("x",), tuple(f"f{i}" for i in range(12)))
    encoder = UpdateEncoder(1)
    previous = tuple(str(i) for i in range(12))
    for _ in range(3000):
        values = tuple(v if rng.random() < 0.5 else v + "'" for v in previous)
        _check(encoder, ItemUpdate(shape, 1, values, previous, False), 7.0)


def test_names_repeated_missing_or_changing() -> None:
    encoder = UpdateEncoder(0)
    repeated = Shape(None, ("a", "b", "a"))
    _check(encoder, ItemUpdate(repeated, 1, ("1", "2", "3"), ("0", "2", "0"), False), 5.0)
    unnamed = Shape(("x",), None)
    _check(encoder, ItemUpdate(unnamed, 1, ("1", None), None, False), 5.0)
    _check(encoder, ItemUpdate(unnamed, 1, ("1", None, "3"), ("1", "2", "3"), False), 5.0)
    named = Shape(("y",), ("p", "q"))
    _check(encoder, ItemUpdate(named, 1, ("1", "2"), ("1", "3"), True), 5.0)
    renamed = Shape(("z",), ("r", "s"))
    _check(encoder, ItemUpdate(renamed, 1, ("1", "2"), None, False), 5.0)
    # Fewer values than names: both raise, as update_event always did.
    with pytest.raises(ValueError):
        encoder.encode(ItemUpdate(renamed, 1, ("1",), None, False), 5.0)


def test_timestamp_cache_gives_the_same_text() -> None:
    rng = random.Random(1)
    moments = [rng.uniform(0, 4e9) for _ in range(500)]
    moments += [m + 0.0001 for m in moments] + [0.0, 0.0004999, 0.0005, 1.9995, 1.9994]
    # Consecutive moments around each half millisecond (ties round to even), from the cache.
    for base in (0.0, 1_764_000_000.0):
        for k in range(2000):
            half = base + k / 1000 + 0.0005
            moments += [math.nextafter(half, 0), half, math.nextafter(half, math.inf)]
    for seconds in moments:
        millis = int(round(seconds * 1000))
        moment = datetime.fromtimestamp(millis // 1000, tz=timezone.utc)
        expected = f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"
        assert timestamp(seconds) == expected
        assert timestamp(seconds) == expected  # from the cache


class Flushes(io.BytesIO):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.flushed: list[bytes] = []
        self.fail = fail

    def flush(self) -> None:
        if self.fail:
            raise BrokenPipeError(32, "Broken pipe")
        self.flushed.append(self.getvalue())


def test_writer_with_a_clock_flushes_once_per_turn() -> None:
    clock = Clock()
    stream = Flushes()
    writer = JsonLinesWriter(stream, clock=clock)
    writer.write({"event": "a"})
    writer.write({"event": "b"})
    assert stream.flushed == []
    clock.advance(0)
    assert stream.flushed == [b'{"event": "a"}\n{"event": "b"}\n'] and writer.lines == 2
    writer.write({"event": "c"})
    writer.close()  # flushes what waits, cancels the turn's flush
    assert stream.flushed[-1].endswith(b'{"event": "c"}\n') and not clock.getDelayedCalls()


def test_writer_with_a_clock_reports_a_broken_flush_once() -> None:
    clock = Clock()
    broken: list[Any] = []
    writer = JsonLinesWriter(Flushes(fail=True), clock=clock, on_broken=broken.append)
    writer.write({"event": "a"})
    clock.advance(0)
    writer.write({"event": "b"})
    clock.advance(0)
    assert len(broken) == 1 and writer.closed and not clock.getDelayedCalls()


def test_writer_to_the_null_device_writes_nothing_and_counts(tmp_path: Any) -> None:
    import os

    writer = JsonLinesWriter.open(os.devnull)
    writer.write({"event": "a"})
    writer.write_line(b'{"event": "b"}\n')
    assert writer.lines == 2 and not writer.closed
    writer.close()
    writer.write({"event": "c"})
    assert writer.lines == 2 and writer.closed
