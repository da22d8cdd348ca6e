"""Client requests: builders and wire encoding (tlcp.md §2.2-2.4, §3)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final
from urllib.parse import quote

__all__ = [
    "CLIENT_ID",
    "REQUEST_NAMES",
    "SUBSCRIPTION_MODES",
    "SUPPORTED_VERSIONS",
    "WSOK_MESSAGE",
    "Request",
    "add_subscription",
    "bind_session",
    "constrain",
    "create_session",
    "delete_subscription",
    "destroy",
    "encode_value",
    "force_rebind",
    "heartbeat",
    "http_body",
    "message",
    "protocol_param",
    "reconf_subscription",
    "ws_message",
    "ws_subprotocol",
]

#: Mandatory client identifier (decoded form; percent-encoded on the wire).
CLIENT_ID = "mgQkwtwdysogQz2BJ4Ji kOj2Bg"
#: TLCP versions this package can speak, preferred first.
SUPPORTED_VERSIONS = ("2.5.0", "2.4.0")
#: Valid request names.
REQUEST_NAMES = frozenset({"create_session", "bind_session", "control", "msg", "heartbeat"})
#: Valid values of ``LS_mode``.
SUBSCRIPTION_MODES = frozenset({"RAW", "MERGE", "DISTINCT", "COMMAND"})
#: The WebSocket check message (sent alone, with no parameter line).
WSOK_MESSAGE = "wsok"

_CRLF = "\r\n"
_PASSWORD = "LS_password"


# What quote(safe="") keeps: ASCII letters, digits and "-_.~".
_UNRESERVED: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def encode_value(value: str) -> str:
    """Percent-encode ``value`` as a URI component (UTF-8, upper-case hex)."""
    if not value.isascii():
        return quote(value, safe="")
    unsafe = set(value) - _UNRESERVED
    if not unsafe:
        return value
    # One C-level replace per distinct character (quote() makes a Python call per byte);
    # "%" first, so that the escapes made afterwards are left alone.
    if "%" in unsafe:
        unsafe.discard("%")
        value = value.replace("%", "%25")
    for char in unsafe:
        value = value.replace(char, f"%{ord(char):02X}")
    return value


def protocol_param(version: str) -> str:
    """Return the ``LS_protocol`` value for ``version`` (e.g. ``TLCP-2.5.0``)."""
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported TLCP version {version!r}")
    return f"TLCP-{version}"


def ws_subprotocol(version: str) -> str:
    """Return the WebSocket subprotocol for ``version``."""
    return protocol_param(version) + ".lightstreamer.com"


@dataclass(frozen=True)
class Request:
    """One request: its name and its ordered ``LS_*`` parameters (decoded values)."""

    name: str
    params: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        if self.name not in REQUEST_NAMES:
            raise ValueError(f"unknown request name {self.name!r}")

    def encode(self) -> str:
        """Return the parameter line ``LS_a=v&LS_b=w`` (values percent-encoded)."""
        return "&".join(f"{key}={encode_value(value)}" for key, value in self.params)

    @property
    def path(self) -> str:
        """HTTP path of the request."""
        return f"/lightstreamer/{self.name}.txt"

    def get(self, key: str) -> str | None:
        """Return the (last) value of parameter ``key``, or ``None``."""
        found = None
        for name, value in self.params:
            if name == key:
                found = value
        return found

    def __repr__(self) -> str:
        shown = tuple((key, "***" if key == _PASSWORD else value) for key, value in self.params)
        return f"Request(name={self.name!r}, params={shown!r})"


def _join(lines: list[str]) -> str:
    text = _CRLF.join(lines)
    if not lines[-1]:
        # A final empty line needs its terminator to be seen at all.
        text += _CRLF
    return text


def _check_batch(requests: Sequence[Request]) -> str:
    if not requests:
        raise ValueError("no requests to send")
    name = requests[0].name
    for req in requests:
        if req.name != name:
            raise ValueError(f"cannot batch {req.name!r} with {name!r} requests")
    return name


def http_body(requests: Sequence[Request]) -> bytes:
    """Return the HTTP body for a batch of requests sharing one name."""
    _check_batch(requests)
    return _join([req.encode() for req in requests]).encode("utf-8")


def ws_message(requests: Sequence[Request]) -> str:
    """Return the WebSocket text message for a batch of requests sharing one name."""
    name = _check_batch(requests)
    return name + _CRLF + _join([req.encode() for req in requests])


# --------------------------------------------------------------------------- values


def _number(value: float | str) -> str:
    """Render a number without exponent (``2.5``, ``10``); strings pass through."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("expected a number, got a bool")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot send non-finite number {value!r}")
    if value.is_integer():
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def check_limit(value: float | str, what: str) -> float | str:
    """``value`` if it is a positive number or ``"unlimited"`` (a frequency, a bandwidth)."""
    if value == "unlimited":
        return value
    # Infinity too: no request can carry it (and NaN fails every comparison).
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{what} must be a positive number or 'unlimited', not {value!r}")
    return value


