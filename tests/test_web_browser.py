"""
A real browser on the live page: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven with Selenium) opens the page of a relay fed by the demo
server, as ``--demo --http-port`` runs it, and the table cells must change over time.

Selenium blocks, so it runs in its own process (tests/web_browser_driver.py) while this
test's reactor keeps serving the page. The screenshot goes to a temporary directory, or
to docs/relay.png with TXLS_UPDATE_SCREENSHOT=1. Without Chromium the test is skipped,
unless TXLS_REQUIRE_BROWSER=1 (CI) makes that a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from txlightstreamer import LsClient
from txlightstreamer.cli import demo_subscriptions
from txlightstreamer.testing import TlcpServer
from txlightstreamer.testing.demo import DemoFeed
from txlightstreamer.web import Relay

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "web_browser_driver.py"
SCREENSHOT = HERE.parent / "docs" / "relay.png"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: The browser run's own budget, and the hard limit after which the test kills it.
BUDGET = 60
HARD_LIMIT = 120


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return (f"{path} is missing: apt-get install -y chromium chromium-driver "
                    f"(Debian package {package})")
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (it comes with pip install '.[test]')"
    return None


def _need_browser() -> None:
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("TXLS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"TXLS_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


class _Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.ended: Deferred[int | None] = Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.out += data

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.err += data[-100_000:]

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        code = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        self.ended.callback(code)


async def run_browser(url: str, screenshot: Path) -> dict[str, Any]:
    """Run the driver script in a child process without blocking the reactor."""
    proto = _Collect()
    process = reactor.spawnProcess(
        proto, sys.executable,
        [sys.executable, str(DRIVER), url, str(screenshot), "--budget", str(BUDGET)],
        env=dict(os.environ), path=str(HERE.parent))
    killer = reactor.callLater(HARD_LIMIT, _kill, process)
    try:
        code = await proto.ended
    finally:
        if killer.active():
            killer.cancel()
    stderr = proto.err.decode("utf-8", "replace")[-3000:]
    lines = proto.out.decode("utf-8", "replace").strip().splitlines()
    assert lines, f"the browser driver printed nothing (exit {code}); stderr:\n{stderr}"
    report: dict[str, Any] = json.loads(lines[-1])
    assert code == 0 and "error" not in report, f"{report}\nstderr:\n{stderr}"
    return report


def _kill(process: Any) -> None:
    try:
        process.signalProcess("KILL")
    except ProcessExitedAlready:
        pass


@pytest_twisted.async_yield_fixture
async def demo_relay() -> AsyncIterator[tuple[str, Relay]]:
    """What ``--demo --http-port tcp:0`` runs: demo server and feed, client, relay."""
    server = TlcpServer(keepalive_millis=1000)
    await server.listen(reactor, port=0, interface="127.0.0.1")
    feed = DemoFeed(server.data, reactor, interval=0.25)
    feed.start()
    client = LsClient(server.url)
    tables = [spec.table(client) for spec in demo_subscriptions()]
    relay = Relay(client, tables)
    port = await relay.listen(reactor, "tcp:0")
    await client.create_session()
    try:
        yield f"http://127.0.0.1:{port.getHost().port}/", relay
    finally:
        relay.close()
        await client.destroy()
        feed.stop()
        await server.stop()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_chromium_sees_the_cells_change(demo_relay: tuple[str, Relay],
                                             tmp_path: Path) -> None:
    _need_browser()
    url, relay = demo_relay
    screenshot = tmp_path / "relay.png"
    report = await run_browser(url, screenshot)

    assert report["title"] == "txlightstreamer live"
    assert report["status"].startswith("CONNECTED:")
    assert report["relay"] == "relay: live"
    assert report["session"] == f"session {relay.client.session_id}"
    assert report["sections"] == 2  # the demo's stocks (MERGE) and portfolio (COMMAND)
    assert report["cells"] >= 6 * 8 and report["filled_cells"] >= 6 * 8
    # Values changed in place while the page was watched, and changed cells flashed.
    assert len(report["changed"]) >= 3, report["changed"]
    assert {key.split("|")[-1] for key in report["changed"]} & {"last_price", "time"}
    assert report["flashed"] > 0
    assert report["portfolio_rows"] >= 1
    assert report["console"] == []  # no script error, no CSP violation, no failed load
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    if os.environ.get("TXLS_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, SCREENSHOT)
