"""
``--http-port`` on ``python -m txlightstreamer`` and ``twistd -n lightstreamer``, as real
subprocesses with ``--demo``: the page, /snapshot and /events are served on 127.0.0.1
next to the JSON lines, a bad endpoint is a usage error, and a browser sees the page live.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

import txlightstreamer
from tests.test_web_browser import _need_browser, run_browser
from tests.web_support import SseReader, sleep, wait_until, without_ts
from txlightstreamer.cli import Options
from txlightstreamer.web._page import PAGE

ROOT = Path(__file__).resolve().parent.parent
IN_TREE = Path(txlightstreamer.__file__).resolve().is_relative_to(ROOT)
TIMEOUT = 30.0
LIVE = re.compile(rb"Live tables on (http://([^/\s]+):(\d+)/)")

pytestmark = pytest.mark.skipif(
    "http-port" not in Options(), reason="txlightstreamer.service has no --http-port yet")


def _twistd() -> list[str]:
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


PYTHON_M = [sys.executable, "-m", "txlightstreamer"]
TWISTD = [*_twistd(), "-n", "--pidfile=", "lightstreamer"]


def _environ() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != "LS_PASSWORD"}
    path = environ.get("PYTHONPATH")
    if IN_TREE:  # an editable install: the package and its plugin live in the checkout
        environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    else:  # the installed package, not the checkout that `-m` would put first on sys.path
        environ["PYTHONSAFEPATH"] = "1"
    return environ


class Child(ProcessProtocol):
    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.status: int | None = None
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.out += data

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.err += data

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        self.status = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        self.ended.callback(None)

    def send(self, name: str) -> None:
        try:
            assert self.transport is not None
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass

    def report(self) -> str:
        return (f"stdout:\n{self.out.decode(errors='replace')[-3000:]}\n"
                f"stderr:\n{self.err.decode(errors='replace')[-3000:]}")

    async def wait(self, timeout: float = TIMEOUT) -> int | None:
        timer = reactor.callLater(timeout, self.send, "KILL")
        await self.ended
        if not timer.active():
            raise AssertionError(f"child killed after {timeout} s\n{self.report()}")
        timer.cancel()
        return self.status


@pytest_twisted.async_yield_fixture(params=["python -m", "twistd -n"])
async def served(request: Any) -> AsyncIterator[tuple[Child, str]]:
    """The demo with ``--http-port tcp:0``; yields the child and the page's URL."""
    argv = PYTHON_M if request.param == "python -m" else TWISTD
    argv = [*argv, "--demo", "--http-port", "tcp:0", "--duration", str(TIMEOUT)]
    child = Child()
    reactor.spawnProcess(child, argv[0], argv, env=_environ(), path=str(ROOT))
    try:
        deadline = time.monotonic() + 15
        while (match := LIVE.search(child.err)) is None:
            assert time.monotonic() < deadline and not child.ended.called, (
                f"no 'Live tables on' log line\n{child.report()}")
            await sleep(0.05)
        assert match.group(2) == b"127.0.0.1"  # loopback unless an interface is named
        yield child, match.group(1).decode()
        child.send("TERM")
        assert await child.wait() == 0, child.report()
    finally:
        if not child.ended.called:
            child.send("KILL")
            await child.ended


@pytest_twisted.ensureDeferred
async def test_the_demo_serves_page_snapshot_and_events(served: tuple[Child, str]) -> None:
    child, url = served
    response = await treq.get(url, persistent=False)
    assert await response.content() == PAGE

    async def snapshot() -> Any:
        response = await treq.get(url + "snapshot", persistent=False)
        return json.loads(await response.text())

    deadline = time.monotonic() + 10
    while not (snap := await snapshot())["subscriptions"][0]["rows"]:
        assert time.monotonic() < deadline, snap
        await sleep(0.1)
    assert snap["status"].startswith("CONNECTED:")
    assert [s["mode"] for s in snap["subscriptions"]] == ["MERGE", "COMMAND"]

    reader = await SseReader.open(url + "events")
    await reader.wait_for(lambda r: len(r.named("update")) >= 3, what="live updates")
    assert reader.events[0].event == "snapshot"
    # The stream carries the same events as the JSON lines on standard output.
    await wait_until(lambda: child.out.count(b"\n") >= 10)
    lines = [without_ts(json.loads(line)) for line in bytes(child.out).splitlines()]
    streamed = [e.data for e in reader.named("update")]
    assert streamed[0] in lines
    await reader.close()


@pytest_twisted.ensureDeferred
async def test_a_browser_sees_the_demo_live(served: tuple[Child, str], tmp_path: Path) -> None:
    _need_browser()
    _, url = served
    report = await run_browser(url, tmp_path / "relay.png")
    assert report["status"].startswith("CONNECTED:")
    assert len(report["changed"]) >= 3
    assert report["console"] == []


@pytest.mark.parametrize("endpoint", ["tcp:http", "nosuchtype:1", ""])
def test_a_bad_endpoint_is_a_usage_error(endpoint: str) -> None:
    result = subprocess.run(
        [*PYTHON_M, "--demo", "--http-port", endpoint], capture_output=True, text=True,
        env=_environ(), cwd=ROOT, timeout=TIMEOUT, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "--http-port" in line and "Traceback" not in line


@pytest.mark.parametrize("command", [PYTHON_M, TWISTD], ids=["python -m", "twistd -n"])
@pytest.mark.parametrize("source", [["--demo"],
                                    ["--url", "http://127.0.0.1:1", "--subscribe", "RAW a b"]],
                         ids=["demo", "url"])
@pytest_twisted.ensureDeferred
async def test_a_port_in_use_ends_with_status_1(command: list[str], source: list[str]) -> None:
    busy = reactor.listenTCP(0, _Nothing(), interface="127.0.0.1")
    try:
        argv = [*command, *source, "--http-port", f"tcp:{busy.getHost().port}"]
        child = Child()
        reactor.spawnProcess(child, argv[0], argv, env=_environ(), path=str(ROOT))
        assert await child.wait() == 1, child.report()
        assert b"Cannot serve --http-port" in child.err
        errors = [line for line in child.err.splitlines() if b"#error]" in line]
        assert len(errors) == 1 and b"Address already in use" in errors[0], child.report()
        assert b"Traceback" not in child.err and b"Could not start" not in child.err
    finally:
        await busy.stopListening()


class _Nothing:
    """A factory that refuses every connection (only holds the port)."""

    noisy = False

    def doStart(self) -> None:  # noqa: N802
        pass

    def doStop(self) -> None:  # noqa: N802
        pass

    def buildProtocol(self, addr: object) -> None:  # noqa: N802
        return None
