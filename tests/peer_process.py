"""One official client run as a subprocess that prints one JSON object: its protocol."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure


class PeerError(Exception):
    """A peer failed or timed out; carries its exit code and stderr."""

    peer = "peer"

    def __init__(self, code: int | None, stderr: str) -> None:
        super().__init__(f"{self.peer} exited with {code}:\n{stderr[-4000:]}")
        self.code = code
        self.stderr = stderr


class JsonPeerProtocol(ProcessProtocol):
    """Fires ``done`` with the JSON on stdout, or fails it with ``error(code, stderr)``."""

    def __init__(self, done: Deferred[dict[str, Any]], error: type[PeerError]) -> None:
        self.done = done
        self.error = error
        self.out = bytearray()
        self.err = bytearray()
        self.killer: Any = None

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.out += data

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.err += data

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        if self.killer is not None and self.killer.active():
            self.killer.cancel()
        stderr = self.err.decode("utf-8", "replace")
        if reason.check(ProcessDone):
            try:
                result = json.loads(self.out.decode("utf-8"))
            except ValueError:
                self.done.errback(self.error(0, "bad JSON on stdout\n" + stderr))
                return
            self.done.callback(result)
        else:
            self.done.errback(self.error(getattr(reason.value, "exitCode", None), stderr))
