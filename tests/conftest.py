"""Shared pytest configuration."""

import os
from collections.abc import AsyncIterator

import pytest_twisted
from hypothesis import HealthCheck, settings

import txlightstreamer
from txlightstreamer.protocol import HOTPATH_COMPILED
from txlightstreamer.testing import TlcpServer

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[TlcpServer]:
    """A `TlcpServer` on 127.0.0.1 (port 0), stopped after the test."""
    # Imported here: pytest-twisted installs the chosen reactor after conftest loads.
    from twisted.internet import reactor

    srv = TlcpServer(keepalive_millis=1000)
    await srv.listen(reactor, port=0, interface="127.0.0.1")
    yield srv
    await srv.stop()


def pytest_report_header() -> str:
    """Which txlightstreamer the suite runs: the installed one (importlib import mode)."""
    build = "compiled (mypyc)" if HOTPATH_COMPILED else "Python"
    where = os.path.dirname(txlightstreamer.__file__)
    return f"txlightstreamer {txlightstreamer.__version__} from {where}, hot path: {build}"
