"""Tests for txlightstreamer.protocol.notifications."""

from __future__ import annotations

import dataclasses

import pytest

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
    Probe,
    Prog,
    ProtocolError,
    ReqErr,
    ReqOk,
    ServName,
    SubCmd,
    SubOk,
    Sync,
    UnknownTagError,
    Unsub,
    Update,
    WsOk,
    parse_bytes,
    parse_line,
)

ALL_CLASSES: list[type] = [
    ConOk, ConErr, End, Loop, ServName, ClientIp, Cons, Probe, Noop, Sync, Prog, WsOk,
    ReqOk, ReqErr, Error, Update, SubOk, SubCmd, Unsub, EndOfSnapshot, ClearSnapshot,
    Overflow, Conf, MsgDone, MsgFail, MpnReg, MpnZero, MpnOk, MpnConf, MpnDel,
]  # fmt: skip

DATA_TAGS = {
    "U", "SUBOK", "SUBCMD", "UNSUB", "EOS", "CS", "OV", "CONF", "MSGDONE", "MSGFAIL",
    "MPNREG", "MPNZERO", "MPNOK", "MPNCONF", "MPNDEL",
}  # fmt: skip

VALID: list[tuple[str, Notification]] = [
    (
        "CONOK,S73d162c183916f0dT2729905,50000,5000,*",
        ConOk("S73d162c183916f0dT2729905", 50000, 5000, None),
    ),
    (
        "CONOK,S1,50000,19000,push.example.com:8080",
        ConOk("S1", 50000, 19000, "push.example.com:8080"),
    ),
    ("CONOK,S1,50000,0,host.com/TestPrefix", ConOk("S1", 50000, 0, "host.com/TestPrefix")),
    ("CONOK,S1,50000,0,%2A", ConOk("S1", 50000, 0, "*")),
    ("CONERR,1,User/password check failed", ConErr(1, "User/password check failed")),
    ("CONERR,-3,", ConErr(-3, "")),
    ("END,31,Destroy invoked by client", End(31, "Destroy invoked by client")),
    ("END,48,Max duration, bye", End(48, "Max duration, bye")),
    ("LOOP,0", Loop(0)),
    ("LOOP,1500", Loop(1500)),
    ("SERVNAME,Lightstreamer HTTP Server", ServName("Lightstreamer HTTP Server")),
    ("SERVNAME,My%20Server%2C%20Inc", ServName("My Server, Inc")),
    ("CLIENTIP,127.0.0.1", ClientIp("127.0.0.1")),
    ("CLIENTIP,::1", ClientIp("::1")),
    ("CONS,unlimited", Cons("unlimited")),
    ("CONS,unmanaged", Cons("unmanaged")),
    ("CONS,40.5", Cons("40.5")),
    ("PROBE", Probe()),
    ("NOOP,", Noop("")),
    ("NOOP,.........", Noop(".........")),
    ("SYNC,12", Sync(12)),
    ("PROG,11", Prog(11)),
    ("PROG,0", Prog(0)),
    ("WSOK", WsOk()),
    ("REQOK", ReqOk(None)),
    ("REQOK,1", ReqOk("1")),
    ("REQOK,abc12", ReqOk("abc12")),
    ("REQERR,3,19,Subscription not found", ReqErr("3", 19, "Subscription not found")),
    ("REQERR,7,-2,Denied, sorry", ReqErr("7", -2, "Denied, sorry")),
    ("ERROR,67,Malformed request", Error(67, "Malformed request")),
    (
        "U,3,1,20:00:33|3.04|0.0|2.41|3.67|3.03|3.04|#|#|$",
        Update(3, 1, "20:00:33|3.04|0.0|2.41|3.67|3.03|3.04|#|#|$"),
    ),
    ("U,1,2,a,b,c|d%7C", Update(1, 2, "a,b,c|d%7C")),
    ("U,1,1,", Update(1, 1, "")),
    ("U,12,34,bar%c3%a0%C3%A8%25%23%24%5E", Update(12, 34, "bar%c3%a0%C3%A8%25%23%24%5E")),
    ("U,3,1,😀", Update(3, 1, "😀")),
    ("U,01,007,x", Update(1, 7, "x")),
    ("U,1234567890,1,x", Update(1234567890, 1, "x")),
    ("SUBOK,1,2,10", SubOk(1, 2, 10)),
    ("SUBCMD,1,2,4,3,4", SubCmd(1, 2, 4, 3, 4)),
    ("UNSUB,5", Unsub(5)),
    ("EOS,1,2", EndOfSnapshot(1, 2)),
    ("CS,1,2", ClearSnapshot(1, 2)),
    ("OV,1,2,30", Overflow(1, 2, 30)),
    ("OV,1,2,0", Overflow(1, 2, 0)),
    ("CONF,1,unlimited,filtered", Conf(1, "unlimited", True)),
    ("CONF,2,10.5,unfiltered", Conf(2, "10.5", False)),
    ("CONF,2,3,filtered", Conf(2, "3", True)),
    ("MSGDONE,*,1", MsgDone(None, 1, None)),
    ("MSGDONE,seq,2", MsgDone("seq", 2, None)),
    ("MSGDONE,*,1,", MsgDone(None, 1, "")),
    ("MSGDONE,seq,2,done", MsgDone("seq", 2, "done")),
    ("MSGDONE,seq,2,a,b,c", MsgDone("seq", 2, "a,b,c")),
    ("MSGDONE,seq,2,caf%C3%A9%2C", MsgDone("seq", 2, "café,")),
    ("MSGFAIL,*,3,38,Timeout", MsgFail(None, 3, 38, "Timeout")),
    ("MSGFAIL,seq,3,39,2", MsgFail("seq", 3, 39, "2")),
    (
        "MSGFAIL,seq,2,-5,http://www.example.com/?text=nick+242+I%C3%B1t%C3%ABrn%C3%A2ti"
        "%C3%B4n%C3%A0liz%C3%A6ti%C3%B8n%E2%98%83",
        MsgFail("seq", 2, -5, "http://www.example.com/?text=nick+242+Iñtërnâtiônàlizætiøn☃"),
    ),
    ("MSGFAIL,s,1,-1,a,b", MsgFail("s", 1, -1, "a,b")),
    ("MPNREG,dev1,MPN_ADAPTER", MpnReg("dev1", "MPN_ADAPTER")),
    ("MPNZERO,dev1", MpnZero("dev1")),
    ("MPNOK,3,mpnsub-1", MpnOk(3, "mpnsub-1")),
    ("MPNCONF,mpnsub-1", MpnConf("mpnsub-1")),
    ("MPNDEL,mpnsub-1", MpnDel("mpnsub-1")),
]


