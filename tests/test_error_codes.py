"""
Server errors, code by code (review, third round): REQERR 20 on an add loses the session,
not the table; an ERROR answering an HTTP heartbeat ends the session; CONERR 5 is
retried at once once, then backs off; a lost session is replaced after the first retry's
pause; a reply with no TLCP in it is one error; a WebSocket close's code and reason are
told.
"""

from __future__ import annotations

import pytest

from txlightstreamer import MODE_RAW, Table
from txlightstreamer.errors import ServerError
from txlightstreamer.testing import _control as server_control

from .test_faults import Run


def test_reqerr_20_on_an_add_resubscribes_the_table_in_the_new_session() -> None:
    run = Run()
    run.create()
    sid = run.client.session_id
    run.server._sessions.pop(sid)  # the server forgot it: control answers REQERR 20
    table = Table(run.client, mode=MODE_RAW, item_ids=["x"], schema=["v"])
    got: list[str] = []
    table.on_update(lambda item, row: got.append(row[0]))
    run.until(lambda: "replaced" in run.continuity)
    # tlcp.md §9.2: REQERR 20 = the session is lost (new session, subscriptions re-issued),
    # not a refusal of the table. It was failed for good with SubscriptionError(20).
    run.until(lambda: any(s.subscriptions for s in run.server.sessions.values()), limit=5)
    run.server.data.update("x", {"v": "1"})
    run.until(lambda: got == ["1"])
    run.close()


def test_error_answering_an_http_heartbeat_is_not_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(reverse_heartbeat_interval=0.2)
    monkeypatch.setattr(server_control, "heartbeat",
                        lambda query, lines: b"ERROR,67,Malformed%20heartbeat\r\n")
    run.create()
    run.sleep(1.0)
    assert run.requests("heartbeat") >= 1
    assert any(isinstance(e, ServerError) and e.code == 67 for e in run.errors)
    run.close()


def test_conerr_5_again_and_again_backs_off() -> None:
    from .test_session import make
    session, transport, recorder, clock = make(retry_delay=4.0)
    session.connect({})
    transport.last.feed("CONERR,5,Server overloaded")
    clock.advance(0)
    ttl = transport.last
    assert ttl.params["LS_ttl_millis"] == "unlimited"  # tlcp.md §7.7: at once, with a TTL
    for _ in range(20):  # the TTL create refused again, at once, twenty times
        transport.last.feed("CONERR,5,Server overloaded")
        clock.advance(0)
    creates = [s for s in transport.streams if s.request.name == "create_session"]
    # The docs (tuning.rst "Retries"): failed attempts are spaced by retry_delay.
    assert len(creates) <= 3, f"{len(creates)} creates in {clock.seconds()} s"


def test_a_session_lost_by_reqerr_20_is_replaced_after_the_first_retry_pause() -> None:
    from .test_session import connected
    session, transport, recorder, clock = connected()  # pause: 0.5 * 0.1 s
    opened = len(transport.streams)
    session.restart("REQERR 20: session not found")
    clock.advance(0.01)
    assert len(transport.streams) == opened  # tlcp.md §7.7: a random pause first
    clock.advance(0.05)
    assert transport.last.request.name == "create_session"


def test_an_html_page_answering_a_control_request_is_one_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run()
    run.create()
    page = b"".join(b"<p>line %d of the proxy's error page</p>\r\n" % i for i in range(40))
    page = b"<html><head><title>Proxy</title></head><body>\r\n" + page + b"</body></html>\r\n"
    monkeypatch.setattr(server_control, "control", lambda sessions, query, lines: page)
    table = Table(run.client, mode=MODE_RAW, item_ids=["x"], schema=["v"])
    failed = []
    table.when_subscribed().addErrback(failed.append)
    run.until(lambda: failed, limit=60)
    # One error for each of the three sends, and the table's: not one for each line.
    assert len(run.errors) <= 4, run.errors
    assert "not TLCP" in str(failed[0].value)
    run.close()


def test_a_ws_close_code_and_reason_are_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.logger import formatEvent, globalLogPublisher

    from txlightstreamer.testing import _websocket as server_ws

    protos: list = []
    init = server_ws.TlcpWebSocketProtocol.__init__

    def record(self) -> None:
        init(self)
        protos.append(self)

    monkeypatch.setattr(server_ws.TlcpWebSocketProtocol, "__init__", record)
    events: list = []
    globalLogPublisher.addObserver(events.append)
    try:
        run = Run(forced_transport="WS-STREAMING")
        run.subscribe()
        live = [p for p in protos if not p.closed]
        live[-1].sendCloseFrame(code=1011, reasonUtf8=b"adapter crashed", isReply=False)
        run.until(lambda: "recovered" in run.continuity or "replaced" in run.continuity)
        run.close()
    finally:
        globalLogPublisher.removeObserver(events.append)
    texts = [formatEvent(e) for e in events] + [str(e) for e in run.errors]
    assert any("1011" in t or "adapter crashed" in t for t in texts)
