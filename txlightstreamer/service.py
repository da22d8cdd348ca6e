"""
The ``twistd lightstreamer`` service and ``python -m txlightstreamer``: stream a
Lightstreamer server to JSON lines.

Both entry points share `Options` and run the same `LsService`. The JSON-lines output
is a public contract (see README.rst): one object per line, flushed per line, each with
an ``"event"`` key; field values are strings or ``null``. The records themselves come from
`txlightstreamer.events`; the options and the ``--subscribe`` language live in
`txlightstreamer.cli` and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txlightstreamer import ItemUpdate, LsClient, Table
from txlightstreamer._demo_service import DemoService
from txlightstreamer._jsonlines import JsonLinesWriter
from txlightstreamer.cli.options import PASSWORD_ENV, Options, stderr_log_observer
from txlightstreamer.cli.subscribe import (
    MODES,
    SubscriptionSpec,
    demo_subscriptions,
    parse_subscription,
)
from txlightstreamer.errors import SessionLostError, TransportError
from txlightstreamer.events import (
    DATA_EVENTS,
    EventFeed,
    UpdateEncoder,
    encode_event,
    error_event,
    item_event,
    lost_event,
    session_event,
    stamped,
    status_event,
    subscribed_event,
    unsubscribed_event,
    update_event,
)
from txlightstreamer.sinks._bridge import RedisSinkService
from txlightstreamer.sinks._connection import RedisUnavailable
from txlightstreamer.sinks._shard import shard_of
from txlightstreamer.sinks._source import RedisSource
from txlightstreamer.states import Status
from txlightstreamer.web import Relay, StreamRelay
from txlightstreamer.web._metrics import mount_metrics
from txlightstreamer.web._port import RelayPortService

__all__ = [
    "MODES",
    "PASSWORD_ENV",
    "DemoService",
    "JsonLinesWriter",
    "LsService",
    "Options",
    "SubscriptionSpec",
    "demo_subscriptions",
    "encode_event",
    "error_event",
    "item_event",
    "lost_event",
    "makeService",
    "parse_subscription",
    "session_event",
    "status_event",
    "stderr_log_observer",
    "subscribed_event",
    "unsubscribed_event",
    "update_event",
]

log = Logger()

#: How long a clean stop waits for the server to acknowledge the destroy request.
DESTROY_TIMEOUT = 10.0


# -- the service ----------------------------------------------------------------------------


def _exit_process(code: int) -> None:
    """End the process with ``code``: twistd itself can only exit 0 or die by a signal."""
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    # twistd has no exit-status API (twisted/twisted#11335), and every exception raised
    # from inside the reactor is caught and logged: this is the only way to report 1.
    os._exit(code)


class LsService(MultiService):
    """
    Runs one `LsClient` and writes what it reports as JSON lines.

    It connects on `startService` and destroys the session on `stopService` (whose
    Deferred fires once everything is closed). It also stops by itself after
    ``--max-updates``/``--duration`` (exit code 0) or when the session ends for good
    (exit code 1); `when_done` fires with that code. With ``stop_reactor`` (twistd) a
    self-initiated stop also stops the reactor, and SIGINT/SIGTERM are a clean stop.

    Its child services, the demo server (``--demo``) and the relay's port
    (``--http-port``), are stopped one after the other, newest first, once the session
    is destroyed; the output is closed last.
    """

    name = "lightstreamer"

    def __init__(
        self,
        options: Options,
        *,
        reactor: Any = None,
        output: JsonLinesWriter | None = None,
        stop_reactor: bool = False,
    ) -> None:
        super().__init__()
        self.options = options
        self._reactor = reactor
        self._writer = output
        self._stop_reactor = stop_reactor
        self.specs: list[SubscriptionSpec] = list(options["subscribe"])
        if options["demo"] and not self.specs:
            self.specs = demo_subscriptions()
        if options.get("shard") is not None:
            self.specs = _shard_specs(self.specs, *options["shard"])
        self.client: LsClient | None = None
        self.tables: list[Table] = []
        self.demo: DemoService | None = None
        if options["demo"]:
            self.demo = DemoService(self.reactor, options.get("demo-profile"),
                                    options.get("demo-port") or 0)
            self.demo.setServiceParent(self)
        #: The web relay's port service with --http-port.
        self.http: RelayPortService | None = None
        self.url: str | None = options["url"]
        self.updates = 0
        self.exit_code: int | None = None
        self._timer: Any = None
        self._give_up = _GiveUp(self)
        self._feed = EventFeed(self)
        #: Counts for /metrics: lost updates, sessions by continuity.
        self.lost_updates = 0
        self.sessions: Counter[str] = Counter()
        self._replacing = False
        self._session_open = False
        self._connecting_since = 0.0
        self._told = False
        #: The Redis sink (--sink) and its lease (--lease), a child service.
        self.redis: RedisSinkService | None = None
        sink_target = getattr(options, "sink", None)
        if sink_target is not None:
            self.redis = RedisSinkService(
                sink_target, self.reactor, self.write, lease=options.get("lease"),
                lease_time=options.get("lease-time") or 10.0)
            self.redis.setServiceParent(self)
            self.redis.pause_reading_of(lambda: self.client)
        #: The Redis stream read (--source) and the relay it feeds.
        self.source: RedisSource | None = None
        self.stream_relay: StreamRelay | None = None
        #: True from the moment the service starts stopping.
        self.stopping = False
        self._stopped = False
        self._stop_waiters: list[Deferred[None]] = []
        self._done_waiters: list[Deferred[int]] = []

    @property
    def reactor(self) -> Any:
        """The reactor in use (the global one unless given)."""
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    @property
    def server(self) -> Any:
        """The demo server (``--demo``), else None."""
        return self.demo.server if self.demo is not None else None

    @property
    def feed(self) -> Any:
        """The demo server's feed (``--demo``), else None."""
        return self.demo.feed if self.demo is not None else None

    @property
    def relay(self) -> Any:
        """The web relay (``--http-port``), else None."""
        return self.http.relay if self.http is not None else None

    # -- life cycle ------------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Open the output, start the demo server if asked, connect and subscribe."""
        if self.stopping:  # its client, output and children were closed for good
            raise RuntimeError("an LsService runs once: make a new one to start again")
        Service.startService(self)
        for warning in self.options.warnings:
            log.warn("{warning}", warning=warning)
        if self._stop_reactor:
            self.reactor.callWhenRunning(handle_stop_signals, self.reactor, self._stop_the_reactor)
        if self._writer is None:
            try:
                self._writer = JsonLinesWriter.open(  # flushed once per reactor turn
                    self.options["output"], on_broken=self._output_broken, clock=self.reactor)
                self._writer.pause_reading_of(lambda: self.client)  # a lagging reader
            except OSError as e:
                log.error("Cannot open --output {path}: {error}",
                          path=self.options["output"], error=e.strerror)
                self._finish(1, "cannot open the output")
                return
        duration = self.options["duration"]
        if duration is not None:
            self._timer = self.reactor.callLater(
                duration, self._finish, 0, f"--duration {duration:g} s elapsed")
        for child in self:
            child.startService()
        if getattr(self.options, "source", None) is not None:
            self._start_source()
            return
        started = self.demo.url() if self.demo is not None else succeed(str(self.url))
        if self.redis is not None:
            started.addCallback(self._open_sink)
        started.addCallback(self._begin)
        started.addErrback(self._start_failed)

    def stopService(self) -> Deferred[None]:  # noqa: N802 (Twisted API)
        """Destroy the session, stop the children, close the output; fires when done."""
        Service.stopService(self)
        if self.exit_code is None:
            self.exit_code = 0
        return self._shutdown()

    def when_done(self) -> Deferred[int]:
        """Fires with the exit code once the service has stopped (0 clean, 1 fatal)."""
        d: Deferred[int] = Deferred()
        if self._stopped:
            d.callback(self.exit_code or 0)
        else:
            self._done_waiters.append(d)
        return d

    def _open_sink(self, url: str) -> Deferred[str]:
        assert self.redis is not None
        return self.redis.open().addCallback(lambda _: url)

    def _begin(self, url: str) -> None:
        """Connect now, or (--lease) each time the lease is acquired."""
        if self.stopping:
            return
        self.url = url
        if self.redis is None or self.redis.lease is None:
            self._connect(url)
            return
        if self.options["http-port"] is not None:
            self._make_client(url)  # a standby serves /healthz and /metrics too
        log.info("Waiting for lease {name!r} (standby)", name=self.redis.lease.name)
        self.redis.start_lease(self._lease_acquired, self._lease_lost)

    def _lease_acquired(self, replacing: bool) -> None:
        # A session after another bridge's: consumers must reset their state.
        self._replacing = replacing
        if not self.stopping and not self._session_open:
            self._connect(str(self.url))

    def _lease_lost(self, reason: str) -> None:
        """Destroy the session at once: another bridge writes now. Back to standby."""
        client, self.client = self.client, None
        self.tables = []
        self._session_open = False
        if client is not None:
            client.destroy().addErrback(lambda _: None)
        if self.options["http-port"] is not None and not self.stopping:
            self._make_client(str(self.url))

    def _connect(self, url: str) -> None:
        """Open a session (on a new client unless a fresh one waits)."""
        if self.stopping:
            return
        client = self.client
        if client is None or self._session_open:
            client = self._make_client(url)
        if self.stopping:
            return  # --http-port could not listen: the client is destroyed already
        self._session_open = True
        self._connecting_since = self.reactor.seconds()
        created = client.create_session(
            self.options["adapter-set"], self.options["user"], self.options.password,
            timeout=self.options.get("give-up-after"))
        created.addErrback(lambda failure: self._create_failed(client, failure))

    def _make_client(self, url: str) -> LsClient:
        """A client with its tables, wired to the outputs (and the relay); not started."""
        self.url = url
        client = LsClient(url, reactor=self.reactor, protocol_version=self.options["protocol"],
                          trust_roots=self.options.get("ca-file"))
        self.client = client
        self._feed = EventFeed(_Retirable(self, client))
        self._feed.watch_client(client)
        client.on_status(lambda status, reason: self._on_status(client, status, reason))
        tables: list[Table] = []
        for index, spec in enumerate(self.specs):
            table = spec.table(client)
            self._feed.watch_table(index, table)
            tables.append(table)
        self.tables = tables
        if self.options["http-port"] is not None:
            if self.http is None:
                self._serve(Relay(client, self.tables, clock=self.reactor))
            else:
                self.http.relay.attach(client, self.tables)
        return client

    def _serve(self, relay: Any) -> None:
        """Serve ``relay`` (with /metrics and /healthz) on --http-port."""
        mount_metrics(relay.resource(), self.metric_values, self.health)
        self.http = RelayPortService(
            relay, self.reactor, self.options["http-port"],
            lambda reason: self._finish(1, reason))
        self.http.setServiceParent(self)  # starts it: this service is running

    def _start_source(self) -> None:
        """--source: serve the relay from a Redis stream, no Lightstreamer session."""
        target = self.options.source
        assert target is not None
        relay = self.stream_relay = StreamRelay(clock=self.reactor)
        source = self.source = RedisSource(target, relay.write_entry, clock=self.reactor)

        def status(state: str, reason: str | None) -> None:
            relay.connected = state == "connected"

        source.on_status(status)
        started = source.start()
        started.addCallback(lambda _: self._serve(relay))
        started.addErrback(self._start_failed)

    def _start_failed(self, failure: Failure) -> None:
        if failure.check(RedisUnavailable):
            option = "--source" if self.source is not None else "--sink"
            self._finish(1, f"cannot use {option}: {failure.value}")
        elif failure.check(CannotListenError):  # --demo-port taken: one line, as --http-port
            self._finish(1, f"cannot serve --demo-port: {failure.value}")
        else:
            log.failure("Could not start", failure)
            self._finish(1, "could not start")

    # -- scaling out: back-pressure, metrics, health ---------------------------------------

    def health(self) -> str | None:
        """None while healthy (``/healthz`` 200), else why not (503)."""
        return _health(self)

    def metric_values(self) -> dict[str, Any]:
        """The values `/metrics` shows (see `txlightstreamer.web._metrics`)."""
        return _metric_values(self)

    # -- client events ---------------------------------------------------------------------

    def write(self, event: Mapping[str, Any], to_sink: bool = True) -> None:
        """
        The event sink the client's feed writes to: subscription data is dropped once
        stopping (so --max-updates is exact), updates are counted. ``to_sink=False``:
        the JSON lines only (a session destroyed after its lease was lost).
        """
        kind = event["event"]
        if self.stopping and kind in DATA_EVENTS:
            return
        event = stamped(event, self.reactor.seconds())
        if kind == "session":
            if self._replacing and event["continuity"] == "new":
                event = {**event, "continuity": "replaced"}
            self._replacing = False
            self.sessions[str(event["continuity"])] += 1
        elif kind == "lost":
            self.lost_updates += int(event.get("count") or 0)
        if kind == "error" and not self._told:
            where = "".join(f" ({name} {event[name]})" for name in ("sub", "key")
                            if name in event)
            log.warn("Error{where}: {message}", where=where, message=event["message"])
        if self.redis is not None and to_sink:  # one encoding for both outputs
            line = encode_event(event)
            if self._writer is not None:
                self._writer.write_line(line)
            self.redis.sink.write_data(line)
        elif self._writer is not None:
            self._writer.write(event)
        if kind == "update":
            self.count_update()

    def count_update(self) -> None:
        """One more update written: stop at --max-updates."""
        self.updates += 1
        limit = self.options["max-updates"]
        if limit is not None and self.updates >= limit:
            self._finish(0, f"--max-updates {limit} reached")

    def _on_status(self, client: LsClient, status: str, reason: str | None) -> None:
        if client is not self.client:
            return  # a session destroyed when the lease was lost
        self._give_up.status(status, reason)
        if status == "DISCONNECTED" and not self.stopping:
            # The session ended for good (not by us); let the client finish reporting.
            self.reactor.callLater(0, self._finish, 1, f"session ended: {reason}")

    def _create_failed(self, client: LsClient, failure: Failure) -> None:
        if client is not self.client:
            return  # a session destroyed when the lease was lost
        if self.stopping and failure.check(SessionLostError):
            return
        limit = self.options.get("give-up-after")
        if limit is not None and self.reactor.seconds() - self._connecting_since >= limit:
            self._give_up.now(str(failure.value))  # create_session(timeout=) gave up
            return
        if isinstance(failure.value, Exception):
            self._feed.report_error(failure.value)
        self._finish(1, f"no session: {failure.value}")

    def _output_broken(self, error: OSError) -> None:
        log.warn("JSON output closed: {error}", error=error)
        self._finish(0 if isinstance(error, BrokenPipeError) else 1, "the output is gone")

    # -- stopping --------------------------------------------------------------------------

    def _finish(self, code: int, reason: str) -> None:
        """Stop by ourselves (limits reached, fatal error)."""
        if self.stopping:
            return
        self.exit_code = code
        if code:
            log.error("Stopping: {reason}", reason=reason)
        else:
            log.info("Stopping: {reason}", reason=reason)
        d = self._shutdown()
        if self._stop_reactor:  # twistd may start the service before the reactor runs
            d.addCallback(lambda _: self.reactor.callWhenRunning(self._stop_the_reactor))

    def _stop_the_reactor(self) -> None:
        if self.exit_code:
            self.reactor.addSystemEventTrigger(
                "after", "shutdown", _exit_process, self.exit_code)
        stop_reactor(self.reactor)

    def _shutdown(self) -> Deferred[None]:
        """Start (once) the orderly shutdown; each call gets its own Deferred."""
        d: Deferred[None] = Deferred()
        if self._stopped:
            d.callback(None)
            return d
        self._stop_waiters.append(d)
        if not self.stopping:
            self.stopping = True
            ensureDeferred(self._close_all()).addBoth(self._closed)
        return d

    async def _close_all(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._give_up.cancel()
        if self.client is not None:
            destroyed = self.client.destroy()
            destroyed.addTimeout(DESTROY_TIMEOUT, self.reactor)
            try:
                await destroyed
            except Exception as e:
                log.warn("Destroying the session failed: {error}", error=e)
        if self.source is not None:
            await self.source.stop()
        children: list[IService] = list(self)
        for child in reversed(children):  # the relay's port, then the demo server
            if child.running:
                await maybeDeferred(child.stopService)
        if self._writer is not None:
            await self._writer.close()

    def _closed(self, result: object) -> None:
        if isinstance(result, Failure):
            log.failure("Error while stopping", result)
        self._stopped = True
        if self.exit_code is None:
            self.exit_code = 0
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            d.callback(None)
        done, self._done_waiters = self._done_waiters, []
        for dd in done:
            dd.callback(self.exit_code)


def makeService(  # noqa: N802 (the IServiceMaker name)
    options: Options,
    *,
    reactor: Any = None,
    output: JsonLinesWriter | None = None,
    stop_reactor: bool = True,
) -> MultiService:
    """
    The service tree for ``twistd lightstreamer``: a `MultiService` holding an `LsService`.

    ``stop_reactor`` (the twistd default) makes a self-initiated stop end the process.
    """
    top = MultiService()
    LsService(options, reactor=reactor, output=output, stop_reactor=stop_reactor) \
        .setServiceParent(top)
    return top


def handle_stop_signals(reactor: Any, stop: Callable[[], None]) -> None:
    """
    Under twistd, SIGINT/SIGTERM stop cleanly: exit status 0, not death by signal. The
    reactor's own handlers record the signal for twistd to die by; these replace them.
    """

    def on_signal(number: int, frame: FrameType | None) -> None:
        log.info("Received {signal}, shutting down.", signal=signal.Signals(number).name)
        reactor.callFromThread(stop)

    def ignore_signals() -> None:
        # Stopped: a late Ctrl-C must not kill the process and change its exit status.
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)

    for number in (signal.SIGINT, signal.SIGTERM):
        if callable(signal.getsignal(number)):  # only where the reactor handles it
            try:
                signal.signal(number, on_signal)
            except ValueError:  # not the main thread: the reactor has none either
                return
    reactor.addSystemEventTrigger("after", "shutdown", ignore_signals)


