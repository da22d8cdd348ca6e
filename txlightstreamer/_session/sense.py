"""
Which way to reach the server (Stream-Sense): WebSocket or HTTP, streaming or polling.

The official clients try the kinds of transport in a fixed order and give one up when it
fails in a way that says it will not work here; `TransportChoice` keeps that order, what
was given up, and the transports themselves.
"""

from __future__ import annotations

from collections.abc import Mapping

from txlightstreamer.errors import LightstreamerError, TransportError
from txlightstreamer.states import Status
from txlightstreamer.transport.interfaces import ITransport

__all__ = ["FORCED_TRANSPORTS", "Kind", "TransportChoice", "kind_status"]

# A way to reach the server: the channel ("HTTP" or "WS") and whether it polls.
Kind = tuple[str, bool]
_PREFERENCE: tuple[Kind, ...] = (("WS", False), ("HTTP", False), ("WS", True), ("HTTP", True))
FORCED_TRANSPORTS: dict[str, tuple[Kind, ...]] = {
    "WS": (("WS", False), ("WS", True)),
    "HTTP": (("HTTP", False), ("HTTP", True)),
    "WS-STREAMING": (("WS", False),),
    "HTTP-STREAMING": (("HTTP", False),),
    "WS-POLLING": (("WS", True),),
    "HTTP-POLLING": (("HTTP", True),),
}


def kind_status(kind: Kind) -> Status:
    """The official status name of a connected transport kind."""
    return Status.of_transport(*kind)


class TransportChoice:
    """The transports of one session, the kinds allowed, and the kind in use."""

    def __init__(self, channels: Mapping[str, ITransport], forced: str | None) -> None:
        self._channels = dict(channels)
        self.candidates = tuple(
            k for k in FORCED_TRANSPORTS.get(forced or "", _PREFERENCE)
            if k[0] in self._channels
        )
        if not self.candidates:
            raise ValueError(
                f"forced_transport {forced!r} needs the WebSocket "
                "transport, which is not available (pip install 'txlightstreamer[ws]')"
            )
        self._disabled: set[Kind] = set()
        self.kind: Kind = self.candidates[0]

    @property
    def polling(self) -> bool:
        return self.kind[1]

    @property
    def transport(self) -> ITransport:
        """The transport of the kind in use."""
        return self._channels[self.kind[0]]

    @property
    def protocol_version(self) -> str:
        return str(self._channels["HTTP"].protocol_version)

    def speak_protocol(self, version: str) -> None:
        """Speak ``version`` from now on, on every channel (the fall-back for old servers, and
        back from it)."""
        for channel in self._channels.values():
            channel.protocol_version = version

    def reset(self) -> None:
        """Every allowed kind is worth trying again (a new `Session.connect`)."""
        self._disabled = set()
        self.kind = self.candidates[0]

    def give_up(self, error: LightstreamerError, timed_out: bool, sent: bool,
                creating: bool) -> str | None:
        """
        After a failed attempt, give up the current kind when another is allowed and
        the failure says this one will not work; returns why, or None if it did not.
        ``sent``: the request went out on an open connection; ``creating``: the attempt
        was a create.
        """
        kind = self.kind
        if kind[0] == "WS" and isinstance(error, TransportError) and (
                not sent or (timed_out and not creating)):
            # A WebSocket that cannot even be opened will not poll either; one that opens
            # but never answers a bind is blocked further on. One that broke after it
            # opened says nothing against WebSocket.
            disable = {k for k in self.candidates if k[0] == "WS"}
        elif kind == ("HTTP", False) and timed_out:
            # No answer at all on a streaming response: a buffering proxy, probably.
            disable = {kind}
        else:
            return None
        remaining = [k for k in self.candidates if k not in self._disabled | disable]
        if not remaining:
            return None
        self._disabled |= disable
        self.kind = remaining[0]
        old, new = kind_status(kind)[10:], kind_status(self.kind)[10:]
        return f"{old} unavailable ({error}); trying {new}"
