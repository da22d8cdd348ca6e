"""`UpdateQueue`: one table's updates as a bounded async iterator."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

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
        self._waiter: Deferred[ItemUpdate] | None = None
        self._closed = False
        table.on_item_update(self._put)

    def _put(self, update: ItemUpdate) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.called:
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
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
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
            d = self._waiter = Deferred(self._cancelled)
        return cast("Awaitable[ItemUpdate]", _awaitable(d))

    def _cancelled(self, waiter: Deferred[ItemUpdate]) -> None:
        if self._waiter is waiter:
            self._waiter = None


def _awaitable(d: Deferred[Any]) -> Any:
    """The Deferred itself, or an asyncio future of it inside an asyncio task."""
    try:
        import asyncio

        loop = asyncio.get_running_loop()
        if asyncio.current_task(loop) is not None:
            return d.asFuture(loop)
    except RuntimeError:
        pass
    return d
