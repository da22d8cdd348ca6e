"""
The IG-like profile of the test server (`txlightstreamer.testing.ig`): IG's streaming
conventions enforced (TLCP 2.4.0 only, account id and CST/XST password, IG's items, fields
and modes), our default client reaching it through the 2.4.0 fall-back, the official
clients (2.5.0 only) refused with ``CONERR 65`` as IG refuses them, and the docs' recipe
program run as written.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task, utils
from twisted.python import usage

from txlightstreamer import MODE_DISTINCT, MODE_MERGE, LsClient, Table
from txlightstreamer.errors import ServerError
from txlightstreamer.testing import TlcpServer
from txlightstreamer.testing.demo import DEMO_PROFILES, demo_profile, demo_profile_defaults
from txlightstreamer.testing.ig import (
    ACCOUNT_FIELDS,
    CHART_CANDLE_FIELDS,
    CHART_TICK_FIELDS,
    IG_DEMO_ACCOUNT,
    IG_DEMO_CST,
    IG_DEMO_SUBSCRIPTIONS,
    IG_DEMO_XST,
    IG_EPICS,
    MARKET_FIELDS,
    TRADE_FIELDS,
    IgFeed,
    ig_items,
    ig_password,
    ig_server,
)

from .support import wait_until
from .test_testing_server import CID, Peer, _reactor, add

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "docs" / "ig_stream.py"
EURUSD = "CS.D.EURUSD.MINI.IP"
PASSWORD = ig_password(IG_DEMO_CST, IG_DEMO_XST)
LOGIN = f"&LS_user={IG_DEMO_ACCOUNT}&LS_password=" + PASSWORD.replace("|", "%7C")
REFUSED_25 = "CONERR,65,Unsupported protocol version: 2.5.0"


class Ig:
    """An IG-like server on a `task.Clock` and a TLCP 2.4.0 peer talking to it."""

    def __init__(self, server: TlcpServer, clock: task.Clock) -> None:
        self.server = server
        self.clock = clock
        self.peer = Peer(server, protocol="TLCP-2.4.0")

    async def first_line(self, extra: str, protocol: str = "TLCP-2.4.0") -> str:
        self.peer.protocol = protocol
        try:
            reader = await self.peer.stream("create_session", CID + extra)
            (first,) = await reader.wait_lines(1)
        finally:
            self.peer.protocol = "TLCP-2.4.0"
        return first


@pytest_twisted.async_yield_fixture
async def ig() -> AsyncIterator[Ig]:
    clock = task.Clock()
    server = ig_server(clock=clock)
    await server.listen(_reactor())
    d = Ig(server, clock)
    yield d
    await d.peer.close()
    await server.stop()
    assert clock.getDelayedCalls() == []


# --- the profile's refusals ---------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "extra", "expected"), [
    ("TLCP-2.5.0", LOGIN, REFUSED_25),
    ("TLCP-2.5.0", "&LS_user=nobody&LS_password=wrong", REFUSED_25),  # the version comes first
    ("TLCP-2.4.0", LOGIN, "CONOK,"),
    ("TLCP-2.4.0", LOGIN + "&LS_adapter_set=DEFAULT", "CONOK,"),
    ("TLCP-2.4.0", f"&LS_user={IG_DEMO_ACCOUNT}&LS_password=CST-x%7CXST-y",
     "CONERR,1,User/password check failed"),
    ("TLCP-2.4.0", "&LS_user=XYZ999&LS_password=" + PASSWORD.replace("|", "%7C"),
     "CONERR,1,User/password check failed"),
    ("TLCP-2.4.0", f"&LS_user={IG_DEMO_ACCOUNT}", "CONERR,1,User/password check failed"),
    ("TLCP-2.4.0", "", "CONERR,1,User/password check failed"),
    ("TLCP-2.4.0", LOGIN + "&LS_adapter_set=DEMO", "CONERR,2,Requested Adapter Set not available"),
])
@pytest_twisted.ensureDeferred
async def test_ig_refuses_sessions_as_ig_does(
    ig: Ig, protocol: str, extra: str, expected: str
) -> None:
    first = await ig.first_line(extra, protocol)
    assert first.startswith(expected), first
    assert len(ig.server.sessions) == (1 if expected == "CONOK," else 0)


def test_the_password_is_never_shown() -> None:
    server = ig_server(cst="secret-cst", xst="secret-xst")
    assert "secret" not in repr(server) + repr(vars(server))


@pytest_twisted.ensureDeferred
async def test_ig_refuses_unknown_items_fields_and_modes(ig: Ig) -> None:
    reader, sid = await ig.peer.create(LOGIN)
    market, tick = f"MARKET:{EURUSD}", f"CHART:{EURUSD}:TICK"
    assert await ig.peer.control(
        sid,
        add(1, 1, "MERGE", f"{market} MARKET:NO.SUCH.EPIC", "BID"),
        add(2, 2, "MERGE", "ACCOUNT:XYZ999", "PNL"),  # another account
        add(3, 3, "MERGE", f"CHART:{EURUSD}:2MINUTE", "BID_OPEN"),  # no such scale
        add(4, 4, "MERGE", market, "BID OFR"),  # OFR is a CHART field
        add(5, 5, "MERGE", f"ACCOUNT:{IG_DEMO_ACCOUNT}", "PNL BID"),
        add(6, 6, "DISTINCT", market, "BID"),
        add(7, 7, "MERGE", tick, "BID"),
        add(8, 8, "MERGE", f"TRADE:{IG_DEMO_ACCOUNT}", "CONFIRMS"),
        add(9, 9, "MERGE", f"{market} {tick}", "BID"),  # one type of item per subscription
        add(10, 10, "MERGE", market, " ".join(MARKET_FIELDS)),
        add(11, 11, "DISTINCT", tick, " ".join(CHART_TICK_FIELDS)),
        add(12, 12, "MERGE", f"CHART:{EURUSD}:1MINUTE", " ".join(CHART_CANDLE_FIELDS)),
        add(13, 13, "MERGE", f"ACCOUNT:{IG_DEMO_ACCOUNT}", " ".join(ACCOUNT_FIELDS)),
        add(14, 14, "DISTINCT", f"TRADE:{IG_DEMO_ACCOUNT}", " ".join(TRADE_FIELDS)),
    ) == [
        "REQERR,1,21,Bad item group name",
        "REQERR,2,21,Bad item group name",
        "REQERR,3,21,Bad item group name",
        "REQERR,4,23,Bad field schema name",
        "REQERR,5,23,Bad field schema name",
        "REQERR,6,24,Subscription mode not allowed for an item",
        "REQERR,7,24,Subscription mode not allowed for an item",
        "REQERR,8,24,Subscription mode not allowed for an item",
        "REQERR,9,24,Subscription mode not allowed for an item",
        "REQOK,10",
        "REQOK,11",
        "REQOK,12",
        "REQOK,13",
        "REQOK,14",
    ]
    assert sorted(ig.server.sessions[sid].subscriptions) == [10, 11, 12, 13, 14]


def test_every_documented_item_is_served_in_its_mode() -> None:
    items = ig_items("ACC1", ["E.1"])
    assert items == {
        "MARKET:E.1": ("MERGE", MARKET_FIELDS),
        "CHART:E.1:TICK": ("DISTINCT", CHART_TICK_FIELDS),
        **{f"CHART:E.1:{scale}": ("MERGE", CHART_CANDLE_FIELDS)
           for scale in ("SECOND", "1MINUTE", "5MINUTE", "HOUR")},
        "ACCOUNT:ACC1": ("MERGE", ACCOUNT_FIELDS),
        "TRADE:ACC1": ("DISTINCT", ("CONFIRMS", "OPU", "WOU")),
    }
    for fields, documented in [
        (MARKET_FIELDS, "BID OFFER HIGH LOW MID_OPEN CHANGE CHANGE_PCT MARKET_DELAY "
                        "MARKET_STATE UPDATE_TIME"),
        (CHART_TICK_FIELDS, "BID OFR LTP LTV TTV UTM DAY_OPEN_MID DAY_NET_CHG_MID "
                            "DAY_PERC_CHG_MID DAY_HIGH DAY_LOW"),
        (ACCOUNT_FIELDS, "PNL DEPOSIT AVAILABLE_CASH FUNDS MARGIN EQUITY"),
    ]:
        assert set(documented.split()) <= set(fields)


# --- the feed, on the injected clock ---------------------------------------------------------


def _fed(ticks: int, seed: int = 1) -> tuple[TlcpServer, IgFeed, task.Clock]:
    clock = task.Clock()
    clock.advance(1_764_345_600)  # 2025-11-28 16:00:00 UTC
    server = ig_server(clock=clock)
    feed = IgFeed(server.data, clock, seed=seed)
    feed.start()
    for _ in range(ticks):
        clock.advance(feed.interval)
    return server, feed, clock


def test_the_feed_is_plausible_and_runs_on_the_clock() -> None:
    server, feed, clock = _fed(48)
    data = server.data
    assert feed.ticks == 48
    for epic, (mid, *_) in IG_EPICS.items():
        state = data.state(f"MARKET:{epic}")
        bid, offer = float(state["BID"] or 0), float(state["OFFER"] or 0)
        assert 0 < bid < offer and abs(bid - mid) / mid < 0.05, (epic, state)
        assert state["MARKET_STATE"] == "TRADEABLE" and state["MARKET_DELAY"] == "0"
        assert float(state["LOW"] or 0) <= (bid + offer) / 2 <= float(state["HIGH"] or 0)
        assert state["UPDATE_TIME"] is not None and len(state["UPDATE_TIME"]) == 8
    ticks = data.history(f"CHART:{EURUSD}:TICK")
    assert len(ticks) > 10 and all(row["UTM"] for row in ticks)
    assert [int(row["UTM"] or 0) for row in ticks] == sorted(int(r["UTM"] or 0) for r in ticks)
    # Deals: CONFIRMS then OPU or WOU, each event one field.
    trades = data.history(f"TRADE:{IG_DEMO_ACCOUNT}")
    assert feed.deals == 12 and len(trades) == 2 * 12
    kinds = [next(name for name in TRADE_FIELDS if row[name] is not None) for row in trades]
    assert kinds[:8] == ["CONFIRMS", "OPU", "CONFIRMS", "WOU", "CONFIRMS", "OPU", "CONFIRMS",
                         "WOU"]
    confirms = [json.loads(row["CONFIRMS"] or "") for row in trades if row["CONFIRMS"]]
    assert [c["status"] for c in confirms[:4]] == ["OPEN", "OPEN", "CLOSED", "DELETED"]
    assert confirms[2]["affectedDeals"] == [{"dealId": confirms[0]["dealId"],
                                             "status": "FULLY_CLOSED"}]
    account = data.state(f"ACCOUNT:{IG_DEMO_ACCOUNT}")
    assert float(account["EQUITY"] or 0) == pytest.approx(
        float(account["FUNDS"] or 0) + float(account["PNL"] or 0), abs=0.011)
    feed.stop()
    assert clock.getDelayedCalls() == []


def test_candles_close_and_open_on_the_clock() -> None:
    clock = task.Clock()
    clock.advance(1_764_345_600)
    server = ig_server(clock=clock)
    feed = IgFeed(server.data, clock, interval=0.25, seed=3)
    seen: list[dict[str, Any]] = []

    class Listener:
        def item_updated(self, item: str, state: Any, changed: Any) -> None:
            seen.append(dict(state))

        def item_command(self, item: str, row: Any) -> None:
            raise AssertionError(item)

        def item_cleared(self, item: str) -> None:
            raise AssertionError(item)

        def item_overflow(self, item: str, lost: int) -> None:
            raise AssertionError(item)

    for epic in IG_EPICS:
        server.data.add_listener(f"CHART:{epic}:SECOND", Listener())
    feed.start()
    for _ in range(40):
        clock.advance(0.25)
    feed.stop()
    ended = [row for row in seen if row["CONS_END"] == "1"]
    assert ended, "no one-second candle closed in ten seconds"
    for row in seen:
        assert float(row["BID_LOW"]) <= float(row["BID_CLOSE"]) <= float(row["BID_HIGH"])
        assert float(row["BID_LOW"]) <= float(row["BID_OPEN"]) <= float(row["BID_HIGH"])
        assert int(row["UTM"]) % 1000 == 0  # a candle is stamped with its start
        assert row["LTP_CLOSE"] is None  # not exchange-traded
    assert clock.getDelayedCalls() == []


def test_the_feed_is_deterministic() -> None:
    first, _, _ = _fed(30, seed=7)
    second, _, _ = _fed(30, seed=7)
    for item in ig_items(IG_DEMO_ACCOUNT):
        assert first.data.state(item) == second.data.state(item)
        assert first.data.history(item) == second.data.history(item)


# --- our client: the 2.4.0 fall-back, with no option set ---------------------------------------


@pytest_twisted.async_yield_fixture
async def live() -> AsyncIterator[TlcpServer]:
    reactor = _reactor()
    server = ig_server(clock=reactor, keepalive_millis=1000)
    await server.listen(reactor)
    feed = IgFeed(server.data, reactor, interval=0.02, deal_every=2)
    feed.start()
    yield server
    feed.stop()
    await server.stop()


@pytest.mark.parametrize("forced_transport", [None, "HTTP-STREAMING"])
@pytest_twisted.ensureDeferred
async def test_our_default_client_streams_from_ig_through_the_fallback(
    live: TlcpServer, forced_transport: str | None
) -> None:
    assert live.url is not None
    reactor = _reactor()
    client = LsClient(live.url, reactor=reactor, forced_transport=forced_transport)
    reasons: list[str] = []
    client.on_status(lambda status, reason: reasons.append(str(reason)))
    market = Table(client, mode=MODE_MERGE, item_ids=[f"MARKET:{EURUSD}"],
                   schema=["BID", "OFFER", "UPDATE_TIME"], snapshot=True)
    account = Table(client, mode=MODE_MERGE, item_ids=[f"ACCOUNT:{IG_DEMO_ACCOUNT}"],
                    schema=["PNL", "EQUITY"], snapshot=True)
    trade = Table(client, mode=MODE_DISTINCT, item_ids=[f"TRADE:{IG_DEMO_ACCOUNT}"],
                  schema=list(TRADE_FIELDS))
    rows: dict[str, list[Any]] = {"market": [], "account": [], "trade": []}
    market.on_update(lambda pos, row: rows["market"].append(row))
    account.on_update(lambda pos, row: rows["account"].append(row))
    trade.on_update(lambda pos, row: rows["trade"].append(row))
    try:
        await client.create_session(username=IG_DEMO_ACCOUNT, password=PASSWORD)
        await wait_until(lambda: all(len(r) >= 3 for r in rows.values()), timeout=10)
        ((session),) = live.sessions.values()
        assert session.protocol == "TLCP-2.4.0"
        assert session.user == IG_DEMO_ACCOUNT
        assert any("retrying with TLCP 2.4.0" in reason for reason in reasons), reasons
        assert all(row[0] and row[1] and float(row[0]) < float(row[1])
                   for row in rows["market"])
        deals = [json.loads(row[0]) for row in rows["trade"] if row[0] is not None]
        assert deals and all(deal["dealStatus"] == "ACCEPTED" for deal in deals)
    finally:
        await client.destroy()


@pytest_twisted.ensureDeferred
async def test_without_the_fallback_ig_refuses_our_client(live: TlcpServer) -> None:
    assert live.url is not None
    client = LsClient(live.url, reactor=_reactor(), protocol_fallback=False)
    with pytest.raises(ServerError) as caught:
        await client.create_session(username=IG_DEMO_ACCOUNT, password=PASSWORD)
    assert caught.value.code == 65
    await client.destroy()


@pytest_twisted.ensureDeferred
async def test_a_bad_password_is_refused_and_never_shown(live: TlcpServer) -> None:
    assert live.url is not None
    client = LsClient(live.url, reactor=_reactor())
    with pytest.raises(ServerError) as caught:
        await client.create_session(username=IG_DEMO_ACCOUNT, password="CST-bad|XST-secret")
    assert caught.value.code == 1
    assert "secret" not in str(caught.value) + repr(caught.value)
    await client.destroy()


# --- the official clients speak 2.5.0 only: IG's problem, reproduced ----------------------------


def _peer_result(stderr: str) -> dict[str, Any]:
    """The partial result a peer prints on stderr when it stops on a server error."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise AssertionError(f"no result in the peer's stderr:\n{stderr[-2000:]}")


