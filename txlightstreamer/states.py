"""
The client's public states and statuses, as enums.

Each member is also a ``str`` equal to its value (``STATE_CONNECTED == "CONNECTED"``,
``TableState.ACTIVE == "active"``), so code comparing with those strings works, and JSON
output prints the plain value. (py-lightstreamer's ``STATE_*`` values were lower-case:
compare with the constants.)
"""

from __future__ import annotations

import enum

__all__ = [
    "ConnectionState",
    "Continuity",
    "Status",
    "TableState",
]


class _StrEnum(str, enum.Enum):
    """A ``str`` enum that prints and formats as its value (``enum.StrEnum`` needs 3.11)."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(self, format_spec)


class ConnectionState(_StrEnum):
    """The coarse state of an `LsClient` (the ``STATE_*`` constants)."""

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    STALLED = "STALLED"
    RECONNECTING = "RECONNECTING"
    DISCONNECTED = "DISCONNECTED"


class Status(_StrEnum):
    """The detailed status, named as the official SDKs name it."""

    CONNECTING = "CONNECTING"
    STREAM_SENSING = "CONNECTED:STREAM-SENSING"
    WS_STREAMING = "CONNECTED:WS-STREAMING"
    HTTP_STREAMING = "CONNECTED:HTTP-STREAMING"
    WS_POLLING = "CONNECTED:WS-POLLING"
    HTTP_POLLING = "CONNECTED:HTTP-POLLING"
    STALLED = "STALLED"
    WILL_RETRY = "DISCONNECTED:WILL-RETRY"
    TRYING_RECOVERY = "DISCONNECTED:TRYING-RECOVERY"
    DISCONNECTED = "DISCONNECTED"

    @property
    def is_connected(self) -> bool:
        """True once the server has accepted a session on some transport."""
        return self in _CONNECTED

    @classmethod
    def of_transport(cls, channel: str, polling: bool) -> Status:
        """The ``CONNECTED:*`` status of a transport (``"WS"``/``"HTTP"``, polling or not)."""
        return cls(f"CONNECTED:{channel}-{'POLLING' if polling else 'STREAMING'}")


_CONNECTED = frozenset({
    Status.WS_STREAMING, Status.HTTP_STREAMING, Status.WS_POLLING, Status.HTTP_POLLING,
})


class Continuity(_StrEnum):
    """How a (re)connection relates to the session before it."""

    NEW = "new"  # the first session of this client
    PRESERVED = "preserved"  # the same session, nothing missed (a rebind)
    RECOVERED = "recovered"  # the same session, missed data sent again by the server
    REPLACED = "replaced"  # a new session: every table's snapshot comes again


class TableState(_StrEnum):
    """The life cycle of a `Table`."""

    PENDING = "pending"  # waiting for a session (or for start() when silent)
    SUBSCRIBING = "subscribing"  # add sent, waiting for SUBOK
    ACTIVE = "active"  # SUBOK received
    DELETING = "deleting"  # delete sent, waiting for UNSUB
    DELETED = "deleted"  # gone for good
    FAILED = "failed"  # the server refused it
