"""`UpdateQueue`: one table's updates as a bounded async iterator."""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from txlightstreamer._item_update import ItemUpdate

__all__ = ["UpdateQueue", "UpdateSource"]

log = Logger()


class UpdateSource(Protocol):
    """What an `UpdateQueue` needs of its table (a `Table` provides it)."""

    def on_item_update(
        self, callback: Callable[[ItemUpdate], object]
    ) -> Callable[[ItemUpdate], object]: ...

    def remove_callback(self, callback: Callable[..., object]) -> None: ...


class UpdateQueue:
    """
    A bounded queue of one table's updates, consumed with ``async for``.

    Works in Deferred-based coroutines and, under Twisted's asyncio reactor, in asyncio
    tasks. A consumer slower than the feed never makes memory grow: past ``max_queue``
    the oldest updates are dropped and counted. Made by `Table.updates`, which also
    closes it when the table is deleted. A loop left early (``break``) does not close it:
    use it as ``async with table.updates() as updates:``, or call `close`, or it goes on
    taking (and keeping up to ``max_queue``) updates until the table is deleted.
    """

    def __init__(self, table: UpdateSource, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.table = table
        self.max_queue = max_queue
        self.dropped = 0
        self._queue: deque[ItemUpdate] = deque()
        # Consumers waiting, oldest first: (Deferred, the asyncio future awaited or None).
        self._waiters: deque[tuple[Deferred[ItemUpdate], Any]] = deque()
        self._closed = False
        table.on_item_update(self._put)

    def _put(self, update: ItemUpdate) -> None:
        while self._waiters:
            waiter, future = self._waiters.popleft()
            # A future cancelled (wait_for, task.cancel) whose Deferred is not told yet.
            if waiter.called or (future is not None and future.done()):
                continue
            waiter.callback(update)
            return
        if len(self._queue) >= self.max_queue:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warn("Slow consumer of {table!r}: {n} update(s) dropped so far",
                         table=self.table, n=self.dropped)
        self._queue.append(update)

    def close(self) -> None:
        """Stop iterating (pending updates are still delivered first)."""
        if self._closed:
            return
        self._closed = True
        self.table.remove_callback(self._put)
        self.table.remove_callback(self.close)  # the table's end no longer needs to tell it
        waiters, self._waiters = self._waiters, deque()
        for waiter, _ in waiters:  # every consumer of this iterator ends
            if not waiter.called:
                waiter.errback(StopAsyncIteration())

    async def aclose(self) -> None:
        """`close`, awaitable (``contextlib.aclosing`` takes it)."""
        self.close()

    async def __aenter__(self) -> UpdateQueue:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Left by break, return or an exception: the queue stops taking the table's updates.
        self.close()

    def __aiter__(self) -> UpdateQueue:
        return self

    def __anext__(self) -> Awaitable[ItemUpdate]:
        d: Deferred[ItemUpdate]
        if self._queue:
            d = succeed(self._queue.popleft())
        elif self._closed:
            d = fail(StopAsyncIteration())
        else:
            # A wait given up (asyncio.wait_for, addTimeout) takes no update with it.
            d = Deferred(self._cancelled)
        awaitable = _awaitable(d)
        if not d.called:  # a wait, served by _put or ended by close
            self._waiters.append((d, None if awaitable is d else awaitable))
        return cast("Awaitable[ItemUpdate]", awaitable)

    def _cancelled(self, waiter: Deferred[ItemUpdate]) -> None:
        self._waiters = deque(w for w in self._waiters if w[0] is not waiter)


def _awaitable(d: Deferred[Any]) -> Any:
    """The Deferred itself, or an asyncio future of it when an asyncio task drives the
    coroutine that awaits it (a Twisted coroutine may run inside a task's step: resumed
    by asyncio code that fired a Deferred it awaited)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return d
    task = asyncio.current_task(loop)
    if task is None:
        return d
    # The coroutine awaiting __anext__, up its chain of awaits to the outermost one.
    frame: Any = sys._getframe(2)
    outermost = None
    while frame is not None and frame.f_code.co_flags & _COROUTINE_FLAGS:
        outermost, frame = frame, frame.f_back
    if outermost is not None and outermost is getattr(task.get_coro(), "cr_frame", None):
        return d.asFuture(loop)  # driven by the task
    return d  # a Twisted coroutine, run inside the task's step


# Code flags of the frames an await chain is made of.
_COROUTINE_FLAGS: Final = (inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
                           | inspect.CO_ITERABLE_COROUTINE | inspect.CO_GENERATOR)