def stop_reactor(reactor: Any) -> None:
    """Stop ``reactor`` unless it is stopping already (a second Ctrl-C)."""
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


class _GiveUp:
    """
    ``--give-up-after``: the service stops (exit status 1) once it has had no session for
    that long, at start-up (``create_session``'s timeout tells it `now`) and after a
    session was lost (the time counts from the first status out of ``CONNECTED``).
    """

    def __init__(self, service: LsService) -> None:
        self._service = service
        self._timer: IDelayedCall | None = None
        self._cause = "the session was lost"

    def status(self, status: str, reason: str | None) -> None:
        """The current client's status changed."""
        limit = self._service.options.get("give-up-after")
        if limit is None:
            return
        if status.startswith("CONNECTED:"):
            self.cancel()
        elif status in (Status.WILL_RETRY, Status.TRYING_RECOVERY):
            self._cause = reason or self._cause
            if self._timer is None:
                self._timer = self._service.reactor.callLater(
                    limit, lambda: self.now(self._cause))

    def now(self, cause: str) -> None:
        """Give up, with the last cause."""
        self.cancel()
        service = self._service
        reason = (f"gave up after {service.options['give-up-after']:g} s without a "
                  f"session: {cause}")
        service._told = True  # the "Stopping:" line says it: log it once
        service._feed.report_error(TransportError(reason, retryable=False))
        service._told = False
        service._finish(1, reason)

    def cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class _Retirable:
    """The event sink of one client: once it is not the service's client any more (its
    lease was lost), its last events go to the JSON lines only, never to the stream."""

    def __init__(self, service: LsService, client: LsClient) -> None:
        self._service = service
        self._client = client
        self._seconds = service.reactor.seconds

    def write(self, event: Mapping[str, Any]) -> None:
        self._service.write(event, to_sink=self._service.client is self._client)

    def write_update(self, encoder: UpdateEncoder, update: ItemUpdate) -> None:
        """`LsService.write` for an update, encoded once without its record (faster)."""
        service = self._service
        if service.stopping:
            return
        redis = service.redis if service.client is self._client else None
        writer = service._writer
        if writer is not None or redis is not None:
            line = encoder.encode(update, self._seconds())
            if writer is not None:
                writer.write_line(line)
            if redis is not None:
                redis.sink.write_data(line)
        service.count_update()


