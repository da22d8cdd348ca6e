"""The test server writes what one control request triggers in one piece, the same lines.

Also: its value and argument encoders and its percent-decoder agree with simple
character-by-character reference versions (they now take faster paths).
"""

from __future__ import annotations

import io
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import task
from twisted.web.test.requesthelper import DummyRequest

from txlightstreamer.testing import CLIENT_ID, TlcpServer
from txlightstreamer.testing._encoding import (
    _as_json_container,
    decode_percent,
    encode_arg,
    encode_diff_int,
    encode_first_row,
    encode_update,
    encode_value,
    json_patch_diff,
    tlcp_diff,
)

CID = "LS_cid=" + quote(CLIENT_ID, safe="")


def _request(name: str, query: str, body: str) -> DummyRequest:
    request = DummyRequest([b"lightstreamer", f"{name}.txt".encode()])
    request.method = b"POST"
    request.uri = f"/lightstreamer/{name}.txt?LS_protocol=TLCP-2.5.0{query}".encode()
    request.content = io.BytesIO(body.encode())  # type: ignore[attr-defined]
    return request


def _create(srv: TlcpServer, extra: str = "") -> tuple[DummyRequest, str]:
    stream = _request("create_session", "", f"{CID}&LS_send_sync=false{extra}")
    assert srv.resource().render(stream) == 1  # NOT_DONE_YET
    (sid,) = srv.sessions
    return stream, sid


def _control(srv: TlcpServer, sid: str, *lines: str) -> bytes:
    result = srv.resource().render(_request("control", f"&LS_session={sid}", "\r\n".join(lines)))
    assert isinstance(result, bytes)
    return result


def _add(req: int, sub: int, group: str) -> str:
    return (
        f"LS_reqId={req}&LS_op=add&LS_subId={sub}&LS_mode=MERGE"
        f"&LS_group={quote(group)}&LS_schema=a%20b&LS_snapshot=true"
    )


def _server(**kw: object) -> tuple[TlcpServer, task.Clock]:
    clock = task.Clock()
    srv = TlcpServer(clock=clock, keepalive_millis=1000, **kw)  # type: ignore[arg-type]
    for item in ("i1", "i2", "i3"):
        srv.data.set_item(item, {"a": item, "b": "x|y"})
    return srv, clock


def test_one_control_request_is_one_write_with_the_same_lines() -> None:
    srv, clock = _server()
    stream, sid = _create(srv)
    head = len(stream.written)
    answer = _control(srv, sid, _add(1, 1, "i1 i2"), _add(2, 2, "i3"), "LS_reqId=3&LS_op=bad")
    assert answer == b"REQOK,1\r\nREQOK,2\r\nREQERR,3,65,Invalid LS_op\r\n"
    assert len(stream.written) == head + 1
    assert stream.written[-1] == (
        b"SUBOK,1,2,2\r\nCONF,1,unlimited,filtered\r\nU,1,1,i1|x%7Cy\r\nU,1,2,i2|x%7Cy\r\n"
        b"SUBOK,2,1,2\r\nCONF,2,unlimited,filtered\r\nU,2,1,i3|x%7Cy\r\n"
    )
    session = srv.sessions[sid]
    assert session.progressive == 7
    assert [p for p, _ in session.kept_notifications] == list(range(1, 8))
    # Updates outside a control request are written one by one, as before.
    srv.data.update("i1", {"a": "2"})
    srv.data.update("i3", {"b": "z"})
    assert stream.written[-2:] == [b"U,1,1,2|\r\n", b"U,2,1,|z\r\n"]
    # The keep-alive counts from the last write.
    clock.advance(0.999)
    assert stream.written[-1] == b"U,2,1,|z\r\n"
    clock.advance(0.001)
    assert stream.written[-1] == b"PROBE\r\n"


