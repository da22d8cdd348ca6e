"""
``python -m txlightstreamer`` and ``twistd -n lightstreamer`` as real subprocesses, against
an in-process `TlcpServer` on 127.0.0.1 (served by the test's own reactor, so children are
spawned with ``reactor.spawnProcess``): JSON lines, exit status per kind of stop, usage
errors. Every child is bounded by a timeout and killed on failure.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

import txlightstreamer
from txlightstreamer.cli import PASSWORD_ENV
from txlightstreamer.testing import DataModel, ItemListener, Session, TlcpServer

from .web_support import without_ts

ROOT = Path(__file__).resolve().parent.parent
IN_TREE = Path(txlightstreamer.__file__).resolve().is_relative_to(ROOT)
TIMEOUT = 30.0
SPEC = "MERGE item1 f1,f2 snapshot=yes"


def _twistd() -> list[str]:
    """The twistd next to this interpreter, as a user would run it (else via -c)."""
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


PYTHON_M = [sys.executable, "-m", "txlightstreamer"]
TWISTD = [*_twistd(), "-n", "--pidfile=", "lightstreamer"]


class Child(ProcessProtocol):
    """Collects a child's output; `wait` fires with its exit status."""

    def __init__(self, on_line: Callable[[Child, bytes], object] | None = None) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.status: int | None = None
        self.signal: int | None = None
        self._on_line = on_line
        self._partial = b""
        self._ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self.out += data
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            if self._on_line is not None:
                self._on_line(self, line)

    def errReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self.err += data

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 (Twisted API)
        value = reason.value
        self.status = getattr(value, "exitCode", None)
        self.signal = getattr(value, "signal", None)
        if reason.check(ProcessDone):
            self.status = 0
        self._ended.callback(None)

    def send(self, name: str) -> None:
        """Send a signal (``"TERM"``, ``"INT"``) to the child if it still runs."""
        try:
            assert self.transport is not None
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass

    async def wait(self, timeout: float = TIMEOUT) -> int:
        """The exit status; the child is killed and the test fails after ``timeout``."""
        timer = reactor.callLater(timeout, self.send, "KILL")
        await self._ended
        if timer.active():
            timer.cancel()
        else:
            raise AssertionError(f"child killed after {timeout} s\n{self.report()}")
        assert self.status is not None, f"child died of signal {self.signal}\n{self.report()}"
        return self.status

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every stdout line, parsed (each one must be a JSON object)."""
        events = []
        for line in bytes(self.out).splitlines():
            event = json.loads(line.decode("utf-8"))
            assert isinstance(event, dict) and "event" in event, line
            events.append(without_ts(event))  # every event has its ts (issue 19)
        return events

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def report(self) -> str:
        """Both outputs, for assertion messages."""
        return f"stdout:\n{self.out.decode(errors='replace')}\nstderr:\n{self.stderr}"

    @property
    def stderr(self) -> str:
        return self.err.decode("utf-8", "replace")


def spawn(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    on_line: Callable[[Child, bytes], object] | None = None,
) -> Child:
    """Start ``argv`` from the project root with the project (and its plugin) importable."""
    environ = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    path = environ.get("PYTHONPATH")
    if IN_TREE:  # an editable install: the package and its plugin live in the checkout
        environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    else:  # the installed package, not the checkout that `-m` would put first on sys.path
        environ["PYTHONSAFEPATH"] = "1"
    environ.update(env or {})
    child = Child(on_line)
    reactor.spawnProcess(child, argv[0], argv, env=environ, path=str(ROOT))
    return child


def on_first_update(name: str) -> Callable[[Child, bytes], object]:
    """A line hook sending signal ``name`` when the first update line arrives."""

    def hook(child: Child, line: bytes) -> None:
        if b'"event": "update"' in line and not getattr(child, "signalled", False):
            child.signalled = True  # type: ignore[attr-defined]
            child.send(name)

    return hook


class RecordingData(DataModel):
    """A data model remembering every server session that subscribed to anything."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[Session] = []

    def add_listener(self, item: str, listener: ItemListener) -> None:
        session = getattr(listener, "session", None)
        if isinstance(session, Session) and session not in self.sessions:
            self.sessions.append(session)
        super().add_listener(item, listener)


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[TlcpServer]:
    """A test server with item1 ticking every 50 ms."""
    srv = TlcpServer(keepalive_millis=1000, data=RecordingData())
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    srv.data.update("item1", {"f1": "0", "f2": "€uro"})
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        srv.data.update("item1", {"f1": str(count)})

    ticker = task.LoopingCall(tick)
    ticker.clock = reactor
    ticker.start(0.05, now=False)
    yield srv
    ticker.stop()
    await srv.stop()


