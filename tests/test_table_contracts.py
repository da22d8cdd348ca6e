"""
Tables as their users see them (found by review, each failing before its fix): the table
holds the row its callbacks get, a given-up wait on ``updates()`` takes no update with it,
a deleted key's late updates stay its own, the keys' tables take their parent's frequency,
DISTINCT changed fields survive a ``CS``, ``command_rows`` takes a name, and what no
request can carry (infinity, a lone surrogate) is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred

from txlightstreamer import MODE_COMMAND, MODE_DISTINCT, MODE_MERGE, MODE_RAW, Table
from txlightstreamer.errors import LightstreamerError
from txlightstreamer.protocol import check_limit
from txlightstreamer.states import TableState
from txlightstreamer.testing import _control
from txlightstreamer.testing._session import Session

from .test_faults import TIMEOUT, Run
from .test_subscription import make_table


def test_the_table_holds_the_new_row_while_callbacks_run() -> None:
    table, _, _ = make_table(mode=MODE_MERGE, item_ids="a", schema="x")
    seen: list[Any] = []
    table.on_item_update(lambda u: seen.append(table.rows.get(1)))
    table._subok(1, 1)
    table._update(1, "1")
    table._update(1, "2")
    assert seen == [("1",), ("2",)]


def test_a_cancelled_wait_on_updates_loses_no_update() -> None:
    table, _, _ = make_table(mode=MODE_RAW, item_ids="a", schema="x")
    table._subok(1, 1)
    queue = table.updates()
    waiting = queue.__anext__()
    waiting.addErrback(lambda f: f.trap(CancelledError))
    waiting.cancel()  # addTimeout, or asyncio.wait_for timing out
    table._update(1, "1")
    got: list[Any] = []
    queue.__anext__().addCallback(got.append)
    assert [u["x"] for u in got] == ["1"]
    assert queue.dropped == 0


@pytest_twisted.ensureDeferred
async def test_asyncio_wait_for_timing_out_on_updates_loses_no_update() -> None:
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        pytest.skip("needs --reactor=asyncio")
    table, _, _ = make_table(mode=MODE_RAW, item_ids="a", schema="x")
    table._subok(1, 1)
    queue = table.updates()

    async def main() -> Any:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(queue.__anext__(), 0)
        table._update(1, "1")
        return await queue.__anext__()

    update = await Deferred.fromFuture(asyncio.ensure_future(main()))
    assert update["x"] == "1"


def test_updates_of_a_deleted_table_end_at_once() -> None:
    table, _, _ = make_table(mode=MODE_RAW, item_ids="a", schema="x")
    table._subok(1, 1)
    table.delete()
    assert table.state == TableState.DELETED
    got: list[Any] = []
    table.updates().__anext__().addBoth(got.append)
    assert got and got[0].check(StopAsyncIteration)


def test_a_deleted_keys_last_updates_do_not_reach_the_key_added_again() -> None:
    run = Run()
    run.create()
    table = Table(run.client, mode=MODE_COMMAND, item_ids=["portfolio"],
                  schema=["key", "command"], second_level_schema=["price"])
    updates: list[Any] = []
    table.on_item_update(lambda u: updates.append((u.command, u["price"])))
    run.net.wait(table.when_subscribed(), TIMEOUT)
    run.server.data.update("k1", {"price": "10"})
    run.server.data.command("portfolio", "k1", "ADD")
    run.until(lambda: ("UPDATE", "10") in updates)
    original = Session._op_delete

    def delete_after_a_last_update(session: Any, params: Any) -> None:
        # tlcp.md §3.3: updates may still come between a delete's REQOK and its UNSUB.
        session._emit_data(f"U,{params['LS_subId']},1,99")
        original(session, params)

    _control._OPERATIONS["delete"] = delete_after_a_last_update
    try:
        run.server.data.command("portfolio", "k1", "DELETE")
        run.server.data.command("portfolio", "k1", "ADD")
        run.sleep(3)
    finally:
        _control._OPERATIONS["delete"] = original
    after = updates[updates.index(("DELETE", None)):]
    assert ("UPDATE", "99") not in after, after
    run.close()


def test_second_level_subscriptions_take_the_tables_frequency() -> None:
    run = Run()
    run.create()
    table = Table(run.client, mode=MODE_COMMAND, item_ids=["portfolio"],
                  schema=["key", "command"], second_level_schema=["price"], max_frequency=2)
    run.net.wait(table.when_subscribed(), TIMEOUT)
    run.server.data.command("portfolio", "k1", "ADD")
    run.sleep(2)

    def frequencies() -> dict[Any, str]:
        return {s.items: s.max_frequency for session in run.server.sessions.values()
                if not session.closed for s in session.subscriptions.values()}

    assert frequencies()[("k1",)] == "2"
    run.net.wait(table.set_max_frequency(1), TIMEOUT)
    run.sleep(2)
    assert frequencies()[("k1",)] == "1"
    run.close()


def test_distinct_changed_fields_after_a_clear_snapshot() -> None:
    # tlcp.md §5.1 and §5.5: CS keeps the item's last values; only y changed.
    table, updates, _ = make_table(mode=MODE_DISTINCT, item_ids="a", schema="x y")
    table._subok(1, 2)
    table._update(1, "1|2")
    table._clear_snapshot(1)
    table._update(1, "|3")
    assert updates[-1].values == ("1", "3")
    assert set(updates[-1].changed_fields) == {"y"}


def test_command_rows_by_item_name() -> None:
    table, _, _ = make_table(mode=MODE_COMMAND, item_ids="portfolio", schema="key command")
    table._subok(1, 2, 1, 2)
    table._update(1, "k|ADD")
    assert dict(table.command_rows("portfolio")) == {"k": ("k", "ADD")}
    with pytest.raises(KeyError):
        table.command_rows("nothing")


def test_infinity_is_no_limit() -> None:
    for value in (math.inf, math.nan, -1, 0):
        with pytest.raises(ValueError):
            check_limit(value, "bandwidth (kbit/s)")


def test_what_no_request_can_carry_is_refused_before_anything_is_sent() -> None:
    run = Run()
    with pytest.raises(ValueError):
        run.client.create_session(max_bandwidth=math.inf)
    with pytest.raises(ValueError) as refused:
        run.client.create_session(password="s3cret\ud800")
    assert "s3cret" not in str(refused.value)  # never the password, even a broken one
    run.create()  # the client was left as it was
    for kwargs in ({"max_frequency": math.inf}, {"item_ids": ["a\ud800"]},
                   {"data_adapter": "\udfff"}, {"selector": "\ud800"}):
        with pytest.raises(ValueError):
            Table(run.client, **{"mode": MODE_MERGE, "item_ids": ["x"], "schema": ["v"],
                                 **kwargs})
    table = Table(run.client, mode=MODE_MERGE, item_ids=["x"], schema=["v"])
    run.net.wait(table.when_subscribed(), TIMEOUT)
    with pytest.raises(ValueError):
        table.set_max_frequency(math.inf)
    with pytest.raises(ValueError):
        run.client.set_max_bandwidth(math.inf)
    assert table.max_frequency is None
    run.close()


def test_a_subscription_that_cannot_be_written_fails_its_table(
        monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run()
    run.create()

    def unwritable(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("cannot write this")

    monkeypatch.setattr("txlightstreamer._registry.add_subscription", unwritable)
    errors: list[Any] = []
    table = Table(run.client, mode=MODE_MERGE, item_ids=["x"], schema=["v"], silent=True)
    table.on_error(errors.append)
    table.start()
    run.sleep(5)
    assert table.state == TableState.FAILED
    assert [type(e) for e in errors] == [LightstreamerError]
    assert "cannot write this" in str(errors[0])
    with pytest.raises(LightstreamerError):
        run.net.wait(table.when_subscribed(), TIMEOUT)
    run.close()
