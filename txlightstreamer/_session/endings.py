"""
What ends or refuses a stream: CONERR, END, and data that cannot be parsed.

Each decides between a retry of the same request, a recovery, a new session and a fatal
end. An unparsable line costs nothing: it is reported and the same session is recovered
from the last good data notification (tlcp.md §7.6).
"""

from __future__ import annotations

from typing import Protocol

from twisted.logger import Logger

from txlightstreamer._session.machine import State
from txlightstreamer._session.options import SessionOptions
from txlightstreamer._session.sense import TransportChoice
from txlightstreamer.errors import LightstreamerError, ProtocolError, ServerError
from txlightstreamer.protocol import ConErr, End
from txlightstreamer.protocol.errors import RETRYABLE_CONERR, RETRYABLE_END

__all__ = ["Endings", "EndingsOwner"]

log = Logger()

# CONERR codes after which a new session (not a retry of the same request) is needed.
_NEW_SESSION_CONERR = frozenset({4, 6, 20, 40, 41, 48})  # tlcp.md §7.6


class EndingsOwner(Protocol):
    """What the endings need of the session."""

    @property
    def state(self) -> State: ...

    @property
    def options(self) -> SessionOptions: ...

    @property
    def choice(self) -> TransportChoice: ...

    @property
    def data_count(self) -> int: ...

    def stop_stream(self) -> None: ...

    def report(self, error: LightstreamerError) -> None: ...

    def closed_meanwhile(self) -> bool: ...

    def skip(self, line: bytes) -> str | None:
        """Count a bad data line as received; what it belongs to, or None."""

    def failed_create(self, error: LightstreamerError) -> bool:
        """Count and report a refused create; False if the report closed the session."""

    def create_later(self, reason: str, delay: float | None = None,
                     ttl: str | None = None) -> None: ...

    def recover_later(self, reason: str) -> None: ...

    def new_session_later(self, reason: str) -> None: ...

    def fatal(self, error: LightstreamerError) -> None: ...


class Endings:
    """The session's answers to CONERR, END and unparsable data."""

    def __init__(self, session: EndingsOwner) -> None:
        self._session = session
        # Where (data count) the last unparsable line was met, and the line: the same
        # line met again there is no accident of the connection.
        self._bad_at: tuple[int, bytes | None] | None = None
        # Whether the version was lowered to 2.4.0 for a CONERR 65 (and no create has
        # been accepted since): a 65 again was not about the version.
        self._fell_back = False
        # Whether a create already asked the server to keep it (after a CONERR 5).
        self._ttl_asked = False

    def session_created(self) -> None:
        """A new session: no bad line met yet."""
        self._bad_at = None
        self._fell_back = False
        self._ttl_asked = False

    def conerr(self, conerr: ConErr) -> None:
        """The create or bind was refused."""
        s = self._session
        s.stop_stream()
        error = ServerError(conerr.code, conerr.message, "CONERR")
        creating = s.state is State.CREATING
        if (
            creating
            and conerr.code == 65
            and s.options.protocol_fallback
            and s.choice.protocol_version == "2.5.0"
        ):
            # Older servers refuse TLCP 2.5.0 with a syntax error: try 2.4.0 (once: the
            # version stays lowered).
            s.choice.speak_protocol("2.4.0")
            self._fell_back = True
            reason = f"server refused TLCP 2.5.0 ({error}); retrying with TLCP 2.4.0"
            log.warn("{reason}", reason=reason)
            s.create_later(reason, 0.0)
        elif creating and conerr.code == 65 and self._fell_back:
            # Refused in 2.4.0 too: a bad argument, not the version, which goes back.
            self._fell_back = False
            s.choice.speak_protocol("2.5.0")
            s.fatal(error)
        elif creating and conerr.code in RETRYABLE_CONERR:
            log.warn("Session refused, will retry: {error}", error=error)
            if not s.failed_create(error):
                return
            if conerr.code == 5:
                # Overloaded: retry at once, asking the server to keep the request; once
                # (tlcp.md §7.7), then as any refused create.
                s.create_later(str(error), None if self._ttl_asked else 0.0, ttl="unlimited")
                self._ttl_asked = True
            else:
                s.create_later(str(error))
        elif not creating and conerr.code in _NEW_SESSION_CONERR:
            s.new_session_later(str(error))
        else:
            s.fatal(error)

    def end(self, end: End) -> None:
        """The server closed the session."""
        s = self._session
        s.stop_stream()
        error = ServerError(end.code, end.message, "END")
        if end.code in RETRYABLE_END:
            s.report(error)
            s.new_session_later(str(error))
        else:
            s.fatal(error)

    def protocol_error(self, error: ProtocolError, line: bytes | None = None) -> None:
        """
        Unparsable data. Reported, then the same session is recovered from the last good
        data notification. If the recovered stream brings a bad line at the same place
        again, the server really sends it: skipped (and reported) when it can be told
        which subscription it belongs to, else (or if another bad line comes there) the
        session is replaced. Never a loop.
        """
        s = self._session
        log.error("Protocol error from the server: {error}", error=error)
        if s.state is State.CREATING:
            s.stop_stream()
            s.fatal(error)  # reports the error itself
            return
        here = s.data_count
        again = self._bad_at is not None and self._bad_at[0] == here
        same = line is not None and self._bad_at == (here, line)
        self._bad_at = None
        if same and line is not None:
            where = s.skip(line)
            if where is not None:
                s.report(ProtocolError(
                    f"skipped a notification of {where} that the server sends unparsable "
                    f"({error.reason})", error.line))
                return
        s.stop_stream()
        s.report(error)
        if s.closed_meanwhile():
            return
        if again:
            s.new_session_later(f"protocol error again after recovery: {error.reason}")
            return
        self._bad_at = (here, line)
        s.recover_later(f"protocol error: {error.reason}")