def sessions_of(server: TlcpServer) -> list[Session]:
    """The server sessions that subscribed (destroyed ones included)."""
    data = server.data
    assert isinstance(data, RecordingData)
    return data.sessions


def assert_clean_stderr(child: Child) -> None:
    assert "Traceback" not in child.stderr, child.stderr


# -- python -m txlightstreamer -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_module_max_updates(server: TlcpServer) -> None:
    child = spawn([*PYTHON_M, "--url", str(server.url), "--subscribe", SPEC,
                   "--user", "alice", "--max-updates", "5"],
                  env={PASSWORD_ENV: "env-s3cret"})
    assert await child.wait() == 0, child.stderr
    assert_clean_stderr(child)
    updates = child.of("update")
    assert len(updates) == 5
    first = updates[0]
    assert first == {"event": "update", "sub": 0, "item": "item1", "pos": 1,
                     "values": {"f1": first["values"]["f1"], "f2": "€uro"},
                     "changed": ["f1", "f2"], "snapshot": True}
    assert all(not u["snapshot"] and u["changed"] == ["f1"] for u in updates[1:])
    assert "€uro".encode() in child.out  # UTF-8, not \\u escapes
    events = child.events
    assert events[0] == {"event": "status", "status": "CONNECTING",
                         "reason": "creating a session"}
    assert events[1]["event"] == "status"
    assert events[1]["status"] in ("CONNECTED:WS-STREAMING", "CONNECTED:HTTP-STREAMING")
    session = child.of("session")[0]
    assert session["continuity"] == "new"
    assert child.of("subscribed") == [{"event": "subscribed", "sub": 0, "items": 1,
                                       "fields": 2, "item_names": ["item1"],
                                       "field_names": ["f1", "f2"]}]
    assert events[-2:] == [{"event": "status", "status": "DISCONNECTED",
                            "reason": "closed by the client"},
                           {"event": "unsubscribed", "sub": 0}]
    # The session was destroyed on the server before the process exited.
    (seen,) = sessions_of(server)
    assert seen.session_id == session["session_id"]
    assert seen.closed and server.sessions == {}
    assert seen.params.get("LS_user") == "alice"
    assert seen.params.get("LS_password") == "env-s3cret"
    assert b"env-s3cret" not in child.out and "env-s3cret" not in child.stderr


@pytest.mark.parametrize("source", ["file", "flag"])
@pytest_twisted.ensureDeferred
async def test_module_password_never_shown(server: TlcpServer, source: str,
                                           tmp_path: Path) -> None:
    secret = "pa55-w0rd-xyz"
    if source == "file":
        path = tmp_path / "password"
        path.write_text(secret + "\n", encoding="utf-8")
        args = ["--password-file", str(path)]
    else:
        args = ["--password", secret]
    child = spawn([*PYTHON_M, "--url", str(server.url), "--subscribe", SPEC,
                   "--max-updates", "2", *args])
    assert await child.wait() == 0, child.stderr
    assert secret.encode() not in child.out and secret not in child.stderr
    assert sessions_of(server)[0].params.get("LS_password") == secret
    warned = "visible to other local users" in child.stderr
    assert warned is (source == "flag")


@pytest_twisted.ensureDeferred
async def test_module_demo_20_updates() -> None:
    child = spawn([*PYTHON_M, "--demo", "--max-updates", "20"])
    assert await child.wait() == 0, child.stderr
    assert_clean_stderr(child)
    assert len(child.of("update")) == 20
    assert {e["sub"] for e in child.of("subscribed")} == {0, 1}


