"""One stream of the test server: an HTTP response, or a session's binding on a WebSocket."""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from ._encoding import encode_line
from ._outputs import Output

__all__ = ["Stream", "StreamFaults", "StreamHost", "StreamSession"]

log = Logger()


class StreamFaults(Protocol):
    """The fault hooks a stream calls around each notification (see ``Faults``)."""

    @property
    def _close_after(self) -> int | None: ...

    @property
    def _armed(self) -> bool: ...

    def _intercept(self, stream: Stream, line: str) -> bool: ...

    def _count_down(self, stream: Stream) -> bool: ...


class StreamHost(Protocol):
    """What a stream needs of its server."""

    @property
    def clock(self) -> IReactorTime: ...

    @property
    def sync_interval_millis(self) -> int: ...

    @property
    def faults(self) -> StreamFaults: ...

    @property
    def _streams(self) -> set[Stream]: ...


class StreamSession(Protocol):
    """What a stream needs of the session bound to it."""

    @property
    def session_id(self) -> str: ...

    def _stream_gone(self, stream: Stream) -> None: ...

    def _requeue(self, held: list[tuple[int | None, str]]) -> None: ...


class Stream:
    """One HTTP response (or WebSocket session binding) carrying notifications."""

    def __init__(
        self,
        server: StreamHost,
        output: Output,
        *,
        polling: bool,
        keepalive_ms: int,
        idle_ms: int,
        polling_ms: int,
        content_length: int | None,
        send_sync: bool,
    ) -> None:
        self.server = server
        self.output = output
        #: The HTTP request of the stream (None on a WebSocket).
        self.request: Request | None = getattr(output, "request", None)
        self.polling = polling
        self.keepalive_ms = keepalive_ms
        self.idle_ms = idle_ms
        self.polling_ms = polling_ms
        self.content_length = content_length
        self.send_sync = send_sync
        self.session: StreamSession | None = None
        self.written = 0
        self.closed = False
        self.bound_at = server.clock.seconds()
        self._keepalive: IDelayedCall | None = None
        self._sync: IDelayedCall | None = None
        self._poll_timer: IDelayedCall | None = None
        self._poll_ready = False
        #: Whether :meth:`Faults.stall` holds what this stream would write.
        self.stalled = False
        #: Lines held by a stall, with their data-notification number (None: not data).
        self._held: list[tuple[int | None, str]] = []
        #: What is written between `hold` and `release` (None: written at once).
        self._gathered: list[str] | None = None
        output.notify_lost(self._lost)

    # --- writing ------------------------------------------------------------

    def _write(self, line: str) -> None:
        data = line + "\r\n"
        self.written += len(data) if data.isascii() else len(data.encode("utf-8"))
        if self._gathered is not None:
            self._gathered.append(data)
        else:
            self.output.write(data)

    def hold(self) -> None:
        """Gather what is written until `release` into one write (one HTTP chunk).

        A control request's answers (``SUBOK``, ``CONF``, snapshots...) then cost one
        write, not one per line; the lines, their order and their counting do not change.
        A WebSocket stream keeps one message per notification.
        """
        if self._gathered is None and not self.closed and not self.output.websocket:
            self._gathered = []

    def release(self) -> None:
        """Write what was gathered since `hold`, in one piece."""
        gathered, self._gathered = self._gathered, None
        if gathered and not self.closed:
            self.output.write("".join(gathered))
            if not self.polling:
                self._restart_keepalive()

    def write_head(self, lines: list[str]) -> None:
        """Write the head of the response (not subject to the content length)."""
        if lines:
            data = "".join(line + "\r\n" for line in lines)
            self.written += len(data.encode("utf-8"))
            self.output.write(data)

    def start(self) -> None:
        """Start the timers once the head and the queued notifications are out."""
        if self.closed:
            return
        clock = self.server.clock
        if self.polling:
            if self._poll_ready:
                return  # already scheduled to answer
            if self.idle_ms == 0:
                self.close_with(encode_line("LOOP", self.polling_ms))
            else:
                self._poll_timer = clock.callLater(self.idle_ms / 1000.0, self._finish_poll)
        else:
            self._restart_keepalive()
            if self.send_sync and self.server.sync_interval_millis > 0:
                self._sync = clock.callLater(
                    self.server.sync_interval_millis / 1000.0, self._send_sync
                )

    def send(self, line: str, prog: int | None = None) -> None:
        """
        Write one notification, ending the stream with LOOP when the length is used up.

        ``prog`` numbers a data notification, so that a stalled stream that ends before
        releasing it hands it back to its session in place (sent on the next bind).
        """
        if self.closed:
            raise RuntimeError("stream closed")
        if self.stalled:
            self._held.append((prog, line))
            return
        faults = self.server.faults
        if faults._armed and line != "PROBE" and not line.startswith("SYNC,"):
            self.release()  # what was gathered goes before what the fault writes
            if faults._intercept(self, line):
                return
        self._write(line)
        if faults._close_after is not None and line != "PROBE" and not line.startswith("SYNC,"):
            if faults._count_down(self):
                return
        if self.polling:
            # Let a burst of notifications gather before answering the poll.
            if not self._poll_ready:
                self._poll_ready = True
                if self._poll_timer is not None and self._poll_timer.active():
                    self._poll_timer.cancel()
                self._poll_timer = self.server.clock.callLater(0, self._finish_poll)
            return
        if self._gathered is None:
            self._restart_keepalive()  # otherwise once, when the gathered lines go out
        if self.content_length is not None and self.written >= self.content_length:
            self.close_with(encode_line("LOOP", 0))

    def send_lines(self, lines: list[str]) -> bool:
        """`send` each of ``lines`` (data notifications) in one write, if nothing stands
        between them (no fault armed, no stall, not polling, the content length not
        reached by them); False (nothing written) otherwise, and always on a WebSocket
        (one message per notification there)."""
        faults = self.server.faults
        if (
            self.closed
            or self.stalled
            or self.polling
            or self.output.websocket
            or faults._armed
            or faults._close_after is not None
        ):
            return False
        data = "\r\n".join(lines) + "\r\n"
        size = len(data) if data.isascii() else len(data.encode("utf-8"))
        if self.content_length is not None and self.written + size >= self.content_length:
            return False
        self.written += size
        if self._gathered is not None:
            self._gathered.append(data)
        else:
            self.output.write(data)
            self._restart_keepalive()
        return True

    def _restart_keepalive(self) -> None:
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.reset(self.keepalive_ms / 1000.0)
        else:
            self._keepalive = self.server.clock.callLater(
                self.keepalive_ms / 1000.0, self._send_probe
            )

    def _send_probe(self) -> None:
        self._keepalive = None
        if not self.closed:
            self.send("PROBE")

    def _stall(self) -> None:
        if self.closed or self.stalled:
            return
        self.release()
        self.stalled = True
        self._cancel_timers()
        self._poll_ready = False

    def _unstall(self) -> None:
        if not self.stalled:
            return
        self.stalled = False
        held, self._held = self._held, []
        session = self.session
        for index, (prog, line) in enumerate(held):
            if self.closed:
                # Ended while releasing (LOOP at the content length): the rest is not
                # lost, the session sends it on the next bind.
                if session is not None:
                    session._requeue(held[index:])
                return
            self.send(line, prog)
        if not self.closed:
            self.start()

    def _send_sync(self) -> None:
        self._sync = None
        if self.closed:
            return
        seconds = int(self.server.clock.seconds() - self.bound_at)
        self._sync = self.server.clock.callLater(
            self.server.sync_interval_millis / 1000.0, self._send_sync
        )
        self.send(encode_line("SYNC", seconds))

    def _finish_poll(self) -> None:
        self._poll_timer = None
        if not self.closed:
            self.close_with(encode_line("LOOP", self.polling_ms))

    # --- ending -------------------------------------------------------------

    def _cancel_timers(self) -> None:
        for timer in (self._keepalive, self._sync, self._poll_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._keepalive = self._sync = self._poll_timer = None

    def _detach(self) -> None:
        self.closed = True
        self._cancel_timers()
        self.server._streams.discard(self)
        session, self.session = self.session, None
        held, self._held = self._held, []
        if session is not None:
            session._stream_gone(self)
            if held:  # ended while stalled: what it held goes on the next bind
                session._requeue(held)

    def close_with(self, line: str | None) -> None:
        """Write a last line (LOOP/END) if given, and finish the response."""
        if self.closed:
            return
        if line is not None:
            self._write(line)
        self.release()
        self._detach()
        self.output.finish()

    def abort(self) -> None:
        """Abruptly close the underlying connection."""
        if self.closed:
            return
        self.release()
        self._detach()
        self.output.abort()

    def kill(self) -> None:
        """Reset the connection after what was written so far (see ``HttpOutput.kill``)."""
        if self.closed:
            return
        self.release()
        self._detach()
        self.output.kill()

    def _lost(self, reason: Failure) -> None:
        self._gathered = None  # nowhere to write it
        if not self.closed:
            log.debug("stream connection lost: {reason}", reason=reason.value)
            self._detach()
