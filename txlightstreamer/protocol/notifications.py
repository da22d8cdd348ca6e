"""Server responses and notifications (tlcp.md §2.5, §4) and their parser."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from .errors import ProtocolError, UnknownTagError, ValueDecodeError, redact_line
from .values import percent_decode

__all__ = [
    "ClearSnapshot",
    "ClientIp",
    "Conf",
    "ConErr",
    "ConOk",
    "Cons",
    "End",
    "EndOfSnapshot",
    "Error",
    "Loop",
    "MpnConf",
    "MpnDel",
    "MpnOk",
    "MpnReg",
    "MpnZero",
    "MsgDone",
    "MsgFail",
    "Noop",
    "Notification",
    "Overflow",
    "Probe",
    "Prog",
    "ReqErr",
    "ReqOk",
    "ServName",
    "SubCmd",
    "SubOk",
    "Sync",
    "Unsub",
    "Update",
    "WsOk",
    "parse_bytes",
    "parse_line",
]

_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")

# Integer arguments are Java longs on the server (tlcp.md §2.5).
_MAX_INT = (1 << 63) - 1
_MIN_INT = -(1 << 63)
_MAX_DIGITS = len(str(_MAX_INT))


def _decimal_or_none(text: str) -> float | None:
    return float(text) if _DECIMAL.fullmatch(text) else None


# --------------------------------------------------------------------------- session


@dataclass(frozen=True, slots=True)
class ConOk:
    """``CONOK``: session created or bound."""

    tag: ClassVar[str] = "CONOK"
    is_data: ClassVar[bool] = False
    session_id: str
    request_limit: int
    keepalive_ms: int
    control_link: str | None


@dataclass(frozen=True, slots=True)
class ConErr:
    """``CONERR``: session creation or bind refused."""

    tag: ClassVar[str] = "CONERR"
    is_data: ClassVar[bool] = False
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class End:
    """``END``: session closed by the server."""

    tag: ClassVar[str] = "END"
    is_data: ClassVar[bool] = False
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Loop:
    """``LOOP``: stream connection over, rebind after ``delay_ms``."""

    tag: ClassVar[str] = "LOOP"
    is_data: ClassVar[bool] = False
    delay_ms: int


@dataclass(frozen=True, slots=True)
class ServName:
    """``SERVNAME``: configured server name."""

    tag: ClassVar[str] = "SERVNAME"
    is_data: ClassVar[bool] = False
    name: str


@dataclass(frozen=True, slots=True)
class ClientIp:
    """``CLIENTIP``: client address as seen by the server."""

    tag: ClassVar[str] = "CLIENTIP"
    is_data: ClassVar[bool] = False
    ip: str


@dataclass(frozen=True, slots=True)
class Cons:
    """``CONS``: bandwidth limit in force (``unlimited``, ``unmanaged`` or kbit/s)."""

    tag: ClassVar[str] = "CONS"
    is_data: ClassVar[bool] = False
    bandwidth: str

    @property
    def kbps(self) -> float | None:
        """The numeric limit in kbit/s, or ``None`` when unlimited/unmanaged."""
        return _decimal_or_none(self.bandwidth)


@dataclass(frozen=True, slots=True)
class Probe:
    """``PROBE``: keepalive."""

    tag: ClassVar[str] = "PROBE"
    is_data: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Noop:
    """``NOOP``: filler, to be ignored."""

    tag: ClassVar[str] = "NOOP"
    is_data: ClassVar[bool] = False
    filler: str


@dataclass(frozen=True, slots=True)
class Sync:
    """``SYNC``: seconds elapsed on the server since the bind."""

    tag: ClassVar[str] = "SYNC"
    is_data: ClassVar[bool] = False
    seconds: int


@dataclass(frozen=True, slots=True)
class Prog:
    """``PROG``: progressive of the last data notification already sent."""

    tag: ClassVar[str] = "PROG"
    is_data: ClassVar[bool] = False
    prog: int


@dataclass(frozen=True, slots=True)
class WsOk:
    """``WSOK``: reply to ``wsok``."""

    tag: ClassVar[str] = "WSOK"
    is_data: ClassVar[bool] = False


# --------------------------------------------------------------------------- control


@dataclass(frozen=True, slots=True)
class ReqOk:
    """``REQOK``: request accepted (``req_id`` is ``None`` for a bare ``REQOK``)."""

    tag: ClassVar[str] = "REQOK"
    is_data: ClassVar[bool] = False
    req_id: str | None


@dataclass(frozen=True, slots=True)
class ReqErr:
    """``REQERR``: request refused."""

    tag: ClassVar[str] = "REQERR"
    is_data: ClassVar[bool] = False
    req_id: str
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Error:
    """``ERROR``: unparsable request (no request id)."""

    tag: ClassVar[str] = "ERROR"
    is_data: ClassVar[bool] = False
    code: int
    message: str


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Update:
    """``U``: real-time update; ``values`` is the raw, undecoded value list."""

    tag: ClassVar[str] = "U"
    is_data: ClassVar[bool] = True
    sub_id: int
    item: int
    values: str


@dataclass(frozen=True, slots=True)
class SubOk:
    """``SUBOK``: subscription active."""

    tag: ClassVar[str] = "SUBOK"
    is_data: ClassVar[bool] = True
    sub_id: int
    num_items: int
    num_fields: int


@dataclass(frozen=True, slots=True)
class SubCmd:
    """``SUBCMD``: COMMAND subscription active (1-based key/command positions)."""

    tag: ClassVar[str] = "SUBCMD"
    is_data: ClassVar[bool] = True
    sub_id: int
    num_items: int
    num_fields: int
    key_pos: int
    command_pos: int


@dataclass(frozen=True, slots=True)
class Unsub:
    """``UNSUB``: no more updates for the subscription."""

    tag: ClassVar[str] = "UNSUB"
    is_data: ClassVar[bool] = True
    sub_id: int


@dataclass(frozen=True, slots=True)
class EndOfSnapshot:
    """``EOS``: end of the snapshot of one item."""

    tag: ClassVar[str] = "EOS"
    is_data: ClassVar[bool] = True
    sub_id: int
    item: int


@dataclass(frozen=True, slots=True)
class ClearSnapshot:
    """``CS``: the item's snapshot was cleared."""

    tag: ClassVar[str] = "CS"
    is_data: ClassVar[bool] = True
    sub_id: int
    item: int


