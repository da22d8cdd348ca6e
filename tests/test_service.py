"""
The service behind ``twistd lightstreamer`` and ``python -m txlightstreamer``: options
and SPEC parsing, the JSON-lines writer (deterministic, no network), the twistd plugin,
and `LsService` against a real in-process `TlcpServer` on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from twisted.application.service import IService, IServiceMaker, MultiService
from twisted.internet import reactor, task
from twisted.plugin import IPlugin, getPlugins
from twisted.python import usage
from zope.interface.verify import verifyObject

from txlightstreamer import ItemUpdate, ProtocolError, ServerError, TransportError, events, service
from txlightstreamer.cli import (
    PASSWORD_ENV,
    Options,
    SubscriptionSpec,
    parse_subscription,
    stderr_log_observer,
)
from txlightstreamer.cli.options import STDERR_OBSERVER_NAME
from txlightstreamer.events import (
    EventFeed,
    encode_event,
    error_event,
    item_event,
    lost_event,
    update_event,
)
from txlightstreamer.service import JsonLinesWriter, LsService, makeService
from txlightstreamer.testing import DataModel, TlcpServer

from .support import wait_until
from .web_support import without_ts

TIMEOUT = 10.0


def parse(*args: str, environ: dict[str, str] | None = None) -> Options:
    options = Options(environ=environ or {})
    options.parseOptions(list(args))
    return options


# -- --subscribe SPEC ---------------------------------------------------------------------


def test_spec_minimal() -> None:
    spec = parse_subscription("MERGE item1,item2 last_price,time")
    assert spec == SubscriptionSpec("MERGE", ("item1", "item2"), ("last_price", "time"))
    assert spec.snapshot is False


def test_spec_every_key() -> None:
    spec = parse_subscription(
        "  distinct  news  headline,time snapshot=10 adapter=NEWS selector=S1 "
        "max_frequency=2.5 buffer_size=unlimited ")
    assert spec == SubscriptionSpec(
        "DISTINCT", ("news",), ("headline", "time"), snapshot=10, adapter="NEWS",
        selector="S1", max_frequency=2.5, buffer_size="unlimited")


@pytest.mark.parametrize(("text", "expected"), [
    ("snapshot=yes", {"snapshot": True}),
    ("snapshot=no", {"snapshot": False}),
    ("max_frequency=unlimited", {"max_frequency": "unlimited"}),
    ("max_frequency=unfiltered", {"max_frequency": "unfiltered"}),
    ("max_frequency=3", {"max_frequency": 3.0}),
    ("buffer_size=5", {"buffer_size": 5}),
])
def test_spec_values(text: str, expected: dict[str, Any]) -> None:
    spec = parse_subscription(f"MERGE a b {text}")
    for key, value in expected.items():
        assert getattr(spec, key) == value


def test_spec_command() -> None:
    spec = parse_subscription("COMMAND portfolio key,command,qty snapshot=yes")
    assert spec.fields == ("key", "command", "qty")
    assert parse_subscription("COMMAND portfolio schema1").fields == ("schema1",)


@pytest.mark.parametrize(("text", "words"), [
    ("FOO a b", "unknown mode 'FOO'"),
    ("MERGE a", "bad --subscribe SPEC"),
    ("", "bad --subscribe SPEC"),
    ("MERGE a,,b f", "empty name"),
    ("MERGE a| f", "must not contain '|'"),
    ("MERGE a b snapshot", "bad key=value 'snapshot'"),
    ("MERGE a b =yes", "bad key=value"),
    ("MERGE a b snapshot=", "bad key=value"),
    ("MERGE a b colour=red", "unknown key 'colour'"),
    ("MERGE a b snapshot=yes snapshot=no", "given twice"),
    ("MERGE a b snapshot=maybe", "bad value snapshot='maybe'"),
    ("MERGE a b snapshot=5", "only allowed in DISTINCT"),
    ("DISTINCT a b snapshot=0", "bad value snapshot"),
    ("RAW a b snapshot=yes", "RAW mode has no snapshot"),
    ("MERGE a b max_frequency=-1", "bad value max_frequency"),
    ("MERGE a b max_frequency=0", "bad value max_frequency"),
    ("MERGE a b max_frequency=fast", "bad value max_frequency"),
    ("MERGE a b buffer_size=1.5", "bad value buffer_size"),
    ("RAW a b buffer_size=3", "only allowed in MERGE and DISTINCT"),
    ("MERGE a b buffer_size=3 max_frequency=unfiltered", "cannot be combined"),
    ("COMMAND a key,qty", "missing command"),
])
def test_spec_errors(text: str, words: str) -> None:
    with pytest.raises(usage.UsageError) as info:
        parse_subscription(text)
    message = str(info.value)
    assert words in message
    assert "\n" not in message


# -- options -------------------------------------------------------------------------------


def test_options_defaults() -> None:
    options = parse("--url", "https://push.example.com", "--subscribe", "MERGE a b")
    assert options["url"] == "https://push.example.com"
    assert options["protocol"] == "2.5.0"
    assert options["output"] == "-"
    assert [s.items for s in options["subscribe"]] == [("a",)]  # --url needs one (issue 19)
    assert options["max-updates"] is None
    assert options["duration"] is None
    assert not options["demo"]
    assert options.password is None
    assert options.warnings == []


def test_options_everything(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    options = parse(
        "--url", "http://127.0.0.1:8080/prefix", "--adapter-set", "DEMO", "--user", "bob",
        "--subscribe", "MERGE item1 f1", "--subscribe", "COMMAND p key,command",
        "--protocol", "2.4.0", "--output", str(out), "--max-updates", "7",
        "--duration", "1.5")
    assert options["adapter-set"] == "DEMO"
    assert options["user"] == "bob"
    assert [s.mode for s in options["subscribe"]] == ["MERGE", "COMMAND"]
    assert options["protocol"] == "2.4.0"
    assert options["output"] == str(out)
    assert out.exists()
    assert options["max-updates"] == 7
    assert options["duration"] == 1.5


def test_options_demo() -> None:
    options = parse("--demo")
    assert options["demo"] and options["url"] is None


def test_relative_output_becomes_absolute(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    options = parse("--demo", "--output", "out.jsonl")
    assert options["output"] == str(tmp_path / "out.jsonl")


@pytest.mark.parametrize(("args", "words"), [
    ((), "missing --url"),
    (("--url", "push.example.com"), "bad --url"),
    (("--url", "ftp://push.example.com"), "bad --url"),
    (("--url", "http://"), "bad --url"),
    (("--demo", "--url", "http://127.0.0.1:1"), "do not combine"),
    (("--demo", "--protocol", "2.6.0"), "bad --protocol '2.6.0'"),
    (("--demo", "--max-updates", "0"), "bad --max-updates"),
    (("--demo", "--max-updates", "x"), "bad --max-updates"),
    (("--demo", "--duration", "-1"), "bad --duration"),
    (("--demo", "--duration", "soon"), "bad --duration"),
    (("--demo", "--subscribe", "BAD a b"), "unknown mode"),
    (("--demo", "--password-file", "/nonexistent/pw"), "cannot read --password-file"),
    (("--demo", "--output", "/nonexistent/dir/out"), "cannot write --output"),
    (("--demo", "extra"), "Wrong number of arguments"),
])
def test_options_errors(args: tuple[str, ...], words: str) -> None:
    with pytest.raises(usage.UsageError) as info:
        parse(*args)
    assert words in str(info.value)


def test_password_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret pass\nignored\n", encoding="utf-8")
    options = parse("--demo", "--password-file", str(secret),
                    environ={PASSWORD_ENV: "from-env"})
    assert options.password == "s3cret pass"
    assert options.warnings == []
    assert "s3cret" not in repr(options) and "s3cret" not in str(dict(options))


def test_password_from_environment() -> None:
    options = parse("--demo", environ={PASSWORD_ENV: "from-env"})
    assert options.password == "from-env"
    assert options.warnings == []
    assert "from-env" not in repr(options)


def test_plain_password_warns() -> None:
    options = parse("--demo", "--password", "hunter2")
    assert options.password == "hunter2"
    assert options["password"] is None
    assert "hunter2" not in repr(options)
    assert len(options.warnings) == 1
    assert "visible to other local users" in options.warnings[0]
    assert "hunter2" not in options.warnings[0]


def test_password_file_and_password_conflict(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x", encoding="utf-8")
    with pytest.raises(usage.UsageError, match="not both"):
        parse("--demo", "--password-file", str(secret), "--password", "y")


def test_help_lists_options() -> None:
    text = str(Options())
    for name in ("--url", "--adapter-set", "--user", "--password-file", "--password",
                 "--subscribe", "--protocol", "--output", "--max-updates", "--duration",
                 "--demo"):
        assert name in text


class FakeTwistdOptions(usage.Options):
    """Just the twistd options `Options` looks at."""

    optFlags = [["nodaemon", "n", ""]]
    optParameters = [["logfile", "l", None, ""], ["logger", None, None, ""]]
    subCommands = [["lightstreamer", None, Options, ""]]


def test_twistd_nodaemon_logs_to_stderr() -> None:
    parent = FakeTwistdOptions()
    parent.parseOptions(["-n", "lightstreamer", "--demo"])
    assert parent["logger"] == "txlightstreamer.service.stderr_log_observer"
    assert callable(stderr_log_observer())


@pytest.mark.parametrize(("level", "shown"), [("info", False), ("debug", True)])
def test_client_service_retries_are_chatter(level: str, shown: bool) -> None:
    # Found by a docs review: an unreachable Redis logged ClientService's "Scheduling retry"
    # lines before the service's one line saying so.
    from twisted.logger import Logger, LogLevel, LogPublisher

    from txlightstreamer.cli.options import log_observer

    out = io.StringIO()
    publisher = LogPublisher(log_observer(out, LogLevel.levelWithName(level)))
    Logger("twisted.application._client_service.ClientService", observer=publisher).info(
        "Scheduling retry 1")
    Logger("txlightstreamer.service", observer=publisher).info("the service's own")
    assert ("Scheduling retry" in out.getvalue()) is shown
    assert "the service's own" in out.getvalue()


def test_twistd_explicit_logfile_is_kept() -> None:
    parent = FakeTwistdOptions()
    parent.parseOptions(["-n", "-l", "twistd.log", "lightstreamer", "--demo"])
    assert parent["logger"] is None


def test_twistd_in_the_foreground_logs_to_stderr_whatever_the_output(tmp_path: Path) -> None:
    # service.rst: twistd -n logs to standard error at --log-level (it went to stdout,
    # unfiltered, with --output FILE); daemonized, twistd.log keeps every level.
    parent = FakeTwistdOptions()
    parent.parseOptions(["-n", "lightstreamer", "--demo", "--output", str(tmp_path / "o")])
    assert parent["logger"] == STDERR_OBSERVER_NAME
    parent = FakeTwistdOptions()
    parent.parseOptions(["lightstreamer", "--demo", "--output", str(tmp_path / "o")])
    assert parent["logger"] is None


def test_twistd_daemon_cannot_write_stdout() -> None:
    parent = FakeTwistdOptions()
    with pytest.raises(usage.UsageError, match="--nodaemon"):
        parent.parseOptions(["lightstreamer", "--demo"])


# -- the JSON-lines stream -------------------------------------------------------------------


def test_encode_event_is_utf8_json_line() -> None:
    line = encode_event({"event": "update", "values": {"a": "€ ünï", "b": None, "c": ""}})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert "€ ünï".encode() in line
    assert json.loads(line) == {"event": "update", "values": {"a": "€ ünï", "b": None, "c": ""}}


def test_encode_event_lone_surrogate_falls_back_to_escapes() -> None:
    line = encode_event({"event": "update", "values": {"a": "x\udcff"}})
    assert line.decode("ascii")
    assert json.loads(line)["values"]["a"] == "x\udcff"


class RecordingStream(io.BytesIO):
    """A BytesIO that records what had been written at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[bytes] = []

    def flush(self) -> None:
        super().flush()
        self.flushed.append(self.getvalue())


