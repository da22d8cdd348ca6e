"""
Every error the library raises or reports.

The protocol-level errors live in the sans-IO package and are re-exported here, so
applications only ever need ``from txlightstreamer.errors import ...``.
"""

from __future__ import annotations

from typing import TypeVar

from txlightstreamer.protocol.errors import (
    CONTROL_CODES,
    SESSION_CODES,
    LightstreamerError,
    ProtocolError,
    ServerError,
    ValueDecodeError,
)

__all__ = [
    "CONTROL_CODES",
    "SESSION_CODES",
    "ClientStateError",
    "LightstreamerError",
    "MessageDenied",
    "MessageDiscarded",
    "MessageError",
    "ProtocolError",
    "RequestError",
    "RequestTimeoutError",
    "ServerError",
    "SessionLostError",
    "SubscriptionError",
    "TransportError",
    "ValueDecodeError",
]


_E = TypeVar("_E", bound=BaseException)


def without_frames(error: _E) -> _E:
    """
    ``error`` with no traceback along its cause/context chain, before it is reported:
    an application or log observer that keeps it must not keep the dead stream, its
    socket and the read's payload alive through the frames.
    """
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return error


class TransportError(LightstreamerError):
    """
    A connection to the server failed or broke.

    ``retryable`` tells whether trying again may help (refused, reset, HTTP 5xx) or not
    (HTTP 4xx, a reply that is not TLCP, a TLS verification failure).
    """

    def __init__(
        self, reason: str, *, url: str = "", status: int | None = None, retryable: bool = True
    ) -> None:
        self.reason = reason
        self.url = url
        self.status = status
        self.retryable = retryable
        where = f" ({url})" if url else ""
        super().__init__(f"{reason}{where}")


class RequestTimeoutError(TransportError):
    """
    A control request got no answer in time (an idempotent one after being sent again):
    the server, or something between, lost it.
    """


class RequestError(ServerError):
    """The server refused one control request (``REQERR``) or a whole batch (``ERROR``)."""


class SubscriptionError(RequestError):
    """The server refused a subscription, or its ``SUBOK`` did not match the table."""


class SessionLostError(LightstreamerError):
    """The session ended before the operation could complete."""


class ClientStateError(LightstreamerError, RuntimeError):
    """The API was used in a way the client's current state does not allow."""


class MessageError(ServerError):
    """The server could not process a message (``MSGFAIL`` or ``REQERR``)."""


class MessageDenied(MessageError):
    """The Metadata Adapter refused the message (code <= 0)."""


class MessageDiscarded(MessageError):
    """The message was skipped by timeout while waiting for its predecessors (38/39)."""
