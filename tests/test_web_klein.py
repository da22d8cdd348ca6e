"""
The Klein example (docs/klein_relay.py, included verbatim by docs/tutorials/klein.rst) runs
as written: a Klein app mounting the relay's resource under /live/ next to its own routes.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor

from tests.web_support import SseReader, wait_until
from txlightstreamer.testing import TlcpServer
from txlightstreamer.web._page import PAGE

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "klein_relay.py"


def load_example() -> ModuleType:
    pytest.importorskip(
        "klein", reason="klein is not installed (it comes with pip install '.[test]')")
    spec = importlib.util.spec_from_file_location("klein_relay_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest_twisted.async_yield_fixture
async def running(capsys: Any) -> AsyncIterator[tuple[Any, str, TlcpServer]]:
    example = load_example()
    server = TlcpServer(keepalive_millis=1000)
    await server.listen(reactor, port=0, interface="127.0.0.1")
    server.data.update("item1", {"stock_name": "Anduct", "last_price": "3.04"})
    server.data.update("item2", {"stock_name": "Ations Europe", "last_price": "15.90"})
    prices, port = await example.serve(reactor, server.url, "tcp:0:interface=127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}"
    assert capsys.readouterr().out == f"live page: {base}/live/\n"
    await prices.stocks.when_subscribed()
    try:
        yield prices, base, server
    finally:
        prices.relay.close()
        await prices.client.destroy()
        await port.stopListening()
        await server.stop()


async def get(url: str, **kwargs: Any) -> Any:
    return await treq.get(url, persistent=False, **kwargs)


@pytest_twisted.ensureDeferred
async def test_the_app_routes_and_the_mounted_relay(
        running: tuple[Any, str, TlcpServer]) -> None:
    prices, base, server = running
    await wait_until(lambda: len(prices.stocks.rows) == 2, what="the snapshot")

    response = await get(base + "/")
    assert "/live/snapshot" in await response.text()
    response = await get(base + "/price/item1")
    assert json.loads(await response.text()) == {"item": "item1", "last_price": "3.04"}
    assert (await get(base + "/price/nope")).code == 404

    response = await get(base + "/live", allow_redirects=False)
    assert response.code in (301, 302, 308)
    assert response.headers.getRawHeaders("location")[0].endswith("/live/")
    response = await get(base + "/live/")
    assert response.code == 200
    assert await response.content() == PAGE

    response = await get(base + "/live/snapshot")
    snap = json.loads(await response.text())
    assert snap["status"].startswith("CONNECTED:")
    assert snap["subscriptions"][0]["rows"] == {
        "item1": {"stock_name": "Anduct", "last_price": "3.04"},
        "item2": {"stock_name": "Ations Europe", "last_price": "15.90"},
    }

    reader = await SseReader.open(base + "/live/events")
    await reader.wait_for(lambda r: r.events)
    assert reader.events[0].event == "snapshot"
    server.data.update("item2", {"last_price": "16.00"})
    await reader.wait_for(lambda r: r.named("update"))
    assert reader.named("update")[0].data == {
        "event": "update", "sub": 0, "item": "item2", "pos": 2,
        "values": {"stock_name": "Ations Europe", "last_price": "16.00"},
        "changed": ["last_price"], "snapshot": False}
    response = await get(base + "/price/item2")
    assert json.loads(await response.text())["last_price"] == "16.00"
    await reader.close()


def test_the_docs_show_the_tested_example() -> None:
    # The Klein tutorial includes this very file, so what users read is what runs here.
    tutorial = (EXAMPLE.parent / "tutorials" / "klein.rst").read_text(encoding="utf-8")
    assert ".. literalinclude:: ../klein_relay.py" in tutorial
    assert "from klein import Klein" in EXAMPLE.read_text(encoding="utf-8")