def test_writer_flushes_every_line() -> None:
    stream = RecordingStream()
    writer = JsonLinesWriter(stream)
    writer.write({"event": "status", "status": "CONNECTING"})
    writer.write({"event": "status", "status": "DISCONNECTED"})
    assert stream.flushed == [
        b'{"event": "status", "status": "CONNECTING"}\n',
        b'{"event": "status", "status": "CONNECTING"}\n'
        b'{"event": "status", "status": "DISCONNECTED"}\n',
    ]
    assert writer.lines == 2
    writer.close()
    assert writer.closed
    writer.write({"event": "status", "status": "x"})  # ignored
    assert not stream.closed  # not ours to close


def test_writer_appends_to_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"event": "old"}\n')
    writer = JsonLinesWriter.open(str(path))
    writer.write({"event": "new", "v": "é"})
    assert path.read_bytes() == b'{"event": "old"}\n{"event": "new", "v": "\xc3\xa9"}\n'
    writer.close()


class BrokenStream(io.BytesIO):
    def write(self, data: Any) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_writer_reports_a_broken_output_once() -> None:
    broken: list[OSError] = []
    writer = JsonLinesWriter(BrokenStream(), close=True, on_broken=broken.append)
    writer.write({"event": "a"})
    writer.write({"event": "b"})
    assert len(broken) == 1 and isinstance(broken[0], BrokenPipeError)
    assert writer.closed and writer.lines == 0


