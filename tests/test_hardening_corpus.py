"""
Replays the bad-input corpus (tests/corpus/*.tlcp, format in tests/corpus/README.txt) over
real loopback HTTP against a live `LsClient`.

For every case: no unhandled exception anywhere (Twisted log, Deferreds collected by the
garbage collector), the problem is reported (``on_error``, the create errback or a status
reason), reported lines are short and never show the password, and the client ends
recovered (streaming again on a live server stream) or cleanly DISCONNECTED, never
half-alive. Non-TLCP answers produce exactly one error naming the URL and what came back,
and no retry storm.
"""

from __future__ import annotations

import codecs
import gc
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import provider

from txlightstreamer import MODE_MERGE, LsClient, Table
from txlightstreamer.errors import (
    LightstreamerError,
    ProtocolError,
    TransportError,
)
from txlightstreamer.protocol.errors import MAX_LINE_EXCERPT

CORPUS = Path(__file__).parent / "corpus"
PASSWORD = "Tr0ub4dor&3-corpus"
USER = "alice"
MAX_LINE = 4096
STREAMING = "CONNECTED:HTTP-STREAMING"
# How long the client is watched for a retry storm.
STORM_WINDOW = 1.5


# --------------------------------------------------------------------------- corpus


@dataclass
class Case:
    name: str
    comment: str
    mode: str
    body: bytes
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False
    expect: tuple[str, ...] = ()
    end: str = "recovered"
    xfail: str | None = None


def _expand(line: str) -> str:
    line = line.replace("{{PASSWORD}}", PASSWORD)
    return re.sub(r"\{\{REPEAT (\d+) ([^}]*)\}\}", lambda m: m.group(2) * int(m.group(1)), line)


