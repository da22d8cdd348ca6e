"""
Hardening property tests (issue 9): hostile input for the line parser and value decoder.

Only our typed errors (the `ProtocolError` family) may ever escape `parse_line`,
`parse_bytes`, `decode_update`, `apply_tlcp_diff` and `percent_decode`; every error keeps
a short, redacted excerpt; valid input still parses to exactly what was meant.

Generated inputs (``max_examples`` is set explicitly on every test; the last test checks
the counts when the whole module ran; ``TXLS_FUZZ=full`` runs these counts, as CI's first
run does, else a tenth of them):

===========================================  =========
test                                          examples
===========================================  =========
test_random_bytes                                6,000
test_byte_mutations_of_valid_lines              30,000
test_text_mutations_of_valid_lines              12,000
test_known_tags_hostile_arguments               10,000
test_password_in_any_bad_line_is_redacted        4,000
test_generated_valid_lines_parse                 5,000
test_valid_rows_round_trip                       3,000
test_update_value_mutations                     14,000
test_tlcp_diff_mutations                         8,000
test_percent_decode_hostile                      6,000
test_json_patch_hostile                          6,000
**total**                                   **104,000**
===========================================  =========

Most mutation tests draw a valid line and a seed, and apply 1-6 seeded mutations (bit and
byte flips, truncation, insertion of ``,|%^#$``, NUL, CR, LF and non-ASCII, duplicated
separators, deleted and duplicated spans, splices of two lines): cheap to generate, so
the whole module stays well under a minute. A failing example prints the mutated input.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txlightstreamer.protocol import (
    ClearSnapshot,
    ClientIp,
    ConErr,
    Conf,
    ConOk,
    Cons,
    End,
    EndOfSnapshot,
    Error,
    Loop,
    MpnConf,
    MpnDel,
    MpnOk,
    MpnReg,
    MpnZero,
    MsgDone,
    MsgFail,
    Noop,
    Notification,
    Overflow,
    Prog,
    ProtocolError,
    ReqErr,
    ReqOk,
    ServName,
    SubCmd,
    SubOk,
    Sync,
    Unsub,
    Update,
    ValueDecodeError,
    apply_tlcp_diff,
    decode_update,
    encode_value,
    parse_bytes,
    parse_line,
    percent_decode,
)
from txlightstreamer.protocol.errors import MAX_LINE_EXCERPT

from .test_protocol_properties import VALID_LINES as _BASE_VALID_LINES

F = TypeVar("F", bound=Callable[..., Any])

# --------------------------------------------------------------------------- counting

EXPECTED: dict[str, int] = {}
RAN: Counter[str] = Counter()


# All 104,000 inputs with TXLS_FUZZ=full (CI's first run: once per CI run), else a tenth.
FULL = os.environ.get("TXLS_FUZZ", "") == "full"


def examples(count: int) -> Callable[[F], F]:
    """``@settings(max_examples=count)`` that also records the planned count."""

    def wrap(fn: F) -> F:
        EXPECTED[fn.__name__] = count
        return settings(max_examples=count if FULL else count // 10)(fn)

    return wrap


def ran(name: str) -> None:
    RAN[name] += 1


# --------------------------------------------------------------------------- inputs

SECRET = "Pa55-w0rd-s3cr3t"

VALID_LINES = [
    *_BASE_VALID_LINES,
    "CONOK,S1,0,0,*",
    "CONOK,Sabc,9223372036854775807,1,host%3A443/pre%2Cfix",
    "CONERR,-5,%E2%98%83,raw,commas,in,last",
    "END,48,Maximum session duration reached",
    "LOOP,9223372036854775807",
    "REQERR,a1,-9223372036854775808,",
    "ERROR,0,",
    "NOOP,",
    "U,1,1,",
    "U,1,1,|||",
    "U,999999999,999999999,#|$|^9|%7C%5E%23%24",
    "U,2,3,^T" + encode_value("Bbc%aDz"),
    "SUBCMD,1,1,2,1,2",
    "OV,1,1,0",
    "CONF,1,.5,filtered",
    "CONF,1,5.,unfiltered",
    "CONS,unmanaged",
    "MSGDONE,s_1,9,",
    "MSGDONE,*,1,a,b,c",
    "MSGFAIL,*,1,-1,denied,with,commas",
]
VALID_BYTES = [line.encode("utf-8") for line in VALID_LINES]

_INSERTS: list[bytes] = [
    b",", b"|", b"%", b"^", b"#", b"$", b"*", b"-", b"+", b" ", b".",
    b",,", b"||", b"%%", b"^^", b"##", b"$$",
    b"\x00", b"\r", b"\n", b"\r\n", b"\t", b"\x7f",
    b"\xff", b"\xfe", b"\xc3", b"\xa9", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf",
    "é".encode(), "😀".encode(), "\u2028".encode(), "\ufeff".encode(), "٣".encode(), "²".encode(),
    b"%C3", b"%c3%a9", b"%ZZ", b"%2", b"%00", b"%ED%A0%80", b"%FF", b"%2C", b"%7C",
    b"^P", b"^T", b"^0", b"^999999999", b"^-1", b"^P[", b"^Tz", b"^TZZZZZZZZZZZa",
    b"9" * 25, b"0" * 30, b"-0", b"1e9", b"0x1F", b"1_0", b"nan", b"inf",
    b"LS_password=" + SECRET.encode(),
]  # fmt: skip
_TEXT_INSERTS = [b.decode("utf-8", "surrogateescape") for b in _INSERTS if b"LS_" not in b] + [
    "\ud800", "\udfff", "\U0010ffff", "\x00", "\x85",
]


def mutate_bytes(line: bytes, rnd: random.Random) -> bytes:
    """Apply 1-6 random byte-level mutations to ``line``."""
    data = bytearray(line)
    for _ in range(rnd.randint(1, 6)):
        op = rnd.randrange(10)
        pos = rnd.randint(0, len(data))
        if op == 0 and data:  # bit flip
            i = rnd.randrange(len(data))
            data[i] ^= 1 << rnd.randrange(8)
        elif op == 1 and data:  # byte replaced by any byte
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        elif op in (2, 3):  # insertion of a meaningful or hostile sequence
            data[pos:pos] = rnd.choice(_INSERTS)
        elif op == 4:  # truncation
            del data[pos:]
        elif op == 5:  # deletion of a span
            del data[pos : pos + rnd.randint(1, 8)]
        elif op == 6:  # duplicated separators
            seps = [i for i, b in enumerate(data) if b in b",|%^"]
            if seps:
                i = rnd.choice(seps)
                data[i:i] = bytes([data[i]]) * rnd.randint(1, 3)
        elif op == 7:  # duplicated span
            span = bytes(data[pos : pos + rnd.randint(1, 12)])
            data[pos:pos] = span
        elif op == 8:  # splice with another valid line
            other = rnd.choice(VALID_BYTES)
            cut = rnd.randint(0, len(other))
            data = data[:pos] + other[cut:]
        else:  # a separator replaced by another
            seps = [i for i, b in enumerate(data) if b in b",|"]
            if seps:
                data[rnd.choice(seps)] = rnd.choice(b",|%^#$")
    return bytes(data)


def mutate_text(line: str, rnd: random.Random, inserts: list[str] = _TEXT_INSERTS) -> str:
    """Apply 1-6 random character-level mutations (may produce lone surrogates)."""
    for _ in range(rnd.randint(1, 6)):
        op = rnd.randrange(6)
        pos = rnd.randint(0, len(line))
        if op in (0, 1):
            line = line[:pos] + rnd.choice(inserts) + line[pos:]
        elif op == 2:
            line = line[:pos]
        elif op == 3:
            line = line[:pos] + line[pos + rnd.randint(1, 5) :]
        elif op == 4 and line:
            i = rnd.randrange(len(line))
            code = rnd.choice([0, 0x7F, 0xE9, 0xD800, 0x1F600, rnd.randrange(0x30000)])
            line = line[:i] + chr(code) + line[i + 1 :]
        else:
            seps = [i for i, c in enumerate(line) if c in ",|%^#$"]
            if seps:
                i = rnd.choice(seps)
                line = line[:i] + line[i] * rnd.randint(2, 4) + line[i + 1 :]
    return line


SEEDS = st.integers(min_value=0, max_value=2**64 - 1)

# --------------------------------------------------------------------------- checks


def check_error(exc: ProtocolError, *, secret: str | None = None) -> None:
    """What every error we raise must look like."""
    assert isinstance(exc, ProtocolError)
    assert exc.code == 61
    assert isinstance(exc.reason, str) and exc.reason
    assert len(exc.reason) <= MAX_LINE_EXCERPT + 1
    if exc.line is not None:
        assert isinstance(exc.line, str)
        assert len(exc.line) <= MAX_LINE_EXCERPT + 1
    text = str(exc) + repr(exc)
    if secret is not None:
        assert secret not in text


_PREVIOUS_ROWS: list[list[str | None]] = [
    ["a", "b", "c", "d", "e"],
    ['{"a":[1,2]}', "[]", "", "x" * 30, '"s"'],
    [None, "1", None, "{}", "hello world"],
]


def exercise(data: bytes | str, *, secret: str | None = None) -> Notification | None:
    """Parse ``data``; decode an update's values too. Only typed errors may escape."""
    try:
        result = parse_bytes(data) if isinstance(data, bytes) else parse_line(data)
    except ProtocolError as exc:
        check_error(exc, secret=secret)
        return None
    assert isinstance(result, Notification.__args__)  # type: ignore[attr-defined]
    if isinstance(result, Update):
        assert result.sub_id >= 1 and result.item >= 1
        for num_fields in (1, 2, 5):
            for previous in (None, _PREVIOUS_ROWS[result.item % 3][:num_fields]):
                try:
                    out = decode_update(result.values, previous, num_fields)
                except ValueDecodeError as exc:
                    check_error(exc, secret=secret)
                    assert exc.field is None or 1 <= exc.field <= num_fields + 1
                else:
                    assert len(out.values) == num_fields
    return result


