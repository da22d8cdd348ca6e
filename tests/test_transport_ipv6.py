"""
IPv6 literal URLs (``http://[::1]:PORT``) on every transport, against a real `TlcpServer`
listening on the IPv6 loopback: streams, control requests and destroy (issue 19, item 2).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from txlightstreamer import MODE_MERGE, LsClient, Table
from txlightstreamer.testing import TlcpServer

from .support import wait_until


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")


@pytest.mark.parametrize(
    "transport", ["WS-STREAMING", "HTTP-STREAMING", "WS-POLLING", "HTTP-POLLING"])
@pytest_twisted.ensureDeferred
async def test_an_ipv6_literal_url_works_on_every_transport(transport: str) -> None:
    server = TlcpServer(keepalive_millis=1000)
    await server.listen(reactor, port=0, interface="::1")
    assert server.url.startswith("http://[::1]:")
    client = LsClient(server.url, forced_transport=transport, idle_timeout=0.2)
    errors: list[Exception] = []
    client.on_error(errors.append)
    try:
        await client.create_session()
        table = Table(client, mode=MODE_MERGE, item_ids=["v6"], schema=["v"])
        got: list[Any] = []
        table.on_update(lambda item, row: got.append(row[0]))
        await table.when_subscribed()  # a control request (on HTTP: its own connection)
        server.data.update("v6", {"v": "1"})
        await wait_until(lambda: got == ["1"])
        await table.delete()  # another control request
        assert errors == []
    finally:
        await client.destroy()  # tells the server: one more request to [::1]
        await server.stop()
    assert not server.sessions


def test_a_request_that_cannot_be_built_fails_with_a_transport_error() -> None:
    # No raw library exception (idna's, here) may reach the user.
    from treq.testing import StubTreq
    from twisted.internet.task import Clock
    from twisted.python.failure import Failure
    from twisted.web.resource import Resource

    from txlightstreamer.errors import TransportError
    from txlightstreamer.protocol import create_session
    from txlightstreamer.transport import HttpTransport

    stub = StubTreq(Resource())
    transport = HttpTransport(stream_client=stub, control_client=stub, clock=Clock(),
                              protocol_version="2.5.0", connect_timeout=4.0,
                              max_line_length=1 << 20)
    ended: list[Failure] = []

    class Sink:
        def stream_lines(self, stream: Any, lines: list[bytes]) -> None:
            raise AssertionError(lines)

        def stream_ended(self, stream: Any, reason: Failure) -> None:
            ended.append(reason)

    transport.open_stream("http://bad..host:80", create_session(), Sink()).start()
    (reason,) = ended
    assert isinstance(reason.value, TransportError) and not reason.value.retryable
    failures: list[Failure] = []
    transport.send_control("http://bad..host:80", "S1", [create_session()]).addErrback(
        failures.append)
    assert isinstance(failures[0].value, TransportError)
