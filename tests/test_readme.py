"""
The Python examples in README.rst (and those of the docs that grew out of it: asyncio and
testing) run as written, against the test server. tests/test_docs.py runs every other
example of the docs.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from txlightstreamer.testing import TlcpServer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"
SOURCES = [README, *sorted((ROOT / "docs").rglob("*.rst"))]


def python_blocks() -> list[str]:
    """The bodies of every ``.. code-block:: python`` in the README and docs, dedented."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in SOURCES)
    blocks = []
    for match in re.finditer(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text):
        lines = [line[4:] if line.startswith("    ") else line
                 for line in match.group(1).splitlines()]
        blocks.append("\n".join(lines))
    return blocks


def block_defining(name: str) -> dict[str, Any]:
    for code in python_blocks():
        if re.search(rf"^(async )?def {name}\(", code, re.M):
            namespace: dict[str, Any] = {"__name__": "readme_example"}
            exec(compile(code, str(README), "exec"), namespace)  # noqa: S102
            return namespace
    raise AssertionError(f"neither README nor docs has an example defining {name}")


@pytest_twisted.async_yield_fixture
async def demo_server() -> Any:
    server = TlcpServer(keepalive_millis=1000)
    await server.listen(reactor, port=0, interface="127.0.0.1")
    server.data.update("item1", {"stock_name": "Anduct", "last_price": "3.04"})
    server.data.update("item2", {"stock_name": "Ations Europe", "last_price": "15.9"})
    yield server
    await server.stop()


def test_readme_has_the_two_setup_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "$ pip install . && twistd -n --pidfile= lightstreamer --demo" in text
    assert "$ pip install '.[test]' && pytest" in text


def test_readme_example_destroys_its_session_on_ctrl_c() -> None:
    code = block_defining("main")["main"].__code__
    names = set(code.co_names)
    assert {"addSystemEventTrigger", "removeSystemEventTrigger"} <= names


@pytest_twisted.ensureDeferred
async def test_twisted_example_runs(demo_server: TlcpServer, capsys: Any) -> None:
    namespace = block_defining("main")
    await namespace["main"](reactor, demo_server.url, 0.3)
    out = capsys.readouterr().out
    assert "session S" in out
    assert "1 ('Anduct', '3.04')" in out


@pytest_twisted.ensureDeferred
async def test_asyncio_example_runs(demo_server: TlcpServer, capsys: Any) -> None:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        pytest.skip("the asyncio example needs --reactor=asyncio")
    codes = [c for c in python_blocks() if "asyncio.get_running_loop()" in c]
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(codes[0], str(README), "exec"), namespace)  # noqa: S102

    async def publish() -> None:
        for i in range(6):
            await asyncio.sleep(0.05)
            demo_server.data.update("item1", {"last_price": f"3.{i}"})

    feeder = asyncio.ensure_future(publish())
    await defer.Deferred.fromFuture(asyncio.ensure_future(namespace["main"](demo_server.url)))
    await defer.Deferred.fromFuture(feeder)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "item1 3.04"
    assert len(lines) == 5


@pytest_twisted.ensureDeferred
async def test_testing_example_runs() -> None:
    namespace = block_defining("test_price_feed")
    await namespace["test_price_feed"]()


def test_metadata_names_the_project_urls_and_the_console_script() -> None:
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    urls = dict(line.split(" = ", 1) for line in
                config["metadata"]["project_urls"].strip().splitlines())
    assert set(urls) == {"Documentation", "Source", "Changelog"}
    assert urls["Changelog"].endswith("/CHANGES.rst") and urls["Documentation"].endswith("/docs")
    assert "txlightstreamer = txlightstreamer.__main__:main" in \
        config["options.entry_points"]["console_scripts"]
    assert "$ txlightstreamer --demo" in README.read_text(encoding="utf-8")
