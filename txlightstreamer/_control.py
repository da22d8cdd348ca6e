"""
The control channel: control requests of one client, queued until a session is bound,
sent in batches (one request name per batch, within the server's request limit), and
their ``REQOK``/``REQERR``/``ERROR`` answers matched back by ``LS_reqId``.

Over HTTP a batch goes on its own connection and the answers come in its reply; over a
WebSocket (`IRequestStream`) the requests go on the stream and the answers come back
among the stream's notifications (`answer`).

An answer that never comes is not waited for forever: after `ANSWER_TIMEOUT` (on the
injected clock) an idempotent request of the same session is sent again with a new
``LS_reqId`` (a conformant server takes a repeated ``add`` of the same subscription id as
a no-op); any other, or one that stays unanswered `MAX_SENDS` times, fails with a
`RequestTimeoutError`, also reported to the application (an HTTP reply without the
answer fails it with a `ProtocolError`, as before).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final

from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txlightstreamer._session import Session, State
from txlightstreamer.errors import (
    ClientStateError,
    LightstreamerError,
    ProtocolError,
    RequestError,
    RequestTimeoutError,
    ServerError,
    TransportError,
)
from txlightstreamer.protocol import (
    Error,
    Notification,
    ReqErr,
    ReqOk,
    Request,
    heartbeat,
    parse_bytes,
)
from txlightstreamer.transport.interfaces import IControlTransport, IRequestStream

__all__ = ["ANSWER_TIMEOUT", "MAX_SENDS", "ControlChannel"]

log = Logger()

# REQERR codes after which the session is of no use: it ends (tlcp.md §9.2).
_FATAL_CODES: Final = (11, 65, 67)
#: Seconds a request written on a stream waits for its answer while the session is bound.
ANSWER_TIMEOUT: Final = 10.0
#: Times an idempotent request is sent before its missing answer is reported.
MAX_SENDS: Final = 3
# Control operations a server may safely receive twice (same parameters, same effect).
_IDEMPOTENT_OPS: Final = frozenset({"add", "delete", "reconf", "constrain"})


def _idempotent(request: Request) -> bool:
    return request.name == "control" and request.get("LS_op") in _IDEMPOTENT_OPS


def _between_polls(session: Session) -> bool:
    """A polling session waiting for its next poll: it lives on the server, and a request
    does not wait for the poll (tlcp.md §2.3; the official clients send it at once, over
    HTTP or on the WebSocket kept between polls)."""
    if session.state is not State.BINDING or not session.kind[1]:
        return False
    # Over HTTP a request is a POST of its own; on a WebSocket it goes only on the socket
    # kept for the next poll, not on one still opening (it would not be written).
    return session.parked or not IRequestStream.providedBy(session.stream)


def _subject(request: Request) -> str | None:
    """
    What a control request changes: a subscription (``add``, ``reconf``, ``delete``) or the
    session's bandwidth (``constrain``). Two requests of one subject never share a batch,
    whose requests the server runs concurrently (tlcp.md §2.2): an HTTP batch waits for
    the answer to the one before, so they are run in order, as the official clients do.
    """
    if request.name != "control":
        return None
    if request.get("LS_op") == "constrain":
        return "constrain"
    sub_id = request.get("LS_subId")
    return None if sub_id is None else f"subscription {sub_id}"


class _Pending:
    """
    A control request waiting to be sent (built with a fresh LS_reqId when sent). Its
    ``epoch`` is the session it belongs to, or None for "whichever session comes".
    """

    __slots__ = ("build", "deferred", "epoch", "sends", "timer")

    def __init__(
        self, build: Callable[[int], Request], deferred: Deferred[None], epoch: int | None
    ) -> None:
        self.build = build
        self.deferred = deferred
        self.epoch = epoch
        self.sends = 0  # times sent without an answer
        self.timer: IDelayedCall | None = None  # waiting for its answer on a stream

    def stop_waiting(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


_Batch = list[tuple[_Pending, Request, int]]


class ControlChannel:
    """
    The queue of control requests of one client, for the session it is given.

    ``report`` gets the errors the application should know of; ``sent()`` is called
    whenever a batch is about to go (the reverse heartbeat counts it as activity).
    """

    def __init__(
        self,
        session: Session,
        transport: IControlTransport,
        clock: IReactorTime,
        *,
        max_pending: int,
        report: Callable[[LightstreamerError], None],
        sent: Callable[[], None],
    ) -> None:
        self._session = session
        self._transport = transport
        self._clock = clock
        self._max_pending = max_pending
        self._report = report
        self._sent = sent
        self._queue: deque[_Pending] = deque()
        self._busy = False
        self._retry: IDelayedCall | None = None
        # Requests written on a WebSocket stream, by LS_reqId, awaiting their answer.
        self._awaiting: dict[str, _Pending] = {}
        self._next_req_id = 0
        self.epoch = 0  # bumped with every new session
        #: Seconds to wait for the answer to a request written on a stream.
        self.answer_timeout = ANSWER_TIMEOUT
        #: Set when the client is closing: failed batches are no longer retried.
        self.closing = False

    def next_request_id(self) -> int:
        self._next_req_id += 1
        return self._next_req_id

    def send(self, build: Callable[[int], Request], any_session: bool = False) -> Deferred[None]:
        """
        Queue the request ``build(req_id)`` for this session (or, with ``any_session``,
        for whichever session comes); fires on ``REQOK``, errbacks otherwise.
        """
        d: Deferred[None] = Deferred()
        if len(self._queue) >= self._max_pending:
            d.errback(ClientStateError(
                f"more than {self._max_pending} control requests pending; "
                "raise max_pending_requests or slow down"))
            return d
        epoch = None if any_session else self.epoch
        self._queue.append(_Pending(build, d, epoch))
        self.flush()
        return d

    def flush(self) -> None:
        """Send what is queued, if a session is bound and no batch is on its way."""
        while self._flush_batch():  # a loop: thousands of WebSocket batches, no recursion
            pass

    def _flush_batch(self) -> bool:
        """Send one batch of what is queued; False when nothing could be done."""
        session = self._session
        if self._busy or not self._queue:
            return False
        if session.session_id is None or not (session.bound or _between_polls(session)):
            return False
        batch: _Batch = []
        size = 0
        limit = max(session.request_limit, 1)
        name: str | None = None
        subjects: set[str] = set()
        unwritable: list[tuple[_Pending, Exception]] = []
        while self._queue:
            pending = self._queue[0]
            req_id = self.next_request_id()
            try:
                request = pending.build(req_id)
                line = len(request.encode()) + 2
            except Exception as exc:  # a request that cannot be written fails alone
                self._queue.popleft()
                unwritable.append((pending, exc))
                continue
            subject = _subject(request)
            if batch and (request.name != name or size + line > limit or subject in subjects):
                break
            self._queue.popleft()
            name = request.name
            if subject is not None:
                subjects.add(subject)
            batch.append((pending, request, req_id))
            size += line
        try:
            if batch:
                self._send_batch(session, session.session_id, batch)
        finally:  # told once the batch is on its way: a callback may queue more
            for pending, error in unwritable:
                pending.deferred.errback(error)
        return bool(batch or unwritable)

    def _send_batch(self, session: Session, session_id: str, batch: _Batch) -> None:
        self._sent()
        stream = session.stream
        if IRequestStream.providedBy(stream):
            # A WebSocket carries control requests itself; answers come on the stream.
            for pending, request, req_id in batch:
                self._awaiting[str(req_id)] = pending
                pending.sends += 1
                pending.timer = self._clock.callLater(
                    self.answer_timeout, self._no_answer, str(req_id), _idempotent(request))
            stream.send_requests([r for _, r, _ in batch])
            return
        self._busy = True
        d = self._transport.send_control(
            session.base_url, session_id, [r for _, r, _ in batch])
        # The whole reply, body included, in bounded time: a stuck one would block the queue.
        d.addTimeout(self.answer_timeout, self._clock)
        d.addCallbacks(self._answered, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def answer(self, n: Notification) -> bool:
        """An answer that came on the stream; False if it answers no request of ours."""
        return self._settle(n, self._awaiting)

    def new_session(self) -> list[Deferred[None]]:
        """
        A new session: requests built for an older one are meaningless now. Returns their
        Deferreds, for the caller to fail once it has told everything else.
        """
        self.epoch += 1
        stale = [p.deferred for p in self._queue if p.epoch not in (None, self.epoch)]
        self._queue = deque(p for p in self._queue if p.epoch in (None, self.epoch))
        return stale

    def requeue_awaiting(self, error: LightstreamerError | None) -> None:
        """Requests written on a stream that broke: send again (no error), or fail them."""
        awaiting, self._awaiting = self._awaiting, {}
        for pending in awaiting.values():
            pending.stop_waiting()
        if error is None:
            for pending in reversed(list(awaiting.values())):
                pending.sends = 0  # the stream broke: its silence says nothing of the server
                self._queue.appendleft(pending)
        else:
            for pending in awaiting.values():
                pending.deferred.errback(error)

    def withdraw(self, request: Deferred[None] | None) -> bool:
        """Take back ``request`` if it was not written yet (it then never fires); False
        if it was (or is unknown)."""
        if request is None or not any(p.deferred is request for p in self._queue):
            return False
        self._queue = deque(p for p in self._queue if p.deferred is not request)
        return True

    def discard(self, request: Deferred[None] | None) -> None:
        """Never send (again) the request of ``request``, and never fire it."""
        self.withdraw(request)
        for req_id, pending in list(self._awaiting.items()):
            if pending.deferred is request:
                pending.stop_waiting()
                del self._awaiting[req_id]

    def fail_all(self, error: LightstreamerError) -> None:
        """Fail every queued or unanswered request (the session is over); stop retrying."""
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        queue, self._queue = self._queue, deque()
        self.requeue_awaiting(error)
        for pending in queue:
            pending.deferred.errback(error)

    def heartbeat(self) -> None:
        """Send a reverse heartbeat now, outside the queue (nothing waits for its answer)."""
        session = self._session
        if not session.bound or session.session_id is None:
            return
        stream = session.stream
        if IRequestStream.providedBy(stream):
            stream.send_requests([heartbeat()])  # no answer comes on a WebSocket
        else:
            sent = self._transport.send_control(session.base_url, session.session_id,
                                                [heartbeat()])
            sent.addTimeout(self.answer_timeout, self._clock)
            sent.addCallbacks(self._heartbeat_answered,
                              lambda f: log.info("heartbeat failed: {f}", f=f.value))

    def _heartbeat_answered(self, lines: list[bytes]) -> None:
        # A bare REQOK, or an ERROR that ends the session (tlcp.md §3.5, §9.2).
        for unparsable in self._settle_lines(lines, {}, "a heartbeat"):
            self._report(unparsable)

    # -- answers -----------------------------------------------------------------------

    def _settle_lines(self, lines: list[bytes], waiting: dict[str, _Pending],
                      what: str) -> list[ProtocolError]:
        """Settle what the reply's lines answer (an unexpected answer is reported); the
        errors of the lines that are no TLCP."""
        bad: list[ProtocolError] = []
        for raw in lines:
            try:
                n = parse_bytes(raw)
            except ProtocolError as e:
                bad.append(e)
                continue
            bare_ok = isinstance(n, ReqOk) and n.req_id is None  # an HTTP heartbeat's
            if not self._settle(n, waiting) and not bare_ok:
                self._report(ProtocolError(f"unexpected reply to {what}",
                                           raw.decode("utf-8", "replace")))
        return bad

    def _answered(self, lines: list[bytes], batch: _Batch) -> None:
        self._busy = False
        waiting = {str(req_id): pending for pending, _, req_id in batch}
        bad = self._settle_lines(lines, waiting, "a control request")
        missing = ProtocolError("no reply for a control request")
        if bad and len(bad) == len(lines):
            # Nothing of it is TLCP (a proxy's page): one error, the requests' own.
            missing = ProtocolError("the reply to a control request is not TLCP",
                                    bad[0].line)
            bad = [missing]
        for unparsable in bad:
            self._report(unparsable)
        again = []
        for pending, request, req_id in batch:
            if str(req_id) in waiting:
                pending.sends += 1
                if self._unanswered(pending, _idempotent(request), missing):
                    again.append(pending)
        self._queue.extendleft(reversed(again))
        self.flush()

    def _no_answer(self, req_id: str, idempotent: bool) -> None:
        """A request written on a stream had no answer in time."""
        pending = self._awaiting.get(req_id)
        if pending is None:
            return
        pending.timer = None
        if self._session.reading_paused:
            # We are not reading (back-pressure): the answer may be waiting unread.
            pending.timer = self._clock.callLater(
                self.answer_timeout, self._no_answer, req_id, idempotent)
            return
        del self._awaiting[req_id]
        if not self._session.bound:
            # The stream is being replaced: the request goes again once one is bound.
            pending.sends = 0
            self._queue.appendleft(pending)
            return
        if self._unanswered(pending, idempotent, None):
            self._queue.appendleft(pending)
            self.flush()

    def _unanswered(
        self, pending: _Pending, idempotent: bool, error: LightstreamerError | None
    ) -> bool:
        """
        True if an unanswered request should go again (harmless, same session); else fail
        it with ``error`` (or, for a stream's silence, a reported `RequestTimeoutError`).
        """
        if idempotent and pending.sends < MAX_SENDS and pending.epoch in (None, self.epoch) \
                and not self.closing:
            log.warn("No answer to a control request; sending it again")
            return True
        if error is None:
            times = f" (sent {pending.sends} times)" if pending.sends > 1 else ""
            error = RequestTimeoutError(
                f"no answer to a control request within {self.answer_timeout:g} s{times}")
            self._report(error)
        pending.deferred.errback(error)
        return False

    def _settle(self, n: Notification, waiting: dict[str, _Pending]) -> bool:
        """Settle the request a REQOK/REQERR/ERROR answers; False if it answers none."""
        if isinstance(n, ReqOk) and n.req_id in waiting:
            pending = waiting.pop(n.req_id)
            pending.stop_waiting()
            pending.deferred.callback(None)
        elif isinstance(n, ReqErr) and n.req_id in waiting:
            error = RequestError(n.code, n.message, "REQERR")
            pending = waiting.pop(n.req_id)
            pending.stop_waiting()
            pending.deferred.errback(error)
            if n.code == 20:
                self._session.restart("REQERR 20: session not found")
            elif n.code in _FATAL_CODES:
                # The session is unusable (tlcp.md §9.2); 11 is told as CONERR 21 is.
                self._session.fail(ServerError(
                    21 if n.code == 11 else n.code, n.message, "REQERR"))
        elif isinstance(n, Error):
            error = RequestError(n.code, n.message, "ERROR")
            pending_list = list(waiting.values())
            waiting.clear()
            for p in pending_list:
                p.stop_waiting()
                p.deferred.errback(error)
            self._session.fail(ServerError(n.code, n.message, "ERROR"))  # always fatal
        else:
            return False
        return True

    def _failed(self, failure: Failure, batch: _Batch) -> None:
        self._busy = False
        error = failure.value
        if failure.check(DeferredTimeout):
            error = RequestTimeoutError(
                f"no reply to a control request within {self.answer_timeout:g} s")
        elif not isinstance(error, LightstreamerError):
            error = TransportError(str(error))
        if not self.closing and isinstance(error, TransportError) and error.retryable:
            # Put the requests back; they go again (with new ids) once a stream is bound.
            for pending, _, _ in reversed(batch):
                self._queue.appendleft(pending)
            log.warn("Control request failed, will retry: {error}", error=error)
            self._retry = self._clock.callLater(
                self._session.options.retry_delay, self._retry_now)
            return
        for pending, _, _ in batch:
            pending.deferred.errback(error)
        self.flush()

    def _retry_now(self) -> None:
        self._retry = None
        self.flush()

