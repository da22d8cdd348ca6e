"""
How an `LsClient` gets connected: the callers waiting for ``create_session`` (with an
optional time limit that ends in the last connection cause).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from txlightstreamer.errors import LightstreamerError, TransportError

__all__ = ["CreateWaiters"]

_T = TypeVar("_T")


class CreateWaiters(Generic[_T]):
    """
    The Deferreds of ``create_session`` calls, fired together when a session starts or
    the client gives up. ``cause`` keeps the last reason a connection attempt failed.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiting: list[Deferred[_T]] = []
        self._timer: IDelayedCall | None = None
        #: The last error a failed connection attempt reported (None once connected).
        self.cause: LightstreamerError | None = None

    def add(self, timeout: float | None, give_up: Callable[[], None]) -> Deferred[_T]:
        """
        A new waiter. After ``timeout`` seconds without a session, ``give_up()`` stops
        the attempts and the waiter fails with the last cause; cancelling the last waiter
        gives up too.
        """
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds (or None)")

        def cancelled(d: Deferred[_T]) -> None:
            # Nobody waits for a session any more (addTimeout, a caller's cancel): stop
            # trying, as the timeout would (a new create_session may start again).
            if d in self._waiting:
                self._waiting.remove(d)
            if not self._waiting:
                self._cancel_timer()
                give_up()

        d: Deferred[_T] = Deferred(cancelled)
        self._waiting.append(d)
        if timeout is not None:
            self._cancel_timer()
            self._timer = self._clock.callLater(timeout, self._expired, timeout, give_up)
        return d

    def succeed(self, result: _T) -> None:
        self.cause = None
        self._cancel_timer()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(result)

    def fail(self, error: LightstreamerError) -> None:
        self._cancel_timer()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(error)

    def _expired(self, timeout: float, give_up: Callable[[], None]) -> None:
        self._timer = None
        give_up()
        cause = self.cause
        if cause is None:
            cause = TransportError(f"no session within {timeout:g} s")
        self.fail(cause)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