def _shard_specs(specs: list[SubscriptionSpec], k: int, n: int) -> list[SubscriptionSpec]:
    """
    ``--shard K/N``: each spec keeps the items with ``shard_of(item, N) == K``
    (``crc32(utf-8 name) % N + 1``); a spec left without items is not subscribed.
    """
    kept = []
    for spec in specs:
        items = tuple(item for item in spec.items if shard_of(item, n) == k)
        if items:
            kept.append(dataclasses.replace(spec, items=items))
        else:
            log.info("--shard {k}/{n}: no item of {items} in this shard", k=k, n=n,
                     items=",".join(spec.items))
    return kept


def _health(service: LsService) -> str | None:
    """None while healthy (``/healthz`` 200), else why not (503)."""
    if service.stream_relay is not None:
        return None if service.stream_relay.connected else "the Redis stream is not read"
    if service.redis is not None and not service.redis.connected:
        return "Redis is unavailable"
    if service.redis is not None and service.redis.standby:
        return None  # a standby that reaches Redis is ready to take over
    status = service.client.status if service.client is not None else "DISCONNECTED"
    return None if str(status).startswith("CONNECTED") else f"Lightstreamer: {status}"


def _metric_values(service: LsService) -> dict[str, Any]:
    """The values `/metrics` shows (see `txlightstreamer.web._metrics`)."""
    values: dict[str, Any] = {"txls_healthy": int(_health(service) is None)}
    if service.source is not None:
        values["txls_source_events_read"] = service.source.read
        values["txls_source_connected"] = int(service.source.connected)
    else:
        values["txls_updates_received"] = service.updates
        values["txls_lost_updates"] = service.lost_updates
        values["txls_sessions"] = dict(service.sessions)
    if service.redis is not None:
        values.update(service.redis.values())
    relay = service.stream_relay or service.relay
    if relay is not None:
        values["txls_relay_clients"] = len(relay._streams)
        values["txls_relay_dropped_clients"] = relay.dropped_clients
    return values
