"""
The session: create, bind, LOOP rebind, liveness, recovery and retry of one connection.

It owns the stream connection and the data-notification counters, and tells its listener
(the client) what happened. It never touches tables or control requests. Every timer
runs on the injected clock. The states and their transitions are in `machine`, the
silence timer in `liveness`, the choice of transport in `sense`, the retry policy in
`options`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from txlightstreamer._session.attempts import FailedAttempts, ordinal
from txlightstreamer._session.endings import Endings
from txlightstreamer._session.liveness import Liveness, silence_limit
from txlightstreamer._session.machine import Input, Machine, State
from txlightstreamer._session.options import RetryPolicy, SessionOptions
from txlightstreamer._session.reader import StreamReader
from txlightstreamer._session.sense import Kind, TransportChoice, kind_status
from txlightstreamer.errors import (
    LightstreamerError,
    ProtocolError,
    TransportError,
)
from txlightstreamer.protocol import (
    ConErr,
    ConOk,
    End,
    Loop,
    Notification,
    Request,
    bind_session,
    create_session,
)
from txlightstreamer.protocol._hotpath import UpdateRouter
from txlightstreamer.states import Continuity, Status
from txlightstreamer.transport.interfaces import IRequestStream, IStream, ITransport

__all__ = ["Session", "SessionListener"]

log = Logger()

_WITH_STREAM = frozenset({State.BOUND, State.BINDING, State.RECOVERING})
_BOUND_REASONS = {State.CREATING: "session created", State.BINDING: "session bound again",
                  State.RECOVERING: "session recovered"}
# Attempts not answered yet: a failure may give up the kind of transport in use.
_ATTEMPTS = frozenset({State.CREATING, State.BINDING, State.RECOVERING})


class SessionListener(Protocol):
    """What the session tells the client."""

    def session_started(self, conok: ConOk, continuity: str) -> None:
        """A session was created (``new`` or ``replaced``)."""

    def session_rebound(self, conok: ConOk, continuity: str) -> None:
        """The same session goes on (``preserved`` or ``recovered``)."""

    def session_interrupted(self, will_recover: bool) -> None:
        """The stream broke; ``will_recover`` tells whether the session may survive."""

    def session_closed(self, error: LightstreamerError | None) -> None:
        """No session any more and no retry: fatal ``error``, or None when asked to close."""

    def status_changed(self, status: str, reason: str | None) -> None:
        """The detailed status changed (official SDK names)."""

    def notification(self, notification: Notification) -> None:
        """A fresh data notification, or an informative one (CONS, SERVNAME, ...)."""

    def line_received(self) -> None:
        """Lines arrived (a sign of life; once per read, not per line)."""

    def error(self, error: LightstreamerError) -> None:
        """Something went wrong that the application should hear about."""


class Session:
    """One client's connection to one Lightstreamer session, across rebinds and retries."""

    def __init__(
        self,
        *,
        transport: ITransport,
        clock: IReactorTime,
        listener: SessionListener,
        base_url: str,
        options: SessionOptions,
        randomizer: Callable[[], float] = random.random,
        ws_transport: ITransport | None = None,
        router: UpdateRouter | None = None,
    ) -> None:
        channels: Mapping[str, ITransport] = (
            {"HTTP": transport} if ws_transport is None
            else {"HTTP": transport, "WS": ws_transport})
        self.choice = TransportChoice(channels, options.forced_transport)
        self._clock = clock
        self._listener = listener
        self._configured_url = base_url
        self.base_url = base_url
        self.options = options
        self._policy: RetryPolicy = options.policy(randomizer)
        self._machine = Machine()
        hooks = _Hooks(self)
        self._liveness = Liveness(clock, hooks, options.stalled_timeout,
                                  options.reconnect_timeout)
        self._reader = StreamReader(hooks, router if router is not None else UpdateRouter())
        self._endings = Endings(hooks)
        self.status: str = Status.DISCONNECTED
        self.session_id: str | None = None
        self.request_limit = 50_000
        self.keepalive_ms: int | None = None
        self._poll_pace: dict[str, int] = {}  # learned for the next polls: see options

        self._create_args: dict[str, Any] = {}
        # The current stream: None between connections and once LOOP, END or an error
        # ended it (no line of it is read after that).
        self._stream: IStream | None = None
        self._next_continuity: str = Continuity.NEW
        self._failed_creates = 0
        self._recovery_started: float | None = None
        self._attempt_started = 0.0
        self._retry_call: IDelayedCall | None = None
        self._attempts = FailedAttempts()
        # The current stream is a WebSocket kept between two polls (after LOOP).
        self._parked = False

    @property
    def state(self) -> State:
        return self._machine.state

    @property
    def bound(self) -> bool:
        """True while a session is established (CONOK received, not interrupted)."""
        return self._machine.state is State.BOUND and self.session_id is not None

    @property
    def kind(self) -> Kind:
        """The kind of transport in use: ``("WS"|"HTTP", polling)``."""
        return self.choice.kind

    @property
    def stream(self) -> IStream | None:
        """The current stream (None between connections); `IRequestStream` on WebSocket."""
        return self._stream

    @property
    def router(self) -> UpdateRouter:
        """The hot path of this session's streams."""
        return self._reader.router

    @property
    def data_count(self) -> int:
        """Data notifications received in this session (what a recovery resumes from)."""
        return self._reader.data_count

    @property
    def server_prog(self) -> int | None:
        """The server's position (None while a recovered stream has not sent PROG)."""
        return self._reader.server_prog

    # -- commands from the client --------------------------------------------------------

    def connect(self, create_args: dict[str, Any]) -> None:
        """Create a session with ``create_args`` (adapter set, user, password, ...)."""
        self._machine.feed(Input.CONNECT)
        self._create_args = create_args
        self._next_continuity = Continuity.NEW
        self._failed_creates = 0
        self.choice.reset()
        self._start_create()

    def close(self) -> None:
        """Stop everything: stream and timers. The session id is kept for a destroy."""
        self._stop_stream()
        self._cancel_retry()
        self._liveness.stop()
        if self._machine.feed(Input.CLOSE) is not State.CLOSED:
            self._set_status(Status.DISCONNECTED, "closed by the client")

    def pause_reading(self) -> None:
        """Stop reading (back-pressure), across rebinds; the silence is not the server's.
        From a callback, the rest of the current read waits too."""
        if not self._reader.paused:
            self._reader.pause()
            self._liveness.pause()
            if self._stream is not None:
                self._stream.pause_reading()

    def resume_reading(self) -> None:
        """Read again after `pause_reading`: first what was held (which may pause again)."""
        if self._reader.paused and self._reader.resume():
            if self._stream is not None:
                self._stream.resume_reading()
            self._liveness.resume()

    @property
    def reading_paused(self) -> bool:
        return self._reader.paused

    @property
    def parked(self) -> bool:  # WS-POLLING between two polls, on the socket kept open
        return self._parked

    def fail(self, error: LightstreamerError) -> None:
        """End the session for good on the server's word (``ERROR``, ``REQERR`` 11/65/67)."""
        if self.state is not State.CLOSED:
            self._fatal(error)

    def restart(self, reason: str) -> None:
        """Abandon the current session and create a new one (e.g. after REQERR 20)."""
        if self.state in (State.CLOSED, State.IDLE):
            return
        log.warn("Replacing the session: {reason}", reason=reason)
        self._stop_stream()
        self._new_session_later(reason)  # after the first retry's pause (tlcp.md §7.7)

    # -- what the streams say (through the reader) -------------------------------------

    def _conok(self, conok: ConOk) -> None:
        if self.state is State.CREATING:
            self.session_id = conok.session_id
            self._reader.session_created()
            self._endings.session_created()
            self._failed_creates = 0
        elif conok.session_id != self.session_id:
            self._endings.protocol_error(ProtocolError(
                f"bind answered for session {conok.session_id!r}, expected {self.session_id!r}"))
            return
        self.request_limit = conok.request_limit
        self.keepalive_ms = conok.keepalive_ms
        if self.choice.polling and conok.keepalive_ms:
            self._poll_pace["idle_millis"] = conok.keepalive_ms
        if conok.control_link:
            self.base_url = _followed(self, conok.control_link)
        previous = self._machine.feed(Input.CONOK)
        self._recovery_started = None
        self._attempts.succeeded()
        self._liveness.bound(
            silence_limit(self.keepalive_ms, self.choice.polling, self.options.retry_delay),
            self.choice.polling,
                             watched=bool(conok.keepalive_ms))
        self._set_status(kind_status(self.kind), _BOUND_REASONS[previous])
        if previous is State.CREATING:
            continuity, self._next_continuity = self._next_continuity, Continuity.PRESERVED
            self._listener.session_started(conok, continuity)
        elif previous is State.RECOVERING:
            self._reader.session_recovered(  # recovered once PROG says nothing was lost
                lambda: self._listener.session_rebound(conok, Continuity.RECOVERED))
        else:
            self._listener.session_rebound(conok, Continuity.PRESERVED)

    def _loop(self, loop: Loop) -> None:
        if self.choice.polling and IRequestStream.providedBy(self._stream):
            # WS-POLLING: the socket stays for the next poll, and answers to control
            # requests still come on it.
            self._parked = True
        else:
            self._stop_stream()
        self._liveness.stop()
        self._machine.feed(Input.LOOP)
        # The server may only ask to wait less than the polling interval we requested.
        limit = self.options.polling_interval if self.choice.polling else 0.0
        delay = min(loop.delay_ms / 1000.0, limit)
        if self.choice.polling and self.keepalive_ms:  # not a synchronous create's LOOP,0
            self._poll_pace["polling_millis"] = int(delay * 1000)
        if loop.delay_ms > limit * 1000 + 1:
            self._listener.error(ProtocolError(
                f"LOOP asks to wait {loop.delay_ms} ms, more than the {limit * 1000:g} ms "
                "requested; rebinding after the requested delay", f"LOOP,{loop.delay_ms}"))
            if self.state is not State.BINDING:
                return  # the error callback closed the session
        if delay > 0:
            self._retry_call = self._clock.callLater(delay, self._start_bind)
        else:
            self._start_bind()

    # -- liveness --------------------------------------------------------------------------

    def _head_timed_out(self) -> None:
        stream = self._stream
        self._stop_stream()
        if stream is not None:
            self._broken(TransportError(
                f"no answer within {self._liveness.head_timeout:g} s", url=stream.url),
                timed_out=True, sent=bool(stream.request_sent))

    def _silent(self, reason: str) -> None:
        self._stop_stream()
        self._broken(TransportError(reason))

    # -- failures and retries ----------------------------------------------------------------

    def _broken(self, error: LightstreamerError, timed_out: bool = False,
                sent: bool = True) -> None:
        """
        The current stream ended unexpectedly. ``sent``: its request went out on an open
        connection, so the server may have acted on it (bound, and written data).
        """
        state = self.state
        # A failed create is told to the application once per cause (attempts.py), and
        # logged there: here only at debug, not once more per retry.
        (log.debug if state is State.CREATING else log.warn)(
            "Stream lost ({state}): {error}", state=state.value, error=error)
        self._liveness.stop()
        if state in _ATTEMPTS:
            reason = self.choice.give_up(error, timed_out, sent, state is State.CREATING)
            if reason is not None:
                log.info("{reason}", reason=reason)
                if state is State.CREATING or not sent:
                    # Stream-Sense: the same attempt at once on the next kind of transport.
                    start = {State.CREATING: self._start_create,
                             State.BINDING: self._start_bind,
                             State.RECOVERING: self._start_recovery}[state]
                    self._schedule(0, start)
                    # No CONNECTED:* status before the server accepted a session.
                    self._set_status(Status.CONNECTING if state is State.CREATING
                                     else Status.STREAM_SENSING, reason)
                    return
                # The bind may have been served on the lost connection: recover instead.
        if isinstance(error, TransportError) and not error.retryable:
            self._fatal(error)
        elif state is State.CREATING:
            self._failed_creates += 1
            if self._tell_failure(error):
                self._create_later(str(error))
        elif state in _WITH_STREAM:
            # Also for a broken bind: what the server wrote on it is only safe with
            # LS_recovery_from (a plain bind would take it as received).
            if state is not State.RECOVERING or self._tell_failure(error):
                self._recover_later(str(error))

    def _tell_failure(self, error: LightstreamerError) -> bool:
        """Report a failed attempt's cause when it is news; False if that closed us."""
        report = self._attempts.failed(error)
        if report is not None:
            self._listener.error(report)
        return not self._closed_meanwhile()

    def _recover_later(self, reason: str) -> None:
        opts = self.options
        now = self._clock.seconds()
        if opts.session_recovery_timeout <= 0:
            self._new_session_later(reason)
            return
        if self._recovery_started is None:
            self._recovery_started = now
            delay = self._policy(0)
        else:
            # Recovery is bounded by its own timeout: its pace is the policy's first step.
            delay = max(0.0, self._attempt_started + self._policy(1) - now)
            if now + delay - self._recovery_started > opts.session_recovery_timeout:
                self._new_session_later(f"recovery timed out ({reason})")
                return
        self._machine.feed(Input.RETRY)
        self._listener.session_interrupted(True)
        if self.state is not State.WAITING:
            return  # the listener closed the session
        self._schedule(delay, self._start_recovery)
        self._set_status(Status.TRYING_RECOVERY, reason)

    def _new_session_later(self, reason: str) -> None:
        self._recovery_started = None
        self._next_continuity = Continuity.REPLACED
        self._listener.session_interrupted(False)
        if self._closed_meanwhile():
            return
        self._machine.feed(Input.RETRY)
        self._schedule(self._policy(0), self._start_create)
        self._set_status(Status.WILL_RETRY, reason)

    def _create_later(self, reason: str, delay: float | None = None,
                      ttl: str | None = None) -> None:
        if delay is None:
            delay = max(0.0, self._attempt_started + self._policy(self._failed_creates)
                        - self._clock.seconds())
        self._machine.feed(Input.RETRY)
        self._schedule(delay, lambda: self._start_create(ttl))
        self._set_status(Status.WILL_RETRY, reason)

    def _fatal(self, error: LightstreamerError) -> None:
        self._cancel_retry()
        self._liveness.stop()
        self._stop_stream()
        self._machine.feed(Input.FAIL)
        self._set_status(Status.DISCONNECTED, str(error))
        self._listener.session_closed(error)

    # -- opening streams ---------------------------------------------------------------------

    def _open(self, request: Request, head_timeout: float | None = None) -> None:
        self._stop_stream()
        self._attempt_started = self._clock.seconds()
        stream = self.choice.transport.open_stream(self.base_url, request, self._reader)
        self._stream = stream
        if self._reader.paused:
            stream.pause_reading()
        # The whole head (up to CONOK) must arrive within the retry delay, or the longer
        # time a create may take: the stream's own first wait is not cut shorter either.
        timeout = head_timeout or self.options.head_timeout(request)
        stream.connect_timeout = max(getattr(stream, "connect_timeout", 0.0), timeout)
        self._liveness.expect_head(timeout)
        stream.start()

    def _start_create(self, ttl: str | None = None) -> None:
        self._retry_call = None
        self._machine.feed(Input.CREATE)
        self.base_url = self._configured_url
        self.session_id = None
        self._poll_pace = {}
        self._reader.creating()
        failed = self._attempts.count
        self._set_status(Status.CONNECTING, "creating a session" + (
            f" ({ordinal(failed + 1)} attempt)" if failed else ""))
        if self.state is not State.CREATING:
            return  # a status callback closed the session
        # A create may take the current retry delay (tlcp.md §7.2), 60 s asking for a TTL.
        delay = self._policy(self._failed_creates) if self._failed_creates else 0.0
        timeout = 60.0 if ttl else max(delay, self.options.retry_delay)
        self._open(create_session(
            supported_diffs=self.options.supported_diffs,
            ttl_millis=ttl,
            **self._connection_params(first=True),
            **self._create_args,
        ), timeout)

    def _start_bind(self) -> None:
        self._retry_call = None
        assert self.session_id is not None
        self._machine.feed(Input.BIND)
        request = bind_session(self.session_id, **self._connection_params())
        stream, parked, self._parked = self._stream, self._parked, False
        if parked and self.choice.polling and IRequestStream.providedBy(stream):
            assert stream is not None
            if stream.rebind(request):
                self._attempt_started = self._clock.seconds()
                self._liveness.expect_head(self.options.head_timeout(request))
                return
        self._open(request)

    def _start_recovery(self) -> None:
        self._retry_call = None
        assert self.session_id is not None
        self._machine.feed(Input.RECOVER)
        self._open(bind_session(
            self.session_id, recovery_from=self.data_count, **self._connection_params()))

    def _connection_params(self, first: bool = False) -> dict[str, Any]:
        return self.options.connection_params(self.kind, self.keepalive_ms, first, self._poll_pace)

    def _stop_stream(self) -> None:
        self._parked = False
        self._reader.stop()  # not one more line from this stream
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()

    # -- timers --------------------------------------------------------------------------------

    def _schedule(self, delay: float, call: Callable[[], None]) -> None:
        self._cancel_retry()
        self._liveness.stop()
        self._retry_call = self._clock.callLater(delay, call)

    def _cancel_retry(self) -> None:
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None

    def _closed_meanwhile(self) -> bool:
        """Whether a listener callback closed the session (then no retry is due)."""
        return not self._machine.accepts(Input.RETRY)

    def _set_status(self, status: str, reason: str | None) -> None:
        if status != self.status:
            self.status = status
            self._listener.status_changed(status, reason)


