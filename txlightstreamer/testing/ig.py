"""An IG-like profile of the test server: IG Markets' streaming conventions, emulated.

This is **not IG** and never talks to IG. It is a :class:`TlcpServer` that follows the
conventions IG documents for its Lightstreamer streaming API (labs.ig.com, "Streaming API
guide" and "Streaming API reference"), so that code written for IG runs, and can be
tested, without an IG account:

* TLCP 2.4.0 only: a session asked in TLCP 2.5.0 is refused with
  ``CONERR,65,Unsupported protocol version: 2.5.0``, what IG's servers answered the
  official 2.5.0 clients (reports from 2023 to 2025);
* the user is the account id, the password ``CST-<cst>|XST-<xst>`` (else ``CONERR,1``);
* the ``DEFAULT`` adapter set only (IG's own libraries name none; others ``CONERR,2``);
* items ``MARKET:<epic>`` (MERGE), ``CHART:<epic>:TICK`` (DISTINCT),
  ``CHART:<epic>:<SECOND|1MINUTE|5MINUTE|HOUR>`` (MERGE candles), ``ACCOUNT:<account id>``
  (MERGE) and ``TRADE:<account id>`` (DISTINCT, JSON texts), with IG's field names. Another
  item is ``REQERR`` 21, another field 23, another mode 24.

:class:`IgFeed` makes it live: prices tick, candles form and close, deals open and close
and the account follows them, all on the injected clock and a seeded random generator.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Mapping
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ._adapter import DataModel
from ._server import TlcpServer
from ._ticker import TickingFeed

__all__ = [
    "ACCOUNT_FIELDS",
    "CHART_CANDLE_FIELDS",
    "CHART_SCALES",
    "CHART_TICK_FIELDS",
    "IG_DEMO_ACCOUNT",
    "IG_DEMO_CST",
    "IG_DEMO_SUBSCRIPTIONS",
    "IG_DEMO_XST",
    "IG_EPICS",
    "MARKET_FIELDS",
    "TRADE_FIELDS",
    "IgFeed",
    "ig_data",
    "ig_items",
    "ig_password",
    "ig_server",
]

#: ``MARKET:<epic>`` fields (MERGE).
MARKET_FIELDS: tuple[str, ...] = (
    "BID", "OFFER", "HIGH", "LOW", "MID_OPEN", "CHANGE", "CHANGE_PCT", "MARKET_DELAY",
    "MARKET_STATE", "UPDATE_TIME", "STRIKE_PRICE", "ODDS",
)
#: ``CHART:<epic>:TICK`` fields (DISTINCT).
CHART_TICK_FIELDS: tuple[str, ...] = (
    "BID", "OFR", "LTP", "LTV", "TTV", "UTM", "DAY_OPEN_MID", "DAY_NET_CHG_MID",
    "DAY_PERC_CHG_MID", "DAY_HIGH", "DAY_LOW",
)
#: ``CHART:<epic>:<scale>`` candle fields (MERGE).
CHART_CANDLE_FIELDS: tuple[str, ...] = (
    "LTV", "TTV", "UTM", "DAY_OPEN_MID", "DAY_NET_CHG_MID", "DAY_PERC_CHG_MID", "DAY_HIGH",
    "DAY_LOW", "OFR_OPEN", "OFR_HIGH", "OFR_LOW", "OFR_CLOSE", "BID_OPEN", "BID_HIGH",
    "BID_LOW", "BID_CLOSE", "LTP_OPEN", "LTP_HIGH", "LTP_LOW", "LTP_CLOSE", "CONS_END",
    "CONS_TICK_COUNT",
)
#: Candle scales of ``CHART:<epic>:<scale>`` and their length in seconds.
CHART_SCALES: dict[str, int] = {"SECOND": 1, "1MINUTE": 60, "5MINUTE": 300, "HOUR": 3600}
#: ``ACCOUNT:<account id>`` fields (MERGE).
ACCOUNT_FIELDS: tuple[str, ...] = (
    "PNL", "DEPOSIT", "AVAILABLE_CASH", "PNL_LR", "PNL_NLR", "FUNDS", "MARGIN", "MARGIN_LR",
    "MARGIN_NLR", "AVAILABLE_TO_DEAL", "EQUITY", "EQUITY_USED",
)
#: ``TRADE:<account id>`` fields (DISTINCT): deal confirmations, open position and working
#: order updates, each a JSON text.
TRADE_FIELDS: tuple[str, ...] = ("CONFIRMS", "OPU", "WOU")

#: The markets served: epic -> (opening mid price, decimals, spread, value of one point).
IG_EPICS: dict[str, tuple[float, int, float, float]] = {
    "CS.D.EURUSD.MINI.IP": (1.08500, 5, 0.00006, 10000.0),
    "CS.D.GBPUSD.TODAY.IP": (1.26500, 5, 0.00009, 10000.0),
    "IX.D.FTSE.DAILY.IP": (7650.0, 1, 1.0, 1.0),
    "IX.D.DAX.DAILY.IP": (15900.0, 1, 1.2, 1.0),
}
#: The demo account and tokens of :func:`ig_server` (not secrets: an emulator's defaults).
IG_DEMO_ACCOUNT = "ABC123"
IG_DEMO_CST = "demo-cst-token"
IG_DEMO_XST = "demo-xst-token"
#: What ``--demo-profile ig`` subscribes to without ``--subscribe`` (``--subscribe`` SPECs).
IG_DEMO_SUBSCRIPTIONS: tuple[str, ...] = (
    "MERGE MARKET:CS.D.EURUSD.MINI.IP,MARKET:IX.D.FTSE.DAILY.IP "
    "BID,OFFER,CHANGE_PCT,MARKET_STATE,UPDATE_TIME snapshot=yes",
    f"MERGE ACCOUNT:{IG_DEMO_ACCOUNT} PNL,FUNDS,MARGIN,EQUITY,AVAILABLE_CASH snapshot=yes",
    f"DISTINCT TRADE:{IG_DEMO_ACCOUNT} CONFIRMS,OPU,WOU",
)

_FUNDS = 10000.0
_MARGIN_RATE = 0.05


def ig_password(cst: str, xst: str) -> str:
    """The streaming password IG documents: ``CST-<cst>|XST-<xst>``."""
    return f"CST-{cst}|XST-{xst}"


def ig_items(
    account_id: str, epics: Iterable[str] = IG_EPICS
) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every item of the profile: name -> (its mode, its fields)."""
    items: dict[str, tuple[str, tuple[str, ...]]] = {}
    for epic in epics:
        items[f"MARKET:{epic}"] = ("MERGE", MARKET_FIELDS)
        items[f"CHART:{epic}:TICK"] = ("DISTINCT", CHART_TICK_FIELDS)
        for scale in CHART_SCALES:
            items[f"CHART:{epic}:{scale}"] = ("MERGE", CHART_CANDLE_FIELDS)
    items[f"ACCOUNT:{account_id}"] = ("MERGE", ACCOUNT_FIELDS)
    items[f"TRADE:{account_id}"] = ("DISTINCT", TRADE_FIELDS)
    return items


