"""
The web relay at the edges (found by review, each failing before its fix): a ``publish``
that raises leaves the event numbers whole, ``HEAD /events`` answers as ``GET`` would, and
an item group's snapshot names every item the server expanded it to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_twisted
import treq
from twisted.internet.task import Clock

from txlightstreamer import MODE_COMMAND, MODE_MERGE, LsClient, Table
from txlightstreamer.web import Relay

from .support import wait_until
from .web_support import RelayEnv, SseReader


@pytest_twisted.async_yield_fixture
async def env() -> AsyncIterator[RelayEnv]:
    started = await RelayEnv.start(heartbeat=0.25, max_clients=1)
    yield started
    await started.stop()


@pytest_twisted.ensureDeferred
async def test_a_publish_that_raises_leaves_resumption_intact(env: RelayEnv) -> None:
    # The number was taken before the event was framed: a gap that made every later
    # Last-Event-ID resolve to the event after it, and cut resuming browsers off in a loop.
    relay = env.relay
    relay.publish({"event": "note", "n": 1})
    with pytest.raises(TypeError):
        relay.publish({"event": "note", "n": object()})  # not JSON: the application's bug
    relay.publish({"event": "note", "n": 2})
    seen = relay.event_id(relay.last_number)  # a browser saw n=2, then reconnects
    relay.publish({"event": "note", "n": 3})
    reader = await SseReader.open(env.base + "events", headers={"Last-Event-ID": seen})
    await wait_until(lambda: reader.named("note"))
    assert [e.data["n"] for e in reader.named("note")] == [3]
    assert relay.stats()["dropped_clients"] == 0
    await reader.close()


@pytest_twisted.ensureDeferred
async def test_head_of_events_answers_as_get_would(env: RelayEnv) -> None:
    # RFC 9110 §9.3.2: a health check asking with HEAD saw 200 where GET says 503.
    reader = await SseReader.open(env.base + "events")  # max_clients=1: now full
    head = await treq.head(env.base + "events", persistent=False)
    assert head.code == 503
    await reader.close()
    await wait_until(lambda: not env.relay.full)
    head = await treq.head(env.base + "events", persistent=False)
    assert head.code == 200
    env.relay.close()
    get = await treq.get(env.base + "events", persistent=False)
    await get.content()
    head = await treq.head(env.base + "events", persistent=False)
    assert (get.code, head.code) == (503, 503)


def test_an_item_groups_snapshot_names_every_item() -> None:
    client = LsClient("http://127.0.0.1:1")
    portfolios = Table(client, mode=MODE_COMMAND, item_ids="portfolios",
                       schema="key command qty")
    quotes = Table(client, mode=MODE_MERGE, item_ids="quotes", schema="last")
    relay = Relay(client, [portfolios, quotes], clock=Clock())
    portfolios._begin(1)
    portfolios._subok(3, 3, 1, 2)  # the group stands for 3 items
    for item in (1, 2, 3):
        portfolios._update(item, f"k{item}|ADD|{item}0")
    quotes._begin(2)
    quotes._subok(2, 1)
    state = relay.snapshot()["subscriptions"]
    assert state[0]["keys"] == {
        str(item): {f"k{item}": {"key": f"k{item}", "command": "ADD", "qty": f"{item}0"}}
        for item in (1, 2, 3)}
    assert state[0]["items"] == ["1", "2", "3"]
    assert state[1]["items"] == ["1", "2"]
