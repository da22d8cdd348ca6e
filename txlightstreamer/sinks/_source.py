"""
`RedisSource`: read the events a bridge wrote to a Redis stream (``--source``).

On start it finds where the current state begins (the last ``session`` event whose
continuity is ``new`` or ``replaced``: consumers reset their state there), delivers every
entry from there on, then follows the stream with ``XREAD BLOCK`` on its own connection.
Any number of sources can read one stream; none of them changes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txlightstreamer.sinks._connection import connect, failure_text
from txlightstreamer.sinks._target import RedisTarget

__all__ = ["RedisSource", "stream_id_key"]

log = Logger()

#: Seconds Redis may take past a read's own wait before it is taken for gone.
REPLY_MARGIN = 5.0

#: Continuities after which a consumer starts its state from scratch.
RESET_CONTINUITIES = frozenset({"new", "replaced"})


def stream_id_key(entry_id: str) -> tuple[int, int] | None:
    """``"<ms>-<seq>"`` -> ``(ms, seq)`` for comparisons; None if it is not a stream id."""
    ms, sep, seq = entry_id.strip().partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit() or not (ms + seq).isascii():
        return None
    return int(ms), int(seq)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _entries_added(info: Any) -> tuple[int | None, str]:
    """``entries-added`` (every entry the stream ever had; None before Redis 7.0) and
    ``last-generated-id`` of ``XINFO STREAM``'s reply (a flat list or a dict)."""
    pairs: Any = info.items() if isinstance(info, dict) else zip(
        list(info or [])[::2], list(info or [])[1::2], strict=False)
    fields = {_text(name): value for name, value in pairs}
    added = fields.get("entries-added")
    return (added if isinstance(added, int) else None,
            _text(fields.get("last-generated-id", "")))


def resets(event: Mapping[str, Any]) -> bool:
    """A ``session`` event that starts the state afresh (a new or replaced session)."""
    continuity = event.get("continuity")
    return isinstance(continuity, str) and continuity in RESET_CONTINUITIES


def _event_of(fields: Any) -> dict[str, Any] | None:
    """The event of an entry's fields (``[name, value, ...]``), or None if not ours."""
    values = list(fields or [])
    for index in range(0, len(values) - 1, 2):
        if _text(values[index]) == "event":
            try:
                event = json.loads(_text(values[index + 1]))
            except ValueError:
                return None
            return event if isinstance(event, dict) and "event" in event else None
    return None


