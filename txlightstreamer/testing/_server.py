"""A real TLCP 2.5.0/2.4.0 server (HTTP and WebSocket) as a ``twisted.web`` resource.

Implements create/bind (streaming, polling, recovery), control, msg and
heartbeat requests as described in ``tlcp.md``, over HTTP and over WebSocket
(``…/lightstreamer`` with a ``TLCP-<version>.lightstreamer.com`` subprotocol,
served with autobahn when it is installed; see ``_websocket.py``).  It has its
own request parser and notification encoder and never imports the client codec.

Simplifications (documented, deliberate):

* frequency and buffer limits are acknowledged (``CONF``) but only enforced
  with ``enforce_limits`` (MERGE and DISTINCT); bandwidth limits are not
  enforced; selectors and data adapter names are ignored;
* messages are handed to the handler in arrival order (no re-ordering of
  sequences, ``LS_max_wait`` ignored);
* create+control combos are not supported;
* on WebSocket, ``LS_content_length`` from the client is ignored (as on a real
  server) but the server's own ``content_length`` still ends streams with
  ``LOOP``, so tests can make WebSocket streams loop; ``LS_ack`` is ignored
  (``REQOK`` is always sent);
* ``LS_inactivity_millis`` (reverse heartbeat) is accepted but not enforced;
* an ``add`` repeating an existing subscription (same ``LS_subId`` and
  parameters, new ``LS_reqId``: the official client re-sends an unconfirmed one
  after a LOOP) is a no-op answered ``REQOK``; the same ``LS_subId`` with other
  parameters is ``REQERR`` 65, as ``LS_subId`` must be unique in the session.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import deque
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from ._adapter import DataModel
from ._connections import TrackingFactory
from ._encoding import encode_line
from ._faults import Faults
from ._outputs import Output, WsOutput
from ._params import (
    SUPPORTED_PROTOCOLS,
    ConnectionRefused,
    bool_param,
    check_protocol,
    conerr,
    first_line,
    int_param,
)
from ._resource import TlcpResource
from ._session import MessageHandler, Session, default_handler
from ._stream import Stream

__all__ = ["TlcpServer"]

log = Logger()


def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode("utf-8")).digest()


class TlcpServer:
    """A TLCP 2.5.0/2.4.0 test server (HTTP and WebSocket transports).

    Put :meth:`resource` at the root of a ``twisted.web`` site (requests are
    ``…/lightstreamer/<name>.txt`` under any path prefix) or call
    :meth:`listen`.  Publish data through :attr:`data`.

    ``diffs`` selects the diff encodings the server may use in ``U`` lines:
    ``""`` (none), ``"T"`` (TLCP-diff), ``"P"`` (JSON Patch) or ``"TP"``.
    ``client_ids`` are the accepted ``LS_cid`` values; with ``None`` (the
    default) any well-formed one is accepted (non-empty, printable), as users
    point their own clients at the server; ``client_ids=DEFAULT_CLIENT_IDS`` is
    a strict server.  A missing, malformed or other ``LS_cid`` is refused with
    ``CONERR,65``.
    ``adapter_sets`` are the accepted ``LS_adapter_set`` values (``DEFAULT``
    when absent; ``None``: any), others are refused with ``CONERR,2``.
    ``protocols`` are the accepted TLCP versions (e.g. ``("TLCP-2.4.0",)`` for a
    server that refuses 2.5.0 with ``CONERR,65``); ``credentials`` maps each
    accepted ``LS_user`` to its ``LS_password`` (``None``: no check; a mismatch is
    ``CONERR,1``).
    ``enforce_limits`` honours ``LS_requested_max_frequency`` and
    ``LS_requested_buffer_size`` for MERGE and DISTINCT as a real server does
    (updates held back and buffered per item; by default every update goes
    out at once).  Unknown items and fields: see :class:`DataModel`.
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
        client_ids: Collection[str] | None = None,
        websocket: bool = True,
        websocket_refusal: int = 400,
        set_cookie: str | None = None,
        adapter_sets: Collection[str] | None = None,
        enforce_limits: bool = False,
        protocols: Collection[str] = SUPPORTED_PROTOCOLS,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        if set(diffs) - {"T", "P"}:
            raise ValueError("diffs may only contain 'T' and 'P'")
        if not protocols or set(protocols) - set(SUPPORTED_PROTOCOLS):
            raise ValueError(f"protocols must be among {SUPPORTED_PROTOCOLS}")
        self._clock = clock
        self.keepalive_millis = keepalive_millis
        self.content_length = content_length
        self.request_limit = request_limit
        self.session_timeout_millis = session_timeout_millis
        self.server_name = server_name
        #: The items and their values: `DataModel.update` publishes to subscribed clients.
        self.data: DataModel = data if data is not None else DataModel()
        self.diffs = diffs
        self.message_handler: MessageHandler = message_handler or default_handler
        self.recovery_log_size = recovery_log_size
        self.sync_interval_millis = sync_interval_millis
        self.client_ids = None if client_ids is None else frozenset(client_ids)
        self.adapter_sets = None if adapter_sets is None else frozenset(adapter_sets)
        #: The TLCP versions accepted (``LS_protocol``); others get ``CONERR,65``.
        self.protocols = frozenset(protocols)
        # Only digests are kept: no password in reprs, logs or attributes.
        self._credentials = None if credentials is None else {
            user: _digest(password) for user, password in credentials.items()}
        #: Whether frequency and buffer limits are applied (MERGE and DISTINCT).
        self.enforce_limits = enforce_limits
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
        self._url: str | None = None
        self._sessions: dict[str, Session] = {}
        self._streams: set[Stream] = set()
        self._refusal: tuple[int, str] | None = None
        self._resource = TlcpResource(self)
        self._port: IListeningPort | None = None
        self._factory: TrackingFactory | None = None
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

    @property
    def url(self) -> str:
        """The server's address while it listens (``http://127.0.0.1:<port>``, or
        ``https://`` with TLS), for ``LsClient(server.url)``; `RuntimeError` otherwise."""
        if self._url is None:
            raise RuntimeError("the TlcpServer is not listening: call listen() first")
        return self._url

    @property
    def listening(self) -> bool:
        """Whether `listen` has bound the server, and `stop` not yet closed it."""
        return self._url is not None

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
        factory = TrackingFactory(site)
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
        self._url = f"{scheme}://{host}:{getattr(address, 'port', port)}"
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
        self._url = None
        result: Deferred[None] = defer.gatherResults(waits, consumeErrors=True).addCallback(
            lambda _: None
        )
        return result

    def _authentic(self, params: Mapping[str, str]) -> bool:
        """Whether ``LS_user`` and ``LS_password`` match :attr:`_credentials`."""
        assert self._credentials is not None
        user, password = params.get("LS_user"), params.get("LS_password")
        return user in self._credentials and password is not None and (
            secrets.compare_digest(self._credentials[user], _digest(password)))

    def _open_stream(
        self, output: Output, params: Mapping[str, str]
    ) -> tuple[Stream, int]:
        """Build the stream for a create/bind; return it and the CONOK third argument."""
        try:
            polling = bool_param(params, "LS_polling", False)
            if polling:
                polling_ms = int_param(params, "LS_polling_millis") or 0
                idle_ms = int_param(params, "LS_idle_millis") or 0
                keepalive_ms = 0
                content_length = None
                send_sync = False
            else:
                polling_ms = idle_ms = 0
                requested = int_param(params, "LS_keepalive_millis")
                keepalive_ms = (
                    self.keepalive_millis if requested is None else max(1000, min(60000, requested))
                )
                requested_length = int_param(params, "LS_content_length", minimum=1)
                if output.websocket:
                    # LS_content_length is an HTTP matter; only the server's own cap
                    # applies to WebSocket streams (so tests can make them LOOP).
                    requested_length = None
                # The server setting acts as a cap on what the client asks for.
                lengths = [n for n in (requested_length, self.content_length) if n is not None]
                content_length = min(lengths) if lengths else None
                send_sync = bool_param(params, "LS_send_sync", True)
            int_param(params, "LS_inactivity_millis")
        except ValueError as e:
            raise ConnectionRefused(65, str(e)) from None
        stream = Stream(
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

    def _create_stream(
        self, output: Output, query: Mapping[str, str], lines: list[str]
    ) -> list[str] | None:
        """Create a session streaming on ``output``; None, or the lines of a refusal."""
        try:
            params = first_line(query, lines)
            protocol = check_protocol(params, self.protocols)
            self.faults._conerr()
            if self._refusal is not None:
                raise ConnectionRefused(*self._refusal)
            cid = params.get("LS_cid")
            if cid is None:
                raise ConnectionRefused(65, "Missing LS_cid")
            if not cid.isprintable() or not cid.strip() or (
                self.client_ids is not None and cid not in self.client_ids
            ):
                raise ConnectionRefused(65, "Invalid LS_cid")
            adapter_set = params.get("LS_adapter_set", "DEFAULT")
            if self.adapter_sets is not None and adapter_set not in self.adapter_sets:
                raise ConnectionRefused(2, "Requested Adapter Set not available")
            if self._credentials is not None and not self._authentic(params):
                raise ConnectionRefused(1, "User/password check failed")
            if "LS_op" in params:
                raise ConnectionRefused(64, "Create+control combos are not supported")
            try:
                reduce_head = bool_param(params, "LS_reduce_head", False)
            except ValueError as e:
                raise ConnectionRefused(65, str(e)) from None
            supported = params.get("LS_supported_diffs")
            if supported is None:
                diffs = self.diffs
            else:
                allowed = {token.strip() for token in supported.split(",")}
                diffs = "".join(c for c in self.diffs if c in allowed)
            stream, third = self._open_stream(output, params)
        except ConnectionRefused as e:
            return [conerr(e)]
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
        self, output: Output, query: Mapping[str, str], lines: list[str]
    ) -> list[str] | None:
        """Bind a session to ``output``; None, or the lines of a refusal."""
        try:
            params = first_line(query, lines)
            protocol = check_protocol(params, self.protocols)
            self.faults._conerr()
            session_id = params.get("LS_session")
            if session_id is None:
                raise ConnectionRefused(65, "Missing LS_session")
            session = self._sessions.get(session_id)
            if session is None:
                raise ConnectionRefused(20, "Session not found")
            if session._end_line is not None:
                line = session._end_line
                session._end_line = None
                session._cancel_timeout()
                self._sessions.pop(session_id, None)
                return [line]
            if protocol != session.protocol:
                raise ConnectionRefused(3, "Incompatible protocol version")
            try:
                reduce_head = bool_param(params, "LS_reduce_head", False)
                recover_from = int_param(params, "LS_recovery_from")
            except ValueError as e:
                raise ConnectionRefused(65, str(e)) from None
            self.faults._check_recovery(recover_from)
            stream, third = self._open_stream(output, params)
        except ConnectionRefused as e:
            return [conerr(e)]
        head: list[str] = []
        client_ip = output.client_ip
        if not reduce_head:
            head.append(encode_line("CONOK", session_id, self.request_limit, third, "*"))
            if client_ip is not None and client_ip != session.client_ip:
                head.append(encode_line("CLIENTIP", client_ip))
        session.client_ip = client_ip
        return self._start_stream(session, stream, head, recover_from)

    def _start_stream(
        self, session: Session, stream: Stream, head: list[str], recover_from: int | None
    ) -> list[str] | None:
        # Fail a recovery bind before anything is written.
        if recover_from is not None and session._recovery_target(recover_from) is None:
            stream.closed = True
            return [encode_line("CONERR", 4, "Recovery progressive no longer available")]
        self._streams.add(stream)
        output = stream.output
        if isinstance(output, WsOutput):
            output.conn.attach(stream, session)
        session._bind(stream, head, recover_from)
        return None