@pytest.mark.parametrize(("line", "expected"), VALID, ids=[v[0][:40] for v in VALID])
def test_parse_valid(line: str, expected: Notification) -> None:
    parsed = parse_line(line)
    assert type(parsed) is type(expected)
    assert parsed == expected
    assert parse_bytes(line.encode("utf-8")) == expected


def test_every_class_is_covered() -> None:
    covered = {type(expected) for _, expected in VALID}
    assert covered == set(ALL_CLASSES)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_class_flags(cls: type) -> None:
    assert cls.is_data is (cls.tag in DATA_TAGS)  # type: ignore[attr-defined]
    assert dataclasses.is_dataclass(cls)
    assert hasattr(cls, "__slots__")
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_tags() -> None:
    tags = {cls.tag for cls in ALL_CLASSES}  # type: ignore[attr-defined]
    assert len(tags) == len(ALL_CLASSES)
    assert EndOfSnapshot.tag == "EOS"
    assert ClearSnapshot.tag == "CS"
    assert Overflow.tag == "OV"
    assert Update.tag == "U"
    for line, expected in VALID:
        assert line.split(",", 1)[0] == expected.tag


def test_frozen() -> None:
    upd = parse_line("U,1,1,a")
    assert isinstance(upd, Update)
    with pytest.raises(dataclasses.FrozenInstanceError):
        upd.sub_id = 2  # type: ignore[misc]


def test_cons_kbps() -> None:
    assert Cons("unlimited").kbps is None
    assert Cons("unmanaged").kbps is None
    assert Cons("40.5").kbps == 40.5
    assert Cons("12").kbps == 12.0


def test_conf_frequency() -> None:
    assert Conf(1, "unlimited", True).frequency is None
    assert Conf(1, "0.5", True).frequency == 0.5


def test_update_raw_values_kept() -> None:
    upd = parse_line("U,1,1,a%2Cb,c|%7C|#")
    assert isinstance(upd, Update)
    assert upd.values == "a%2Cb,c|%7C|#"