class _Hooks:
    """What the reader and the liveness timer call: the session's private handlers."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def stream(self) -> IStream | None:
        return self._session._stream

    @property
    def state(self) -> State:
        return self._session._machine.state

    def alive(self) -> None:
        self._session._liveness.touch()
        self._session._listener.line_received()

    def notify(self, notification: Notification) -> None:
        self._session._listener.notification(notification)

    def report(self, error: LightstreamerError) -> None:
        self._session._listener.error(error)

    def conok(self, conok: ConOk) -> None:
        if self._session._machine.accepts(Input.CONOK):
            self._session._conok(conok)
        else:
            self.protocol_error(ProtocolError("a second CONOK on a bound stream"))

    def loop(self, loop: Loop) -> None:
        if self._session._machine.accepts(Input.LOOP):
            self._session._loop(loop)
        else:  # not a rebind: on a recovery stream that would lose what it was to resend
            self.protocol_error(ProtocolError("LOOP before CONOK", f"LOOP,{loop.delay_ms}"))

    def conerr(self, conerr: ConErr) -> None:
        self._session._endings.conerr(conerr)

    def end(self, end: End) -> None:
        self._session._endings.end(end)

    def protocol_error(self, error: ProtocolError, line: bytes | None = None) -> None:
        self._session._endings.protocol_error(error, line)

    # -- for the endings ----------------------------------------------------------------

    @property
    def options(self) -> SessionOptions:
        return self._session.options

    @property
    def choice(self) -> TransportChoice:
        return self._session.choice

    @property
    def data_count(self) -> int:
        return self._session.data_count

    def stop_stream(self) -> None:
        self._session._stop_stream()

    def closed_meanwhile(self) -> bool:
        return self._session._closed_meanwhile()

    def skip(self, line: bytes) -> str | None:
        return self._session._reader.skip(line)

    def failed_create(self, error: LightstreamerError) -> bool:
        self._session._failed_creates += 1
        return self._session._tell_failure(error)

    def create_later(self, reason: str, delay: float | None = None,
                     ttl: str | None = None) -> None:
        self._session._create_later(reason, delay, ttl)

    def recover_later(self, reason: str) -> None:
        self._session._recover_later(reason)

    def new_session_later(self, reason: str) -> None:
        self._session._new_session_later(reason)

    def fatal(self, error: LightstreamerError) -> None:
        self._session._fatal(error)

    def restart(self, reason: str) -> None:
        self._session.restart(reason)

    def broken(self, error: LightstreamerError) -> None:
        session = self._session
        stream, session._stream = session._stream, None  # it ended: nothing to stop
        if session._parked:
            # Between two polls, with nothing asked on it: the next poll opens a socket.
            session._parked = False
            return
        session._broken(error, sent=stream is None or bool(stream.request_sent))

    def head_timed_out(self) -> None:
        self._session._head_timed_out()

    def stalled(self) -> None:
        self._session._set_status(Status.STALLED, "no data from the server")

    def resumed(self) -> None:
        session = self._session
        session._set_status(kind_status(session.kind), "data flows again")

    def silent(self, reason: str) -> None:
        self._session._silent(reason)


def _followed(session: Session, control_link: str) -> str:
    """The session's address once ``CONOK`` gave ``control_link``: a link that is no
    address is reported and ignored (the session stays where it is)."""
    try:
        return _control_url(session._configured_url, control_link)
    except ValueError as e:
        session._listener.error(ProtocolError(f"unusable control link ignored ({e})",
                                              control_link))
        return session.base_url


def _control_url(configured: str, control_link: str) -> str:
    """
    The base URL to use after CONOK named another server instance (tlcp.md §4.1): the
    link's scheme if it has one (the official client's ``completeControlLink``), else the
    configured address's, and its port too when the link has none. A ValueError for a
    link that is no ``host[:port][/path]`` address, or would downgrade https to http.
    """
    from hyperlink import URL

    base = URL.from_text(configured)
    scheme, link = base.scheme, control_link
    if "://" in link:
        scheme, _, link = link.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https") or (base.scheme == "https" and scheme == "http"):
            raise ValueError(f"control link with scheme {scheme!r}")
    host_port, _, path = link.partition("/")
    host_port = host_port.removesuffix(":")  # an empty port: the configured one
    has_port = host_port.rsplit("]", 1)[-1].count(":") == 1
    if not has_port and scheme == base.scheme and base.port is not None:
        host_port = f"{host_port}:{base.port}"
    url = f"{scheme}://{host_port}" + (f"/{path}" if path else "")
    try:
        parsed = URL.from_text(url)
    except Exception as e:  # hyperlink's URLParseError, a ValueError
        raise ValueError(f"control link is not host[:port][/path]: {e}") from None
    if not parsed.host or parsed.userinfo or parsed.query or parsed.fragment:
        raise ValueError("control link is not host[:port][/path]")
    return url
