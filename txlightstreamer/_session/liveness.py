"""
Liveness of the current stream: its head must come in time, then silence means trouble.

One timer, on the injected clock, whose meaning depends on the `Phase` (tlcp.md §7.4):
before ``CONOK`` it bounds the wait for the answer; once bound, a keepalive interval of
silence starts the stalled wait, then STALLED is reported, then the stream is given up.
A polling connection is given up as soon as its poll is not answered in time.
"""

from __future__ import annotations

import enum
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["Liveness", "LivenessOwner", "Phase"]

# Seconds of "silence still to come" that are only the clock's rounding (15.9 + 0.5 is a
# float 2**-49 short of 16.4): waiting for them would set a timer due now, for ever.
_ROUNDING = 1e-6


def silence_limit(keepalive_ms: int | None, polling: bool, retry_delay: float) -> float:
    """Longest silence before the liveness timer acts, in seconds."""
    limit = (keepalive_ms or 0) / 1000.0
    # Polling: the server answers within its idle time, or something is wrong.
    return limit + retry_delay if polling else limit


class Phase(enum.Enum):
    OFF = "off"  # no stream watched
    HEAD = "head"  # the answer (up to CONOK) must arrive before the timer fires
    UNWATCHED = "unwatched"  # bound with no keepalive granted: lines do not restart the timer
    ALIVE = "alive"  # bound: every read restarts the silence count
    SILENT = "silent"  # a keepalive interval of silence: waiting for the stalled timeout
    STALLED = "stalled"  # reported STALLED: waiting for the reconnect timeout


class LivenessOwner(Protocol):
    """What the timer tells the session."""

    def head_timed_out(self) -> None:
        """No answer to the create/bind in time."""

    def stalled(self) -> None:
        """No data for longer than the keepalive and stalled timeouts."""

    def resumed(self) -> None:
        """Data came again after STALLED."""

    def silent(self, reason: str) -> None:
        """The stream is given up: ``reason`` says why."""


class Liveness:
    """The silence timer of one session's current stream."""

    def __init__(self, clock: IReactorTime, owner: LivenessOwner, stalled_timeout: float,
                 reconnect_timeout: float) -> None:
        self._clock = clock
        self._owner = owner
        self._stalled_timeout = stalled_timeout
        self._reconnect_timeout = reconnect_timeout
        self.phase = Phase.OFF
        self._call: IDelayedCall | None = None
        self._last_activity = 0.0
        self._limit = 0.0
        self._polling = False
        #: Seconds the current stream's head (up to CONOK) may take.
        self.head_timeout = 0.0
        # Reading paused by us (back-pressure): silence is ours, so no timer runs.
        self._paused = False

    def expect_head(self, timeout: float) -> None:
        """A stream was opened: its answer must come within ``timeout`` seconds."""
        self.phase = Phase.HEAD
        self.head_timeout = timeout
        self._arm(timeout)

    def bound(self, limit: float, polling: bool, watched: bool) -> None:
        """
        CONOK: from now on ``limit`` seconds of silence are suspicious. Without a granted
        keepalive (``watched`` false) the running timer goes on and reads do not restart it.
        """
        self._limit = limit
        self._polling = polling
        if not watched:
            if self.phase is Phase.HEAD:
                self.phase = Phase.UNWATCHED
            return
        self._last_activity = self._clock.seconds()
        self.phase = Phase.ALIVE
        self._arm(limit)

    def touch(self) -> None:
        """
        Lines arrived. Only the time is noted (this runs for every read); the timer
        compares against it when it fires.
        """
        phase = self.phase
        if phase is Phase.ALIVE:
            self._last_activity = self._clock.seconds()
            if self._call is None:
                self._arm(self._limit)
        elif phase is Phase.SILENT or phase is Phase.STALLED:
            self._last_activity = self._clock.seconds()
            self.phase = Phase.ALIVE
            self._arm(self._limit)
            if phase is Phase.STALLED:
                self._owner.resumed()

    def stop(self) -> None:
        """No stream to watch any more."""
        self.phase = Phase.OFF
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def pause(self) -> None:
        """We stopped reading: no timer runs until `resume` (the phase is kept)."""
        self._paused = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def resume(self) -> None:
        """We read again: the phase's wait starts afresh."""
        self._paused = False
        phase = self.phase
        self._last_activity = self._clock.seconds()
        if phase is Phase.HEAD:
            self._arm(self.head_timeout)
        elif phase is Phase.STALLED:
            self._arm(self._reconnect_timeout)
        elif phase is not Phase.OFF:
            if phase is Phase.SILENT:
                self.phase = Phase.ALIVE
            self._arm(self._limit)

    def _arm(self, delay: float) -> None:
        if self._paused:
            return
        if self._call is not None and self._call.active():
            self._call.reset(delay)
        else:
            self._call = self._clock.callLater(delay, self._fired)

    def _later(self, delay: float) -> None:
        if self._paused:
            return
        self._call = self._clock.callLater(delay, self._fired)

    def _fired(self) -> None:
        self._call = None
        phase = self.phase
        if phase is Phase.HEAD:
            self._owner.head_timed_out()
        elif phase is Phase.ALIVE or phase is Phase.UNWATCHED:
            silent_for = self._clock.seconds() - self._last_activity
            if self._limit - silent_for > _ROUNDING:
                self._later(self._limit - silent_for)
            elif self._polling:
                self._owner.silent("poll not answered within the server's idle time")
            else:
                self.phase = Phase.SILENT
                self._later(self._stalled_timeout)
        elif phase is Phase.SILENT:
            self.phase = Phase.STALLED
            self._later(self._reconnect_timeout)
            self._owner.stalled()
        elif phase is Phase.STALLED:
            self._owner.silent("stream stalled: no data, not even keepalives")
