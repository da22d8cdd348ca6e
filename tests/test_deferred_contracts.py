"""
Every Deferred the client returns fires once, and cancelling one does what its caller
meant (found by review, each failing before its fix): a cancelled ``create_session``
stops the attempts, ``when_subscribed`` fails for a table that never will be subscribed,
a cancelled queued message is never sent, and a message waiting for the first session
fails when ``create_session`` gives up.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.defer import TimeoutError as DeferredTimeout

from txlightstreamer import MODE_COMMAND, MODE_RAW, Table
from txlightstreamer.errors import (
    ClientStateError,
    LightstreamerError,
    ServerError,
    SessionLostError,
)

from .memory import result
from .test_faults import TIMEOUT, Run


def test_cancelling_create_session_stops_trying_and_allows_a_new_call() -> None:
    run = Run()
    run.net.stop()  # nothing listens: the client retries
    d = run.client.create_session().addTimeout(2, run.clock)  # the common idiom
    run.sleep(3)
    with pytest.raises(DeferredTimeout):
        result(d)
    run.sleep(30)
    assert run.client.status == "DISCONNECTED"  # not DISCONNECTED:WILL-RETRY for ever
    statuses = len(run.statuses)
    run.sleep(30)
    assert len(run.statuses) == statuses  # no attempt since
    run.net.serve_tlcp(run.server)
    run.net.wait(run.client.create_session(), TIMEOUT)  # not "already called"
    assert run.client.status.startswith("CONNECTED")
    run.close()


def test_when_subscribed_fails_for_a_table_deleted_before_its_subscription() -> None:
    run = Run()
    table = Table(run.client, mode=MODE_RAW, item_ids=["x"], schema=["v"])
    waiting = table.when_subscribed()
    run.net.wait(table.delete(), TIMEOUT)
    with pytest.raises(ClientStateError):
        result(waiting)
    with pytest.raises(ClientStateError):
        result(table.when_subscribed())  # and so does a later call
    run.close()


def test_when_subscribed_fails_when_the_client_is_destroyed() -> None:
    run = Run()
    run.create()
    table = Table(run.client, mode=MODE_RAW, item_ids=["x"], schema=["v"])
    waiting = table.when_subscribed()  # the add is on its way
    run.close()
    with pytest.raises(ClientStateError):
        result(waiting)


def test_when_subscribed_on_a_refused_table_fails_with_the_servers_error() -> None:
    run = Run()
    run.create()
    table = Table(run.client, mode=MODE_COMMAND, item_ids=["portfolio"], schema=["v"])
    table.on_error(lambda e: None)
    first = table.when_subscribed()
    run.sleep(2)  # REQERR 15: no key field
    assert table.state == "failed"
    with pytest.raises(ServerError) as first_error:
        result(first)
    with pytest.raises(ServerError) as later_error:
        result(table.when_subscribed())
    assert later_error.value is first_error.value
    run.close()


def test_a_message_cancelled_before_it_is_sent_is_not_sent() -> None:
    run = Run()
    created = run.client.create_session()
    message = run.client.send_message("buy 1000")  # CONNECTING: queued
    message.cancel()
    with pytest.raises(CancelledError):
        result(message)
    run.net.wait(created, TIMEOUT)
    run.sleep(1)
    assert run.requests("msg") == 0
    run.close()


def test_a_message_cancelled_after_it_was_sent_only_stops_waiting() -> None:
    run = Run()
    run.create()
    message = run.client.send_message("buy 1000", sequence="orders")
    message.cancel()
    with pytest.raises(CancelledError):
        result(message)
    run.sleep(1)
    assert run.requests("msg") == 1  # written before the cancel: the server has it
    assert not run.client._messages._waiting  # its outcome is nobody's
    run.close()


def test_a_message_waiting_for_the_first_session_fails_when_create_session_gives_up() -> None:
    run = Run()
    run.net.stop()
    created = run.client.create_session(timeout=3)
    message = run.client.send_message("hello")  # CONNECTING: queued, not refused
    kept = run.client.send_message("kept", enqueue_while_disconnected=True)
    run.sleep(4)
    with pytest.raises(SessionLostError):
        result(message)
    assert not kept.called  # asked to wait for a session: it does
    assert run.client.status == "DISCONNECTED"
    run.net.serve_tlcp(run.server)
    run.net.wait(run.client.create_session(), TIMEOUT)
    run.sleep(1)
    assert run.requests("msg") == 1  # the kept one, not the failed one
    assert kept.called
    with pytest.raises(LightstreamerError):  # the first create_session's own failure
        result(created)
    run.close()