def ig_data(
    account_id: str = IG_DEMO_ACCOUNT, epics: Iterable[str] = IG_EPICS, history_size: int = 100
) -> DataModel:
    """A data model that knows only :func:`ig_items` (others refused), each in its mode."""
    items = ig_items(account_id, epics)
    return DataModel(
        strict_items=True,
        items={name: fields for name, (_, fields) in items.items()},
        modes={name: (mode,) for name, (mode, _) in items.items()},
        history_size=history_size,
    )


def ig_server(
    clock: IReactorTime | None = None,
    *,
    account_id: str = IG_DEMO_ACCOUNT,
    cst: str = IG_DEMO_CST,
    xst: str = IG_DEMO_XST,
    epics: Iterable[str] = IG_EPICS,
    **options: Any,
) -> TlcpServer:
    """A :class:`TlcpServer` that emulates IG's streaming conventions (it is not IG).

    TLCP 2.4.0 only (2.5.0 gets ``CONERR,65``); user ``account_id`` with password
    ``CST-<cst>|XST-<xst>`` (else ``CONERR,1``); adapter set ``DEFAULT``; the items of
    :func:`ig_items`; frequency limits honoured. ``options`` go to :class:`TlcpServer`;
    start an :class:`IgFeed` on its :attr:`~TlcpServer.data` to make it live.
    """
    options.setdefault("data", ig_data(account_id, epics))
    options.setdefault("protocols", ("TLCP-2.4.0",))
    options.setdefault("credentials", {account_id: ig_password(cst, xst)})
    options.setdefault("adapter_sets", ("DEFAULT",))
    options.setdefault("enforce_limits", True)
    options.setdefault("server_name", "IG-like test server (not IG)")
    return TlcpServer(clock=clock, **options)


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


