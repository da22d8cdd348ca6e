"""
The bridge's Redis side as a child service of `~txlightstreamer.service.LsService`:
the sink (``--sink``), its optional lease (``--lease``) and the events they report.

Event shapes (written to the JSON lines and the stream like every other event)::

    {"event": "sink", "state": "connected" | "disconnected", "sink": "redis://H:P/DB",
     "reason": TEXT | null}
    {"event": "lease", "name": NAME, "state": "holder" | "standby", "reason": TEXT | null}

A ``disconnected`` sink event waits in the sink's buffer and reaches the stream after the
reconnection, before the events that waited with it. A ``lease`` event with ``standby``
is only in the JSON lines (the lost lease forbids writing it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from txlightstreamer._client_reading import ClientReading
from txlightstreamer.events import encode_event
from txlightstreamer.sinks._lease import RedisLease
from txlightstreamer.sinks._target import RedisTarget
from txlightstreamer.sinks.redis import RedisSink

__all__ = ["RedisSinkService", "lease_event", "sink_event"]

log = Logger()

#: Events per Lua batch (Redis runs about 5 ms per 1,000).
BATCH_SIZE = 2_000


def sink_event(state: str, target: RedisTarget, reason: str | None) -> dict[str, Any]:
    """``{"event": "sink", "state": S, "sink": ADDRESS, "reason": R}``."""
    return {"event": "sink", "state": state, "sink": target.address, "reason": reason}


def lease_event(state: str, name: str, reason: str | None) -> dict[str, Any]:
    """``{"event": "lease", "name": NAME, "state": S, "reason": R}``."""
    return {"event": "lease", "name": name, "state": state, "reason": reason}


class RedisSinkService(Service):
    """
    Holds a `RedisSink` (and a `RedisLease` with ``lease``): `open` connects, stopping
    writes what is buffered, gives the lease up and disconnects.

    :param report: where this service's own events go (the bridge's event sink).
    """

    name = "sink"

    def __init__(
        self,
        target: RedisTarget,
        clock: IReactorTime,
        report: Callable[[Mapping[str, Any]], object],
        *,
        lease: str | None = None,
        lease_time: float = 10.0,
    ) -> None:
        self.target = target
        self._clock = clock
        self._report = report
        self.lease = RedisLease(target, lease, clock=clock, ttl=lease_time) if lease else None
        # Big batches: a burst read in one reactor turn is written in one or two.
        self.sink = RedisSink(target, clock=clock, encode=encode_event, lease=self.lease,
                              batch_size=BATCH_SIZE)
        self.sink.on_status(
            lambda state, reason: report(sink_event(state, target, reason)))

    def open(self, timeout: float = 5.0) -> Deferred[None]:
        """Connect; fails with `RedisUnavailable` (one clear line, no password)."""
        return self.sink.start(timeout)

    def start_lease(
        self, acquired: Callable[[bool], object], lost: Callable[[str], object]
    ) -> None:
        """
        Compete for the lease: ``acquired(replacing)`` once held (``replacing``: the
        stream already has another session's events), ``lost(reason)`` when lost.
        """
        lease = self.lease
        assert lease is not None, "no --lease"

        def on_acquired() -> None:
            self._report(lease_event("holder", lease.name, None))
            # Redis unavailable: assume another session was there (consumers reset).
            self.sink.take_over().addErrback(lambda _: True).addCallback(acquired)

        def on_lost(reason: str) -> None:
            self._report(lease_event("standby", lease.name, reason))
            dropped = self.sink.discard()  # the standby event too: only in the JSON lines
            if dropped > 1:
                log.warn("Lease lost: {n} events of the old session not written",
                         n=dropped - 1)
            lost(reason)

        lease.on_acquired(on_acquired)
        lease.on_lost(on_lost)
        lease.start(self.sink._connection)

    def pause_reading_of(self, producer: Callable[[], Any]) -> None:
        """
        Back-pressure: while the sink is full, pause ``producer()`` (the current client)
        with its ``pause_reading()``/``resume_reading()`` where it has them.
        """
        reading = ClientReading(producer)
        warned = False

        def pause() -> None:
            nonlocal warned
            if not reading.pause() and not warned:
                warned = True
                log.warn("The Redis sink is full and this client cannot pause reading: "
                         "events past its buffer are dropped and reported")

        self.sink.on_pause(pause)
        self.sink.on_resume(reading.resumeProducing)

    @property
    def standby(self) -> bool:
        """Whether this bridge waits for its lease."""
        return self.lease is not None and not self.lease.held

    @property
    def connected(self) -> bool:
        """Whether Redis answers: the sink's writes tell, or a standby's lease attempts."""
        if self.lease is not None and not self.lease.held:
            return self.lease.reachable  # a standby writes nothing
        return self.sink.connected

    def values(self) -> dict[str, Any]:
        """Metric values (see `txlightstreamer.web._metrics`)."""
        sink = self.sink
        values: dict[str, Any] = {
            "txls_sink_events_written": sink.written,
            "txls_sink_events_dropped": sink.dropped,
            "txls_sink_buffer_depth": sink.depth,
            "txls_sink_pauses": sink.pauses,
            "txls_sink_connected": int(self.connected),
        }
        if self.lease is not None:
            values["txls_lease_held"] = int(self.lease.held)
        return values

    def stopService(self) -> Deferred[None]:  # noqa: N802 (Twisted API)
        Service.stopService(self)
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self.lease is not None:  # write what waits, then let a standby take over
            if self.lease.held:
                await self.sink.drained()
            await self.lease.stop()
        await self.sink.stop()