_SPEC = {
    "subscriptions": [{"mode": "MERGE", "items": [f"MARKET:{EURUSD}"],
                       "fields": ["BID", "OFFER"], "snapshot": True}],
    "expect_updates": 1,
    "timeout": 10,
}


@pytest_twisted.ensureDeferred
async def test_the_official_python_sdk_is_refused_with_conerr_65(live: TlcpServer) -> None:
    pytest.importorskip("lightstreamer.client")
    from .test_official_sdk import SdkPeerError, run_sdk_peer

    assert live.url is not None
    with pytest.raises(SdkPeerError) as caught:
        await run_sdk_peer(live.url, _SPEC)
    result = _peer_result(str(caught.value))
    assert result["server_errors"] == [[65, "Unsupported protocol version: 2.5.0"]]
    assert result["updates"] == 0 and not live.sessions


@pytest.mark.parametrize("transport", ["WS-STREAMING", "HTTP-STREAMING"])
@pytest_twisted.ensureDeferred
async def test_the_official_node_client_is_refused_with_conerr_65(
    live: TlcpServer, transport: str
) -> None:
    from .node_oracle import NodePeerError, run_node_peer

    assert live.url is not None
    with pytest.raises(NodePeerError) as caught:
        await run_node_peer(live.url, {**_SPEC, "transport": transport})
    result = _peer_result(str(caught.value))
    assert result["server_errors"] == [[65, "Unsupported protocol version: 2.5.0"]]
    assert result["updates"] == 0 and not live.sessions


