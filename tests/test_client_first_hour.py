"""
Issue 19, client side: what a new user meets first. A create_session that gives up with
the last cause, a refused port reported, trust roots from a PEM file, an item's row by
name, a help() without the session's plumbing, back-pressure, the TLCP version in use,
and documented parameters.
"""

from __future__ import annotations

import inspect
import pydoc
import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import ssl
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from txlightstreamer import MODE_COMMAND, MODE_DISTINCT, LsClient, Table
from txlightstreamer.errors import SessionLostError, TransportError
from txlightstreamer.testing import TlcpServer
from txlightstreamer.transport import TransportOptions

from .memory import URL, MemoryNetwork
from .support import wait_until
from .test_tls import make_pki


class _Answer501(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        request.setResponseCode(501)
        return b"Not Implemented"


# -- create_session(timeout=...) ----------------------------------------------------------

def test_create_session_timeout_gives_up_with_the_last_cause() -> None:
    clock = Clock()
    net = MemoryNetwork(clock)
    client = net.client("http://nowhere.test:8080", retry_delay=1.0)
    errors: list[Exception] = []
    client.on_error(errors.append)
    d = client.create_session(timeout=10)
    failures: list[Any] = []
    d.addErrback(failures.append)
    net.advance(9.5)
    assert not d.called and len(errors) == 1  # refused, said once, still trying
    net.advance(1)
    (failure,) = failures
    assert failure.value is errors[0]
    assert isinstance(failure.value, TransportError) and failure.value.retryable
    assert str(failure.value).startswith("connection refused")
    assert client.status == "DISCONNECTED"
    # It stopped trying: a server coming up now is not reached.
    net.serve(_Answer501(), host="nowhere.test")
    net.advance(30)
    assert len(errors) == 1 and client.session_info is None
    # create_session may be called again; the cause it ends with is the latest one.
    d = client.create_session(timeout=5)
    d.addErrback(failures.append)
    net.advance(6)
    assert len(failures) == 2
    assert failures[1].value.status == 501 and failures[1].value is errors[-1]
    # And a session within the time limit fires as usual.
    net.serve_tlcp(TlcpServer(clock=clock), host="nowhere.test")
    info = net.wait(client.create_session(timeout=30))
    assert info.continuity == "new" and client.status.startswith("CONNECTED:")
    assert client._waiters._timer is None  # the deadline is cancelled once connected
    net.wait(client.destroy())


def test_create_session_timeout_must_be_positive() -> None:
    client = LsClient(URL, reactor=Clock(), http_client=object())
    with pytest.raises(ValueError, match="timeout"):
        client.create_session(timeout=0)
    client.create_session(timeout=1).addErrback(lambda _: None)  # still possible
    client.destroy()


@pytest_twisted.ensureDeferred
async def test_a_refused_port_is_reported_on_error() -> None:
    # Issue 19 #1: `await client.create_session()` against a closed port used to retry in
    # silence; each new cause goes to on_error as a retryable TransportError.
    client = LsClient("http://127.0.0.1:1", forced_transport="HTTP")
    errors: list[Exception] = []
    client.on_error(errors.append)
    d = client.create_session()
    d.addErrback(lambda f: f.trap(SessionLostError))
    try:
        await wait_until(lambda: errors, what="on_error")
        assert isinstance(errors[0], TransportError) and errors[0].retryable
        assert "connection refused" in str(errors[0])
        assert not d.called  # no timeout given: it keeps trying
    finally:
        await client.destroy()
    await d


# -- trust_roots ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki() -> tuple[bytes, bytes, bytes]:
    return make_pki()


@pytest.mark.parametrize("form", ["path", "list", "options"])
@pytest_twisted.ensureDeferred
async def test_trust_roots_from_pem_files(pki: Any, tmp_path: Path, form: str) -> None:
    # "options": TransportOptions takes a path too (found by a docs review: it took the
    # path for PEM text and failed in OpenSSL).
    from twisted.internet import reactor

    ca_pem, cert_pem, key_pem = pki
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca_pem)
    other = ssl.Certificate.loadPEM(make_pki()[0])  # an unrelated CA beside it
    roots: Any = str(ca_file) if form == "path" else [other, ca_file]
    server = TlcpServer()
    options = ssl.PrivateCertificate.loadPEM(cert_pem + key_pem).options()
    await server.listen(reactor, port=0, interface="127.0.0.1", tls=options)
    assert server.url is not None
    given: dict[str, Any] = (
        {"transport_options": TransportOptions(trust_roots=str(ca_file))} if form == "options"
        else {"trust_roots": roots})
    client = LsClient(server.url, forced_transport="HTTP-STREAMING", **given)
    try:
        await client.create_session()
        assert client.status == "CONNECTED:HTTP-STREAMING"
    finally:
        await client.destroy()
        await server.stop()


