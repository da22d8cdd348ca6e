"""Tracking of the connections accepted by ``TlcpServer.listen`` (to close them on stop)."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

__all__ = ["TrackedConnection", "TrackingFactory"]


class TrackedConnection(ProtocolWrapper):
    """A connection whose :attr:`lost` fires once it is closed."""

    def __init__(self, factory: WrappingFactory[Any], wrapped: Any) -> None:
        super().__init__(factory, wrapped)
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        super().connectionLost(reason)
        self.lost.callback(None)


class TrackingFactory(WrappingFactory[TrackedConnection]):
    """Wraps a site's connections in :class:`TrackedConnection`."""

    protocol = TrackedConnection

    def connections(self) -> list[TrackedConnection]:
        return list(cast("dict[TrackedConnection, int]", self.protocols))
