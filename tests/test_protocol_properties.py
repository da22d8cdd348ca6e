"""Property-based tests for the sans-IO protocol core."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from txlightstreamer.protocol import (
    ProtocolError,
    Update,
    ValueDecodeError,
    apply_tlcp_diff,
    decode_update,
    encode_value,
    parse_bytes,
    parse_line,
    percent_decode,
)

VALID_LINES = [
    "CONOK,S73d162c183916f0dT2729905,50000,5000,*",
    "CONOK,S1,50000,19000,push.example.com:8080",
    "CONERR,1,User/password check failed",
    "END,31,Destroy invoked by client",
    "LOOP,0",
    "SERVNAME,Lightstreamer%20HTTP%20Server",
    "CLIENTIP,::1",
    "CONS,40.5",
    "CONS,unlimited",
    "PROBE",
    "NOOP,....",
    "SYNC,12",
    "PROG,11",
    "WSOK",
    "REQOK",
    "REQOK,12",
    "REQERR,3,19,Subscription%20not%20found",
    "ERROR,67,Malformed request",
    "U,3,1,20:00:33|3.04|0.0|2.41|3.67|3.03|3.04|#|#|$",
    "U,3,1,bar%c3%a0%C3%A8%25%23%24%5E",
    'U,1,1,^P[{"op":"add","path":"/a","value":1}]|^Tbdzap|^2',
    "SUBOK,1,2,10",
    "SUBCMD,1,2,4,3,4",
    "UNSUB,5",
    "EOS,1,2",
    "CS,1,2",
    "OV,1,2,30",
    "CONF,1,unlimited,filtered",
    "CONF,2,10.5,unfiltered",
    "MSGDONE,*,1",
    "MSGDONE,seq,2,response%2C",
    "MSGFAIL,seq,2,-5,nick+242+I%C3%B1t%C3%ABrn%E2%98%83",
    "MPNREG,dev1,MPN",
    "MPNZERO,dev1",
    "MPNOK,3,mpnsub",
    "MPNCONF,mpnsub",
    "MPNDEL,mpnsub",
]

# Characters that matter to the parser, mixed with arbitrary ones.
_INTERESTING = st.sampled_from(list(",%|^#$*-+0123456789aAfFzZ.:é😀\r\n\x00 "))
# May include lone surrogates: the parsers must cope with any str.
_CHARS = st.one_of(_INTERESTING, st.characters())
# Text that can be encoded as UTF-8 (what actually travels on the wire).
_UTF8_CHARS = st.one_of(_INTERESTING, st.characters(codec="utf-8"))


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    """A valid line with a few characters inserted, deleted or replaced."""
    line = draw(st.sampled_from(VALID_LINES))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        pos = draw(st.integers(0, len(line)))
        if op == "insert":
            line = line[:pos] + draw(_CHARS) + line[pos:]
        elif op == "delete":
            line = line[:pos] + line[pos + 1 :]
        elif op == "replace":
            line = line[:pos] + draw(_CHARS) + line[pos + 1 :]
        else:
            line = line[:pos]
    return line


def _parse_or_protocol_error(line: str) -> None:
    try:
        result = parse_line(line)
    except ProtocolError as exc:
        assert exc.line is not None
        return
    assert result.tag == line.split(",", 1)[0]


# --------------------------------------------------------------------------- (1) parse_line


@settings(max_examples=3000)
@given(st.text(alphabet=_CHARS))
def test_parse_line_arbitrary_text(line: str) -> None:
    _parse_or_protocol_error(line)


@settings(max_examples=3000)
@given(st.sampled_from(VALID_LINES).flatmap(lambda v: st.just(v.split(",", 1)[0])), st.text(_CHARS))
def test_parse_line_known_tag_random_args(tag: str, rest: str) -> None:
    _parse_or_protocol_error(tag + "," + rest)


@settings(max_examples=3000)
@given(mutated_lines())
def test_parse_line_mutations(line: str) -> None:
    _parse_or_protocol_error(line)


@settings(max_examples=1000)
@given(st.binary())
def test_parse_bytes_arbitrary(data: bytes) -> None:
    try:
        parse_bytes(data)
    except ProtocolError:
        pass


def test_valid_lines_parse() -> None:
    for line in VALID_LINES:
        parse_line(line)


# --------------------------------------------------------------------------- (2) decode_update

_TOKEN = st.one_of(
    st.sampled_from(["", "#", "$", "^1", "^2", "^3", "^0", "^", "^T", "^P", "^Tc", "^Tbdzap",
                     "^P[]", '^P[{"op":"add","path":"/a","value":1}]', "%", "%2", "%C3", "%7C"]),
    st.text(_CHARS, max_size=8),
    st.text(_CHARS, max_size=8).map(lambda s: "^T" + s),
    st.text(_CHARS, max_size=8).map(lambda s: "^P" + s),
)  # fmt: skip
_PREV_VALUE = st.one_of(
    st.none(),
    st.text(_CHARS, max_size=10),
    st.sampled_from(["{}", "[]", '{"a":1}', "[1,2]", "1", '"s"', "null", "foobar"]),
)


@st.composite
def update_cases(draw: st.DrawFn) -> tuple[str, list[str | None] | None, int]:
    num_fields = draw(st.integers(1, 6))
    if draw(st.booleans()):
        raw = "|".join(draw(st.lists(_TOKEN, min_size=1, max_size=8)))
    else:
        raw = draw(st.text(_CHARS, max_size=40))
    previous = None
    if draw(st.booleans()):
        previous = draw(st.lists(_PREV_VALUE, min_size=num_fields, max_size=num_fields))
    return raw, previous, num_fields


@settings(max_examples=3000)
@given(update_cases())
def test_decode_update_only_value_decode_error(
    case: tuple[str, list[str | None] | None, int],
) -> None:
    raw, previous, num_fields = case
    snapshot = None if previous is None else list(previous)
    try:
        out = decode_update(raw, previous, num_fields)
    except ValueDecodeError as exc:
        assert exc.field is None or 1 <= exc.field <= num_fields + 1
    else:
        assert len(out.values) == num_fields
        assert out.values is not previous
        if out.patches is not None:
            for index, ops in out.patches.items():
                assert 0 <= index < num_fields
                assert isinstance(ops, list)
                value = out.values[index]
                assert value is not None
                json.loads(value)
    assert previous == snapshot


@settings(max_examples=500)
@given(update_cases().map(lambda c: c[0]), st.integers(1, 6))
def test_update_lines_round_trip(raw: str, num_fields: int) -> None:
    parsed = parse_line(f"U,1,1,{raw}")
    assert isinstance(parsed, Update)
    assert parsed.values == raw


# --------------------------------------------------------------------------- (3) apply_tlcp_diff


@settings(max_examples=3000)
@given(
    st.text(_CHARS, max_size=30),
    st.one_of(
        st.text(st.sampled_from(list("abcdzABZ!é1 ")), max_size=20),
        st.text(_CHARS, max_size=20),
    ),
)
def test_tlcp_diff_only_value_decode_error(old: str, diff: str) -> None:
    try:
        result = apply_tlcp_diff(old, diff)
    except ValueDecodeError:
        return
    assert isinstance(result, str)


# --------------------------------------------------------------------------- (4) encode/decode


@settings(max_examples=3000)
@given(st.text(_UTF8_CHARS))
def test_encode_value_round_trip(text: str) -> None:
    encoded = encode_value(text)
    assert encoded.isascii()
    for ch in "&=%+\r\n |, ":
        if ch != "%":
            assert ch not in encoded
    assert percent_decode(encoded) == text


# --------------------------------------------------------------------------- (5) diff encoder


def _encode_int(value: int) -> str:
    """Encode a TLCP-diff integer: upper-case digits, last digit lower-case."""
    digits = [value % 26]
    value //= 26
    while value:
        digits.append(value % 26)
        value //= 26
    digits.reverse()
    head = "".join(chr(65 + d) for d in digits[:-1])
    return head + chr(97 + digits[-1])


def _units(text: str) -> int:
    """Length in UTF-16 code units: the official clients' unit for TLCP-diff counts."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _make_diff(old: str, new: str) -> str:
    """COPY common prefix, ADD new middle, DEL old middle, COPY common suffix."""
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]:
        suffix += 1
    added = new[prefix : len(new) - suffix]
    deleted = old[prefix : len(old) - suffix]
    return (
        _encode_int(_units(old[:prefix]))
        + _encode_int(_units(added))
        + added
        + _encode_int(_units(deleted))
        + _encode_int(_units(old[len(old) - suffix:]))
    )


def test_encode_int_examples() -> None:
    assert [_encode_int(n) for n in (0, 3, 25, 26, 29, 52, 676)] == [
        "a", "d", "z", "Ba", "Bd", "Ca", "BAa",
    ]  # fmt: skip


@settings(max_examples=3000)
@given(st.text(_UTF8_CHARS, max_size=800), st.text(_UTF8_CHARS, max_size=800))
def test_tlcp_diff_round_trip(old: str, new: str) -> None:
    diff = _make_diff(old, new)
    assert apply_tlcp_diff(old, diff) == new
    # Through the wire: percent-encode the payload and decode it in an update.
    wire = "^T" + encode_value(diff)
    assert decode_update(wire, [old], 1).values == [new]