def check_text(value: str, what: str) -> str:
    """``value`` if a request can carry it: UTF-8 holds no lone surrogate (tlcp.md §2.4)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:  # never the value itself: it may be a password
        raise ValueError(f"{what} is not valid Unicode: {e.reason}") from None
    return value


def _bool(value: bool) -> str:
    return "true" if value else "false"


class _Params:
    """Small helper collecting ``(name, value)`` pairs, skipping ``None``."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, key: str, value: str | None) -> None:
        if value is not None:
            self.items.append((key, value))

    def num(self, key: str, value: float | str | None) -> None:
        if value is not None:
            self.items.append((key, _number(value)))

    def flag(self, key: str, value: bool | None) -> None:
        if value is not None:
            self.items.append((key, _bool(value)))

    def build(self, name: str) -> Request:
        return Request(name, tuple(self.items))


def _connection_params(
    p: _Params,
    *,
    content_length: int | None,
    polling: bool,
    polling_millis: int | None,
    idle_millis: int | None,
    inactivity_millis: int | None,
    keepalive_millis: int | None,
    send_sync: bool | None,
    reduce_head: bool,
) -> None:
    p.num("LS_content_length", content_length)
    if polling:
        p.add("LS_polling", "true")
    p.num("LS_polling_millis", polling_millis)
    p.num("LS_idle_millis", idle_millis)
    p.num("LS_inactivity_millis", inactivity_millis)
    p.num("LS_keepalive_millis", keepalive_millis)
    p.flag("LS_send_sync", send_sync)
    if reduce_head:
        p.add("LS_reduce_head", "true")


# --------------------------------------------------------------------------- session


def create_session(
    *,
    adapter_set: str | None = None,
    user: str | None = None,
    password: str | None = None,
    requested_max_bandwidth: float | str | None = None,
    content_length: int | None = None,
    supported_diffs: str | None = None,
    polling: bool = False,
    polling_millis: int | None = None,
    idle_millis: int | None = None,
    inactivity_millis: int | None = None,
    keepalive_millis: int | None = None,
    send_sync: bool | None = None,
    reduce_head: bool = False,
    ttl_millis: int | str | None = None,
) -> Request:
    """Build a ``create_session`` request (``LS_cid`` first, ``LS_password`` last)."""
    p = _Params()
    p.add("LS_cid", CLIENT_ID)
    p.add("LS_adapter_set", adapter_set)
    p.add("LS_user", user)
    p.num("LS_requested_max_bandwidth", requested_max_bandwidth)
    p.add("LS_supported_diffs", supported_diffs)
    _connection_params(
        p,
        content_length=content_length,
        polling=polling,
        polling_millis=polling_millis,
        idle_millis=idle_millis,
        inactivity_millis=inactivity_millis,
        keepalive_millis=keepalive_millis,
        send_sync=send_sync,
        reduce_head=reduce_head,
    )
    p.num("LS_ttl_millis", ttl_millis)
    p.add(_PASSWORD, password)
    return p.build("create_session")


def bind_session(
    session_id: str | None,
    *,
    recovery_from: int | None = None,
    content_length: int | None = None,
    polling: bool = False,
    polling_millis: int | None = None,
    idle_millis: int | None = None,
    inactivity_millis: int | None = None,
    keepalive_millis: int | None = None,
    send_sync: bool | None = None,
    reduce_head: bool = False,
) -> Request:
    """Build a ``bind_session`` request (``session_id`` may be ``None`` on WebSocket)."""
    p = _Params()
    p.add("LS_session", session_id)
    p.num("LS_recovery_from", recovery_from)
    _connection_params(
        p,
        content_length=content_length,
        polling=polling,
        polling_millis=polling_millis,
        idle_millis=idle_millis,
        inactivity_millis=inactivity_millis,
        keepalive_millis=keepalive_millis,
        send_sync=send_sync,
        reduce_head=reduce_head,
    )
    return p.build("bind_session")


# --------------------------------------------------------------------------- control


def _control(req_id: int, op: str) -> _Params:
    p = _Params()
    p.add("LS_reqId", str(req_id))
    p.add("LS_op", op)
    return p


