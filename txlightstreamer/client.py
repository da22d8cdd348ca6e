"""
`LsClient`: the public façade that wires the session, the HTTP transport, control
requests and tables together.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txlightstreamer import _session
from txlightstreamer._callbacks import CallbackList
from txlightstreamer._messages import MessageManager
from txlightstreamer._subscription import (
    ACTIVE,
    DELETING,
    FAILED,
    PENDING,
    SUBSCRIBING,
    Table,
)
from txlightstreamer.errors import (
    ClientStateError,
    LightstreamerError,
    ProtocolError,
    RequestError,
    ServerError,
    SessionLostError,
    SubscriptionError,
    TransportError,
)
from txlightstreamer.protocol import (
    SUPPORTED_VERSIONS,
    ClearSnapshot,
    Conf,
    ConOk,
    EndOfSnapshot,
    Error,
    MsgDone,
    MsgFail,
    Notification,
    Overflow,
    ReqErr,
    ReqOk,
    Request,
    SubCmd,
    SubOk,
    Unsub,
    Update,
    add_subscription,
    check_limit,
    constrain,
    delete_subscription,
    destroy,
    heartbeat,
    parse_bytes,
    reconf_subscription,
)
from txlightstreamer.protocol._hotpath import UpdateRouter
from txlightstreamer.transport import TransportOptions, make_transports

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

STATE_CONNECTING: Final = "CONNECTING"
STATE_CONNECTED: Final = "CONNECTED"
STATE_STALLED: Final = "STALLED"
STATE_RECONNECTING: Final = "RECONNECTING"
STATE_DISCONNECTED: Final = "DISCONNECTED"

# Longest destroy() waits for the server to confirm before closing everything anyway.
_DESTROY_GRACE = 0.5

_STATE_OF_STATUS = {
    _session.STATUS_CONNECTING: STATE_CONNECTING,
    _session.STATUS_SENSING: STATE_CONNECTING,
    _session.STATUS_STALLED: STATE_STALLED,
    _session.STATUS_WILL_RETRY: STATE_RECONNECTING,
    _session.STATUS_TRYING_RECOVERY: STATE_RECONNECTING,
    _session.STATUS_DISCONNECTED: STATE_DISCONNECTED,
}


class SessionInfo:
    """What `LsClient.create_session` fires with: the server's view of the session."""

    def __init__(self, conok: ConOk, continuity: str) -> None:
        self.session_id = conok.session_id
        self.request_limit = conok.request_limit
        self.keepalive_ms = conok.keepalive_ms
        self.control_link = conok.control_link
        #: ``new``, ``preserved``, ``recovered`` or ``replaced``.
        self.continuity = continuity

    def __repr__(self) -> str:
        return f"<SessionInfo {self.session_id} {self.continuity}>"


class _PendingControl:
    """
    A control request waiting to be sent (built with a fresh LS_reqId when sent). Its
    ``epoch`` is the session it belongs to, or None for "whichever session comes".
    """

    __slots__ = ("build", "deferred", "epoch")

    def __init__(
        self, build: Callable[[int], Request], deferred: Deferred[None], epoch: int | None
    ) -> None:
        self.build = build
        self.deferred = deferred
        self.epoch = epoch