class _Market:
    """One epic's prices: the day's figures and one candle per scale."""

    def __init__(self, epic: str, mid: float, decimals: int, spread: float) -> None:
        self.epic = epic
        self.decimals = decimals
        self.spread = spread
        self.day_open = self.mid = self.high = self.low = mid
        self.volume = 0
        self.candles: dict[str, dict[str, Any]] = {}

    @property
    def bid(self) -> float:
        return self.mid - self.spread / 2

    @property
    def offer(self) -> float:
        return self.mid + self.spread / 2

    def day(self) -> dict[str, str | None]:
        """The DAY_* fields shared by ticks and candles."""
        d = self.decimals
        change = self.mid - self.day_open
        return {
            "DAY_OPEN_MID": _fmt(self.day_open, d),
            "DAY_NET_CHG_MID": _fmt(change, d),
            "DAY_PERC_CHG_MID": f"{change / self.day_open * 100:.2f}",
            "DAY_HIGH": _fmt(self.high, d),
            "DAY_LOW": _fmt(self.low, d),
        }

    def market(self, clock_time: float) -> dict[str, str | None]:
        d = self.decimals
        change = self.mid - self.day_open
        return {
            "BID": _fmt(self.bid, d), "OFFER": _fmt(self.offer, d),
            "HIGH": _fmt(self.high, d), "LOW": _fmt(self.low, d),
            "MID_OPEN": _fmt(self.day_open, d), "CHANGE": _fmt(change, d),
            "CHANGE_PCT": f"{change / self.day_open * 100:.2f}", "MARKET_DELAY": "0",
            "MARKET_STATE": "TRADEABLE",
            "UPDATE_TIME": time.strftime("%H:%M:%S", time.gmtime(clock_time)),
            "STRIKE_PRICE": None, "ODDS": None,
        }

    def tick(self, clock_time: float, size: int) -> dict[str, str | None]:
        # IG's CFDs and spread bets are not exchange-traded: no last traded price.
        return {
            "BID": _fmt(self.bid, self.decimals), "OFR": _fmt(self.offer, self.decimals),
            "LTP": None, "LTV": str(size), "TTV": str(self.volume),
            "UTM": str(int(clock_time * 1000)), **self.day(),
        }

    def candle(self, scale: str, start: float, clock_time: float, size: int) -> tuple[
            dict[str, str | None] | None, dict[str, str | None]]:
        """Advance the candle of ``scale``; (the closed candle or None, the current one)."""
        closed = None
        candle = self.candles.get(scale)
        if candle is not None and candle["start"] != start:
            closed = self._candle_fields(candle, clock_time, end=True)
            candle = None
        if candle is None:
            candle = self.candles[scale] = {
                "start": start, "count": 0, "volume": 0,
                "BID": [self.bid] * 4, "OFR": [self.offer] * 4,
            }
        candle["count"] += 1
        candle["volume"] += size
        for side, price in (("BID", self.bid), ("OFR", self.offer)):
            ohlc = candle[side]
            ohlc[1], ohlc[2], ohlc[3] = max(ohlc[1], price), min(ohlc[2], price), price
        return closed, self._candle_fields(candle, clock_time, end=False)

    def _candle_fields(
        self, candle: dict[str, Any], clock_time: float, *, end: bool
    ) -> dict[str, str | None]:
        d = self.decimals
        fields: dict[str, str | None] = {
            "LTV": str(candle["volume"]), "TTV": str(self.volume),
            "UTM": str(int(candle["start"] * 1000)), **self.day(),
            "CONS_END": "1" if end else "0", "CONS_TICK_COUNT": str(candle["count"]),
        }
        for side in ("BID", "OFR"):
            for name, value in zip(("OPEN", "HIGH", "LOW", "CLOSE"), candle[side], strict=True):
                fields[f"{side}_{name}"] = _fmt(value, d)
        for name in ("OPEN", "HIGH", "LOW", "CLOSE"):
            fields[f"LTP_{name}"] = None
        return fields


