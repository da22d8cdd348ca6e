"""`JsonLinesWriter`: the event sink behind the JSON-lines output."""

from __future__ import annotations

import errno
import io
import os
import stat
import sys
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, cast

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txlightstreamer._client_reading import ClientReading
from txlightstreamer.events import encode_event

__all__ = ["JsonLinesWriter"]

log = Logger()

#: Seconds `JsonLinesWriter.close` waits for a pipe's reader to take what is left.
DRAIN_TIMEOUT = 5.0


def _own_pipe(found: os.stat_result) -> bool:
    """Whether standard output (``found``) is a pipe or a socket that standard error does
    not share: made non-blocking, it would make the log's writes fail too (as it would a
    terminal's, where a blocked write is rare anyway)."""
    if sys.platform == "win32" or not (stat.S_ISFIFO(found.st_mode)
                                       or stat.S_ISSOCK(found.st_mode)):
        return False  # (no non-blocking pipes there: written as a file)
    try:
        errors = os.fstat(2)
    except OSError:
        return True
    return (errors.st_dev, errors.st_ino) != (found.st_dev, found.st_ino)


class _PipeOutput(FileDescriptor):
    """
    Standard output when it is a pipe of its own (`_own_pipe`), written without blocking:
    what the reader has not taken yet waits in Twisted's buffer, and past its size the
    registered producer (the client's reading) is paused until it drains.
    """

    def __init__(self, fd: int, reactor: Any, lost: Callable[[OSError | None], object]) -> None:
        import fcntl  # POSIX only, as this class

        super().__init__(reactor)
        self._fd = fd
        self._flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, self._flags | os.O_NONBLOCK)
        self.connected = 1
        self._lost = lost
        self._error: OSError | None = None

    def fileno(self) -> int:
        return self._fd

    def writeSomeData(self, data: bytes) -> int | BaseException:  # noqa: N802 (Twisted API)
        try:
            return os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as e:
            self._error = e
            return e

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 (Twisted API)
        import fcntl

        super().connectionLost(reason)
        self.connected = 0
        try:  # the descriptor is shared (a terminal, the shell's pipe): as it was
            fcntl.fcntl(self._fd, fcntl.F_SETFL, self._flags)
        except OSError:
            pass
        error = self._error
        if error is None and not reason.check(ConnectionDone):
            # The poller saw the reader's end close before a write failed (| head).
            error = BrokenPipeError(errno.EPIPE, "the reader of standard output went away")
        self._lost(error)

    def pending(self) -> int:
        """Bytes written to this output and not taken by the reader yet."""
        return len(self.dataBuffer) - self.offset + self._tempDataLen