class LsClient:
    """
    A Lightstreamer client for one server, driven by the Twisted reactor.

    :param url: the server address, e.g. ``https://push.example.com`` (a path prefix is
        kept: ``https://host/prefix`` sends to ``/prefix/lightstreamer/...``).
    :param reactor: provides the clock and networking; the global reactor by default.
    :param http_client: any treq-like object (the ``treq`` module, an ``HTTPClient``,
        ``treq.testing.StubTreq``) used for every request instead of private pools.
    :param protocol_version: ``"2.5.0"`` (default) or ``"2.4.0"`` for older servers.
    :param tls_policy: an ``IPolicyForHTTPS`` for this client only (e.g. a private CA);
        certificates are verified by default.
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
    ) -> None:
        if protocol_version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"protocol_version must be one of {', '.join(SUPPORTED_VERSIONS)}, "
                f"not {protocol_version!r}"
            )
        if "://" not in url:
            raise ValueError(f"url needs a scheme (http:// or https://): {url!r}")
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.url = url
        self.protocol_version = protocol_version
        self._reactor = reactor
        clock: IReactorTime = reactor
        self._clock = clock
        if transport_options is None:
            transport_options = TransportOptions()
        transport_options.protocol_version = protocol_version
        transport_options.connect_timeout = retry_delay
        transport_options.max_line_length = max_line_length
        if http_client is not None:
            transport_options.http_client = http_client
        if tls_policy is not None:
            transport_options.tls_policy = tls_policy
        if forced_transport in ("HTTP", "HTTP-STREAMING", "HTTP-POLLING") \
                and transport_options.websocket is None:
            transport_options.websocket = False  # never needed: do not even load it
        self._transport, ws_transport = make_transports(reactor, transport_options)
        # Plain updates of subscribed tables, decoded and delivered by the hot path.
        self._router = UpdateRouter()
        self._session = _session.Session(
            router=self._router,
            transport=self._transport,
            ws_transport=ws_transport,
            clock=clock,
            listener=self,
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
            ),
        )
        self._heartbeat_interval = reverse_heartbeat_interval
        self._heartbeat_call: IDelayedCall | None = None
        self.state = STATE_DISCONNECTED
        self.session_info: SessionInfo | None = None
        self.server_name: str | None = None
        self.client_ip: str | None = None
        self.bandwidth: str | None = None
        self._max_pending = max_pending_requests

        self._state_cbs = CallbackList("on_connection_state")
        self._status_cbs = CallbackList("on_status")
        self._heartbeat_cbs = CallbackList("on_heartbeat")
        self._error_cbs = CallbackList("on_error")
        self._session_cbs = CallbackList("on_session")
        self._bandwidth_cbs = CallbackList("on_bandwidth")
        self._messages = MessageManager()
        self._max_bandwidth: float | str | None = None

        self._tables: list[Table] = []
        self._by_sub_id: dict[int, Table] = {}
        self._next_sub_id = 0
        self._next_req_id = 0
        self._epoch = 0  # bumped with every new session
        self._control_queue: deque[_PendingControl] = deque()
        self._control_busy = False
        self._control_retry: IDelayedCall | None = None
        # Control requests written on a WebSocket stream, by LS_reqId, awaiting REQOK.
        self._awaiting: dict[str, _PendingControl] = {}
        self._create_waiters: list[Deferred[SessionInfo]] = []
        self._destroying: Deferred[None] | None = None
        self._destroyed = False
        self._started = False

    def __repr__(self) -> str:
        sid = self.session_info.session_id if self.session_info else None
        return f"<LsClient {self.url} state={self.state} session={sid}>"

    # -- public API ------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """Detailed status, with the official SDK's names (``CONNECTED:HTTP-STREAMING``...)."""
        return self._session.status

    @property
    def session_id(self) -> str | None:
        """The current session id, if any."""
        return self._session.session_id

    def on_connection_state(self, callback: Callable[[str], object]) -> Callable[[str], object]:
        """Call ``callback(state)`` with each new ``STATE_*`` value."""
        return self._state_cbs.add(callback)

    def on_status(
        self, callback: Callable[[str, str | None], object]
    ) -> Callable[[str, str | None], object]:
        """Call ``callback(status, reason)`` on each detailed status change."""
        return self._status_cbs.add(callback)

    def on_heartbeat(self, callback: Callable[[], object]) -> Callable[[], object]:
        """Call ``callback()`` whenever data arrives from the server (liveness; once per read)."""
        return self._heartbeat_cbs.add(callback)

    def on_error(
        self, callback: Callable[[LightstreamerError], object]
    ) -> Callable[[LightstreamerError], object]:
        """Call ``callback(error)`` for every error the application should know of."""
        return self._error_cbs.add(callback)

    def on_session(
        self, callback: Callable[[SessionInfo], object]
    ) -> Callable[[SessionInfo], object]:
        """Call ``callback(info)`` on each (re)connection; ``info.continuity`` says how."""
        return self._session_cbs.add(callback)

    def create_session(
        self,
        adapter_set: str | None = None,
        username: str | None = None,
        password: str | None = None,
        *,
        max_bandwidth: float | None = None,
    ) -> Deferred[SessionInfo]:
        """
        Connect and create a session.

        Fires with a `SessionInfo` on the server's ``CONOK``; errbacks with a
        `ServerError` carrying the server's code and message on ``CONERR``, or a
        `TransportError` when the server cannot be used at all.
        """
        if self._destroyed or self._destroying is not None:
            raise ClientStateError("this client was destroyed; make a new LsClient")
        if self._started:
            raise ClientStateError("create_session() was already called on this client")
        self._started = True
        args: dict[str, Any] = {}
        if adapter_set is not None:
            args["adapter_set"] = adapter_set
        if username is not None:
            args["user"] = username
        if password is not None:
            args["password"] = password
        if max_bandwidth is not None:
            self._max_bandwidth = check_limit(max_bandwidth, "bandwidth (kbit/s)")
        if self._max_bandwidth is not None and self._max_bandwidth != "unlimited":
            args["requested_max_bandwidth"] = self._max_bandwidth
        d: Deferred[SessionInfo] = Deferred()
        self._create_waiters.append(d)
        self._session.connect(args)
        return d

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
        session_id = self._session.session_id if self._session.state is _session.State.BOUND \
            else None
        base_url = self._session.base_url
        # Close our side first: whatever the stream says now (END 31...) is moot.
        self._session.close()

        def finish(_: object = None) -> None:
            self._fail_control(SessionLostError("the client was destroyed"))
            self._messages.abort_all(SessionLostError("the client was destroyed"))
            for table in list(self._tables):
                self._finish_table(table)
            self._fail_create(SessionLostError("the client was destroyed"))
            self._destroyed = True

            def closed(_: object) -> None:
                d.callback(None)

            self._transport.close().addBoth(closed)

        self._cancel_heartbeat()
        if session_id is not None:
            # Tell the server (proxies may keep a closed stream's session alive), but
            # never wait long for it: destroy() must complete promptly.
            req = self._next_request_id()
            request = destroy(req, session_id=None, close_socket=True)
            sent = self._transport.send_control(base_url, session_id, [request])
            sent.addErrback(lambda f: log.info("destroy request failed: {f}", f=f.value))
            sent.addTimeout(_DESTROY_GRACE, self._clock)
            sent.addErrback(lambda _: None)
            sent.addBoth(finish)
        else:
            finish()
        return d

    def on_bandwidth(self, callback: Callable[[str], object]) -> Callable[[str], object]:
        """Call ``callback(bandwidth)`` on each ``CONS``: kbit/s, unlimited or unmanaged."""
        return self._bandwidth_cbs.add(callback)

    def set_max_bandwidth(self, kbps: float | str) -> Deferred[None]:
        """
        Change the session's bandwidth limit (kbit/s, or ``"unlimited"``), live.

        The server answers with ``CONS`` (see `on_bandwidth`); the value also applies to
        every later session of this client.
        """
        value = check_limit(kbps, "bandwidth (kbit/s)")
        if self.bandwidth == "unmanaged":
            raise ClientStateError("the server does not manage bandwidth (CONS unmanaged)")
        self._max_bandwidth = value
        if self._session.state is not _session.State.BOUND:
            return succeed(None)
        return self._control(lambda req_id: constrain(req_id, max_bandwidth=value))

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
        `SessionLostError`. Messages of one ``sequence`` are processed in order; the
        server waits at most ``delay_timeout`` seconds for a missing predecessor.
        """
        if self._destroyed or self._destroying is not None:
            raise ClientStateError("this client was destroyed")
        out = self._messages.prepare(text, sequence, delay_timeout)
        if self._session.state is not _session.State.BOUND and not enqueue_while_disconnected:
            out.deferred.errback(SessionLostError(
                "not connected: pass enqueue_while_disconnected=True to queue the message"))
            return out.deferred
        sent = self._control(lambda req_id: self._messages.build(out, req_id),
                             any_session=enqueue_while_disconnected)

        def refused(failure: Failure) -> None:
            error = failure.value
            if not isinstance(error, LightstreamerError):
                error = TransportError(str(error))
            self._messages.refused(out, error)

        sent.addErrback(refused)
        return out.deferred

    def _reconf(self, table: Table, max_frequency: float | str) -> Deferred[None]:
        sub_id = table.sub_id
        if table.state != ACTIVE or sub_id is None:
            return succeed(None)  # applies when the table is next subscribed
        return self._control(
            lambda req_id: reconf_subscription(req_id, sub_id, max_frequency=max_frequency))

    @property
    def tables(self) -> tuple[Table, ...]:
        """The tables attached to this client and not deleted."""
        return tuple(self._tables)

    # -- tables (called by Table) ------------------------------------------------------------

    def _attach_table(self, table: Table) -> None:
        if self._destroyed or self._destroying is not None:
            raise ClientStateError("cannot add a Table to a destroyed client")
        if table._parent is None:
            # Second-level tables belong to their parent, which re-creates them.
            self._tables.append(table)
        if not table.silent:
            self._table_ready(table)

    def _table_ready(self, table: Table) -> None:
        if self._session.state is _session.State.BOUND or self.session_info is not None:
            self._subscribe(table)

    def _subscribe(self, table: Table) -> None:
        if table.state != PENDING or table.silent:
            return
        self._next_sub_id += 1
        sub_id = self._next_sub_id
        table._begin(sub_id)
        self._by_sub_id[sub_id] = table
        params = table._add_params()

        def build(req_id: int) -> Request:
            return add_subscription(req_id, sub_id, **params)

        def refused(failure: Failure) -> None:
            if self._by_sub_id.get(sub_id) is not table:
                return  # superseded (new session)
            self._unbind(sub_id)
            error = failure.value
            if isinstance(error, ServerError) and not isinstance(error, SubscriptionError):
                error = SubscriptionError(error.code, error.message, error.tag)
            if isinstance(error, SessionLostError):
                return
            if isinstance(error, LightstreamerError):
                table._fail(error)
                self._error(error)
            if table in self._tables:
                self._tables.remove(table)

        self._control(build).addErrback(refused)

    def _delete_table(self, table: Table, previous_state: str) -> None:
        sub_id = table.sub_id
        if previous_state in (PENDING, FAILED) or sub_id is None:
            self._finish_table(table)
            return

        def build(req_id: int) -> Request:
            return delete_subscription(req_id, sub_id)

        def failed(failure: Failure) -> None:
            # REQERR 19 (not found) or a lost session: either way nothing more will come.
            if self._by_sub_id.get(sub_id) is table:
                self._unbind(sub_id)
            self._finish_table(table)

        self._control(build).addErrback(failed)

    def _abandon_subscription(self, sub_id: int) -> None:
        """Forget a subscription id and ask the server to drop it (errors don't matter)."""
        self._unbind(sub_id)

        def build(req_id: int) -> Request:
            return delete_subscription(req_id, sub_id)

        self._control(build).addErrback(lambda _: None)

    def _unbind(self, sub_id: int) -> None:
        """Forget a subscription id: no more notifications go to its table."""
        self._by_sub_id.pop(sub_id, None)
        self._router.lanes.pop(sub_id, None)

    def _unbind_all(self) -> None:
        self._by_sub_id.clear()
        self._router.lanes.clear()

    def _forget_table(self, table: Table) -> None:
        """Drop a second-level table locally (its session is gone or being replaced)."""
        if table.sub_id is not None and self._by_sub_id.get(table.sub_id) is table:
            self._unbind(table.sub_id)
        table.sub_id = None

    def _finish_table(self, table: Table) -> None:
        if table.sub_id is not None:
            self._unbind(table.sub_id)
        if table in self._tables:
            self._tables.remove(table)
        table.state = DELETING
        table._unsubscribed()

    # -- control requests --------------------------------------------------------------------

    def _next_request_id(self) -> int:
        self._next_req_id += 1
        return self._next_req_id

    def _control(
        self, build: Callable[[int], Request], any_session: bool = False
    ) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if len(self._control_queue) >= self._max_pending:
            d.errback(ClientStateError(
                f"more than {self._max_pending} control requests pending; "
                "raise max_pending_requests or slow down"))
            return d
        epoch = None if any_session else self._epoch
        self._control_queue.append(_PendingControl(build, d, epoch))
        self._flush_control()
        return d

    def _flush_control(self) -> None:
        session = self._session
        if self._control_busy or not self._control_queue:
            return
        if session.state is not _session.State.BOUND or session.session_id is None:
            return
        batch: list[tuple[_PendingControl, Request, int]] = []
        size = 0
        limit = max(session.request_limit, 1)
        name: str | None = None
        while self._control_queue:
            pending = self._control_queue[0]
            req_id = self._next_request_id()
            request = pending.build(req_id)
            line = len(request.encode()) + 2
            if batch and (request.name != name or size + line > limit):
                break
            self._control_queue.popleft()
            name = request.name
            batch.append((pending, request, req_id))
            size += line
        self._arm_heartbeat()
        stream = session.stream
        if getattr(stream, "send_requests", None) is not None:
            # A WebSocket carries control requests itself; answers come on the stream.
            for pending, _, req_id in batch:
                self._awaiting[str(req_id)] = pending
            stream.send_requests([r for _, r, _ in batch])
            self._flush_control()
            return
        self._control_busy = True
        d = self._transport.send_control(
            session.base_url, session.session_id, [r for _, r, _ in batch])
        d.addCallbacks(self._control_answered, self._control_failed,
                       callbackArgs=(batch,), errbackArgs=(batch,))

    def _control_answered(
        self, lines: list[bytes], batch: list[tuple[_PendingControl, Request, int]]
    ) -> None:
        self._control_busy = False
        waiting = {str(req_id): pending for pending, _, req_id in batch}
        for raw in lines:
            try:
                n = parse_bytes(raw)
            except ProtocolError as e:
                self._error(e)
                continue
            if not self._control_answer(n, waiting):
                self._error(ProtocolError("unexpected reply to a control request",
                                          raw.decode("utf-8", "replace")))
        for pending in waiting.values():
            pending.deferred.errback(ProtocolError("no reply for a control request"))
        self._flush_control()

    def _control_answer(
        self, n: Notification, waiting: dict[str, _PendingControl]
    ) -> bool:
        """Settle the request a REQOK/REQERR/ERROR answers; False if it answers none."""
        if isinstance(n, ReqOk) and n.req_id in waiting:
            waiting.pop(n.req_id).deferred.callback(None)
        elif isinstance(n, ReqErr) and n.req_id in waiting:
            error = RequestError(n.code, n.message, "REQERR")
            waiting.pop(n.req_id).deferred.errback(error)
            if n.code == 20:
                self._session.restart("REQERR 20: session not found")
            elif n.code in (11, 65, 67):
                self._error(error)
        elif isinstance(n, Error):
            error = RequestError(n.code, n.message, "ERROR")
            self._error(error)
            pending = list(waiting.values())
            waiting.clear()
            for p in pending:
                p.deferred.errback(error)
        else:
            return False
        return True

    def _requeue_awaiting(self, error: LightstreamerError | None) -> None:
        """Requests written on a stream that broke: send again, or fail them."""
        awaiting, self._awaiting = self._awaiting, {}
        if error is None:
            for pending in reversed(list(awaiting.values())):
                self._control_queue.appendleft(pending)
        else:
            for pending in awaiting.values():
                pending.deferred.errback(error)

    def _control_failed(
        self, failure: Failure, batch: list[tuple[_PendingControl, Request, int]]
    ) -> None:
        self._control_busy = False
        error = failure.value
        if not isinstance(error, LightstreamerError):
            error = TransportError(str(error))
        if self._destroying is None and isinstance(error, TransportError) and error.retryable:
            # Put the requests back; they go again (with new ids) once a stream is bound.
            for pending, _, _ in reversed(batch):
                self._control_queue.appendleft(pending)
            log.warn("Control request failed, will retry: {error}", error=error)
            self._control_retry = self._clock.callLater(
                self._session.options.retry_delay, self._retry_control)
            return
        for pending, _, _ in batch:
            pending.deferred.errback(error)
        self._flush_control()

    def _arm_heartbeat(self) -> None:
        """Restart the reverse-heartbeat timer: any control request counts as one."""
        if self._heartbeat_interval <= 0 or self._destroying is not None:
            return
        if self._heartbeat_call is not None and self._heartbeat_call.active():
            self._heartbeat_call.reset(self._heartbeat_interval)
        else:
            self._heartbeat_call = self._clock.callLater(
                self._heartbeat_interval, self._send_heartbeat)

    def _cancel_heartbeat(self) -> None:
        if self._heartbeat_call is not None and self._heartbeat_call.active():
            self._heartbeat_call.cancel()
        self._heartbeat_call = None

    def _send_heartbeat(self) -> None:
        self._heartbeat_call = None
        session = self._session
        if session.state is _session.State.BOUND and session.session_id is not None:
            stream = session.stream
            if getattr(stream, "send_requests", None) is not None:
                stream.send_requests([heartbeat()])  # no answer comes on a WebSocket
            else:
                sent = self._transport.send_control(session.base_url, session.session_id,
                                                    [heartbeat()])
                sent.addErrback(lambda f: log.info("heartbeat failed: {f}", f=f.value))
        self._arm_heartbeat()

    def _retry_control(self) -> None:
        self._control_retry = None
        self._flush_control()

    def _fail_control(self, error: LightstreamerError) -> None:
        if self._control_retry is not None and self._control_retry.active():
            self._control_retry.cancel()
        self._control_retry = None
        queue, self._control_queue = self._control_queue, deque()
        for pending in queue:
            pending.deferred.errback(error)

    # -- session listener ------------------------------------------------------------------

    def session_started(self, conok: ConOk, continuity: str) -> None:
        self._epoch += 1
        info = SessionInfo(conok, continuity)
        self.session_info = info
        # Requests built for an older session are meaningless now.
        stale = [p for p in self._control_queue if p.epoch not in (None, self._epoch)]
        self._control_queue = deque(
            p for p in self._control_queue if p.epoch in (None, self._epoch))
        self._messages.new_session()
        for p in stale:
            p.deferred.errback(SessionLostError("the session was replaced"))
        self._unbind_all()
        for table in self._tables:
            if table.state in (ACTIVE, SUBSCRIBING):
                table._unsubscribed()
            if table.state == DELETING:
                self._finish_table(table)
        waiters, self._create_waiters = self._create_waiters, []
        for d in waiters:
            d.callback(info)
        self._session_cbs(info)
        self._arm_heartbeat()
        for table in list(self._tables):
            self._subscribe(table)
        self._flush_control()

    def session_rebound(self, conok: ConOk, continuity: str) -> None:
        info = SessionInfo(conok, continuity)
        self.session_info = info
        # Every poll is a bind: only a rebind that ends a streaming connection is news.
        if not (continuity == _session.CONTINUITY_PRESERVED and self._session.kind[1]):
            self._session_cbs(info)
        self._flush_control()

    def session_interrupted(self, will_recover: bool) -> None:
        self._requeue_awaiting(None if will_recover else SessionLostError("session replaced"))
        if not will_recover:
            for table in self._tables:
                if table.state in (ACTIVE, SUBSCRIBING):
                    table._unsubscribed()

    def session_closed(self, error: LightstreamerError | None) -> None:
        self._cancel_heartbeat()
        self._requeue_awaiting(SessionLostError(str(error) if error else "session closed"))
        self._messages.abort_all(SessionLostError(str(error) if error else "session closed"))
        self._fail_control(SessionLostError(str(error) if error else "session closed"))
        for table in self._tables:
            if table.state in (ACTIVE, SUBSCRIBING):
                table._unsubscribed()
        self._unbind_all()
        if error is not None:
            self._error(error)
            self._fail_create(error)

    def status_changed(self, status: str, reason: str | None) -> None:
        if status.startswith("CONNECTED:") and status != _session.STATUS_SENSING:
            state = STATE_CONNECTED
        else:
            state = _STATE_OF_STATUS.get(status, STATE_DISCONNECTED)
        if reason:
            log.info("Status {status}: {reason}", status=status, reason=reason)
        self._status_cbs(status, reason)
        if state != self.state:
            self.state = state
            self._state_cbs(state)

    def line_received(self) -> None:
        if self._heartbeat_cbs._callbacks:
            self._heartbeat_cbs()

    def error(self, error: LightstreamerError) -> None:
        self._error(error)

    def update(self, sub_id: int, item: int, values: str) -> None:
        """Route one ``U`` notification to its table."""
        table = self._by_sub_id.get(sub_id)
        if table is None:
            log.debug("Update for unknown subscription {sub}", sub=sub_id)
            return
        try:
            table._update(item, values)
        except LightstreamerError as e:
            self._table_broken(table, e)

    def notification(self, n: Notification) -> None:
        """Route one notification from the stream to its table."""
        if isinstance(n, Update):
            self.update(n.sub_id, n.item, n.values)
            return
        if isinstance(n, ReqOk | ReqErr | Error):
            if not self._control_answer(n, self._awaiting):
                log.debug("Answer to no pending request: {n!r}", n=n)
            return
        if isinstance(n, (MsgDone, MsgFail)):
            if not self._messages.outcome(n):
                log.debug("Outcome for a message we do not wait for: {n!r}", n=n)
            return
        sub_id = getattr(n, "sub_id", None)
        if sub_id is not None:
            table = self._by_sub_id.get(sub_id)
            if table is None:
                log.debug("{n!r} for unknown subscription", n=n)
                if isinstance(n, SubOk | SubCmd):
                    # A subscription we no longer want (a "zombie"): drop it on the server.
                    self._abandon_subscription(sub_id)
                return
            if isinstance(n, SubOk | SubCmd):
                if isinstance(n, SubCmd):
                    table._subok(n.num_items, n.num_fields, n.key_pos, n.command_pos)
                else:
                    table._subok(n.num_items, n.num_fields)
                if table.state == ACTIVE:
                    self._router.lanes[sub_id] = table._lane
            elif isinstance(n, EndOfSnapshot):
                table._end_of_snapshot(n.item)
            elif isinstance(n, ClearSnapshot):
                table._clear_snapshot(n.item)
            elif isinstance(n, Overflow):
                table._overflow(n.item, n.lost)
            elif isinstance(n, Conf):
                table._conf(n.max_frequency, n.filtered)
            elif isinstance(n, Unsub):
                self._unbind(sub_id)
                if table.state == DELETING:
                    if table in self._tables:
                        self._tables.remove(table)
                table._unsubscribed()
            return
        tag = n.tag
        if tag == "SERVNAME":
            self.server_name = getattr(n, "name", None)
        elif tag == "CLIENTIP":
            self.client_ip = getattr(n, "ip", None)
        elif tag == "CONS":
            self.bandwidth = getattr(n, "bandwidth", None)
            self._bandwidth_cbs(self.bandwidth)

    def _table_broken(self, table: Table, error: LightstreamerError) -> None:
        """Undecodable data for one table: report it and subscribe the table afresh."""
        log.error("Bad update for {table!r}: {error}", table=table, error=error)
        self._error(error)
        table._error_cbs(error)
        if table.sub_id is not None:
            self._abandon_subscription(table.sub_id)
        table.state = ACTIVE
        table._unsubscribed()
        self._subscribe(table)

    # -- helpers ---------------------------------------------------------------------------

    def _error(self, error: LightstreamerError) -> None:
        if self._error_cbs:
            self._error_cbs(error)
        else:
            log.error("{error}", error=error)

    def _fail_create(self, error: LightstreamerError) -> None:
        waiters, self._create_waiters = self._create_waiters, []
        for d in waiters:
            d.errback(error)
