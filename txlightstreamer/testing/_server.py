"""A real TLCP 2.5.0/2.4.0 server (HTTP and WebSocket) as a ``twisted.web`` resource.

Implements create/bind (streaming, polling, recovery), control, msg and
heartbeat requests as described in ``tlcp.md``, over HTTP and over WebSocket
(``…/lightstreamer`` with a ``TLCP-<version>.lightstreamer.com`` subprotocol,
served with autobahn when it is installed; see ``_websocket.py``).  It has its
own request parser and notification encoder and never imports the client codec.

Simplifications (documented, deliberate):

* frequency and bandwidth limits are acknowledged (``CONF``/``CONS``) but not
  enforced; buffer sizes, selectors and data adapter names are ignored;
* messages are handed to the handler in arrival order (no re-ordering of
  sequences, ``LS_max_wait`` ignored);
* create+control combos are not supported;
* on WebSocket, ``LS_content_length`` from the client is ignored (as on a real
  server) but the server's own ``content_length`` still ends streams with
  ``LOOP``, so tests can make WebSocket streams loop; ``LS_ack`` is ignored
  (``REQOK`` is always sent);
* ``LS_inactivity_millis`` (reverse heartbeat) is accepted but not enforced.
"""

from __future__ import annotations

import re
import secrets
import socket
import struct
from collections import deque
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from ._adapter import DataModel
from ._encoding import decode_percent, encode_line, encode_update

if TYPE_CHECKING:
    from twisted.web.iweb import IRequest

__all__ = [
    "CLIENT_ID",
    "DEFAULT_CLIENT_IDS",
    "PYTHON_SDK_CLIENT_ID",
    "Faults",
    "MessageError",
    "MessageHandler",
    "Session",
    "Subscription",
    "TlcpServer",
]

log = Logger()

#: The ``LS_cid`` value (decoded) the spec prescribes for custom clients.
CLIENT_ID = "mgQkwtwdysogQz2BJ4Ji kOj2Bg"
#: The ``LS_cid`` sent by the official Python SDK (lightstreamer-client-lib 2.x).
PYTHON_SDK_CLIENT_ID = "v Wntytg4pkpW37AM3P4hwLri8M4OD6Ah6e"
#: ``LS_cid`` values accepted by default.
DEFAULT_CLIENT_IDS: frozenset[str] = frozenset({CLIENT_ID, PYTHON_SDK_CLIENT_ID})
SUPPORTED_PROTOCOLS = ("TLCP-2.5.0", "TLCP-2.4.0")
MODES = ("RAW", "MERGE", "DISTINCT", "COMMAND")
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_SEQUENCE = re.compile(r"^[A-Za-z0-9_]+$")
_MPN_OPS = ("register", "reset_badge", "activate", "pn_reconf", "deactivate")

MessageHandler = Callable[["Session", str, "str | None"], "str | None | Deferred[str | None]"]
"""``handler(session, message, sequence)``: returns the ``MSGDONE`` response
text (or ``None`` for an empty one), possibly via a Deferred; raising
:class:`MessageError` produces ``MSGFAIL`` with its code and message, any other
exception ``MSGFAIL`` code 35."""


