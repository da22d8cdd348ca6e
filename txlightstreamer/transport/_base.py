"""
What the HTTP and WebSocket streams share: the stream life cycle, and connection errors.

A stream starts once, reports its end to the sink at most once and never after `stop`,
and gives up when the connection is not answered within the connect timeout. Subclasses
say how to send, how to close, and what a timeout means for them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.error import (
    ConnectError,
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
    TimeoutError,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from txlightstreamer.errors import TransportError
from txlightstreamer.protocol import Request
from txlightstreamer.transport.interfaces import IStream, StreamSink

__all__ = ["StreamBase", "connection_error", "describe_failure"]


def describe_failure(failure: Failure) -> str:
    """A one-line description of a connection failure, unwrapping treq's wrappers."""
    exc = failure.value
    reasons = getattr(exc, "reasons", None)
    if reasons:
        inner = "; ".join(describe_failure(r) for r in reasons)
        return f"{type(exc).__name__}: {inner}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _is_tls_failure(failure: Failure) -> bool:
    """Whether a connection failed in TLS (verification, handshake): retrying won't help."""
    from OpenSSL.SSL import Error as SSLError
    from service_identity import VerificationError  # the hostname check's (twisted[tls])

    def check(f: Failure) -> bool:
        reasons = getattr(f.value, "reasons", None)
        if reasons:
            return any(check(r) for r in reasons)
        if isinstance(f.value, SSLError | VerificationError):
            return True
        text = describe_failure(f).lower()
        return "certificate verify" in text or "ssl routines" in text
    return check(failure)


def connection_error(failure: Failure, url: str) -> TransportError:
    """
    A `TransportError` for a failed connection, its reason starting with the cause
    (refused, DNS, timeout); TLS failures name the host and are not retryable.
    """
    if _is_tls_failure(failure):
        from hyperlink import URL

        host = URL.from_text(url).host
        return TransportError(
            f"TLS failure with {host} (certificate not trusted or handshake refused; "
            f"configure the client's tls_policy/trust_roots): {describe_failure(failure)}",
            url=url, retryable=False)
    return TransportError(_cause(failure) + describe_failure(failure), url=url)


def _cause(failure: Failure) -> str:
    """What kind of connection failure this is, as a prefix of its description."""
    if failure.check(ConnectionRefusedError):
        return "connection refused: "
    if failure.check(DNSLookupError):
        return "host name not found (DNS): "
    if failure.check(TimeoutError, TCPTimedOutError, DeferredTimeoutError):
        return "connection timed out: "
    return ""


@implementer(IStream)
class StreamBase:
    """
    The life cycle of one stream: ``_stopped`` once `stop` was called (the sink hears
    nothing more), ``_ended`` once the end was reported; the connect timeout between.
    """

    def __init__(self, url: str, request: Request, sink: StreamSink, clock: IReactorTime,
                 connect_timeout: float) -> None:
        self.url = url
        self._request = request
        self._sink = sink
        self._clock = clock
        #: Seconds to wait for the first answer; the session may raise it before `start`.
        self.connect_timeout = connect_timeout
        self._stopped = False
        self._ended = False
        self.request_sent = False
        self._paused = False
        self._timeout: IDelayedCall | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._request.name} {self.url}>"

    def start(self) -> None:
        """Open the connection and send the request."""
        raise NotImplementedError

    def stop(self) -> None:
        """Close the connection; no line is delivered after this call."""
        if self._stopped:
            return
        self._stopped = True
        self._cancel_timeout()
        self._close()

    def pause_reading(self) -> None:
        """Stop reading (the connection's producer is paused now or once it exists)."""
        if not self._paused:
            self._paused = True
            producer = self._producer()
            if producer is not None:
                producer.pauseProducing()

    def resume_reading(self) -> None:
        """Read again."""
        if self._paused:
            self._paused = False
            producer = self._producer()
            if producer is not None:
                producer.resumeProducing()

    # -- for subclasses ------------------------------------------------------------------

    def _producer(self) -> Any:
        """The ``IPushProducer`` delivering this stream's bytes, once there is one."""
        return None

    def _producer_ready(self) -> None:
        """The producer exists now: pause it if reading was paused before."""
        producer = self._producer()
        if self._paused and producer is not None:
            producer.pauseProducing()

    def _close(self) -> None:
        """Drop the connection (after `stop`)."""
        raise NotImplementedError

    def _abort(self) -> None:
        """Drop the connection after a failure was reported."""
        raise NotImplementedError

    def _expire(self) -> None:
        """The connect timeout passed with the stream neither stopped nor ended."""
        raise NotImplementedError

    def _arm_timeout(self) -> None:
        self._timeout = self._clock.callLater(self.connect_timeout, self._timed_out)

    def _cancel_timeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def _timed_out(self) -> None:
        self._timeout = None
        if not (self._stopped or self._ended):
            self._expire()

    def _timeout_error(self, what: str) -> TransportError:
        return TransportError(f"{what} within {self.connect_timeout:g} s", url=self.url)

    def _deliver(self, lines: list[bytes]) -> None:
        if lines and not (self._stopped or self._ended):
            # Connected and answered: the connection timeout no longer applies.
            self._cancel_timeout()
            self._sink.stream_lines(self, lines)

    def _finish(self, reason: Failure) -> None:
        """Report the end once (unless stopped): `StreamClosed` or an error."""
        if self._ended:
            return
        self._ended = True
        self._cancel_timeout()
        if not self._stopped:
            self._sink.stream_ended(self, reason)

    def _fail(self, error: Exception) -> None:
        self._finish(Failure(error))
        self._abort()

    def _connect_failed(self, failure: Failure) -> None:
        """The connection could not be made (a cancelled attempt is not a failure)."""
        self._cancel_timeout()
        if self._stopped or self._ended or failure.check(CancelledError):
            return
        if failure.check(ConnectError, DNSLookupError, TransportError):
            self.request_sent = False  # no connection: the server saw nothing
        if failure.check(TransportError):
            self._finish(failure)  # already ours (a request that could not be built)
            return
        self._finish(Failure(connection_error(failure, self.url)))
