"""Helpers shared by the tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from twisted.internet import reactor, task


async def wait_until(predicate: Callable[[], object], timeout: float = 15.0,
                     what: str = "condition") -> None:
    """
    Poll ``predicate`` on the reactor (every 10 ms) until it holds; fail the test after
    ``timeout`` seconds. A bound on waiting, never a timing assertion.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await task.deferLater(reactor, 0.01, lambda: None)
