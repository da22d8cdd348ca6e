"""A connection to Redis through txredisapi (Twisted-native RESP), with start-up checks."""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txlightstreamer.sinks._target import RedisTarget

__all__ = [
    "RedisUnavailable",
    "Revivable",
    "batch_runner",
    "connect",
    "is_reconnecting",
    "load_script",
    "prepare_script",
    "script_runner",
    "widen_writes",
]


log = Logger()


class RedisUnavailable(Exception):
    """Redis could not be used: unreachable, wrong password, bad database."""


def connect(target: RedisTarget, clock: IReactorTime, timeout: float = 5.0) -> Deferred[Any]:
    """
    Connect to ``target`` (reconnecting by itself afterwards); fires with the connection.

    Fails with `RedisUnavailable` (its text names the address, never the password) when
    Redis refuses the password or is not reachable within ``timeout`` seconds.
    """
    import txredisapi  # type: ignore[import-untyped]

    factory_deferred: Deferred[Any] = txredisapi.Connection(
        host=target.host, port=target.port, dbid=target.db, reconnect=True,
        password=target.password, connectTimeout=timeout, convertNumbers=True)
    done: Deferred[Any] = Deferred()

    def connected(connection: Any) -> None:
        if not done.called:
            done.callback(Revivable(target, clock, timeout, connection))
        else:  # too late: we already gave up
            connection.disconnect()

    def failed(failure: Failure) -> None:
        if not done.called:
            reason = str(failure.value).replace("Redis error: ", "")
            done.errback(RedisUnavailable(f"Redis at {target.address}: {reason}"))

    factory_deferred.addCallbacks(connected, failed)

    def give_up() -> None:
        if not done.called:
            done.errback(RedisUnavailable(
                f"Redis at {target.address} is not reachable (no answer in {timeout:g} s)"))
            factory_deferred.addCallback(lambda c: c.disconnect())

    timer = clock.callLater(timeout, give_up)

    def settled(result: object) -> object:
        if timer.active():
            timer.cancel()
        return result

    done.addBoth(settled)
    return done


class Revivable:
    """
    A txredisapi connection that is opened again once txredisapi gave up on it: it stops
    reconnecting by itself when Redis refuses the password (rotated) or the database, and
    every command then fails at once, for ever. A command on a connection in that state
    fails as before, and starts one new connection (its caller retries at its own pace);
    once open, it replaces the old one. Everything else is the current connection's.
    """

    def __init__(self, target: RedisTarget, clock: IReactorTime, timeout: float,
                 connection: Any) -> None:
        self._target = target
        self._clock = clock
        self._timeout = timeout
        self.current = connection
        self._reviving = False
        self._closed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)  # (txredisapi's _factory, for this module)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        factory = getattr(self.current, "_factory", None)
        if (getattr(factory, "stopped", False) and not getattr(factory, "disconnectCalled", True)
                and not self._closed):
            self._revive()
        return self.current.execute_command(*args, **kwargs)

    def disconnect(self) -> Any:
        self._closed = True
        return self.current.disconnect()

    def _revive(self) -> None:
        if self._reviving:
            return
        self._reviving = True
        log.info("Redis at {address}: connecting again (the connection gave up)",
                 address=self._target.address)

        def opened(connection: Revivable) -> None:
            self._reviving = False
            fresh = connection.current  # connect's own wrapper is not needed
            if self._closed:
                fresh.disconnect()
                return
            old, self.current = self.current, fresh
            old.disconnect().addErrback(lambda _: None)

        def failed(failure: Failure) -> None:
            self._reviving = False  # the next command tries again
            log.info("Redis at {address}: {why}", address=self._target.address,
                     why=failure.value)

        connect(self._target, self._clock, self._timeout).addCallbacks(opened, failed)


def script_runner(connection: Any, script: str, *, fallback: bool = True) -> Any:
    """
    A callable ``run(keys, args) -> Deferred`` that runs ``script`` by its SHA1; when
    Redis does not have it (after a restart) it is sent whole, or with ``fallback=False``
    the ``NOSCRIPT`` error is the caller's (pipelined calls: sending one again out of turn
    could run it after the next ones; see `load_script`).
    """
    sha = hashlib.sha1(script.encode("utf-8")).hexdigest()

    def run(keys: list[str], args: list[Any]) -> Deferred[Any]:
        def missing(failure: Failure) -> Any:
            # After a Redis restart its script cache is empty: send the script itself.
            if "NOSCRIPT" in str(failure.value):
                return connection.execute_command("EVAL", script, len(keys), *keys, *args)
            return failure

        d: Deferred[Any] = connection.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        return d.addErrback(missing) if fallback else d

    return run