def test_a_content_length_reached_inside_a_control_request() -> None:
    srv, clock = _server()
    stream, sid = _create(srv, "&LS_content_length=120")
    head = b"".join(stream.written)
    _control(srv, sid, _add(1, 1, "i1 i2 i3"))
    assert stream.finished
    body = b"".join(stream.written)[len(head) :]
    # The line that reached the length is the last one, then LOOP; the rest waits.
    assert body.endswith(b"\r\nLOOP,0\r\n")
    sent = body.decode().split("\r\n")[:-2]
    assert sent[:2] == ["SUBOK,1,3,2", "CONF,1,unlimited,filtered"]
    session = srv.sessions[sid]
    pending = [line for _, line in session._pending]
    assert sent + pending == [
        "SUBOK,1,3,2",
        "CONF,1,unlimited,filtered",
        "U,1,1,i1|x%7Cy",
        "U,1,2,i2|x%7Cy",
        "U,1,3,i3|x%7Cy",
    ]
    assert clock.getDelayedCalls()  # the session waits for its next bind


def test_a_fault_writes_after_what_was_gathered() -> None:
    srv, _clock = _server()
    stream, sid = _create(srv)
    head = len(stream.written)
    srv.faults.close_after(3)
    _control(srv, sid, _add(1, 1, "i1 i2"))
    assert b"".join(stream.written[head:]) == (
        b"SUBOK,1,2,2\r\nCONF,1,unlimited,filtered\r\nU,1,1,i1|x%7Cy\r\n"
    )
    srv2, _ = _server()
    stream2, sid2 = _create(srv2)
    head2 = len(stream2.written)
    srv2.faults.close_mid_line()
    _control(srv2, sid2, _add(1, 1, "i1"))
    assert b"".join(stream2.written[head2:]) == b"SUBOK,"  # half the first line, then reset


def test_a_stalled_stream_holds_the_snapshot_lines_in_order() -> None:
    srv, _clock = _server()
    stream, sid = _create(srv)
    head = len(stream.written)
    srv.faults.stall()
    _control(srv, sid, _add(1, 1, "i1 i2"))
    assert len(stream.written) == head
    srv.faults.unstall()
    assert b"".join(stream.written[head:]) == (
        b"SUBOK,1,2,2\r\nCONF,1,unlimited,filtered\r\nU,1,1,i1|x%7Cy\r\nU,1,2,i2|x%7Cy\r\n"
    )
    assert srv.sessions[sid].progressive == 4


# --- the encoders against per-character references -------------------------------------

_CONTROLS = {chr(c) for c in range(0x20)} | {"\x7f"}


def _reference_quote(text: str, specials: set[str]) -> str:
    return "".join(
        "".join(f"%{b:02X}" for b in ch.encode()) if ch in specials else ch for ch in text
    )


def _reference_value(text: str | None) -> str:
    if text is None:
        return "#"
    if text == "":
        return "$"
    quoted = _reference_quote(text, _CONTROLS | {"%", "|"})
    return {"#": "%23", "$": "%24", "^": "%5E"}.get(quoted[0], quoted[0]) + quoted[1:]


def _reference_decode(text: str) -> str:
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            digits = text[i + 1 : i + 3]
            if len(digits) != 2 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"malformed percent-escape at {i} in {text!r}")
            out.append(int(digits, 16))
            i += 3
        else:
            out += text[i].encode()
            i += 1
    return out.decode()


_TEXT = st.text(alphabet=st.sampled_from(list("ab#$^%|,+ \r\n\x00\x1f\x7fé€😀09AFf")))


@given(_TEXT)
def test_encode_value_and_arg_as_the_reference(text: str) -> None:
    assert encode_value(text) == _reference_value(text)
    assert encode_arg(text) == _reference_quote(text, _CONTROLS | {"%", "|", ","})


@given(st.lists(st.one_of(st.none(), _TEXT), min_size=1, max_size=5))
def test_encode_first_row_as_each_value(values: list[str | None]) -> None:
    assert encode_first_row(values) == "|".join(_reference_value(v) for v in values)


@pytest.mark.parametrize("char", [chr(c) for c in range(0x300)])
def test_encode_value_every_low_code_point(char: str) -> None:
    for text in (char, "a" + char, char + "b"):
        assert encode_value(text) == _reference_value(text)


