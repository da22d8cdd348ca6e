"""
The password travels only in the body of ``create_session`` requests (issue 9).

A whole session (create with a password, subscribe, updates, a refused subscription, a
protocol error whose line quotes the password, a message, destroy) runs over loopback
while everything is captured: every Twisted log event at every level (formatted, raw, and
with tracebacks), stdlib logging at DEBUG, every HTTP request the server saw (method, URL,
headers, body), status reasons, errors (str, repr, args) and reprs of the client, tables,
session info and requests. The password, in any encoding, may only show up in
``create_session`` request bodies.
"""

from __future__ import annotations

import gc
import logging
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import provider

from txlightstreamer import MODE_COMMAND, MODE_MERGE, LsClient, Table
from txlightstreamer.errors import LightstreamerError
from txlightstreamer.protocol import create_session, encode_value, http_body
from txlightstreamer.testing import TlcpServer

from .support import wait_until

PASSWORD = "S3cr3t&p@ss=w0rd+%é"
FORMS = sorted({PASSWORD, encode_value(PASSWORD), quote(PASSWORD), quote_plus(PASSWORD),
                PASSWORD.encode("utf-8").decode("latin-1"), repr(PASSWORD)[1:-1]})  # fmt: skip


def leaks(text: str) -> list[str]:
    return [form for form in FORMS if form in text]


class Recorder(Resource):
    """Records every request (method, URI, headers, body), then lets the server answer."""

    isLeaf = True

    def __init__(self, inner: Resource) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[tuple[str, str, str, bytes]] = []

    def render(self, request: Any) -> Any:
        body = b""
        if request.content is not None:
            body = request.content.read()
            request.content.seek(0)
        headers = "\n".join(
            f"{k.decode('latin-1')}: {b', '.join(v).decode('latin-1')}"
            for k, v in request.requestHeaders.getAllRawHeaders()
        )
        self.seen.append((request.method.decode(), request.uri.decode(), headers, body))
        return self.inner.render(request)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_request_repr_hides_the_password() -> None:
    request = create_session(adapter_set="DEMO", user="alice", password=PASSWORD)
    assert leaks(repr(request)) == []
    assert leaks(str(request)) == []
    # ... while the body does carry it, percent-encoded.
    assert encode_value(PASSWORD) in http_body([request]).decode()


@pytest.mark.parametrize("websocket", [False, True], ids=["http", "websocket"])
@pytest_twisted.ensureDeferred
async def test_password_only_in_create_session_body(websocket: bool) -> None:
    events: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        events.append(event)

    std = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(std)
    root.setLevel(logging.DEBUG)
    globalLogPublisher.addObserver(observe)

    server = TlcpServer(keepalive_millis=1000, websocket=websocket)
    recorder = Recorder(server.resource())
    port = reactor.listenTCP(0, Site(recorder), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    client = LsClient(url)
    errors: list[LightstreamerError] = []
    reasons: list[str] = []
    rows: list[Any] = []
    client.on_error(errors.append)
    client.on_status(lambda status, reason: reasons.append(f"{status} {reason}"))
    reprs: list[str] = []
    try:
        info = await client.create_session("DEMO", "alice", PASSWORD)
        reprs += [repr(info), repr(client), str(client.session_id)]
        table = Table(client, mode=MODE_MERGE, item_ids=["item1", "item2"], schema=["f1", "f2"])
        table.on_update(lambda item, update: rows.append(update))
        await table.when_subscribed()
        for n in range(5):
            server.data.update("item1", {"f1": str(n), "f2": "x"})
        await wait_until(lambda: len(rows) >= 5)
        reprs += [repr(table), repr(rows[-1])]

        # A server error: a COMMAND subscription without key/command fields is refused.
        bad = Table(client, mode=MODE_COMMAND, item_ids=["item2"], schema=["f1"])
        failed: list[BaseException] = []
        bad.on_error(failed.append)
        await wait_until(lambda: bool(failed) or bool(errors))
        reprs += [repr(bad)]

        # A protocol error on the stream whose line quotes the password.
        session = next(iter(server.sessions.values()))
        session.send_raw(f"WHAT,LS_user=alice&LS_password={encode_value(PASSWORD)}&x=1")
        session.send_raw(f"ECHO,LS_password={PASSWORD}")
        # A malformed known tag (not just an unknown one, which is skipped) ends the session.
        session.send_raw(f"SUBOK,LS_password={PASSWORD},1,1")
        await wait_until(lambda: sum(1 for e in errors if "WHAT" in str(e)) >= 1)
        await wait_until(lambda: client.status == "CONNECTED:HTTP-STREAMING"
                         or client.status == "CONNECTED:WS-STREAMING")
        await table.when_subscribed()
        server.data.update("item2", {"f1": "after", "f2": "error"})
        await wait_until(lambda: any("after" in tuple(u) for u in rows))
        await client.send_message("hello")
        reprs += [repr(client), repr(client.session_info), repr(table)]
    finally:
        await client.destroy()
        reprs.append(repr(client))
        await server.stop()
        await port.stopListening()
        gc.collect()
        globalLogPublisher.removeObserver(observe)
        root.removeHandler(std)
        root.setLevel(old_level)

    # Something of everything was captured.
    assert events and recorder.seen and errors and reasons

    log_text = []
    for event in events:
        log_text.append(formatEvent(event) or "")
        log_text.append(repr(event))
        failure = event.get("log_failure")
        if isinstance(failure, Failure):
            log_text.append(failure.getTraceback())
    assert leaks("\n".join(log_text)) == []
    assert leaks("\n".join(std.lines)) == []
    assert leaks("\n".join(reasons)) == []
    for error in errors:
        assert leaks(f"{error}\n{error!r}\n{error.args!r}\n{vars(error)!r}") == [], error
    assert leaks("\n".join(reprs)) == []

    creates = recoveries = 0
    for _method, uri, headers, body in recorder.seen:
        assert leaks(uri) == [], uri
        assert leaks(headers) == [], headers
        text = body.decode("utf-8", "replace")
        if uri.split("?")[0].endswith("/create_session.txt"):
            creates += 1
            assert f"LS_password={encode_value(PASSWORD)}" in text
        else:
            recoveries += "LS_recovery_from=" in text
            assert leaks(text) == [], (uri, text)
    if not websocket:
        # The first session, then after the protocol error a reconnection: the session
        # recovered (a bind, no password) or replaced (a second create, with it).
        assert creates >= 1 and creates + recoveries >= 2
