"""
`LsClient`: the public front end of one Lightstreamer client.

It wires together objects that each own one concern: the session (`_session`), the
control channel (`_control`), the subscription registry that tables attach to
(`_registry`), the reverse heartbeat (`_heartbeat`) and the messages (`_messages`). The
session reports to a private adapter (`_SessionEvents`), not to the client's public API.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txlightstreamer import _session
from txlightstreamer._client_events import ClientEvents, SessionInfo
from txlightstreamer._connect import CreateWaiters
from txlightstreamer._control import ControlChannel
from txlightstreamer._heartbeat import ReverseHeartbeat
from txlightstreamer._messages import MessageManager, _Outgoing
from txlightstreamer._registry import SubscriptionRegistry
from txlightstreamer._subscription import Table, TableOwner
from txlightstreamer.errors import (
    ClientStateError,
    LightstreamerError,
    SessionLostError,
    TransportError,
)
from txlightstreamer.protocol import (
    SUPPORTED_VERSIONS,
    ConOk,
    Error,
    MsgDone,
    MsgFail,
    Notification,
    ReqErr,
    ReqOk,
    Update,
    check_limit,
    check_text,
    constrain,
    destroy,
)
from txlightstreamer.protocol._hotpath import UpdateRouter
from txlightstreamer.states import ConnectionState, Continuity, Status
from txlightstreamer.transport import TransportOptions, make_transports
from txlightstreamer.transport._endpoints import refuse_userinfo
from txlightstreamer.transport.interfaces import IRequestStream

__all__ = [
    "STATE_CONNECTED",
    "STATE_CONNECTING",
    "STATE_DISCONNECTED",
    "STATE_RECONNECTING",
    "STATE_STALLED",
    "LsClient",
    "SessionInfo",
]

log = Logger()

#: The session machine's states in which the server holds the session (destroy tells it).
_HELD: Final = frozenset({_session.State.BOUND, _session.State.BINDING,
                          _session.State.RECOVERING, _session.State.WAITING})

# The seed API's names for the `ConnectionState` members.
STATE_CONNECTING: Final = ConnectionState.CONNECTING
STATE_CONNECTED: Final = ConnectionState.CONNECTED
STATE_STALLED: Final = ConnectionState.STALLED
STATE_RECONNECTING: Final = ConnectionState.RECONNECTING
STATE_DISCONNECTED: Final = ConnectionState.DISCONNECTED

# Longest destroy() waits for the server to confirm before closing everything anyway.
_DESTROY_GRACE = 0.5

_STATE_OF_STATUS = {
    Status.CONNECTING: STATE_CONNECTING,
    Status.STREAM_SENSING: STATE_CONNECTING,
    Status.STALLED: STATE_STALLED,
    Status.WILL_RETRY: STATE_RECONNECTING,
    Status.TRYING_RECOVERY: STATE_RECONNECTING,
    Status.DISCONNECTED: STATE_DISCONNECTED,
}


class LsClient(ClientEvents):
    """
    A Lightstreamer client for one server, driven by the Twisted reactor.

    :param url: the server address, e.g. ``https://push.example.com`` (a path prefix is
        kept: ``https://host/prefix`` sends to ``/prefix/lightstreamer/...``).
    :param reactor: provides the clock and networking; the global reactor by default.
    :param http_client: any treq-like object (the ``treq`` module, an ``HTTPClient``,
        ``treq.testing.StubTreq``) used for every request instead of private pools.
    :param protocol_version: ``"2.5.0"`` (default) or ``"2.4.0"`` for older servers.
    :param content_length: bytes a streaming connection may carry before the server ends
        it with ``LOOP`` and the client rebinds.
    :param keepalive_millis: keepalive interval asked of the server (None: its default).
    :param retry_delay: seconds between connection attempts; also the timeout of each
        connection attempt and control request.
    :param first_retry_max_delay: the first retry after a drop waits a random delay up to
        this many seconds.
    :param stalled_timeout: seconds of silence past the keepalive before ``STALLED``.
    :param reconnect_timeout: seconds ``STALLED`` lasts before the stream is given up.
    :param session_recovery_timeout: seconds a dropped session is tried for recovery
        (``LS_recovery_from``) before a new one is created.
    :param max_line_length: longest line accepted from the server, in bytes.
    :param max_pending_requests: control requests that may wait for a session at once.
    :param reverse_heartbeat_interval: seconds of client silence after which a heartbeat
        request is sent (0: never).
    :param protocol_fallback: retry with TLCP 2.4.0 when a server refuses 2.5.0.
    :param forced_transport: ``"WS-STREAMING"``, ``"HTTP-STREAMING"``, ``"WS-POLLING"``,
        ``"HTTP-POLLING"``, ``"WS"``, ``"HTTP"``... (None: Stream-Sense, as the official
        clients).
    :param polling_interval: seconds between polls on a polling transport.
    :param idle_timeout: seconds the server may hold a poll open waiting for data.
    :param tls_policy: an ``IPolicyForHTTPS`` for this client only; certificates are
        verified by default.
    :param trust_roots: certificates trusted instead of the platform's (e.g. a private CA):
        a PEM file path, or a list of PEM file paths and ``twisted.internet.ssl``
        certificates. Without it (nor ``tls_policy``) the platform's trust store is used
        through OpenSSL, so the ``SSL_CERT_FILE``/``SSL_CERT_DIR`` environment variables
        apply.
    :param transport_options: how to reach the server; copied, never changed.
    :param retry_policy: ``attempt -> delay`` in seconds (like Twisted's
        ``backoffPolicy()``) instead of the official clients' rule built from
        ``retry_delay`` and ``first_retry_max_delay``.

    Every ``on_*`` method returns its callback (so it works as a decorator);
    `remove_callback` unregisters it. States and statuses are the `ConnectionState` and
    `Status` enums (`txlightstreamer.states`); errors are in `txlightstreamer.errors`.
    """

    def __init__(
        self,
        url: str,
        *,
        reactor: Any = None,
        http_client: Any = None,
        protocol_version: str = "2.5.0",
        content_length: int = 50_000_000,
        keepalive_millis: int | None = None,
        retry_delay: float = 4.0,
        first_retry_max_delay: float = 0.1,
        stalled_timeout: float = 2.0,
        reconnect_timeout: float = 3.0,
        session_recovery_timeout: float = 15.0,
        max_line_length: int = 1 << 20,
        max_pending_requests: int = 10_000,
        reverse_heartbeat_interval: float = 0.0,
        protocol_fallback: bool = True,
        forced_transport: str | None = None,
        polling_interval: float = 0.0,
        idle_timeout: float = 19.0,
        tls_policy: Any = None,
        transport_options: TransportOptions | None = None,
        retry_policy: Callable[[int], float] | None = None,
        trust_roots: Any = None,
    ) -> None:
        if protocol_version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"protocol_version must be one of {', '.join(SUPPORTED_VERSIONS)}, "
                f"not {protocol_version!r}"
            )
        refuse_userinfo(url, "url", "give them to create_session(username=, password=)")
        if "://" not in url:
            raise ValueError(f"url needs a scheme (http:// or https://): {url!r}")
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        #: The server address, as given.
        self.url = url
        self._reactor = reactor
        clock: IReactorTime = reactor
        self._clock = clock
        options = _transport_options(
            transport_options, protocol_version, retry_delay, max_line_length, http_client,
            tls_policy, forced_transport)
        if trust_roots is not None:
            options.trust_roots = trust_roots  # read by make_transports, now
        self._transport, ws_transport = make_transports(reactor, options)
        # Plain updates of subscribed tables, decoded and delivered by the hot path.
        self._router = UpdateRouter()
        self._events = _SessionEvents(self)
        self._session = _session.Session(
            router=self._router,
            transport=self._transport,
            ws_transport=ws_transport,
            clock=clock,
            listener=self._events,
            base_url=url,
            options=_session.SessionOptions(
                content_length=content_length,
                keepalive_millis=keepalive_millis,
                retry_delay=retry_delay,
                first_retry_max_delay=first_retry_max_delay,
                stalled_timeout=stalled_timeout,
                reconnect_timeout=reconnect_timeout,
                session_recovery_timeout=session_recovery_timeout,
                reverse_heartbeat_interval=reverse_heartbeat_interval,
                protocol_fallback=protocol_fallback,
                forced_transport=forced_transport,
                polling_interval=polling_interval,
                idle_timeout=idle_timeout,
                retry_policy=retry_policy,
            ),
        )
        #: The `ConnectionState` (coarse: see `status` for the detailed `Status`).
        self.state: ConnectionState = STATE_DISCONNECTED
        #: The current (or last) session, once a ``CONOK`` came.
        self.session_info: SessionInfo | None = None
        #: The server's name (``SERVNAME``), once told.
        self.server_name: str | None = None
        #: Our address as the server sees it (``CLIENTIP``), once told.
        self.client_ip: str | None = None
        #: The session's bandwidth (``CONS``): kbit/s, ``unlimited`` or ``unmanaged``.
        self.bandwidth: str | None = None

        ClientEvents.__init__(self)
        self._messages = MessageManager()
        self._max_bandwidth: float | str | None = None
        # What the create carries, and what the current session was last asked.
        self._create_bandwidth: float | str | None = None
        self._bandwidth_asked: float | str | None = None

        self._control = ControlChannel(
            self._session, self._transport, clock, max_pending=max_pending_requests,
            report=self._error, sent=lambda: self._heartbeat.touch())
        self._heartbeat = ReverseHeartbeat(
            clock, reverse_heartbeat_interval, self._control.heartbeat)
        self._registry = SubscriptionRegistry(
            self._control, self._router, clock, report=self._error,
            can_subscribe=lambda: self._session.bound or self.session_info is not None,
            closed=lambda: self._destroyed or self._destroying is not None,
            bound=lambda: self._session.bound and not self._session.reading_paused)
        # A SUBOK comes with the next poll at worst.
        self._registry.subok_timeout += polling_interval
        self._waiters: CreateWaiters[SessionInfo] = CreateWaiters(clock)
        self._destroying: Deferred[None] | None = None
        self._destroyed = False
        self._started = False

    def __repr__(self) -> str:
        sid = self.session_info.session_id if self.session_info else None
        return f"<LsClient {self.url} state={self.state} session={sid}>"

    # -- public API ------------------------------------------------------------------------

    @property
    def protocol_version(self) -> str:
        """The TLCP version in use: ``2.4.0`` after a fall-back from a refused 2.5.0."""
        return self._session.choice.protocol_version

    @property
    def status(self) -> Status:
        """Detailed status, with the official SDK's names (``CONNECTED:HTTP-STREAMING``...)."""
        return Status(self._session.status)

    @property
    def session_id(self) -> str | None:
        """The current session id, if any."""
        return self._session.session_id

    @property
    def tables(self) -> tuple[Table, ...]:
        """The tables attached to this client and not deleted."""
        return self._registry.tables

    @property
    def table_owner(self) -> TableOwner:
        """What this client's tables attach to (used by `Table`, not by applications)."""
        return self._registry

    def create_session(
        self,
        adapter_set: str | None = None,
        username: str | None = None,
        password: str | None = None,
        *,
        max_bandwidth: float | None = None,
        timeout: float | None = None,
    ) -> Deferred[SessionInfo]:
        """
        Connect and create a session.

        Fires with a `SessionInfo` on the server's ``CONOK``; errbacks with a
        `ServerError` carrying the server's code and message on ``CONERR``, or a
        `TransportError` when the server cannot be used at all. Each failed attempt's
        cause (refused, DNS, timeout, TLS, HTTP status) goes to `on_error` as a retryable
        `TransportError` when it changes, and the client keeps trying; with ``timeout``
        (seconds) it stops trying after that long and errbacks with the last cause;
        cancelling the Deferred stops trying too.
        ``create_session`` may be called again once the session ended for good (refused,
        ended by the server, given up): the client's tables are subscribed in the new one.
        """
        if self._destroyed or self._destroying is not None:
            raise ClientStateError("this client was destroyed; make a new LsClient")
        if self._started:
            raise ClientStateError("create_session() was already called on this client")
        args: dict[str, Any] = {}
        if adapter_set is not None:
            args["adapter_set"] = check_text(adapter_set, "adapter_set")
        if username is not None:
            args["user"] = check_text(username, "username")
        if password is not None:
            args["password"] = check_text(password, "password")
        if max_bandwidth is not None:
            self._max_bandwidth = check_limit(max_bandwidth, "bandwidth (kbit/s)")
        if self._max_bandwidth is not None and self._max_bandwidth != "unlimited":
            args["requested_max_bandwidth"] = self._max_bandwidth
        self._create_bandwidth = self._max_bandwidth
        d = self._waiters.add(timeout, self._give_up)
        self._started = True
        self._waiters.cause = None
        self._session.connect(args)
        return d

    def pause_reading(self) -> None:
        """
        Stop reading from the server (back-pressure from a slow consumer): nothing is
        delivered until `resume_reading`, and the silence is not taken for a dead stream.
        """
        self._session.pause_reading()

    def resume_reading(self) -> None:
        """Read from the server again after `pause_reading`."""
        self._session.resume_reading()

    def destroy(self) -> Deferred[None]:
        """
        End the session and close every connection.

        The Deferred fires once nothing is left open. Tables are unsubscribed; the
        client cannot be used again.
        """
        if self._destroying is not None:
            return self._destroying
        d: Deferred[None] = Deferred()
        self._destroying = d
        self._control.closing = True
        self._heartbeat.stop()
        # Bound, or between two polls, rebinding or recovering: the server holds it still.
        session_id = self._session.session_id if self._session.state in _HELD else None
        base_url = self._session.base_url
        stream = self._session.stream
        if session_id is not None and IRequestStream.providedBy(stream):
            # On a WebSocket the destroy goes on it first, as the official clients send it
            # (a gateway may pass WebSocket and refuse POSTs); over HTTP too, below, as the
            # one destroy() can wait for.
            stream.send_requests([destroy(self._control.next_request_id(), session_id=None,
                                          close_socket=True)])
        # Close our side first: whatever the stream says now (END 31...) is moot.
        self._session.close()

        def finish(_: object = None) -> None:
            self._control.fail_all(SessionLostError("the client was destroyed"))
            self._messages.abort_all(SessionLostError("the client was destroyed"))
            self._registry.close()
            self._fail_create(SessionLostError("the client was destroyed"))
            self._destroyed = True

            def closed(_: object) -> None:
                d.callback(None)

            self._transport.close().addBoth(closed)

        if session_id is not None:
            # Tell the server (proxies may keep a closed stream's session alive), but
            # never wait long for it: destroy() must complete promptly.
            req = self._control.next_request_id()
            request = destroy(req, session_id=None, close_socket=True)
            sent = self._transport.send_control(base_url, session_id, [request])
            sent.addErrback(lambda f: log.info("destroy request failed: {f}", f=f.value))
            sent.addTimeout(_DESTROY_GRACE, self._clock)
            sent.addErrback(lambda _: None)
            sent.addBoth(finish)
        else:
            finish()
        return d

    def set_max_bandwidth(self, kbps: float | str) -> Deferred[None]:
        """
        Change the session's bandwidth limit (kbit/s, or ``"unlimited"``), live.

        The server answers with ``CONS`` (see `on_bandwidth`); the value also applies to
        every later session of this client. While no session is bound it fires at once,
        and the value is asked for as soon as one is (recovered, rebound or new).
        """
        value = check_limit(kbps, "bandwidth (kbit/s)")
        if self.bandwidth == "unmanaged":
            raise ClientStateError("the server does not manage bandwidth (CONS unmanaged)")
        self._max_bandwidth = value
        if not self._session.bound:
            return succeed(None)
        return self._constrain(value)

    def _constrain(self, value: float | str) -> Deferred[None]:
        """Ask the current session for the bandwidth ``value``."""
        self._bandwidth_asked = value
        return self._control.send(lambda req_id: constrain(req_id, max_bandwidth=value))

    def _constrain_if_changed(self) -> None:
        """A CONOK: ask for the bandwidth wanted if this session was asked another."""
        value = self._max_bandwidth
        if value is None or value == self._bandwidth_asked or self.bandwidth == "unmanaged":
            return
        self._constrain(value).addErrback(
            lambda f: log.warn("Bandwidth {value} not set: {e}", value=value, e=f.value))

    def send_message(
        self,
        text: str,
        sequence: str | None = None,
        delay_timeout: float | None = None,
        enqueue_while_disconnected: bool = False,
    ) -> Deferred[str | None]:
        """
        Send a message to the server's Metadata Adapter.

        Fires with the adapter's response (None when it gave none, or on TLCP 2.4.0) on
        ``MSGDONE``; errbacks with `MessageDenied` (code <= 0), `MessageDiscarded`
        (skipped by timeout in its sequence), `MessageError` (other failures) or
        `SessionLostError` (all in `txlightstreamer.errors`). Messages of one
        ``sequence`` are processed in order; the server waits at most ``delay_timeout``
        seconds for a missing predecessor. Cancelling the Deferred withdraws a message
        not written yet; once written, its outcome is no longer awaited.
        """
        if self._destroyed or self._destroying is not None:
            raise ClientStateError("this client was destroyed")
        out = self._messages.prepare(text, sequence, delay_timeout, enqueue_while_disconnected,
                                     self._message_cancelled)
        # As the SDK: only a DISCONNECTED client refuses (between polls, or while the
        # first session is created, it queues).
        away = self._session.status.startswith("DISCONNECTED")
        if away and not enqueue_while_disconnected:
            self._messages.refused(out, SessionLostError(
                "not connected: pass enqueue_while_disconnected=True to queue the message"))
            return out.deferred
        sent = out.request = self._control.send(
            lambda req_id: self._messages.build(out, req_id),
            any_session=enqueue_while_disconnected or self._session.session_id is None)

        def refused(failure: Failure) -> None:
            error = failure.value
            if not isinstance(error, LightstreamerError):
                error = TransportError(str(error))
            self._messages.refused(out, error)

        sent.addErrback(refused)
        return out.deferred

    # -- helpers ---------------------------------------------------------------------------

    def _error(self, error: LightstreamerError, final: bool = False) -> None:
        if self._error_cbs:
            self._error_cbs(error)
        elif final:  # critical: what Twisted prints before the application logs anything
            log.critical("Session ended: {error} (no on_error callback)", error=error)
        else:
            log.error("{error}", error=error)

    def _fail_create(self, error: LightstreamerError) -> None:
        self._waiters.fail(error)

    def _message_cancelled(self, out: _Outgoing) -> None:
        # Not written yet: never written. Written: only its outcome is no longer awaited.
        self._control.discard(out.request)
        self._messages.forget(out)

    def _give_up(self) -> None:
        """``create_session``'s timeout (or cancel): stop trying (a new call may start
        again). Messages that were not asked to wait for a session fail (tlcp.md §8)."""
        self._session.close()
        self._started = False
        for out in self._messages.abort_unsent(SessionLostError("create_session gave up")):
            self._control.discard(out.request)


