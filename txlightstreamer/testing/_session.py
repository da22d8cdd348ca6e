"""Sessions of the test server and their subscriptions."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Mapping
from typing import Protocol, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._adapter import DataModel
from ._encoding import encode_first_row, encode_line, encode_update
from ._pacing import Pacer, Row, frequency_interval
from ._params import (
    MODES,
    SEQUENCE,
    MessageError,
    RequestError,
    bool_param,
    int_param,
    parse_sub_id,
    positive_decimal,
)
from ._stream import Stream

__all__ = ["MessageHandler", "Session", "SessionHost", "Subscription"]

log = Logger()

MessageHandler = Callable[["Session", str, "str | None"], "str | None | Deferred[str | None]"]
"""``handler(session, message, sequence)``: returns the ``MSGDONE`` response
text (or ``None`` for an empty one), possibly via a Deferred; raising
:class:`MessageError` produces ``MSGFAIL`` with its code and message, any other
exception ``MSGFAIL`` code 35."""


def default_handler(session: Session, message: str, sequence: str | None) -> str | None:
    """The message handler used when none is given: an empty ``MSGDONE``."""
    return None


# Parameters that vary between two sendings of the same subscription request.
_PER_REQUEST = frozenset({"LS_reqId", "LS_ack", "LS_session", "LS_protocol", "LS_op", "LS_cause"})


def _subscription_request(params: Mapping[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(item for item in params.items() if item[0] not in _PER_REQUEST)


def _accepts_anything(data: DataModel) -> bool:
    """Whether ``data`` accepts every item, field and mode: its own rules, none set."""
    cls = type(data)
    return (
        not data.strict_items
        and not data._modes
        and cls.is_valid_item is DataModel.is_valid_item
        and cls.is_valid_field is DataModel.is_valid_field
        and cls.is_allowed_mode is DataModel.is_allowed_mode
    )


class SessionHost(Protocol):
    """What a session needs of its server."""

    @property
    def clock(self) -> IReactorTime: ...

    @property
    def data(self) -> DataModel: ...

    @property
    def recovery_log_size(self) -> int: ...

    @property
    def session_timeout_millis(self) -> int: ...

    @property
    def message_handler(self) -> MessageHandler: ...

    @property
    def enforce_limits(self) -> bool: ...

    @property
    def _sessions(self) -> dict[str, Session]: ...


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
        buffer_size: int | None = None,
    ) -> None:
        self.session = session
        self.sub_id = sub_id
        self.mode = mode
        self.items = items
        self.fields = fields
        self.snapshot = snapshot
        self.unfiltered = max_frequency == "unfiltered"
        self.max_frequency = "unlimited" if self.unfiltered else max_frequency
        # Tuples (and tuple rows below): the garbage collector stops tracking them.
        self._indices: dict[str, tuple[int, ...]] = {
            item: (index,) for index, item in enumerate(items, start=1)
        }
        if len(self._indices) < len(items):  # an item more than once
            self._indices = {}
            for index, item in enumerate(items, start=1):
                self._indices[item] = (*self._indices.get(item, ()), index)
        self._field_set = frozenset(fields)
        self._baseline: dict[int, Row] = {}
        #: The parameters of the ``add`` that made it, but for the per-request ones.
        self.request: frozenset[tuple[str, str]] = frozenset()
        #: Updates kept waiting per item under a frequency limit (None: unlimited).
        self.buffer_size = buffer_size
        self._pacer: Pacer | None = None

    @property
    def key_position(self) -> int:
        """1-based position of the ``key`` field (COMMAND)."""
        return self.fields.index("key") + 1

    @property
    def command_position(self) -> int:
        """1-based position of the ``command`` field (COMMAND)."""
        return self.fields.index("command") + 1

    def _row(self, values: Mapping[str, str | None]) -> Row:
        return tuple([values.get(name) for name in self.fields])

    def _send_row(self, index: int, row: Row) -> None:
        encoded = encode_update(self._baseline.get(index), row, diffs=self.session.diffs)
        self._baseline[index] = row
        self.session._emit_data(f"U,{self.sub_id},{index},{encoded}")

    def _deliver(self, index: int, row: Row) -> None:
        if self._pacer is None:
            self._send_row(index, row)
        else:
            self._pacer.offer(index, row)

    def _set_max_frequency(self, max_frequency: str) -> None:
        self.max_frequency = max_frequency
        if self._pacer is not None:
            self._pacer.interval = frequency_interval(max_frequency)

    def _start(self) -> None:
        session = self.session
        data = session.server.data
        if session.server.enforce_limits and self.mode in ("MERGE", "DISTINCT") and (
            not self.unfiltered
        ):
            self._pacer = Pacer(session.server.clock, self._send_row,
                                interval=frequency_interval(self.max_frequency),
                                buffer_size=self.buffer_size)
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
        if type(data).add_listener is DataModel.add_listener:
            listeners = data._listeners  # the same as add_listener, without a call per item
            for item in self._indices:
                listeners.setdefault(item, []).append(self)
        else:
            for item in self._indices:
                data.add_listener(item, self)
        if self.snapshot is False or self.mode == "RAW":
            return
        if self.mode == "MERGE":
            self._merge_snapshot()
            return
        for index, item in enumerate(self.items, start=1):
            if self.mode == "DISTINCT":
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

    def _merge_snapshot(self) -> None:
        """Every item's state as its first update: the lines of `_send_row`, sent together."""
        data = self.session.server.data
        fields = self.fields
        baseline = self._baseline
        head = f"U,{self.sub_id},"
        lines: list[str] = []
        cls = type(data)
        if cls.has_state is DataModel.has_state and cls.state is DataModel.state:
            # What has_state and state say, read in place (state would copy each row).
            found = data._items.get
            for index, item in enumerate(self.items, start=1):
                it = found(item)
                if it is not None and it.has_state:
                    values = it.state
                    row = tuple([values.get(name) for name in fields])
                    baseline[index] = row
                    lines.append(f"{head}{index},{encode_first_row(row)}")
        else:
            for index, item in enumerate(self.items, start=1):
                if data.has_state(item):
                    values = data.state(item)
                    row = tuple([values.get(name) for name in fields])
                    baseline[index] = row
                    lines.append(f"{head}{index},{encode_first_row(row)}")
        self.session._emit_data_lines(lines)

    def _stop(self) -> None:
        if self._pacer is not None:
            self._pacer.stop()
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
            self._deliver(index, row)

    def item_command(self, item: str, row: Mapping[str, str | None]) -> None:
        """Dispatch a COMMAND event."""
        if self.mode != "COMMAND":
            return
        values = self._row(row)
        for index in self._indices.get(item, ()):
            self._send_row(index, values)

    def item_cleared(self, item: str) -> None:
        """Dispatch a clear-snapshot."""
        for index in self._indices.get(item, ()):
            if self.mode == "MERGE":
                self._deliver(index, (None,) * len(self.fields))
            elif self.mode in ("DISTINCT", "COMMAND"):
                if self._pacer is not None:
                    self._pacer.discard(index)  # events from before the clear
                self.session._emit_data(encode_line("CS", self.sub_id, index))

    def item_overflow(self, item: str, lost: int) -> None:
        """Dispatch an overflow."""
        for index in self._indices.get(item, ()):
            self.session._emit_data(encode_line("OV", self.sub_id, index, lost))