def fake_table(items: tuple[str, ...] | None, fields: tuple[str, ...] | None,
               key: int = 0, command: int = 0) -> Any:
    return SimpleNamespace(item_names=items, field_names=fields, key_position=key,
                           command_position=command)


def test_update_event() -> None:
    table = fake_table(("item1", "item2"), ("f1", "f2", "f3"))
    update = ItemUpdate(table, 2, ("x", None, ""), ("x", "old", ""), False)
    assert update_event(3, update) == {
        "event": "update", "sub": 3, "item": "item2", "pos": 2,
        "values": {"f1": "x", "f2": None, "f3": ""}, "changed": ["f2"], "snapshot": False,
    }
    line = encode_event(update_event(3, update))
    assert b'"f2": null' in line and b'"f3": ""' in line


def test_update_event_without_names() -> None:
    table = fake_table(None, None)
    update = ItemUpdate(table, 1, ("a", "b"), None, True)
    assert update_event(0, update) == {
        "event": "update", "sub": 0, "item": None, "pos": 1,
        "values": {"1": "a", "2": "b"}, "changed": ["1", "2"], "snapshot": True,
    }


def test_item_events() -> None:
    table = fake_table(("a", "b"), ("f",))
    assert item_event("eos", 1, table, 2) == {"event": "eos", "sub": 1, "item": "b", "pos": 2}
    assert item_event("clear_snapshot", 0, table, 1) == {
        "event": "clear_snapshot", "sub": 0, "item": "a", "pos": 1}
    assert lost_event(0, table, 1, 5) == {
        "event": "lost", "sub": 0, "item": "a", "pos": 1, "count": 5}