# --------------------------------------------------------------------------- (1) lines


@examples(6_000)
@given(st.binary(max_size=120))
def test_random_bytes(data: bytes) -> None:
    ran("test_random_bytes")
    exercise(data)


@examples(30_000)
@given(st.sampled_from(VALID_BYTES), SEEDS)
def test_byte_mutations_of_valid_lines(line: bytes, seed: int) -> None:
    ran("test_byte_mutations_of_valid_lines")
    mutated = mutate_bytes(line, random.Random(seed))
    exercise(mutated)


@examples(12_000)
@given(st.sampled_from(VALID_LINES), SEEDS)
def test_text_mutations_of_valid_lines(line: str, seed: int) -> None:
    ran("test_text_mutations_of_valid_lines")
    exercise(mutate_text(line, random.Random(seed)))


_TAGS = sorted({line.split(",", 1)[0] for line in VALID_LINES} | {"MSGDONE", "FUTURE", "SYNC X"})
_NASTY_ARGS = [
    "", " ", "-", "+1", " 1", "1 ", "0", "-0", "00", "1.5", "1e3", "0x1", "1_000", "٣", "²", "Ⅻ",
    "９", "9" * 19, "9" * 20, "9" * 5000, "-" + "9" * 19, "9223372036854775807",
    "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "*", "%", "%2",
    "%ZZ", "%C3", "%C3%A9", "%2A", "%00", "%ED%A0%80", "unlimited", "unmanaged", "filtered",
    "unfiltered", "UNLIMITED", "nan", "inf", ".", "..", ".5", "5.", "1.2.3", "\x00", "\r", "\ud800",
]  # fmt: skip