class MessageError(Exception):
    """Raised by a message handler to answer ``MSGFAIL,<seq>,<prog>,<code>,<message>``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class _RequestError(Exception):
    """A control/msg request refused with ``REQERR,<id>,<code>,<message>``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class _ConnectionError(Exception):
    """A create/bind refused with ``CONERR,<code>,<message>``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


def _default_handler(session: Session, message: str, sequence: str | None) -> str | None:
    return None


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


def _int_param(params: Mapping[str, str], name: str, *, minimum: int = 0) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise ValueError(f"{name} must be a non-negative integer")
    value = int(raw)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}")
    return value


def _bool_param(params: Mapping[str, str], name: str, default: bool) -> bool:
    raw = params.get(name)
    if raw is None:
        return default
    if raw == "true":
        return True
    if raw == "false":
        return False
    raise ValueError(f"{name} must be true or false")


class _HttpOutput:
    """Where an HTTP stream writes: the body of one response."""

    websocket = False

    def __init__(self, request: Request) -> None:
        self.request = request

    def write(self, data: str) -> None:
        self.request.write(data.encode("utf-8"))

    def finish(self) -> None:
        self.request.finish()

    def abort(self) -> None:
        channel = getattr(self.request, "channel", None)
        transport = getattr(channel, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def notify_lost(self, callback: Callable[[Failure], object]) -> None:
        self.request.notifyFinish().addErrback(callback)

    def write_truncated_chunk(self, data: str) -> None:
        """Write a chunk header announcing all of ``data`` but only half of its bytes."""
        raw = data.encode("utf-8")
        transport = getattr(getattr(self.request, "channel", None), "transport", None)
        if not getattr(self.request, "chunked", False) or transport is None:
            self.request.write(raw[: len(raw) // 2])
            return
        transport.write(b"%x\r\n" % len(raw) + raw[: len(raw) // 2])

    def kill(self) -> None:
        """Abort the connection once what was written so far has gone out.

        ``abortConnection`` would throw away the data still buffered in the
        transport; here the socket is set to reset on close (``SO_LINGER`` 0)
        and closed when the buffer is empty, so the client receives every byte
        written and then a reset.  Without a plain TCP socket (TLS), it aborts.
        """
        transport = getattr(getattr(self.request, "channel", None), "transport", None)
        if transport is None:
            return
        try:
            handle = transport.getHandle()
        except Exception:
            handle = None
        if isinstance(handle, socket.socket) and not _is_tls(transport):
            try:
                handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                transport.abortConnection()
                return
            transport.loseConnection()
        else:
            transport.abortConnection()

    @property
    def client_ip(self) -> str | None:
        return _client_ip(self.request)


def _is_tls(transport: Any) -> bool:
    while transport is not None:
        if type(transport).__name__ == "TLSMemoryBIOProtocol":
            return True
        transport = getattr(transport, "transport", None)
    return False


class _WsOutput:
    """Where a WebSocket stream writes: messages on its socket, which outlives it."""

    websocket = True

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._lost: Callable[[Failure], object] | None = None

    def write(self, data: str) -> None:
        self.conn.send_text(data)

    def finish(self) -> None:
        # LOOP/END end the binding, not the socket: the client decides about that.
        self.conn.detach(self)

    def abort(self) -> None:
        self.conn.abort()

    def notify_lost(self, callback: Callable[[Failure], object]) -> None:
        self._lost = callback

    def write_truncated_chunk(self, data: str) -> None:
        # WebSocket messages have no chunks: half a message is the closest fault.
        self.conn.send_text(data[: len(data) // 2])

    def kill(self) -> None:
        self.conn.abort()

    def lost(self, reason: Failure) -> None:
        callback, self._lost = self._lost, None
        if callback is not None:
            callback(reason)

    @property
    def client_ip(self) -> str | None:
        return cast("str | None", self.conn.client_ip)


class _Stream:
    """One HTTP response (or WebSocket session binding) carrying notifications."""

    def __init__(
        self,
        server: TlcpServer,
        output: _HttpOutput | _WsOutput,
        *,
        polling: bool,
        keepalive_ms: int,
        idle_ms: int,
        polling_ms: int,
        content_length: int | None,
        send_sync: bool,
    ) -> None:
        self.server = server
        self.output = output
        #: The HTTP request of the stream (None on a WebSocket).
        self.request: Request | None = getattr(output, "request", None)
        self.polling = polling
        self.keepalive_ms = keepalive_ms
        self.idle_ms = idle_ms
        self.polling_ms = polling_ms
        self.content_length = content_length
        self.send_sync = send_sync
        self.session: Session | None = None
        self.written = 0
        self.closed = False
        self.bound_at = server.clock.seconds()
        self._keepalive: IDelayedCall | None = None
        self._sync: IDelayedCall | None = None
        self._poll_timer: IDelayedCall | None = None
        self._poll_ready = False
        #: Whether :meth:`Faults.stall` holds what this stream would write.
        self.stalled = False
        self._held: list[str] = []
        output.notify_lost(self._lost)

    # --- writing ------------------------------------------------------------

    def _write(self, line: str) -> None:
        data = line + "\r\n"
        self.written += len(data.encode("utf-8"))
        self.output.write(data)

    def write_head(self, lines: list[str]) -> None:
        """Write the head of the response (not subject to the content length)."""
        if lines:
            data = "".join(line + "\r\n" for line in lines)
            self.written += len(data.encode("utf-8"))
            self.output.write(data)

    def start(self) -> None:
        """Start the timers once the head and the queued notifications are out."""
        if self.closed:
            return
        clock = self.server.clock
        if self.polling:
            if self._poll_ready:
                return  # already scheduled to answer
            if self.idle_ms == 0:
                self.close_with(encode_line("LOOP", self.polling_ms))
            else:
                self._poll_timer = clock.callLater(self.idle_ms / 1000.0, self._finish_poll)
        else:
            self._restart_keepalive()
            if self.send_sync and self.server.sync_interval_millis > 0:
                self._sync = clock.callLater(
                    self.server.sync_interval_millis / 1000.0, self._send_sync
                )

    def send(self, line: str) -> None:
        """Write one notification, ending the stream with LOOP when the length is used up."""
        if self.closed:
            raise RuntimeError("stream closed")
        if self.stalled:
            self._held.append(line)
            return
        faults = self.server.faults
        if faults._armed and line != "PROBE" and not line.startswith("SYNC,"):
            if faults._intercept(self, line):
                return
        self._write(line)
        if faults._close_after is not None and line != "PROBE" and not line.startswith("SYNC,"):
            if faults._count_down(self):
                return
        if self.polling:
            # Let a burst of notifications gather before answering the poll.
            if not self._poll_ready:
                self._poll_ready = True
                if self._poll_timer is not None and self._poll_timer.active():
                    self._poll_timer.cancel()
                self._poll_timer = self.server.clock.callLater(0, self._finish_poll)
            return
        self._restart_keepalive()
        if self.content_length is not None and self.written >= self.content_length:
            self.close_with(encode_line("LOOP", 0))

    def _restart_keepalive(self) -> None:
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.reset(self.keepalive_ms / 1000.0)
        else:
            self._keepalive = self.server.clock.callLater(
                self.keepalive_ms / 1000.0, self._send_probe
            )

    def _send_probe(self) -> None:
        self._keepalive = None
        if not self.closed:
            self.send("PROBE")

    def _stall(self) -> None:
        if self.closed or self.stalled:
            return
        self.stalled = True
        self._cancel_timers()
        self._poll_ready = False

    def _unstall(self) -> None:
        if not self.stalled:
            return
        self.stalled = False
        held, self._held = self._held, []
        for line in held:
            if self.closed:
                return
            self.send(line)
        if not self.closed:
            self.start()

    def _send_sync(self) -> None:
        self._sync = None
        if self.closed:
            return
        seconds = int(self.server.clock.seconds() - self.bound_at)
        self._sync = self.server.clock.callLater(
            self.server.sync_interval_millis / 1000.0, self._send_sync
        )
        self.send(encode_line("SYNC", seconds))

    def _finish_poll(self) -> None:
        self._poll_timer = None
        if not self.closed:
            self.close_with(encode_line("LOOP", self.polling_ms))

    # --- ending -------------------------------------------------------------

    def _cancel_timers(self) -> None:
        for timer in (self._keepalive, self._sync, self._poll_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._keepalive = self._sync = self._poll_timer = None

    def _detach(self) -> None:
        self.closed = True
        self._cancel_timers()
        self.server._streams.discard(self)
        session, self.session = self.session, None
        if session is not None:
            session._stream_gone(self)

    def close_with(self, line: str | None) -> None:
        """Write a last line (LOOP/END) if given, and finish the response."""
        if self.closed:
            return
        if line is not None:
            self._write(line)
        self._detach()
        self.output.finish()

    def abort(self) -> None:
        """Abruptly close the underlying connection."""
        if self.closed:
            return
        self._detach()
        self.output.abort()

    def kill(self) -> None:
        """Reset the connection after what was written so far (see ``_HttpOutput.kill``)."""
        if self.closed:
            return
        self._detach()
        self.output.kill()

    def _lost(self, reason: Failure) -> None:
        if not self.closed:
            log.debug("stream connection lost: {reason}", reason=reason.value)
            self._detach()


class Subscription:
    """A subscription of a session (one ``LS_op=add``)."""

    def __init__(
        self,
        session: Session,
        sub_id: int,
        mode: str,
        items: tuple[str, ...],
        fields: tuple[str, ...],
        snapshot: bool | int,
        max_frequency: str,
    ) -> None:
        self.session = session
        self.sub_id = sub_id
        self.mode = mode
        self.items = items
        self.fields = fields
        self.snapshot = snapshot
        self.unfiltered = max_frequency == "unfiltered"
        self.max_frequency = "unlimited" if self.unfiltered else max_frequency
        self._indices: dict[str, list[int]] = {}
        for index, item in enumerate(items, start=1):
            self._indices.setdefault(item, []).append(index)
        self._field_set = frozenset(fields)
        self._baseline: dict[int, list[str | None]] = {}

    @property
    def key_position(self) -> int:
        """1-based position of the ``key`` field (COMMAND)."""
        return self.fields.index("key") + 1

    @property
    def command_position(self) -> int:
        """1-based position of the ``command`` field (COMMAND)."""
        return self.fields.index("command") + 1

    def _row(self, values: Mapping[str, str | None]) -> list[str | None]:
        return [values.get(name) for name in self.fields]

    def _send_row(self, index: int, row: list[str | None]) -> None:
        encoded = encode_update(self._baseline.get(index), row, diffs=self.session.diffs)
        self._baseline[index] = row
        self.session._emit_data(f"U,{self.sub_id},{index},{encoded}")

    def _start(self) -> None:
        session = self.session
        data = session.server.data
        n_items, n_fields = len(self.items), len(self.fields)
        if self.mode == "COMMAND":
            session._emit_data(
                encode_line(
                    "SUBCMD",
                    self.sub_id,
                    n_items,
                    n_fields,
                    self.key_position,
                    self.command_position,
                )
            )
        else:
            session._emit_data(encode_line("SUBOK", self.sub_id, n_items, n_fields))
        session._emit_data(
            encode_line(
                "CONF",
                self.sub_id,
                self.max_frequency,
                "unfiltered" if self.unfiltered else "filtered",
            )
        )
        for item in dict.fromkeys(self.items):
            data.add_listener(item, self)
        if self.snapshot is False or self.mode == "RAW":
            return
        for index, item in enumerate(self.items, start=1):
            if self.mode == "MERGE":
                if data.has_state(item):
                    self._send_row(index, self._row(data.state(item)))
            elif self.mode == "DISTINCT":
                history = data.history(item)
                if self.snapshot is not True:
                    keep = int(self.snapshot)
                    history = history[max(0, len(history) - keep) :] if keep else []
                for row in history:
                    self._send_row(index, self._row(row))
                session._emit_data(encode_line("EOS", self.sub_id, index))
            else:
                for row in data.keys(item).values():
                    self._send_row(index, self._row({**row, "command": "ADD"}))
                session._emit_data(encode_line("EOS", self.sub_id, index))

    def _stop(self) -> None:
        data = self.session.server.data
        for item in self._indices:
            data.remove_listener(item, self)

    # --- ItemListener -------------------------------------------------------

    def item_updated(
        self, item: str, state: Mapping[str, str | None], changed: Collection[str]
    ) -> None:
        """Dispatch a MERGE/DISTINCT/RAW event."""
        if self.mode == "COMMAND":
            return
        if self.mode == "MERGE" and self._field_set.isdisjoint(changed):
            return
        row = self._row(state)
        for index in self._indices.get(item, ()):
            self._send_row(index, list(row))

    def item_command(self, item: str, row: Mapping[str, str | None]) -> None:
        """Dispatch a COMMAND event."""
        if self.mode != "COMMAND":
            return
        values = self._row(row)
        for index in self._indices.get(item, ()):
            self._send_row(index, list(values))

    def item_cleared(self, item: str) -> None:
        """Dispatch a clear-snapshot."""
        for index in self._indices.get(item, ()):
            if self.mode == "MERGE":
                self._send_row(index, [None] * len(self.fields))
            elif self.mode in ("DISTINCT", "COMMAND"):
                self.session._emit_data(encode_line("CS", self.sub_id, index))

    def item_overflow(self, item: str, lost: int) -> None:
        """Dispatch an overflow."""
        for index in self._indices.get(item, ()):
            self.session._emit_data(encode_line("OV", self.sub_id, index, lost))


class Session:
    """A live TLCP session of :class:`TlcpServer`."""

    def __init__(
        self,
        server: TlcpServer,
        session_id: str,
        protocol: str,
        params: Mapping[str, str],
        diffs: str,
        reduce_head: bool,
        client_ip: str | None,
    ) -> None:
        self.server = server
        self.session_id = session_id
        self.protocol = protocol
        #: The parameters of the ``create_session`` request.
        self.params: dict[str, str] = dict(params)
        self.user = params.get("LS_user")
        self.diffs = diffs
        self.reduce_head = reduce_head
        self.client_ip = client_ip
        self.subscriptions: dict[int, Subscription] = {}
        #: Messages received, as ``(sequence or None, prog or None, text)``.
        self.messages: list[tuple[str | None, int | None, str]] = []
        #: Count of data notifications produced so far (§7.6).
        self.progressive = 0
        self.bandwidth = "unlimited"
        self.closed = False
        self.stream: _Stream | None = None
        self._log: deque[tuple[int, str]] = deque(maxlen=server.recovery_log_size)
        self._pending: list[tuple[int | None, str]] = []
        self._seen_messages: set[tuple[str | None, int]] = set()
        self._timeout: IDelayedCall | None = None
        self._end_line: str | None = None

    def __repr__(self) -> str:
        return f"<Session {self.session_id} bound={self.is_bound} prog={self.progressive}>"

    @property
    def is_bound(self) -> bool:
        """Whether a stream connection is currently bound."""
        return self.stream is not None

    @property
    def kept_notifications(self) -> list[tuple[int, str]]:
        """The data notifications kept for recovery, as ``(progressive, line)``."""
        return list(self._log)

    @property
    def is_v25(self) -> bool:
        """Whether the session speaks TLCP 2.5.0 (3-argument ``MSGDONE``)."""
        return self.protocol == "TLCP-2.5.0"

    # --- output ----------------------------------------------------------------

    def _deliver(self, prog: int | None, line: str) -> None:
        if self.stream is not None:
            self.stream.send(line)
        else:
            self._pending.append((prog, line))

    def _emit_data(self, line: str) -> None:
        """Emit a data notification: counted, logged for recovery, delivered or queued."""
        if self.closed:
            return
        self.progressive += 1
        self._log.append((self.progressive, line))
        self._deliver(self.progressive, line)

    def _emit(self, line: str) -> None:
        if not self.closed:
            self._deliver(None, line)

    def send_raw(self, line: str) -> None:
        """Write ``line`` verbatim (CR LF added) on the current stream, or queue it.

        The line is not counted as a data notification.  For fault tests.
        """
        self._emit(line)

    def end(self, code: int = 32, message: str = "Session closed by the server") -> None:
        """Close the session with ``END,<code>,<message>``.

        If no stream is bound, the next bind is answered with the ``END``.
        """
        if self.closed:
            return
        line = encode_line("END", code, message)
        if self.stream is not None:
            self.stream.close_with(line)
            self._discard()
        else:
            self._close()
            self._end_line = line
            self._start_timeout()

    # --- binding -----------------------------------------------------------

    def _bind(self, stream: _Stream, head: list[str], recover_from: int | None) -> None:
        if self.stream is not None:
            # A newer bind takes over: the old stream just loops.
            self.stream.close_with(encode_line("LOOP", 0))
        self._cancel_timeout()
        if recover_from is not None:
            target = self._recovery_target(recover_from)
            assert target is not None, "checked by the caller"
            resend: list[tuple[int | None, str]] = [
                (p, line) for p, line in self._log if p > target
            ]
            resend.extend((p, line) for p, line in self._pending if p is None)
            self._pending = resend
            head.append(encode_line("PROG", target))
        stream.session = self
        stream.write_head(head)
        pending, self._pending = self._pending, []
        self.stream = stream
        for prog, line in pending:
            if self.stream is None:
                self._pending.append((prog, line))
            else:
                self.stream.send(line)
        stream.start()

    def _stream_gone(self, stream: _Stream) -> None:
        if self.stream is stream:
            self.stream = None
            if not self.closed:
                self._start_timeout()

    def _start_timeout(self) -> None:
        self._cancel_timeout()
        self._timeout = self.server.clock.callLater(
            self.server.session_timeout_millis / 1000.0, self._expire
        )

    def _cancel_timeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def _expire(self) -> None:
        self._timeout = None
        log.info("session {sid} timed out while unbound", sid=self.session_id)
        self._discard()

    def _close(self) -> None:
        """Stop the session: subscriptions, stream and timer."""
        if self.closed:
            return
        self.closed = True
        for sub in self.subscriptions.values():
            sub._stop()
        self.subscriptions.clear()
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close_with(None)
        self._cancel_timeout()

    def _discard(self) -> None:
        """Close the session and forget it."""
        self._close()
        self._cancel_timeout()
        self._end_line = None
        self.server._sessions.pop(self.session_id, None)

    def _recovery_target(self, recover_from: int) -> int | None:
        """The ``PROG`` for a recovery from ``recover_from``, or None if impossible."""
        target = min(recover_from, self.progressive)
        oldest = self._log[0][0] if self._log else self.progressive + 1
        if target < self.progressive and target + 1 < oldest:
            return None
        return target

    # --- control operations ------------------------------------------------

    def _op_add(self, params: Mapping[str, str]) -> None:
        sub_id = _sub_id(params)
        if sub_id in self.subscriptions:
            raise _RequestError(65, f"Subscription {sub_id} already exists")
        mode = params.get("LS_mode")
        if mode not in MODES:
            raise _RequestError(65, "Invalid LS_mode")
        group = params.get("LS_group")
        schema = params.get("LS_schema")
        if group is None or schema is None:
            raise _RequestError(65, "Missing LS_group or LS_schema")
        items = tuple(group.split())
        fields = tuple(schema.split())
        data = self.server.data
        if not items or not all(data.is_valid_item(item) for item in items):
            raise _RequestError(21, "Bad item group name")
        if mode == "COMMAND":
            if "key" not in fields:
                raise _RequestError(15, "COMMAND subscription without a key field")
            if "command" not in fields:
                raise _RequestError(16, "COMMAND subscription without a command field")
        if not fields or not all(data.is_valid_field(i, f) for i in items for f in fields):
            raise _RequestError(23, "Bad field schema name")
        raw_snapshot = params.get("LS_snapshot", "false")
        snapshot: bool | int
        if raw_snapshot == "true":
            snapshot = True
        elif raw_snapshot == "false":
            snapshot = False
        elif raw_snapshot.isdigit() and mode == "DISTINCT":
            snapshot = int(raw_snapshot)
        else:
            raise _RequestError(65, "Invalid LS_snapshot")
        if mode == "RAW" and snapshot is not False:
            raise _RequestError(65, "Snapshot not available in RAW mode")
        frequency = params.get("LS_requested_max_frequency", "unlimited")
        if frequency not in ("unlimited", "unfiltered") and not _positive_decimal(frequency):
            raise _RequestError(65, "Invalid LS_requested_max_frequency")
        buffer_size = params.get("LS_requested_buffer_size", "unlimited")
        if buffer_size != "unlimited" and not buffer_size.isdigit():
            raise _RequestError(65, "Invalid LS_requested_buffer_size")
        sub = Subscription(self, sub_id, mode, items, fields, snapshot, frequency)
        self.subscriptions[sub_id] = sub
        sub._start()

    def _op_delete(self, params: Mapping[str, str]) -> None:
        sub_id = _sub_id(params)
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            raise _RequestError(19, "Subscription not found")
        sub._stop()
        self._emit_data(encode_line("UNSUB", sub_id))

    def _op_reconf(self, params: Mapping[str, str]) -> None:
        sub_id = _sub_id(params)
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            raise _RequestError(19, "Subscription not found")
        if sub.unfiltered:
            raise _RequestError(13, "Unfiltered subscription")
        frequency = params.get("LS_requested_max_frequency")
        if frequency is not None:
            if frequency != "unlimited" and not _positive_decimal(frequency):
                raise _RequestError(65, "Invalid LS_requested_max_frequency")
            sub.max_frequency = frequency
        self._emit_data(encode_line("CONF", sub_id, sub.max_frequency, "filtered"))

    def _op_constrain(self, params: Mapping[str, str]) -> None:
        bandwidth = params.get("LS_requested_max_bandwidth", "unlimited")
        if bandwidth != "unlimited" and not _positive_decimal(bandwidth):
            raise _RequestError(65, "Invalid LS_requested_max_bandwidth")
        self.bandwidth = bandwidth
        if not self.reduce_head:
            self._emit(encode_line("CONS", bandwidth))

    def _op_force_rebind(self, params: Mapping[str, str]) -> None:
        try:
            delay = _int_param(params, "LS_polling_millis") or 0
        except ValueError as e:
            raise _RequestError(65, str(e)) from None
        if self.stream is not None:
            self.stream.close_with(encode_line("LOOP", delay))

    def _op_destroy(self, params: Mapping[str, str]) -> None:
        raw_code = params.get("LS_cause_code")
        if raw_code is None:
            code, message = 31, "Destroy invoked by client"
        else:
            try:
                code = min(int(raw_code), 0)
            except ValueError:
                raise _RequestError(65, "Invalid LS_cause_code") from None
            message = params.get("LS_cause_message", "")
        if self.stream is not None:
            self.stream.close_with(encode_line("END", code, message))
        self._discard()

    def _message(self, req_id: str, params: Mapping[str, str]) -> None:
        text = params.get("LS_message")
        if text is None:
            raise _RequestError(65, "Missing LS_message")
        sequence = params.get("LS_sequence")
        if sequence is not None and (
            sequence == "UNORDERED_MESSAGES" or not _SEQUENCE.match(sequence)
        ):
            raise _RequestError(65, "Invalid LS_sequence")
        try:
            outcome = _bool_param(params, "LS_outcome", True)
            prog = _int_param(params, "LS_msg_prog", minimum=1)
        except ValueError as e:
            raise _RequestError(65, str(e)) from None
        if prog is None and (outcome or sequence is not None):
            raise _RequestError(65, "Missing LS_msg_prog")
        if prog is not None:
            if (sequence, prog) in self._seen_messages:
                raise _RequestError(33, "Message progressive already enqueued")
            self._seen_messages.add((sequence, prog))
        self.messages.append((sequence, prog, text))
        handler = self.server.message_handler
        result = defer.maybeDeferred(handler, self, text, sequence)
        if not outcome or prog is None:
            result.addErrback(lambda f: log.failure("message handler failed", f))
            return
        seq_arg = sequence if sequence is not None else "*"

        def done(response: str | None) -> None:
            if self.is_v25:
                self._emit_data(encode_line("MSGDONE", seq_arg, prog, response or ""))
            else:
                self._emit_data(encode_line("MSGDONE", seq_arg, prog))

        def failed(failure: Failure) -> None:
            if failure.check(MessageError):
                err = cast(MessageError, failure.value)
                code, message = err.code, err.message
            else:
                log.failure("message handler raised", failure)
                code, message = 35, str(failure.value)
            self._emit_data(encode_line("MSGFAIL", seq_arg, prog, code, message))

        result.addCallbacks(done, failed)


def _positive_decimal(text: str) -> bool:
    return bool(_DECIMAL.match(text)) and float(text) > 0


def _sub_id(params: Mapping[str, str]) -> int:
    raw = params.get("LS_subId", "")
    if not raw.isdigit() or int(raw) < 1:
        raise _RequestError(65, "Invalid LS_subId")
    return int(raw)


class Faults:
    """Scripted faults of a :class:`TlcpServer` (its :attr:`TlcpServer.faults`).

    Every method arms (or performs) one fault; with nothing armed the server
    behaves normally.  A fault that counts down ("next", "after n") disarms
    itself once it has fired; :meth:`reset` disarms everything.  :attr:`fired`
    records each fault as it happens, so a test can check that it did.

    Stream faults (:meth:`close_after`, :meth:`close_mid_line`,
    :meth:`truncate_next_chunk`) count the notifications written on streams,
    whatever the session; ``PROBE`` and ``SYNC`` keepalives are not counted and
    never trigger them.  They end the connection with a TCP reset once the bytes
    written have gone out (on TLS and WebSocket: an immediate abort).  The
    session stays alive and unbound, keeping its data notifications for
    recovery, as after a real network fault.

    Request faults (:meth:`fail_next`, :meth:`garbage_next`) apply to HTTP
    ``create_session``/``bind_session`` requests; :meth:`conerr_next` and
    :meth:`refuse_recovery` also to those sent over WebSocket.
    """

    def __init__(self, server: TlcpServer) -> None:
        self._server = server
        #: ``(fault name, detail)`` of every fault that fired, oldest first.
        self.fired: list[tuple[str, str]] = []
        self._close_after: int | None = None
        self._mid_line = False
        self._truncate = False
        self._http_answers: deque[tuple[int, bytes]] = deque()
        self._conerrs: deque[tuple[int, str]] = deque()
        self._recovery_refusal: tuple[int, str] | None = None

    # --- stream faults ------------------------------------------------------

    def close_after(self, n: int) -> None:
        """Reset the stream that carries the ``n``-th next notification, right after it.

        ``close_after(0)`` resets every open stream now.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        if n == 0:
            self._close_after = None
            for stream in list(self._server._streams):
                self._fire("close_after", "0")
                stream.kill()
        else:
            self._close_after = n

    def close_mid_line(self) -> None:
        """Write only the first half of the next notification, then reset the stream."""
        self._mid_line = True

    def truncate_next_chunk(self) -> None:
        """Send the next notification as a truncated HTTP chunk, then reset the stream.

        The chunk header announces the whole line but only half of its bytes
        follow.  (On WebSocket: half the line as a message, then an abort.)
        """
        self._truncate = True

    def stall(self) -> None:
        """Stop writing on every open stream, without closing it.

        Nothing goes out on a stalled stream, not even ``PROBE`` keepalives;
        what would have been written is held.  Streams opened later are not
        affected, so a client that gives up on a stalled stream can bind again
        (and recover from the session's log).
        """
        self._fire("stall", str(len(self._server._streams)))
        for stream in list(self._server._streams):
            stream._stall()

    def unstall(self) -> None:
        """Write what stalled streams held and resume them (keepalives included).

        Streams the client closed meanwhile are gone with what they held; the
        data notifications remain in their session's recovery log.
        """
        for stream in list(self._server._streams):
            stream._unstall()

    # --- request faults ----------------------------------------------------

    def fail_next(
        self, status: int = 500, body: bytes = b"Internal Server Error\r\n", count: int = 1
    ) -> None:
        """Answer the next ``count`` create/bind HTTP requests with ``status`` and ``body``."""
        for _ in range(count):
            self._http_answers.append((status, body))

    def garbage_next(self, data: bytes, count: int = 1) -> None:
        """Answer the next ``count`` create/bind HTTP requests 200 with ``data`` as body."""
        self.fail_next(200, data, count)

    def conerr_next(self, code: int, message: str = "Refused by fault injection",
                    count: int = 1) -> None:
        """Answer the next ``count`` create/bind requests ``CONERR,<code>,<message>``."""
        for _ in range(count):
            self._conerrs.append((code, message))

    def refuse_recovery(
        self, code: int = 4, message: str = "Recovery refused by fault injection"
    ) -> None:
        """Answer every bind with ``LS_recovery_from`` ``CONERR,<code>,<message>``.

        Until :meth:`accept_recovery` or :meth:`reset`.  (Accepting a recovery,
        with ``PROG``, is the normal behaviour.)
        """
        self._recovery_refusal = (code, message)

    def accept_recovery(self) -> None:
        """Undo :meth:`refuse_recovery`."""
        self._recovery_refusal = None

    # --- immediate actions --------------------------------------------------

    def end_streams(self, code: int = 32, message: str = "Session closed by the server") -> None:
        """Close every bound session with ``END,<code>,<message>`` on its stream."""
        for session in list(self._server._sessions.values()):
            if session.is_bound:
                self._fire("end_streams", f"{code}")
                session.end(code, message)

    def send_line_to_all(self, line: str) -> None:
        """Write ``line`` (e.g. ``"SYNC ERROR"``) to every live session (queued if unbound)."""
        for session in list(self._server._sessions.values()):
            self._fire("send_line_to_all", line)
            session.send_raw(line)

    def reset(self) -> None:
        """Disarm every fault and resume stalled streams."""
        self._close_after = None
        self._mid_line = self._truncate = False
        self._http_answers.clear()
        self._conerrs.clear()
        self._recovery_refusal = None
        self.unstall()

    # --- hooks used by the server -------------------------------------------

    def _fire(self, name: str, detail: str = "") -> None:
        log.debug("fault {name} {detail}", name=name, detail=detail)
        self.fired.append((name, detail))

    @property
    def _armed(self) -> bool:
        return self._mid_line or self._truncate

    def _intercept(self, stream: _Stream, line: str) -> bool:
        """Before a notification is written: True if a fault consumed it."""
        data = line + "\r\n"
        if self._mid_line:
            self._mid_line = False
            self._fire("close_mid_line", line)
            half = data.encode("utf-8")[: max(1, len(data.encode("utf-8")) // 2)]
            stream.output.write(half.decode("utf-8", "ignore"))
            stream.kill()
            return True
        if self._truncate:
            self._truncate = False
            self._fire("truncate_next_chunk", line)
            stream.output.write_truncated_chunk(data)
            stream.kill()
            return True
        return False

    def _count_down(self, stream: _Stream) -> bool:
        """After a notification is written: True if the stream was reset."""
        assert self._close_after is not None
        self._close_after -= 1
        if self._close_after > 0:
            return False
        self._close_after = None
        self._fire("close_after", "")
        stream.kill()
        return True

    def _http_answer(self) -> tuple[int, bytes] | None:
        if not self._http_answers:
            return None
        status, body = self._http_answers.popleft()
        self._fire("fail_next" if status != 200 else "garbage_next", str(status))
        return status, body

    def _conerr(self) -> None:
        if self._conerrs:
            code, message = self._conerrs.popleft()
            self._fire("conerr_next", str(code))
            raise _ConnectionError(code, message)

    def _check_recovery(self, recover_from: int | None) -> None:
        if recover_from is not None and self._recovery_refusal is not None:
            self._fire("refuse_recovery", str(recover_from))
            raise _ConnectionError(*self._recovery_refusal)


class _TrackedConnection(ProtocolWrapper):
    def __init__(self, factory: WrappingFactory[Any], wrapped: Any) -> None:
        super().__init__(factory, wrapped)
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        super().connectionLost(reason)
        self.lost.callback(None)


class _TrackingFactory(WrappingFactory[_TrackedConnection]):
    protocol = _TrackedConnection

    def connections(self) -> list[_TrackedConnection]:
        return list(cast("dict[_TrackedConnection, int]", self.protocols))


class _TlcpResource(Resource):
    isLeaf = True

    def __init__(self, server: TlcpServer) -> None:
        super().__init__()
        self._server = server

    def render(self, request: IRequest) -> bytes | int:
        return self._server._render(cast(Request, request))


class TlcpServer:
    """A TLCP 2.5.0/2.4.0 test server (HTTP and WebSocket transports).

    Put :meth:`resource` at the root of a ``twisted.web`` site (requests are
    ``…/lightstreamer/<name>.txt`` under any path prefix) or call
    :meth:`listen`.  Publish data through :attr:`data`.

    ``diffs`` selects the diff encodings the server may use in ``U`` lines:
    ``""`` (none), ``"T"`` (TLCP-diff), ``"P"`` (JSON Patch) or ``"TP"``.
    ``client_ids`` are the accepted ``LS_cid`` values (``None``: any non-empty
    one); a missing or other ``LS_cid`` is refused with ``CONERR,65``.
    ``message_handler`` answers ``msg`` requests (default: empty response).
    ``recovery_log_size`` is the number of data notifications kept per session
    for recovery; ``sync_interval_millis`` spaces ``SYNC`` lines (0: none).
    ``websocket=False`` refuses WebSocket upgrades with HTTP
    ``websocket_refusal`` (to exercise Stream-Sense); ``set_cookie`` is a
    ``Set-Cookie`` value for every ``create_session`` response and WebSocket
    handshake; :attr:`received` records the headers of recent requests.
    :attr:`faults` scripts faults (broken, stalled or truncated streams, failed
    or refused requests, refused recoveries...; see :class:`Faults`).
    """

    def __init__(
        self,
        *,
        clock: IReactorTime | None = None,
        keepalive_millis: int = 5000,
        content_length: int | None = None,
        request_limit: int = 50000,
        session_timeout_millis: int = 30000,
        server_name: str = "txlightstreamer-test",
        data: DataModel | None = None,
        diffs: str = "",
        message_handler: MessageHandler | None = None,
        recovery_log_size: int = 1000,
        sync_interval_millis: int = 30000,
        client_ids: Collection[str] | None = DEFAULT_CLIENT_IDS,
        websocket: bool = True,
        websocket_refusal: int = 400,
        set_cookie: str | None = None,
    ) -> None:
        if set(diffs) - {"T", "P"}:
            raise ValueError("diffs may only contain 'T' and 'P'")
        self._clock = clock
        self.keepalive_millis = keepalive_millis
        self.content_length = content_length
        self.request_limit = request_limit
        self.session_timeout_millis = session_timeout_millis
        self.server_name = server_name
        self.data: DataModel = data if data is not None else DataModel()
        self.diffs = diffs
        self.message_handler: MessageHandler = message_handler or _default_handler
        self.recovery_log_size = recovery_log_size
        self.sync_interval_millis = sync_interval_millis
        self.client_ids = None if client_ids is None else frozenset(client_ids)
        #: Whether WebSocket upgrades on ``…/lightstreamer`` are accepted (they are
        #: refused with HTTP ``websocket_refusal`` otherwise).
        self.websocket = websocket
        self.websocket_refusal = websocket_refusal
        #: A ``Set-Cookie`` value sent with every ``create_session`` HTTP response and
        #: every WebSocket handshake response.
        self.set_cookie = set_cookie
        #: ``(request name or "websocket", headers)`` of the last 1000 requests received
        #: (HTTP requests and WebSocket handshakes), header names in lower case and
        #: repeated headers joined with ", ".
        self.received: deque[tuple[str, dict[str, str]]] = deque(maxlen=1000)
        self._ws_site_resource: Resource | None = None
        self.url: str | None = None
        self._sessions: dict[str, Session] = {}
        self._streams: set[_Stream] = set()
        self._refusal: tuple[int, str] | None = None
        self._resource = _TlcpResource(self)
        self._port: IListeningPort | None = None
        self._factory: _TrackingFactory | None = None
        #: Scripted faults (see :class:`Faults`); nothing is armed by default.
        self.faults = Faults(self)

    # --- public API -------------------------------------------------------------

    @property
    def clock(self) -> IReactorTime:
        """The clock used for every timer (the global reactor unless injected)."""
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = cast(IReactorTime, reactor)
        return self._clock

    @property
    def sessions(self) -> Mapping[str, Session]:
        """Live sessions by id (read-only view)."""
        return MappingProxyType(self._sessions)

    def resource(self) -> Resource:
        """The ``IResource`` serving the protocol."""
        return self._resource

    def refuse_sessions(self, code: int, message: str) -> None:
        """Answer every following ``create_session`` with ``CONERR,<code>,<message>``."""
        self._refusal = (code, message)

    def accept_sessions(self) -> None:
        """Undo :meth:`refuse_sessions`."""
        self._refusal = None

    def drop_streams(self) -> None:
        """Abort every open stream connection abruptly; sessions stay (unbound)."""
        for stream in list(self._streams):
            stream.abort()

    def listen(
        self,
        reactor: IReactorTCP | None = None,
        port: int = 0,
        interface: str = "127.0.0.1",
        tls: Any = None,
    ) -> Deferred[IListeningPort]:
        """Listen on ``interface:port`` (0 = any free port) and set :attr:`url`.

        With ``tls`` (a server context factory, e.g. ``CertificateOptions`` or
        ``PrivateCertificate.options()``) it serves HTTPS/WSS and :attr:`url` is
        ``https://…``.
        """
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = cast(IReactorTCP, global_reactor)
        site = Site(self._resource)
        site.noisy = False
        factory = _TrackingFactory(site)
        factory.noisy = False
        try:
            if tls is None:
                listening = reactor.listenTCP(port, cast(Any, factory), interface=interface)
            else:
                listening = cast(Any, reactor).listenSSL(
                    port, factory, tls, interface=interface)
        except Exception:
            return defer.fail()
        self._port, self._factory = listening, factory
        address = listening.getHost()
        host = getattr(address, "host", interface)
        if ":" in host:
            host = f"[{host}]"
        scheme = "http" if tls is None else "https"
        self.url = f"{scheme}://{host}:{getattr(address, 'port', port)}"
        return defer.succeed(listening)

    def stop(self) -> Deferred[None]:
        """Finish every stream, forget every session and timer, stop listening."""
        self._refusal = None
        for session in list(self._sessions.values()):
            session._discard()
        for stream in list(self._streams):
            stream.close_with(None)
        waits: list[Deferred[Any]] = []
        if self._factory is not None:
            for conn in self._factory.connections():
                waits.append(conn.lost)
                transport = conn.transport
                if transport is not None:
                    transport.abortConnection()  # type: ignore[attr-defined]
            self._factory = None
        if self._port is not None:
            waits.append(defer.maybeDeferred(self._port.stopListening))
            self._port = None
        self.url = None
        result: Deferred[None] = defer.gatherResults(waits, consumeErrors=True).addCallback(
            lambda _: None
        )
        return result

    # --- request handling -----------------------------------------------------

    def _record(self, name: str, request: Request) -> None:
        headers = {
            key.decode("latin-1").lower(): ", ".join(v.decode("latin-1") for v in values)
            for key, values in request.requestHeaders.getAllRawHeaders()
        }
        self.received.append((name, headers))

    def _ws_resource(self) -> Resource:
        if self._ws_site_resource is None:
            from ._websocket import websocket_resource

            self._ws_site_resource = websocket_resource(self)
        return self._ws_site_resource

    def _ws_request(self, conn: Any, name: str, lines: list[str]) -> None:
        """One request received as a WebSocket message on ``conn``."""
        query = {"LS_protocol": conn.tlcp_protocol}
        if name == "wsok":
            conn.send_text("WSOK\r\n")
            return
        if name == "create_session":
            answer = self._create_stream(_WsOutput(conn), query, lines)
            if answer:
                conn.send_text(_body(*answer).decode("utf-8"))
            return
        # On a WebSocket, LS_session defaults to the last session bound on it (§2.3).
        if conn.last_session is not None:
            query["LS_session"] = conn.last_session
        if name == "bind_session":
            answer = self._bind_stream(_WsOutput(conn), query, lines)
            if answer:
                conn.send_text(_body(*answer).decode("utf-8"))
        elif name in ("control", "msg"):
            handler = self._control if name == "control" else self._msg
            # Answers go out before what the requests triggered (SUBOK, UNSUB, END...).
            conn.cork()
            reply = ""
            try:
                reply = handler(cast(Request, None), query, lines).decode("utf-8")
            finally:
                conn.uncork(reply)
        elif name == "heartbeat":
            body = self._heartbeat(cast(Request, None), query, lines)
            if body != b"REQOK\r\n":
                conn.send_text(body.decode("utf-8"))  # only errors are answered on WS
        else:
            conn.send_text(encode_line("ERROR", 67, f"Unknown request {name!r}") + "\r\n")

    def _render(self, request: Request) -> bytes | int:
        path = [segment.decode("utf-8", "replace") for segment in request.postpath or ()]
        while path and path[-1] == "":
            path.pop()
        upgrade = (request.getHeader(b"upgrade") or b"").lower() == b"websocket"
        if upgrade or (path and path[-1] == "lightstreamer"):
            self._record("websocket", request)
            if not upgrade or not path or path[-1] != "lightstreamer":
                request.setResponseCode(400)
                return b"WebSocket upgrade expected on .../lightstreamer\r\n"
            if not self.websocket:
                request.setResponseCode(self.websocket_refusal)
                return b"WebSocket not available on this server\r\n"
            return self._ws_resource().render(request)  # type: ignore[no-any-return]
        if len(path) < 2 or path[-2] != "lightstreamer" or not path[-1].endswith(".txt"):
            request.setResponseCode(404)
            return b"Not a TLCP request\r\n"
        name = path[-1][: -len(".txt")]
        method = request.method
        if method not in (b"POST", b"GET"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, POST")
            return b""
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        handler = {
            "create_session": self._create,
            "bind_session": self._bind,
            "control": self._control,
            "msg": self._msg,
            "heartbeat": self._heartbeat,
        }.get(name)
        if handler is None:
            request.setResponseCode(404)
            return b"Unknown TLCP request\r\n"
        self._record(name, request)
        if name in ("create_session", "bind_session"):
            injected = self.faults._http_answer()
            if injected is not None:
                request.setResponseCode(injected[0])
                return injected[1]
        if name == "create_session" and self.set_cookie is not None:
            request.responseHeaders.addRawHeader(b"set-cookie", self.set_cookie.encode())
        try:
            query, lines = self._read_request(request)
        except ValueError as e:
            if name in ("create_session", "bind_session"):
                return _body(encode_line("CONERR", 67, f"Malformed request: {e}"))
            return _body(encode_line("ERROR", 67, f"Malformed request: {e}"))
        return handler(request, query, lines)

    def _read_request(self, request: Request) -> tuple[dict[str, str], list[str]]:
        uri = request.uri.decode("utf-8")
        query = parse_params(uri.partition("?")[2])
        lines: list[str] = []
        if request.method == b"POST" and request.content is not None:
            body = request.content.read().decode("utf-8")
            lines = [line for line in re.split(r"\r?\n", body) if line]
        return query, lines

    def _check_protocol(self, params: Mapping[str, str]) -> str:
        protocol = params.get("LS_protocol")
        if protocol not in SUPPORTED_PROTOCOLS:
            raise _ConnectionError(65, "Unsupported protocol version")
        return protocol

    def _open_stream(
        self, output: _HttpOutput | _WsOutput, params: Mapping[str, str]
    ) -> tuple[_Stream, int]:
        """Build the stream for a create/bind; return it and the CONOK third argument."""
        try:
            polling = _bool_param(params, "LS_polling", False)
            if polling:
                polling_ms = _int_param(params, "LS_polling_millis") or 0
                idle_ms = _int_param(params, "LS_idle_millis") or 0
                keepalive_ms = 0
                content_length = None
                send_sync = False
            else:
                polling_ms = idle_ms = 0
                requested = _int_param(params, "LS_keepalive_millis")
                keepalive_ms = (
                    self.keepalive_millis if requested is None else max(1000, min(60000, requested))
                )
                requested_length = _int_param(params, "LS_content_length", minimum=1)
                if output.websocket:
                    # LS_content_length is an HTTP matter; only the server's own cap
                    # applies to WebSocket streams (so tests can make them LOOP).
                    requested_length = None
                # The server setting acts as a cap on what the client asks for.
                lengths = [n for n in (requested_length, self.content_length) if n is not None]
                content_length = min(lengths) if lengths else None
                send_sync = _bool_param(params, "LS_send_sync", True)
            _int_param(params, "LS_inactivity_millis")
        except ValueError as e:
            raise _ConnectionError(65, str(e)) from None
        stream = _Stream(
            self,
            output,
            polling=polling,
            keepalive_ms=keepalive_ms,
            idle_ms=idle_ms,
            polling_ms=polling_ms,
            content_length=content_length,
            send_sync=send_sync,
        )
        return stream, idle_ms if polling else keepalive_ms

    def _create(self, request: Request, query: dict[str, str], lines: list[str]) -> bytes | int:
        answer = self._create_stream(_HttpOutput(request), query, lines)
        return NOT_DONE_YET if answer is None else _body(*answer)

    def _bind(self, request: Request, query: dict[str, str], lines: list[str]) -> bytes | int:
        answer = self._bind_stream(_HttpOutput(request), query, lines)
        return NOT_DONE_YET if answer is None else _body(*answer)

    def _create_stream(
        self, output: _HttpOutput | _WsOutput, query: Mapping[str, str], lines: list[str]
    ) -> list[str] | None:
        """Create a session streaming on ``output``; None, or the lines of a refusal."""
        try:
            params = _first_line(query, lines)
            protocol = self._check_protocol(params)
            self.faults._conerr()
            if self._refusal is not None:
                raise _ConnectionError(*self._refusal)
            cid = params.get("LS_cid")
            if cid is None:
                raise _ConnectionError(65, "Missing LS_cid")
            if self.client_ids is not None and cid not in self.client_ids:
                raise _ConnectionError(65, "Invalid LS_cid")
            if "LS_op" in params:
                raise _ConnectionError(64, "Create+control combos are not supported")
            try:
                reduce_head = _bool_param(params, "LS_reduce_head", False)
            except ValueError as e:
                raise _ConnectionError(65, str(e)) from None
            supported = params.get("LS_supported_diffs")
            if supported is None:
                diffs = self.diffs
            else:
                allowed = {token.strip() for token in supported.split(",")}
                diffs = "".join(c for c in self.diffs if c in allowed)
            stream, third = self._open_stream(output, params)
        except _ConnectionError as e:
            return [encode_line("CONERR", e.code, e.message)]
        client_ip = output.client_ip
        session_id = "S" + secrets.token_hex(8)
        session = Session(self, session_id, protocol, params, diffs, reduce_head, client_ip)
        self._sessions[session_id] = session
        head = [encode_line("CONOK", session_id, self.request_limit, third, "*")]
        if not reduce_head:
            head.append(encode_line("SERVNAME", self.server_name))
            if client_ip is not None:
                head.append(encode_line("CLIENTIP", client_ip))
            head.append(encode_line("CONS", session.bandwidth))
        log.debug("created session {sid}", sid=session_id)
        return self._start_stream(session, stream, head, None)

    def _bind_stream(
        self, output: _HttpOutput | _WsOutput, query: Mapping[str, str], lines: list[str]
    ) -> list[str] | None:
        """Bind a session to ``output``; None, or the lines of a refusal."""
        try:
            params = _first_line(query, lines)
            protocol = self._check_protocol(params)
            self.faults._conerr()
            session_id = params.get("LS_session")
            if session_id is None:
                raise _ConnectionError(65, "Missing LS_session")
            session = self._sessions.get(session_id)
            if session is None:
                raise _ConnectionError(20, "Session not found")
            if session._end_line is not None:
                line = session._end_line
                session._end_line = None
                session._cancel_timeout()
                self._sessions.pop(session_id, None)
                return [line]
            if protocol != session.protocol:
                raise _ConnectionError(3, "Incompatible protocol version")
            try:
                reduce_head = _bool_param(params, "LS_reduce_head", False)
                recover_from = _int_param(params, "LS_recovery_from")
            except ValueError as e:
                raise _ConnectionError(65, str(e)) from None
            self.faults._check_recovery(recover_from)
            stream, third = self._open_stream(output, params)
        except _ConnectionError as e:
            return [encode_line("CONERR", e.code, e.message)]
        head: list[str] = []
        client_ip = output.client_ip
        if not reduce_head:
            head.append(encode_line("CONOK", session_id, self.request_limit, third, "*"))
            if client_ip is not None and client_ip != session.client_ip:
                head.append(encode_line("CLIENTIP", client_ip))
        session.client_ip = client_ip
        return self._start_stream(session, stream, head, recover_from)

    def _start_stream(
        self, session: Session, stream: _Stream, head: list[str], recover_from: int | None
    ) -> list[str] | None:
        # Fail a recovery bind before anything is written.
        if recover_from is not None and session._recovery_target(recover_from) is None:
            stream.closed = True
            return [encode_line("CONERR", 4, "Recovery progressive no longer available")]
        self._streams.add(stream)
        output = stream.output
        if isinstance(output, _WsOutput):
            output.conn.attach(stream, session)
        session._bind(stream, head, recover_from)
        return None

    def _session_for(self, params: Mapping[str, str]) -> Session:
        session_id = params.get("LS_session")
        if session_id is None:
            raise _RequestError(65, "Missing LS_session")
        session = self._sessions.get(session_id)
        if session is None or session.closed:
            raise _RequestError(20, "Session not found")
        return session

    def _each_line(
        self,
        query: dict[str, str],
        lines: list[str],
        handle: Callable[[str, dict[str, str]], None],
    ) -> bytes:
        try:
            self._check_protocol(query)
        except _ConnectionError as e:
            return _body(encode_line("ERROR", e.code, e.message))
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
            except _RequestError as e:
                out.append(encode_line("REQERR", req_id, e.code, e.message))
            else:
                out.append(encode_line("REQOK", req_id))
        return _body(*out)

    def _control(self, request: Request, query: dict[str, str], lines: list[str]) -> bytes:
        def handle(req_id: str, params: dict[str, str]) -> None:
            op = params.get("LS_op")
            if op in _MPN_OPS:
                raise _RequestError(40, "MPN module disabled")
            method = {
                "add": Session._op_add,
                "delete": Session._op_delete,
                "reconf": Session._op_reconf,
                "constrain": Session._op_constrain,
                "force_rebind": Session._op_force_rebind,
                "destroy": Session._op_destroy,
            }.get(op or "")
            if method is None:
                raise _RequestError(65, "Invalid LS_op")
            method(self._session_for(params), params)

        return self._each_line(query, lines, handle)

    def _msg(self, request: Request, query: dict[str, str], lines: list[str]) -> bytes:
        def handle(req_id: str, params: dict[str, str]) -> None:
            self._session_for(params)._message(req_id, params)

        return self._each_line(query, lines, handle)

    def _heartbeat(self, request: Request, query: dict[str, str], lines: list[str]) -> bytes:
        try:
            self._check_protocol(query)
            for line in lines:
                parse_params(line)
        except _ConnectionError as e:
            return _body(encode_line("ERROR", e.code, e.message))
        except ValueError as e:
            return _body(encode_line("ERROR", 67, f"Malformed request: {e}"))
        return _body("REQOK")


def _first_line(query: Mapping[str, str], lines: list[str]) -> dict[str, str]:
    try:
        return {**query, **(parse_params(lines[0]) if lines else {})}
    except ValueError as e:
        raise _ConnectionError(67, f"Malformed request: {e}") from None


def _body(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


def _client_ip(request: Request) -> str | None:
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else None
