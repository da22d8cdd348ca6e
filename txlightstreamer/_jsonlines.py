"""`JsonLinesWriter`: the event sink behind the JSON-lines output."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from txlightstreamer.events import encode_event

__all__ = ["JsonLinesWriter"]

log = Logger()


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
            stdout = sys.__stdout__ if sys.__stdout__ is not None else sys.stdout
            return cls(cast(BinaryIO, stdout.buffer), on_broken=on_broken, clock=clock)
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

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
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
