"""
What goes on the wire, against what the official Node client (lightstreamer-client-node
9.2.2) sends in the same scenario (found by review, each failing before its fix). Node
does not run here: what it sends, as recorded against the same TlcpServer, is in each
test's comment.
"""

from __future__ import annotations

from typing import Any

import pytest

from txlightstreamer import Table
from txlightstreamer.testing import _resource

from .test_faults import TIMEOUT, Run


def _record_control(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The request lines of each ``control.txt`` the server reads, one list per batch."""
    batches: list[list[str]] = []
    read = _resource._read_request

    def recording(request: Any) -> Any:
        query, lines = read(request)
        if request.uri.startswith(b"/lightstreamer/control.txt"):
            batches.append(list(lines))
        return query, lines

    monkeypatch.setattr(_resource, "_read_request", recording)
    return batches


def test_no_batch_adds_and_deletes_one_subscription(monkeypatch: pytest.MonkeyPatch) -> None:
    # Node over HTTP, subscribe(s1); subscribe(s2); unsubscribe(s2) in one go, sends only
    #   LS_reqId=1&LS_op=add&LS_subId=1&...
    # and nothing for s2. tlcp.md §2.2: a batch's requests run concurrently; §3.3: a delete
    # that overtakes its add fails (REQERR 19) and the subscription stays on the server.
    batches = _record_control(monkeypatch)
    run = Run()
    run.create()
    first = Table(run.client, item_ids=["c1"], schema=["x"])
    second = Table(run.client, item_ids=["c2"], schema=["x"])  # queued behind the first
    deleted = second.delete()
    run.net.wait(first.when_subscribed(), TIMEOUT)
    run.sleep(1)
    assert deleted.called
    for lines in batches:
        params = [dict(p.split("=", 1) for p in line.split("&")) for line in lines]
        added = {p["LS_subId"] for p in params if p.get("LS_op") == "add"}
        removed = {p["LS_subId"] for p in params if p.get("LS_op") == "delete"}
        assert not added & removed, lines
    session = run.server.sessions[run.client.session_id]
    assert list(session.subscriptions) == [first.sub_id]
    run.close()


def test_selector_and_data_adapter_may_hold_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    # Node: setSelector("sel 1"), setDataAdapter("QUOTE ADAPTER") are accepted and sent
    # percent-encoded: ...&LS_data_adapter=QUOTE%20ADAPTER&LS_selector=sel%201&...
    # tlcp.md §3.3: names the adapters read; TLCP restricts none of their characters.
    batches = _record_control(monkeypatch)
    run = Run()
    run.create()
    Table(run.client, item_ids=["i1"], schema=["f"], selector="sel 1",
          data_adapter="QUOTE ADAPTER")
    run.sleep(1)
    add = next(line for lines in batches for line in lines if "LS_op=add" in line)
    assert "LS_selector=sel%201" in add
    assert "LS_data_adapter=QUOTE%20ADAPTER" in add
    with pytest.raises(ValueError):
        Table(run.client, item_ids=["i1"], schema=["f"], selector="")
    run.close()


def _ops(lines: list[str]) -> list[dict[str, str]]:
    return [dict(p.split("=", 1) for p in line.split("&")) for line in lines]


def test_no_batch_changes_one_setting_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # Node over HTTP, setRequestedMaxFrequency 4, 5, 6 then setRequestedMaxBandwidth 10,
    # 20, 30 in one go: one reconf and one constrain per control.txt, the last value last.
    # tlcp.md §2.2: a batch's requests run concurrently, answers in any order: two changes
    # of one subscription (or two constrains) in one batch leave the server at either.
    batches = _record_control(monkeypatch)
    run = Run()
    run.create()
    table = Table(run.client, item_ids=["item1"], schema=["f"], max_frequency=3)
    run.net.wait(table.when_subscribed(), TIMEOUT)
    del batches[:]
    for frequency in (4, 5, 6):
        table.set_max_frequency(frequency)
    for kbps in (10, 20, 30):
        run.client.set_max_bandwidth(kbps)
    run.sleep(2)
    for lines in batches:
        ops = [op.get("LS_op") for op in _ops(lines)]
        assert ops.count("reconf") <= 1 and ops.count("constrain") <= 1, lines
    sent = [op for lines in batches for op in _ops(lines)]
    assert [op["LS_requested_max_frequency"] for op in sent if op["LS_op"] == "reconf"][-1] \
        == "6"
    assert [op["LS_requested_max_bandwidth"] for op in sent if op["LS_op"] == "constrain"][-1] \
        == "30"
    session = run.server.sessions[run.client.session_id]
    assert session.subscriptions[table.sub_id].max_frequency == "6"
    run.close()


@pytest.mark.parametrize("transport", ["HTTP-POLLING", "WS-POLLING"])
def test_requests_between_two_polls_go_at_once(transport: str) -> None:
    # Node, pollingInterval 3000 ms, idleTimeout 200 ms: a subscribe and a message made in
    # the pause between two polls go at once (HTTP: control.txt / msg.txt; WS: on the
    # socket kept for the next poll), e.g.
    #   [0.370] bind_session LS_polling=true&LS_polling_millis=3000&LS_idle_millis=200
    #   [0.958] control      LS_reqId=1&LS_op=add&LS_subId=1&...   (no bind in between)
    #   [1.271] msg          LS_reqId=2&LS_message=x&LS_msg_prog=1
    # tlcp.md §2.3. They waited for the next poll: up to polling_interval later.
    run = Run(forced_transport=transport, polling_interval=3.0, idle_timeout=0.2)
    run.create()
    run.until(lambda: not run.client._session.bound)  # the pause before the next poll
    paused_at = run.clock.seconds()
    session = run.server.sessions[run.client.session_id]
    table = Table(run.client, item_ids=["item1"], schema=["f"])
    sent = run.client.send_message("hello")
    run.sleep(0.5)
    assert run.clock.seconds() - paused_at < 3.0
    assert not run.client._session.bound  # still between the two polls
    assert session.messages == [(None, 1, "hello")]
    assert len(session.subscriptions) == 1
    run.until(lambda: sent.called and table.state == "active")
    assert sent.result is None or isinstance(sent.result, str)
    run.close()


def test_no_request_goes_on_a_websocket_still_opening_between_polls() -> None:
    # The next poll opens a new socket when the kept one died: a request sent on it before
    # it is open is not written (it waited 10 s for an answer, then failed or went again).
    from zope.interface import implementer

    from txlightstreamer._control import _between_polls
    from txlightstreamer._session import State
    from txlightstreamer.transport.interfaces import IRequestStream

    @implementer(IRequestStream)
    class Opening:
        pass

    class Polling:
        state = State.BINDING
        kind = ("WS", True)
        parked = False
        stream: Any = Opening()

    session = Polling()
    assert not _between_polls(session)  # type: ignore[arg-type]
    session.parked = True  # the socket kept for the next poll
    assert _between_polls(session)  # type: ignore[arg-type]
    session.parked, session.stream = False, None  # the kept socket died: over HTTP
    assert _between_polls(session)  # type: ignore[arg-type]
    session.kind = ("HTTP", True)
    session.stream = object()  # the next HTTP poll on its way: a POST of its own
    assert _between_polls(session)  # type: ignore[arg-type]
    session.kind = ("WS", False)  # streaming: a rebind waits for its CONOK
    assert not _between_polls(session)  # type: ignore[arg-type]
