"""Control, message and heartbeat requests of the test server (one answer line per request)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ._encoding import encode_line
from ._params import (
    MPN_OPS,
    ConnectionRefused,
    RequestError,
    body,
    check_protocol,
    parse_params,
)
from ._session import Session
from ._stream import Stream

__all__ = ["control", "heartbeat", "msg"]

_OPERATIONS: dict[str, Callable[[Session, Mapping[str, str]], None]] = {
    "add": Session._op_add,
    "delete": Session._op_delete,
    "reconf": Session._op_reconf,
    "constrain": Session._op_constrain,
    "force_rebind": Session._op_force_rebind,
    "destroy": Session._op_destroy,
}


def _session_for(sessions: Mapping[str, Session], params: Mapping[str, str]) -> Session:
    session_id = params.get("LS_session")
    if session_id is None:
        raise RequestError(65, "Missing LS_session")
    session = sessions.get(session_id)
    if session is None or session.closed:
        raise RequestError(20, "Session not found")
    return session


def _each_line(
    query: dict[str, str],
    lines: list[str],
    handle: Callable[[str, dict[str, str]], None],
) -> bytes:
    try:
        check_protocol(query)
    except ConnectionRefused as e:
        return body(encode_line("ERROR", e.code, e.message))
    out: list[str] = []
    if not lines:
        lines = [""]
    for line in lines:
        try:
            params = {**query, **parse_params(line)}
        except ValueError as e:
            out.append(encode_line("ERROR", 67, f"Malformed request: {e}"))
            continue
        req_id = params.get("LS_reqId")
        if not req_id:
            out.append(encode_line("ERROR", 65, "Missing LS_reqId"))
            continue
        try:
            handle(req_id, params)
        except RequestError as e:
            out.append(encode_line("REQERR", req_id, e.code, e.message))
        else:
            out.append(encode_line("REQOK", req_id))
    return body(*out)


def control(sessions: Mapping[str, Session], query: dict[str, str], lines: list[str]) -> bytes:
    """Answer a ``control`` request (its body lines are requests of live sessions)."""
    # What the requests make a stream send (SUBOK, CONF, snapshots...) goes out in one
    # write per stream once every line is handled, still before the answer.
    held: list[Stream] = []

    def handle(req_id: str, params: dict[str, str]) -> None:
        op = params.get("LS_op")
        if op in MPN_OPS:
            raise RequestError(40, "MPN module disabled")
        method = _OPERATIONS.get(op or "")
        if method is None:
            raise RequestError(65, "Invalid LS_op")
        session = _session_for(sessions, params)
        stream = session.stream
        if stream is not None and stream not in held:
            stream.hold()
            held.append(stream)
        method(session, params)

    try:
        return _each_line(query, lines, handle)
    finally:
        for stream in held:
            stream.release()


def msg(sessions: Mapping[str, Session], query: dict[str, str], lines: list[str]) -> bytes:
    """Answer a ``msg`` request."""

    def handle(req_id: str, params: dict[str, str]) -> None:
        _session_for(sessions, params)._message(req_id, params)

    return _each_line(query, lines, handle)


def heartbeat(query: dict[str, str], lines: list[str]) -> bytes:
    """Answer a ``heartbeat`` request: ``REQOK``, or ``ERROR`` if malformed."""
    try:
        check_protocol(query)
        for line in lines:
            parse_params(line)
    except ConnectionRefused as e:
        return body(encode_line("ERROR", e.code, e.message))
    except ValueError as e:
        return body(encode_line("ERROR", 67, f"Malformed request: {e}"))
    return body("REQOK")
