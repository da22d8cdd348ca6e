"""
Reading the session's streams: lines become hot-path deliveries or typed notifications.

`StreamReader` is the `StreamSink` of every stream the session opens. Runs of plain
updates go through the `UpdateRouter` (the hot path); every other line is parsed and
handed to the session (CONOK, LOOP, CONERR, END...) or to the listener (data and
informative notifications). It also counts the data notifications (tlcp.md §7.6), which
is what a recovery asks the server to resume from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.logger import Logger
from twisted.python.failure import Failure

from txlightstreamer._session.machine import State
from txlightstreamer.errors import (
    LightstreamerError,
    ProtocolError,
    TransportError,
    without_frames,
)
from txlightstreamer.protocol import (
    ConErr,
    ConOk,
    End,
    Loop,
    Notification,
    Prog,
    UnknownTagError,
    parse_bytes,
)
from txlightstreamer.protocol._hotpath import UpdateRouter
from txlightstreamer.transport.interfaces import IStream, StreamClosed

__all__ = ["DATA_TAGS", "ReaderOwner", "StreamReader"]

log = Logger()

#: Tags of the data notifications, the ones a recovery counts (tlcp.md §7.6).
DATA_TAGS = frozenset({
    b"U", b"SUBOK", b"SUBCMD", b"UNSUB", b"EOS", b"CS", b"OV", b"CONF", b"MSGDONE",
    b"MSGFAIL", b"MPNREG", b"MPNZERO", b"MPNOK", b"MPNCONF", b"MPNDEL"})


class ReaderOwner(Protocol):
    """What the reader needs of the session."""

    @property
    def stream(self) -> IStream | None:
        """The stream being read; lines of any other are ignored."""

    @property
    def state(self) -> State: ...

    def alive(self) -> None:
        """Lines arrived (once per read)."""

    def notify(self, notification: Notification) -> None:
        """A data or informative notification for the listener."""

    def report(self, error: LightstreamerError) -> None:
        """An error the application should hear about."""

    def conok(self, conok: ConOk) -> None: ...

    def loop(self, loop: Loop) -> None: ...

    def conerr(self, conerr: ConErr) -> None: ...

    def end(self, end: End) -> None: ...

    def protocol_error(self, error: ProtocolError, line: bytes | None = None) -> None:
        """Unparsable data (``line``, when one line is to blame)."""

    def restart(self, reason: str) -> None: ...

    def broken(self, error: LightstreamerError) -> None:
        """The stream ended without LOOP or END."""


class StreamReader:
    """The sink of one session's streams, and its count of data notifications."""

    def __init__(self, owner: ReaderOwner, router: UpdateRouter) -> None:
        self._owner = owner
        self.router = router
        #: Data notifications received (delivered or skipped) in this session.
        self.data_count = 0
        #: The server's position: behind ``data_count`` while a recovered stream replays
        #: what was already seen, None until that stream's PROG says where it is.
        self.server_prog: int | None = 0
        # What a recovered stream's PROG confirms when it is accepted (the recovery told).
        self._confirmed: Callable[[], None] | None = None
        #: Paused by the application: the rest of the read it paused in waits in ``_held``.
        self.paused = False
        self._held: tuple[IStream, list[bytes]] | None = None

    def pause(self) -> None:
        """Deliver nothing more, not even the rest of the current read, until `resume`."""
        self.paused = True
        self.router.open = False

    def resume(self) -> bool:
        """Deliver what was held; False if that paused reading again."""
        self.paused = False
        held, self._held = self._held, None
        if held is not None:
            self.stream_lines(*held)
        return not self.paused

    def stream_lines(self, stream: IStream, lines: list[bytes]) -> None:
        """
        The complete lines of one read. Runs of plain updates go through the router
        (the hot path); every other line through `_line`.
        """
        owner = self._owner
        if stream is not owner.stream:
            return
        if self.paused:  # a read already on its way when reading was paused
            self._hold(stream, lines)
            return
        owner.alive()
        if stream is not owner.stream:
            return  # a status or heartbeat callback closed the session
        router = self.router
        i, n = 0, len(lines)
        while i < n:
            if self.paused:  # by a callback: the rest waits for resume
                self._hold(stream, lines[i:])
                return
            # Not replaying, not waiting for PROG, and an update (the router takes no other).
            if self.server_prog == self.data_count and lines[i].startswith(b"U,"):
                router.open = True
                fed = router.feed(lines, i)
                router.open = False
                # Every line the router took was one data notification, delivered.
                self.data_count += fed - i
                self.server_prog = self.data_count
                i = fed
                if i == n or stream is not owner.stream:
                    return
                if self.paused:
                    continue  # a callback paused reading: the top of the loop holds the rest
            self._line(lines[i])
            i += 1
            # A line or a callback may have ended this stream (LOOP, END, destroy...).
            if stream is not owner.stream:
                return

    def stream_ended(self, stream: IStream, reason: Failure) -> None:
        owner = self._owner
        if stream is not owner.stream:
            return
        if isinstance(reason.value, ProtocolError):
            owner.protocol_error(reason.value)
        elif reason.check(StreamClosed):
            owner.broken(TransportError(
                "the server closed the stream without LOOP or END", url=stream.url))
        elif isinstance(reason.value, LightstreamerError):
            owner.broken(reason.value)
        else:
            owner.broken(TransportError(str(reason.value), url=stream.url))

    def _hold(self, stream: IStream, lines: list[bytes]) -> None:
        held = self._held
        self._held = (stream, held[1] + lines if held is not None else lines)

    def stop(self) -> None:
        """Not one more line from the current stream (even within the current read); what
        was held is dropped, uncounted: a recovery asks for it again."""
        self.router.open = False
        self._held = None

    def session_created(self) -> None:
        """A new session counts from zero."""
        self.data_count = self.server_prog = 0

    def session_recovered(self, confirmed: Callable[[], None]) -> None:
        """A recovered stream: wait for its PROG before counting; ``confirmed()`` runs
        once it is accepted (a PROG beyond the count abandons the recovery instead)."""
        self.server_prog = None
        self._confirmed = confirmed

    def creating(self) -> None:
        """A create is under way: no PROG is awaited any more."""
        self.server_prog = self.data_count
        self._confirmed = None

    @property
    def replaying(self) -> bool:
        """A recovered stream is resending notifications already received."""
        return self.server_prog is not None and self.server_prog < self.data_count

    def skip(self, line: bytes) -> str | None:
        """
        Count an unparsable data notification as received, without delivering it; what
        it belongs to (``"subscription 3, item 2"``), or None (nothing skipped) when it
        cannot be told.
        """
        parts = line.split(b",", 3)
        if parts[0] not in DATA_TAGS or len(parts) < 2 or not parts[1].isdigit():
            return None
        if self.server_prog != self.data_count:
            return None
        where = f"subscription {int(parts[1])}"
        if parts[0] in (b"U", b"EOS", b"CS", b"OV") and len(parts) > 2 and parts[2].isdigit():
            where += f", item {int(parts[2])}"
        elif parts[0] in (b"MSGDONE", b"MSGFAIL"):
            where = f"message sequence {parts[1].decode('ascii')}"
        self.data_count += 1
        self.server_prog = self.data_count
        return where

    def _line(self, line: bytes) -> None:
        if not line:
            return  # an empty line: ignored, as the official client does (tlcp.md §2.3)
        owner = self._owner
        try:
            n = parse_bytes(line)
        except UnknownTagError as e:
            without_frames(e)
            if owner.state is not State.BOUND:
                # Before CONOK: whatever answers us does not speak TLCP.
                owner.protocol_error(e)
            elif line == b"SYNC ERROR":
                # The legacy protocol's "your session is gone": start a new one.
                owner.report(e)
                owner.restart("the server sent SYNC ERROR (session lost)")
            else:
                # Like the official client, skip what we do not know (it cannot be one
                # of the counted data notifications of our protocol version), but say so.
                log.warn("Ignoring a line with an unknown tag: {error}", error=e)
                owner.report(e)
            return
        except ProtocolError as e:
            without_frames(e)
            if self.replaying and line.split(b",", 1)[0] in DATA_TAGS:
                self.server_prog += 1  # type: ignore[operator]  # a duplicate, skipped anyway
                return
            owner.protocol_error(e, line)
            return
        if n.is_data:
            self._data(n)
        elif isinstance(n, ConOk):
            owner.conok(n)
        elif isinstance(n, Prog):
            self._prog(n.prog)
        elif isinstance(n, Loop):
            owner.loop(n)
        elif isinstance(n, ConErr):
            owner.conerr(n)
        elif isinstance(n, End):
            owner.end(n)
        else:
            owner.notify(n)

    def _data(self, n: Notification) -> None:
        if self.server_prog is None:
            self._owner.protocol_error(
                ProtocolError("data notification before PROG on recovery"))
            return
        self.server_prog += 1
        if self.server_prog <= self.data_count:
            return  # a replayed duplicate after recovery: skip it
        self.data_count += 1
        self._owner.notify(n)

    def _prog(self, prog: int) -> None:
        if self.server_prog is None:
            if prog > self.data_count:
                self._owner.restart(
                    f"PROG {prog} beyond the {self.data_count} notifications received")
                return
            self.server_prog = prog
            confirmed, self._confirmed = self._confirmed, None
            if confirmed is not None:
                confirmed()
        elif prog != self.server_prog:
            self._owner.restart(f"PROG {prog} does not match {self.server_prog}")
