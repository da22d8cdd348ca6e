"""Request parsing for the test server: constants, refusals and parameters (no Twisted)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from ._encoding import decode_percent, encode_line

__all__ = [
    "CLIENT_ID",
    "DEFAULT_CLIENT_IDS",
    "MODES",
    "PYTHON_SDK_CLIENT_ID",
    "SUPPORTED_PROTOCOLS",
    "MessageError",
    "parse_params",
]

#: The ``LS_cid`` value (decoded) the spec prescribes for custom clients.
CLIENT_ID = "mgQkwtwdysogQz2BJ4Ji kOj2Bg"
#: The ``LS_cid`` sent by the official Python SDK (lightstreamer-client-lib 2.x).
PYTHON_SDK_CLIENT_ID = "v Wntytg4pkpW37AM3P4hwLri8M4OD6Ah6e"
#: The known ``LS_cid`` values: what a strict server accepts
#: (``TlcpServer(client_ids=DEFAULT_CLIENT_IDS)``); by default any well-formed one is.
DEFAULT_CLIENT_IDS: frozenset[str] = frozenset({CLIENT_ID, PYTHON_SDK_CLIENT_ID})
SUPPORTED_PROTOCOLS = ("TLCP-2.5.0", "TLCP-2.4.0")
MODES = ("RAW", "MERGE", "DISTINCT", "COMMAND")
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
SEQUENCE = re.compile(r"^[A-Za-z0-9_]+$")
MPN_OPS = ("register", "reset_badge", "activate", "pn_reconf", "deactivate")


class MessageError(Exception):
    """Raised by a message handler to answer ``MSGFAIL,<seq>,<prog>,<code>,<message>``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class RequestError(Exception):
    """A control/msg request refused with ``REQERR,<id>,<code>,<message>``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class ConnectionRefused(Exception):
    """A create/bind refused with ``CONERR,<code>,<message>``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


def parse_params(line: str) -> dict[str, str]:
    """Parse one ``name=value&…`` request line (percent-encoded UTF-8, ``+`` literal)."""
    params: dict[str, str] = {}
    for pair in line.split("&"):
        if not pair:
            continue
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"malformed parameter {pair!r}")
        params[decode_percent(name)] = decode_percent(value)
    return params


def int_param(params: Mapping[str, str], name: str, *, minimum: int = 0) -> int | None:
    """The non-negative integer ``name`` of ``params`` (None if absent); ValueError if bad."""
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise ValueError(f"{name} must be a non-negative integer")
    value = int(raw)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}")
    return value


def bool_param(params: Mapping[str, str], name: str, default: bool) -> bool:
    """The ``true``/``false`` parameter ``name`` (``default`` if absent); ValueError if bad."""
    raw = params.get(name)
    if raw is None:
        return default
    if raw == "true":
        return True
    if raw == "false":
        return False
    raise ValueError(f"{name} must be true or false")


def positive_decimal(text: str) -> bool:
    """Whether ``text`` is a decimal number above zero."""
    return bool(_DECIMAL.match(text)) and float(text) > 0


def parse_sub_id(params: Mapping[str, str]) -> int:
    """The ``LS_subId`` of a control request; RequestError if missing or bad."""
    raw = params.get("LS_subId", "")
    if not raw.isdigit() or int(raw) < 1:
        raise RequestError(65, "Invalid LS_subId")
    return int(raw)


def check_protocol(
    params: Mapping[str, str], accepted: Collection[str] = SUPPORTED_PROTOCOLS
) -> str:
    """The ``LS_protocol`` of a request; ConnectionRefused if not ``accepted``."""
    protocol = params.get("LS_protocol")
    if protocol not in SUPPORTED_PROTOCOLS:
        raise ConnectionRefused(65, "Unsupported protocol version")
    if protocol not in accepted:
        # What a server too old for this version says (IG's servers to TLCP 2.5.0).
        version = protocol.removeprefix("TLCP-")
        raise ConnectionRefused(65, f"Unsupported protocol version: {version}")
    return protocol


def first_line(query: Mapping[str, str], lines: list[str]) -> dict[str, str]:
    """The parameters of a create/bind: the query string, then the body's first line."""
    try:
        return {**query, **(parse_params(lines[0]) if lines else {})}
    except ValueError as e:
        raise ConnectionRefused(67, f"Malformed request: {e}") from None


def body(*lines: str) -> bytes:
    """A response body of ``lines``, each ended by CR LF."""
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


def conerr(error: ConnectionRefused) -> str:
    """The ``CONERR`` line of a refusal."""
    return encode_line("CONERR", error.code, error.message)