def batch_runner(connection: Any, script: str, *, inline: bool = False) -> Any:
    """
    A callable ``run(keys, args, chunks) -> Deferred`` that runs ``script`` by its SHA1
    (``NOSCRIPT`` is the caller's), or with ``inline`` by its text (``EVAL``: for a user
    not allowed ``SCRIPT LOAD``), with ``args`` and, as the last argument, the
    concatenation of ``chunks``. The command is written in RESP here, the chunks copied
    once into it (txredisapi would encode it in Python and copy a batch's megabyte three
    times); its reply is read by the connection as any other.
    """
    body = script.encode("utf-8") if inline else hashlib.sha1(
        script.encode("utf-8")).hexdigest().encode("ascii")
    name = b"EVAL" if inline else b"EVALSHA"
    head = b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(name), name, len(body), body)

    def run(keys: list[str], args: list[Any], chunks: list[bytes]) -> Deferred[Any]:
        protocol = _connected_protocol(connection)
        if protocol is None:  # reconnecting: txredisapi waits for the connection itself
            d: Deferred[Any] = connection.execute_command(
                name.decode("ascii"), body, len(keys), *keys, *args, b"".join(chunks))
            return d
        parts = [b"*%d\r\n" % (4 + len(keys) + len(args)), head]
        for arg in [len(keys), *keys, *args]:
            data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
            parts += (b"$%d\r\n" % len(data), data, b"\r\n")
        parts.append(b"$%d\r\n" % sum(map(len, chunks)))
        parts += chunks
        parts.append(b"\r\n")
        protocol.transport.write(b"".join(parts))
        reply: Deferred[Any] = protocol.replyQueue.get()
        return reply.addCallback(protocol.handle_reply)

    return run


def _connected_protocol(connection: Any) -> Any:
    """The connection's one live protocol, if it is connected and idle (no MULTI,
    no pipelining), and is the txredisapi expected (else None: use execute_command)."""
    pool = getattr(getattr(connection, "_factory", None), "pool", None)
    if not pool or len(pool) != 1:
        return None
    protocol = pool[0]
    if (getattr(protocol, "connected", 0) != 1 or getattr(protocol, "transport", None) is None
            or getattr(protocol, "pipelining", True) or getattr(protocol, "inTransaction", True)
            or not hasattr(protocol, "handle_reply")
            or not _keeps_cancelled_waiters(getattr(protocol, "replyQueue", None))):
        return None
    return protocol


def is_reconnecting(connection: Any) -> bool:
    """Whether ``connection`` has lost its socket and is connecting again (txredisapi then
    holds new commands until it is back): a Redis restart, seen before any write fails."""
    pool = getattr(getattr(connection, "_factory", None), "pool", None)
    return pool is not None and len(pool) == 0


def _keeps_cancelled_waiters(queue: Any) -> bool:
    """Whether ``queue`` is txredisapi's ReplyQueue, whose cancelled waiter keeps its place
    (one that removed it would give the next reply to the wrong caller after a timeout)."""
    import txredisapi

    return type(queue) is txredisapi.ReplyQueue


def load_script(connection: Any, script: str) -> Deferred[Any]:
    """``SCRIPT LOAD``: Redis keeps ``script`` (until it restarts)."""
    d: Deferred[Any] = connection.execute_command("SCRIPT", "LOAD", script)
    return d


def prepare_script(connection: Any, script: str, address: str) -> Deferred[bool]:
    """
    ``SCRIPT LOAD`` ``script``; fires with whether it must be sent inline instead (``EVAL``:
    the user may not run ``SCRIPT LOAD``), or fails with `RedisUnavailable` when the user
    may run neither.
    """
    import txredisapi

    def refused(failure: Failure) -> Deferred[Any]:
        failure.trap(txredisapi.ResponseError)
        why = str(failure.value)
        probe: Deferred[Any] = connection.execute_command("EVAL", "return 1", 0)

        def inline(_: object) -> bool:
            log.warn("Redis at {address} refused SCRIPT LOAD ({why}): each batch is sent "
                     "with its script text (EVAL)", address=address, why=why)
            return True

        def neither(failure: Failure) -> None:
            failure.trap(txredisapi.ResponseError)
            raise RedisUnavailable(
                f"Redis at {address}: the user may not run scripts (allow EVALSHA and "
                f"SCRIPT LOAD, or EVAL): {failure.value}")

        return probe.addCallbacks(inline, neither)

    return load_script(connection, script).addCallbacks(lambda _: False, refused)


def is_timeout(failure: Failure) -> bool:
    """Whether a failure is a Deferred timeout (ours) rather than Redis's answer."""
    return failure.check(DeferredTimeout) is not None


#: Bytes a Redis socket may send per reactor turn (Twisted's default is 128 KiB).
SEND_LIMIT = 4 << 20


def widen_writes(connection: Any) -> None:
    """
    Let the connection's socket send a whole batch per reactor turn: with Twisted's 128 KiB
    a 1 MB batch takes several turns, and a busy reactor makes them long.
    """
    for protocol in getattr(getattr(connection, "_factory", None), "pool", ()):
        transport = getattr(protocol, "transport", None)
        if transport is not None and getattr(transport, "SEND_LIMIT", 0) < SEND_LIMIT:
            transport.SEND_LIMIT = SEND_LIMIT


def failure_text(failure: Failure) -> str:
    """What went wrong, as a line: a timeout says so (its own text is ``(10.0, ...)``)."""
    if failure.check(DeferredTimeout):
        return "no reply from Redis in time"
    return str(failure.value) or type(failure.value).__name__