@dataclass(frozen=True, slots=True)
class Overflow:
    """``OV``: ``lost`` updates of the item were dropped."""

    tag: ClassVar[str] = "OV"
    is_data: ClassVar[bool] = True
    sub_id: int
    item: int
    lost: int


@dataclass(frozen=True, slots=True)
class Conf:
    """``CONF``: effective max frequency (``unlimited`` or decimal) and filtering."""

    tag: ClassVar[str] = "CONF"
    is_data: ClassVar[bool] = True
    sub_id: int
    max_frequency: str
    filtered: bool

    @property
    def frequency(self) -> float | None:
        """The numeric frequency in updates/s, or ``None`` when unlimited."""
        return _decimal_or_none(self.max_frequency)


@dataclass(frozen=True, slots=True)
class MsgDone:
    """``MSGDONE``: message processed (``response`` is ``None`` in the TLCP 2.4 form)."""

    tag: ClassVar[str] = "MSGDONE"
    is_data: ClassVar[bool] = True
    sequence: str | None
    prog: int
    response: str | None


@dataclass(frozen=True, slots=True)
class MsgFail:
    """``MSGFAIL``: message not processed."""

    tag: ClassVar[str] = "MSGFAIL"
    is_data: ClassVar[bool] = True
    sequence: str | None
    prog: int
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class MpnReg:
    """``MPNREG``: MPN device registered."""

    tag: ClassVar[str] = "MPNREG"
    is_data: ClassVar[bool] = True
    device_id: str
    adapter_name: str


@dataclass(frozen=True, slots=True)
class MpnZero:
    """``MPNZERO``: MPN badge reset."""

    tag: ClassVar[str] = "MPNZERO"
    is_data: ClassVar[bool] = True
    device_id: str


@dataclass(frozen=True, slots=True)
class MpnOk:
    """``MPNOK``: MPN subscription activated."""

    tag: ClassVar[str] = "MPNOK"
    is_data: ClassVar[bool] = True
    sub_id: int
    mpn_sub_id: str


@dataclass(frozen=True, slots=True)
class MpnConf:
    """``MPNCONF``: MPN subscription reconfigured."""

    tag: ClassVar[str] = "MPNCONF"
    is_data: ClassVar[bool] = True
    mpn_sub_id: str


@dataclass(frozen=True, slots=True)
class MpnDel:
    """``MPNDEL``: MPN subscription removed."""

    tag: ClassVar[str] = "MPNDEL"
    is_data: ClassVar[bool] = True
    mpn_sub_id: str