def test_trust_roots_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read .*missing.pem"):
        LsClient(URL, trust_roots=str(tmp_path / "missing.pem"))
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="no PEM certificate"):
        LsClient(URL, trust_roots=[empty])
    with pytest.raises(ValueError, match="cannot read .*missing.pem"):
        LsClient(URL, transport_options=TransportOptions(
            trust_roots=str(tmp_path / "missing.pem")))
    with pytest.raises(ValueError, match="no PEM certificate"):
        LsClient(URL, transport_options=TransportOptions(trust_roots=empty))
    assert "SSL_CERT_FILE" in (LsClient.__doc__ or "")


# -- table[item] ------------------------------------------------------------------------

def test_an_items_row_by_name() -> None:
    clock = Clock()
    net = MemoryNetwork(clock)
    server = TlcpServer(clock=clock)
    net.serve_tlcp(server)
    client = net.client()
    try:
        net.wait(client.create_session())
        table = Table(client, item_ids=["a", "b"], schema=["x", "y"],
                      row_factory=lambda values: "custom")
        net.wait(table.when_subscribed())
        with pytest.raises(KeyError):
            table["a"]  # no data yet
        server.data.update("a", {"x": "1", "y": None})
        net.run_until(lambda: 1 in table.rows)
        row = table["a"]
        assert row["x"] == "1" and row["y"] is None and row[1] == "1"
        assert dict(row) == {"x": "1", "y": None} and list(row) == ["x", "y"]
        assert table[1] == row
        with pytest.raises(TypeError):
            row["x"] = "2"  # type: ignore[index]
        for unknown in ("c", 3, 0):
            with pytest.raises(KeyError):
                table[unknown]
        with pytest.raises(KeyError):
            row["z"]
        distinct = Table(client, mode=MODE_DISTINCT, item_ids=["a"], schema=["x"])
        net.wait(distinct.when_subscribed())
        server.data.update("a", {"x": "3"})
        net.run_until(lambda: 1 in distinct.rows)
        assert distinct["a"]["x"] == "3"
        command = Table(client, mode=MODE_COMMAND, item_ids=["p"], schema=["key", "command"])
        with pytest.raises(TypeError, match="command_rows"):
            command["p"]
    finally:
        net.wait(client.destroy())


# -- help() -------------------------------------------------------------------------------

_PLUMBING = ("error", "line_received", "notification", "session_started", "session_rebound",
             "session_interrupted", "session_closed", "status_changed", "update", "_parent",
             "table_owner_", "_link")


@pytest.mark.parametrize("cls", [LsClient, Table], ids=lambda c: c.__name__)
def test_help_shows_no_session_plumbing(cls: type) -> None:
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    members = set(re.findall(r"^ \|  (\w+)(?:\(| =|$)", text, re.MULTILINE))
    assert members, text[:500]
    assert not members & set(_PLUMBING)
    assert "_parent" not in text
    signature = inspect.signature(cls)
    assert not [name for name in signature.parameters if name.startswith("_")]


# -- back-pressure, TLCP version ----------------------------------------------------------

def test_pause_and_resume_reading() -> None:
    clock = Clock()
    net = MemoryNetwork(clock)
    server = TlcpServer(clock=clock, keepalive_millis=1000)
    net.serve_tlcp(server)
    client = net.client(forced_transport="HTTP-STREAMING")
    try:
        net.wait(client.create_session())
        table = Table(client, item_ids=["a"], schema=["x"])
        got: list[Any] = []
        table.on_update(lambda pos, row: got.append(row[0]))
        net.wait(table.when_subscribed())
        client.pause_reading()
        assert client._session.reading_paused
        server.data.update("a", {"x": "1"})
        net.advance(30, step=0.5)
        assert got == [] and client.status == "CONNECTED:HTTP-STREAMING"
        client.resume_reading()
        net.run_until(lambda: got == ["1"])
    finally:
        net.wait(client.destroy())


def test_protocol_version_is_the_one_in_use() -> None:
    clock = Clock()
    net = MemoryNetwork(clock)
    net.serve_tlcp(TlcpServer(clock=clock, protocols=["TLCP-2.4.0"]))
    client = net.client()
    assert client.protocol_version == "2.5.0"
    try:
        net.wait(client.create_session())
        assert client.protocol_version == "2.4.0"  # after the fall-back
    finally:
        net.wait(client.destroy())


# -- documentation ----------------------------------------------------------------------

@pytest.mark.parametrize("cls", [LsClient, Table], ids=lambda c: c.__name__)
def test_every_constructor_parameter_is_documented(cls: type) -> None:
    doc = cls.__doc__ or ""
    missing = [name for name in inspect.signature(cls).parameters
               if f":param {name}:" not in doc]
    assert missing == []


def test_client_attributes_are_documented() -> None:
    source = inspect.getsource(LsClient.__init__)
    for name in ("state", "session_info", "server_name", "client_ip", "bandwidth", "url"):
        assert re.search(rf"#:.*\n\s+self\.{name}\b", source), name
    assert LsClient.protocol_version.__doc__
    table_source = inspect.getsource(Table.__init__)
    for name in ("items", "schema"):
        assert re.search(rf"#:.*\n\s+self\.{name}\b", table_source), name
    assert "remove_callback" in (LsClient.__doc__ or "")
    assert "ConnectionState" in (LsClient.__doc__ or "")
    assert "TableState" in (Table.__doc__ or "")