@pytest.mark.parametrize("name", ["TERM", "INT"])
@pytest_twisted.ensureDeferred
async def test_module_signal_is_a_clean_stop(server: TlcpServer, name: str) -> None:
    child = spawn([*PYTHON_M, "--url", str(server.url), "--subscribe", SPEC],
                  on_line=on_first_update(name))
    assert await child.wait() == 0, child.stderr
    assert_clean_stderr(child)
    assert child.of("update")
    assert child.events[-2:] == [
        {"event": "status", "status": "DISCONNECTED", "reason": "closed by the client"},
        {"event": "unsubscribed", "sub": 0}], child.report()
    (seen,) = sessions_of(server)
    assert seen.closed and server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_module_duration(server: TlcpServer) -> None:
    child = spawn([*PYTHON_M, "--url", str(server.url), "--subscribe", SPEC,
                   "--duration", "0.5"])
    assert await child.wait() == 0, child.stderr
    assert child.of("update") and server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_module_refused_session(server: TlcpServer) -> None:
    server.refuse_sessions(1, "bad credentials")
    child = spawn([*PYTHON_M, "--url", str(server.url), "--subscribe", SPEC])
    assert await child.wait() == 1, child.stderr
    assert_clean_stderr(child)
    assert child.of("error") == [{"event": "error", "code": 1, "message": "bad credentials"}]
    assert not child.of("update")


@pytest_twisted.ensureDeferred
async def test_module_output_file(server: TlcpServer, tmp_path: Path) -> None:
    out = tmp_path / "feed.jsonl"
    child = spawn([*PYTHON_M, "--url", str(server.url), "--subscribe", SPEC,
                   "--max-updates", "3", "--output", str(out)])
    assert await child.wait() == 0, child.stderr
    assert child.out == b""
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert len([e for e in lines if e["event"] == "update"]) == 3


USAGE_ERRORS = [
    (["--url", "http://127.0.0.1:1"], "nothing to subscribe to"),
    (["--url", "http://127.0.0.1:1", "--subscribe", SPEC, "--give-up-after", "0"],
     "bad --give-up-after"),
    (["--url", "https://127.0.0.1:1", "--subscribe", SPEC, "--ca-file", "/nonexistent/ca"],
     "cannot read --ca-file"),
    (["--demo-port", "70000"], "bad --demo-port"),
    (["--demo", "--log-level", "loud"], "bad --log-level"),
    (["--url", "http://127.0.0.1:1", "--subscribe", "FOO item1 f1"], "unknown mode"),
    (["--url", "http://127.0.0.1:1", "--subscribe", "MERGE item1"], "bad --subscribe SPEC"),
    (["--url", "http://127.0.0.1:1", "--subscribe", "MERGE item1 f1 snapshot"],
     "bad key=value"),
    (["--subscribe", SPEC], "missing --url"),
    (["--url", "http://127.0.0.1:1", "--password-file", "/nonexistent/password"],
     "cannot read --password-file"),
    (["--url", "http://127.0.0.1:1", "--protocol", "9.9.9"], "bad --protocol"),
    (["--url", "http://127.0.0.1:1", "--no-such-option"], "--no-such-option"),
]


@pytest.mark.parametrize(("args", "words"), USAGE_ERRORS)
@pytest_twisted.ensureDeferred
async def test_module_usage_errors(args: list[str], words: str) -> None:
    child = spawn([*PYTHON_M, *args])
    assert await child.wait() == 2, child.stderr
    assert child.out == b""
    lines = child.stderr.splitlines()
    assert len(lines) == 1, child.stderr
    assert words in lines[0]
    assert lines[0].startswith("python -m txlightstreamer: error: ")


@pytest_twisted.ensureDeferred
async def test_module_help() -> None:
    child = spawn([*PYTHON_M, "--help"])
    assert await child.wait() == 0
    text = child.out.decode()
    assert text.startswith("Usage: python -m txlightstreamer [options]")
    for name in ("--url", "--subscribe", "--password-file", "--demo", "--max-updates"):
        assert name in text


# -- twistd -n lightstreamer ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_twistd_lists_the_plugin() -> None:
    child = spawn([*_twistd(), "--help"])
    assert await child.wait() == 0, child.stderr
    assert b"lightstreamer" in child.out


@pytest_twisted.ensureDeferred
async def test_twistd_demo_20_updates() -> None:
    child = spawn([*TWISTD, "--demo", "--max-updates", "20"])
    assert await child.wait() == 0, child.stderr
    assert len(child.of("update")) == 20  # and every stdout line is JSON: no log lines
    assert "starting up" in child.stderr  # the twistd log went to stderr
    assert_clean_stderr(child)


@pytest_twisted.ensureDeferred
async def test_twistd_with_an_output_file_logs_to_stderr_at_the_chosen_level(
        tmp_path: Path) -> None:
    # service.rst: twistd -n logs to standard error, --quiet shows warnings and errors
    # only; with --output FILE the log went to stdout, every level (review, third round).
    out = tmp_path / "events.jsonl"
    child = spawn([*TWISTD, "--demo", "--max-updates", "5", "--output", str(out), "--quiet"])
    assert await child.wait() == 0, child.stderr
    assert '"event": "update"' in out.read_text()
    assert child.out == b"", child.out[:500]
    assert "Status CONNECTED" not in child.stderr


