"""
The ``twistd lightstreamer`` service and ``python -m txlightstreamer``: stream a
Lightstreamer server to JSON lines.

Both entry points share `Options` and run the same `LsService`. The JSON-lines output
is a public contract (see README.rst): one object per line, flushed per line, each with
an ``"event"`` key; field values are strings or ``null``.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.logger import ILogObserver, Logger, textFileLogObserver
from twisted.python import usage
from twisted.python.failure import Failure

from txlightstreamer._subscription import (
    MODE_COMMAND,
    MODE_DISTINCT,
    MODE_MERGE,
    MODE_RAW,
    ItemUpdate,
    Table,
)
from txlightstreamer._version import __version__
from txlightstreamer.client import LsClient, SessionInfo
from txlightstreamer.errors import (
    LightstreamerError,
    ProtocolError,
    ServerError,
    SessionLostError,
)
from txlightstreamer.protocol import SUPPORTED_VERSIONS

__all__ = [
    "JsonLinesWriter",
    "LsService",
    "Options",
    "SubscriptionSpec",
    "encode_event",
    "error_event",
    "makeService",
    "parse_subscription",
    "stderr_log_observer",
    "update_event",
]

log = Logger()

MODES = (MODE_MERGE, MODE_DISTINCT, MODE_RAW, MODE_COMMAND)
#: The environment variable read for the password.
PASSWORD_ENV = "LS_PASSWORD"
#: How long a clean stop waits for the server to acknowledge the destroy request.
DESTROY_TIMEOUT = 10.0

_SPEC_FORMAT = "expected 'MODE ITEMS FIELDS [key=value ...]'"
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_SPEC_KEYS = ("snapshot", "adapter", "selector", "max_frequency", "buffer_size",
              "second_level", "second_level_adapter")


# -- --subscribe SPEC ---------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionSpec:
    """One parsed ``--subscribe`` SPEC: the arguments of a `Table`."""

    mode: str
    items: tuple[str, ...]
    fields: tuple[str, ...]
    snapshot: bool | int = False
    adapter: str | None = None
    selector: str | None = None
    max_frequency: float | str | None = None
    buffer_size: int | str | None = None
    second_level: tuple[str, ...] | None = None
    second_level_adapter: str | None = None

    def table(self, client: LsClient) -> Table:
        """Create the `Table` this SPEC describes on ``client``."""
        return Table(
            client,
            data_adapter=self.adapter,
            mode=self.mode,
            item_ids=self.items,
            schema=self.fields,
            selector=self.selector,
            buffer_size=self.buffer_size,
            max_frequency=self.max_frequency,
            snapshot=self.snapshot,
            second_level_schema=self.second_level,
            second_level_adapter=self.second_level_adapter,
        )


def _names(text: str, what: str, spec: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    for name in names:
        if not name:
            raise usage.UsageError(f"bad --subscribe SPEC {spec!r}: empty name in {what}")
        if "|" in name:
            raise usage.UsageError(
                f"bad --subscribe SPEC {spec!r}: {what} name {name!r} must not contain '|'")
    return names


def _positive_int(text: str) -> int | None:
    if text.isdigit() and text.isascii() and int(text) > 0:
        return int(text)
    return None


def parse_subscription(spec: str) -> SubscriptionSpec:
    """
    Parse ``MODE ITEMS FIELDS [key=value ...]`` (space-separated; ITEMS and FIELDS
    comma-separated). Raises `usage.UsageError` with a one-line message.
    """
    parts = spec.split()
    if len(parts) < 3:
        raise usage.UsageError(f"bad --subscribe SPEC {spec!r}: {_SPEC_FORMAT}")
    mode = parts[0].upper()
    if mode not in MODES:
        raise usage.UsageError(
            f"unknown mode {parts[0]!r} in --subscribe {spec!r}: use {', '.join(MODES)}")
    items = _names(parts[1], "ITEMS", spec)
    fields = _names(parts[2], "FIELDS", spec)
    values: dict[str, str] = {}
    for part in parts[3:]:
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise usage.UsageError(
                f"bad key=value {part!r} in --subscribe {spec!r}: {_SPEC_FORMAT}")
        if key not in _SPEC_KEYS:
            raise usage.UsageError(
                f"unknown key {key!r} in --subscribe {spec!r}: use {', '.join(_SPEC_KEYS)}")
        if key in values:
            raise usage.UsageError(f"key {key!r} given twice in --subscribe {spec!r}")
        values[key] = value

    def bad(key: str, allowed: str) -> usage.UsageError:
        return usage.UsageError(
            f"bad value {key}={values[key]!r} in --subscribe {spec!r}: use {allowed}")

    snapshot: bool | int = False
    if "snapshot" in values:
        raw = values["snapshot"].lower()
        if raw in ("yes", "true"):
            snapshot = True
        elif raw in ("no", "false"):
            snapshot = False
        elif (length := _positive_int(raw)) is not None:
            if mode != MODE_DISTINCT:
                raise usage.UsageError(
                    f"snapshot=N in --subscribe {spec!r} is only allowed in DISTINCT mode")
            snapshot = length
        else:
            raise bad("snapshot", "yes, no or a positive integer")
        if mode == MODE_RAW and snapshot:
            raise usage.UsageError(f"RAW mode has no snapshot: --subscribe {spec!r}")

    max_frequency: float | str | None = None
    if "max_frequency" in values:
        raw = values["max_frequency"].lower()
        if raw in ("unlimited", "unfiltered"):
            max_frequency = raw
        elif _DECIMAL.match(raw) and float(raw) > 0:
            max_frequency = float(raw)
        else:
            raise bad("max_frequency", "a positive number, unlimited or unfiltered")

    buffer_size: int | str | None = None
    if "buffer_size" in values:
        raw = values["buffer_size"].lower()
        if raw == "unlimited":
            buffer_size = raw
        elif (size := _positive_int(raw)) is not None:
            buffer_size = size
        else:
            raise bad("buffer_size", "a positive integer or unlimited")
        if mode not in (MODE_MERGE, MODE_DISTINCT):
            raise usage.UsageError(
                f"buffer_size in --subscribe {spec!r} is only allowed in MERGE and DISTINCT mode")
        if max_frequency == "unfiltered":
            raise usage.UsageError(
                f"buffer_size cannot be combined with max_frequency=unfiltered: {spec!r}")

    if mode == MODE_COMMAND and len(fields) > 1:
        missing = [f for f in ("key", "command") if f not in fields]
        if missing:
            raise usage.UsageError(
                f"COMMAND FIELDS must include 'key' and 'command' (missing "
                f"{', '.join(missing)}) in --subscribe {spec!r}")

    second_level: tuple[str, ...] | None = None
    if "second_level" in values:
        if mode != MODE_COMMAND:
            raise usage.UsageError(
                f"second_level in --subscribe {spec!r} is only allowed in COMMAND mode")
        second_level = _names(values["second_level"], "second_level", spec)
        clash = set(second_level) & set(fields)
        if clash:
            raise usage.UsageError(
                f"second_level repeats FIELDS ({', '.join(sorted(clash))}) in "
                f"--subscribe {spec!r}")
    elif "second_level_adapter" in values:
        raise usage.UsageError(
            f"second_level_adapter needs second_level=FIELDS in --subscribe {spec!r}")

    return SubscriptionSpec(
        mode=mode,
        items=items,
        fields=fields,
        snapshot=snapshot,
        adapter=values.get("adapter"),
        selector=values.get("selector"),
        max_frequency=max_frequency,
        buffer_size=buffer_size,
        second_level=second_level,
        second_level_adapter=values.get("second_level_adapter"),
    )


def demo_subscriptions() -> list[SubscriptionSpec]:
    """What ``--demo`` subscribes with no ``--subscribe``: the stocks and the portfolio."""
    from txlightstreamer.testing.demo import (
        DEMO_FIELDS,
        DEMO_ITEMS,
        PORTFOLIO_FIELDS,
        PORTFOLIO_ITEM,
    )

    portfolio = tuple(PORTFOLIO_FIELDS)
    for required in ("command", "key"):
        if required not in portfolio:
            portfolio = (required, *portfolio)
    return [
        SubscriptionSpec(MODE_MERGE, tuple(DEMO_ITEMS), tuple(DEMO_FIELDS), snapshot=True),
        SubscriptionSpec(MODE_COMMAND, (PORTFOLIO_ITEM,), portfolio, snapshot=True),
    ]


# -- options ------------------------------------------------------------------------------


def stderr_log_observer() -> ILogObserver:
    """A log observer writing to standard error (used for ``twistd -n`` without a log file)."""
    return textFileLogObserver(sys.stderr)


class Options(usage.Options):
    """Options shared by ``twistd lightstreamer`` and ``python -m txlightstreamer``."""

    #: Set by ``python -m`` to show its own usage line (twistd derives one).
    synopsis: str

    longdesc = (
        "Connect to a Lightstreamer server (TLCP 2.5.0/2.4.0), subscribe, and write every "
        "event as one JSON object per line (see README.rst for the format). "
        "The password comes from --password-file or the LS_PASSWORD environment variable. "
        "Logs go to standard error (or the twistd log), never into the JSON output."
    )

    optFlags = [
        ["demo", None, "Start the embedded demo server on 127.0.0.1 and connect to it "
                       "(subscribes to the demo items unless --subscribe is given)."],
    ]
    optParameters = [
        ["url", None, None, "Server address, http://host[:port] or https://host[:port]."],
        ["adapter-set", None, None, "Adapter set name (LS_adapter_set)."],
        ["user", None, None, "User name."],
        ["password-file", None, None, "Read the password from this file (first line)."],
        ["password", None, None, "The password itself (visible to other local users: "
                                 "prefer --password-file or LS_PASSWORD)."],
        ["protocol", None, "2.5.0", "TLCP version: " + " or ".join(SUPPORTED_VERSIONS) + "."],
        ["output", None, "-", "Append the JSON lines to this file; - is standard output."],
        ["max-updates", None, None, "Stop cleanly after this many update events."],
        ["duration", None, None, "Stop cleanly after this many seconds."],
        ["http-port", None, None,
         "Also serve the live tables over HTTP on this Twisted server endpoint, e.g. "
         "tcp:8080 (binds 127.0.0.1 unless it names an interface=): a live page at /, "
         "JSON at /snapshot, Server-Sent Events at /events."],
    ]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._environ = os.environ if environ is None else environ
        self["subscribe"] = []
        #: The password, kept out of the options mapping so it is never printed.
        self.password: str | None = None
        #: Warnings to log once logging is set up.
        self.warnings: list[str] = []

    def opt_subscribe(self, spec: str) -> None:
        """
        Subscribe with SPEC = "MODE ITEMS FIELDS [key=value ...]", MODE one of MERGE,
        DISTINCT, RAW, COMMAND, ITEMS and FIELDS comma-separated; keys: snapshot=yes|no|N,
        adapter=NAME, selector=NAME, max_frequency=N|unlimited|unfiltered,
        second_level=FIELDS, second_level_adapter=NAME (two-level COMMAND),
        buffer_size=N|unlimited. Repeatable; subscriptions are numbered from 0.
        """
        self["subscribe"].append(parse_subscription(spec))

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"txlightstreamer {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:  # noqa: N802 (Twisted API)
        """Check the combination of options and resolve the password."""
        url = self["url"]
        if self["demo"]:
            if url is not None:
                raise usage.UsageError(
                    "--demo runs its own server on 127.0.0.1: do not combine it with --url")
        elif url is None:
            raise usage.UsageError("missing --url (or use --demo for the embedded demo server)")
        else:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise usage.UsageError(
                    f"bad --url {url!r}: use http://host[:port] or https://host[:port]")
        if self["protocol"] not in SUPPORTED_VERSIONS:
            raise usage.UsageError(
                f"bad --protocol {self['protocol']!r}: use {' or '.join(SUPPORTED_VERSIONS)}")
        raw_max = self["max-updates"]
        if raw_max is not None:
            count = _positive_int(str(raw_max))
            if count is None:
                raise usage.UsageError(
                    f"bad --max-updates {raw_max!r}: use a positive integer")
            self["max-updates"] = count
        raw_duration = self["duration"]
        if raw_duration is not None:
            if not _DECIMAL.match(str(raw_duration)) or float(raw_duration) <= 0:
                raise usage.UsageError(
                    f"bad --duration {raw_duration!r}: use a positive number of seconds")
            self["duration"] = float(raw_duration)
        self._check_http_port()
        self._resolve_password()
        self._check_output()
        self._adapt_twistd_logging()

    def _check_http_port(self) -> None:
        endpoint = self["http-port"]
        if endpoint is None:
            return
        from txlightstreamer.web import endpoint_string

        try:
            self["http-port"] = endpoint_string(endpoint)
        except ValueError as e:
            raise usage.UsageError(f"--http-port: {e}") from None

    def _resolve_password(self) -> None:
        given, self["password"] = self["password"], None
        path = self["password-file"]
        if path is not None and given is not None:
            raise usage.UsageError("give either --password-file or --password, not both")
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                raise usage.UsageError(
                    f"cannot read --password-file {path!r}: {reason}") from None
            lines = text.splitlines()
            self.password = lines[0] if lines else ""
        elif given is not None:
            self.password = given
            self.warnings.append(
                "--password is visible to other local users (ps, /proc): "
                f"prefer --password-file or the {PASSWORD_ENV} environment variable")
        else:
            self.password = self._environ.get(PASSWORD_ENV)

    def _check_output(self) -> None:
        path = self["output"]
        if path == "-":
            return
        path = os.path.abspath(path)  # twistd may change directory later
        try:
            with open(path, "ab"):
                pass
        except OSError as e:
            raise usage.UsageError(f"cannot write --output {path!r}: {e.strerror}") from None
        self["output"] = path

    def _adapt_twistd_logging(self) -> None:
        """Under twistd, keep the twistd log off standard output when JSON goes there."""
        parent = getattr(self, "parent", None)
        if parent is None or "nodaemon" not in parent or self["output"] != "-":
            return
        if not (parent["nodaemon"] or parent.get("debug")):
            raise usage.UsageError(
                "--output - (standard output) needs twistd --nodaemon (-n): "
                "give --output PATH when daemonizing")
        if not parent.get("logfile") and not parent.get("logger") and not parent.get("syslog"):
            # twistd -n would log to stdout, into the JSON lines: log to stderr instead.
            parent["logger"] = f"{__name__}.stderr_log_observer"


# usage.Options shows docstrings as written: make this one a single wrapped paragraph.
Options.opt_subscribe.__doc__ = " ".join((Options.opt_subscribe.__doc__ or "").split())


# -- the JSON-lines stream ------------------------------------------------------------------


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One JSON line (UTF-8, not ASCII-escaped, ending with a newline)."""
    text = json.dumps(event, ensure_ascii=False)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: fall back to \\u escapes
        data = json.dumps(event).encode("ascii")
    return data + b"\n"


