"""
An in-memory network on a `Clock`: the client's real HTTP agent and WebSocket transport reach a
`TlcpServer`'s real `twisted.web` site through `twisted.test.iosim` transports, and the test
moves bytes and time by hand. No socket, no wall clock: a loaded machine cannot change what a
test sees.

The client is wired in through public options only: ``http_client`` (a treq `HTTPClient` over
an `Agent` whose endpoints are in memory) and ``TransportOptions.endpoint_factory`` (WebSocket;
the client builds its WebSocket transport on a plain `Clock` because an endpoint factory is
given).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.error import ConnectionRefusedError as Refused
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeAddress, FakeTransport
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IBodyProducer
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from txlightstreamer import LsClient
from txlightstreamer.testing import TlcpServer
from txlightstreamer.transport import TransportOptions

#: The host name the server is served at by default, and the URL clients are given.
HOST = "lightstreamer.test"
URL = f"http://{HOST}:8080"


class _Transport(FakeTransport):
    """
    An iosim transport that tells an abort (a reset for the peer) from a clean close. What
    was written before an abort is still delivered, as the test server's ``kill`` does on a
    real socket; `MemoryNetwork.reset` is the fault that loses unsent bytes.
    """

    aborted = False
    #: Reading paused by its protocol (``IPushProducer``): nothing is delivered to it.
    paused = False

    def abortConnection(self) -> None:  # noqa: N802
        self.aborted = True
        self.disconnecting = True

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False


class _Connection:
    """One TCP connection: the client's and the server's transports."""

    def __init__(self, host: str, client: _Transport, server: _Transport) -> None:
        self.host = host
        self.client = client
        self.server = server
        self.closed = False

    def pump(self, stop: Callable[[], object] | None = None) -> bool:
        """
        Move what is buffered each way, then a pending close; whether anything happened.
        With ``stop``, return early (True) as soon as it holds after a transfer.
        """
        if self.closed:
            return False
        moved = held = False
        for source, sink in ((self.client, self.server), (self.server, self.client)):
            if sink.paused:
                held = held or bool(source.stream)
                continue  # the bytes wait for the reader, as in a socket's buffers
            data = source.getOutBuffer()
            if data:
                sink.bufferReceived(data)
                moved = True
                if stop is not None and stop():
                    return True
        aborted = self.client.aborted or self.server.aborted
        if (moved or held) and not aborted:  # an abort drops what waits, as a socket's
            return moved
        for closer, peer in ((self.server, self.client), (self.client, self.server)):
            if closer.disconnecting:
                self.closed = True
                closer.disconnected = peer.disconnected = True
                peer.disconnecting = True
                if closer.aborted:
                    own: Failure = Failure(ConnectionAborted())
                    other = Failure(ConnectionLost("connection reset by peer"))
                else:
                    own = other = Failure(ConnectionDone())
                closer.protocol.connectionLost(own)
                peer.protocol.connectionLost(other)
                return True
        return False


@implementer(IStreamClientEndpoint)
class _Endpoint:
    def __init__(self, network: MemoryNetwork, host: str) -> None:
        self._network = network
        self._host = host

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        # Connected at the next flush, as a real connection completes on a later turn.
        d: defer.Deferred[Any] = defer.Deferred()
        self._network._pending.append((self._host, factory, d))
        return d


@implementer(IBodyProducer)
class _Body:
    """A request body written at once (treq's default producer runs on the global reactor)."""

    def __init__(self, body: bytes | str) -> None:
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.length = len(self.body)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:  # noqa: N802
        consumer.write(self.body)
        return defer.succeed(None)

    def stopProducing(self) -> None:  # noqa: N802
        pass

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass


class MemoryNetwork:
    """
    Connections from clients to in-memory sites (one per host name), with time on ``clock``.

    `flush` delivers everything that can be delivered at the current instant; `advance`
    and `run_until` move simulated time in small steps, flushing after each.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.connections: list[_Connection] = []
        self._sites: dict[str, Site] = {}
        self._pending: list[tuple[str, IProtocolFactory, defer.Deferred[Any]]] = []

    # -- servers ---------------------------------------------------------------------------

    def serve(self, resource: Resource, host: str = HOST) -> str:
        """Serve ``resource`` (a server's site) at ``host``; its URL."""
        site = Site(resource, reactor=self.clock)
        site.noisy = False
        self._sites[host] = site
        return f"http://{host}:8080"

    def serve_tlcp(self, server: TlcpServer, host: str = HOST) -> str:
        """Serve a `TlcpServer` (which should run on this network's clock) at ``host``."""
        return self.serve(server.resource(), host)

    def stop(self, host: str = HOST) -> None:
        """The server at ``host`` goes away: its connections are reset, new ones refused."""
        self._sites.pop(host, None)
        for conn in self.connections:
            if conn.host == host:
                conn.server.abortConnection()

    def reset(self, host: str = HOST) -> None:
        """A network fault: every connection to ``host`` is reset, unsent bytes are lost."""
        for conn in self.connections:
            if conn.host == host:
                conn.client.stream.clear()
                conn.server.stream.clear()
                conn.server.abortConnection()

    # -- clients ---------------------------------------------------------------------------

    def endpoint(self, host: str, port: int) -> IStreamClientEndpoint:
        """An ``endpoint_factory`` for `TransportOptions`: connects to the site at ``host``."""
        return _Endpoint(self, host)

    def http_client(self) -> HTTPClient:
        """A treq client whose requests travel over this network."""
        pool = HTTPConnectionPool(self.clock, persistent=False)
        agent = Agent.usingEndpointFactory(self.clock, _Factory(self), pool=pool)
        return HTTPClient(agent, data_to_body_producer=_Body)

    def client(self, url: str = URL, **kwargs: Any) -> LsClient:
        """An `LsClient` on this network and clock (HTTP and WebSocket)."""
        options = TransportOptions(endpoint_factory=self.endpoint)
        return LsClient(url, reactor=self.clock, http_client=self.http_client(),
                        transport_options=options, **kwargs)

    # -- driving ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Run what is due now and deliver every byte and close, until nothing moves."""
        for _ in range(100_000):
            self.clock.advance(0)
            moved = self._connect_pending()
            for conn in list(self.connections):
                moved = conn.pump() or moved
            self.connections = [c for c in self.connections if not c.closed]
            if not moved and not self._due():
                return
        raise AssertionError("the in-memory network never settled")

    def advance(self, seconds: float, step: float = 0.01) -> None:
        """Move simulated time forward by ``seconds``, in ``step``s, flushing after each."""
        self.flush()
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.seconds()))
            self.flush()

    def run_until(self, predicate: Callable[[], object], limit: float = 30.0,
                  step: float = 0.01, what: str = "condition") -> None:
        """Advance time until ``predicate`` holds; fail after ``limit`` simulated seconds."""
        self.flush()
        end = self.clock.seconds() + limit
        while not predicate():
            if self.clock.seconds() >= end:
                raise AssertionError(f"{what}: not met within {limit} simulated seconds")
            self.clock.advance(step)
            self.flush()

    def wait(self, d: defer.Deferred[Any], limit: float = 30.0) -> Any:
        """Run until ``d`` fires; its result (its exception is raised)."""
        self.run_until(lambda: d.called, limit, what=f"{d!r} to fire")
        return result(d)

    def pump_until(self, predicate: Callable[[], object], rounds: int = 1000) -> None:
        """
        Like `flush`, but checking ``predicate`` after every single transfer and stopping
        as soon as it holds: e.g. the instant a server has acted on a request and its answer
        has not left yet. No time passes.
        """
        for _ in range(rounds):
            if predicate():
                return
            self.clock.advance(0)
            self._connect_pending()
            for conn in list(self.connections):
                if conn.pump(predicate):
                    break
            self.connections = [c for c in self.connections if not c.closed]
        raise AssertionError("the awaited state never came")

    # -- internals -------------------------------------------------------------------------

    def _due(self) -> bool:
        now = self.clock.seconds()
        return any(call.getTime() <= now for call in self.clock.getDelayedCalls())

    def _connect_pending(self) -> bool:
        pending, self._pending = self._pending, []
        for host, factory, d in pending:
            if d.called:
                continue  # cancelled meanwhile
            site = self._sites.get(host)
            if site is None:
                d.errback(Failure(Refused(f"nothing listens at {host} (in memory)")))
                continue
            client_address = FakeAddress()
            server_address = FakeAddress()
            client_proto = factory.buildProtocol(server_address)
            server_proto = site.buildProtocol(client_address)
            client_io = _Transport(client_proto, isServer=False, hostAddress=client_address,
                                   peerAddress=server_address)
            server_io = _Transport(server_proto, isServer=True, hostAddress=server_address,
                                   peerAddress=client_address)
            self.connections.append(_Connection(host, client_io, server_io))
            server_proto.makeConnection(server_io)
            client_proto.makeConnection(client_io)
            d.callback(client_proto)
        return bool(pending)


class _Factory:
    """The `Agent`'s ``IAgentEndpointFactory``: each URI's host on the network."""

    def __init__(self, network: MemoryNetwork) -> None:
        self._network = network

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:  # noqa: N802
        return _Endpoint(self._network, uri.host.decode("ascii"))


def result(d: defer.Deferred[Any]) -> Any:
    """The result of a fired Deferred; a failure is raised (and so consumed)."""
    assert d.called, f"{d!r} has not fired"
    box: list[Any] = []
    d.addBoth(box.append)
    outcome = box[0]
    if isinstance(outcome, Failure):
        outcome.raiseException()
    return outcome