@pytest.mark.parametrize("command", [PYTHON_M, TWISTD], ids=["python -m", "twistd -n"])
@pytest_twisted.ensureDeferred
async def test_credentials_in_the_url_are_a_usage_error_that_never_shows_them(
        command: list[str]) -> None:
    child = spawn([*command, "--url", "http://bob:hunter2@127.0.0.1:1",
                   "--subscribe", SPEC])
    assert await child.wait() == 2
    assert "credentials" in child.stderr
    assert "hunter2" not in child.stderr and b"hunter2" not in child.out


@pytest_twisted.ensureDeferred
async def test_twistd_against_server(server: TlcpServer) -> None:
    child = spawn([*TWISTD, "--url", str(server.url), "--subscribe", SPEC,
                   "--max-updates", "4"])
    assert await child.wait() == 0, child.stderr
    assert len(child.of("update")) == 4
    (seen,) = sessions_of(server)
    assert seen.closed and server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_twistd_sigterm_is_a_clean_stop(server: TlcpServer) -> None:
    child = spawn([*TWISTD, "--url", str(server.url), "--subscribe", SPEC],
                  on_line=on_first_update("TERM"))
    assert await child.wait() == 0, child.stderr
    assert child.events[-2:] == [
        {"event": "status", "status": "DISCONNECTED", "reason": "closed by the client"},
        {"event": "unsubscribed", "sub": 0}], child.report()
    (seen,) = sessions_of(server)
    assert seen.closed and server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_twistd_refused_session(server: TlcpServer) -> None:
    server.refuse_sessions(1, "bad credentials")
    child = spawn([*TWISTD, "--url", str(server.url), "--subscribe", SPEC])
    assert await child.wait() == 1, child.stderr
    assert child.of("error") == [{"event": "error", "code": 1, "message": "bad credentials"}]


@pytest_twisted.ensureDeferred
async def test_twistd_usage_error() -> None:
    child = spawn([*TWISTD, "--subscribe", "FOO item1 f1"])
    assert await child.wait() != 0
    assert "unknown mode" in child.stderr + child.out.decode()
    assert_clean_stderr(child)


# -- the first hour of a new user (issue 19) ------------------------------------------------


UNREACHABLE = ["--url", "http://127.0.0.1:1", "--subscribe", "MERGE item1 last_price"]


@pytest.mark.parametrize("command", [PYTHON_M, TWISTD], ids=["python -m", "twistd -n"])
@pytest_twisted.ensureDeferred
async def test_unreachable_url_says_why_and_gives_up(command: list[str]) -> None:
    child = spawn([*command, *UNREACHABLE, "--give-up-after", "6"])
    assert await child.wait() == 1, child.report()
    assert_clean_stderr(child)
    statuses = child.of("status")
    assert all(e["reason"] for e in statuses), statuses
    assert not [e for e in statuses if e["status"].startswith("CONNECTED")]
    assert len([e for e in statuses if e["status"] == "CONNECTING"]) >= 2
    *told, last = child.of("error")
    # The cause once (not once per attempt), then the give-up with the last cause.
    assert len(told) == 1 and told[0]["code"] is None, child.report()
    assert "refused" in told[0]["message"]
    assert last["code"] is None
    assert last["message"].startswith("gave up after 6 s without a session: ")
    assert "refused" in last["message"]
    errors = [line for line in child.stderr.splitlines() if "#error]" in line]
    assert len(errors) == 1 and "gave up" in errors[0] and "refused" in errors[0], errors
    # Each failure is logged once with its cause (not once more per retry).
    warned = [line for line in child.stderr.splitlines() if "#warn]" in line]
    assert len(warned) == 1 and "refused" in warned[0], warned


@pytest_twisted.ensureDeferred
async def test_unreachable_url_keeps_trying_visibly() -> None:
    def stop_on_error(child: Child, line: bytes) -> None:
        if b'"event": "error"' in line:
            child.send("TERM")

    child = spawn([*PYTHON_M, *UNREACHABLE], on_line=stop_on_error)
    assert await child.wait() == 0, child.report()
    (error,) = child.of("error")
    assert error["code"] is None and "refused" in error["message"]
    assert "refused" in child.of("status")[1]["reason"]


