"""
The session at the edges of tlcp.md's life cycle (found by review, each failing before its
fix): LOOP or a second CONOK out of turn, CONERR 6 on a recovery, how long a create may take
(the current retry delay, 60 s asking for a TTL), a bandwidth set live kept in later
sessions, and ERROR ending the session.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from txlightstreamer._session import State
from txlightstreamer.errors import ProtocolError, ServerError, TransportError

from .test_faults import Run
from .test_session import connected, make


def _lost(transport: object) -> None:
    transport.last.end(TransportError("reset"))  # type: ignore[attr-defined]


def test_loop_before_conok_on_create_ends_the_session() -> None:
    # Before it the session waited forever, BINDING a session it never had.
    session, transport, recorder, clock = make()
    session.connect({})
    transport.last.feed("LOOP,0")
    assert session.state is State.CLOSED
    kind, error = recorder.events[-1]
    assert kind == "closed" and isinstance(error, ProtocolError)
    assert "LOOP before CONOK" in str(error)


def test_loop_before_conok_on_recovery_recovers_again() -> None:
    # A plain bind would make the server take what the lost stream carried as received.
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1", "U,1,1,a")
    _lost(transport)
    clock.advance(1)
    assert transport.last.params["LS_recovery_from"] == "2"
    transport.last.feed("LOOP,0")
    clock.advance(10)
    assert transport.last.request.name == "bind_session"
    assert transport.last.params["LS_recovery_from"] == "2"
    assert any(kind == "error" and isinstance(e, ProtocolError) for kind, e in recorder.events)


def test_a_second_conok_is_a_protocol_error_and_a_recovery() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1", "CONOK,S1,50000,5000,*", "U,1,1,a")
    clock.advance(1)
    assert session.data_count == 1  # the SUBOK; the line after the bad one is not read
    assert transport.last.params["LS_recovery_from"] == "1"
    assert any(kind == "error" and isinstance(e, ProtocolError) for kind, e in recorder.events)


def test_conerr_6_on_a_recovery_opens_a_new_session() -> None:
    session, transport, recorder, clock = connected()
    _lost(transport)
    clock.advance(1)
    assert "LS_recovery_from" in transport.last.params
    transport.last.feed("CONERR,6,Metadata Adapter busy")
    clock.advance(60)
    assert transport.last.request.name == "create_session"
    assert session.state is State.CREATING


def test_a_create_asking_for_a_ttl_may_take_60_s() -> None:
    session, transport, recorder, clock = make()
    session.connect({})
    transport.last.feed("CONERR,5,overloaded")
    clock.advance(0)
    ttl = transport.last
    assert ttl.params["LS_ttl_millis"] == "unlimited"
    clock.advance(59.9)
    assert not ttl.stopped
    clock.advance(0.2)
    assert ttl.stopped


def test_a_create_may_take_the_current_retry_delay() -> None:
    # tlcp.md §7.2/§7.7: the timeout of a create is the current delay, which doubles
    # after the tenth failure (it stayed retry_delay, so a slow server was never reached).
    session, transport, recorder, clock = make(retry_delay=1.0)
    session.connect({})
    timeouts = []
    for _ in range(14):
        stream, started = transport.last, clock.seconds()
        while not stream.stopped:
            clock.advance(0.25)
        timeouts.append(clock.seconds() - started)
        while transport.last is stream:
            clock.advance(0.25)
    # Twelve: the first streaming create that times out is tried at once by polling
    # (Stream-Sense), and counts no failure.
    assert timeouts == [1.0] * 12 + [2.0, 4.0]


def test_a_bandwidth_set_live_holds_in_a_new_session() -> None:
    run = Run()
    run.subscribe()
    run.client.set_max_bandwidth(10)
    run.until(lambda: run.client.bandwidth == "10")
    run.server.faults.end_streams(48, "max duration")
    run.until(lambda: "replaced" in run.continuity)
    run.until(lambda: run.client.bandwidth == "10")  # was "unlimited"
    run.close()


def test_a_bandwidth_set_while_recovering_is_asked_once_recovered() -> None:
    run = Run()
    run.subscribe()
    run.server.faults.close_after(0)
    run.until(lambda: not run.client._session.bound)
    assert run.client.set_max_bandwidth(10).called  # nothing to wait for while away
    run.until(lambda: "recovered" in run.continuity)
    run.until(lambda: run.client.bandwidth == "10")  # was never sent
    run.close()


def test_error_on_the_stream_ends_the_session() -> None:
    # tlcp.md §9.2: ERROR (any code) is a fatal disconnect.
    run = Run()
    run.subscribe()
    run.server.faults.send_line_to_all("ERROR,67,Malformed request")
    run.until(lambda: run.client.status == "DISCONNECTED")
    assert any(isinstance(e, ServerError) and e.code == 67 for e in run.errors)
    run.close()


def test_a_session_ended_with_no_on_error_is_logged_critical() -> None:
    # Twisted prints only critical events before the application begins logging: with no
    # on_error, a session the server ended was a silent DISCONNECTED.
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        run = Run()
        run.client.remove_callback(run.errors.append)
        run.subscribe()
        run.server.faults.end_streams(32, "closed by the administrator")
        run.until(lambda: run.client.status == "DISCONNECTED")
        run.close()
    finally:
        globalLogPublisher.removeObserver(events.append)
    critical = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.critical]
    assert any("closed by the administrator" in text for text in critical)


def test_a_recovery_abandoned_by_its_prog_is_never_told_recovered() -> None:
    # "recovered" promises every update exactly once: it was told at the recovery's CONOK,
    # before the PROG that showed updates lost and abandoned it (tlcp.md §7.6).
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1", "U,1,1,a")
    _lost(transport)
    clock.advance(1)
    transport.last.feed("CONOK,S1,50000,5000,*")
    assert [e for e in recorder.events if e[0] in ("started", "rebound")] == [
        ("started", "new")]  # not yet: the PROG says
    transport.last.feed("PROG,5")  # the server resumes after 5; the client had 2
    clock.advance(1)
    transport.last.feed("CONOK,S2,50000,5000,*")
    assert [e for e in recorder.events if e[0] in ("started", "rebound")] == [
        ("started", "new"), ("started", "replaced")]


def test_a_recovery_is_told_once_its_prog_is_accepted() -> None:
    session, transport, recorder, clock = connected()
    transport.last.feed("SUBOK,1,1,1", "U,1,1,a")
    _lost(transport)
    clock.advance(1)
    transport.last.feed("CONOK,S1,50000,5000,*", "PROG,1", "U,1,1,b")
    assert [e for e in recorder.events if e[0] in ("started", "rebound")] == [
        ("started", "new"), ("rebound", "recovered")]
