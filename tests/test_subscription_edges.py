"""
Subscriptions at the edges of their life (found by review, each failing before its fix):
a delete before SUBOK or during a bad update, a new session while one table is deleting,
a frequency changed while the add is on its way, two-level keys deleted with their parent,
the first update of a new subscription, and a key's own OV.
"""
from __future__ import annotations

from typing import Any

from txlightstreamer import MODE_COMMAND, MODE_MERGE, Table

from .test_faults import TIMEOUT, Run


def _session(run: Run) -> Any:
    (s,) = [s for s in run.server.sessions.values() if not s.closed]
    return s


def test_a_frequency_changed_before_subok_is_sent_after_it() -> None:
    run = Run()
    run.create()
    table = Table(run.client, mode=MODE_MERGE, item_ids=["x"], schema=["v"], max_frequency=1)
    # The add is on its way; SUBOK has not come yet (state SUBSCRIBING).
    d = table.set_max_frequency(5)
    fired: list[Any] = []
    d.addBoth(fired.append)
    run.net.wait(table.when_subscribed(), TIMEOUT)
    run.sleep(2)
    sub = _session(run).subscriptions[table.sub_id]
    assert sub.max_frequency == "5", "the frequency change was never sent"
    run.close()


def test_a_bad_update_while_deleting_ends_the_delete() -> None:
    run = Run()
    run.create()
    table = Table(run.client, mode=MODE_MERGE, item_ids=["x"], schema=["v"])
    run.net.wait(table.when_subscribed(), TIMEOUT)
    run.server.data.update("x", {"v": "1"})
    run.sleep(0.5)
    sub_id = table.sub_id
    sess = _session(run)
    done: list[Any] = []
    table.delete().addBoth(done.append)
    # An update the server sent before it saw the delete, which the client cannot decode.
    sess._emit_data(f"U,{sub_id},1,^9")
    run.sleep(3)
    assert table.state.name == "DELETED"
    assert done == [None]
    run.close()


def test_keys_subscriptions_are_deleted_with_their_parent() -> None:
    run = Run()
    run.create()
    table = Table(run.client, mode=MODE_COMMAND, item_ids=["portfolio"], schema=["key", "command"],
                  second_level_schema=["price"])
    rows: list[Any] = []
    table.on_update(lambda item, row: rows.append(row))
    run.net.wait(table.when_subscribed(), TIMEOUT)
    run.server.data.command("portfolio", "k1", "ADD")
    run.server.data.command("portfolio", "k2", "ADD")
    run.sleep(2)
    sess = _session(run)
    run.net.wait(table.delete(), TIMEOUT)
    run.sleep(3)
    left = {i: s.items for i, s in sess.subscriptions.items()}
    assert left == {}, "second-level subscriptions left active on the server"
    run.close()


def test_the_first_update_of_a_new_session_changes_every_field() -> None:
    run = Run()
    run.create()
    table = Table(run.client, mode=MODE_MERGE, item_ids=["x"], schema=["a", "b"], snapshot=True)
    ups: list[Any] = []
    table.on_item_update(ups.append)
    run.server.data.update("x", {"a": "1", "b": "2"})
    run.net.wait(table.when_subscribed(), TIMEOUT)
    run.until(lambda: len(ups) >= 1)
    run.server.data.update("x", {"a": "1", "b": "3"})
    run.until(lambda: len(ups) >= 2)
    old = _session(run).session_id
    run.server.faults.end_streams(48, "max duration")  # retryable: a new session
    run.until(lambda: len(ups) >= 3 and run.client.session_id not in (None, old))
    assert set(ups[2].changed_fields) == {"a", "b"}, "first update of the new subscription"
    run.close()


def test_a_table_after_a_deleting_one_is_subscribed_in_a_new_session() -> None:
    run = Run({"keepalive_millis": 300}, stalled_timeout=0.2, reconnect_timeout=0.3)
    run.create()
    a = Table(run.client, mode=MODE_MERGE, item_ids=["a"], schema=["v"])
    run.net.wait(a.when_subscribed(), TIMEOUT)
    run.server.faults.stall()          # the UNSUB of a's delete will not get through
    a.delete()
    run.sleep(0.05)                    # the delete's REQOK came (HTTP control)
    run.server.faults.refuse_recovery()  # the stall ends in a new session
    run.until(lambda: run.client.status == "DISCONNECTED:WILL-RETRY")
    b = Table(run.client, mode=MODE_MERGE, item_ids=["b"], schema=["v"])  # made meanwhile
    run.server.faults.reset()
    run.until(lambda: run.continuity[-1:] == ["replaced"])
    run.sleep(5)
    subs = {i: s.items for sess in run.server.sessions.values() if not sess.closed
            for i, s in sess.subscriptions.items()}
    assert b.state.name == "ACTIVE"
    assert subs == {b.sub_id: ("b",)}
    run.close()