_ARG_CHARS = ",%|^#$*-+.0123456789aAzZé😀 \x00\r\n\ud800\U0010ffff"


def hostile_argument(rnd: random.Random) -> str:
    if rnd.random() < 0.7:
        return rnd.choice(_NASTY_ARGS)
    return "".join(rnd.choice(_ARG_CHARS) for _ in range(rnd.randint(0, 6)))


@examples(10_000)
@given(st.sampled_from(_TAGS), SEEDS)
def test_known_tags_hostile_arguments(tag: str, seed: int) -> None:
    ran("test_known_tags_hostile_arguments")
    rnd = random.Random(seed)
    args = [hostile_argument(rnd) for _ in range(rnd.randint(0, 7))]
    line = ",".join([tag, *args]) + ("," if rnd.random() < 0.2 else "")
    result = exercise(line)
    if result is not None:
        assert result.tag == tag


@examples(4_000)
@given(st.sampled_from(VALID_LINES), SEEDS, st.sampled_from(["LS_password=", "&LS_password="]))
def test_password_in_any_bad_line_is_redacted(line: str, seed: int, mark: str) -> None:
    ran("test_password_in_any_bad_line_is_redacted")
    rnd = random.Random(seed)
    line = mutate_text(line, rnd)
    pos = rnd.randint(0, len(line))
    # Whatever precedes or follows it, a password behind its parameter name never shows.
    hostile = line[:pos] + mark + SECRET + line[pos:]
    exercise(hostile, secret=SECRET)
    exercise(hostile.encode("utf-8", "surrogatepass"), secret=SECRET)


# --------------------------------------------------------------------------- (2) valid lines