# --- the docs' recipe, as written -----------------------------------------------------------


def test_the_recipe_page_shows_the_tested_program() -> None:
    text = (ROOT / "docs" / "howto" / "ig.rst").read_text(encoding="utf-8")
    assert ".. literalinclude:: ../ig_stream.py" in text
    assert "twistd -n --pidfile= lightstreamer --demo-profile ig" in text


@pytest_twisted.ensureDeferred
async def test_the_recipe_program_runs_as_written(live: TlcpServer) -> None:
    assert live.url is not None
    env = dict(os.environ, IG_CST=IG_DEMO_CST, IG_XST=IG_DEMO_XST)
    out, err, code = await utils.getProcessOutputAndValue(
        sys.executable, [str(RECIPE), live.url, IG_DEMO_ACCOUNT], env=env,
        reactor=_reactor())
    text = out.decode("utf-8")
    assert code == 0, err.decode("utf-8", "replace")[-3000:]
    assert "retrying with TLCP 2.4.0" in text
    lines = [line for line in text.splitlines() if not line.startswith("status")]
    assert len(lines) == 20
    assert any(line.startswith(EURUSD + " {'BID': ") for line in lines), text
    assert any(line.startswith("ACCOUNT {'PNL': ") for line in lines), text
    assert not live.sessions  # destroyed