@pytest.mark.parametrize("args", [[], ["--url", "http://127.0.0.1:1"],
                                  ["--subscribe", "FOO item1 f1"], ["--no-such-option"]],
                         ids=["no url", "no subscribe", "bad spec", "unknown option"])
@pytest_twisted.ensureDeferred
async def test_twistd_usage_error_is_one_line_on_stderr(args: list[str]) -> None:
    child = spawn([*TWISTD, *args])
    assert await child.wait() == 2, child.report()
    assert child.out == b""  # the JSON channel
    (line,) = child.stderr.splitlines()
    assert line.startswith("twistd lightstreamer: error: "), line


@pytest.mark.parametrize("command", [PYTHON_M, TWISTD], ids=["python -m", "twistd -n"])
@pytest_twisted.ensureDeferred
async def test_ca_file_trusts_a_private_ca(command: list[str], tmp_path: Path) -> None:
    from twisted.internet import ssl

    from .test_tls import make_pki

    ca_pem, cert_pem, key_pem = make_pki()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(ca_pem)
    tls = ssl.PrivateCertificate.loadPEM(cert_pem + key_pem).options()
    srv = TlcpServer(keepalive_millis=1000)
    await srv.listen(reactor, port=0, interface="127.0.0.1", tls=tls)
    srv.data.update("item1", {"f1": "1", "f2": "2"})
    try:
        child = spawn([*command, "--url", str(srv.url), "--subscribe", SPEC,
                       "--ca-file", str(ca), "--max-updates", "1"])
        assert await child.wait() == 0, child.report()
        assert len(child.of("update")) == 1
    finally:
        await srv.stop()


def _free_port() -> int:
    port = reactor.listenTCP(0, _NoFactory(), interface="127.0.0.1")
    number = int(port.getHost().port)
    port.stopListening()
    return number


class _NoFactory:
    noisy = False

    def doStart(self) -> None:  # noqa: N802
        pass

    def doStop(self) -> None:  # noqa: N802
        pass

    def buildProtocol(self, addr: object) -> None:  # noqa: N802
        return None


@pytest_twisted.ensureDeferred
async def test_demo_port_and_quiet_logs() -> None:
    port = _free_port()
    child = spawn([*TWISTD, "--demo-port", str(port), "--max-updates", "3", "--quiet"])
    assert await child.wait() == 0, child.report()
    assert len(child.of("update")) == 3
    assert child.stderr == ""  # --quiet: warnings and errors only, and there were none
    child = spawn([*PYTHON_M, "--demo-port", str(port), "--max-updates", "3",
                   "--log-level", "debug"])
    assert await child.wait() == 0, child.report()
    assert f"Demo server listening on http://127.0.0.1:{port}" in child.stderr


@pytest_twisted.ensureDeferred
async def test_twistd_default_logs_have_no_plumbing_noise(server: TlcpServer) -> None:
    child = spawn([*TWISTD, "--url", str(server.url), "--subscribe", SPEC,
                   "--max-updates", "3", "--http-port", "tcp:0"])
    assert await child.wait() == 0, child.report()
    for noise in ("Starting factory", "Stopping factory", '"GET ', '"POST '):
        assert noise not in child.stderr, child.stderr


@pytest_twisted.ensureDeferred
async def test_an_html_error_page_is_one_readable_line() -> None:
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Refusing(Resource):
        isLeaf = True

        def render(self, request: Any) -> bytes:
            request.setResponseCode(501)
            return (b"<!DOCTYPE HTML>\n<html><head><title>Error response</title></head>\n"
                    b"<body><h1>Error response</h1>\n<p>Message: Unsupported method "
                    b"(&#x27;POST&#x27;).</p></body></html>\n")

    port = reactor.listenTCP(0, Site(Refusing()), interface="127.0.0.1")
    try:
        child = spawn([*PYTHON_M, "--url", f"http://127.0.0.1:{port.getHost().port}",
                       "--subscribe", SPEC, "--give-up-after", "2"])
        assert await child.wait() == 1, child.report()
    finally:
        await port.stopListening()
    messages = [e["message"] for e in child.of("error")]
    assert any("501" in m and "Unsupported method ('POST')" in m for m in messages), messages
    assert not any("<" in m for m in messages), messages
    assert "<html" not in child.stderr.lower() and "<h1>" not in child.stderr, child.stderr
