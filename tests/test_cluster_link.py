"""
A control link (CONOK's 4th field, tlcp.md §4.1) as the official client takes it: with
its own scheme, or an empty port (review, third round); one that is no address is
reported and ignored.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from hyperlink import URL
from twisted.internet import reactor
from twisted.web.server import Site

from txlightstreamer import MODE_MERGE, LsClient, Table, _session
from txlightstreamer.testing import TlcpServer
from txlightstreamer.testing import _server as server_module

from .support import wait_until


@pytest.mark.parametrize(
    "configured, link, expected",
    [
        ("http://host:8080", "http://node2:9090", ("http", "node2", 9090)),
        ("https://host", "https://node2.example.com", ("https", "node2.example.com", 443)),
        ("http://host:8080", "node2:", ("http", "node2", 8080)),
    ],
)
def test_control_link_with_a_scheme_or_an_empty_port(configured: str, link: str,
                                                     expected: tuple[str, str, int]) -> None:
    # Url.hx completeControlLink keeps a link's own scheme and fills only what is missing.
    url = URL.from_text(_session._control_url(configured, link))
    assert (url.scheme, url.host, url.port) == expected


@pytest.mark.parametrize("forced", ["HTTP-STREAMING", "WS-STREAMING"])
@pytest_twisted.ensureDeferred
async def test_a_control_link_with_a_scheme_keeps_the_session_working(
        monkeypatch: pytest.MonkeyPatch, forced: str) -> None:
    srv = TlcpServer(keepalive_millis=1000)
    await srv.listen(reactor, interface="127.0.0.1")
    site = Site(srv._resource)  # the same sessions on a second "node": 127.0.0.2
    site.noisy = False
    node2 = reactor.listenTCP(0, site, interface="127.0.0.2")
    link = f"http://127.0.0.2:{node2.getHost().port}"
    original = server_module.encode_line
    monkeypatch.setattr(server_module, "encode_line", lambda tag, *args: original(
        tag, *(args[:-1] + (link,) if tag == "CONOK" else args)))
    client = LsClient(srv.url, forced_transport=forced)
    errors: list[Any] = []
    client.on_error(errors.append)
    try:
        await client.create_session()
        table = Table(client, mode=MODE_MERGE, item_ids=["t"], schema=["v"])
        got: list[Any] = []
        table.on_update(lambda item, row: got.append(row[0]))

        def publish(value: str) -> bool:
            srv.data.update("t", {"v": value})  # again and again until it is received
            return got[-1:] == [value] or bool(errors)

        await wait_until(lambda: publish("a"), timeout=5)
        srv.drop_streams()  # the session is recovered on the control link's host
        await wait_until(lambda: publish("b"), timeout=8)
        assert errors == [] and got[-1:] == ["b"], (errors, client.status)
        assert all(h["host"].startswith("127.0.0.2") for _, h in list(srv.received)[1:])
    finally:
        await client.destroy()
        await srv.stop()
        await node2.stopListening()


@pytest.mark.parametrize("link", [
    "ftp://node2", "http://node2:1",  # another scheme; https downgraded to http
    "me:secret@node2", "node2?x=1", "node2#x", "http://",
])
def test_a_control_link_that_is_no_address_is_refused(link: str) -> None:
    with pytest.raises(ValueError, match="control link"):
        _session._control_url("https://host", link)


def test_a_control_link_that_is_no_address_is_reported_and_ignored() -> None:
    from .test_session import make

    session, transport, recorder, clock = make()
    session.connect({})
    transport.last.feed("CONOK,S1,50000,5000,ftp://node2")
    errors = [e for kind, e in recorder.events if kind == "error"]
    assert len(errors) == 1 and "unusable control link" in str(errors[0])
    assert session.base_url == session._configured_url  # the session stays where it is
    assert session.bound