#: Any parsed line.
Notification: TypeAlias = (
    ConOk
    | ConErr
    | End
    | Loop
    | ServName
    | ClientIp
    | Cons
    | Probe
    | Noop
    | Sync
    | Prog
    | WsOk
    | ReqOk
    | ReqErr
    | Error
    | Update
    | SubOk
    | SubCmd
    | Unsub
    | EndOfSnapshot
    | ClearSnapshot
    | Overflow
    | Conf
    | MsgDone
    | MsgFail
    | MpnReg
    | MpnZero
    | MpnOk
    | MpnConf
    | MpnDel
)

# --------------------------------------------------------------------------- parsing

_PROBE = Probe()
_WSOK = WsOk()
_BARE_REQOK = ReqOk(None)
_NO_ARGS: dict[str, Notification] = {"PROBE": _PROBE, "WSOK": _WSOK, "REQOK": _BARE_REQOK}


class _Args:
    """Argument accessor for one line, raising :class:`ProtocolError` on bad input."""

    __slots__ = ("args", "line", "tag")

    def __init__(self, tag: str, rest: str, count: int, line: str) -> None:
        self.tag = tag
        self.line = line
        args = rest.split(",", count - 1)
        if len(args) != count:
            raise ProtocolError(f"{tag} expects {count} arguments, got {len(args)}", line)
        self.args = args

    def fail(self, index: int, what: str) -> ProtocolError:
        return ProtocolError(f"argument {index + 1} of {self.tag} must be {what}", self.line)

    def num(self, index: int, minimum: int | None = None) -> int:
        """
        Return argument ``index`` as an integer ``-?[0-9]+``, optionally bounded.

        Every TLCP number is a Java ``long`` on the server: anything outside the signed
        64-bit range is refused (it could only overflow later, e.g. as a float delay).
        """
        text = self.args[index]
        digits = text[1:] if text[:1] == "-" else text
        if not (digits.isdigit() and digits.isascii()):
            raise self.fail(index, "an integer")
        if len(digits) > _MAX_DIGITS:  # never feed int() a huge string (quadratic)
            raise self.fail(index, "a 64-bit integer")
        value = int(text)
        if not _MIN_INT <= value <= _MAX_INT:
            raise self.fail(index, "a 64-bit integer")
        if minimum is not None and value < minimum:
            raise self.fail(index, f"an integer >= {minimum}")
        return value

    def pos(self, index: int) -> int:
        """Return argument ``index`` as a positive integer."""
        return self.num(index, 1)

    def nat(self, index: int) -> int:
        """Return argument ``index`` as a non-negative integer."""
        return self.num(index, 0)

    def text(self, index: int) -> str:
        """Return argument ``index`` percent-decoded."""
        text = self.args[index]
        if "%" not in text:
            return text
        try:
            return percent_decode(text)
        except ValueDecodeError as exc:
            raise ProtocolError(
                f"argument {index + 1} of {self.tag}: {exc.reason}", self.line
            ) from None

    def seq(self, index: int) -> str | None:
        """Return a decoded argument where a raw ``*`` means ``None``."""
        text = self.args[index]
        return None if text == "*" else self.text(index)

    def decimal(self, index: int, keywords: tuple[str, ...]) -> str:
        """Return a decimal-or-keyword argument as decoded text."""
        text = self.text(index)
        if text not in keywords and not _DECIMAL.fullmatch(text):
            raise self.fail(index, "a decimal number or one of " + "/".join(keywords))
        return text


def _conok(a: _Args) -> Notification:
    return ConOk(a.text(0), a.nat(1), a.nat(2), a.seq(3))


def _conf(a: _Args) -> Notification:
    flag = a.args[2]
    if flag == "filtered":
        filtered = True
    elif flag == "unfiltered":
        filtered = False
    else:
        raise a.fail(2, "'filtered' or 'unfiltered'")
    return Conf(a.pos(0), a.decimal(1, ("unlimited",)), filtered)


