"""`TickingFeed`: the timer shared by the demo feeds (one tick every ``interval`` seconds)."""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ._adapter import DataModel

__all__ = ["TickingFeed"]


class TickingFeed:
    """Publishes into ``data`` once every ``interval`` seconds of ``clock`` while running."""

    def __init__(self, data: DataModel, clock: IReactorTime, interval: float) -> None:
        self.data = data
        self.clock = clock
        self.interval = interval
        #: Ticks published so far.
        self.ticks = 0
        self._call: IDelayedCall | None = None

    @property
    def running(self) -> bool:
        """Whether the feed is ticking."""
        return self._call is not None

    def start(self) -> None:
        """Start ticking (idempotent)."""
        if self._call is None:
            self._call = self.clock.callLater(self.interval, self._tick)

    def stop(self) -> None:
        """Stop ticking and cancel the pending timer (idempotent)."""
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _tick(self) -> None:
        self._call = self.clock.callLater(self.interval, self._tick)
        self.ticks += 1
        self.publish()

    def publish(self) -> None:
        """Publish one tick's updates (subclasses)."""
        raise NotImplementedError