class _SessionEvents:
    """
    What the session calls (its `SessionListener`): kept off `LsClient`'s public API. It
    turns session events into the client's state, callbacks and the other parts' work.
    """

    def __init__(self, client: LsClient) -> None:
        self._client = client

    def session_started(self, conok: ConOk, continuity: str) -> None:
        client = self._client
        stale = client._control.new_session()
        info = SessionInfo(conok, continuity)
        client.session_info = info
        for aborted in client._messages.new_session():
            client._control.discard(aborted.request)  # told lost: never sent again
        for lost in stale:
            lost.errback(SessionLostError("the session was replaced"))
        client._registry.session_started()
        client.bandwidth = None  # the new session's CONS tells
        client._bandwidth_asked = client._create_bandwidth
        client._constrain_if_changed()
        client._waiters.succeed(info)
        client._session_cbs(info)
        client._heartbeat.touch()
        client._registry.subscribe_all()
        client._control.flush()

    def session_rebound(self, conok: ConOk, continuity: str) -> None:
        client = self._client
        info = SessionInfo(conok, continuity)
        client.session_info = info
        # Every poll is a bind: only a rebind that ends a streaming connection is news.
        if not (continuity == Continuity.PRESERVED and client._session.kind[1]):
            client._session_cbs(info)
        client._constrain_if_changed()
        client._control.flush()

    def session_interrupted(self, will_recover: bool) -> None:
        client = self._client
        client._control.requeue_awaiting(
            None if will_recover else SessionLostError("session replaced"))
        if not will_recover:
            client._registry.session_lost()

    def session_closed(self, error: LightstreamerError | None) -> None:
        client = self._client
        client._heartbeat.cancel()
        reason = str(error) if error else "session closed"
        client._control.requeue_awaiting(SessionLostError(reason))
        client._messages.abort_all(SessionLostError(reason))
        client._control.fail_all(SessionLostError(reason))
        client._registry.session_closed()
        if error is not None:
            # Ended for good: create_session may start again; the tables wait for it.
            client._started = False
            client._error(error, final=True)
            client._fail_create(error)

    def status_changed(self, status: str, reason: str | None) -> None:
        client = self._client
        status = Status(status)
        state = STATE_CONNECTED if status.is_connected \
            else _STATE_OF_STATUS.get(status, STATE_DISCONNECTED)
        if reason:
            log.info("Status {status}: {reason}", status=status, reason=reason)
        client._status_cbs(status, reason)
        if state != client.state:
            client.state = state
            client._state_cbs(state)

    def line_received(self) -> None:
        if self._client._heartbeat_cbs:
            self._client._heartbeat_cbs()

    def error(self, error: LightstreamerError) -> None:
        self._client._waiters.cause = error  # what create_session's timeout reports
        self._client._error(error)

    def notification(self, n: Notification) -> None:
        """Route one notification the hot path left to whoever it concerns."""
        client = self._client
        if isinstance(n, Update):
            client._registry.update(n.sub_id, n.item, n.values)
            return
        if isinstance(n, ReqOk | ReqErr | Error):
            if not client._control.answer(n):
                log.debug("Answer to no pending request: {n!r}", n=n)
            return
        if isinstance(n, (MsgDone, MsgFail)):
            if not client._messages.outcome(n):
                log.debug("Outcome for a message we do not wait for: {n!r}", n=n)
            return
        sub_id = getattr(n, "sub_id", None)
        if sub_id is not None:
            client._registry.route(sub_id, n)
            return
        tag = n.tag
        if tag == "SERVNAME":
            client.server_name = getattr(n, "name", None)
        elif tag == "CLIENTIP":
            client.client_ip = getattr(n, "ip", None)
        elif tag == "CONS":
            client.bandwidth = getattr(n, "bandwidth", None)
            client._bandwidth_cbs(client.bandwidth)


def _transport_options(
    given: TransportOptions | None, protocol_version: str, connect_timeout: float,
    max_line_length: int, http_client: Any, tls_policy: Any, forced_transport: str | None,
) -> TransportOptions:
    """A copy of the caller's options (never changed in place) with this client's."""
    options = TransportOptions() if given is None else dataclasses.replace(given)
    options.protocol_version = protocol_version
    options.connect_timeout = connect_timeout
    options.max_line_length = max_line_length
    if http_client is not None:
        options.http_client = http_client
    if tls_policy is not None:
        options.tls_policy = tls_policy
    if forced_transport in ("HTTP", "HTTP-STREAMING", "HTTP-POLLING") \
            and options.websocket is None:
        options.websocket = False  # never needed: do not even load it
    return options