# --- the command line: --demo-profile ig -------------------------------------------------------


def test_demo_profiles() -> None:
    assert DEMO_PROFILES == ("default", "ig")
    clock = task.Clock()
    server, feed = demo_profile("ig", clock)
    assert isinstance(feed, IgFeed) and server.protocols == {"TLCP-2.4.0"}
    server, _ = demo_profile(None, clock)
    assert server.protocols == {"TLCP-2.5.0", "TLCP-2.4.0"}
    assert demo_profile_defaults("default") == (None, None, ())
    assert demo_profile_defaults("ig") == (IG_DEMO_ACCOUNT, PASSWORD, IG_DEMO_SUBSCRIPTIONS)
    with pytest.raises(ValueError, match="unknown demo profile"):
        demo_profile("nope", clock)
    assert clock.getDelayedCalls() == []


def test_the_cli_option() -> None:
    from txlightstreamer.cli import Options

    options = Options(environ={})
    options.parseOptions(["--demo-profile", "ig"])
    assert options["demo"] and options["user"] == IG_DEMO_ACCOUNT
    assert options.password == PASSWORD
    specs = options["subscribe"]
    assert [spec.mode for spec in specs] == ["MERGE", "MERGE", "DISTINCT"]
    assert specs[1].items == (f"ACCOUNT:{IG_DEMO_ACCOUNT}",)
    assert PASSWORD not in repr(dict(options))
    options = Options(environ={"LS_PASSWORD": "CST-a|XST-b"})
    options.parseOptions(["--demo-profile", "ig", "--user", "ME", "--subscribe",
                          f"MERGE MARKET:{EURUSD} BID"])
    assert (options["user"], options.password) == ("ME", "CST-a|XST-b")
    assert [spec.items for spec in options["subscribe"]] == [(f"MARKET:{EURUSD}",)]
    with pytest.raises(usage.UsageError, match="bad --demo-profile"):
        Options(environ={}).parseOptions(["--demo-profile", "nope"])
    with pytest.raises(usage.UsageError, match="--demo runs its own server"):
        Options(environ={}).parseOptions(["--demo-profile", "ig", "--url", "http://x"])