_DECODED = st.text(
    st.one_of(st.sampled_from(list(",%|^#$*+-.: é😀\r\n\x00")), st.characters(codec="utf-8")),
    max_size=10,
)
_NAT = st.integers(0, 2**63 - 1)
_POS = st.integers(1, 2**63 - 1)
_INT = st.integers(-(2**63), 2**63 - 1)
_HEX = "0123456789ABCDEF"
_DECIMALS = st.one_of(
    st.from_regex(r"[0-9]{1,6}(\.[0-9]{0,4})?", fullmatch=True),
    st.from_regex(r"\.[0-9]{1,4}", fullmatch=True),
)


def wire(draw: st.DrawFn, text: str, *, last: bool, star: bool = False) -> str:
    """Encode ``text`` as a first-level argument, percent-encoding at random (§2.5)."""
    out = []
    for ch in text:
        must = ch in "%\r\n" or (ch == "," and not last)
        if must or draw(st.integers(0, 4)) == 0:
            for byte in ch.encode("utf-8"):
                hexa = f"{_HEX[byte >> 4]}{_HEX[byte & 15]}"
                out.append("%" + (hexa.lower() if draw(st.booleans()) else hexa))
        else:
            out.append(ch)
    result = "".join(out)
    if star and result == "*":
        result = "%2A"
    return result


def num(value: int) -> str:
    return str(value)


@st.composite
def valid_lines(draw: st.DrawFn) -> tuple[str, Notification]:
    """A valid line of any tag, and what it must parse to."""
    tag = draw(st.sampled_from(sorted(_BUILDERS)))
    return _BUILDERS[tag](draw)


def _text_arg(draw: st.DrawFn, last: bool = False) -> tuple[str, str]:
    value = draw(_DECODED)
    return wire(draw, value, last=last), value


def _seq_arg(draw: st.DrawFn) -> tuple[str, str | None]:
    if draw(st.booleans()):
        return "*", None
    value = draw(_DECODED)
    return wire(draw, value, last=False, star=True), value


def _b_conok(d: st.DrawFn) -> tuple[str, Notification]:
    sid_w, sid = _text_arg(d)
    limit, keep = d(_NAT), d(_NAT)
    link_w, link = _seq_arg(d)
    return f"CONOK,{sid_w},{limit},{keep},{link_w}", ConOk(sid, limit, keep, link)


def _b_code_msg(cls: Any, tag: str) -> Callable[[st.DrawFn], tuple[str, Notification]]:
    def build(d: st.DrawFn) -> tuple[str, Notification]:
        code = d(_INT)
        msg_w, msg = _text_arg(d, last=True)
        return f"{tag},{code},{msg_w}", cls(code, msg)

    return build


def _b_one_text(cls: Any, tag: str) -> Callable[[st.DrawFn], tuple[str, Notification]]:
    def build(d: st.DrawFn) -> tuple[str, Notification]:
        w, v = _text_arg(d, last=True)
        return f"{tag},{w}", cls(v)

    return build


def _b_one_num(cls: Any, tag: str, values: st.SearchStrategy[int]) -> Callable[
    [st.DrawFn], tuple[str, Notification]
]:
    def build(d: st.DrawFn) -> tuple[str, Notification]:
        v = d(values)
        return f"{tag},{v}", cls(v)

    return build


def _b_cons(d: st.DrawFn) -> tuple[str, Notification]:
    v = d(st.one_of(st.sampled_from(["unlimited", "unmanaged"]), _DECIMALS))
    return f"CONS,{wire(d, v, last=True)}", Cons(v)


def _b_reqerr(d: st.DrawFn) -> tuple[str, Notification]:
    id_w, req = _text_arg(d)
    code = d(_INT)
    msg_w, msg = _text_arg(d, last=True)
    return f"REQERR,{id_w},{code},{msg_w}", ReqErr(req, code, msg)


def _b_update(d: st.DrawFn) -> tuple[str, Notification]:
    sub, item = d(_POS), d(_POS)
    raw = d(st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20))
    return f"U,{sub},{item},{raw}", Update(sub, item, raw)


def _b_subok(d: st.DrawFn) -> tuple[str, Notification]:
    a, b, c = d(_POS), d(_POS), d(_POS)
    return f"SUBOK,{a},{b},{c}", SubOk(a, b, c)


def _b_subcmd(d: st.DrawFn) -> tuple[str, Notification]:
    v = [d(_POS) for _ in range(5)]
    return "SUBCMD," + ",".join(map(str, v)), SubCmd(*v)


def _b_two_pos(cls: Any, tag: str) -> Callable[[st.DrawFn], tuple[str, Notification]]:
    def build(d: st.DrawFn) -> tuple[str, Notification]:
        a, b = d(_POS), d(_POS)
        return f"{tag},{a},{b}", cls(a, b)

    return build


