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
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from txlightstreamer import MODE_DISTINCT, LsClient, Table
from txlightstreamer.cli import demo_subscriptions
from txlightstreamer.testing import TlcpServer
from txlightstreamer.testing.demo import DemoFeed
from txlightstreamer.web import Relay

from .support import wait_until

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
    def __init__(self, on_down: Any = None) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.ended: Deferred[int | None] = Deferred()
        self._on_down = on_down

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.out += data
        if self._on_down is not None and b"DOWN?" in self.out:
            on_down, self._on_down = self._on_down, None
            on_down()

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.err += data[-100_000:]

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        code = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        self.ended.callback(code)


async def run_browser(url: str, screenshot: Path, *extra: str,
                      on_down: Any = None) -> dict[str, Any]:
    """Run the driver script in a child process without blocking the reactor."""
    proto = _Collect(on_down)
    process = reactor.spawnProcess(
        proto, sys.executable,
        [sys.executable, str(DRIVER), url, str(screenshot), "--budget", str(BUDGET), *extra],
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


@pytest_twisted.ensureDeferred
async def test_the_page_for_a_new_user(tmp_path: Path) -> None:
    """
    Issue 19: a DISTINCT table lists its recent events, rows grey out while the upstream
    is down, dark mode is readable, 420 px wide works (tables scroll in their box).
    Screenshots go to docs/ with TXLS_UPDATE_SCREENSHOT=1.
    """
    _need_browser()
    from twisted.internet import task

    server = TlcpServer(keepalive_millis=1000)
    await server.listen(reactor, port=0, interface="127.0.0.1")
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        server.data.update("EURUSD", {"bid": f"1.{800 + count % 50:04d}",
                                      "ask": f"1.{802 + count % 50:04d}", "time": str(count),
                                      "venue": "a rather long venue name to be scrolled"})
        server.data.update("news", {"headline": f"headline number {count}",
                                    "source": "wire"})

    ticker = task.LoopingCall(tick)
    ticker.clock = reactor
    ticker.start(0.2)
    client = LsClient(server.url, retry_delay=1.0)
    tables = [Table(client, mode="MERGE", item_ids=["EURUSD"],
                    schema=["bid", "ask", "time", "venue"]),
              Table(client, mode="DISTINCT", item_ids=["news"], schema=["headline", "source"])]
    relay = Relay(client, tables)
    port = await relay.listen(reactor, "tcp:0")
    await client.create_session()

    async def cut() -> None:
        ticker.stop()
        await server.stop()

    outdir = HERE.parent / "docs" if os.environ.get("TXLS_UPDATE_SCREENSHOT") == "1" \
        else tmp_path
    try:
        report = await run_browser(f"http://127.0.0.1:{port.getHost().port}/", outdir,
                                   "--first-hour", on_down=lambda: ensureDeferred(cut()))
    finally:
        relay.close()
        await client.destroy()
        if ticker.running:
            ticker.stop()
            await server.stop()
        await port.stopListening()
    normal, dark, narrow, down = (report[k] for k in ("normal", "dark", "narrow", "down"))
    assert normal["distinct_rows"] >= 5  # not only the latest row
    values = normal["distinct_values"]
    assert len(set(values)) == len(values) and values[0] > values[-1] or len(values) > 1
    assert not normal["stale"] and normal["row_opacity"] == 1
    assert down["stale"] and down["row_opacity"] < 0.6
    assert dark["background"] != normal["background"] and dark["color"] != normal["color"]
    assert dark["background"] == "rgb(13, 17, 23)" and dark["color"] == "rgb(230, 237, 243)"
    assert not narrow["page_overflows"] and narrow["box_scrolls"]
    assert report["console"] == []
    for name in ("normal", "dark", "420px", "upstream-down"):
        assert (outdir / f"relay-{name}.png").read_bytes().startswith(b"\x89PNG")


@pytest_twisted.ensureDeferred
async def test_a_distinct_table_shows_its_recent_events_on_load(tmp_path: Path) -> None:
    # The tutorial: "A DISTINCT table lists its 20 most recent events, newest first"; on
    # load (and after a gap) it showed the last event of each item only.
    _need_browser()
    server = TlcpServer()
    await server.listen(reactor, port=0, interface="127.0.0.1")
    client = LsClient(server.url)
    news = Table(client, mode=MODE_DISTINCT, item_ids=["news"], schema=["headline"])
    relay = Relay(client, [news], clock=reactor)
    port = await relay.listen(reactor, "tcp:0")
    try:
        await client.create_session()
        await news.when_subscribed()
        for i in range(5):
            server.data.update("news", {"headline": f"h{i}"})
        await wait_until(lambda: len(relay.snapshot()["subscriptions"][0]["recent"]) == 5)
        report = await run_browser(f"http://127.0.0.1:{port.getHost().port}/",
                                   tmp_path / "unused.png", "--rows")
        assert report["rows"] == ["h4", "h3", "h2", "h1", "h0"]
    finally:
        relay.close()
        await client.destroy()
        await port.stopListening()
        await server.stop()
