"""
How an `LsClient` gets connected: the callers waiting for ``create_session`` (with an
optional time limit that ends in the last connection cause), and the trust roots given
as PEM files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from txlightstreamer.errors import LightstreamerError, TransportError

__all__ = ["CreateWaiters", "read_trust_roots"]

_T = TypeVar("_T")

_PEM_END = b"-----END CERTIFICATE-----"


class CreateWaiters(Generic[_T]):
    """
    The Deferreds of ``create_session`` calls, fired together when a session starts or
    the client gives up. ``cause`` keeps the last reason a connection attempt failed.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiting: list[Deferred[_T]] = []
        self._timer: IDelayedCall | None = None
        #: The last error a failed connection attempt reported (None once connected).
        self.cause: LightstreamerError | None = None

    def add(self, timeout: float | None, give_up: Callable[[], None]) -> Deferred[_T]:
        """
        A new waiter. After ``timeout`` seconds without a session, ``give_up()`` stops
        the attempts and the waiter fails with the last cause.
        """
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds (or None)")
        d: Deferred[_T] = Deferred()
        self._waiting.append(d)
        if timeout is not None:
            self._cancel_timer()
            self._timer = self._clock.callLater(timeout, self._expired, timeout, give_up)
        return d

    def succeed(self, result: _T) -> None:
        self.cause = None
        self._cancel_timer()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(result)

    def fail(self, error: LightstreamerError) -> None:
        self._cancel_timer()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(error)

    def _expired(self, timeout: float, give_up: Callable[[], None]) -> None:
        self._timer = None
        give_up()
        cause = self.cause
        if cause is None:
            cause = TransportError(f"no session within {timeout:g} s")
        self.fail(cause)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def read_trust_roots(roots: Any) -> Any:
    """
    `LsClient`'s ``trust_roots`` as `TransportOptions.trust_roots` takes them: a PEM file
    path (or PEM text), or a list of paths, PEM texts and ``twisted.internet.ssl``
    certificates, becomes a list of certificates; anything else (an
    ``IOpenSSLTrustRoot``) is passed on.
    """
    from twisted.internet import ssl

    if not isinstance(roots, list | tuple):
        if not isinstance(roots, str | bytes | os.PathLike | ssl.Certificate):
            return roots
        roots = [roots]
    certificates: list[Any] = []
    for root in roots:
        if isinstance(root, ssl.Certificate):
            certificates.append(root)
            continue
        pem = _pem_of(root)
        blocks = [block + _PEM_END for block in pem.split(_PEM_END) if block.strip()]
        if not blocks or b"-----BEGIN CERTIFICATE-----" not in pem:
            raise ValueError(f"trust_roots: no PEM certificate in {_name_of(root)}")
        certificates += [ssl.Certificate.loadPEM(block) for block in blocks]
    if not certificates:
        raise ValueError("trust_roots is empty")
    return certificates


def _pem_of(root: str | bytes | os.PathLike[str]) -> bytes:
    if isinstance(root, bytes):
        return root
    if isinstance(root, str) and "-----BEGIN" in root:
        return root.encode("ascii")
    try:
        # Read once, when the client is made (before any connection): a small local file.
        with open(root, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"trust_roots: cannot read {os.fspath(root)!r}: {e.strerror}") from None


def _name_of(root: object) -> str:
    if isinstance(root, str | os.PathLike) and "-----BEGIN" not in str(root):
        return repr(os.fspath(root))
    return "the given text"