def _item_name(table: Table, pos: int) -> str | None:
    names = table.item_names
    if names is not None and 0 < pos <= len(names):
        return names[pos - 1]
    return None


def status_event(status: str) -> dict[str, Any]:
    """``{"event": "status", "status": S}``."""
    return {"event": "status", "status": status}


def session_event(info: SessionInfo) -> dict[str, Any]:
    """``{"event": "session", "session_id": ID, "continuity": C}``."""
    return {"event": "session", "session_id": info.session_id, "continuity": info.continuity}


def subscribed_event(sub: int, table: Table) -> dict[str, Any]:
    """``{"event": "subscribed", "sub": N, "items": count, "fields": count, ...}``."""
    event: dict[str, Any] = {
        "event": "subscribed",
        "sub": sub,
        "items": table.num_items,
        "fields": table.num_fields,
    }
    if table.mode == MODE_COMMAND:
        event["key_field"] = table.key_position
        event["command_field"] = table.command_position
    return event


def update_event(sub: int, update: ItemUpdate) -> dict[str, Any]:
    """``{"event": "update", "sub", "item", "pos", "values", "changed", "snapshot"}``."""
    return {
        "event": "update",
        "sub": sub,
        "item": update.item_name,
        "pos": update.item_pos,
        "values": {str(k): v for k, v in update.as_dict().items()},
        "changed": [str(k) for k in update.changed_fields],
        "snapshot": bool(update.is_snapshot),
    }


