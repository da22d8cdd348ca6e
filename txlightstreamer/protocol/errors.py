"""Exception types and TLCP error-code tables (tlcp.md §9)."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

__all__ = [
    "CONTROL_CODES",
    "RETRYABLE_CONERR",
    "RETRYABLE_END",
    "SESSION_CODES",
    "LightstreamerError",
    "ProtocolError",
    "ServerError",
    "UnknownTagError",
    "ValueDecodeError",
    "redact_line",
]

#: Longest excerpt of an offending line kept in a :class:`ProtocolError`.
MAX_LINE_EXCERPT = 200

_PASSWORD_MARK = "LS_password="


def redact_line(line: str, secret: str | None = None) -> str:
    """
    Redact any password and truncate ``line`` for safe display: what follows the
    ``LS_password=`` field (in any case), and ``secret`` wherever it appears, as given or
    percent-encoded (an error page may quote the form's fields another way).
    """
    cut = line.lower().find(_PASSWORD_MARK.lower())
    if cut >= 0:
        line = line[:cut] + _PASSWORD_MARK + "***"
    if secret:
        for form in {secret, quote(secret, safe=""), quote_plus(secret, safe="")}:
            line = line.replace(form, "***")
    if len(line) > MAX_LINE_EXCERPT:
        line = line[:MAX_LINE_EXCERPT] + "…"
    return line


class LightstreamerError(Exception):
    """Base class of every error raised by txlightstreamer."""


class ProtocolError(LightstreamerError):
    """Unparsable or inconsistent server data (client-side code 61)."""

    code: int = 61

    def __init__(self, reason: str, line: str | None = None) -> None:
        # Reasons may quote pieces of the line (a token, a tag): redact them too.
        reason = redact_line(reason)
        safe = None if line is None else redact_line(line)
        super().__init__(reason, safe)
        self.reason = reason
        self.line = safe

    def __str__(self) -> str:
        if self.line is None:
            return self.reason
        return f"{self.reason}: {self.line!r}"


class UnknownTagError(ProtocolError):
    """A line whose tag is not a known TLCP tag (callers may choose to ignore it)."""

    def __init__(self, reason: str, line: str | None = None, tag: str = "") -> None:
        super().__init__(reason, line)
        safe_tag = redact_line(tag)
        self.args = (self.reason, self.line, safe_tag)
        self.tag = safe_tag


class ValueDecodeError(ProtocolError):
    """Failure while decoding field values (tlcp.md §5)."""

    def __init__(self, reason: str, line: str | None = None, field: int | None = None) -> None:
        super().__init__(reason, line)
        self.args = (self.reason, self.line, field)
        #: 1-based index of the offending field, when known.
        self.field = field


class ServerError(LightstreamerError):
    """An error reported by the server (CONERR, END, REQERR, ERROR, MSGFAIL)."""

    def __init__(self, code: int, message: str, tag: str = "") -> None:
        super().__init__(code, message, tag)
        self.code = code
        self.message = message
        self.tag = tag

    def __str__(self) -> str:
        if self.tag:
            return f"{self.tag} {self.code}: {self.message}"
        return f"{self.code}: {self.message}"


#: Session codes, carried by CONERR and END (tlcp.md §9.1).
SESSION_CODES: dict[int, str] = {
    1: "User/password check failed",
    2: "Requested Adapter Set not available",
    3: "Bound session uses an incompatible protocol version",
    4: "Recovery progressive no longer kept (recovery failed)",
    5: "Server temporarily overloaded, retry later",
    6: "Metadata Adapter temporarily unable to validate credentials, retry later",
    7: "Licensed maximum number of sessions reached",
    8: "Configured maximum number of sessions reached",
    9: "Configured maximum server load reached",
    10: "New sessions temporarily blocked",
    11: "Streaming not available because of license limitations",
    20: "Session not found",
    21: "Session belongs to another server instance",
    31: "Session closed by a client destroy request",
    32: "Session closed on the server side",
    33: "Unexpected server error during the session",
    34: "Unexpected server error during the session",
    35: "Session closed because the same user opened a new session",
    40: "A manual rebind to this session was performed",
    41: "Session closed (treated as retryable by the official client)",
    48: "Maximum session duration reached",
    60: "Client version not supported",
    64: "Control part of a create-session combo request failed",
    65: "Syntax error or invalid argument values",
    66: "Metadata Adapter unchecked exception on session creation",
    67: "Malformed request",
    68: "Unexpected server error while handling the request",
    69: "Streaming request on a WebSocket that already has a stream",
    70: "Session creation not allowed on this server port",
    71: "Client type not supported",
}

_MPN_ERROR = "Mobile push notification error"

#: Control codes, carried by REQERR, ERROR and MSGFAIL (tlcp.md §9.2).
CONTROL_CODES: dict[int, str] = {
    3: "Session protocol version does not support this request",
    11: "Session id not compatible with this server instance",
    13: "Frequency reconfiguration not allowed: subscription is unfiltered",
    14: "Key value is not a valid item name",
    15: "COMMAND subscription without a key field",
    16: "COMMAND subscription without a command field",
    17: "Bad Data Adapter name or no default Data Adapter",
    19: "Subscription not found",
    20: "Session not found",
    21: "Bad item group name",
    22: "Bad item group name for this schema",
    23: "Bad field schema name",
    24: "Subscription mode not allowed for an item",
    25: "Bad selector name",
    26: "Unfiltered dispatching not allowed (item has a frequency limit)",
    27: "Unfiltered dispatching not supported (frequency prefiltering)",
    28: "Unfiltered dispatching not allowed by license",
    29: "RAW mode not allowed by license",
    30: "Subscriptions not allowed by license",
    32: "Message progressive too low: already enqueued or skipped",
    33: "Message progressive too low: already enqueued",
    34: "Unexpected error processing the message",
    35: "Metadata Adapter unchecked exception processing the message",
    38: "Message progressive skipped by timeout",
    39: "This and some preceding message progressives skipped by timeout",
    **{code: _MPN_ERROR for code in (*range(40, 54), 56)},
    65: "Syntax error or invalid argument values",
    66: "Metadata Adapter unchecked exception on subscription or reconfiguration",
    67: "Malformed request",
    68: "Unexpected server error",
}

#: CONERR codes after which the official client opens a new session.
RETRYABLE_CONERR: frozenset[int] = frozenset({4, 5, 6, 20, 40, 41, 48})
#: END codes after which the official client opens a new session.
RETRYABLE_END: frozenset[int] = frozenset({41, 48})
