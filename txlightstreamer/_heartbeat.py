"""The reverse heartbeat: a request to the server whenever the client has been quiet."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["ReverseHeartbeat"]


class ReverseHeartbeat:
    """
    Calls ``send()`` after ``interval`` seconds without a control request (any request
    counts: `touch` pushes the next one back). An interval <= 0 turns it off.
    """

    def __init__(self, clock: IReactorTime, interval: float, send: Callable[[], None]) -> None:
        self._clock = clock
        self.interval = interval
        self._send = send
        self._call: IDelayedCall | None = None
        self._stopped = False

    def touch(self) -> None:
        """Restart the timer (a request was just sent)."""
        if self.interval <= 0 or self._stopped:
            return
        if self._call is not None and self._call.active():
            self._call.reset(self.interval)
        else:
            self._call = self._clock.callLater(self.interval, self._fire)

    def cancel(self) -> None:
        """Stop the timer until the next `touch`."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def stop(self) -> None:
        """Stop for good (the client is being destroyed)."""
        self._stopped = True
        self.cancel()

    def _fire(self) -> None:
        self._call = None
        self._send()
        self.touch()