def _b_ov(d: st.DrawFn) -> tuple[str, Notification]:
    a, b, c = d(_POS), d(_POS), d(_NAT)
    return f"OV,{a},{b},{c}", Overflow(a, b, c)


def _b_conf(d: st.DrawFn) -> tuple[str, Notification]:
    sub = d(_POS)
    freq = d(st.one_of(st.just("unlimited"), _DECIMALS))
    filtered = d(st.booleans())
    flag = "filtered" if filtered else "unfiltered"
    return f"CONF,{sub},{wire(d, freq, last=False)},{flag}", Conf(sub, freq, filtered)


def _b_msgdone(d: st.DrawFn) -> tuple[str, Notification]:
    seq_w, seq = _seq_arg(d)
    prog = d(_NAT)
    if d(st.booleans()):
        # TLCP 2.4 form: no response (and then no comma may follow the progressive).
        return f"MSGDONE,{seq_w},{prog}", MsgDone(seq, prog, None)
    resp_w, resp = _text_arg(d, last=True)
    return f"MSGDONE,{seq_w},{prog},{resp_w}", MsgDone(seq, prog, resp)


def _b_msgfail(d: st.DrawFn) -> tuple[str, Notification]:
    seq_w, seq = _seq_arg(d)
    prog, code = d(_NAT), d(_INT)
    msg_w, msg = _text_arg(d, last=True)
    return f"MSGFAIL,{seq_w},{prog},{code},{msg_w}", MsgFail(seq, prog, code, msg)


def _b_mpnreg(d: st.DrawFn) -> tuple[str, Notification]:
    a_w, a = _text_arg(d)
    b_w, b = _text_arg(d, last=True)
    return f"MPNREG,{a_w},{b_w}", MpnReg(a, b)


def _b_mpnok(d: st.DrawFn) -> tuple[str, Notification]:
    sub = d(_POS)
    w, v = _text_arg(d, last=True)
    return f"MPNOK,{sub},{w}", MpnOk(sub, v)


def _b_fixed(line: str, value: Notification) -> Callable[[st.DrawFn], tuple[str, Notification]]:
    return lambda d: (line, value)


_BUILDERS: dict[str, Callable[[st.DrawFn], tuple[str, Notification]]] = {
    "CONOK": _b_conok,
    "CONERR": _b_code_msg(ConErr, "CONERR"),
    "END": _b_code_msg(End, "END"),
    "ERROR": _b_code_msg(Error, "ERROR"),
    "LOOP": _b_one_num(Loop, "LOOP", _NAT),
    "SYNC": _b_one_num(Sync, "SYNC", _NAT),
    "PROG": _b_one_num(Prog, "PROG", _NAT),
    "UNSUB": _b_one_num(Unsub, "UNSUB", _POS),
    "SERVNAME": _b_one_text(ServName, "SERVNAME"),
    "CLIENTIP": _b_one_text(ClientIp, "CLIENTIP"),
    "NOOP": _b_one_text(Noop, "NOOP"),
    "REQOK": _b_one_text(ReqOk, "REQOK"),
    "MPNZERO": _b_one_text(MpnZero, "MPNZERO"),
    "MPNCONF": _b_one_text(MpnConf, "MPNCONF"),
    "MPNDEL": _b_one_text(MpnDel, "MPNDEL"),
    "CONS": _b_cons,
    "REQERR": _b_reqerr,
    "U": _b_update,
    "SUBOK": _b_subok,
    "SUBCMD": _b_subcmd,
    "EOS": _b_two_pos(EndOfSnapshot, "EOS"),
    "CS": _b_two_pos(ClearSnapshot, "CS"),
    "OV": _b_ov,
    "CONF": _b_conf,
    "MSGDONE": _b_msgdone,
    "MSGFAIL": _b_msgfail,
    "MPNREG": _b_mpnreg,
    "MPNOK": _b_mpnok,
    "PROBE": _b_fixed("PROBE", parse_line("PROBE")),
    "WSOK": _b_fixed("WSOK", parse_line("WSOK")),
    "REQOK-bare": _b_fixed("REQOK", ReqOk(None)),
}


@examples(5_000)
@given(valid_lines())
def test_generated_valid_lines_parse(case: tuple[str, Notification]) -> None:
    ran("test_generated_valid_lines_parse")
    line, expected = case
    assert parse_line(line) == expected
    assert parse_bytes(line.encode("utf-8")) == expected


# --------------------------------------------------------------------------- (3) values