def item_event(kind: str, sub: int, table: Table, pos: int) -> dict[str, Any]:
    """``eos`` and ``clear_snapshot``: ``{"event", "sub", "item", "pos"}``."""
    return {"event": kind, "sub": sub, "item": _item_name(table, pos), "pos": pos}


def lost_event(sub: int, table: Table, pos: int, count: int) -> dict[str, Any]:
    """``{"event": "lost", "sub": N, "item": NAME, "pos": P, "count": K}``."""
    return {**item_event("lost", sub, table, pos), "count": count}


def unsubscribed_event(sub: int) -> dict[str, Any]:
    """``{"event": "unsubscribed", "sub": N}``."""
    return {"event": "unsubscribed", "sub": sub}


def error_event(
    error: BaseException, sub: int | None = None, key: str | None = None
) -> dict[str, Any]:
    """
    ``{"event": "error", "code": CODE, "message": TEXT}`` (plus ``"sub"``, and ``"key"``
    for a two-level COMMAND key's error). Server errors carry the server's code, protocol
    errors 61, connection errors ``null``.
    """
    code: int | None
    if isinstance(error, ServerError):
        code, message = error.code, error.message
    elif isinstance(error, ProtocolError):
        code, message = error.code, str(error)
    else:
        code, message = None, str(error)
    event: dict[str, Any] = {"event": "error", "code": code, "message": message}
    if sub is not None:
        event["sub"] = sub
    if key is not None:
        event["key"] = key
    return event