class RedisSource:
    """
    Follows ``target``'s stream; ``on_entry(entry_id, event)`` gets every entry in order.

    :param block: seconds one ``XREAD BLOCK`` waits for new entries.
    :param count: entries asked for per read.
    """

    def __init__(
        self,
        target: RedisTarget,
        on_entry: Callable[[str, dict[str, Any]], object],
        *,
        clock: IReactorTime,
        block: float = 5.0,
        count: int = 1000,
        retry_delay: float = 1.0,
    ) -> None:
        self.target = target
        self._on_entry = on_entry
        self._clock = clock
        self._block_ms = max(1, int(block * 1000))
        self._count = count
        self._retry_delay = retry_delay
        self._connection: Any = None
        self._retry: IDelayedCall | None = None
        self._stopped = False
        #: The id of the last entry delivered (``0-0`` before the first).
        self.last_id = "0-0"
        #: Entries delivered since the start.
        self.read = 0
        #: Whether the last read from Redis succeeded.
        self.connected = False
        self._status_cbs: list[Callable[[str, str | None], object]] = []
        # Whether each read asks XINFO for entries trimmed before they were read, and the
        # stream's count of entries up to the last one read (known once caught up).
        self._gap_checks = True
        self._position: int | None = None

    def __repr__(self) -> str:
        return f"<RedisSource {self.target.address} stream={self.target.stream!r}>"

    def on_status(self, callback: Callable[[str, str | None], object]) -> None:
        """Call ``callback(state, reason)``: ``"connected"`` or ``"disconnected"``."""
        self._status_cbs.append(callback)

    def start(self, timeout: float = 5.0) -> Deferred[None]:
        """Connect, find the start of the current state; fails with `RedisUnavailable`."""
        d = connect(self.target, self._clock, timeout)

        def connected(connection: Any) -> Deferred[None]:
            self._connection = connection
            return self._find_start("+")

        d.addCallback(connected)
        d.addCallback(lambda _: self._set_connected(True, None))
        d.addCallback(lambda _: self._read())
        return d

    def stop(self) -> Deferred[None]:
        """Stop reading and disconnect."""
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        connection, self._connection = self._connection, None
        if connection is None:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d
        result: Deferred[None] = connection.disconnect()
        return result.addErrback(lambda _: None)

    # -- reading ----------------------------------------------------------------------------

    def _find_start(self, before: str) -> Deferred[None]:
        """Scan back (newest first) for the last new/replaced session; start there."""
        d: Deferred[Any] = self._connection.execute_command(
            "XREVRANGE", self.target.stream, before, "-", "COUNT", self._count)

        def got(entries: Any) -> Deferred[None] | None:
            entries = list(entries or [])
            for entry_id, fields in entries:
                event = _event_of(fields)
                if event is not None and event["event"] == "session" and \
                        resets(event):
                    return self._history(_text(entry_id), inclusive=True)
            if len(entries) < self._count:  # reached the oldest entry: start from it
                return self._history("-", inclusive=True)
            return self._find_start("(" + _text(entries[-1][0]))

        return d.addCallback(got)

    def _history(self, start: str, inclusive: bool) -> Deferred[None]:
        """Deliver the entries from ``start`` up to the newest one, in chunks."""
        low = start if inclusive else "(" + start
        d: Deferred[Any] = self._connection.execute_command(
            "XRANGE", self.target.stream, low, "+", "COUNT", self._count)

        def got(entries: Any) -> Deferred[None] | None:
            entries = list(entries or [])
            self._deliver(entries)
            if len(entries) < self._count:
                return None
            return self._history(self.last_id, inclusive=False)

        return d.addCallback(got)

    def _deliver(self, entries: list[Any]) -> None:
        for entry_id, fields in entries:
            self.last_id = _text(entry_id)
            event = _event_of(fields)
            if event is None:
                continue
            self.read += 1
            try:
                self._on_entry(self.last_id, event)
            except Exception:  # an entry we cannot take stops nothing: the next ones count
                log.failure("Skipping stream entry {entry_id} of {stream}",
                            entry_id=self.last_id, stream=self.target.stream)

    def _read(self) -> None:
        self._retry = None
        if self._stopped or self._connection is None:
            return
        d: Deferred[Any] = self._connection.execute_command(
            "XREAD", "COUNT", self._count, "BLOCK", self._block_ms,
            "STREAMS", self.target.stream, self.last_id)
        # A Redis that stopped answering (paused, a partition without a reset) is down.
        d.addTimeout(self._block_ms / 1000 + REPLY_MARGIN, self._clock)
        d.addCallback(self._got).addErrback(self._failed)  # _got's own failure too

    def _got(self, reply: Any) -> Deferred[None] | None:
        self._set_connected(True, None)
        entries = [entry for _stream, got in reply or [] for entry in list(got or [])]
        if not entries or not self._gap_checks:
            self._deliver(entries)
            self._read()
            return None
        # Entries trimmed (MAXLEN) before this relay read them are lost: tell, not skip.
        d: Deferred[Any] = self._connection.execute_command(
            "XINFO", "STREAM", self.target.stream)
        d.addTimeout(REPLY_MARGIN, self._clock)

        def checked(info: Any) -> None:
            added, newest = _entries_added(info)
            if added is None:
                self._gap_checks = False  # a Redis before 7.0: no way to tell
                return
            position = self._position
            if position is not None:
                position += len(entries)
            if _text(entries[-1][0]) != newest:
                self._position = position  # more came meanwhile: told when caught up
                return
            if position is not None and position < added:
                missing = added - position
                log.warn("{source}: {n} entries trimmed before they were read",
                         source=self, n=missing)
                self._on_entry(self.last_id, {
                    "event": "error", "code": None,
                    "message": f"{missing} entries of {self.target.stream} were trimmed "
                               f"before this relay read them: events are missing"})
            self._position = added  # the stream's count of entries, up to the newest

        def unchecked(failure: Failure) -> Failure | None:
            if failure.check(DeferredTimeout):
                return failure  # Redis stopped answering: as for XREAD
            self._gap_checks = False  # not allowed (ACL): delivered unchecked
            return None

        d.addCallbacks(checked, unchecked)
        d.addCallback(lambda _: self._deliver(entries))
        return d.addCallback(lambda _: self._read())

    def _failed(self, failure: Failure) -> None:
        if self._stopped:
            return
        self._set_connected(False, failure_text(failure))
        self._retry = self._clock.callLater(self._retry_delay, self._read)

    def _set_connected(self, connected: bool, reason: str | None) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            log.info("{source}: reading", source=self)
        else:
            log.warn("{source}: Redis unavailable ({reason})", source=self, reason=reason)
        for callback in list(self._status_cbs):
            callback("connected" if connected else "disconnected", reason)