class Session:
    """A live TLCP session of :class:`TlcpServer`."""

    def __init__(
        self,
        server: SessionHost,
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
        self.stream: Stream | None = None
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
            self.stream.send(line, prog)
        else:
            self._pending.append((prog, line))

    def _requeue(self, held: list[tuple[int | None, str]]) -> None:
        """Lines a stream held (stalled) and never wrote: first in line for the next bind."""
        if not self.closed:
            self._pending[:0] = held

    def _emit_data(self, line: str) -> None:
        """Emit a data notification: counted, logged for recovery, delivered or queued."""
        if self.closed:
            return
        self.progressive += 1
        self._log.append((self.progressive, line))
        self._deliver(self.progressive, line)

    def _emit_data_lines(self, lines: list[str]) -> None:
        """`_emit_data` of each line, in order, with one write when nothing stands between."""
        if self.closed or not lines:
            return
        first = self.progressive + 1
        self.progressive += len(lines)
        progs = range(first, self.progressive + 1)
        self._log.extend(zip(progs, lines, strict=True))
        stream = self.stream
        if stream is not None and stream.send_lines(lines):
            return
        for prog, line in zip(progs, lines, strict=True):
            if self.closed:
                return
            self._deliver(prog, line)

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

    def _bind(self, stream: Stream, head: list[str], recover_from: int | None) -> None:
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
                self.stream.send(line, prog)
        stream.start()

    def _stream_gone(self, stream: Stream) -> None:
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
        sub_id = parse_sub_id(params)
        existing = self.subscriptions.get(sub_id)
        if existing is not None:
            if existing.request == _subscription_request(params):
                # A re-sent add (new LS_reqId, e.g. after a LOOP): REQOK and nothing else.
                return
            raise RequestError(65, f"Subscription {sub_id} already exists")
        mode = params.get("LS_mode")
        if mode not in MODES:
            raise RequestError(65, "Invalid LS_mode")
        group = params.get("LS_group")
        schema = params.get("LS_schema")
        if group is None or schema is None:
            raise RequestError(65, "Missing LS_group or LS_schema")
        items = tuple(group.split())
        fields = tuple(schema.split())
        data = self.server.data
        open_data = _accepts_anything(data)
        if not items or not (open_data or all(data.is_valid_item(item) for item in items)):
            raise RequestError(21, "Bad item group name")
        if not (open_data or all(data.is_allowed_mode(item, mode) for item in items)):
            raise RequestError(24, "Subscription mode not allowed for an item")
        if mode == "COMMAND":
            if "key" not in fields:
                raise RequestError(15, "COMMAND subscription without a key field")
            if "command" not in fields:
                raise RequestError(16, "COMMAND subscription without a command field")
        if not fields or not (
            open_data or all(data.is_valid_field(i, f) for i in items for f in fields)
        ):
            raise RequestError(23, "Bad field schema name")
        raw_snapshot = params.get("LS_snapshot", "false")
        snapshot: bool | int
        if raw_snapshot == "true":
            snapshot = True
        elif raw_snapshot == "false":
            snapshot = False
        elif raw_snapshot.isdigit() and mode == "DISTINCT":
            snapshot = int(raw_snapshot)
        else:
            raise RequestError(65, "Invalid LS_snapshot")
        if mode == "RAW" and snapshot is not False:
            raise RequestError(65, "Snapshot not available in RAW mode")
        frequency = params.get("LS_requested_max_frequency", "unlimited")
        if frequency not in ("unlimited", "unfiltered") and not positive_decimal(frequency):
            raise RequestError(65, "Invalid LS_requested_max_frequency")
        raw_buffer = params.get("LS_requested_buffer_size")
        buffer_size: int | None
        if raw_buffer is None:
            buffer_size = 1 if mode == "MERGE" else None  # the defaults of tlcp.md 3.3
        elif raw_buffer == "unlimited":
            buffer_size = None
        elif raw_buffer.isdigit():
            buffer_size = max(1, int(raw_buffer))
        else:
            raise RequestError(65, "Invalid LS_requested_buffer_size")
        sub = Subscription(self, sub_id, mode, items, fields, snapshot, frequency, buffer_size)
        sub.request = _subscription_request(params)
        self.subscriptions[sub_id] = sub
        sub._start()

    def _op_delete(self, params: Mapping[str, str]) -> None:
        sub_id = parse_sub_id(params)
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            raise RequestError(19, "Subscription not found")
        sub._stop()
        self._emit_data(encode_line("UNSUB", sub_id))

    def _op_reconf(self, params: Mapping[str, str]) -> None:
        sub_id = parse_sub_id(params)
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            raise RequestError(19, "Subscription not found")
        if sub.unfiltered:
            raise RequestError(13, "Unfiltered subscription")
        frequency = params.get("LS_requested_max_frequency")
        if frequency is not None:
            if frequency != "unlimited" and not positive_decimal(frequency):
                raise RequestError(65, "Invalid LS_requested_max_frequency")
            sub._set_max_frequency(frequency)
        self._emit_data(encode_line("CONF", sub_id, sub.max_frequency, "filtered"))

    def _op_constrain(self, params: Mapping[str, str]) -> None:
        bandwidth = params.get("LS_requested_max_bandwidth", "unlimited")
        if bandwidth != "unlimited" and not positive_decimal(bandwidth):
            raise RequestError(65, "Invalid LS_requested_max_bandwidth")
        self.bandwidth = bandwidth
        if not self.reduce_head:
            self._emit(encode_line("CONS", bandwidth))

    def _op_force_rebind(self, params: Mapping[str, str]) -> None:
        try:
            delay = int_param(params, "LS_polling_millis") or 0
        except ValueError as e:
            raise RequestError(65, str(e)) from None
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
                raise RequestError(65, "Invalid LS_cause_code") from None
            message = params.get("LS_cause_message", "")
        if self.stream is not None:
            self.stream.close_with(encode_line("END", code, message))
        self._discard()

    def _message(self, req_id: str, params: Mapping[str, str]) -> None:
        text = params.get("LS_message")
        if text is None:
            raise RequestError(65, "Missing LS_message")
        sequence = params.get("LS_sequence")
        if sequence is not None and (
            sequence == "UNORDERED_MESSAGES" or not SEQUENCE.match(sequence)
        ):
            raise RequestError(65, "Invalid LS_sequence")
        try:
            outcome = bool_param(params, "LS_outcome", True)
            prog = int_param(params, "LS_msg_prog", minimum=1)
        except ValueError as e:
            raise RequestError(65, str(e)) from None
        if prog is None and (outcome or sequence is not None):
            raise RequestError(65, "Missing LS_msg_prog")
        if prog is not None:
            if (sequence, prog) in self._seen_messages:
                raise RequestError(33, "Message progressive already enqueued")
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
