"""`ClientReading`: a client's reading, paused while an output falls behind (back-pressure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

__all__ = ["ClientReading"]


@implementer(IPushProducer)
class ClientReading:
    """
    The reading of ``client()`` (the current client: the service may replace it) as a
    Twisted streaming producer, paused and resumed through the client's
    ``pause_reading()`` and ``resume_reading()`` where it has them.
    """

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client

    def pause(self) -> bool:
        """Pause the client's reading; False if it cannot be paused."""
        method = getattr(self._client(), "pause_reading", None)
        if not callable(method):
            return False
        method()
        return True

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted API)
        self.pause()

    def resumeProducing(self) -> None:  # noqa: N802 (Twisted API)
        method = getattr(self._client(), "resume_reading", None)
        if callable(method):
            method()

    def stopProducing(self) -> None:  # noqa: N802 (Twisted API)
        self.resumeProducing()  # the output is gone: nothing to wait for