class JsonLinesWriter:
    """Writes events as JSON lines to a binary stream, flushing after each line."""

    def __init__(
        self,
        stream: BinaryIO,
        *,
        close: bool = False,
        on_broken: Callable[[OSError], object] | None = None,
    ) -> None:
        self._stream: BinaryIO | None = stream
        self._close = close
        self._on_broken = on_broken
        self.lines = 0

    @classmethod
    def open(
        cls, path: str, on_broken: Callable[[OSError], object] | None = None
    ) -> JsonLinesWriter:
        """Open ``path`` for appending, or standard output for ``-``."""
        if path == "-":
            # The real stdout: twistd replaces sys.stdout with a log redirection.
            stdout = sys.__stdout__ if sys.__stdout__ is not None else sys.stdout
            return cls(cast(BinaryIO, stdout.buffer), on_broken=on_broken)
        return cls(cast(BinaryIO, open(path, "ab")), close=True, on_broken=on_broken)

    @property
    def closed(self) -> bool:
        """Whether nothing more will be written."""
        return self._stream is None

    def write(self, event: Mapping[str, Any]) -> None:
        """Write one event (ignored once closed or broken)."""
        stream = self._stream
        if stream is None:
            return
        try:
            stream.write(encode_event(event))
            stream.flush()
        except OSError as e:
            self._broken(stream, e)
            return
        self.lines += 1

    def _broken(self, stream: BinaryIO, error: OSError) -> None:
        self._stream = None
        if isinstance(error, BrokenPipeError) and not self._close:
            # The reader went away (e.g. `| head`): point the descriptor at /dev/null so
            # the interpreter's final flush does not complain.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass
        elif self._close:
            try:
                stream.close()
            except OSError:
                pass
        if self._on_broken is not None:
            self._on_broken(error)

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            if self._close:
                stream.close()
            else:
                stream.flush()
        except OSError as e:
            log.warn("Could not close the JSON output: {error}", error=e)


