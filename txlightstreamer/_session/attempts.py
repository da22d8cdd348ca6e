"""
Failed connection attempts in a row, told to the application once per cause.

A client retrying an unreachable server must say why, without repeating the same line on
every retry: the cause is reported when it is new or changed, with the attempt count.
"""

from __future__ import annotations

from txlightstreamer.errors import LightstreamerError, TransportError

__all__ = ["FailedAttempts", "ordinal"]


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ... ``11th``, ``21st``."""
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class FailedAttempts:
    """The count of attempts that failed since the last success, and the last cause told."""

    def __init__(self) -> None:
        self.count = 0
        self._told: str | None = None

    def failed(self, error: LightstreamerError) -> LightstreamerError | None:
        """
        One more failure: the error to report (a `TransportError` with the count, or
        the server's refusal itself), or None when its cause was already told.
        """
        self.count += 1
        cause = error.reason if isinstance(error, TransportError) else str(error)
        if cause == self._told:
            return None
        self._told = cause
        if not isinstance(error, TransportError):
            return error
        reason = cause if self.count == 1 else f"{cause} ({ordinal(self.count)} attempt)"
        return TransportError(reason, url=error.url, status=error.status, retryable=True)

    def succeeded(self) -> None:
        """A session was created or bound: the next failure is news again."""
        self.count = 0
        self._told = None
