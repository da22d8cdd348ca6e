"""
The events of a `Table`: its callback lists, and the ``on_*`` methods that register (and
`remove_callback` that unregisters) the application's callbacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from txlightstreamer._callbacks import CallbackList
from txlightstreamer._item_update import ItemUpdate
from txlightstreamer.errors import LightstreamerError

__all__ = ["TableEvents"]

# What a callback returns: an ``on_*`` method returns the callback itself, typed as given.
_R = TypeVar("_R")


class TableEvents:
    """
    The callbacks of one table (a base of `Table`). Every ``on_*`` method returns its
    callback, so it works as a decorator; `remove_callback` unregisters it.
    """

    def __init__(self, item_callbacks_changed: Callable[[], object]) -> None:
        self._update_cbs = CallbackList("on_update")
        self._item_update_cbs = CallbackList("on_item_update", item_callbacks_changed)
        self._eos_cbs = CallbackList("on_end_of_snapshot")
        self._cs_cbs = CallbackList("on_clear_snapshot")
        self._overflow_cbs = CallbackList("on_overflow")
        self._error_cbs = CallbackList("on_error")
        self._subscribed_cbs = CallbackList("on_subscribed")
        self._unsubscribed_cbs = CallbackList("on_unsubscribed")
        self._config_cbs = CallbackList("on_config")
        self._deleted_cbs = CallbackList("deleted")
        self._second_error_cbs = CallbackList("on_second_level_error")
        self._second_overflow_cbs = CallbackList("on_second_level_overflow")

    def on_update(self, callback: Callable[[int, Any], _R]) -> Callable[[int, Any], _R]:
        """Call ``callback(item_id, row)`` on every update (1-based item position)."""
        return self._update_cbs.add(callback)

    def on_item_update(
        self, callback: Callable[[ItemUpdate], _R]
    ) -> Callable[[ItemUpdate], _R]:
        """Call ``callback(update)`` with the richer `ItemUpdate` on every update."""
        return self._item_update_cbs.add(callback)

    def on_end_of_snapshot(self, callback: Callable[[int], _R]) -> Callable[[int], _R]:
        """Call ``callback(item_id)`` when an item's snapshot is complete (``EOS``)."""
        return self._eos_cbs.add(callback)

    def on_clear_snapshot(self, callback: Callable[[int], _R]) -> Callable[[int], _R]:
        """Call ``callback(item_id)`` when the server clears an item (``CS``)."""
        return self._cs_cbs.add(callback)

    def on_overflow(self, callback: Callable[[int, int], _R]) -> Callable[[int, int], _R]:
        """Call ``callback(item_id, lost)`` when the server dropped updates (``OV``)."""
        return self._overflow_cbs.add(callback)

    def on_error(
        self, callback: Callable[[LightstreamerError], _R]
    ) -> Callable[[LightstreamerError], _R]:
        """Call ``callback(error)`` when the subscription fails."""
        return self._error_cbs.add(callback)

    def on_second_level_error(
        self, callback: Callable[[str, LightstreamerError], _R]
    ) -> Callable[[str, LightstreamerError], _R]:
        """Call ``callback(key, error)`` when a key's second-level subscription fails."""
        return self._second_error_cbs.add(callback)

    def on_second_level_overflow(
        self, callback: Callable[[str, int], _R]
    ) -> Callable[[str, int], _R]:
        """
        Call ``callback(key, lost)`` when the server dropped updates of a key's
        second-level subscription (its ``OV``; the first level's go to `on_overflow`).
        """
        return self._second_overflow_cbs.add(callback)

    def on_subscribed(self, callback: Callable[[], _R]) -> Callable[[], _R]:
        """Call ``callback()`` each time the server confirms the subscription."""
        return self._subscribed_cbs.add(callback)

    def on_unsubscribed(self, callback: Callable[[], _R]) -> Callable[[], _R]:
        """Call ``callback()`` when the subscription ends (``UNSUB`` or session end)."""
        return self._unsubscribed_cbs.add(callback)

    def on_config(
        self, callback: Callable[[str, bool], _R]
    ) -> Callable[[str, bool], _R]:
        """Call ``callback(max_frequency, filtered)`` on each ``CONF`` from the server."""
        return self._config_cbs.add(callback)

    def remove_callback(self, callback: Callable[..., object]) -> None:
        """
        Unregister ``callback`` from every ``on_*`` event of this table it was registered
        for (no error if none).
        """
        for callbacks in (
            self._update_cbs, self._item_update_cbs, self._eos_cbs, self._cs_cbs,
            self._overflow_cbs, self._error_cbs, self._second_error_cbs,
            self._second_overflow_cbs,
            self._subscribed_cbs, self._unsubscribed_cbs, self._config_cbs, self._deleted_cbs,
        ):
            callbacks.remove(callback)
