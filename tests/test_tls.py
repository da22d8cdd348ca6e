"""
TLS with a private CA: a CA and a server certificate for 127.0.0.1 are generated at run
time; the client succeeds with the CA configured on that client only, and fails clearly
(a non-retryable `TransportError` naming the host, session DISCONNECTED, no retry loop)
without it, over HTTP and over WebSocket.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import reactor, ssl, task
from twisted.web.client import BrowserLikePolicyForHTTPS

from txlightstreamer import MODE_MERGE, LsClient, Table
from txlightstreamer.errors import TransportError
from txlightstreamer.testing import TlcpServer
from txlightstreamer.transport import TransportOptions

from .support import wait_until

pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki() -> tuple[bytes, bytes, bytes]:
    """A fresh CA certificate, and a server certificate and key it signed (all PEM)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("txlightstreamer test CA"))
        .issuer_name(_name("txlightstreamer test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ca_cert.public_bytes(pem), cert.public_bytes(pem), key_pem


@pytest.fixture(scope="module")
def pki() -> tuple[bytes, bytes, bytes]:
    return make_pki()


@pytest_twisted.async_yield_fixture
async def tls_server(pki: tuple[bytes, bytes, bytes]) -> AsyncIterator[TlcpServer]:
    _, cert_pem, key_pem = pki
    options = ssl.PrivateCertificate.loadPEM(cert_pem + key_pem).options()
    srv = TlcpServer(keepalive_millis=1000)
    await srv.listen(reactor, port=0, interface="127.0.0.1", tls=options)
    yield srv
    await srv.stop()


TRANSPORTS = ["WS-STREAMING", "HTTP-STREAMING", None]


def _needs_ws(forced: str | None) -> None:
    if forced is None or forced.startswith("WS"):
        pytest.importorskip("autobahn")


async def _check_streaming(client: LsClient, server: TlcpServer) -> None:
    table = Table(client, mode=MODE_MERGE, item_ids=["t"], schema=["v"])
    got: list[Any] = []
    table.on_update(lambda item, row: got.append(row[0]))
    await table.when_subscribed()
    server.data.update("t", {"v": "secret"})
    await wait_until(lambda: got == ["secret"])


@pytest.mark.parametrize("forced", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_private_ca_via_trust_roots(tls_server: TlcpServer, pki: Any,
                                          forced: str | None) -> None:
    _needs_ws(forced)
    ca_pem = pki[0]
    assert tls_server.url is not None and tls_server.url.startswith("https://127.0.0.1:")
    client = LsClient(tls_server.url, forced_transport=forced,
                      transport_options=TransportOptions(trust_roots=ca_pem))
    try:
        await client.create_session()
        expected = forced or "WS-STREAMING"
        assert client.status == f"CONNECTED:{expected}"
        await _check_streaming(client, tls_server)
    finally:
        await client.destroy()


@pytest.mark.parametrize("forced", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_private_ca_via_tls_policy(tls_server: TlcpServer, pki: Any,
                                         forced: str | None) -> None:
    _needs_ws(forced)
    policy = BrowserLikePolicyForHTTPS(trustRoot=ssl.Certificate.loadPEM(pki[0]))
    client = LsClient(tls_server.url, forced_transport=forced, tls_policy=policy)
    try:
        await client.create_session()
        assert client.status == f"CONNECTED:{forced or 'WS-STREAMING'}"
        await _check_streaming(client, tls_server)
    finally:
        await client.destroy()


@pytest.mark.parametrize("forced", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_untrusted_certificate_fails_clearly(tls_server: TlcpServer,
                                                   forced: str | None) -> None:
    _needs_ws(forced)
    client = LsClient(tls_server.url, forced_transport=forced, retry_delay=0.2)
    statuses: list[str] = []
    client.on_status(lambda status, reason: statuses.append(status))
    try:
        with pytest.raises(TransportError) as info:
            await client.create_session()
        error = info.value
        assert not error.retryable
        assert "TLS failure with 127.0.0.1" in str(error)
        assert "certificate verify failed" in str(error)
        scheme = "https" if forced == "HTTP-STREAMING" else None
        if scheme:
            assert error.url.startswith("https://127.0.0.1:")
        assert client.state == "DISCONNECTED"
        assert statuses[-1] == "DISCONNECTED"
        # No retry loop: nothing happens any more.
        count = len(statuses)
        await task.deferLater(reactor, 0.5, lambda: None)
        assert len(statuses) == count
        assert list(tls_server.received) == []  # no request ever got past TLS
        assert tls_server.sessions == {}
    finally:
        await client.destroy()


@pytest.mark.parametrize("forced", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_another_ca_is_not_trusted(tls_server: TlcpServer, forced: str | None) -> None:
    _needs_ws(forced)
    other_ca = make_pki()[0]
    client = LsClient(tls_server.url, forced_transport=forced,
                      transport_options=TransportOptions(trust_roots=other_ca))
    try:
        with pytest.raises(TransportError, match="TLS failure with 127.0.0.1") as info:
            await client.create_session()
        assert not info.value.retryable
    finally:
        await client.destroy()


def test_tls_policy_and_trust_roots_are_exclusive(pki: Any) -> None:
    with pytest.raises(ValueError, match="either tls_policy or trust_roots"):
        LsClient("https://127.0.0.1:9", tls_policy=BrowserLikePolicyForHTTPS(),
                 transport_options=TransportOptions(trust_roots=pki[0]))
