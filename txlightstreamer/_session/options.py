"""
The tunables of a session, and its retry policy.

A retry policy is what Twisted's ``ClientService`` takes as ``retryPolicy`` (and
``backoffPolicy()`` returns): ``attempt -> delay`` in seconds. `tlcp_retry_policy` is the
rule of the official Lightstreamer clients, used when none is given.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from txlightstreamer._session.sense import FORCED_TRANSPORTS, Kind
from txlightstreamer.protocol import Request

__all__ = ["RetryPolicy", "SessionOptions", "tlcp_retry_policy"]

#: ``attempt -> delay`` in seconds, shaped like the result of Twisted's ``backoffPolicy()``.
RetryPolicy = Callable[[int], float]


def tlcp_retry_policy(
    retry_delay: float = 4.0,
    first_retry_max_delay: float = 0.1,
    max_retry_delay: float = 60.0,
    jitter: Callable[[], float] = random.random,
) -> RetryPolicy:
    """
    The official clients' retry rule (tlcp.md §10) as a policy. Attempt 0 is the first
    retry after a working session broke: a random delay up to ``first_retry_max_delay``.
    Attempt n >= 1 follows n failed attempts in a row: ``retry_delay`` for the first ten,
    then doubling up to ``max_retry_delay``. The session counts the delay of attempts
    n >= 1 from the start of the failed attempt.
    """

    def policy(attempt: int) -> float:
        if attempt <= 0:
            return jitter() * first_retry_max_delay
        if attempt <= 10:
            return retry_delay
        return min(max_retry_delay, retry_delay * 2.0 ** min(100, attempt - 10))

    return policy


def _check_count(name: str, value: object, least: int) -> None:
    """``value`` is an int of at least ``least``: a count the requests carry as it is."""
    if type(value) is not int or value < least:
        raise ValueError(f"{name} must be an int >= {least}, not {value!r}")


def _check_seconds(name: str, value: object) -> None:
    """``value`` is a finite number of seconds >= 0: some go to the server in milliseconds
    (tlcp.md §3.1, §3.2), all are timers (an infinite one would never fire)."""
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value < 0):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")


class SessionOptions:
    """Tunables of a session; the defaults are the official client's (tlcp.md §10)."""

    def __init__(
        self,
        *,
        content_length: int = 50_000_000,
        keepalive_millis: int | None = None,
        retry_delay: float = 4.0,
        first_retry_max_delay: float = 0.1,
        max_retry_delay: float = 60.0,
        stalled_timeout: float = 2.0,
        reconnect_timeout: float = 3.0,
        session_recovery_timeout: float = 15.0,
        supported_diffs: str | None = None,
        reverse_heartbeat_interval: float = 0.0,
        protocol_fallback: bool = True,
        forced_transport: str | None = None,
        polling_interval: float = 0.0,
        idle_timeout: float = 19.0,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        if forced_transport is not None and forced_transport not in FORCED_TRANSPORTS:
            raise ValueError(
                f"forced_transport must be one of {', '.join(FORCED_TRANSPORTS)} or None, "
                f"not {forced_transport!r}"
            )
        _check_count("content_length", content_length, 1)
        if keepalive_millis is not None:
            _check_count("keepalive_millis", keepalive_millis, 0)
        for name, seconds in (
            ("retry_delay", retry_delay), ("first_retry_max_delay", first_retry_max_delay),
            ("max_retry_delay", max_retry_delay), ("stalled_timeout", stalled_timeout),
            ("reconnect_timeout", reconnect_timeout),
            ("session_recovery_timeout", session_recovery_timeout),
            ("reverse_heartbeat_interval", reverse_heartbeat_interval),
            ("polling_interval", polling_interval), ("idle_timeout", idle_timeout),
        ):
            _check_seconds(name, seconds)
        self.content_length = content_length
        self.keepalive_millis = keepalive_millis
        self.retry_delay = retry_delay
        self.first_retry_max_delay = first_retry_max_delay
        self.max_retry_delay = max_retry_delay
        self.stalled_timeout = stalled_timeout
        self.reconnect_timeout = reconnect_timeout
        self.session_recovery_timeout = session_recovery_timeout
        self.supported_diffs = supported_diffs
        self.reverse_heartbeat_interval = reverse_heartbeat_interval
        self.protocol_fallback = protocol_fallback
        self.forced_transport = forced_transport
        self.polling_interval = polling_interval
        self.idle_timeout = idle_timeout
        #: ``attempt -> delay``; None is `tlcp_retry_policy` built from the delays above.
        self.retry_policy = retry_policy

    @property
    def inactivity_millis(self) -> int | None:
        """``LS_inactivity_millis`` promised to the server, when reverse heartbeats are on."""
        if self.reverse_heartbeat_interval > 0:
            return int(self.reverse_heartbeat_interval * 1000)
        return None

    def policy(self, jitter: Callable[[], float] = random.random) -> RetryPolicy:
        """The retry policy: the one given, or the TLCP rule with ``jitter``."""
        if self.retry_policy is not None:
            return self.retry_policy
        return tlcp_retry_policy(self.retry_delay, self.first_retry_max_delay,
                                 self.max_retry_delay, jitter)

    def head_timeout(self, request: Request) -> float:
        """How long ``request``'s head (up to ``CONOK``) may take: ``retry_delay``, plus the
        idle time a poll lets the server hold it (tlcp.md §7.3, §10: the polling idle guard;
        behind a buffering proxy even ``CONOK`` comes only when the poll ends)."""
        idle = request.get("LS_idle_millis")
        return self.retry_delay + (int(idle) / 1000 if idle and idle.isdigit() else 0.0)

    def connection_params(
        self, kind: Kind, granted_keepalive_ms: int | None, first: bool,
        poll_pace: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """
        The create/bind parameters of a kind of transport. ``poll_pace`` holds what the
        session learned for its polls: the last ``LOOP`` delay (``polling_millis``) and
        the idle time the last polling ``CONOK`` granted (``idle_millis``), which the
        official clients ask for in the next poll (tlcp.md §3.2, §7.3).
        """
        channel, polling = kind
        if polling and first:  # a synchronous polling create, answered at once (tlcp.md §3.1)
            return {"polling": True, "polling_millis": 0, "idle_millis": 0}
        if polling:
            return {
                "polling": True,
                "polling_millis": int(self.polling_interval * 1000),
                "idle_millis": int(self.idle_timeout * 1000),
                **(poll_pace or {}),
            }
        keepalive = self.keepalive_millis
        if keepalive and not first and granted_keepalive_ms:
            keepalive = granted_keepalive_ms  # the value the server granted
        return {
            "content_length": self.content_length if channel == "HTTP" else None,
            "keepalive_millis": keepalive,
            "inactivity_millis": self.inactivity_millis,
            "send_sync": False,
        }
