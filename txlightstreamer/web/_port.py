"""`RelayPortService`: a relay served on ``--http-port`` as a child service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["RelayPortService"]

log = Logger()


class RelayPortService(Service):
    """Serves a `~txlightstreamer.web.Relay` on ``--http-port``; closes it when stopped."""

    name = "http"

    def __init__(self, relay: Any, reactor: Any, endpoint: str,
                 on_failure: Callable[[str], object]) -> None:
        self.relay = relay
        self.endpoint = endpoint
        self.port: Any = None
        self._reactor = reactor
        self._on_failure = on_failure

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        Service.startService(self)
        self.relay.listen(self._reactor, self.endpoint).addCallbacks(
            self._listening, self._failed)

    def _listening(self, port: Any) -> object:
        if not self.running:
            return port.stopListening()
        self.port = port
        address = port.getHost()
        host = getattr(address, "host", None)
        if host is None:
            log.info("Live tables served on {address}", address=address)
        else:
            host = f"[{host}]" if ":" in host else host
            log.info("Live tables on http://{host}:{port}/ (JSON: /snapshot, "
                     "Server-Sent Events: /events)", host=host, port=address.port)
        return None

    def _failed(self, failure: Failure) -> None:
        # One line, said once by whoever stops: on_failure gets the cause.
        self._on_failure(f"Cannot serve --http-port {self.endpoint}: "
                         f"{failure.getErrorMessage()}")

    def stopService(self) -> Deferred[None]:  # noqa: N802 (Twisted API)
        Service.stopService(self)
        self.relay.close()
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        d: Deferred[None] = maybeDeferred(port.stopListening)

        def failed(failure: Failure) -> None:
            log.warn("Closing --http-port failed: {error}", error=failure.getErrorMessage())

        return d.addErrback(failed)