# -- the service ----------------------------------------------------------------------------


def _exit_status_at_exit(code: int) -> None:
    """Make the process exit with ``code`` once twistd is done (twistd always exits 0)."""

    def exit_now() -> None:
        for stream in (sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)

    atexit.register(exit_now)


class LsService(Service):
    """
    Runs one `LsClient` and writes what it reports as JSON lines.

    It connects on `startService` and destroys the session on `stopService` (whose
    Deferred fires once everything is closed). It also stops by itself after
    ``--max-updates``/``--duration`` (exit code 0) or when the session ends for good
    (exit code 1); `when_done` fires with that code. With ``stop_reactor`` (twistd) a
    self-initiated stop also stops the reactor.
    """

    name = "lightstreamer"

    def __init__(
        self,
        options: Options,
        *,
        reactor: Any = None,
        output: JsonLinesWriter | None = None,
        stop_reactor: bool = False,
    ) -> None:
        self.options = options
        self._reactor = reactor
        self._writer = output
        self._stop_reactor = stop_reactor
        self.specs: list[SubscriptionSpec] = list(options["subscribe"])
        if options["demo"] and not self.specs:
            self.specs = demo_subscriptions()
        self.client: LsClient | None = None
        self.tables: list[Table] = []
        self.server: Any = None
        self.feed: Any = None
        #: The web relay and its listening port with --http-port.
        self.relay: Any = None
        self.http_port: Any = None
        self.url: str | None = options["url"]
        self.updates = 0
        self.exit_code: int | None = None
        self._timer: Any = None
        #: True from the moment the service starts stopping.
        self.stopping = False
        self._stopped = False
        self._stop_waiters: list[Deferred[None]] = []
        self._done_waiters: list[Deferred[int]] = []
        self._reported: deque[BaseException] = deque(maxlen=32)

    # -- life cycle ------------------------------------------------------------------------

    @property
    def reactor(self) -> Any:
        """The reactor in use (the global one unless given)."""
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        """Open the output, start the demo server if asked, connect and subscribe."""
        Service.startService(self)
        for warning in self.options.warnings:
            log.warn("{warning}", warning=warning)
        if self._writer is None:
            try:
                self._writer = JsonLinesWriter.open(
                    self.options["output"], on_broken=self._output_broken)
            except OSError as e:
                log.error("Cannot open --output {path}: {error}",
                          path=self.options["output"], error=e.strerror)
                self._finish(1, "cannot open the output")
                return
        duration = self.options["duration"]
        if duration is not None:
            self._timer = self.reactor.callLater(
                duration, self._finish, 0, f"--duration {duration:g} s elapsed")
        started: Deferred[str] = (
            self._start_demo() if self.options["demo"] else succeed(str(self.url)))
        started.addCallback(self._connect)
        started.addErrback(self._start_failed)

    def stopService(self) -> Deferred[None]:  # noqa: N802 (Twisted API)
        """Destroy the session and close everything; fires when done."""
        Service.stopService(self)
        if self.exit_code is None:
            self.exit_code = 0
        if self._stop_reactor and getattr(self.reactor, "_exitSignal", None) is not None:
            # twistd re-raises SIGINT/SIGTERM after shutdown (dying by the signal); the
            # contract here is a clean stop with status 0 once the session is destroyed.
            self.reactor._exitSignal = None
        return self._shutdown()

    def when_done(self) -> Deferred[int]:
        """Fires with the exit code once the service has stopped (0 clean, 1 fatal)."""
        d: Deferred[int] = Deferred()
        if self._stopped:
            d.callback(self.exit_code or 0)
        else:
            self._done_waiters.append(d)
        return d

    def _start_demo(self) -> Deferred[str]:
        from txlightstreamer.testing import TlcpServer
        from txlightstreamer.testing.demo import DemoFeed

        self.server = TlcpServer(clock=self.reactor)
        self.feed = DemoFeed(self.server.data, self.reactor)

        async def listen() -> str:
            await self.server.listen(self.reactor, port=0, interface="127.0.0.1")
            url = cast(str, self.server.url)
            log.info("Demo server listening on {url}", url=url)
            self.feed.start()
            return url

        return ensureDeferred(listen())

    def _connect(self, url: str) -> None:
        if self.stopping:
            return
        self.url = url
        client = LsClient(url, reactor=self.reactor, protocol_version=self.options["protocol"])
        self.client = client
        client.on_status(self._on_status)
        client.on_session(self._on_session)
        client.on_error(self._on_error)
        for index, spec in enumerate(self.specs):
            self.tables.append(self._subscribe(index, spec))
        if self.options["http-port"] is not None:
            self._serve_http(client)
        created = client.create_session(
            self.options["adapter-set"], self.options["user"], self.options.password)
        created.addErrback(self._create_failed)

    def _subscribe(self, index: int, spec: SubscriptionSpec) -> Table:
        table = spec.table(cast(LsClient, self.client))
        table.on_subscribed(lambda: self._emit(subscribed_event(index, table)))
        table.on_item_update(lambda update: self._on_update(index, update))
        table.on_end_of_snapshot(
            lambda pos: self._emit_data(item_event("eos", index, table, pos)))
        table.on_clear_snapshot(
            lambda pos: self._emit_data(item_event("clear_snapshot", index, table, pos)))
        table.on_overflow(
            lambda pos, lost: self._emit_data(lost_event(index, table, pos, lost)))
        table.on_unsubscribed(lambda: self._emit(unsubscribed_event(index)))
        table.on_error(lambda error: self._report_error(error, index))
        table.on_second_level_error(
            lambda key, error: self._emit(error_event(error, index, key)))
        return table

    def _serve_http(self, client: LsClient) -> None:
        from txlightstreamer.web import Relay

        endpoint = self.options["http-port"]
        self.relay = Relay(client, self.tables, clock=self.reactor)

        def listening(port: Any) -> object:
            if self.stopping:
                return port.stopListening()
            self.http_port = port
            address = port.getHost()
            host = getattr(address, "host", None)
            if host is None:
                log.info("Live tables served on {address}", address=address)
            else:
                host = f"[{host}]" if ":" in host else host
                log.info("Live tables on http://{host}:{port}/ (JSON: /snapshot, "
                         "Server-Sent Events: /events)", host=host, port=address.port)
            return None

        def failed(failure: Failure) -> None:
            log.error("Cannot serve --http-port {endpoint}: {error}",
                      endpoint=endpoint, error=failure.getErrorMessage())
            self._finish(1, "cannot listen on --http-port")

        self.relay.listen(self.reactor, endpoint).addCallbacks(listening, failed)

    def _start_failed(self, failure: Failure) -> None:
        log.failure("Could not start", failure)
        self._finish(1, "could not start")

    # -- client events ---------------------------------------------------------------------

    def _emit(self, event: Mapping[str, Any]) -> None:
        if self._writer is not None:
            self._writer.write(event)

    def _emit_data(self, event: Mapping[str, Any]) -> None:
        """Subscription data, dropped once stopping (so --max-updates is exact)."""
        if not self.stopping:
            self._emit(event)

    def _on_status(self, status: str, reason: str | None) -> None:
        self._emit(status_event(status))
        if status == "DISCONNECTED" and not self.stopping:
            # The session ended for good (not by us); let the client finish reporting.
            self.reactor.callLater(0, self._finish, 1, f"session ended: {reason}")

    def _on_session(self, info: SessionInfo) -> None:
        self._emit(session_event(info))

    def _on_update(self, index: int, update: ItemUpdate) -> None:
        if self.stopping:
            return
        self._emit(update_event(index, update))
        self.updates += 1
        limit = self.options["max-updates"]
        if limit is not None and self.updates >= limit:
            self._finish(0, f"--max-updates {limit} reached")

    def _on_error(self, error: LightstreamerError) -> None:
        self._report_error(error)

    def _report_error(self, error: BaseException, sub: int | None = None) -> None:
        """Write an error once, even when both the table and the client report it."""
        if any(seen is error for seen in self._reported):
            return
        self._reported.append(error)
        log.warn("Error{where}: {error}", where=f" (sub {sub})" if sub is not None else "",
                 error=error)
        self._emit(error_event(error, sub))

    def _create_failed(self, failure: Failure) -> None:
        if self.stopping and failure.check(SessionLostError):
            return
        if isinstance(failure.value, Exception):
            self._report_error(failure.value)
        self._finish(1, f"no session: {failure.value}")

    def _output_broken(self, error: OSError) -> None:
        log.warn("JSON output closed: {error}", error=error)
        self._finish(0 if isinstance(error, BrokenPipeError) else 1, "the output is gone")

    # -- stopping --------------------------------------------------------------------------

    def _finish(self, code: int, reason: str) -> None:
        """Stop by ourselves (limits reached, fatal error)."""
        if self.stopping:
            return
        self.exit_code = code
        if code:
            log.error("Stopping: {reason}", reason=reason)
        else:
            log.info("Stopping: {reason}", reason=reason)
        d = self._shutdown()
        if self._stop_reactor:
            d.addCallback(lambda _: self._stop_the_reactor(code))

    def _stop_the_reactor(self, code: int) -> None:
        if code:
            _exit_status_at_exit(code)
        try:
            self.reactor.stop()
        except ReactorNotRunning:
            pass

    def _shutdown(self) -> Deferred[None]:
        """Start (once) the orderly shutdown; each call gets its own Deferred."""
        d: Deferred[None] = Deferred()
        if self._stopped:
            d.callback(None)
            return d
        self._stop_waiters.append(d)
        if not self.stopping:
            self.stopping = True
            ensureDeferred(self._close_all()).addBoth(self._closed)
        return d

    async def _close_all(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.client is not None:
            destroyed = self.client.destroy()
            destroyed.addTimeout(DESTROY_TIMEOUT, self.reactor)
            try:
                await destroyed
            except Exception as e:
                log.warn("Destroying the session failed: {error}", error=e)
        if self.relay is not None:
            self.relay.close()
        if self.http_port is not None:
            port, self.http_port = self.http_port, None
            try:
                await port.stopListening()
            except Exception as e:
                log.warn("Closing --http-port failed: {error}", error=e)
        if self.feed is not None:
            self.feed.stop()
        if self.server is not None:
            try:
                await self.server.stop()
            except Exception as e:
                log.warn("Stopping the demo server failed: {error}", error=e)
        if self._writer is not None:
            self._writer.close()

    def _closed(self, result: object) -> None:
        if isinstance(result, Failure):
            log.failure("Error while stopping", result)
        self._stopped = True
        if self.exit_code is None:
            self.exit_code = 0
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            d.callback(None)
        done, self._done_waiters = self._done_waiters, []
        for dd in done:
            dd.callback(self.exit_code)


def makeService(  # noqa: N802 (the IServiceMaker name)
    options: Options,
    *,
    reactor: Any = None,
    output: JsonLinesWriter | None = None,
    stop_reactor: bool = True,
) -> MultiService:
    """
    The service tree for ``twistd lightstreamer``: a `MultiService` holding an `LsService`.

    ``stop_reactor`` (the twistd default) makes a self-initiated stop end the process.
    """
    top = MultiService()
    LsService(options, reactor=reactor, output=output, stop_reactor=stop_reactor) \
        .setServiceParent(top)
    return top