# tag -> (argument count, builder)
_PARSERS: dict[str, tuple[int, Callable[[_Args], Notification]]] = {
    "CONOK": (4, _conok),
    "CONERR": (2, lambda a: ConErr(a.num(0), a.text(1))),
    "END": (2, lambda a: End(a.num(0), a.text(1))),
    "LOOP": (1, lambda a: Loop(a.nat(0))),
    "SERVNAME": (1, lambda a: ServName(a.text(0))),
    "CLIENTIP": (1, lambda a: ClientIp(a.text(0))),
    "CONS": (1, lambda a: Cons(a.decimal(0, ("unlimited", "unmanaged")))),
    "NOOP": (1, lambda a: Noop(a.text(0))),
    "SYNC": (1, lambda a: Sync(a.nat(0))),
    "PROG": (1, lambda a: Prog(a.nat(0))),
    "REQOK": (1, lambda a: ReqOk(a.text(0))),
    "REQERR": (3, lambda a: ReqErr(a.text(0), a.num(1), a.text(2))),
    "ERROR": (2, lambda a: Error(a.num(0), a.text(1))),
    "U": (3, lambda a: Update(a.pos(0), a.pos(1), a.args[2])),
    "SUBOK": (3, lambda a: SubOk(a.pos(0), a.pos(1), a.pos(2))),
    "SUBCMD": (5, lambda a: SubCmd(a.pos(0), a.pos(1), a.pos(2), a.pos(3), a.pos(4))),
    "UNSUB": (1, lambda a: Unsub(a.pos(0))),
    "EOS": (2, lambda a: EndOfSnapshot(a.pos(0), a.pos(1))),
    "CS": (2, lambda a: ClearSnapshot(a.pos(0), a.pos(1))),
    "OV": (3, lambda a: Overflow(a.pos(0), a.pos(1), a.nat(2))),
    "CONF": (3, _conf),
    "MSGFAIL": (4, lambda a: MsgFail(a.seq(0), a.nat(1), a.num(2), a.text(3))),
    "MPNREG": (2, lambda a: MpnReg(a.text(0), a.text(1))),
    "MPNZERO": (1, lambda a: MpnZero(a.text(0))),
    "MPNOK": (2, lambda a: MpnOk(a.pos(0), a.text(1))),
    "MPNCONF": (1, lambda a: MpnConf(a.text(0))),
    "MPNDEL": (1, lambda a: MpnDel(a.text(0))),
}


def _parse_msgdone(rest: str, line: str) -> Notification:
    # TLCP 2.5 has 3 arguments; 2.4 had 2 (no response).
    count = 3 if rest.count(",") >= 2 else 2
    a = _Args("MSGDONE", rest, count, line)
    return MsgDone(a.seq(0), a.nat(1), a.text(2) if count == 3 else None)


_object_new = object.__new__
_set_update_sub_id = Update.__dict__["sub_id"].__set__
_set_update_item = Update.__dict__["item"].__set__
_set_update_values = Update.__dict__["values"].__set__


def _new_update(sub_id: int, item: int, values: str) -> Update:
    """Build an :class:`Update` faster than its frozen ``__init__`` (hot path)."""
    update: Update = _object_new(Update)
    _set_update_sub_id(update, sub_id)
    _set_update_item(update, item)
    _set_update_values(update, values)
    return update


def parse_line(line: str) -> Notification:
    """Parse one line (without its CR LF) into a notification object."""
    if line[:2] == "U,":
        parts = line.split(",", 3)
        if len(parts) == 4:
            sub = parts[1]
            item = parts[2]
            if (
                sub.isdigit()
                and item.isdigit()
                and len(sub) < 10
                and len(item) < 10
                and sub.isascii()
                and item.isascii()
            ):
                sub_id = int(sub)
                item_no = int(item)
                if sub_id and item_no:
                    return _new_update(sub_id, item_no, parts[3])
        # Fall through to the generic path for a precise error.
    tag, comma, rest = line.partition(",")
    if not comma:
        found = _NO_ARGS.get(line)
        if found is not None:
            return found
        if not line:
            raise ProtocolError("empty line", line)
        if line in _PARSERS or line == "MSGDONE":
            raise ProtocolError(f"{line} expects arguments, got none", line)
        raise UnknownTagError(f"unknown tag {redact_line(line[:20])!r}", line, line)
    if tag == "MSGDONE":
        return _parse_msgdone(rest, line)
    entry = _PARSERS.get(tag)
    if entry is None:
        if tag in _NO_ARGS:
            raise ProtocolError(f"{tag} expects no arguments", line)
        raise UnknownTagError(f"unknown tag {redact_line(tag[:20])!r}", line, tag)
    count, build = entry
    return build(_Args(tag, rest, count, line))


def parse_bytes(line: bytes) -> Notification:
    """Decode ``line`` as strict UTF-8 and parse it with :func:`parse_line`."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(
            "line is not valid UTF-8", line.decode("utf-8", "backslashreplace")
        ) from None
    return parse_line(text)
