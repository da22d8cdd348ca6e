"""A list of user callbacks whose exceptions are logged, never propagated into the stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.logger import Logger
from twisted.python.failure import Failure

_F = TypeVar("_F", bound=Callable[..., Any])

log = Logger()


class CallbackList:
    """
    Callbacks registered for one event.

    A failing callback must not break the stream or stop the other callbacks, so each
    exception is logged (with the event name) and swallowed.
    """

    __slots__ = ("_name", "_callbacks", "_changed", "_stopped")

    def __init__(self, name: str, changed: Callable[[], object] | None = None) -> None:
        self._name = name
        # The list object is never replaced: the hot path holds a reference to it.
        self._callbacks: list[Callable[..., Any]] = []
        self._changed = changed  # told when a callback is added or removed
        self._stopped = False

    def add(self, callback: _F) -> _F:
        """Register ``callback``; returns it so this works as a decorator."""
        if not callable(callback):
            raise TypeError(f"{self._name} callback must be callable, not {callback!r}")
        self._callbacks.append(callback)
        if self._changed is not None:
            self._changed()
        return callback

    def remove(self, callback: Callable[..., Any]) -> None:
        """Unregister ``callback`` (no error if it was not registered)."""
        try:
            self._callbacks.remove(callback)
        except ValueError:
            return
        if self._changed is not None:
            self._changed()

    def stop(self) -> None:
        """Call no callback any more, not even the rest of an event under way."""
        self._stopped = True

    def __bool__(self) -> bool:
        return bool(self._callbacks)

    def __call__(self, *args: Any) -> None:
        # The callbacks as the event began: one that removes itself skips no other.
        for callback in tuple(self._callbacks):
            if self._stopped:
                break
            try:
                callback(*args)
            except Exception as exc:
                self.failed(callback, exc)

    def failed(self, callback: Callable[..., Any], exc: BaseException) -> None:
        """Log the exception ``callback`` raised (also used by the compiled hot path)."""
        log.failure("Uncaught exception in {event} callback {callback!r}",
                    failure=Failure(exc), event=self._name, callback=callback)
