"""
`RedisLease`: one holder at a time among bridges started with the same lease name.

The holder sets ``SET key token NX PX ttl`` and renews it every third of the ttl; a
standby tries to take it every tenth of the ttl, so it takes over soon after the holder's
key expires (at most one ttl after the holder's last renewal). Every write of the sink is
fenced by the same key inside Redis, so a holder that stalled past its lease cannot write
once another bridge holds it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txlightstreamer.sinks._connection import failure_text, script_runner
from txlightstreamer.sinks._scripts import RELEASE, RENEW
from txlightstreamer.sinks._target import RedisTarget

__all__ = ["RedisLease"]

log = Logger()


class RedisLease:
    """
    A named lease in Redis, renewed on the injected clock.

    States: ``"standby"`` (waiting to take it), ``"holder"``, ``"stopped"``.
    """

    def __init__(
        self, target: RedisTarget, name: str, *, clock: IReactorTime, ttl: float = 10.0
    ) -> None:
        if not name:
            raise ValueError("the lease needs a name")
        if ttl <= 0:
            raise ValueError("the lease time must be positive")
        # The hash tag puts the lease in the stream's cluster slot (the sink's script
        # reads both).
        self.key = f"{{{target.stream}}}:lease:{name}"
        self.name = name
        self.token = uuid.uuid4().hex
        self.ttl = ttl
        self.state = "standby"
        #: Whether Redis answered the last attempt to take or renew the lease.
        self.reachable = True
        self._clock = clock
        self._connection: Any = None
        self._renew: Callable[[list[str], list[Any]], Deferred[Any]] | None = None
        self._release: Callable[[list[str], list[Any]], Deferred[Any]] | None = None
        self._timer: IDelayedCall | None = None
        self._renewed_at = 0.0
        self._acquired_cbs: list[Callable[[], object]] = []
        self._lost_cbs: list[Callable[[str], object]] = []

    def __repr__(self) -> str:
        return f"<RedisLease {self.name!r} {self.state}>"

    @property
    def held(self) -> bool:
        """Whether this bridge holds the lease now."""
        return self.state == "holder"

    def on_acquired(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` each time this bridge becomes the holder."""
        self._acquired_cbs.append(callback)

    def on_lost(self, callback: Callable[[str], object]) -> None:
        """Call ``callback(reason)`` when the lease is lost: stop the session at once."""
        self._lost_cbs.append(callback)

    def start(self, connection: Any) -> None:
        """Begin: try to take the lease now, then keep trying or renewing."""
        self._connection = connection
        self._renew = script_runner(connection, RENEW)
        self._release = script_runner(connection, RELEASE)
        self._try_acquire()

    def stop(self) -> Deferred[None]:
        """Stop renewing; give the lease up if held so a standby need not wait."""
        held = self.held
        self.state = "stopped"
        self._cancel()
        if not held or self._release is None:
            return succeed(None)
        d = self._release([self.key], [self.token])
        d.addTimeout(2.0, self._clock)
        return d.addBoth(lambda _: None)

    def lost(self, reason: str) -> None:
        """The lease is no longer ours (renewal refused, or Redis told the sink so)."""
        if self.state != "holder":
            return
        log.warn("Lease {name!r} lost: {reason}", name=self.name, reason=reason)
        self.state = "standby"
        self._cancel()
        for callback in list(self._lost_cbs):
            callback(reason)
        self._schedule(self.ttl / 10, self._try_acquire)

    # -- timers -----------------------------------------------------------------------------

    def _try_acquire(self) -> None:
        self._timer = None
        if self.state != "standby":
            return
        d: Deferred[Any] = self._connection.execute_command(
            "SET", self.key, self.token, "NX", "PX", int(self.ttl * 1000))
        d.addTimeout(self.ttl / 2, self._clock)
        d.addCallbacks(self._acquire_answer, self._acquire_failed)

    def _acquire_answer(self, answer: Any) -> None:
        self.reachable = True
        if self.state != "standby":
            return
        if answer in ("OK", b"OK", True):
            self.state = "holder"
            self._renewed_at = self._clock.seconds()
            log.info("Lease {name!r} acquired", name=self.name)
            self._schedule(self.ttl / 3, self._renew_now)
            for callback in list(self._acquired_cbs):
                callback()
        else:
            self._schedule(self.ttl / 10, self._try_acquire)

    def _acquire_failed(self, failure: Failure) -> None:
        if self.state == "standby":
            if self.reachable:  # once per outage, not on every try
                log.info("Lease {name!r}: Redis unavailable ({e})", name=self.name,
                         e=failure_text(failure))
            self.reachable = False
            self._schedule(self.ttl / 10, self._try_acquire)

    def _renew_now(self) -> None:
        self._timer = None
        if self.state != "holder" or self._renew is None:
            return
        d = self._renew([self.key], [self.token, int(self.ttl * 1000)])
        d.addTimeout(self.ttl / 3, self._clock)
        d.addCallbacks(self._renew_answer, self._renew_failed)

    def _renew_answer(self, answer: Any) -> None:
        self.reachable = True
        if self.state != "holder":
            return
        if int(answer) == 1:
            self._renewed_at = self._clock.seconds()
            self._schedule(self.ttl / 3, self._renew_now)
        else:
            self.lost("another bridge holds it")

    def _renew_failed(self, failure: Failure) -> None:
        self.reachable = False
        if self.state != "holder":
            return
        # Without an answer we cannot know; past the ttl the key has surely expired.
        if self._clock.seconds() - self._renewed_at >= self.ttl:
            self.lost(f"could not renew it within its time ({failure_text(failure)})")
        else:
            self._schedule(self.ttl / 10, self._renew_now)

    def _schedule(self, delay: float, call: Callable[[], None]) -> None:
        self._cancel()
        self._timer = self._clock.callLater(delay, call)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
