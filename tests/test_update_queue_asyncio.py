"""
``table.updates()`` under asyncio (review, third round): an update that arrives while a
wait is being cancelled stays queued, every consumer of one iterator is served and ends
with it, and a Twisted coroutine resumed inside an asyncio task's step can iterate.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.defer import Deferred

from txlightstreamer import MODE_RAW

from .test_subscription import make_table


def _needs_asyncio() -> None:
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        pytest.skip("needs --reactor=asyncio")


def _live_table() -> Any:
    """A RAW table of one item and one field, subscribed (its SUBOK came)."""
    table, _, _ = make_table(mode=MODE_RAW, item_ids="a", schema="x")
    table._subok(1, 1)
    return table


def test_two_twisted_consumers_of_one_iterator_both_end_when_the_table_is_deleted() -> None:
    table = _live_table()
    queue = table.updates()

    async def consume() -> list[str]:
        return [u["x"] async for u in queue]

    first = defer.ensureDeferred(consume())
    second = defer.ensureDeferred(consume())
    table._update(1, "1")
    table._update(1, "2")
    table.delete()
    assert first.called and second.called
    assert sorted(first.result + second.result) == ["1", "2"]


@pytest_twisted.ensureDeferred
async def test_update_arriving_in_the_iteration_a_wait_is_cancelled_is_not_lost() -> None:
    _needs_asyncio()
    table = _live_table()
    queue = table.updates()

    async def main() -> Any:
        waiting = queue.__anext__()          # the future asyncio.wait_for / timeout cancels
        waiting.cancel()                     # the timeout fires ...
        table._update(1, "1")                # ... and the socket read of the same loop
                                             # iteration delivers an update
        await asyncio.sleep(0)
        return await asyncio.wait_for(queue.__anext__(), 1)

    update = await Deferred.fromFuture(asyncio.ensure_future(main()))
    assert update["x"] == "1"
    assert queue.dropped == 0


@pytest_twisted.ensureDeferred
async def test_two_consumers_of_one_iterator_both_end_when_the_table_is_deleted() -> None:
    _needs_asyncio()
    table = _live_table()
    queue = table.updates()

    async def consume() -> list[str]:
        return [u["x"] async for u in queue]

    async def main() -> Any:
        first = asyncio.ensure_future(consume())
        second = asyncio.ensure_future(consume())
        await asyncio.sleep(0)
        table._update(1, "1")
        table._update(1, "2")
        await asyncio.sleep(0)
        table.delete()
        return await asyncio.wait_for(asyncio.gather(first, second), 1)

    first, second = await Deferred.fromFuture(asyncio.ensure_future(main()))
    assert sorted(first + second) == ["1", "2"]


@pytest_twisted.ensureDeferred
async def test_a_twisted_coroutine_resumed_from_an_asyncio_task_can_iterate() -> None:
    _needs_asyncio()
    from twisted.internet import defer

    table = _live_table()
    go: Deferred[None] = Deferred()

    async def twisted_consumer() -> list[str]:
        seen: list[str] = []
        await go                      # resumed by an asyncio task, below
        async for update in table.updates():
            seen.append(update["x"])
            if len(seen) == 2:
                break
        return seen

    consumer = defer.ensureDeferred(twisted_consumer())

    async def asyncio_side() -> None:
        go.callback(None)             # e.g. an asyncio producer telling Twisted code
        await asyncio.sleep(0.01)
        table._update(1, "1")
        table._update(1, "2")

    await Deferred.fromFuture(asyncio.ensure_future(asyncio_side()))
    from twisted.internet import reactor
    from twisted.internet.task import deferLater
    await deferLater(reactor, 0.05, lambda: None)
    assert consumer.called
    assert await consumer == ["1", "2"]
