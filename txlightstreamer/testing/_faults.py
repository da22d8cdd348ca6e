"""Scripted faults of the test server."""

from __future__ import annotations

from collections import deque
from typing import Protocol

from twisted.logger import Logger

from ._params import ConnectionRefused
from ._session import Session
from ._stream import Stream

__all__ = ["FaultTarget", "Faults"]

log = Logger()


class FaultTarget(Protocol):
    """What :class:`Faults` acts on: the server's open streams and live sessions."""

    @property
    def _streams(self) -> set[Stream]: ...

    @property
    def _sessions(self) -> dict[str, Session]: ...


class Faults:
    """Scripted faults of a :class:`TlcpServer` (its :attr:`TlcpServer.faults`).

    Every method arms (or performs) one fault; with nothing armed the server
    behaves normally.  A fault that counts down ("next", "after n") disarms
    itself once it has fired; :meth:`reset` disarms everything.  :attr:`fired`
    records each fault as it happens, so a test can check that it did.

    Stream faults (:meth:`close_after`, :meth:`close_mid_line`,
    :meth:`truncate_next_chunk`) count the notifications written on streams,
    whatever the session; ``PROBE`` and ``SYNC`` keepalives are not counted and
    never trigger them.  They end the connection with a TCP reset once the bytes
    written have gone out (on TLS and WebSocket: an immediate abort).  The
    session stays alive and unbound, keeping its data notifications for
    recovery, as after a real network fault.

    Request faults (:meth:`fail_next`, :meth:`garbage_next`) apply to HTTP
    ``create_session``/``bind_session`` requests; :meth:`conerr_next` and
    :meth:`refuse_recovery` also to those sent over WebSocket.
    """

    def __init__(self, server: FaultTarget) -> None:
        self._server = server
        #: ``(fault name, detail)`` of every fault that fired, oldest first.
        self.fired: list[tuple[str, str]] = []
        self._close_after: int | None = None
        self._mid_line = False
        self._truncate = False
        self._http_answers: deque[tuple[int, bytes]] = deque()
        self._conerrs: deque[tuple[int, str]] = deque()
        self._recovery_refusal: tuple[int, str] | None = None

    # --- stream faults ------------------------------------------------------

    def close_after(self, n: int) -> None:
        """Reset the stream that carries the ``n``-th next notification, right after it.

        ``close_after(0)`` resets every open stream now.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        if n == 0:
            self._close_after = None
            for stream in list(self._server._streams):
                self._fire("close_after", "0")
                stream.kill()
        else:
            self._close_after = n

    def close_mid_line(self) -> None:
        """Write only the first half of the next notification, then reset the stream."""
        self._mid_line = True

    def truncate_next_chunk(self) -> None:
        """Send the next notification as a truncated HTTP chunk, then reset the stream.

        The chunk header announces the whole line but only half of its bytes
        follow.  (On WebSocket: half the line as a message, then an abort.)
        """
        self._truncate = True

    def stall(self) -> None:
        """Stop writing on every open stream, without closing it.

        Nothing goes out on a stalled stream, not even ``PROBE`` keepalives;
        what would have been written is held.  Streams opened later are not
        affected, so a client that gives up on a stalled stream can bind again
        (and recover from the session's log).
        """
        self._fire("stall", str(len(self._server._streams)))
        for stream in list(self._server._streams):
            stream._stall()

    def unstall(self) -> None:
        """Write what stalled streams held and resume them (keepalives included).

        Streams the client closed meanwhile are gone with what they held; the
        data notifications remain in their session's recovery log.
        """
        for stream in list(self._server._streams):
            stream._unstall()

    # --- request faults ----------------------------------------------------

    def fail_next(
        self, status: int = 500, body: bytes = b"Internal Server Error\r\n", count: int = 1
    ) -> None:
        """Answer the next ``count`` create/bind HTTP requests with ``status`` and ``body``."""
        for _ in range(count):
            self._http_answers.append((status, body))

    def garbage_next(self, data: bytes, count: int = 1) -> None:
        """Answer the next ``count`` create/bind HTTP requests 200 with ``data`` as body."""
        self.fail_next(200, data, count)

    def conerr_next(self, code: int, message: str = "Refused by fault injection",
                    count: int = 1) -> None:
        """Answer the next ``count`` create/bind requests ``CONERR,<code>,<message>``."""
        for _ in range(count):
            self._conerrs.append((code, message))

    def refuse_recovery(
        self, code: int = 4, message: str = "Recovery refused by fault injection"
    ) -> None:
        """Answer every bind with ``LS_recovery_from`` ``CONERR,<code>,<message>``.

        Until :meth:`accept_recovery` or :meth:`reset`.  (Accepting a recovery,
        with ``PROG``, is the normal behaviour.)
        """
        self._recovery_refusal = (code, message)

    def accept_recovery(self) -> None:
        """Undo :meth:`refuse_recovery`."""
        self._recovery_refusal = None

    # --- immediate actions --------------------------------------------------

    def end_streams(self, code: int = 32, message: str = "Session closed by the server") -> None:
        """Close every bound session with ``END,<code>,<message>`` on its stream."""
        for session in list(self._server._sessions.values()):
            if session.is_bound:
                self._fire("end_streams", f"{code}")
                session.end(code, message)

    def send_line_to_all(self, line: str) -> None:
        """Write ``line`` (e.g. ``"SYNC ERROR"``) to every live session (queued if unbound)."""
        for session in list(self._server._sessions.values()):
            self._fire("send_line_to_all", line)
            session.send_raw(line)

    def reset(self) -> None:
        """Disarm every fault and resume stalled streams."""
        self._close_after = None
        self._mid_line = self._truncate = False
        self._http_answers.clear()
        self._conerrs.clear()
        self._recovery_refusal = None
        self.unstall()

    # --- hooks used by the server -------------------------------------------

    def _fire(self, name: str, detail: str = "") -> None:
        log.debug("fault {name} {detail}", name=name, detail=detail)
        self.fired.append((name, detail))

    @property
    def _armed(self) -> bool:
        return self._mid_line or self._truncate

    def _intercept(self, stream: Stream, line: str) -> bool:
        """Before a notification is written: True if a fault consumed it."""
        data = line + "\r\n"
        if self._mid_line:
            self._mid_line = False
            self._fire("close_mid_line", line)
            half = data.encode("utf-8")[: max(1, len(data.encode("utf-8")) // 2)]
            stream.output.write(half.decode("utf-8", "ignore"))
            stream.kill()
            return True
        if self._truncate:
            self._truncate = False
            self._fire("truncate_next_chunk", line)
            stream.output.write_truncated_chunk(data)
            stream.kill()
            return True
        return False

    def _count_down(self, stream: Stream) -> bool:
        """After a notification is written: True if the stream was reset."""
        assert self._close_after is not None
        self._close_after -= 1
        if self._close_after > 0:
            return False
        self._close_after = None
        self._fire("close_after", "")
        stream.kill()
        return True

    def _http_answer(self) -> tuple[int, bytes] | None:
        if not self._http_answers:
            return None
        status, body = self._http_answers.popleft()
        self._fire("fail_next" if status != 200 else "garbage_next", str(status))
        return status, body

    def _conerr(self) -> None:
        if self._conerrs:
            code, message = self._conerrs.popleft()
            self._fire("conerr_next", str(code))
            raise ConnectionRefused(code, message)

    def _check_recovery(self, recover_from: int | None) -> None:
        if recover_from is not None and self._recovery_refusal is not None:
            self._fire("refuse_recovery", str(recover_from))
            raise ConnectionRefused(*self._recovery_refusal)
