"""A small stock-like demo feed for :class:`~txlightstreamer.testing.DataModel`.

Six MERGE items ``item1``…``item6`` tick randomly several times a second and
a COMMAND item ``portfolio1`` adds, updates and deletes positions now and
then.  Deterministic: it uses a seeded :class:`random.Random` and the
injected clock.

:func:`demo_server` is the demo as a real server would serve it: it refuses
other adapter sets (``CONERR`` 2), unknown items (``REQERR`` 21) and fields
(``REQERR`` 23), and honours ``max_frequency`` and ``buffer_size`` for MERGE
and DISTINCT.  :func:`demo_profile` picks a demo by name for the command line:
``default`` (this one) or ``ig`` (:mod:`txlightstreamer.testing.ig`, an emulation of IG's
streaming conventions, not IG).
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ._adapter import DataModel
from ._server import TlcpServer
from ._ticker import TickingFeed
from .ig import (
    IG_DEMO_ACCOUNT,
    IG_DEMO_CST,
    IG_DEMO_SUBSCRIPTIONS,
    IG_DEMO_XST,
    IgFeed,
    ig_password,
    ig_server,
)

__all__ = [
    "DEMO_ADAPTER_SETS",
    "DEMO_FIELDS",
    "DEMO_ITEMS",
    "DEMO_PROFILES",
    "PORTFOLIO_FIELDS",
    "PORTFOLIO_ITEM",
    "DemoFeed",
    "demo_data",
    "demo_profile",
    "demo_profile_defaults",
    "demo_server",
]

DEMO_ITEMS: tuple[str, ...] = tuple(f"item{i}" for i in range(1, 7))
DEMO_FIELDS: tuple[str, ...] = (
    "stock_name",
    "last_price",
    "time",
    "pct_change",
    "bid",
    "ask",
    "min",
    "max",
)
PORTFOLIO_ITEM = "portfolio1"
PORTFOLIO_FIELDS: tuple[str, ...] = ("key", "command", "qty", "price")
#: The adapter sets the demo serves (``DEFAULT`` is what a client gets without asking).
DEMO_ADAPTER_SETS: tuple[str, ...] = ("DEFAULT", "DEMO")
#: The demos :func:`demo_profile` knows (``--demo-profile NAME``).
DEMO_PROFILES: tuple[str, ...] = ("default", "ig")


def demo_data(history_size: int = 100) -> DataModel:
    """A data model that knows only the demo's items and fields (others are refused)."""
    items: dict[str, tuple[str, ...]] = {item: DEMO_FIELDS for item in DEMO_ITEMS}
    items[PORTFOLIO_ITEM] = PORTFOLIO_FIELDS
    return DataModel(strict_items=True, items=items, history_size=history_size)


def demo_server(clock: IReactorTime | None = None, **options: Any) -> TlcpServer:
    """A :class:`TlcpServer` strict as a real one, over :func:`demo_data`.

    ``options`` go to :class:`TlcpServer`; start a :class:`DemoFeed` on its
    :attr:`~TlcpServer.data` to make the items tick.
    """
    options.setdefault("data", demo_data())
    options.setdefault("adapter_sets", DEMO_ADAPTER_SETS)
    options.setdefault("enforce_limits", True)
    return TlcpServer(clock=clock, **options)


def _profile(name: str | None) -> str:
    profile = name or "default"
    if profile not in DEMO_PROFILES:
        raise ValueError(f"unknown demo profile {name!r}: use {' or '.join(DEMO_PROFILES)}")
    return profile


def demo_profile(name: str | None, clock: IReactorTime) -> tuple[TlcpServer, Any]:
    """The server and its (stopped) feed of the demo ``name`` (None: ``default``)."""
    if _profile(name) == "ig":
        server = ig_server(clock=clock)
        return server, IgFeed(server.data, clock)
    server = demo_server(clock=clock)
    return server, DemoFeed(server.data, clock)


def demo_profile_defaults(name: str | None) -> tuple[str | None, str | None, tuple[str, ...]]:
    """What a client of the demo ``name`` uses unless told: (user, password, ``--subscribe``
    SPECs; none means the command line's own demo subscriptions). ValueError if unknown."""
    if _profile(name) == "ig":
        return IG_DEMO_ACCOUNT, ig_password(IG_DEMO_CST, IG_DEMO_XST), IG_DEMO_SUBSCRIPTIONS
    return None, None, ()


_NAMES = (
    "Anduct",
    "Ations Europe",
    "Bagies Consulting",
    "BANDOR",
    "Bluffa Games",
    "Crowd Sourcing",
)


class DemoFeed(TickingFeed):
    """Publishes random ticks into ``data`` every ``interval`` seconds."""

    def __init__(
        self,
        data: DataModel,
        clock: IReactorTime,
        interval: float = 0.25,
        *,
        seed: int = 1,
    ) -> None:
        super().__init__(data, clock, interval)
        self._random = random.Random(seed)
        self._ref: dict[str, float] = {}
        self._positions: dict[str, int] = {}
        for index, item in enumerate(DEMO_ITEMS):
            reference = round(self._random.uniform(5, 30), 2)
            self._ref[item] = reference
            data.set_item(
                item,
                {
                    "stock_name": _NAMES[index],
                    "last_price": f"{reference:.2f}",
                    "time": self._time(),
                    "pct_change": "0.00",
                    "bid": f"{reference * 0.999:.2f}",
                    "ask": f"{reference * 1.001:.2f}",
                    "min": f"{reference:.2f}",
                    "max": f"{reference:.2f}",
                },
            )

    def _time(self) -> str:
        seconds = int(self.clock.seconds()) % 86400
        return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def publish(self) -> None:
        rnd = self._random
        for item in rnd.sample(DEMO_ITEMS, rnd.randint(1, 3)):
            reference = self._ref[item]
            state = self.data.state(item)
            last = float(state.get("last_price") or reference)
            price = max(0.01, round(last * (1 + rnd.uniform(-0.01, 0.01)), 2))
            low = min(float(state.get("min") or price), price)
            high = max(float(state.get("max") or price), price)
            self.data.update(
                item,
                {
                    "last_price": f"{price:.2f}",
                    "time": self._time(),
                    "pct_change": f"{(price - reference) / reference * 100:.2f}",
                    "bid": f"{price * 0.999:.2f}",
                    "ask": f"{price * 1.001:.2f}",
                    "min": f"{low:.2f}",
                    "max": f"{high:.2f}",
                },
            )
        if rnd.random() < 0.3:
            self._portfolio_event()

    def _portfolio_event(self) -> None:
        rnd = self._random
        item = rnd.choice(DEMO_ITEMS)
        price = self.data.state(item).get("last_price") or "0"
        if item not in self._positions:
            self._positions[item] = rnd.randint(1, 20) * 100
            self.data.command(
                PORTFOLIO_ITEM,
                item,
                "ADD",
                {"qty": str(self._positions[item]), "price": price},
            )
        elif rnd.random() < 0.3:
            del self._positions[item]
            self.data.command(PORTFOLIO_ITEM, item, "DELETE")
        else:
            self._positions[item] += rnd.randint(-5, 5) * 100 or 100
            if self._positions[item] <= 0:
                del self._positions[item]
                self.data.command(PORTFOLIO_ITEM, item, "DELETE")
            else:
                self.data.command(
                    PORTFOLIO_ITEM,
                    item,
                    "UPDATE",
                    {"qty": str(self._positions[item]), "price": price},
                )
