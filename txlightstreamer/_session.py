"""
The session state machine: create, bind, LOOP rebind, liveness, recovery and retry.

It owns the stream connection and the data-notification counter, and tells its
listener (the client) what happened. It never touches tables or control requests.
Every timer runs on the injected clock.

States and transitions (event → next state)::

    IDLE        connect → CREATING
    CREATING    CONOK → BOUND | CONERR/broken (retryable) → WAITING | fatal → CLOSED
    BOUND       LOOP → BINDING | broken/stalled → WAITING (recovery) | END → WAITING/CLOSED
    BINDING     CONOK → BOUND | broken → WAITING (recovery) | CONERR → WAITING (new session)
    RECOVERING  CONOK+PROG → BOUND | broken → WAITING | CONERR 4/20/... → WAITING (new session)
    WAITING     timer → CREATING or RECOVERING
    any         close → CLOSED
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txlightstreamer.errors import (
    LightstreamerError,
    ProtocolError,
    ServerError,
    TransportError,
)
from txlightstreamer.protocol import (
    ConErr,
    ConOk,
    End,
    Loop,
    Notification,
    Prog,
    Request,
    UnknownTagError,
    bind_session,
    create_session,
    parse_bytes,
)
from txlightstreamer.protocol._hotpath import UpdateRouter
from txlightstreamer.protocol.errors import RETRYABLE_CONERR, RETRYABLE_END
from txlightstreamer.states import Continuity, Status
from txlightstreamer.transport.interfaces import IStream, ITransport, StreamClosed

__all__ = ["Session", "SessionListener", "SessionOptions", "State"]

log = Logger()

# CONERR codes after which a new session (not a retry of the same request) is needed.
_NEW_SESSION_CONERR = frozenset({4, 20, 40, 41, 48})


class State(enum.Enum):
    IDLE = "idle"
    CREATING = "creating"
    BOUND = "bound"
    BINDING = "binding"
    RECOVERING = "recovering"
    WAITING = "waiting"
    CLOSED = "closed"


# Status names of the official SDK, reported to the application.
STATUS_CONNECTING: str = Status.CONNECTING
STATUS_SENSING: str = Status.STREAM_SENSING
STATUS_STALLED: str = Status.STALLED
STATUS_WILL_RETRY: str = Status.WILL_RETRY
STATUS_TRYING_RECOVERY: str = Status.TRYING_RECOVERY
STATUS_DISCONNECTED: str = Status.DISCONNECTED

# A way to reach the server: the channel ("HTTP" or "WS") and whether it polls.
Kind = tuple[str, bool]
_PREFERENCE: tuple[Kind, ...] = (("WS", False), ("HTTP", False), ("WS", True), ("HTTP", True))
FORCED_TRANSPORTS = {
    "WS": (("WS", False), ("WS", True)),
    "HTTP": (("HTTP", False), ("HTTP", True)),
    "WS-STREAMING": (("WS", False),),
    "HTTP-STREAMING": (("HTTP", False),),
    "WS-POLLING": (("WS", True),),
    "HTTP-POLLING": (("HTTP", True),),
}


def kind_status(kind: Kind) -> str:
    """The official status name of a connected transport kind."""
    channel, polling = kind
    return f"CONNECTED:{channel}-{'POLLING' if polling else 'STREAMING'}"


# How a (re)connection relates to what came before.
CONTINUITY_NEW: str = Continuity.NEW
CONTINUITY_PRESERVED: str = Continuity.PRESERVED
CONTINUITY_RECOVERED: str = Continuity.RECOVERED
CONTINUITY_REPLACED: str = Continuity.REPLACED

#: ``attempt -> delay`` in seconds, shaped like Twisted's ``backoffPolicy()`` result.
RetryPolicy = Callable[[int], float]


def tlcp_retry_policy(
    retry_delay: float = 4.0,
    first_retry_max_delay: float = 0.1,
    max_retry_delay: float = 60.0,
    jitter: Callable[[], float] = random.random,
) -> RetryPolicy:
    """
    The official clients' retry rule (tlcp.md §10) as a policy. Attempt 0 is the first
    retry after a working session broke: a random delay up to ``first_retry_max_delay``.
    Attempt n >= 1 follows n failed attempts in a row: ``retry_delay`` for the first ten,
    then doubling up to ``max_retry_delay``. The session counts the delay from the start
    of the failed attempt.
    """

    def policy(attempt: int) -> float:
        if attempt <= 0:
            return jitter() * first_retry_max_delay
        if attempt <= 10:
            return retry_delay
        return min(max_retry_delay, retry_delay * 2.0 ** min(100, attempt - 10))

    return policy


class SessionOptions:
    """Tunables of a session; the defaults are the official client's (tlcp.md §10)."""

    def __init__(
        self,
        *,
        content_length: int = 50_000_000,
        keepalive_millis: int | None = None,
        retry_delay: float = 4.0,
        first_retry_max_delay: float = 0.1,
        max_retry_delay: float = 60.0,
        stalled_timeout: float = 2.0,
        reconnect_timeout: float = 3.0,
        session_recovery_timeout: float = 15.0,
        supported_diffs: str | None = None,
        reverse_heartbeat_interval: float = 0.0,
        protocol_fallback: bool = True,
        forced_transport: str | None = None,
        polling_interval: float = 0.0,
        idle_timeout: float = 19.0,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        if forced_transport is not None and forced_transport not in FORCED_TRANSPORTS:
            raise ValueError(
                f"forced_transport must be one of {', '.join(FORCED_TRANSPORTS)} or None, "
                f"not {forced_transport!r}"
            )
        self.content_length = content_length
        self.keepalive_millis = keepalive_millis
        self.retry_delay = retry_delay
        self.first_retry_max_delay = first_retry_max_delay
        self.max_retry_delay = max_retry_delay
        self.stalled_timeout = stalled_timeout
        self.reconnect_timeout = reconnect_timeout
        self.session_recovery_timeout = session_recovery_timeout
        self.supported_diffs = supported_diffs
        self.reverse_heartbeat_interval = reverse_heartbeat_interval
        self.protocol_fallback = protocol_fallback
        self.forced_transport = forced_transport
        self.polling_interval = polling_interval
        self.idle_timeout = idle_timeout
        #: ``attempt -> delay``; None is `tlcp_retry_policy` built from the delays above.
        self.retry_policy = retry_policy

    @property
    def inactivity_millis(self) -> int | None:
        """``LS_inactivity_millis`` promised to the server, when reverse heartbeats are on."""
        if self.reverse_heartbeat_interval > 0:
            return int(self.reverse_heartbeat_interval * 1000)
        return None


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
        self._transport = transport
        self._channels: dict[str, ITransport] = {"HTTP": transport}
        if ws_transport is not None:
            self._channels["WS"] = ws_transport
        self._candidates = tuple(
            k for k in FORCED_TRANSPORTS.get(options.forced_transport or "", _PREFERENCE)
            if k[0] in self._channels
        )
        if not self._candidates:
            raise ValueError(
                f"forced_transport {options.forced_transport!r} needs the WebSocket "
                "transport, which is not available (pip install 'txlightstreamer[ws]')"
            )
        self._disabled: set[Kind] = set()
        self.kind: Kind = self._candidates[0]
        self._clock = clock
        self._listener = listener
        self._configured_url = base_url
        self.base_url = base_url
        self.options = options
        self._policy: RetryPolicy = options.retry_policy or tlcp_retry_policy(
            options.retry_delay, options.first_retry_max_delay, options.max_retry_delay,
            jitter=randomizer)

        self.state = State.IDLE
        self.status: str = STATUS_DISCONNECTED
        self.session_id: str | None = None
        self.request_limit = 50_000
        self.keepalive_ms: int | None = None
        self.router = router if router is not None else UpdateRouter()
        # Data notifications received (delivered or skipped) in this session, and the
        # server's position while replaying after a recovery (tlcp.md §7.6).
        self.data_count = 0
        self._server_prog = 0

        self._create_args: dict[str, Any] = {}
        self._stream: IStream | None = None
        self._stream_done = False  # LOOP or END seen on the current stream
        self._next_continuity = CONTINUITY_NEW
        self._failed_creates = 0
        self._recovery_started: float | None = None
        self._attempt_started = 0.0
        self._retry_call: IDelayedCall | None = None
        self._keepalive_call: IDelayedCall | None = None
        self._liveness_phase = 0  # 0 normal, 1 waiting stalled, 2 stalled
        self._last_activity = 0.0
        self._waiting_for_prog = False
        self._ttl_unlimited = False  # after CONERR 5 (server overloaded)
        self._fell_back = False  # already retried with TLCP 2.4.0

    @property
    def data_count(self) -> int:
        """Data notifications received in this session (kept by the router, see there)."""
        return self.router.data_count

    @data_count.setter
    def data_count(self, value: int) -> None:
        self.router.data_count = value

    @property
    def _server_prog(self) -> int:
        return self.router.server_prog

    @_server_prog.setter
    def _server_prog(self, value: int) -> None:
        self.router.server_prog = value

    @property
    def stream(self) -> Any:
        """The current `IStream` (None between connections)."""
        return self._stream

    @property
    def bound(self) -> bool:
        """True while a session is established (CONOK received, not interrupted)."""
        return self.state is State.BOUND and self.session_id is not None

    # -- commands from the client --------------------------------------------------------

    def connect(self, create_args: dict[str, Any]) -> None:
        """Create a session with ``create_args`` (adapter set, user, password, ...)."""
        if self.state not in (State.IDLE, State.CLOSED):
            raise RuntimeError(f"cannot connect while {self.state.value}")
        self._create_args = create_args
        self._next_continuity = CONTINUITY_NEW
        self._failed_creates = 0
        self._disabled = set()
        self.kind = self._candidates[0]
        self._start_create()

    def close(self) -> None:
        """Stop everything: stream and timers. The session id is kept for a destroy."""
        self._stop_stream()
        self._cancel_retry()
        self._cancel_keepalive()
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self._set_status(STATUS_DISCONNECTED, "closed by the client")

    def restart(self, reason: str) -> None:
        """Abandon the current session and create a new one (e.g. after REQERR 20)."""
        if self.state in (State.CLOSED, State.IDLE):
            return
        log.warn("Replacing the session: {reason}", reason=reason)
        self._stop_stream()
        self._new_session_later(reason, immediate=True)

    # -- stream sink -----------------------------------------------------------------------

    def stream_lines(self, stream: IStream, lines: list[bytes]) -> None:
        """
        The complete lines of one read. Runs of plain updates go through the router
        (the hot path); every other line through `_line`.
        """
        if stream is not self._stream or self._stream_done:
            return
        self._touch()
        self._listener.line_received()
        if stream is not self._stream:
            return  # a status or heartbeat callback closed the session
        router = self.router
        i, n = 0, len(lines)
        while i < n:
            if not self._waiting_for_prog:
                router.open = True
                i = router.feed(lines, i)
                router.open = False
                if i == n or stream is not self._stream or self._stream_done:
                    return
            self._line(lines[i])
            i += 1
            # A line or a callback may have ended this stream (LOOP, END, destroy...).
            if stream is not self._stream or self._stream_done:
                return

    def _line(self, line: bytes) -> None:
        try:
            n = parse_bytes(line)
        except UnknownTagError as e:
            if self.state is not State.BOUND:
                # Before CONOK: whatever answers us does not speak TLCP.
                self._protocol_error(e)
                return
            if line == b"SYNC ERROR":
                # The legacy protocol's "your session is gone": start a new one.
                self._listener.error(e)
                self.restart("the server sent SYNC ERROR (session lost)")
                return
            # Like the official client, skip what we do not know (it cannot be one of
            # the counted data notifications of our protocol version), but say so.
            log.warn("Ignoring a line with an unknown tag: {error}", error=e)
            self._listener.error(e)
            return
        except ProtocolError as e:
            self._protocol_error(e)
            return
        if n.is_data:
            self._data(n)
            return
        if isinstance(n, ConOk):
            self._conok(n)
        elif isinstance(n, Prog):
            self._prog(n.prog)
        elif isinstance(n, Loop):
            self._loop(n)
        elif isinstance(n, ConErr):
            self._conerr(n)
        elif isinstance(n, End):
            self._end(n)
        else:
            self._listener.notification(n)

    def stream_ended(self, stream: IStream, reason: Failure) -> None:
        if stream is not self._stream:
            return
        self._stream = None
        if self._stream_done:
            return
        if isinstance(reason.value, ProtocolError):
            self._stream = stream  # so that it is stopped like any other
            self._protocol_error(reason.value)
            return
        if reason.check(StreamClosed):
            error: LightstreamerError = TransportError(
                "the server closed the stream without LOOP or END", url=stream.url)
        elif isinstance(reason.value, LightstreamerError):
            error = reason.value
        else:
            error = TransportError(str(reason.value), url=stream.url)
        self._broken(error)

    # -- notifications ---------------------------------------------------------------------

    def _data(self, n: Notification) -> None:
        if self._waiting_for_prog:
            self._protocol_error(ProtocolError("data notification before PROG on recovery"))
            return
        if self._server_prog < self.data_count:
            self._server_prog += 1  # a replayed duplicate after recovery: skip it
            return
        self._server_prog += 1
        self.data_count += 1
        self._listener.notification(n)

    def _conok(self, conok: ConOk) -> None:
        if self.state is State.CREATING:
            self.session_id = conok.session_id
            self.data_count = 0
            self._server_prog = 0
            self._failed_creates = 0
        elif conok.session_id != self.session_id:
            self._protocol_error(ProtocolError(
                f"bind answered for session {conok.session_id!r}, expected {self.session_id!r}"))
            return
        self.request_limit = conok.request_limit
        self.keepalive_ms = conok.keepalive_ms
        if conok.control_link:
            self.base_url = _control_url(self._configured_url, conok.control_link)
        previous = self.state
        self.state = State.BOUND
        self._recovery_started = None
        self._touch(rearm=True)
        self._set_status(kind_status(self.kind), None)
        if previous is State.CREATING:
            continuity, self._next_continuity = self._next_continuity, CONTINUITY_PRESERVED
            self._listener.session_started(conok, continuity)
        elif previous is State.RECOVERING:
            self._waiting_for_prog = True
            self._listener.session_rebound(conok, CONTINUITY_RECOVERED)
        else:
            self._listener.session_rebound(conok, CONTINUITY_PRESERVED)

    def _prog(self, prog: int) -> None:
        if self._waiting_for_prog:
            self._waiting_for_prog = False
            if prog > self.data_count:
                self.restart(f"PROG {prog} beyond the {self.data_count} notifications received")
                return
            self._server_prog = prog
        elif prog != self._server_prog:
            self.restart(f"PROG {prog} does not match {self._server_prog}")

    def _loop(self, loop: Loop) -> None:
        self._stream_done = True
        self._stop_stream()
        self.state = State.BINDING
        # The server may only ask to wait less than the polling interval we requested.
        limit = self.options.polling_interval if self.kind[1] else 0.0
        delay = min(loop.delay_ms / 1000.0, limit)
        if loop.delay_ms > limit * 1000 + 1:
            self._listener.error(ProtocolError(
                f"LOOP asks to wait {loop.delay_ms} ms, more than the {limit * 1000:g} ms "
                "requested; rebinding after the requested delay", f"LOOP,{loop.delay_ms}"))
        if delay > 0:
            self._retry_call = self._clock.callLater(delay, self._start_bind)
        else:
            self._start_bind()

    def _conerr(self, conerr: ConErr) -> None:
        self._stream_done = True
        self._stop_stream()
        error = ServerError(conerr.code, conerr.message, "CONERR")
        if (
            self.state is State.CREATING
            and conerr.code == 65
            and self.options.protocol_fallback
            and not self._fell_back
            and self._transport.protocol_version == "2.5.0"
        ):
            # Older servers refuse TLCP 2.5.0 with a syntax error: try 2.4.0 once.
            self._fell_back = True
            for channel in self._channels.values():
                channel.protocol_version = "2.4.0"
            reason = f"server refused TLCP 2.5.0 ({error}); retrying with TLCP 2.4.0"
            log.warn("{reason}", reason=reason)
            self._create_later(reason, 0.0)
        elif self.state is State.CREATING and conerr.code in RETRYABLE_CONERR:
            log.warn("Session refused, will retry: {error}", error=error)
            self._failed_creates += 1
            delay = None
            if conerr.code == 5:
                # Overloaded: retry at once, asking the server to keep the request.
                self._ttl_unlimited = True
                delay = 0.0
            self._create_later(str(error), delay)
        elif self.state is not State.CREATING and conerr.code in _NEW_SESSION_CONERR:
            self._new_session_later(str(error))
        else:
            self._fatal(error)

    def _end(self, end: End) -> None:
        self._stream_done = True
        self._stop_stream()
        error = ServerError(end.code, end.message, "END")
        if end.code in RETRYABLE_END:
            self._listener.error(error)
            self._new_session_later(str(error))
        else:
            self._fatal(error)

    def _protocol_error(self, error: ProtocolError) -> None:
        """Unparsable data: nothing after it can be trusted, so start a new session."""
        log.error("Protocol error from the server: {error}", error=error)
        self._stream_done = True
        self._stop_stream()
        if self.state is State.CREATING:
            self._fatal(error)  # reports the error itself
        else:
            self._listener.error(error)
            self._new_session_later(f"protocol error: {error.reason}")

    # -- transitions -------------------------------------------------------------------------

    def _broken(self, error: LightstreamerError, timed_out: bool = False) -> None:
        """The current stream ended unexpectedly."""
        log.warn("Stream lost ({state}): {error}", state=self.state.value, error=error)
        self._cancel_keepalive()
        if self.state in (State.CREATING, State.BINDING, State.RECOVERING) and \
                self._sense(error, timed_out):
            return
        if isinstance(error, TransportError) and not error.retryable:
            self._fatal(error)
            return
        if self.state is State.CREATING:
            self._failed_creates += 1
            self._create_later(str(error))
            return
        if self.state in (State.BOUND, State.BINDING, State.RECOVERING):
            self._recover_later(str(error))

    def _sense(self, error: LightstreamerError, timed_out: bool) -> bool:
        """
        Stream-Sense: after a failed attempt, give up on that kind of transport when
        another is allowed, and try the next one at once. True if it did.
        """
        kind = self.kind
        if kind[0] == "WS" and isinstance(error, TransportError):
            # A WebSocket that cannot even be opened will not poll either.
            disable = {k for k in self._candidates if k[0] == "WS"}
        elif kind == ("HTTP", False) and timed_out:
            # No answer at all on a streaming response: a buffering proxy, probably.
            disable = {kind}
        else:
            return False
        remaining = [k for k in self._candidates if k not in self._disabled | disable]
        if not remaining:
            return False
        self._disabled |= disable
        self.kind = remaining[0]
        old, new = kind_status(kind)[10:], kind_status(self.kind)[10:]
        reason = f"{old} unavailable ({error}); trying {new}"
        log.info("{reason}", reason=reason)
        self._set_status(STATUS_SENSING, reason)
        start = {State.CREATING: self._start_create, State.BINDING: self._start_bind,
                 State.RECOVERING: self._start_recovery}[self.state]
        self._schedule(0, start)
        return True

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
        self.state = State.WAITING
        self._listener.session_interrupted(True)
        self._set_status(STATUS_TRYING_RECOVERY, reason)
        self._schedule(delay, self._start_recovery)

    def _new_session_later(self, reason: str, immediate: bool = False) -> None:
        self._recovery_started = None
        self._waiting_for_prog = False
        self._next_continuity = CONTINUITY_REPLACED
        self._listener.session_interrupted(False)
        self.state = State.WAITING
        self._set_status(STATUS_WILL_RETRY, reason)
        delay = 0.0 if immediate else self._policy(0)
        self._schedule(delay, self._start_create)

    def _create_later(self, reason: str, delay: float | None = None) -> None:
        if delay is None:
            delay = max(0.0, self._attempt_started + self._policy(self._failed_creates)
                        - self._clock.seconds())
        self.state = State.WAITING
        self._set_status(STATUS_WILL_RETRY, reason)
        self._schedule(delay, self._start_create)

    def _fatal(self, error: LightstreamerError) -> None:
        self._cancel_retry()
        self._cancel_keepalive()
        self._stop_stream()
        self.state = State.CLOSED
        self._set_status(STATUS_DISCONNECTED, str(error))
        self._listener.session_closed(error)

    # -- opening streams ---------------------------------------------------------------------

    def _open(self, request: Request) -> None:
        self._stop_stream()
        self._stream_done = False
        self._attempt_started = self._clock.seconds()
        self._liveness_phase = 0
        stream = self._channels[self.kind[0]].open_stream(self.base_url, request, self)
        self._stream = stream
        # The whole head (up to CONOK) must arrive within the retry delay.
        self._arm_keepalive(self.options.retry_delay)
        stream.start()

    def _start_create(self) -> None:
        self._retry_call = None
        self.state = State.CREATING
        self.base_url = self._configured_url
        self.session_id = None
        self._waiting_for_prog = False
        self._set_status(STATUS_CONNECTING, None)
        opts = self.options
        ttl, self._ttl_unlimited = ("unlimited" if self._ttl_unlimited else None), False
        self._open(create_session(
            supported_diffs=opts.supported_diffs,
            ttl_millis=ttl,
            **self._connection_params(first=True),
            **self._create_args,
        ))

    def _start_bind(self) -> None:
        self._retry_call = None
        assert self.session_id is not None
        self.state = State.BINDING
        self._open(bind_session(self.session_id, **self._connection_params()))

    def _start_recovery(self) -> None:
        self._retry_call = None
        assert self.session_id is not None
        self.state = State.RECOVERING
        self._open(bind_session(
            self.session_id, recovery_from=self.data_count, **self._connection_params()))

    def _connection_params(self, first: bool = False) -> dict[str, Any]:
        """The create/bind parameters of the current kind of transport."""
        opts = self.options
        channel, polling = self.kind
        if polling:
            return {
                "polling": True,
                "polling_millis": int(opts.polling_interval * 1000),
                "idle_millis": int(opts.idle_timeout * 1000),
            }
        keepalive = opts.keepalive_millis
        if keepalive and not first and self.keepalive_ms:
            keepalive = self.keepalive_ms  # the value the server granted
        return {
            "content_length": opts.content_length if channel == "HTTP" else None,
            "keepalive_millis": keepalive,
            "inactivity_millis": opts.inactivity_millis,
            "send_sync": False,
        }

    def _stop_stream(self) -> None:
        self.router.open = False  # not one more line from this stream
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()

    # -- timers --------------------------------------------------------------------------------

    def _schedule(self, delay: float, call: Callable[[], None]) -> None:
        self._cancel_retry()
        self._cancel_keepalive()
        self._retry_call = self._clock.callLater(delay, call)

    def _cancel_retry(self) -> None:
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None

    def _cancel_keepalive(self) -> None:
        if self._keepalive_call is not None and self._keepalive_call.active():
            self._keepalive_call.cancel()
        self._keepalive_call = None

    def _arm_keepalive(self, delay: float) -> None:
        if self._keepalive_call is not None and self._keepalive_call.active():
            self._keepalive_call.reset(delay)
        else:
            self._keepalive_call = self._clock.callLater(delay, self._liveness_timeout)

    def _touch(self, rearm: bool = False) -> None:
        """
        A line arrived: the stream is alive. Only the time is noted (this runs for every
        line); the silence timer compares against it when it fires.
        """
        if self.state is not State.BOUND or not self.keepalive_ms:
            return
        self._last_activity = self._clock.seconds()
        if self._liveness_phase:
            if self._liveness_phase == 2:
                self._set_status(kind_status(self.kind), None)
            self._liveness_phase = 0
            self._arm_keepalive(self._silence_limit())
        elif rearm or self._keepalive_call is None:
            self._arm_keepalive(self._silence_limit())

    def _silence_limit(self) -> float:
        """Longest silence before the liveness timer acts, in seconds."""
        assert self.keepalive_ms is not None
        if self.kind[1]:
            # Polling: the server answers within its idle time, or something is wrong.
            return self.keepalive_ms / 1000.0 + self.options.retry_delay
        return self.keepalive_ms / 1000.0

    def _liveness_timeout(self) -> None:
        self._keepalive_call = None
        if self.state is not State.BOUND:
            # No CONOK in time for a create/bind/recovery attempt.
            stream = self._stream
            self._stop_stream()
            if stream is not None:
                self._broken(TransportError(
                    f"no answer within {self.options.retry_delay:g} s", url=stream.url),
                    timed_out=True)
            return
        if self._liveness_phase == 0:
            silent_for = self._clock.seconds() - self._last_activity
            limit = self._silence_limit()
            if silent_for < limit:
                self._keepalive_call = self._clock.callLater(
                    limit - silent_for, self._liveness_timeout)
                return
        if self.kind[1]:
            self._stop_stream()
            self._broken(TransportError("poll not answered within the server's idle time"))
            return
        if self._liveness_phase == 0:
            self._liveness_phase = 1
            self._keepalive_call = self._clock.callLater(
                self.options.stalled_timeout, self._liveness_timeout)
        elif self._liveness_phase == 1:
            self._liveness_phase = 2
            self._set_status(STATUS_STALLED, "no data from the server")
            self._keepalive_call = self._clock.callLater(
                self.options.reconnect_timeout, self._liveness_timeout)
        else:
            self._stop_stream()
            self._broken(TransportError("stream stalled: no data, not even keepalives"))

    def _set_status(self, status: str, reason: str | None) -> None:
        if status != self.status:
            self.status = status
            self._listener.status_changed(status, reason)


def _control_url(configured: str, control_link: str) -> str:
    """
    The base URL to use after CONOK named another server instance (tlcp.md §4.1): the
    scheme, and the port when the link has none, come from the configured address.
    """
    from hyperlink import URL

    base = URL.from_text(configured)
    host_port, _, path = control_link.partition("/")
    has_port = host_port.rsplit("]", 1)[-1].count(":") == 1
    if not has_port and base.port is not None:
        host_port = f"{host_port}:{base.port}"
    return f"{base.scheme}://{host_port}" + (f"/{path}" if path else "")
