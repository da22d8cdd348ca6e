"""
The session state machine on a fake transport and a `Clock`: no network, no real time.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from txlightstreamer import _session
from txlightstreamer._session import Session, SessionOptions, State
from txlightstreamer.errors import (
    LightstreamerError,
    ProtocolError,
    ServerError,
    TransportError,
)
from txlightstreamer.protocol import ConOk, Notification, Request, Update
from txlightstreamer.transport.interfaces import StreamClosed


class FakeStream:
    def __init__(self, request: Request, sink: Any) -> None:
        self.request = request
        self.sink = sink
        self.stopped = False
        self.request_sent = True
        self.url = "http://127.0.0.1:1/lightstreamer/x.txt"

    @property
    def params(self) -> dict[str, str]:
        return dict(self.request.params)

    def feed(self, *lines: str) -> None:
        """The lines arrive in one read."""
        self.sink.stream_lines(self, [line.encode() for line in lines])

    def end(self, error: Exception | None = None) -> None:
        self.sink.stream_ended(self, Failure(error or StreamClosed()))

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True

    paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class FakeTransport:
    protocol_version = "2.5.0"

    def __init__(self) -> None:
        self.streams: list[FakeStream] = []

    def open_stream(self, base_url: str, request: Request, sink: Any) -> FakeStream:
        stream = FakeStream(request, sink)
        self.streams.append(stream)
        return stream

    @property
    def last(self) -> FakeStream:
        return self.streams[-1]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.statuses: list[str] = []
        self.data: list[Notification] = []

    def session_started(self, conok: ConOk, continuity: str) -> None:
        self.events.append(("started", continuity))

    def session_rebound(self, conok: ConOk, continuity: str) -> None:
        self.events.append(("rebound", continuity))

    def session_interrupted(self, will_recover: bool) -> None:
        self.events.append(("interrupted", will_recover))

    def session_closed(self, error: LightstreamerError | None) -> None:
        self.events.append(("closed", error))

    def status_changed(self, status: str, reason: str | None) -> None:
        self.statuses.append(status)

    def notification(self, notification: Notification) -> None:
        self.data.append(notification)

    def line_received(self) -> None:
        pass

    def error(self, error: LightstreamerError) -> None:
        self.events.append(("error", error))


def make(**options: Any) -> tuple[Session, FakeTransport, Recorder, Clock]:
    clock = Clock()
    transport = FakeTransport()
    recorder = Recorder()
    options.setdefault("first_retry_max_delay", 0.1)
    session = Session(
        transport=transport,  # type: ignore[arg-type]
        clock=clock,
        listener=recorder,
        base_url="http://127.0.0.1:1",
        options=SessionOptions(**options),
        randomizer=lambda: 0.5,
    )
    return session, transport, recorder, clock


def connected(**options: Any) -> tuple[Session, FakeTransport, Recorder, Clock]:
    session, transport, recorder, clock = make(**options)
    session.connect({"adapter_set": "DEMO", "user": "u", "password": "secret"})
    transport.last.feed("CONOK,S1,50000,5000,*")
    return session, transport, recorder, clock


def test_create_sends_streaming_create_and_reports_new_session() -> None:
    session, transport, recorder, _ = make()
    session.connect({"adapter_set": "DEMO", "user": "u", "password": "secret"})
    params = transport.last.params
    assert transport.last.request.name == "create_session"
    assert params["LS_adapter_set"] == "DEMO"
    assert params["LS_content_length"] == "50000000"
    assert params["LS_send_sync"] == "false"
    assert "LS_polling" not in params
    assert session.status == _session.STATUS_CONNECTING
    transport.last.feed("CONOK,S1,50000,5000,*", "SERVNAME,test", "CONS,unlimited")
    assert session.state is State.BOUND
    assert session.session_id == "S1"
    assert recorder.events == [("started", "new")]
    assert recorder.statuses == ["CONNECTING", "CONNECTED:HTTP-STREAMING"]
    assert [n.tag for n in recorder.data] == ["SERVNAME", "CONS"]


def test_loop_rebinds_with_same_session_and_counts_data() -> None:
    session, transport, recorder, _ = connected()
    transport.last.feed("SUBOK,1,1,2", "U,1,1,a|b", "LOOP,0")
    first = transport.streams[0]
    assert first.stopped
    bind = transport.last
    assert bind.request.name == "bind_session"
    assert bind.params["LS_session"] == "S1"
    assert "LS_recovery_from" not in bind.params
    # Trailing data after LOOP on the old stream is ignored.
    first.feed("U,1,1,zombie|x")
    bind.feed("CONOK,S1,50000,5000,*", "U,1,1,c|d")
    assert session.data_count == 3
    assert [n.tag for n in recorder.data] == ["SUBOK", "U", "U"]
    assert recorder.events[-1] == ("rebound", "preserved")


def test_broken_stream_recovers_and_skips_duplicates() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1", "U,1,1,a", "U,1,1,b", "U,1,1,c")
    transport.last.end(TransportError("connection reset"))
    assert session.status == _session.STATUS_TRYING_RECOVERY
    assert recorder.events[-1] == ("interrupted", True)
    clock.advance(0.05)  # randomised first delay: 0.5 * 0.1 s
    rec = transport.last
    assert rec.request.name == "bind_session"
    assert rec.params["LS_recovery_from"] == "4"
    # The server only kept up to 2: the next two data lines are duplicates.
    rec.feed("CONOK,S1,50000,5000,*", "PROG,2", "U,1,1,b", "U,1,1,c", "U,1,1,d")
    assert [getattr(n, "values", None) for n in recorder.data if n.tag == "U"] == [
        "a", "b", "c", "d"]
    assert session.data_count == 5
    assert recorder.events[-1] == ("rebound", "recovered")


def test_prog_beyond_counter_replaces_session() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1")
    transport.last.end(TransportError("reset"))
    clock.advance(1)
    transport.last.feed("CONOK,S1,50000,5000,*", "PROG,7")
    assert session.status == _session.STATUS_WILL_RETRY
    clock.advance(1)
    assert transport.last.request.name == "create_session"
    transport.last.feed("CONOK,S2,50000,5000,*")
    assert recorder.events[-1] == ("started", "replaced")


def test_recovery_refused_creates_new_session() -> None:
    session, transport, recorder, clock = connected()
    transport.last.end(TransportError("reset"))
    clock.advance(1)
    transport.last.feed("CONERR,4,Recovery not possible")
    clock.advance(1)
    assert transport.last.request.name == "create_session"
    assert transport.last.params["LS_password"] == "secret"
    transport.last.feed("CONOK,S2,50000,5000,*")
    assert session.session_id == "S2"
    assert recorder.events[-1] == ("started", "replaced")


def test_fatal_conerr_closes_with_server_error() -> None:
    session, transport, recorder, _ = make()
    session.connect({})
    transport.last.feed("CONERR,1,User/password check failed")
    kind, error = recorder.events[-1]
    assert kind == "closed"
    assert isinstance(error, ServerError)
    assert (error.code, error.message, error.tag) == (1, "User/password check failed", "CONERR")
    assert session.state is State.CLOSED
    assert session.status == "DISCONNECTED"


def test_retryable_conerr_on_create_retries_after_retry_delay() -> None:
    session, transport, recorder, clock = make(retry_delay=4.0)
    session.connect({})
    transport.last.feed("CONERR,6,try later")
    assert session.status == _session.STATUS_WILL_RETRY
    clock.advance(3.9)
    assert len(transport.streams) == 1
    clock.advance(0.2)
    assert len(transport.streams) == 2


def test_refused_connection_retries_with_growing_delay() -> None:
    session, transport, _, clock = make(retry_delay=1.0, max_retry_delay=8.0)
    session.connect({})
    starts = []
    for _ in range(15):
        starts.append(clock.seconds())
        transport.last.end(TransportError("connection refused"))
        before = len(transport.streams)
        while len(transport.streams) == before:
            clock.advance(0.5)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[:9] == [1.0] * 9
    assert max(gaps) == 8.0


def test_not_retryable_transport_error_is_fatal() -> None:
    session, transport, recorder, _ = make()
    session.connect({})
    transport.last.end(TransportError("HTTP error 404", status=404, retryable=False))
    assert recorder.events[-1][0] == "closed"
    assert session.state is State.CLOSED


def test_keepalive_silence_goes_stalled_then_recovers() -> None:
    session, transport, recorder, clock = connected(stalled_timeout=2.0, reconnect_timeout=3.0)
    clock.advance(5.0)  # keepalive from CONOK
    assert session.status == "CONNECTED:HTTP-STREAMING"
    clock.advance(2.0)
    assert session.status == _session.STATUS_STALLED
    transport.last.feed("PROBE")  # alive again
    assert session.status == "CONNECTED:HTTP-STREAMING"
    clock.advance(5.0)
    clock.advance(2.0)
    assert session.status == _session.STATUS_STALLED
    clock.advance(3.0)
    assert transport.streams[0].stopped
    assert session.status == _session.STATUS_TRYING_RECOVERY
    clock.advance(0.05)
    assert transport.last.params["LS_recovery_from"] == "0"


def test_no_conok_in_time_is_a_failed_attempt() -> None:
    session, transport, _, clock = make(retry_delay=4.0)
    session.connect({})
    clock.advance(4.0)
    assert transport.streams[0].stopped
    # The attempt used up the whole retry delay, so the next one starts at once.
    assert len(transport.streams) == 2
    assert transport.last.request.name == "create_session"


def test_recovery_gives_up_after_recovery_timeout() -> None:
    session, transport, recorder, clock = connected(
        retry_delay=4.0, session_recovery_timeout=10.0)
    transport.last.end(TransportError("reset"))
    attempts = []
    for _ in range(40):
        clock.advance(0.5)
        last = transport.last
        if last.request.name == "create_session":
            break
        if not last.stopped and last not in attempts:
            attempts.append(last)
            last.end(TransportError("refused"))
    # Attempts at 0.05, 4.05, 8.05 s; the next would start past the 10 s window.
    assert len(attempts) == 3
    assert transport.last.request.name == "create_session"
    assert ("interrupted", False) in recorder.events


def test_end_fatal_and_retryable() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("END,48,Max duration")
    assert session.status == _session.STATUS_WILL_RETRY
    clock.advance(1)
    transport.last.feed("CONOK,S2,50000,5000,*")
    assert recorder.events[-1] == ("started", "replaced")
    transport.last.feed("END,32,closed by admin")
    kind, error = recorder.events[-1]
    assert kind == "closed" and isinstance(error, ServerError) and error.tag == "END"


def test_unknown_tag_is_reported_and_skipped() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("WHAT,is,this", "SUBOK,1,1,1")
    kinds = [kind for kind, _ in recorder.events]
    assert kinds == ["started", "error"]
    assert session.state is State.BOUND
    assert session.data_count == 1


def test_fatal_protocol_error_reported_once() -> None:
    session, transport, recorder, _ = make()
    session.connect({})
    transport.last.feed("CONOK,abc")
    kinds = [kind for kind, _ in recorder.events]
    assert kinds == ["closed"]


def test_huge_loop_delay_is_capped() -> None:
    session, transport, _, clock = connected()
    transport.last.feed("LOOP,9223372036854775807")
    assert transport.last.request.name == "bind_session"


def test_protocol_error_recovers_the_same_session() -> None:
    # Was: a new session (every snapshot again). Now the same session is recovered from
    # the last good data notification.
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1", "U,1,1,a", "SUBOK,x,1,1", "U,1,1,lost")
    kind, error = recorder.events[-2]
    assert kind == "error" and isinstance(error, ProtocolError)
    assert recorder.events[-1] == ("interrupted", True)
    assert session.status == _session.STATUS_TRYING_RECOVERY
    clock.advance(1)
    assert transport.last.params["LS_recovery_from"] == "2"
    transport.last.feed("CONOK,S1,50000,5000,*", "PROG,2", "U,1,1,b")
    assert recorder.events[-1] == ("rebound", "recovered")
    assert [n.values for n in recorder.data if isinstance(n, Update)] == ["a", "b"]


def test_the_same_bad_line_after_recovery_is_skipped_naming_its_item() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1", "U,1,1,a", "U,1,1", "U,1,1,c")
    clock.advance(1)
    transport.last.feed("CONOK,S1,50000,5000,*", "PROG,2", "U,1,1", "U,1,1,c")
    errors = [e for kind, e in recorder.events if kind == "error"]
    assert len(errors) == 2
    assert "subscription 1, item 1" in str(errors[1])
    assert session.bound and len(transport.streams) == 2  # no other recovery
    assert [n.values for n in recorder.data if isinstance(n, Update)] == ["a", "c"]
    assert session.data_count == 4  # the bad one counts: the server counted it
    assert recorder.events[-2:] == [("rebound", "recovered"), ("error", errors[1])]


def test_the_same_unattributable_bad_line_after_recovery_replaces_the_session() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1", "U,abc,1,x")
    clock.advance(1)
    transport.last.feed("CONOK,S1,50000,5000,*", "PROG,1", "U,abc,1,x")
    assert recorder.events[-1] == ("interrupted", False)
    clock.advance(1)
    assert transport.last.request.name == "create_session"
    transport.last.feed("CONOK,S2,50000,5000,*", "SUBOK,1,1,1", "U,abc,1,x")
    assert session.status == _session.STATUS_TRYING_RECOVERY  # a new session, a new chance


def test_another_bad_line_at_the_same_place_replaces_the_session() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1", "U,1,1")
    clock.advance(1)
    transport.last.feed("CONOK,S1,50000,5000,*", "PROG,1", "U,1,2")  # garbage, not a replay
    assert recorder.events[-1] == ("interrupted", False)
    clock.advance(1)
    assert transport.last.request.name == "create_session"


def test_a_corrupt_duplicate_in_a_replay_is_skipped_silently() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1", "U,1,1,a", "U,1,1,b")
    transport.last.end(TransportError("reset"))
    clock.advance(1)
    transport.last.feed("CONOK,S1,50000,5000,*", "PROG,1", "U,1,1", "U,1,1,b", "U,1,1,c")
    assert [kind for kind, _ in recorder.events].count("error") == 0
    assert [n.values for n in recorder.data if isinstance(n, Update)] == ["a", "b", "c"]


def test_close_stops_everything() -> None:
    session, transport, _, clock = connected()
    session.close()
    assert transport.last.stopped
    assert session.state is State.CLOSED
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("code", [4, 20, 40])
def test_conerr_on_bind_means_new_session(code: int) -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("LOOP,0")
    transport.last.feed(f"CONERR,{code},gone")
    clock.advance(1)
    assert transport.last.request.name == "create_session"


def test_conerr_65_falls_back_to_240_once() -> None:
    session, transport, recorder, clock = make()
    session.connect({})
    transport.last.feed("CONERR,65,Unsupported protocol version: 2.5.0")
    clock.advance(0)
    assert transport.protocol_version == "2.4.0"
    assert len(transport.streams) == 2
    transport.last.feed("CONERR,65,still no")
    kind, error = recorder.events[-1]
    assert kind == "closed" and isinstance(error, ServerError) and error.code == 65


def test_conerr_65_without_fallback_is_fatal() -> None:
    session, transport, recorder, _ = make(protocol_fallback=False)
    session.connect({})
    transport.last.feed("CONERR,65,Unsupported protocol version")
    assert recorder.events[-1][0] == "closed"
    assert transport.protocol_version == "2.5.0"


def test_conerr_5_retries_at_once_with_unlimited_ttl() -> None:
    session, transport, _, clock = make()
    session.connect({})
    assert "LS_ttl_millis" not in transport.last.params
    transport.last.feed("CONERR,5,overloaded")
    clock.advance(0)
    assert transport.last.params["LS_ttl_millis"] == "unlimited"


def test_reverse_heartbeat_interval_is_announced() -> None:
    session, transport, _, _ = make(reverse_heartbeat_interval=2.5)
    session.connect({})
    assert transport.last.params["LS_inactivity_millis"] == "2500"


@pytest.mark.parametrize(
    "configured, link, expected",
    [
        ("http://host:8080", "other.example.com", "http://other.example.com:8080"),
        ("https://host", "other.example.com:9443", "https://other.example.com:9443"),
        ("http://host:81/prefix", "node2/pre", "http://node2:81/pre"),
        ("https://host", "node3", "https://node3:443"),
    ],
)
def test_control_link_inherits_scheme_and_port(configured: str, link: str, expected: str) -> None:
    assert _session._control_url(configured, link) == expected


def test_legacy_sync_error_replaces_session() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1", "SYNC ERROR")
    assert recorder.events[-1] == ("interrupted", False)
    clock.advance(1)
    assert transport.last.request.name == "create_session"
    transport.last.feed("CONOK,S2,50000,5000,*")
    assert recorder.events[-1] == ("started", "replaced")


# -- the machine, the retry policy and the listener's callbacks --------------------------

def test_every_transition_is_in_the_table() -> None:
    session, transport, _, _ = make()
    session.connect({})
    with pytest.raises(_session.IllegalTransition, match="cannot connect while creating"):
        session.connect({})
    assert isinstance(_session.IllegalTransition("x"), RuntimeError)
    assert session.state is State.CREATING
    # Every state can be closed; only a closed or idle session can connect.
    closable = {state for state, event in _session.TRANSITIONS if event is _session.Input.CLOSE}
    assert closable == set(State)
    connectable = {state for state, event in _session.TRANSITIONS
                   if event is _session.Input.CONNECT}
    assert connectable == {State.IDLE, State.CLOSED}


def test_tlcp_retry_policy_is_the_official_rule() -> None:
    policy = _session.tlcp_retry_policy(retry_delay=2.0, first_retry_max_delay=0.1,
                                        max_retry_delay=60.0, jitter=lambda: 0.5)
    assert policy(0) == pytest.approx(0.05)
    assert [policy(n) for n in range(1, 11)] == [2.0] * 10
    assert [policy(n) for n in (11, 12, 13, 14, 15)] == [4.0, 8.0, 16.0, 32.0, 60.0]
    assert policy(10_000) == 60.0


def test_an_injected_retry_policy_paces_the_retries() -> None:
    asked: list[int] = []

    def policy(attempt: int) -> float:
        asked.append(attempt)
        return 7.0 if attempt else 0.25

    session, transport, _, clock = make(retry_policy=policy)
    session.connect({})
    transport.last.end(TransportError("connection refused"))
    clock.advance(6.9)
    assert len(transport.streams) == 1
    clock.advance(0.1)
    assert len(transport.streams) == 2
    transport.last.feed("CONOK,S1,50000,5000,*")
    transport.last.end(TransportError("reset"))  # a bound stream: recovery, attempt 0
    clock.advance(0.2)
    assert len(transport.streams) == 2
    clock.advance(0.05)
    assert transport.last.params["LS_recovery_from"] == "0"
    assert asked == [1, 1, 0]  # the wait for the second create, its timeout, the recovery


def test_a_listener_that_closes_on_interruption_stops_the_retry() -> None:
    session, transport, recorder, clock = connected()
    recorder.session_interrupted = lambda will_recover: session.close()  # type: ignore[method-assign]
    transport.last.end(TransportError("reset"))
    clock.advance(60)
    assert session.state is State.CLOSED
    assert len(transport.streams) == 1
    assert recorder.statuses[-1] == "DISCONNECTED"


def test_recovered_stream_waits_for_prog_before_counting() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("U,1,1,a")
    transport.last.end(TransportError("reset"))
    clock.advance(1)
    transport.last.feed("CONOK,S1,50000,5000,*")
    assert session.bound
    assert session.server_prog is None
    transport.last.feed("PROG,1", "U,1,1,b")
    assert (session.data_count, session.server_prog) == (2, 2)


# -- a broken bind (issue: silent loss on a WebSocket reset during a rebind) ------------

def ws_connected() -> tuple[Session, FakeTransport, FakeTransport, Recorder, Clock]:
    clock = Clock()
    http, ws, recorder = FakeTransport(), FakeTransport(), Recorder()
    session = Session(transport=http, ws_transport=ws,  # type: ignore[arg-type]
                      clock=clock, listener=recorder, base_url="http://127.0.0.1:1",
                      options=SessionOptions(), randomizer=lambda: 0.5)
    session.connect({})
    ws.last.feed("WSOK", "CONOK,S1,50000,5000,*", "SUBOK,1,1,1", "U,1,1,a")
    return session, http, ws, recorder, clock


def test_a_websocket_broken_after_the_bind_went_out_is_recovered_on_websocket() -> None:
    session, http, ws, recorder, clock = ws_connected()
    ws.last.feed("LOOP,0")
    bind = ws.last
    assert bind.request.name == "bind_session"
    bind.end(TransportError("WebSocket broken (code 1006): connection reset"))
    assert session.status == _session.STATUS_TRYING_RECOVERY
    clock.advance(1)
    assert http.streams == []  # WebSocket is not given up: it opened
    assert ws.last.params["LS_recovery_from"] == "2"
    ws.last.feed("WSOK", "CONOK,S1,50000,5000,*", "PROG,2", "U,1,1,b")
    assert recorder.events[-1] == ("rebound", "recovered")
    assert session.status == "CONNECTED:WS-STREAMING"


def test_a_websocket_that_does_not_open_for_a_bind_binds_on_http_at_once() -> None:
    session, http, ws, recorder, clock = ws_connected()
    ws.last.feed("LOOP,0")
    ws.last.request_sent = False
    ws.last.end(TransportError("connection refused"))
    clock.advance(0)
    bind = http.last
    assert bind.request.name == "bind_session"
    assert "LS_recovery_from" not in bind.params  # the server never saw the first bind
    bind.feed("CONOK,S1,50000,5000,*")
    assert recorder.events[-1] == ("rebound", "preserved")


def test_an_http_stream_timing_out_on_a_bind_is_recovered_on_polling() -> None:
    session, transport, recorder, clock = connected(retry_delay=4.0)
    transport.last.feed("SUBOK,1,1,1", "LOOP,0")
    clock.advance(4.0)  # the bind's head never comes (a buffering proxy)
    clock.advance(1.0)
    assert transport.last.params["LS_recovery_from"] == "1"
    assert transport.last.params["LS_polling"] == "true"


def test_failed_attempts_are_told_once_per_cause_with_a_count() -> None:
    session, transport, recorder, clock = make(retry_delay=1.0)
    session.connect({})
    for cause in ["connection refused", "connection refused", "HTTP error 503",
                  "HTTP error 503", "connection refused"]:
        transport.last.end(TransportError(cause))
        clock.advance(1.0)
    told = [str(e) for kind, e in recorder.events if kind == "error"]
    assert told == ["connection refused", "HTTP error 503 (3rd attempt)",
                    "connection refused (5th attempt)"]
    assert recorder.statuses[:2] == ["CONNECTING", "DISCONNECTED:WILL-RETRY"]
    transport.last.feed("CONOK,S1,50000,5000,*")
    transport.last.end(TransportError("reset"))  # a bound stream breaking is no attempt
    clock.advance(0.05)
    transport.last.end(TransportError("connection refused"))  # a recovery attempt is
    told = [str(e) for kind, e in recorder.events if kind == "error"]
    assert told[3:] == ["connection refused"]


def test_ordinals() -> None:
    from txlightstreamer._session.attempts import ordinal

    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]


# -- back-pressure: pause_reading / resume_reading ---------------------------------------

def test_paused_reading_pauses_the_stream_and_the_liveness_timers() -> None:
    session, transport, recorder, clock = connected(stalled_timeout=2.0, reconnect_timeout=3.0)
    session.pause_reading()
    assert transport.last.paused and session.reading_paused
    clock.advance(3600)  # our own silence: no STALLED, no recovery
    assert session.bound and session.status == "CONNECTED:HTTP-STREAMING"
    assert clock.getDelayedCalls() == []
    session.resume_reading()
    assert not transport.last.paused
    clock.advance(5.0)  # from now on, silence counts again
    clock.advance(2.0)
    assert session.status == _session.STATUS_STALLED


def test_a_new_stream_starts_paused_while_reading_is_paused() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("LOOP,0")  # read before the pause took effect
    session.pause_reading()
    assert transport.last.request.name == "bind_session" and transport.last.paused
    clock.advance(60)  # the bind's head timeout waits too
    assert len(transport.streams) == 2
    session.resume_reading()
    transport.last.feed("CONOK,S1,50000,5000,*")
    assert recorder.events[-1] == ("rebound", "preserved")
    transport.last.end(TransportError("reset"))
    clock.advance(1)
    assert not transport.last.paused


# -- long-lived streams ------------------------------------------------------------------

def test_sixty_hours_of_probes_keep_one_timer_and_the_binding() -> None:
    session, transport, recorder, clock = connected()
    for _ in range(60 * 3600 // 5):
        clock.advance(5.0)  # the CONOK's keepalive interval
        transport.last.feed("PROBE")
    assert session.bound and len(transport.streams) == 1
    assert len(clock.getDelayedCalls()) == 1  # the silence timer, nothing piled up
    assert recorder.statuses == ["CONNECTING", "CONNECTED:HTTP-STREAMING"]


def test_an_empty_line_is_ignored() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1", "", "U,1,1,a")
    assert [kind for kind, _ in recorder.events] == ["started"]
    assert session.data_count == 2 and session.bound


def test_a_retryable_refusal_of_the_create_is_told_once() -> None:
    session, transport, recorder, clock = make(retry_delay=1.0)
    session.connect({})
    for _ in range(3):
        transport.last.feed("CONERR,6,Metadata Adapter busy")
        clock.advance(1.0)
    told = [e for kind, e in recorder.events if kind == "error"]
    assert len(told) == 1 and isinstance(told[0], ServerError) and told[0].code == 6
    assert len(transport.streams) == 4 and session.state is State.CREATING
