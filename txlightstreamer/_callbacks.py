"""A list of user callbacks whose exceptions are logged, never propagated into the stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.logger import Logger

_F = TypeVar("_F", bound=Callable[..., Any])

log = Logger()


class CallbackList:
    """
    Callbacks registered for one event.

    A failing callback must not break the stream or stop the other callbacks, so each
    exception is logged (with the event name) and swallowed.
    """

    __slots__ = ("_name", "_callbacks")

    def __init__(self, name: str) -> None:
        self._name = name
        self._callbacks: list[Callable[..., Any]] = []

    def add(self, callback: _F) -> _F:
        """Register ``callback``; returns it so this works as a decorator."""
        if not callable(callback):
            raise TypeError(f"{self._name} callback must be callable, not {callback!r}")
        self._callbacks.append(callback)
        return callback

    def remove(self, callback: Callable[..., Any]) -> None:
        """Unregister ``callback`` (no error if it was not registered)."""
        try:
            self._callbacks.remove(callback)
        except ValueError:
            pass

    def __bool__(self) -> bool:
        return bool(self._callbacks)

    def __call__(self, *args: Any) -> None:
        for callback in self._callbacks:
            try:
                callback(*args)
            except Exception:
                log.failure("Uncaught exception in {event} callback {callback!r}",
                            event=self._name, callback=callback)
