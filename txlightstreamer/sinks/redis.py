"""
`RedisSink`: every event appended to a Redis stream, in order, pipelined, with bounded memory.

Each event gets an id (``<ms>-<seq>``, increasing) at the end of the reactor turn it was
written to the sink in, and is sent with that id inside one atomic Lua script per batch
(what a turn wrote goes in one batch, however many events: per-event work stays small).
A batch whose reply is lost is sent again with the same ids, and Redis skips what it
already has: after a reconnection nothing is written twice and nothing goes missing.
When Redis is slow or down events wait in a bounded buffer; at the high-water mark the
sink asks its producer to pause (the Lightstreamer stream stops being read, so the
server conflates or reports lost updates), and asks it to resume once half of the buffer
has drained. Past twice the high-water mark events are dropped, and the drop is itself
written as an ``error`` event with the count.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txlightstreamer.sinks._connection import (
    RedisUnavailable,
    batch_runner,
    connect,
    failure_text,
    is_reconnecting,
    load_script,
    prepare_script,
    widen_writes,
)
from txlightstreamer.sinks._lease import RedisLease
from txlightstreamer.sinks._scripts import APPEND
from txlightstreamer.sinks._target import RedisTarget

__all__ = ["RedisSink", "RedisUnavailable"]

log = Logger()

#: Batches sent to Redis before the first one is answered.
PIPELINE = 4


def encode_json(event: Mapping[str, Any]) -> bytes:
    """The default encoding: compact JSON, UTF-8."""
    return json.dumps(event, ensure_ascii=False, separators=(", ", ": ")).encode(
        "utf-8", "surrogatepass")


class RedisSink:
    """
    Appends events to the stream of ``target`` (``XADD``, field ``event``).

    :param encode: turns an event into the bytes stored (the JSON-lines encoder: a stream
        consumer reads what the JSON-lines output prints), without a trailing newline.
    :param buffer_limit: events waiting for Redis before the producer is paused.
    :param lease: write only while holding this lease (fencing: checked by Redis itself).
    """

    def __init__(
        self,
        target: RedisTarget,
        *,
        clock: IReactorTime,
        encode: Callable[[Mapping[str, Any]], bytes] = encode_json,
        buffer_limit: int = 50_000,
        batch_size: int = 1_000,
        retry_delay: float = 1.0,
        reply_timeout: float = 10.0,
        lease: RedisLease | None = None,
    ) -> None:
        if buffer_limit < 1 or batch_size < 1:
            raise ValueError("buffer_limit and batch_size must be at least 1")
        self.target = target
        self.lease = lease
        self._clock = clock
        self._encode = encode
        self._buffer_limit = buffer_limit
        self._batch_size = batch_size
        self._retry_delay = retry_delay
        self._reply_timeout = reply_timeout
        #: The events not written yet, from ``_head`` on (a list: batches are slices), and
        #: the ids of the first ones (given at the end of each turn), index for index.
        self._buffer: list[bytes] = []
        self._ids: list[str] = []
        self._head = 0
        self._turn: IDelayedCall | None = None
        #: Events sent and not answered yet, and the size of each batch in flight.
        self._in_flight = 0
        self._batches: deque[int] = deque()
        #: Of those in flight, the events of a lost lease: written, or dropped if they fail.
        self._stale = 0
        self._failing, self._failure = False, ""
        self._last_ms, self._last_seq = 0, -1
        self._connection: Any = None
        self._append: Callable[[list[str], list[Any], list[bytes]], Deferred[Any]] | None = None
        self._retry: IDelayedCall | None = None
        self._drained: list[Deferred[None]] = []
        self._dropped_unreported = 0
        self._syncing = False
        self._loading = False
        #: True while the producer was asked to pause.
        self.paused = False
        #: Whether the last write to Redis succeeded.
        self.connected = False
        #: Counters, for metrics: events written, dropped (reported), producer pauses.
        self.written = 0
        self.dropped = 0
        self.pauses = 0
        self._pause_cbs: list[Callable[[], object]] = []
        self._resume_cbs: list[Callable[[], object]] = []
        self._status_cbs: list[Callable[[str, str | None], object]] = []

    def __repr__(self) -> str:
        return f"<RedisSink {self.target.address} stream={self.target.stream!r}>"

    @property
    def depth(self) -> int:
        """Events waiting to be written."""
        return len(self._buffer) - self._head

    def on_pause(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` when the buffer is full: stop producing events."""
        self._pause_cbs.append(callback)

    def on_resume(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` when the buffer has drained enough to produce again."""
        self._resume_cbs.append(callback)

    def on_status(self, callback: Callable[[str, str | None], object]) -> None:
        """Call ``callback(state, reason)``: ``"connected"`` or ``"disconnected"``."""
        self._status_cbs.append(callback)

    # -- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> Deferred[None]:
        """Connect; fails with `RedisUnavailable` when Redis cannot be used at all."""
        d = connect(self.target, self._clock, timeout)
        d.addCallback(self._connected)
        return d

    def _connected(self, connection: Any) -> Deferred[None]:
        # Ids continue after the stream's last entry, whoever wrote it.
        top: Deferred[Any] = connection.execute_command(
            "XREVRANGE", self.target.stream, "+", "-", "COUNT", 1)

        def got(entries: Any) -> Deferred[bool]:
            if entries:
                ms, _, seq = _text(entries[0][0]).partition("-")
                self._last_ms, self._last_seq = int(ms), int(seq)
            return prepare_script(connection, APPEND, self.target.address)

        def loaded(inline: bool) -> None:
            self._connection = connection
            # No EVAL of a batch whose EVALSHA failed: it could run after the next ones.
            self._append = batch_runner(connection, APPEND, inline=inline)
            self._set_connected(True, None)
            self._flush()

        def failed(failure: Failure) -> Failure:
            connection.disconnect()
            if failure.check(RedisUnavailable):
                return failure
            reason = failure_text(failure)
            return Failure(RedisUnavailable(f"Redis at {self.target.address}: {reason}"))

        return top.addCallback(got).addCallbacks(loaded, failed)

    def stop(self, timeout: float = 5.0) -> Deferred[None]:
        """Write what is buffered (for at most ``timeout`` s), then disconnect."""
        if self._connection is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        if self.depth and self.connected:
            self._drained.append(d)
            d.addTimeout(timeout, self._clock, onTimeoutCancel=lambda *_: None)
        else:
            d.callback(None)

        def close(_: object) -> Deferred[None]:
            if self.depth:
                log.error("{sink}: {n} events were not written to Redis before stopping",
                          sink=self, n=self.depth)
            self._cancel_retry()
            if self._turn is not None and self._turn.active():
                self._turn.cancel()
            self._turn = None
            connection, self._connection = self._connection, None
            self._append = None
            result: Deferred[None] = connection.disconnect()
            return result.addErrback(lambda _: None)

        return d.addBoth(close)

    def drained(self, timeout: float = 5.0) -> Deferred[None]:
        """Fires once the buffer is written (or after ``timeout`` s, or at once if down)."""
        d: Deferred[None] = Deferred()
        if self.depth and self.connected and self._connection is not None:
            self._drained.append(d)
            d.addTimeout(timeout, self._clock, onTimeoutCancel=lambda *_: None)
        else:
            d.callback(None)
        return d

    # -- writing ----------------------------------------------------------------------------

    def write(self, event: Mapping[str, Any]) -> None:
        """Queue one event; never blocks, never raises for a slow Redis."""
        self.write_data(self._encode(event))

    def write_data(self, data: bytes) -> None:
        """Queue one event already encoded (as by ``encode``; a final newline is removed)."""
        buffer = self._buffer
        if len(buffer) - self._head >= self._buffer_limit - 1 or self._dropped_unreported:
            self._write_crowded(data)
            return
        buffer.append(data)  # the newline goes too: the script leaves it out
        if self._turn is None:
            self._turn = self._clock.callLater(0, self._end_of_turn)

    def _write_crowded(self, data: bytes) -> None:
        """`write_data` near or past the high-water mark, or with drops to report."""
        if self.depth >= 2 * self._buffer_limit:
            self.dropped += 1
            self._dropped_unreported += 1
            return
        if self._dropped_unreported and self.depth < self._buffer_limit:
            self._report_drops()
        self._buffer.append(data)
        if self.depth >= self._buffer_limit and not self.paused:
            self.paused = True
            self.pauses += 1
            for callback in list(self._pause_cbs):
                callback()
        if self._turn is None:
            self._turn = self._clock.callLater(0, self._end_of_turn)

    def _end_of_turn(self) -> None:
        """What this turn wrote gets its ids, and is sent if it can be."""
        self._turn = None
        self._give_ids()
        self._flush()

    def _report_drops(self) -> None:
        """Write an ``error`` event saying how many events were dropped since the last."""
        count, self._dropped_unreported = self._dropped_unreported, 0
        log.error("{sink}: {n} events dropped, the buffer was full", sink=self, n=count)
        self._enqueue({"event": "error", "code": None,
                       "message": f"{count} events dropped: the Redis sink's buffer "
                                  "was full"})

    def _enqueue(self, event: Mapping[str, Any]) -> None:
        self._buffer.append(self._encode(event))
        if self._turn is None:
            self._turn = self._clock.callLater(0, self._end_of_turn)

    def _give_ids(self) -> None:
        """Ids for the events that have none: this millisecond's, after the last one."""
        count = len(self._buffer) - len(self._ids)
        if count <= 0:
            return
        ms = int(self._clock.seconds() * 1000)
        if ms > self._last_ms:
            self._last_ms, first = ms, 0
        else:
            first = self._last_seq + 1
        self._last_seq = first + count - 1
        prefix = f"{self._last_ms}-"
        self._ids.extend([prefix + seq for seq in map(str, range(first, first + count))])

    def take_over(self) -> Deferred[bool]:
        """
        Continue after the stream's newest entry (another writer's, after a lease
        take-over): waiting events get new ids above it. Fires with whether the stream
        had entries.
        """
        self._syncing = True
        top: Deferred[Any] = self._connection.execute_command(
            "XREVRANGE", self.target.stream, "+", "-", "COUNT", 1)

        def got(entries: Any) -> bool:
            if entries:
                ms, _, seq = _text(entries[0][0]).partition("-")
                if (int(ms), int(seq)) > (self._last_ms, self._last_seq):
                    self._last_ms, self._last_seq = int(ms), int(seq)
            del self._ids[self._head:]
            self._give_ids()
            return bool(entries)

        def done(result: Any) -> Any:
            self._syncing = False
            self._flush()
            return result

        return top.addCallback(got).addBoth(done)

    def discard(self) -> int:
        """Forget the events not sent yet (a lost lease's); how many. In flight: `_stale`."""
        self._stale = self._in_flight
        return self._forget(self._head + self._in_flight, len(self._buffer))

    def _forget(self, start: int, end: int) -> int:
        """Drop the events ``start:end`` of the buffer; how many."""
        count = max(0, min(end, len(self._buffer)) - start)
        del self._buffer[start:end], self._ids[start:end]
        return count

    def _flush(self) -> None:
        if (self._append is None or self._retry is not None or self._syncing or self._failing
                or self._loading):
            return
        if not self.depth:
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)
            return
        if self.lease is not None and not self.lease.held:
            return  # written once the lease is (re)gained, or never: see lease_lost
        if len(self._batches) >= PIPELINE or self.depth <= self._in_flight:
            return
        if is_reconnecting(self._connection):  # the batches wait in txredisapi meanwhile
            self._set_connected(False, "the connection to Redis was lost; reconnecting")
        widen_writes(self._connection)  # after a reconnection too: a new transport
        self._give_ids()
        # Up to PIPELINE batches in flight: Redis runs one while the next one travels.
        while len(self._batches) < PIPELINE and self.depth > self._in_flight:
            start = self._head + self._in_flight
            end = min(start + self._batch_size, len(self._buffer))
            datas = self._buffer[start:end]
            # Written only after the batch before, if it is still unanswered (see APPEND).
            after = self._ids[start - 1] if self._in_flight else ""
            args: list[Any] = [
                self.lease.token if self.lease else "", self.target.maxlen,
                ",".join(self._ids[start:end]), ",".join(map(str, map(len, datas))), after]
            keys = [self.target.stream, self.lease.key if self.lease else ""]
            self._batches.append(end - start)
            self._in_flight += end - start
            d = self._append(keys, args, datas)  # the events: the script's last argument
            d.addTimeout(self._reply_timeout, self._clock)
            d.addCallbacks(self._written, self._failed)
            if self._failing or self._retry is not None or self._loading:
                break  # it failed at once (a connection that gave up): not again, now

    def _pop(self, count: int) -> None:
        """The first ``count`` events are written: forget them (in bulk, now and then)."""
        self._head += count
        if self._head >= 4096 and self._head * 2 >= len(self._buffer):
            del self._buffer[:self._head]
            del self._ids[:self._head]
            self._head = 0

    def _written(self, result: Any) -> None:
        count = self._batches.popleft()
        self._in_flight -= count
        written, skipped = int(result[0]), int(result[1])
        self.written += written
        if skipped:  # a re-sent batch's repeats are not counted here: the stream has them
            log.error("{sink}: {n} events not written: the stream has newer entries from "
                      "another writer", sink=self, n=skipped)
        if self._failing:  # an earlier batch failed: everything is sent again
            if not self._batches:
                self._after_failure()
            return
        self._pop(count)
        self._stale = max(0, self._stale - count)
        self._set_connected(True, None)
        if self._dropped_unreported and self.depth < self._buffer_limit:
            self._report_drops()  # even if no event comes after the drops
        if self.paused and self.depth <= self._buffer_limit // 2:
            self.paused = False
            for callback in list(self._resume_cbs):
                callback()
        self._flush()

    def _failed(self, failure: Failure) -> None:
        self._batches.popleft()
        self._in_flight = sum(self._batches)
        if not self._failing:
            self._failing = True
            self._failure = failure_text(failure)
        if not self._batches:
            self._after_failure()

    def _after_failure(self) -> None:
        """Every batch in flight has answered, one at least with a failure: retry."""
        self._failing = False
        self._in_flight = 0
        text = self._failure
        if self._stale:  # a lost lease's events: never sent again, after another's
            stale, self._stale = self._forget(self._head, self._head + self._stale), 0
            log.warn("{sink}: {n} more events of the lost lease's session not written",
                     sink=self, n=stale)
        if text.startswith("LEASE"):
            log.warn("{sink}: the lease was lost; not writing", sink=self)
            if self.lease is not None:
                self.lease.lost("Redis refused a write: " + text)
            return
        if self._connection is None:
            return  # stopped meanwhile
        if text.startswith("GAP"):  # a batch failed, none after it ran: send them again
            self._flush()
            return
        if "NOSCRIPT" in text:  # the later batches failed too (GAP), or were not run
            self._loading = True
            loading = load_script(self._connection, APPEND)
            loading.addCallbacks(self._script_loaded, self._load_failed)
            return
        self._set_connected(False, text)
        self._cancel_retry()
        self._retry = self._clock.callLater(self._retry_delay, self._retry_now)

    def _script_loaded(self, _: object) -> None:
        self._loading = False
        self._flush()

    def _load_failed(self, failure: Failure) -> None:
        self._loading = False
        self._failure = failure_text(failure)
        if "NOPERM" in self._failure and self._connection is not None:
            log.warn("{sink}: SCRIPT LOAD refused ({why}): batches are sent with their "
                     "script (EVAL)", sink=self, why=self._failure)
            self._append = batch_runner(self._connection, APPEND, inline=True)
            self._flush()
            return
        self._after_failure()

    def _retry_now(self) -> None:
        self._retry = None
        self._flush()

    def _cancel_retry(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def resume_writing(self) -> None:
        """Write again (after the lease was regained)."""
        self._flush()

    def _set_connected(self, connected: bool, reason: str | None) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            log.info("{sink}: writing to Redis", sink=self)
        else:
            log.warn("{sink}: Redis unavailable, buffering ({reason})", sink=self, reason=reason)
        for callback in list(self._status_cbs):
            callback("connected" if connected else "disconnected", reason)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