def encode_field(value: str | None) -> str:
    """Server-side encoding of one field value (tlcp.md §5)."""
    if value is None:
        return "#"
    if value == "":
        return "$"
    out = "".join(encode_value(ch) if ch in "|%\r\n" or ch > "\x7e" else ch for ch in value)
    if out[0] in "#$^":
        out = encode_value(out[0]) + out[1:]
    return out


def tlcp_int(value: int) -> str:
    digits = [value % 26]
    value //= 26
    while value:
        digits.append(value % 26)
        value //= 26
    digits.reverse()
    return "".join(chr(65 + x) for x in digits[:-1]) + chr(97 + digits[-1])


def make_diff(old: str, new: str) -> str:
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    added = new[prefix : len(new) - suffix]
    # Counts are UTF-16 code units, as the official clients count them.
    return (
        tlcp_int(_units(old[:prefix])) + tlcp_int(_units(added)) + added
        + tlcp_int(_units(old[prefix : len(old) - suffix]))
        + tlcp_int(_units(old[len(old) - suffix :]))
    )  # fmt: skip


def _units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


_VALUE = st.one_of(
    st.none(),
    st.just(""),
    st.text(st.sampled_from(list("ab|#$^%é😀 ,\x00")), max_size=8),
    st.text(st.characters(codec="utf-8"), max_size=8),
)


@st.composite
def encoded_rows(draw: st.DrawFn) -> tuple[str, list[str | None] | None, list[str | None]]:
    """A previous row (or None), a new row, and the server's encoding of the new row."""
    n = draw(st.integers(1, 6))
    new = draw(st.lists(_VALUE, min_size=n, max_size=n))
    previous = draw(st.one_of(st.none(), st.lists(_VALUE, min_size=n, max_size=n)))
    tokens: list[str] = []
    unchanged = 0
    for i, value in enumerate(new):
        if previous is not None and previous[i] == value and draw(st.booleans()):
            unchanged += 1
            continue
        if unchanged:
            tokens.append("" if unchanged == 1 and draw(st.booleans()) else f"^{unchanged}")
            unchanged = 0
        old = None if previous is None else previous[i]
        if old is not None and value is not None and draw(st.booleans()):
            tokens.append("^T" + encode_value(make_diff(old, value)))
        else:
            tokens.append(encode_field(value))
    if unchanged:
        tokens.append("" if unchanged == 1 and draw(st.booleans()) else f"^{unchanged}")
    return "|".join(tokens), previous, new


@examples(3_000)
@given(encoded_rows())
def test_valid_rows_round_trip(case: tuple[str, list[str | None] | None, list[str | None]]) -> None:
    ran("test_valid_rows_round_trip")
    raw, previous, new = case
    parsed = parse_line(f"U,1,1,{raw}")
    assert isinstance(parsed, Update)
    assert decode_update(parsed.values, previous, len(new)).values == new


_ROW_CHARS = "ab|#$^%é😀 ,\x00"


def random_value(rnd: random.Random) -> str | None:
    kind = rnd.randrange(5)
    if kind == 0:
        return None
    if kind == 1:
        return ""
    if kind == 2:
        return "".join(rnd.choice(_ROW_CHARS) for _ in range(rnd.randint(1, 8)))
    return "".join(chr(rnd.choice([rnd.randrange(32, 127), rnd.randrange(0x80, 0xD800),
                                   rnd.randrange(0xE000, 0x110000)]))
                   for _ in range(rnd.randint(1, 8)))  # fmt: skip


def random_encoded_row(
    rnd: random.Random,
) -> tuple[str, list[str | None] | None, list[str | None]]:
    """Like `encoded_rows`, from a seeded generator (much cheaper per example)."""
    n = rnd.randint(1, 6)
    previous = None if rnd.random() < 0.3 else [random_value(rnd) for _ in range(n)]
    new = [
        previous[i] if previous is not None and rnd.random() < 0.4 else random_value(rnd)
        for i in range(n)
    ]
    tokens: list[str] = []
    unchanged = 0
    for i, value in enumerate(new):
        old = None if previous is None else previous[i]
        if previous is not None and old == value and rnd.random() < 0.7:
            unchanged += 1
            continue
        if unchanged:
            tokens.append("" if unchanged == 1 and rnd.random() < 0.5 else f"^{unchanged}")
            unchanged = 0
        if old is not None and value is not None and rnd.random() < 0.5:
            tokens.append("^T" + encode_value(make_diff(old, value)))
        else:
            tokens.append(encode_field(value))
    if unchanged:
        tokens.append("" if unchanged == 1 and rnd.random() < 0.5 else f"^{unchanged}")
    return "|".join(tokens), previous, new