def test_error_events() -> None:
    assert error_event(ServerError(1, "bad credentials", "CONERR")) == {
        "event": "error", "code": 1, "message": "bad credentials"}
    assert error_event(ServerError(21, "Bad item group name", "REQERR"), sub=2) == {
        "event": "error", "code": 21, "message": "Bad item group name", "sub": 2}
    event = error_event(ProtocolError("bad line", "X,LS_password=secret"))
    assert event["code"] == 61 and "bad line" in event["message"]
    assert "secret" not in event["message"]
    assert error_event(TransportError("HTTP 404", status=404, retryable=False)) == {
        "event": "error", "code": None, "message": "HTTP 404"}


def test_service_keeps_its_names() -> None:
    """The names users imported from txlightstreamer.service are the new modules' own."""
    assert service.Options is Options and service.parse_subscription is parse_subscription
    assert service.SubscriptionSpec is SubscriptionSpec and service.PASSWORD_ENV == PASSWORD_ENV
    for name in ("encode_event", "error_event", "item_event", "lost_event", "update_event",
                 "status_event", "session_event", "subscribed_event", "unsubscribed_event"):
        assert getattr(service, name) is getattr(events, name)


class ListSink:
    """An event sink keeping what it is given."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def write(self, event: Any) -> None:
        self.events.append(dict(event))


def test_feed_reports_an_error_once() -> None:
    sink = ListSink()
    feed = EventFeed(sink)
    refused = ServerError(21, "Bad item group name", "REQERR")
    feed.report_error(refused, 1)  # the table reports it first...
    feed.report_error(refused)  # ...then the client: written once, with the sub
    feed.report_error(ServerError(14, "no such item", "REQERR"), 0, "k1")
    assert sink.events == [
        {"event": "error", "code": 21, "message": "Bad item group name", "sub": 1},
        {"event": "error", "code": 14, "message": "no such item", "sub": 0, "key": "k1"},
    ]


# -- the twistd plugin -----------------------------------------------------------------------


def lightstreamer_plugin() -> Any:
    found = [p for p in getPlugins(IServiceMaker) if p.tapname == "lightstreamer"]
    if not found and _runs_from_the_checkout():
        # `pip install -e` installs no twisted/plugins file; `pip install .` (README, CI) does.
        pytest.skip("an editable install: twistd finds the plugin only with `pip install .`")
    assert len(found) == 1, "the lightstreamer twistd plugin is not discoverable"
    return found[0]


def _runs_from_the_checkout() -> bool:
    import txlightstreamer

    package = Path(txlightstreamer.__file__).resolve().parent
    return package.parent == Path(__file__).resolve().parent.parent


def test_plugin_is_discoverable() -> None:
    maker = lightstreamer_plugin()
    assert verifyObject(IServiceMaker, maker)
    assert IPlugin.providedBy(maker)
    options = maker.options()
    assert isinstance(options, Options)
    options.parseOptions(["--demo", "--max-updates", "20"])
    assert options["max-updates"] == 20
    top = maker.makeService(options)
    assert isinstance(top, MultiService)
    service = top.getServiceNamed("lightstreamer")
    assert isinstance(service, LsService)
    assert IService.providedBy(service)
    assert not service.running


# -- LsService against a live TlcpServer ---------------------------------------------------


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[TlcpServer]:
    srv = TlcpServer(keepalive_millis=1000)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    yield srv
    await srv.stop()


class Run:
    """An `LsService` writing into memory; stopped at the end of the test."""

    def __init__(self, *args: str, environ: dict[str, str] | None = None) -> None:
        self.options = parse(*args, environ=environ)
        self.stream = io.BytesIO()
        self.service = LsService(self.options, reactor=reactor,
                                 output=JsonLinesWriter(self.stream))

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON lines, each checked for its ``ts`` (then left out of comparisons)."""
        return [without_ts(json.loads(line)) for line in self.stream.getvalue().splitlines()]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


