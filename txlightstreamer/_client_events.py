"""
`SessionInfo`, and the events of an `LsClient`: its callback lists, the ``on_*`` methods
that register (and `remove_callback` that unregisters) the application's callbacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from txlightstreamer._callbacks import CallbackList
from txlightstreamer.errors import LightstreamerError
from txlightstreamer.protocol import ConOk
from txlightstreamer.states import ConnectionState, Continuity, Status

__all__ = ["ClientEvents", "SessionInfo"]

# What a callback returns: an ``on_*`` method returns the callback itself, typed as given.
_R = TypeVar("_R")


class SessionInfo:
    """What `LsClient.create_session` fires with: the server's view of the session."""

    def __init__(self, conok: ConOk, continuity: str) -> None:
        self.session_id = conok.session_id
        self.request_limit = conok.request_limit
        self.keepalive_ms = conok.keepalive_ms
        self.control_link = conok.control_link
        #: ``new``, ``preserved``, ``recovered`` or ``replaced`` (a `Continuity`).
        self.continuity = Continuity(continuity)

    def __repr__(self) -> str:
        return f"<SessionInfo {self.session_id} {self.continuity}>"


class ClientEvents:
    """
    The callbacks of one client (a base of `LsClient`). Every ``on_*`` method returns its
    callback, so it works as a decorator; `remove_callback` unregisters it.
    """

    def __init__(self) -> None:
        self._state_cbs = CallbackList("on_connection_state")
        self._status_cbs = CallbackList("on_status")
        self._heartbeat_cbs = CallbackList("on_heartbeat")
        self._error_cbs = CallbackList("on_error")
        self._session_cbs = CallbackList("on_session")
        self._bandwidth_cbs = CallbackList("on_bandwidth")

    def on_connection_state(
        self, callback: Callable[[ConnectionState], _R]
    ) -> Callable[[ConnectionState], _R]:
        """Call ``callback(state)`` with each new `ConnectionState` (``STATE_*``)."""
        return self._state_cbs.add(callback)

    def on_status(
        self, callback: Callable[[Status, str | None], _R]
    ) -> Callable[[Status, str | None], _R]:
        """Call ``callback(status, reason)`` on each detailed `Status` change."""
        return self._status_cbs.add(callback)

    def on_heartbeat(self, callback: Callable[[], _R]) -> Callable[[], _R]:
        """Call ``callback()`` whenever data arrives from the server (liveness; once per read)."""
        return self._heartbeat_cbs.add(callback)

    def on_error(
        self, callback: Callable[[LightstreamerError], _R]
    ) -> Callable[[LightstreamerError], _R]:
        """Call ``callback(error)`` for every error the application should know of."""
        return self._error_cbs.add(callback)

    def on_session(
        self, callback: Callable[[SessionInfo], _R]
    ) -> Callable[[SessionInfo], _R]:
        """Call ``callback(info)`` on each (re)connection; ``info.continuity`` says how."""
        return self._session_cbs.add(callback)

    def on_bandwidth(self, callback: Callable[[str], _R]) -> Callable[[str], _R]:
        """Call ``callback(bandwidth)`` on each ``CONS``: kbit/s, unlimited or unmanaged."""
        return self._bandwidth_cbs.add(callback)

    def remove_callback(self, callback: Callable[..., object]) -> None:
        """
        Unregister ``callback`` from every ``on_*`` event of this client it was
        registered for (no error if none).
        """
        for callbacks in (self._state_cbs, self._status_cbs, self._heartbeat_cbs,
                          self._error_cbs, self._session_cbs, self._bandwidth_cbs):
            callbacks.remove(callback)
