"""
User numbers that go on the wire are checked before anything is sent (review, third
round): a connection option the server cannot take is a ValueError naming it, not a
CONERR 65 taken for a refusal of TLCP 2.5.0, nor a polling session stuck on an overflow;
a message's delay_timeout that is not a finite number takes no progressive.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from txlightstreamer import Table
from txlightstreamer.testing import TlcpServer

from .memory import MemoryNetwork


def _net() -> tuple[TlcpServer, MemoryNetwork]:
    clock = Clock()
    server = TlcpServer(clock=clock, keepalive_millis=1000)
    net = MemoryNetwork(clock)
    net.serve_tlcp(server)
    return server, net


@pytest.mark.parametrize("kwargs", [
    {"keepalive_millis": -1000}, {"keepalive_millis": 1500.5},
    {"keepalive_millis": float("nan")}, {"keepalive_millis": True},
    {"content_length": -1}, {"content_length": 0}, {"content_length": float("inf")},
    {"idle_timeout": -1.0}, {"idle_timeout": float("inf")},
    {"polling_interval": -1.0}, {"polling_interval": float("nan")},
    {"reverse_heartbeat_interval": float("inf")}, {"retry_delay": float("nan")},
    {"stalled_timeout": -2.0},
])
def test_connection_options_the_server_cannot_take_are_refused_at_once(
        kwargs: dict[str, Any]) -> None:
    server, net = _net()
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        net.client(**kwargs)
    assert not server.sessions


def test_a_create_refused_in_240_too_puts_the_version_back() -> None:
    # A CONERR 65 to a 2.5.0 create is taken for an old server's refusal of the version
    # (tlcp.md §9.1); refused with 65 in 2.4.0 too, the version was not the problem.
    server, net = _net()
    server.faults.conerr_next(65, "LS_something is not valid", count=2)
    client = net.client(forced_transport="HTTP-STREAMING", retry_delay=0.5)
    failures: list[Any] = []
    client.create_session().addErrback(failures.append)
    net.advance(5)
    assert failures and "65" in str(failures[0].value)
    assert client.protocol_version == "2.5.0"


def test_a_fall_back_that_works_stays() -> None:
    server, net = _net()
    server.faults.conerr_next(65, "unsupported protocol")
    client = net.client(forced_transport="HTTP-STREAMING", retry_delay=0.5)
    net.wait(client.create_session())
    assert client.protocol_version == "2.4.0"


def test_an_infinite_idle_timeout_never_reaches_a_polling_session() -> None:
    server, net = _net()
    with pytest.raises(ValueError, match="idle_timeout"):
        net.client(forced_transport="HTTP-POLLING", idle_timeout=float("inf"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_a_bad_delay_timeout_is_refused_and_takes_no_progressive(bad: float) -> None:
    server, net = _net()
    client = net.client(forced_transport="WS-STREAMING", retry_delay=0.5)
    net.wait(client.create_session())
    with pytest.raises(ValueError, match="delay_timeout"):
        client.send_message("a", sequence="S", delay_timeout=bad)
    client.send_message("b", sequence="S")
    net.advance(5)
    [session] = server.sessions.values()
    assert session.messages == [("S", 1, "b")]


def test_a_table_still_works_with_checked_options() -> None:
    server, net = _net()
    client = net.client(forced_transport="HTTP-POLLING", idle_timeout=2.5,
                        polling_interval=0.5, keepalive_millis=0, content_length=1)
    net.wait(client.create_session())
    table = Table(client, item_ids=["item1"], schema=["f1"])
    net.wait(table.when_subscribed())
    assert table.state == "active"
