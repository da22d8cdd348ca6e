"""
Messages sent to the server's Metadata Adapter (``msg`` requests) and their outcomes.

Progressives are numbered per sequence and kept across rebinds of one session; a new
session starts every sequence again at 1 (tlcp.md §8). Outcomes come back on the stream as
``MSGDONE`` / ``MSGFAIL`` data notifications.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred

# The exceptions live in errors.py; they stay importable from here for older code.
from txlightstreamer.errors import (
    LightstreamerError,
    MessageDenied,
    MessageDiscarded,
    MessageError,
    ServerError,
    SessionLostError,
)
from txlightstreamer.protocol import MsgDone, MsgFail, Request, message

__all__ = [
    "MessageDenied",
    "MessageDiscarded",
    "MessageError",
    "MessageManager",
]

# Numbering for messages without a sequence that still want an outcome; never sent.
_UNORDERED = "UNORDERED_MESSAGES"
# Longest delay_timeout, in seconds: LS_max_wait in milliseconds fits the server's long.
_LONGEST_WAIT = float((1 << 63) // 1000)


class _Outgoing:
    """One message on its way; its progressive is fixed on first send, per session."""

    __slots__ = ("text", "sequence", "delay_timeout", "enqueue", "deferred", "prog", "epoch",
                 "request")

    def __init__(self, text: str, sequence: str | None, delay_timeout: float | None,
                 enqueue: bool, cancelled: Callable[[_Outgoing], None]) -> None:
        self.text = text
        self.sequence = sequence
        self.delay_timeout = delay_timeout
        #: Sent with ``enqueue_while_disconnected``: it waits for a session, however long.
        self.enqueue = enqueue
        self.deferred: Deferred[str | None] = Deferred(lambda _: cancelled(self))
        self.prog: int | None = None
        self.epoch = -1
        #: The control channel's Deferred of its ``msg`` request, once queued.
        self.request: Deferred[None] | None = None


class MessageManager:
    """Numbers messages, builds their requests and matches outcomes to Deferreds."""

    def __init__(self) -> None:
        self._epoch = 0
        self._progs: dict[str, int] = {}
        self._waiting: dict[tuple[str, int], _Outgoing] = {}
        #: Messages prepared and not written yet (their requests are queued).
        self._unsent: set[_Outgoing] = set()

    def new_session(self) -> list[_Outgoing]:
        """
        A new session: every sequence restarts; outcomes of the old one never come. The
        messages sent in the old one are aborted, and returned: their requests must not go
        again (a message not sent yet goes in the new session).
        """
        self._epoch += 1
        self._progs.clear()
        return self.abort_all(SessionLostError("the session ended before the message's outcome"))

    def abort_all(self, error: LightstreamerError) -> list[_Outgoing]:
        """Fail every message sent and waiting for its outcome; those messages."""
        waiting, self._waiting = self._waiting, {}
        for out in waiting.values():
            if not out.deferred.called:
                out.deferred.errback(error)
        return list(waiting.values())

    def prepare(
        self, text: str, sequence: str | None, delay_timeout: float | None,
        enqueue: bool = False, cancelled: Callable[[_Outgoing], None] = lambda out: None,
    ) -> _Outgoing:
        """A message to send; ``cancelled(out)`` runs if its Deferred is cancelled."""
        if not isinstance(text, str):
            raise TypeError("message text must be a str")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: no UTF-8 (tlcp.md §2.4) has it
            raise ValueError(f"message text is not valid Unicode: {e.reason}") from None
        if sequence is not None:
            if sequence == _UNORDERED or not sequence or not all(
                c.isascii() and (c.isalnum() or c == "_") for c in sequence
            ):
                raise ValueError(
                    f"sequence {sequence!r} must be letters, digits and '_' only "
                    f"(and not {_UNORDERED!r})"
                )
        if delay_timeout is not None and not 0 <= delay_timeout < _LONGEST_WAIT:
            # NaN fails the comparison too; LS_max_wait is whole milliseconds (tlcp.md §3.4).
            raise ValueError(
                f"delay_timeout must be a finite number of seconds >= 0, not {delay_timeout!r}")
        out = _Outgoing(text, sequence, delay_timeout, enqueue, cancelled)
        self._unsent.add(out)
        return out

    def build(self, out: _Outgoing, req_id: int) -> Request:
        """The ``msg`` request for ``out`` (same progressive if re-sent in one session)."""
        self._unsent.discard(out)
        key = out.sequence or _UNORDERED
        if out.prog is None or out.epoch != self._epoch:
            out.prog = self._progs.get(key, 0) + 1
            self._progs[key] = out.prog
            out.epoch = self._epoch
            self._waiting[(key, out.prog)] = out
        max_wait = None
        if out.sequence is not None and out.delay_timeout is not None:
            max_wait = int(out.delay_timeout * 1000)
        return message(req_id, out.text, sequence=out.sequence, prog=out.prog,
                       max_wait=max_wait)

    def refused(self, out: _Outgoing, error: LightstreamerError) -> None:
        """The ``msg`` request itself failed (REQERR, transport, session loss)."""
        if isinstance(error, ServerError) and error.code in (32, 33):
            return  # a resent duplicate: the first one's outcome comes (or came)
        self.forget(out)
        if out.deferred.called:
            return
        if isinstance(error, ServerError) and not isinstance(error, MessageError):
            error = MessageError(error.code, error.message, error.tag)
        out.deferred.errback(error)

    def abort_unsent(self, error: LightstreamerError) -> list[_Outgoing]:
        """Fail the messages not written yet, except those asked to wait for a session
        (``enqueue_while_disconnected``); those failed (their requests must not go)."""
        dropped = [out for out in self._unsent if not out.enqueue]
        for out in dropped:
            self._unsent.discard(out)
            if not out.deferred.called:
                out.deferred.errback(error)
        return dropped

    def forget(self, out: _Outgoing) -> None:
        """Stop waiting for ``out``'s outcome (its Deferred was cancelled)."""
        self._unsent.discard(out)
        if out.prog is not None:
            self._waiting.pop((out.sequence or _UNORDERED, out.prog), None)

    def outcome(self, n: MsgDone | MsgFail) -> bool:
        """Deliver ``MSGDONE``/``MSGFAIL``; False if no message was waiting for it."""
        key = n.sequence or _UNORDERED
        if isinstance(n, MsgDone):
            out = self._waiting.pop((key, n.prog), None)
            if out is None:
                return False
            if not out.deferred.called:
                out.deferred.callback(n.response)
            return True
        if n.code in (32, 33):
            return True  # late duplicates: the original outcome stands
        count = 1
        if n.code == 39:
            # "this and some preceding progressives": the count is in the message text.
            try:
                count = max(1, int(n.message))
            except ValueError:
                pass
        # The waiting ones in that range (the count is the server's: never a range of it).
        progs = sorted(prog for seq, prog in self._waiting
                       if seq == key and n.prog - count < prog <= n.prog)
        found = False
        for prog in progs:
            out = self._waiting.pop((key, prog), None)
            if out is None or out.deferred.called:
                continue
            found = True
            error: MessageError
            if n.code in (38, 39):
                error = MessageDiscarded(n.code, n.message, "MSGFAIL")
            elif n.code <= 0:
                error = MessageDenied(n.code, n.message, "MSGFAIL")
            else:
                error = MessageError(n.code, n.message, "MSGFAIL")
            out.deferred.errback(error)
        return found