MALFORMED = [
    "",
    "FOO",
    "FOO,1,2",
    "u,1,1,a",
    "conok,S1,1,2,*",
    " PROBE",
    "PROBE ",
    "PROBE,",
    "WSOK,x",
    "U",
    "U,",
    "U,1",
    "U,1,1",
    "U,x,1,a",
    "U,1,x,a",
    "U,0,1,a",
    "U,1,0,a",
    "U,-1,1,a",
    "U,+1,1,a",
    "U, 1,1,a",
    "U,1_0,1,a",
    "U,١,1,a",
    "U,²,1,a",
    "U,,1,a",
    "U," + "9" * 5000 + ",1,a",
    "SUBOK,1,,2",
    "SUBOK,1,2",
    "SUBOK,1,2,3,4",
    "SUBOK,0,1,1",
    "SUBOK,1,0,1",
    "SUBOK,1,1,0",
    "SUBCMD,1,2,4,3",
    "SUBCMD,1,2,4,0,4",
    "CONOK,S1,abc,5000,*",
    "CONOK,S1,50000,5000",
    "CONOK,S1,50000,-1,*",
    "CONOK,S1,50000,5000,%G0",
    "CONERR,x,msg",
    "CONERR,1",
    "CONERR,1,bad%",
    "CONERR,1,bad%4",
    "CONERR,1,bad%C3",
    "CONERR,1,%FF",
    "END,31",
    "END,,x",
    "LOOP",
    "LOOP,",
    "LOOP,-5",
    "LOOP,1.5",
    "LOOP,1,2",
    "SERVNAME",
    "SERVNAME,%%",
    "CLIENTIP,%2",
    "CONS,fast",
    "CONS,",
    "CONS,-1",
    "CONS,1e5",
    "NOOP",
    "NOOP,%zz",
    "SYNC,abc",
    "SYNC,-1",
    "PROG,x",
    "PROG,-1",
    "REQOK,%",
    "REQERR,1,2",
    "REQERR,1,x,msg",
    "ERROR,1",
    "ERROR,x,y",
    "UNSUB",
    "UNSUB,0",
    "UNSUB,1,2",
    "UNSUB,-1",
    "EOS,1",
    "EOS,1,0",
    "EOS,1,2,3",
    "CS,0,1",
    "CS,1",
    "OV,1,1",
    "OV,1,1,-1",
    "OV,1,1,x",
    "OV,0,1,1",
    "CONF,1,unlimited",
    "CONF,1,unlimited,maybe",
    "CONF,1,fast,filtered",
    "CONF,0,unlimited,filtered",
    "CONF,1,unlimited,FILTERED",
    "MSGDONE",
    "MSGDONE,*",
    "MSGDONE,*,x",
    "MSGDONE,*,-1",
    "MSGDONE,*,1,%ZZ",
    "MSGDONE,%,1",
    "MSGFAIL,*,1,38",
    "MSGFAIL,*,x,38,m",
    "MSGFAIL,*,1,x,m",
    "MSGFAIL,*,1,38,%",
    "MPNREG,dev",
    "MPNZERO",
    "MPNOK,x,y",
    "MPNOK,0,y",
    "MPNOK,1",
    "MPNCONF",
    "MPNDEL",
]


@pytest.mark.parametrize("line", MALFORMED)
def test_parse_malformed(line: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_line(line)
    err = info.value
    assert err.line is not None
    assert err.line == (line if len(line) <= 200 else line[:200] + "…")
    assert err.code == 61
    assert err.reason


def test_unknown_tag_error() -> None:
    with pytest.raises(UnknownTagError) as info:
        parse_line("FUTURE,1,2")
    assert info.value.tag == "FUTURE"
    assert info.value.line == "FUTURE,1,2"
    with pytest.raises(UnknownTagError):
        parse_line("FUTURE")
    # A known tag with a bad shape is not reported as unknown.
    with pytest.raises(ProtocolError) as info2:
        parse_line("CONOK,1")
    assert not isinstance(info2.value, UnknownTagError)


def test_parse_bytes_invalid_utf8() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_bytes(b"SERVNAME,\xff\xfe")
    assert info.value.line is not None
    assert "\\xff" in info.value.line
    with pytest.raises(ProtocolError):
        parse_bytes(b"U,1,1,\xc3")
    with pytest.raises(ProtocolError):
        parse_bytes(b"")


def test_parse_bytes_utf8() -> None:
    assert parse_bytes("U,1,1,😀".encode()) == Update(1, 1, "😀")
    assert parse_bytes("SERVNAME,é".encode()) == ServName("é")


def test_percent_decoding_of_arguments() -> None:
    assert parse_line("REQERR,1,65,a%2Cb%7Cc+d%25") == ReqErr("1", 65, "a,b|c+d%")
    assert parse_line("CONERR,1,%e2%98%83") == ConErr(1, "☃")
    assert parse_line("MPNDEL,%41") == MpnDel("A")
    # The sequence "*" marker is only special when it is the whole argument.
    assert parse_line("MSGDONE,%2A,1") == MsgDone("*", 1, None)


def test_password_in_bad_line_is_redacted() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_line("LS_user=x&LS_password=topsecret")
    assert "topsecret" not in str(info.value)
    with pytest.raises(UnknownTagError) as info2:
        parse_line("LS_password=topsecret,1")
    assert "topsec" not in str(info2.value)
    assert "topsec" not in info2.value.reason
    assert "topsec" not in info2.value.tag
    assert "topsec" not in repr(info2.value.args)


def test_long_bad_line_truncated() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_line("NOPE," + "x" * 1000)
    assert info.value.line is not None
    assert len(info.value.line) == 201
    assert info.value.line.endswith("…")