@examples(14_000)
@given(SEEDS)
def test_update_value_mutations(seed: int) -> None:
    ran("test_update_value_mutations")
    rnd = random.Random(seed)
    raw, previous, new = random_encoded_row(rnd)
    assert decode_update(raw, previous, len(new)).values == new
    mutated = mutate_text(raw, rnd)
    num_fields = max(1, len(new) + rnd.randint(-1, 1))
    if previous is not None and len(previous) != num_fields:
        previous = (previous * num_fields)[:num_fields]
    snapshot = None if previous is None else list(previous)
    try:
        out = decode_update(mutated, previous, num_fields)
    except ValueDecodeError as exc:
        check_error(exc)
        assert exc.field is None or 1 <= exc.field <= num_fields + 1
    else:
        assert len(out.values) == num_fields
        assert all(v is None or isinstance(v, str) for v in out.values)
    assert previous == snapshot  # the baseline is never modified in place


_DIFF_INSERTS = ["a", "z", "A", "Z", "ZZZZZZZZZZZZZZZZZZz", "Bz", "\x00", "é", "😀", "%", "|", "^",
                 "\ud800", "", "aaaa", "zzzz", "Aa"]  # fmt: skip


def random_text(rnd: random.Random, size: int, alphabet: str = "abcxyz é😀%|") -> str:
    out = []
    for _ in range(rnd.randint(0, size)):
        if rnd.random() < 0.8:
            out.append(rnd.choice(alphabet))
        else:
            out.append(chr(rnd.randrange(0x110000)))  # may be a lone surrogate
    return "".join(out)


@examples(8_000)
@given(SEEDS)
def test_tlcp_diff_mutations(seed: int) -> None:
    ran("test_tlcp_diff_mutations")
    rnd = random.Random(seed)
    old = random_text(rnd, 30)
    new = old[: rnd.randint(0, len(old))] + random_text(rnd, 10) + old[rnd.randint(0, len(old)) :]
    diff = make_diff(old, new)
    assert apply_tlcp_diff(old, diff) == new
    mutated = mutate_text(diff, rnd, _DIFF_INSERTS)
    try:
        result = apply_tlcp_diff(old, mutated)
    except ValueDecodeError as exc:
        check_error(exc)
    else:
        # A diff can never build more than its inputs hold.
        assert len(result) <= len(old) + len(mutated)


_PCT_PIECES = ["%", "%2", "%C3", "%c3%A9", "%ZZ", "%%", "%00", "%ED%A0%80", "%C0%AF",
               "%F4%90%80%80", "%E2%98", "%e2%98%83", "%FF", "%7c", "+", "\ud800", "é", "a",
               "%41%", "%4"]  # fmt: skip


@examples(6_000)
@given(SEEDS)
def test_percent_decode_hostile(seed: int) -> None:
    ran("test_percent_decode_hostile")
    rnd = random.Random(seed)
    text = "".join(
        rnd.choice(_PCT_PIECES) if rnd.random() < 0.6 else random_text(rnd, 2)
        for _ in range(rnd.randint(0, 8))
    )
    try:
        result = percent_decode(text)
    except ValueDecodeError as exc:
        check_error(exc)
    else:
        assert isinstance(result, str)
        if "%" not in text:
            assert result == text
        else:
            assert len(result) <= len(text)


_POINTERS = ["", "/", "/a", "/b", "/a/0", "/a/-", "/0", "/-", "/~0", "/~1", "/~2", "/~", "a",
             "/a/b/c", "/a/99", "/a/-1", "/a/01", "/a/0/a"]  # fmt: skip
_OPS = ["add", "remove", "replace", "move", "copy", "test", "bogus"]


