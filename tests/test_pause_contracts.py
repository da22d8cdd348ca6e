"""
Back-pressure at the edges (found by review, each failing before its fix): a callback's
``pause_reading()`` holds the rest of the read it came in, a paused WebSocket recovery is
not taken for a dead WebSocket, and once ``delete()`` fired inside an update event no
other callback gets that update. Each runs on both hot paths (compiled and pure) in CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from txlightstreamer import ItemUpdate

from .test_faults import Run


@pytest.fixture
def run() -> Iterator[Run]:
    started = Run()
    yield started
    started.close()


def test_pause_reading_in_a_callback_holds_the_rest_of_the_read(run: Run) -> None:
    # LsClient.pause_reading: "nothing is delivered until resume_reading"; the rest of
    # the read (thousands of updates in a 128 KiB read) was delivered all the same.
    run.subscribe()
    assert run.table is not None
    after_pause: list[str] = []

    def back_pressure(item: int, row: Any) -> None:
        if run.client._session.reading_paused:
            after_pause.append(row[0])
        elif row[0] in ("3", "6"):
            run.client.pause_reading()

    run.table.on_update(back_pressure)
    run.publish(range(10))  # the ten updates reach the client in one read
    run.net.flush()
    assert after_pause == []
    assert run.got == [0, 1, 2, 3]
    run.client.resume_reading()  # delivers what was held, up to the next pause
    assert run.got == list(range(7))
    assert run.client._session.reading_paused
    run.client.resume_reading()
    run.until(lambda: len(run.got) == 10)
    assert run.got == list(range(10))
    assert after_pause == []


def test_a_general_path_callback_pausing_holds_the_rest_too(run: Run) -> None:
    run.subscribe()
    assert run.table is not None
    seen: list[str] = []

    def pausing(update: ItemUpdate) -> None:  # on_item_update: the general path
        seen.append(update.values[0])
        if update.values[0] == "2":
            run.client.pause_reading()

    run.table.on_item_update(pausing)
    run.publish(range(6))
    run.net.flush()
    assert seen == ["0", "1", "2"]
    run.client.resume_reading()
    run.until(lambda: len(seen) == 6)
    assert seen == [str(n) for n in range(6)]


def test_pause_reading_is_not_taken_for_a_dead_websocket() -> None:
    # The paused socket held the recovery's WSOK back: "WebSocket not answering", and a
    # new attempt every half second while paused.
    r = Run(forced_transport="WS-STREAMING")
    r.subscribe()
    r.client.pause_reading()
    r.server.drop_streams()  # the session is recovered while the client is paused
    r.sleep(3)
    r.client.resume_reading()
    r.publish(range(3))
    r.until(lambda: len(r.got) == 3)
    assert r.errors == []
    r.close()


def test_no_callback_gets_the_update_once_a_delete_fired(run: Run) -> None:
    run.subscribe()
    table = run.table
    assert table is not None
    seen: list[Any] = []

    def first(item: int, row: Any) -> None:
        if row[0] == "1":
            run.client.pause_reading()  # not bound: delete() fires at once
            table.delete().addCallback(lambda _: seen.append("deleted"))

    table.on_update(first)
    table.on_update(lambda item, row: seen.append(row[0]))
    table.on_item_update(lambda update: seen.append(("item", update.values[0])))
    run.publish(range(3))
    run.net.flush()
    run.client.resume_reading()
    run.net.flush()
    assert seen == ["0", ("item", "0"), "deleted"]