def _check_sub_id(sub_id: int) -> str:
    if sub_id < 1:
        raise ValueError(f"subscription id must be positive, got {sub_id}")
    return str(sub_id)


def add_subscription(
    req_id: int,
    sub_id: int,
    *,
    mode: str,
    group: str,
    schema: str,
    data_adapter: str | None = None,
    selector: str | None = None,
    buffer_size: int | str | None = None,
    max_frequency: float | str | None = None,
    snapshot: bool | int | None = None,
    ack: bool | None = None,
    session_id: str | None = None,
) -> Request:
    """Build a ``control`` request with ``LS_op=add``."""
    if mode not in SUBSCRIPTION_MODES:
        raise ValueError(f"invalid subscription mode {mode!r}")
    p = _control(req_id, "add")
    p.add("LS_subId", _check_sub_id(sub_id))
    p.add("LS_mode", mode)
    p.add("LS_group", group)
    p.add("LS_schema", schema)
    p.add("LS_data_adapter", data_adapter)
    p.add("LS_selector", selector)
    p.num("LS_requested_buffer_size", buffer_size)
    p.num("LS_requested_max_frequency", max_frequency)
    if isinstance(snapshot, bool):
        p.flag("LS_snapshot", snapshot)
    else:
        p.num("LS_snapshot", snapshot)
    p.flag("LS_ack", ack)
    p.add("LS_session", session_id)
    return p.build("control")


def delete_subscription(
    req_id: int,
    sub_id: int,
    *,
    ack: bool | None = None,
    session_id: str | None = None,
) -> Request:
    """Build a ``control`` request with ``LS_op=delete``."""
    p = _control(req_id, "delete")
    p.add("LS_subId", _check_sub_id(sub_id))
    p.flag("LS_ack", ack)
    p.add("LS_session", session_id)
    return p.build("control")


def reconf_subscription(
    req_id: int,
    sub_id: int,
    *,
    max_frequency: float | str | None = None,
    session_id: str | None = None,
) -> Request:
    """Build a ``control`` request with ``LS_op=reconf``."""
    p = _control(req_id, "reconf")
    p.add("LS_subId", _check_sub_id(sub_id))
    p.num("LS_requested_max_frequency", max_frequency)
    p.add("LS_session", session_id)
    return p.build("control")


def constrain(
    req_id: int,
    *,
    max_bandwidth: float | str,
    session_id: str | None = None,
) -> Request:
    """Build a ``control`` request with ``LS_op=constrain``."""
    p = _control(req_id, "constrain")
    p.num("LS_requested_max_bandwidth", max_bandwidth)
    p.add("LS_session", session_id)
    return p.build("control")


def force_rebind(
    req_id: int,
    *,
    polling_millis: int | None = None,
    close_socket: bool | None = None,
    session_id: str | None = None,
) -> Request:
    """Build a ``control`` request with ``LS_op=force_rebind``."""
    p = _control(req_id, "force_rebind")
    p.num("LS_polling_millis", polling_millis)
    p.flag("LS_close_socket", close_socket)
    p.add("LS_session", session_id)
    return p.build("control")


def destroy(
    req_id: int,
    *,
    cause_code: int | None = None,
    cause_message: str | None = None,
    close_socket: bool | None = None,
    session_id: str | None = None,
) -> Request:
    """Build a ``control`` request with ``LS_op=destroy``."""
    if cause_message is not None and cause_code is None:
        raise ValueError("cause_message requires cause_code")
    p = _control(req_id, "destroy")
    p.num("LS_cause_code", cause_code)
    p.add("LS_cause_message", cause_message)
    p.flag("LS_close_socket", close_socket)
    p.add("LS_session", session_id)
    return p.build("control")


# --------------------------------------------------------------------------- msg, heartbeat


def message(
    req_id: int,
    text: str,
    *,
    sequence: str | None = None,
    prog: int | None = None,
    max_wait: int | None = None,
    outcome: bool | None = None,
    ack: bool | None = None,
    session_id: str | None = None,
) -> Request:
    """Build a ``msg`` request."""
    p = _Params()
    p.add("LS_reqId", str(req_id))
    p.add("LS_message", text)
    p.add("LS_sequence", sequence)
    p.num("LS_msg_prog", prog)
    p.num("LS_max_wait", max_wait)
    p.flag("LS_outcome", outcome)
    p.flag("LS_ack", ack)
    p.add("LS_session", session_id)
    return p.build("msg")


def heartbeat(*, session_id: str | None = None) -> Request:
    """Build a ``heartbeat`` request (reverse heartbeat)."""
    p = _Params()
    p.add("LS_session", session_id)
    return p.build("heartbeat")