@pytest_twisted.async_yield_fixture
async def run() -> AsyncIterator[Callable[..., Run]]:
    made: list[Run] = []

    def make(*args: str, **kwargs: Any) -> Run:
        r = Run(*args, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        await r.service.stopService()


@pytest_twisted.ensureDeferred
async def test_merge_stream_and_clean_stop(server: TlcpServer,
                                           run: Callable[..., Run]) -> None:
    server.data.update("item1", {"f1": "1", "f2": "é"})
    server.data.update("item2", {"f1": "x", "f2": "y"})
    r = run("--url", server.url, "--subscribe", "MERGE item1,item2 f1,f2 snapshot=yes",
            "--user", "bob", "--password", "hunter2")
    r.service.startService()
    await wait_until(lambda: len(r.of("update")) >= 2)
    assert len(server.sessions) == 1
    session = next(iter(server.sessions.values()))
    assert session.params.get("LS_password") == "hunter2"
    assert session.user == "bob"
    server.data.update("item2", {"f1": "", "f2": None})
    server.data.update("item1", {"f1": "2"})
    await wait_until(lambda: len(r.of("update")) >= 4)

    await r.service.stopService()
    assert server.sessions == {}  # destroyed on the server
    assert session.closed
    events = r.events
    kinds = [e["event"] for e in events]
    assert kinds[:4] == ["status", "status", "session", "subscribed"]
    assert events[0] == {"event": "status", "status": "CONNECTING",
                         "reason": "creating a session"}
    assert events[1]["event"] == "status"
    assert events[1]["status"] in ("CONNECTED:WS-STREAMING", "CONNECTED:HTTP-STREAMING")
    assert events[2]["session_id"] == session.session_id
    assert events[2]["continuity"] == "new"
    assert events[3] == {"event": "subscribed", "sub": 0, "items": 2, "fields": 2,
                         "item_names": ["item1", "item2"], "field_names": ["f1", "f2"]}
    updates = r.of("update")
    assert updates[0] == {"event": "update", "sub": 0, "item": "item1", "pos": 1,
                          "values": {"f1": "1", "f2": "é"}, "changed": ["f1", "f2"],
                          "snapshot": True}
    assert updates[1]["item"] == "item2" and updates[1]["snapshot"]
    live = [u for u in updates if not u["snapshot"]]
    assert live[0]["item"] == "item2" and live[0]["values"] == {"f1": "", "f2": None}
    assert live[0]["changed"] == ["f1", "f2"]
    assert live[1]["values"] == {"f1": "2", "f2": "é"} and live[1]["changed"] == ["f1"]
    assert kinds[-1] == "unsubscribed"
    assert {"event": "status", "status": "DISCONNECTED",
            "reason": "closed by the client"} in events
    assert "hunter2" not in r.stream.getvalue().decode()
    assert r.service.exit_code == 0
    assert await r.service.when_done() == 0


@pytest_twisted.ensureDeferred
async def test_max_updates_stops_by_itself(server: TlcpServer,
                                           run: Callable[..., Run]) -> None:
    r = run("--url", server.url, "--subscribe", "RAW item1 f1", "--max-updates", "3")
    done = r.service.when_done()
    r.service.startService()
    await wait_until(lambda: bool(r.of("subscribed")))
    for i in range(6):
        server.data.update("item1", {"f1": str(i)})
    assert await done == 0
    assert [u["values"]["f1"] for u in r.of("update")] == ["0", "1", "2"]
    assert server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_duration_stops_by_itself(server: TlcpServer, run: Callable[..., Run]) -> None:
    r = run("--url", server.url, "--subscribe", "MERGE item1 f1", "--duration", "0.3")
    r.service.startService()
    assert await r.service.when_done() == 0
    assert r.of("session") and server.sessions == {}


@pytest_twisted.ensureDeferred
async def test_command_mode(server: TlcpServer, run: Callable[..., Run]) -> None:
    server.data.command("port", "k1", "ADD", {"qty": "10"})
    r = run("--url", server.url, "--subscribe", "COMMAND port key,command,qty snapshot=yes")
    r.service.startService()
    await wait_until(lambda: bool(r.of("eos")))
    server.data.command("port", "k1", "UPDATE", {"qty": "20"})
    server.data.command("port", "k1", "DELETE")
    await wait_until(lambda: len(r.of("update")) >= 3)
    assert r.of("subscribed") == [{"event": "subscribed", "sub": 0, "items": 1, "fields": 3,
                                  "item_names": ["port"],
                                  "field_names": ["key", "command", "qty"],
                                  "key_field": 1, "command_field": 2}]
    assert r.of("eos") == [{"event": "eos", "sub": 0, "item": "port", "pos": 1}]
    values = [u["values"] for u in r.of("update")]
    assert values == [
        {"key": "k1", "command": "ADD", "qty": "10"},
        {"key": "k1", "command": "UPDATE", "qty": "20"},
        {"key": "k1", "command": "DELETE", "qty": None},
    ]
    assert [u["snapshot"] for u in r.of("update")] == [True, False, False]


@pytest_twisted.ensureDeferred
async def test_clear_snapshot_and_lost(server: TlcpServer, run: Callable[..., Run]) -> None:
    r = run("--url", server.url, "--subscribe", "DISTINCT news h snapshot=no",
            "--subscribe", "MERGE other f")
    r.service.startService()
    await wait_until(lambda: len(r.of("subscribed")) == 2)
    server.data.clear_snapshot("news")
    server.data.overflow("other", 4)
    await wait_until(lambda: bool(r.of("clear_snapshot")) and bool(r.of("lost")))
    assert r.of("clear_snapshot") == [
        {"event": "clear_snapshot", "sub": 0, "item": "news", "pos": 1}]
    assert r.of("lost") == [{"event": "lost", "sub": 1, "item": "other", "pos": 1, "count": 4}]


@pytest_twisted.ensureDeferred
async def test_refused_session_is_fatal(server: TlcpServer, run: Callable[..., Run]) -> None:
    server.refuse_sessions(1, "bad credentials")
    r = run("--url", server.url, "--subscribe", "MERGE item1 f1")
    r.service.startService()
    assert await r.service.when_done() == 1
    assert r.of("error") == [{"event": "error", "code": 1, "message": "bad credentials"}]
    assert {"event": "status", "status": "DISCONNECTED",
            "reason": "CONERR 1: bad credentials"} in r.events


@pytest_twisted.ensureDeferred
async def test_session_ended_by_server_is_fatal(server: TlcpServer,
                                                run: Callable[..., Run]) -> None:
    r = run("--url", server.url, "--subscribe", "MERGE item1 f1")
    r.service.startService()
    await wait_until(lambda: bool(server.sessions) and bool(r.of("session")))
    next(iter(server.sessions.values())).end(32, "closed by the admin")
    assert await r.service.when_done() == 1
    assert r.of("error") == [{"event": "error", "code": 32, "message": "closed by the admin"}]


@pytest_twisted.ensureDeferred
async def test_subscription_error_is_reported_once_with_sub() -> None:
    srv = TlcpServer(data=DataModel(strict_items=True, items={"good": ["f"]}))
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    r = Run("--url", str(srv.url), "--subscribe", "MERGE good f",
            "--subscribe", "MERGE bad f")
    try:
        r.service.startService()
        await wait_until(lambda: bool(r.of("error")) and bool(r.of("subscribed")))
        await task.deferLater(reactor, 0.1, lambda: None)
        assert r.of("error") == [
            {"event": "error", "code": 21, "message": "Bad item group name", "sub": 1}]
        assert r.of("subscribed") == [{"event": "subscribed", "sub": 0, "items": 1,
                                       "fields": 1, "item_names": ["good"],
                                       "field_names": ["f"]}]
        assert r.service.exit_code is None  # not fatal
    finally:
        await r.service.stopService()
        await srv.stop()


@pytest_twisted.ensureDeferred
async def test_demo_in_process() -> None:
    options = parse("--demo", "--max-updates", "8")
    stream = io.BytesIO()
    top = makeService(options, reactor=reactor, output=JsonLinesWriter(stream),
                      stop_reactor=False)
    service = top.getServiceNamed("lightstreamer")
    assert isinstance(service, LsService)
    top.startService()
    try:
        assert await service.when_done() == 0
    finally:
        await top.stopService()
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    updates = [e for e in events if e["event"] == "update"]
    assert len(updates) == 8
    subscribed = [e for e in events if e["event"] == "subscribed"]
    assert {e["sub"] for e in subscribed} == {0, 1}
    assert [e for e in subscribed if e["sub"] == 1][0]["key_field"] >= 1
    assert service.server is not None and not service.server.listening  # stopped
    assert not service.feed.running


@pytest_twisted.ensureDeferred
async def test_stop_before_connected_is_clean(run: Callable[..., Run]) -> None:
    r = run("--url", "http://127.0.0.1:9", "--subscribe", "MERGE a b")  # nothing listens
    r.service.startService()
    await task.deferLater(reactor, 0.05, lambda: None)
    await r.service.stopService()
    assert r.service.exit_code == 0
    assert r.events[0] == {"event": "status", "status": "CONNECTING",
                           "reason": "creating a session"}
    await r.service.stopService()  # idempotent


def test_spec_second_level_keys() -> None:
    from txlightstreamer.service import parse_subscription

    spec = parse_subscription(
        "COMMAND portfolio key,command,qty snapshot=yes second_level=price,volume "
        "second_level_adapter=QUOTES")
    assert spec.second_level == ("price", "volume")
    assert spec.second_level_adapter == "QUOTES"
    for bad in ("MERGE a f second_level=x", "COMMAND p key,command second_level=key",
                "COMMAND p key,command second_level_adapter=Q"):
        with pytest.raises(usage.UsageError):
            parse_subscription(bad)


@pytest_twisted.ensureDeferred
async def test_two_level_command_in_json_lines() -> None:
    import io

    from twisted.internet import reactor as the_reactor

    from txlightstreamer.service import JsonLinesWriter, Options, makeService

    server = TlcpServer()
    await server.listen(the_reactor, port=0, interface="127.0.0.1")
    server.data.update("AAPL", {"price": "190.1"})
    server.data.command("portfolio", "AAPL", "ADD", {"qty": "5"})
    server.data.command("portfolio", "12", "ADD", {"qty": "1"})
    options = Options()
    options.parseOptions(["--url", server.url, "--subscribe",
                          "COMMAND portfolio key,command,qty snapshot=yes second_level=price"])
    out = io.BytesIO()
    service = makeService(options, reactor=the_reactor, output=JsonLinesWriter(out),
                          stop_reactor=False)
    service.startService()
    try:
        for _ in range(300):
            lines = [json.loads(x) for x in out.getvalue().splitlines()]
            if any(e.get("event") == "update" and e["values"].get("price") == "190.1"
                   for e in lines) and any(e.get("key") == "12" for e in lines):
                break
            await task.deferLater(the_reactor, 0.01, lambda: None)
        lines = [json.loads(x) for x in out.getvalue().splitlines()]
        merged = [e for e in lines if e.get("event") == "update"
                  and e["values"].get("price") == "190.1"]
        assert merged and merged[-1]["values"] == {
            "key": "AAPL", "command": "UPDATE", "qty": "5", "price": "190.1"}
        errors = [e for e in lines if e.get("event") == "error"]
        assert errors and errors[0]["key"] == "12" and errors[0]["code"] == 14
    finally:
        await service.stopService()
        await server.stop()