def random_json(rnd: random.Random, depth: int = 0) -> Any:
    kind = rnd.randrange(8 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rnd.random() < 0.5
    if kind == 2:
        return rnd.randint(-5, 5)
    if kind == 3:
        return rnd.choice([0.5, -1e300, 1e-300, 3.0])
    if kind in (4, 5):
        return random_text(rnd, 3)
    if kind == 6:
        return [random_json(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    return {rnd.choice("abc"): random_json(rnd, depth + 1) for _ in range(rnd.randint(0, 3))}


def random_patch(rnd: random.Random) -> str:
    kind = rnd.randrange(10)
    if kind == 0:
        return json.dumps(random_json(rnd))
    if kind == 1:
        return random_text(rnd, 12, '[]{}",:0aop/')
    if kind == 2:
        return "[" * rnd.choice([10, 5000])
    ops: list[Any] = []
    for _ in range(rnd.randint(0, 5)):
        if rnd.random() < 0.1:
            ops.append(random_json(rnd))
            continue
        op: dict[str, Any] = {"op": rnd.choice(_OPS)}
        for key in ("path", "from"):
            if rnd.random() < 0.8:
                op[key] = rnd.choice(_POINTERS)
        if rnd.random() < 0.7:
            op["value"] = random_json(rnd)
        ops.append(op)
    return json.dumps(ops, allow_nan=rnd.random() < 0.5)


@examples(6_000)
@given(SEEDS)
def test_json_patch_hostile(seed: int) -> None:
    ran("test_json_patch_hostile")
    rnd = random.Random(seed)
    old = json.dumps(random_json(rnd)) if rnd.random() < 0.9 else random_text(rnd, 5)
    payload = random_patch(rnd)
    try:
        payload.encode("utf-8")
        encodable = True
    except UnicodeEncodeError:
        encodable = False  # lone surrogates: a server could not have sent them encoded
    if encodable and rnd.random() < 0.5:
        encoded = encode_value(payload)
    else:
        encoded = payload.replace("|", "%7C")
    try:
        out = decode_update("^P" + encoded, [old], 1)
    except ValueDecodeError as exc:
        check_error(exc)
        assert exc.field in (1, 2)
    else:
        value = out.values[0]
        assert value is not None
        json.loads(value)
        assert out.patches is not None and isinstance(out.patches[0], list)


# --------------------------------------------------------------------------- regressions


def test_numbers_are_64_bit() -> None:
    assert parse_line("LOOP,9223372036854775807") == Loop(2**63 - 1)
    assert parse_line("ERROR,-9223372036854775808,x") == Error(-(2**63), "x")
    for line in ("LOOP,9223372036854775808", "ERROR,-9223372036854775809,x",
                 "SYNC," + "1" * 4300, "PROG," + "1" * 100_000, "OV,1,1," + "0" * 40):
        with pytest.raises(ProtocolError) as info:
            parse_line(line)
        check_error(info.value)
        assert "64-bit" in info.value.reason  # fmt: skip


def test_json_patch_copy_bomb_is_refused() -> None:
    # 30 operations (~1.4 kB) would double a document 30 times (a billion nodes).
    ops = [{"op": "copy", "from": "/a", "path": "/a/-"}] * 30
    with pytest.raises(ValueDecodeError) as info:
        decode_update("^P" + encode_value(json.dumps(ops)), ['{"a":[1]}'], 1)
    assert "copy" in info.value.reason
    # A few legitimate copies still work.
    out = decode_update("^P" + encode_value(json.dumps(ops[:3])), ['{"a":[1]}'], 1)
    assert out.values == ['{"a":[1,[1],[1,[1]],[1,[1],[1,[1]]]]}']
    big = json.dumps({"a": ["x" * 1000] * 100})
    copy_once = [{"op": "copy", "from": "/a", "path": "/b"}]
    out = decode_update("^P" + encode_value(json.dumps(copy_once)), [big], 1)
    assert json.loads(out.values[0] or "")["b"] == ["x" * 1000] * 100


def test_diff_results_are_bounded() -> None:
    old = "x" * 100
    grow = make_diff(old, old + "y" * 100)
    assert decode_update("^T" + encode_value(grow), [old], 1).values == [old + "y" * 100]
    with pytest.raises(ValueDecodeError) as info:
        decode_update("^T" + encode_value(grow), [old], 1, max_diff_result=150)
    assert "150" in info.value.reason
    patch = json.dumps([{"op": "add", "path": "/b", "value": "y" * 200}])
    with pytest.raises(ValueDecodeError):
        decode_update("^P" + encode_value(patch), ['{"a":1}'], 1, max_diff_result=150)


def test_reasons_quoting_the_line_are_redacted() -> None:
    with pytest.raises(ValueDecodeError) as info:
        decode_update("^xLS_password=" + SECRET, None, 1)
    check_error(info.value, secret=SECRET)
    assert SECRET[:4] not in repr(info.value.args)


def test_generated_input_total() -> None:
    """The module generates at least 100,000 inputs (checked when every test ran)."""
    assert sum(EXPECTED.values()) >= 100_000
    if set(RAN) != set(EXPECTED):
        pytest.skip("only part of the module ran")
    if not FULL:
        pytest.skip("a tenth of the inputs ran: TXLS_FUZZ=full runs all of them")
    # Hypothesis runs exactly max_examples examples unless a test fails first.
    assert sum(RAN.values()) >= 100_000, dict(RAN)