@given(_TEXT)
def test_decode_percent_as_the_reference(text: str) -> None:
    try:
        expected: str | type[Exception] = _reference_decode(text)
    except UnicodeDecodeError:
        expected = UnicodeDecodeError
    except ValueError as e:
        with pytest.raises(ValueError) as info:
            decode_percent(text)
        assert str(info.value) == str(e)
        return
    if expected is UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            decode_percent(text)
    else:
        assert decode_percent(text) == expected


@pytest.mark.parametrize("text", ["%", "%4", "%G1", "a%%41", "%41%4", "%C3", "%FF", "%C3%A9%"])
def test_decode_percent_errors(text: str) -> None:
    with pytest.raises(ValueError):
        decode_percent(text)
    assert decode_percent("%C3%A9+%2b%41") == "é++A"


# --- the server's diff choice against the rule as first written -----------------------


def _reference_token(old: str | None, new: str | None, diffs: str) -> str:
    literal = _reference_value(new)
    if old is None or new is None or old == "" or new == "":
        return literal
    best = literal
    specials = _CONTROLS | {"%", "|"}
    if "P" in diffs:
        patch = json_patch_diff(old, new)
        if patch is not None and len("^P" + _reference_quote(patch, specials)) < len(best):
            best = "^P" + _reference_quote(patch, specials)
    bmp = all(ord(c) < 0x10000 for c in old + new)
    if "T" in diffs and bmp and not ("P" in diffs and _as_json_container(old) is not None):
        candidate = "^T" + _reference_quote(tlcp_diff(old, new), specials)
        if len(candidate) < len(best):
            best = candidate
    return best


_VALUES = st.one_of(
    st.none(),
    _TEXT,
    st.sampled_from(
        [
            "100.01",
            "100.02",
            "12:00:00",
            " [1, 2]",
            '{"a": [1, 2, 3]}',
            '{"a": [1, 2, 4]}',
            "[]",
            "{",
            "[1",
            "ab😀cd",
            "ab😀ce",
            "x" * 40,
        ]
    ),
)


@given(
    st.lists(st.tuples(_VALUES, _VALUES), min_size=1, max_size=4),
    st.sampled_from(["", "T", "P", "TP"]),
)
def test_encode_update_chooses_as_the_reference(
    pairs: list[tuple[str | None, str | None]], diffs: str
) -> None:
    old = [a for a, _ in pairs]
    new = [b for _, b in pairs]
    tokens: list[str] = []
    run = 0
    for a, b in pairs:
        if a == b:
            run += 1
            continue
        tokens += [""] if run == 1 else [f"^{run}"] if run else []
        run = 0
        tokens.append(_reference_token(a, b, diffs))
    tokens += [""] if run == 1 else [f"^{run}"] if run else []
    assert encode_update(old, new, diffs=diffs) == "|".join(tokens)


def test_diff_integers() -> None:
    for n in [*range(2000), 26**3, 10**9]:
        digits = []
        m = n
        while True:
            digits.append(m % 26)
            m //= 26
            if not m:
                break
        digits.reverse()
        expected = "".join(chr(65 + d) for d in digits[:-1]) + chr(97 + digits[-1])
        assert encode_diff_int(n) == expected
    with pytest.raises(ValueError):
        encode_diff_int(-1)


_PAIRS = [
    ("abcde", "abcd"),
    ("abcd", "abc"),
    ("abcdef", "abcde"),
    ("100.01", "100.02"),
    (" [1, 2, 3, 4, 5, 6]", " [1, 2, 3, 4, 5, 7]"),
    ("[1, 2]", "[1, 3]"),
    ('{"a": [1, 2, 3]}', '{"a": [1, 2, 4]}'),
    ("[1", "[2"),
    ("ab😀cd", "ab😀ce"),
    ("x" * 40, "x" * 39 + "y"),
    ("a|b%c", "a|b%d"),
]


@pytest.mark.parametrize(("old", "new"), _PAIRS)
@pytest.mark.parametrize("diffs", ["", "T", "P", "TP"])
def test_diff_choice_cases(old: str, new: str, diffs: str) -> None:
    assert encode_update([old], [new], diffs=diffs) == _reference_token(old, new, diffs)
