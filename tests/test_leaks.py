"""
A client that runs for weeks stays bounded (found by review, each failing before its fix):
a deleted or refused table is freed, the keys' tables of two-level COMMAND tables do not
pile up across replaced sessions, and a closed ``updates()`` iterator, or one left with
``async with``, no longer hangs on its table.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import pytest_twisted

from txlightstreamer import MODE_COMMAND, MODE_DISTINCT, MODE_MERGE, MODE_RAW, Table
from txlightstreamer._subscription import _KeyTable
from txlightstreamer._update_queue import UpdateQueue
from txlightstreamer.states import TableState
from txlightstreamer.testing import DataModel

from .test_faults import TIMEOUT, Run


def _alive(cls: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is cls)


@pytest.mark.parametrize("mode", [MODE_RAW, MODE_MERGE, MODE_DISTINCT, MODE_COMMAND])
def test_a_deleted_table_is_freed(mode: str) -> None:
    run = Run()
    try:
        run.create()
        schema = ["key", "command"] if mode == MODE_COMMAND else ["v"]
        table = Table(run.client, mode=mode, item_ids=["x"], schema=schema)
        run.net.wait(table.when_subscribed(), TIMEOUT)
        run.net.wait(table.delete(), TIMEOUT)  # REQOK, then UNSUB
        gone = weakref.ref(table)
        del table
        gc.collect()
        assert gone() is None, "a deleted table is still referenced by its client"
    finally:
        run.close()


def test_create_and_delete_cycles_do_not_grow() -> None:
    run = Run()
    try:
        run.create()

        def cycles(n: int) -> int:
            for _ in range(n):
                table = Table(run.client, mode=MODE_MERGE, item_ids=["x"], schema=["v"])
                run.net.wait(table.when_subscribed(), TIMEOUT)
                run.net.wait(table.delete(), TIMEOUT)
            return _alive(Table)

        first = cycles(50)
        assert cycles(50) == first
    finally:
        run.close()


def test_a_refused_table_is_freed() -> None:
    run = Run({"keepalive_millis": 1000, "data": DataModel(modes={"r": ["RAW"]})})
    try:
        run.create()
        table = Table(run.client, mode=MODE_MERGE, item_ids=["r"], schema=["v"])
        table.on_error(lambda error: None)
        waiting = table.when_subscribed()
        waiting.addErrback(lambda f: None)
        run.until(lambda t=table: t.state == TableState.FAILED)
        assert waiting.called
        gone = weakref.ref(table)
        del table, waiting
        gc.collect()
        assert gone() is None, "a refused table is still referenced by its client"
    finally:
        run.close()


def test_keys_tables_do_not_pile_up_across_replaced_sessions() -> None:
    run = Run()
    try:
        run.create()
        for key in ("a", "b"):
            run.server.data.command("c", key, "ADD", {})
        table = Table(run.client, mode=MODE_COMMAND, item_ids=["c"],
                      schema=["key", "command"], second_level_schema=["p"], snapshot=True)
        run.net.wait(table.when_subscribed(), TIMEOUT)
        run.sleep(0.2)

        def replaced(n: int) -> int:
            for _ in range(n):
                before = run.continuity.count("replaced")
                run.server.faults.end_streams(48, "Session rebalanced")
                run.until(lambda before=before: run.continuity.count("replaced") > before)
                run.net.wait(table.when_subscribed(), TIMEOUT)
                run.sleep(0.2)
            return _alive(_KeyTable)

        first = replaced(5)
        assert replaced(5) == first
    finally:
        run.close()


def test_closed_update_iterators_are_freed() -> None:
    run = Run()
    try:
        run.subscribe()
        table = run.table
        assert table is not None

        def iterators(n: int) -> int:
            for i in range(n):
                queue = table.updates()
                run.publish(range(i, i + 3))
                run.sleep(0.05)
                queue.__anext__()
                queue.close()
            del queue
            return _alive(UpdateQueue)

        first = iterators(20)
        assert iterators(20) == first
        assert len(table._deleted_cbs._callbacks) == 0
    finally:
        run.close()


@pytest_twisted.ensureDeferred
async def test_an_iterator_left_by_break_in_async_with_is_closed() -> None:
    run = Run()
    try:
        run.subscribe()
        table = run.table
        assert table is not None
        callbacks = len(table._item_update_cbs._callbacks)
        async with table.updates() as updates:
            assert len(table._item_update_cbs._callbacks) == callbacks + 1
            run.publish(range(3))
            run.sleep(0.05)  # queued: the loop below takes the first at once
            async for update in updates:
                assert update["v"] is not None
                break
        assert len(table._item_update_cbs._callbacks) == callbacks
        assert len(table._deleted_cbs._callbacks) == 0
    finally:
        run.close()