class JsonLinesWriter:
    """
    Writes events as JSON lines to a binary stream, flushing after each line, or with
    ``clock`` once per reactor turn (a burst read in one turn is one write, not thousands).
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        close: bool = False,
        on_broken: Callable[[OSError], object] | None = None,
        clock: IReactorTime | None = None,
        discard: bool = False,
    ) -> None:
        self._stream: BinaryIO | None = stream
        self._close = close
        self._on_broken = on_broken
        self._clock = clock
        #: Count the lines, write nothing (``--output /dev/null``).
        self._discard = discard
        self._flush_call: IDelayedCall | None = None
        #: Standard output as a pipe of its own, written without blocking; or None.
        self._pipe: _PipeOutput | None = None
        self.lines = 0

    @classmethod
    def open(
        cls,
        path: str,
        on_broken: Callable[[OSError], object] | None = None,
        clock: IReactorTime | None = None,
    ) -> JsonLinesWriter:
        """Open ``path`` for appending, or standard output for ``-`` (nothing for the null
        device: a bridge's ``--output /dev/null`` spends nothing on it)."""
        if path == os.devnull:
            return cls(cast(BinaryIO, io.BytesIO()), discard=True)
        if path == "-":
            # The real stdout: twistd replaces sys.stdout with a log redirection.
            stdout = sys.__stdout__
            try:
                found = os.fstat(1)
            except OSError:
                stdout = None
            if stdout is None:
                raise OSError(errno.EBADF, "standard output is closed")
            writer = cls(cast(BinaryIO, stdout.buffer), on_broken=on_broken, clock=clock)
            if _own_pipe(found) and IReactorFDSet.providedBy(clock):
                stdout.flush()  # what was written before goes first
                writer._pipe = _PipeOutput(1, clock, writer._pipe_lost)
            return writer
        return cls(cast(BinaryIO, open(path, "ab")), close=True, on_broken=on_broken,
                   clock=clock)

    @property
    def closed(self) -> bool:
        """Whether nothing more will be written."""
        return self._stream is None

    def write(self, event: Mapping[str, Any]) -> None:
        """Write one event (ignored once closed or broken)."""
        if self._discard:
            self.write_line(b"")
            return
        self.write_line(encode_event(event))

    def write_line(self, line: bytes) -> None:
        """Write one event already encoded by `encode_event` (ignored once closed)."""
        stream = self._stream
        if stream is None:
            return
        if self._discard:
            self.lines += 1
            return
        if self._pipe is not None:
            self._pipe.write(line)
            self.lines += 1
            return
        try:
            stream.write(line)
            if self._clock is None:
                stream.flush()
            elif self._flush_call is None:
                self._flush_call = self._clock.callLater(0, self._flush)
        except OSError as e:
            self._broken(stream, e)
            return
        self.lines += 1

    def _flush(self) -> None:
        self._flush_call = None
        stream = self._stream
        if stream is None:
            return
        try:
            stream.flush()
        except OSError as e:
            self._broken(stream, e)

    def _cancel_flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None

    def _broken(self, stream: BinaryIO, error: OSError) -> None:
        self._stream = None
        self._cancel_flush()
        if isinstance(error, BrokenPipeError) and not self._close:
            # The reader went away (e.g. `| head`): point the descriptor at /dev/null so
            # the interpreter's final flush does not complain.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass
        elif self._close:
            try:
                stream.close()
            except OSError:
                pass
        if self._on_broken is not None:
            self._on_broken(error)

    def _pipe_lost(self, error: OSError | None) -> None:
        self._pipe = None
        stream = self._stream
        if stream is not None and error is not None:
            self._broken(stream, error)  # the reader went away (| head): as for a stream
        else:
            self._stream = None

    def pause_reading_of(self, producer: Callable[[], Any]) -> None:
        """
        Back-pressure: while the reader of standard output lags (a pipe of its own), pause
        ``producer()`` (the current client) with its ``pause_reading()`` and
        ``resume_reading()``. A file, a terminal or a stream given is never full.
        """
        if self._pipe is not None:
            self._pipe.registerProducer(ClientReading(producer), True)

    def close(self) -> Deferred[None]:
        """Flush, and close the file if this writer opened it. Standard output as a pipe
        is given `DRAIN_TIMEOUT` seconds to be read: the Deferred fires then."""
        pipe = self._pipe
        if pipe is not None:
            return self._drain(pipe)
        self._close_stream()
        return succeed(None)

    def _drain(self, pipe: _PipeOutput) -> Deferred[None]:
        done: Deferred[None] = Deferred()

        def finished(error: OSError | None) -> None:
            # Closing: a reader gone meanwhile is no news.
            if timer.active():
                timer.cancel()
            self._pipe = self._stream = None
            if not done.called:
                done.callback(None)

        def expired() -> None:
            log.warn("{count} bytes of JSON output left unwritten: the reader of standard "
                     "output took nothing for {seconds:g} s", count=pipe.pending(),
                     seconds=DRAIN_TIMEOUT)
            pipe.stopWriting()
            pipe.connectionLost(Failure(OSError(errno.ETIMEDOUT, "output not drained")))

        pipe._lost = finished
        clock = cast(IReactorTime, self._clock)
        timer = clock.callLater(DRAIN_TIMEOUT, expired)
        pipe.unregisterProducer()
        pipe.loseConnection()
        return done

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        self._cancel_flush()
        if stream is None:
            return
        try:
            if self._close:
                stream.close()
            else:
                stream.flush()
        except OSError as e:
            log.warn("Could not close the JSON output: {error}", error=e)