class IgFeed(TickingFeed):
    """Publishes IG-like prices, candles, deals and account figures into ``data``.

    Every ``interval`` seconds one or two markets move (``MARKET``, ``CHART:…:TICK`` and
    every candle scale), the account's figures follow the open positions, and
    every ``deal_every`` ticks a deal happens on ``TRADE:<account id>`` (a position opened,
    a working order placed, the position closed, the order deleted, in turn), each with
    its ``CONFIRMS`` and then its ``OPU`` or ``WOU``.
    """

    def __init__(
        self,
        data: DataModel,
        clock: IReactorTime,
        *,
        account_id: str = IG_DEMO_ACCOUNT,
        epics: Mapping[str, tuple[float, int, float, float]] | None = None,
        interval: float = 0.25,
        deal_every: int = 4,
        seed: int = 1,
    ) -> None:
        super().__init__(data, clock, interval)
        self.account_id = account_id
        self.deal_every = deal_every
        self.deals = 0
        self._random = random.Random(seed)
        self._specs = dict(IG_EPICS if epics is None else epics)
        self._markets = {
            epic: _Market(epic, mid, decimals, spread)
            for epic, (mid, decimals, spread, _) in self._specs.items()
        }
        #: Open positions: epic -> (deal id, direction sign, size, opening level).
        self.positions: dict[str, tuple[str, int, float, float]] = {}
        self._order: tuple[str, str] | None = None
        now = clock.seconds()
        for epic, market in self._markets.items():
            data.set_item(f"MARKET:{epic}", market.market(now))
            data.update(f"CHART:{epic}:TICK", market.tick(now, 0))
            for scale, seconds in CHART_SCALES.items():
                _, current = market.candle(scale, now - now % seconds, now, 0)
                data.set_item(f"CHART:{epic}:{scale}", current)
        self._account_state = self._account()
        data.set_item(f"ACCOUNT:{account_id}", self._account_state)

    # --- one tick -----------------------------------------------------------------------

    def publish(self) -> None:
        rnd = self._random
        now = self.clock.seconds()
        for epic in rnd.sample(sorted(self._markets), rnd.randint(1, 2)):
            self._move(self._markets[epic], now)
        if self.deal_every and self.ticks % self.deal_every == 0:
            self._deal(now)
        account = self._account()
        if account != self._account_state:  # only when a figure changed
            self._account_state = account
            self.data.update(f"ACCOUNT:{self.account_id}", account)

    def _move(self, market: _Market, now: float) -> None:
        rnd = self._random
        market.mid = round(market.mid * (1 + rnd.uniform(-0.0004, 0.0004)), market.decimals)
        market.high, market.low = max(market.high, market.mid), min(market.low, market.mid)
        size = rnd.randint(1, 5)
        market.volume += size
        epic, data = market.epic, self.data
        data.update(f"MARKET:{epic}", market.market(now))
        data.update(f"CHART:{epic}:TICK", market.tick(now, size))
        for scale, seconds in CHART_SCALES.items():
            closed, current = market.candle(scale, now - now % seconds, now, size)
            if closed is not None:
                data.update(f"CHART:{epic}:{scale}", closed)
            data.update(f"CHART:{epic}:{scale}", current)

    # --- deals and the account -------------------------------------------------------------

    def _deal(self, now: float) -> None:
        self.deals += 1
        step = (self.deals - 1) % 4
        epics = sorted(self._markets)
        epic = epics[(self.deals - 1) // 4 % len(epics)]
        market = self._markets[epic]
        deal_id = f"DIAAAA{self.deals:010d}"
        if step == 0:  # open a position at the market
            direction = self._random.choice((1, -1))
            level = market.offer if direction > 0 else market.bid
            self.positions[epic] = (deal_id, direction, 1.0, level)
            self._trade(now, deal_id, epic, direction, level, ("OPEN", "OPENED"), "OPU", "OPEN")
        elif step == 1:  # place a limit order below the market
            level = market.bid * 0.99
            self._order = (deal_id, epic)
            self._trade(now, deal_id, epic, 1, level, ("OPEN", "OPENED"), "WOU", "OPEN")
        elif step == 2 and epic in self.positions:  # close the position
            deal_id, direction, _, _ = self.positions.pop(epic)
            level = market.bid if direction > 0 else market.offer
            self._trade(now, deal_id, epic, -direction, level, ("CLOSED", "FULLY_CLOSED"),
                        "OPU", "DELETED")
        elif step == 3 and self._order is not None:  # delete the order
            (deal_id, epic), self._order = self._order, None
            level = self._markets[epic].bid * 0.99
            self._trade(now, deal_id, epic, 1, level, ("DELETED", "DELETED"), "WOU", "DELETED")

    def _trade(self, now: float, deal_id: str, epic: str, direction: int, level: float,
               confirmed: tuple[str, str], update: str, status: str) -> None:
        """A ``CONFIRMS`` event, then the ``OPU`` or ``WOU`` event that goes with it."""
        rounded = float(_fmt(level, self._markets[epic].decimals))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000", time.gmtime(now))
        reference = f"REF{self.deals:06d}"
        side = "BUY" if direction > 0 else "SELL"
        confirm = {
            "dealReference": reference, "dealId": deal_id, "epic": epic, "expiry": "-",
            "direction": side, "size": 1, "level": rounded, "status": confirmed[0],
            "dealStatus": "ACCEPTED", "reason": "SUCCESS", "date": stamp,
            "affectedDeals": [{"dealId": deal_id, "status": confirmed[1]}],
            "guaranteedStop": False, "stopLevel": None, "limitLevel": None,
        }
        change: dict[str, Any] = {
            "dealReference": reference, "dealId": deal_id, "dealIdOrigin": deal_id,
            "epic": epic, "expiry": "-", "direction": side, "size": 1, "level": rounded,
            "status": status, "dealStatus": "ACCEPTED", "currency": "GBP",
            "timestamp": stamp, "guaranteedStop": False, "stopLevel": None,
            "limitLevel": None, "channel": "PublicRestOTC",
        }
        if update == "WOU":
            change.update(orderType="LIMIT", timeInForce="GOOD_TILL_CANCELLED")
        item = f"TRADE:{self.account_id}"
        # Each event carries one field; the others are null (DISTINCT: one event, one row).
        self.data.update(item, {"CONFIRMS": json.dumps(confirm), "OPU": None, "WOU": None})
        self.data.update(item, {**dict.fromkeys(TRADE_FIELDS), update: json.dumps(change)})

    def _account(self) -> dict[str, str | None]:
        pnl = margin = 0.0
        for epic, (_, direction, size, level) in self.positions.items():
            market = self._markets[epic]
            close = market.bid if direction > 0 else market.offer
            value = self._specs[epic][3]
            pnl += (close - level) * direction * size * value
            margin += close * size * value * _MARGIN_RATE
        equity = _FUNDS + pnl
        available = equity - margin
        return {
            "PNL": f"{pnl:.2f}", "DEPOSIT": f"{margin:.2f}", "AVAILABLE_CASH": f"{available:.2f}",
            "PNL_LR": "0.00", "PNL_NLR": f"{pnl:.2f}", "FUNDS": f"{_FUNDS:.2f}",
            "MARGIN": f"{margin:.2f}", "MARGIN_LR": "0.00", "MARGIN_NLR": f"{margin:.2f}",
            "AVAILABLE_TO_DEAL": f"{available:.2f}", "EQUITY": f"{equity:.2f}",
            "EQUITY_USED": f"{margin / equity * 100 if equity else 0.0:.2f}",
        }
