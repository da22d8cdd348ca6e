"""`DemoService`: the embedded demo server and its feed (``--demo``), a child service."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

__all__ = ["DemoService"]

log = Logger()


class DemoService(Service):
    """The embedded demo server and its feed (``--demo``); `url` fires once it listens."""

    name = "demo"

    def __init__(self, reactor: Any, profile: str | None = None, port: int = 0) -> None:
        self._reactor = reactor
        self._profile = profile  # --demo-profile: see testing.demo.demo_profile
        self._port = port  # --demo-port, else a free one
        self.server: Any = None
        self.feed: Any = None
        self._listening: Deferred[str] | None = None

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        from txlightstreamer.testing.demo import demo_profile

        Service.startService(self)
        self.server, self.feed = demo_profile(self._profile, self._reactor)
        self._listening = ensureDeferred(self._listen())

    async def _listen(self) -> str:
        await self.server.listen(self._reactor, port=self._port, interface="127.0.0.1")
        url: str = self.server.url
        log.info("Demo server listening on {url}", url=url)
        if self.running:
            self.feed.start()
        return url

    def url(self) -> Deferred[str]:
        """Fires with the server's URL once it listens (start the service first)."""
        assert self._listening is not None, "the demo service is not started"
        d: Deferred[str] = Deferred()

        def relay(result: Any) -> Any:
            d.callback(result)  # a Failure errbacks d
            return None

        self._listening.addBoth(relay)
        return d

    def stopService(self) -> Deferred[None]:  # noqa: N802 (Twisted API)
        Service.stopService(self)
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self.feed is not None:
            self.feed.stop()
        if self.server is not None:
            try:
                await self.server.stop()
            except Exception as e:
                log.warn("Stopping the demo server failed: {error}", error=e)
