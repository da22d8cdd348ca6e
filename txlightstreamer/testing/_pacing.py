"""Frequency and buffer limits of one subscription, per item (MERGE and DISTINCT).

As a real server does with ``LS_requested_max_frequency`` and
``LS_requested_buffer_size``: an item's updates go out at most once per
``1/frequency`` seconds; in between they wait in a buffer of ``buffer_size``
entries (MERGE: 1 by default, so the latest state wins; DISTINCT: unlimited by
default), and when it is full the oldest waiting update is dropped (filtered
dispatching: not reported).  Every timer goes through the injected clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["Pacer", "frequency_interval"]

Row = tuple["str | None", ...]


def frequency_interval(max_frequency: str) -> float:
    """Seconds between two updates of an item at ``max_frequency`` (0: no limit)."""
    if max_frequency in ("unlimited", "unfiltered"):
        return 0.0
    return 1.0 / float(max_frequency)


class Pacer:
    """Holds back each item's updates to the subscription's frequency, buffering them."""

    def __init__(
        self,
        clock: IReactorTime,
        send: Callable[[int, Row], None],
        *,
        interval: float,
        buffer_size: int | None,
    ) -> None:
        self._clock = clock
        self._send = send
        #: Seconds between two updates of one item (0: none held back).
        self.interval = interval
        #: Updates kept waiting per item (None: unlimited).
        self.buffer_size = buffer_size
        self._waiting: dict[int, deque[Row]] = {}
        self._last: dict[int, float] = {}
        self._timers: dict[int, IDelayedCall] = {}

    def offer(self, index: int, row: Row) -> None:
        """An update of the item at ``index``: sent now if its slot is free, else buffered."""
        waiting = self._waiting.get(index)
        now = self._clock.seconds()
        last = self._last.get(index)
        if not waiting and (self.interval <= 0 or last is None or now - last >= self.interval):
            self._last[index] = now
            self._send(index, row)
            return
        if waiting is None:
            waiting = self._waiting[index] = deque()
        waiting.append(row)
        if self.buffer_size is not None:
            while len(waiting) > self.buffer_size:
                waiting.popleft()
        if index not in self._timers:
            due = 0.0 if last is None else max(0.0, last + self.interval - now)
            self._timers[index] = self._clock.callLater(due, self._due, index)

    def discard(self, index: int) -> None:
        """Forget what waits for the item at ``index`` (its snapshot was cleared)."""
        self._waiting.pop(index, None)
        timer = self._timers.pop(index, None)
        if timer is not None and timer.active():
            timer.cancel()

    def stop(self) -> None:
        """Cancel every timer and forget every waiting update."""
        for index in list(self._timers):
            self.discard(index)
        self._waiting.clear()

    def _due(self, index: int) -> None:
        del self._timers[index]
        waiting = self._waiting.get(index)
        if not waiting:
            return
        row = waiting.popleft()
        if not waiting:
            del self._waiting[index]
        self._last[index] = self._clock.seconds()
        self._send(index, row)
        if waiting and index not in self._timers:
            self._timers[index] = self._clock.callLater(self.interval, self._due, index)