def load_case(path: Path) -> Case:
    comments: list[str] = []
    directives: list[tuple[str, str]] = []
    lines = path.read_text("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    while lines and lines[0].startswith("#"):
        head = lines.pop(0)
        if head.startswith("#!"):
            key, _, value = head[2:].partition(":")
            directives.append((key.strip(), value.strip()))
        else:
            comments.append(head[1:].strip())
    assert comments, f"{path.name} has no comment saying what it imitates"
    case = Case(path.stem, " ".join(comments), "", b"")
    crlf = True
    for key, value in directives:
        if key == "mode":
            case.mode = value
        elif key == "status":
            case.status = int(value)
        elif key == "header":
            name, _, val = value.partition(":")
            case.headers.append((name.strip(), val.strip()))
        elif key == "close":
            case.close = value == "yes"
        elif key == "crlf":
            crlf = value != "no"
        elif key == "expect":
            case.expect = tuple(value.split())
        elif key == "end":
            case.end = value
        elif key == "xfail":
            case.xfail = value
        else:
            raise AssertionError(f"{path.name}: unknown directive {key!r}")
    assert case.mode in ("stream", "control", "create", "reply", "rawtail", "tcp"), case.mode
    assert case.end in ("recovered", "disconnected", "retrying"), case.end
    wire = [codecs.escape_decode(_expand(line).encode("utf-8"))[0] for line in lines]
    body = b"\r\n".join(wire)
    if wire and crlf:
        body += b"\r\n"
    case.body = body
    return case


CASES = [load_case(p) for p in sorted(CORPUS.glob("*.tlcp"))]


def test_corpus_is_complete() -> None:
    names = {case.name for case in CASES}
    assert len(CASES) >= 30
    for wanted in ("captive_portal_html_200", "proxy_502_bad_gateway", "stream_cut_mid_line",
                   "chunked_truncated_mid_chunk", "line_over_max_length", "invalid_utf8_value",
                   "update_too_few_fields", "update_too_many_fields", "update_unchanged_overrun",
                   "json_patch_not_json", "tlcp_diff_out_of_range", "unknown_tag",
                   "subok_non_numeric", "conok_bad_keepalive", "reqerr_missing_fields",
                   "conok_empty_numeric", "nul_bytes", "lone_cr", "old_protocol_sync_error",
                   "redirect_302_login", "unauthorized_401", "forbidden_403_waf",
                   "not_found_404"):  # fmt: skip
        assert wanted in names


# --------------------------------------------------------------------------- fake server


def _params(body: str) -> list[dict[str, str]]:
    return [dict(parse_qsl(line, keep_blank_values=True)) for line in body.split("\r\n") if line]


class FakeServer(Resource):
    """Just enough TLCP to reach the point where a case's bad input is injected."""

    isLeaf = True

    def __init__(self, case: Case) -> None:
        super().__init__()
        self.case = case
        self.requests: list[tuple[str, bytes]] = []  # (uri, body)
        self.streams: list[tuple[Request, str]] = []  # (request, session id)
        self.open: set[int] = set()  # indexes into streams still open
        self.created = 0
        self.injected = False
        self.on_inject: Callable[[], object] = lambda: None

    # -- helpers

    def stream_of(self, sid: str) -> Request | None:
        for index in sorted(self.open, reverse=True):
            request, stream_sid = self.streams[index]
            if stream_sid == sid:
                return request
        return None

    def open_sessions(self) -> list[str]:
        return [self.streams[i][1] for i in sorted(self.open)]

    def _start_stream(self, request: Request, sid: str, head: str) -> int:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.write(head.encode())
        index = len(self.streams)
        self.streams.append((request, sid))
        self.open.add(index)
        request.notifyFinish().addBoth(lambda _: self.open.discard(index))
        return NOT_DONE_YET

    # -- requests

    def render_POST(self, request: Request) -> bytes | int:  # noqa: N802
        body = request.content.read() if request.content is not None else b""
        self.requests.append((request.uri.decode(), body))
        name = request.path.decode().rsplit("/", 1)[-1].removesuffix(".txt")
        case = self.case
        if case.mode == "reply":
            request.setResponseCode(case.status)
            for key, value in case.headers:
                request.setHeader(key, value)
            return case.body
        text = body.decode()
        if name == "create_session":
            if case.mode == "create":
                request.setHeader(b"content-type", b"text/plain")
                for key, value in case.headers:
                    request.setHeader(key, value)
                return case.body
            self.created += 1
            sid = f"S{self.created}"
            return self._start_stream(request, sid, f"CONOK,{sid},50000,5000,*\r\n")
        if name == "bind_session":
            params = _params(text)[0]
            sid = params["LS_session"]
            head = f"CONOK,{sid},50000,5000,*\r\n"
            if "LS_recovery_from" in params:
                head += f"PROG,{params['LS_recovery_from']}\r\n"
            return self._start_stream(request, sid, head)
        if name == "control":
            return self._control(request, text)
        return b"REQOK\r\n"

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        # A WebSocket upgrade: a non-TLCP server answers it like anything else; ours
        # refuses WebSockets so that the client streams over HTTP.
        if self.case.mode == "reply":
            result = self.render_POST(request)
            assert isinstance(result, bytes)
            return result
        self.requests.append((request.uri.decode(), b""))
        request.setResponseCode(405)
        return b"no WebSockets here\r\n"

    def _control(self, request: Request, text: str) -> bytes:
        sid = request.args.get(b"LS_session", [b""])[0].decode()
        stream = self.stream_of(sid)
        replies: list[str] = []
        after: list[str] = []
        inject = b""
        for params in _params(text):
            req_id, op = params.get("LS_reqId", ""), params.get("LS_op")
            if op == "add":
                if self.case.mode == "control" and not self.injected:
                    self.injected = True
                    self.on_inject()
                    for key, value in self.case.headers:
                        request.setHeader(key, value)
                    return self.case.body
                sub = params["LS_subId"]
                replies.append(f"REQOK,{req_id}")
                after += [f"SUBOK,{sub},2,2", f"CONF,{sub},unlimited,filtered",
                          f"U,{sub},1,a|b", f"U,{sub},2,c|d"]  # fmt: skip
                if not self.injected and self.case.mode in ("stream", "rawtail"):
                    self.injected = True
                    inject = self.case.body
            elif op == "delete":
                replies.append(f"REQOK,{req_id}")
                after.append(f"UNSUB,{params['LS_subId']}")
            elif op == "destroy":
                replies.append(f"REQOK,{req_id}")
                after.append("END,31,Destroy invoked by client")
            else:
                replies.append(f"REQOK,{req_id}")
        if stream is not None:
            reactor.callLater(0, self._write_after, stream, after, inject)
        return "".join(f"{r}\r\n" for r in replies).encode()

    def _write_after(self, stream: Request, lines: list[str], inject: bytes) -> None:
        if stream.finished or stream._disconnected:
            return
        stream.write("".join(f"{line}\r\n" for line in lines).encode())
        if "END,31" in "".join(lines):
            stream.finish()
            return
        if not inject:
            return
        self.on_inject()
        if self.case.mode == "rawtail":
            transport = stream.channel.transport
            assert transport is not None
            transport.write(b"\r\n" + inject)  # ends the current chunk, starts a bogus one
            transport.loseConnection()
            return
        stream.write(inject)
        if self.case.close:
            stream.finish()


class _Banner(Protocol):
    def __init__(self, owner: TcpServer) -> None:
        self.owner = owner

    def connectionMade(self) -> None:  # noqa: N802
        self.owner.connections += 1
        assert self.transport is not None
        self.transport.write(self.owner.body)
        self.transport.loseConnection()


class TcpServer(Factory):
    """Not HTTP at all: writes ``body`` to every connection and hangs up."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.connections = 0

    def buildProtocol(self, addr: Any) -> _Banner:  # noqa: N802
        return _Banner(self)


# --------------------------------------------------------------------------- log capture


class LogCapture:
    """Every Twisted log event while a test runs (plus GC-time Deferred failures)."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.events.append(event)

        self._observer = observe

    def __enter__(self) -> LogCapture:
        globalLogPublisher.addObserver(self._observer)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.collect()  # unhandled errors in Deferreds are logged when collected
        globalLogPublisher.removeObserver(self._observer)

    def text(self) -> str:
        out = []
        for event in self.events:
            out.append(formatEvent(event) or "")
            failure = event.get("log_failure")
            if isinstance(failure, Failure):
                out.append(failure.getTraceback())
        return "\n".join(out)

    def failures(self) -> list[str]:
        bad = []
        for event in self.events:
            text = formatEvent(event) or ""
            if "log_failure" in event or "Unhandled" in text or "Traceback" in text:
                bad.append(text + "\n" + str(event.get("log_failure")))
        return bad


# --------------------------------------------------------------------------- replay


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            return False
        await task.deferLater(reactor, 0.02, lambda: None)
        waited += 0.02
    return True


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


def _reported_text(error: BaseException) -> str:
    parts = [str(error), repr(error), repr(getattr(error, "args", ()))]
    for attr in ("line", "reason", "message", "url", "tag"):
        value = getattr(error, attr, None)
        if isinstance(value, str):
            parts.append(value)
    return "\n".join(parts)


async def replay(case: Case) -> None:
    site_port: Any = None
    fake: FakeServer | None = None
    tcp: TcpServer | None = None
    if case.mode == "tcp":
        tcp = TcpServer(case.body)
        site_port = reactor.listenTCP(0, tcp, interface="127.0.0.1")
    else:
        fake = FakeServer(case)
        site_port = reactor.listenTCP(0, Site(fake), interface="127.0.0.1")
    url = f"http://127.0.0.1:{site_port.getHost().port}"

    def request_count() -> int:
        return tcp.connections if tcp is not None else len(fake.requests) if fake else 0

    # The corpus imitates HTTP servers and proxies: no WebSocket attempt first.
    client = LsClient(url, max_line_length=MAX_LINE, forced_transport="HTTP")
    errors: list[LightstreamerError] = []
    statuses: list[tuple[str, str | None]] = []
    create_failures: list[BaseException] = []
    client.on_error(errors.append)
    client.on_status(lambda status, reason: statuses.append((status, reason)))
    table: Table | None = None
    injected_at = [-1]
    if fake is not None:
        fake.on_inject = lambda: injected_at.__setitem__(0, len(statuses))

    def reported() -> list[BaseException]:
        return [*errors, *create_failures]

    def expected_seen() -> bool:
        for error in reported():
            if type(error).__name__ in case.expect or any(
                cls.__name__ in case.expect for cls in type(error).__mro__
            ):
                return True
        if "status" in case.expect:
            # Only what happened after the bad input went out (not, e.g., the client
            # noting that the server refuses WebSockets).
            start = injected_at[0] if case.mode in ("stream", "rawtail", "control") else 0
            return start >= 0 and any(reason for _, reason in statuses[start:])
        return False

    try:
        with LogCapture() as logs:
            d = client.create_session("DEMO", USER, PASSWORD)
            d.addErrback(lambda f: create_failures.append(f.value))
            if case.mode in ("stream", "rawtail", "control"):
                info = await d
                assert info.session_id == "S1"
                table = Table(client, mode=MODE_MERGE, item_ids=["i1", "i2"], schema=["f1", "f2"])
            start_requests = request_count()
            assert await wait_until(expected_seen, 5.0), (
                f"not reported: errors={reported()!r} statuses={statuses!r}")

            if case.end == "recovered":
                def healthy() -> bool:
                    if client.status != STREAMING or fake is None:
                        return False
                    sid = client.session_id
                    if sid is None or fake.stream_of(sid) is None:
                        return False
                    return table is None or case.mode == "control" or table.is_active

                assert await wait_until(healthy, 5.0), (
                    f"not recovered: status={client.status} statuses={statuses!r} "
                    f"open={fake.open_sessions() if fake else None} errors={reported()!r}")
                await sleep(0.2)
                assert healthy(), "recovered, then lost again"
                assert fake is not None
                # Exactly one live stream, and it is the client's.
                assert fake.open_sessions() == [client.session_id]
            elif case.end == "disconnected":
                assert await wait_until(lambda: client.status == "DISCONNECTED", 5.0)
                before = request_count()
                await sleep(STORM_WINDOW)
                assert client.status == "DISCONNECTED"
                assert request_count() == before, "requests after DISCONNECTED"
                if fake is not None:
                    assert fake.open_sessions() == []
            else:  # retrying: keeps trying, but slowly
                await sleep(STORM_WINDOW)
                assert client.status in ("DISCONNECTED:WILL-RETRY", "CONNECTING")
                assert request_count() - start_requests <= 2, "retry storm"

            if case.mode in ("reply", "tcp") or case.end == "disconnected":
                # Not a Lightstreamer server (or one the client cannot use): one clear error.
                fatal = [e for e in errors if isinstance(e, LightstreamerError)]
                if case.end == "disconnected":
                    # One error (a fatal protocol error is currently delivered twice to
                    # on_error, see test_fatal_protocol_error_reported_once).
                    assert len({id(e) for e in fatal}) == 1, fatal
                    assert len(create_failures) == 1
                    assert create_failures[0] is fatal[0]
                    error = fatal[0]
                    if isinstance(error, TransportError):
                        assert error.url.startswith(url + "/lightstreamer/")
                        assert url in str(error)
                        if case.mode == "reply":
                            assert error.status == case.status
                            assert str(case.status) in str(error) or "HTML" in str(error)
                            assert not error.retryable
                    else:
                        assert isinstance(error, ProtocolError)
                        assert error.line is not None
                else:
                    reasons = [r for s, r in statuses if r]
                    assert any(url in r for r in reasons), reasons

            # What was reported is short and never shows the password.
            for error in reported():
                text = _reported_text(error)
                assert PASSWORD not in text
                if isinstance(error, ProtocolError) and error.line is not None:
                    assert len(error.line) <= MAX_LINE_EXCERPT + 1
                    if len(error.line) > MAX_LINE_EXCERPT:
                        assert error.line.endswith("…")
                assert len(str(error)) <= 1000, str(error)
            for _, reason in statuses:
                assert reason is None or PASSWORD not in reason
            await client.destroy()
            client = None  # type: ignore[assignment]
            await sleep(0.05)
    finally:
        if client is not None:
            await client.destroy()
        if fake is not None:
            for index in list(fake.open):
                request = fake.streams[index][0]
                if request.channel is not None and request.channel.transport is not None:
                    request.channel.transport.abortConnection()
        await site_port.stopListening()

    assert logs.failures() == []
    assert PASSWORD not in logs.text()


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
@pytest_twisted.ensureDeferred
async def test_replay(case: Case) -> None:
    await replay(case)


@pytest_twisted.ensureDeferred
async def test_fatal_protocol_error_reported_once() -> None:
    case = next(c for c in CASES if c.name == "conok_empty_numeric")
    fake = FakeServer(case)
    port = reactor.listenTCP(0, Site(fake), interface="127.0.0.1")
    client = LsClient(f"http://127.0.0.1:{port.getHost().port}", forced_transport="HTTP")
    errors: list[LightstreamerError] = []
    client.on_error(errors.append)
    try:
        d = client.create_session("DEMO", USER, PASSWORD)
        d.addErrback(lambda _: None)
        assert await wait_until(lambda: client.status == "DISCONNECTED" and bool(errors), 5.0)
        await sleep(0.1)
        assert len(errors) == 1, errors
    finally:
        await client.destroy()
        await port.stopListening()