def test_a_delete_before_subok_stays_a_delete() -> None:
    run = Run()
    run.create()
    t = Table(run.client, mode=MODE_MERGE, item_ids=["x"], schema=["v"])
    events: list[str] = []
    t.on_subscribed(lambda: events.append("subscribed"))
    t.on_unsubscribed(lambda: events.append("unsubscribed"))
    done: list[Any] = []
    t.delete().addBoth(done.append)
    run.sleep(3)
    run.server.faults.end_streams(48, "max duration")
    run.until(lambda: run.continuity[-1:] == ["replaced"])
    run.sleep(3)
    subs = {i: s.items for sess in run.server.sessions.values() if not sess.closed
            for i, s in sess.subscriptions.items()}
    assert done == [None] and t.state.name == "DELETED"
    assert subs == {}
    run.close()


def test_a_keys_overflow_comes_with_its_key() -> None:
    run = Run()
    run.create()
    table = Table(run.client, mode=MODE_COMMAND, item_ids=["portfolio"], schema=["key", "command"],
                  second_level_schema=["price"])
    ov: list[Any] = []
    table.on_overflow(lambda *args: ov.append(args))
    keyed: list[Any] = []
    table.on_second_level_overflow(lambda *args: keyed.append(args))
    run.net.wait(table.when_subscribed(), TIMEOUT)
    run.server.data.command("portfolio", "k1", "ADD")
    run.sleep(2)
    run.server.data.overflow("portfolio", 2)   # first-level OV (lost ADD/DELETE)
    run.server.data.overflow("k1", 5)          # second-level OV of key k1
    run.sleep(2)
    assert ov == [(1, 2)]  # the first level's only
    assert keyed == [("k1", 5)]
    run.close()


def test_a_subcmd_whose_key_is_past_the_fields_fails_the_table() -> None:
    # It raised IndexError at the first update (no LightstreamerError: the stream broke).
    run = Run()
    run.create()
    table = Table(run.client, mode=MODE_COMMAND, item_ids=["portfolio"],
                  schema=["key", "command"])
    errors: list[Any] = []
    table.on_error(errors.append)
    run.sleep(0.5)
    table._link.subscribed(1, 2, key_pos=3, command_pos=2)
    assert table.state.name == "FAILED"
    assert "key at 3 and command at 2 of 2 fields" in str(errors[0])
    run.close()


def test_a_callback_that_removes_itself_makes_no_other_miss_the_event() -> None:
    # The next callback slid into its place in the list and missed that event.
    run = Run()
    run.subscribe()
    table = run.table
    rows: list[str] = []

    def first_row_only(item: int, row: Any) -> None:
        rows.append("one-shot")
        table.remove_callback(first_row_only)

    table.on_update(first_row_only)
    table.on_update(lambda item, row: rows.append(f"app {row[0]}"))
    run.publish(range(100, 102))
    run.until(lambda: 101 in run.got)
    assert rows == ["one-shot", "app 100", "app 101"]
    seen: list[str] = []

    def first_error_only(error: Any) -> None:
        seen.append("one-shot")
        run.client.remove_callback(first_error_only)

    run.client.on_error(first_error_only)
    run.client.on_error(lambda error: seen.append("app"))
    run.client._error(ValueError("x"))  # type: ignore[arg-type]
    assert seen == ["one-shot", "app"]
    run.close()


def test_a_frequency_asked_as_the_session_is_replaced_is_kept() -> None:
    # Only a refusal undoes it: the new session subscribes with the frequency asked.
    run = Run()
    run.create()
    table = Table(run.client, mode=MODE_MERGE, item_ids=["x"], schema=["v"], max_frequency=1)
    run.net.wait(table.when_subscribed(), TIMEOUT)
    table.set_max_frequency(5).addErrback(lambda _: None)
    run.server.faults.end_streams(48, "max duration")
    run.until(lambda: run.continuity[-1:] == ["replaced"] and table.state == "active")
    assert table.max_frequency == 5
    assert _session(run).subscriptions[table.sub_id].max_frequency == "5"
    run.close()


def test_two_refused_frequencies_leave_the_one_in_force() -> None:
    run = Run()
    run.create()
    table = Table(run.client, mode=MODE_MERGE, item_ids=["x"], schema=["v"], max_frequency=1)
    run.net.wait(table.when_subscribed(), TIMEOUT)
    _session(run).subscriptions[table.sub_id].unfiltered = True  # the server refuses (13)
    failures: list[Any] = []
    table.set_max_frequency(5).addErrback(failures.append)
    table.set_max_frequency(7).addErrback(failures.append)
    run.until(lambda: len(failures) == 2)
    assert [f.value.code for f in failures] == [13, 13]
    # The next subscription (a new session) asked for a refused one, refused again.
    assert table.max_frequency == 1
    run.close()
