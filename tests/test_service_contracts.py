"""
The service and its options at the edges (found by review, each failing before its fix):
a stopped `LsService` refuses to start again instead of half-starting, a CA file with a
key or text after its certificates is read as its certificates, a taken --demo-port is
one clear line, and --demo-profile ig keeps its account when LS_PASSWORD is set.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, ssl
from twisted.internet.protocol import ServerFactory
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python import usage

from txlightstreamer import LsClient
from txlightstreamer.service import JsonLinesWriter, LsService, Options

from .support import wait_until
from .test_clean_reactor import assert_leaves_nothing


def parse(*args: str, environ: dict[str, str] | None = None) -> Options:
    options = Options(environ=environ or {})
    options.parseOptions(list(args))
    return options


@pytest_twisted.ensureDeferred
async def test_a_stopped_service_refuses_to_start_again() -> None:
    # It half-started: the demo server ran again, no client connected, and the next
    # stopService left the demo server's port and timers behind.
    async def scenario() -> None:
        out = io.BytesIO()
        service = LsService(parse("--demo"), reactor=reactor, output=JsonLinesWriter(out))
        service.startService()
        await wait_until(lambda: b'"update"' in out.getvalue())
        await service.stopService()
        with pytest.raises(RuntimeError, match="runs once"):
            service.startService()
        assert not service.running
        assert not any(child.running for child in service)
        await service.stopService()

    await assert_leaves_nothing(scenario)


def _certificate_then_key(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    # PrivateCertificate.dumpPEM: the certificate, then its private key.
    path.write_bytes(ssl.KeyPair.generate().selfSignedCert(1, CN="127.0.0.1").dumpPEM())
    return path


def test_trust_roots_are_the_certificates_of_the_file(tmp_path: Path) -> None:
    LsClient("https://127.0.0.1:1", reactor=reactor,
             trust_roots=str(_certificate_then_key(tmp_path)))
    certificate = ssl.KeyPair.generate().selfSignedCert(1, CN="127.0.0.1")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"# a bundle\n" + ssl.Certificate(certificate.original).dumpPEM()
                       + b"# end of bundle\n")
    LsClient("https://127.0.0.1:1", reactor=reactor, trust_roots=str(bundle))


def test_a_bad_certificate_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(usage.UsageError, match="bad certificate"):
        parse("--url", "https://127.0.0.1:1", "--ca-file", str(bad))
    with pytest.raises(ValueError, match="bad certificate"):
        LsClient("https://127.0.0.1:1", reactor=reactor, trust_roots=str(bad))


@pytest_twisted.ensureDeferred
async def test_a_ca_file_with_a_key_starts_the_service(tmp_path: Path) -> None:
    options = parse("--url", "https://127.0.0.1:1", "--subscribe", "MERGE item1 f",
                    "--ca-file", str(_certificate_then_key(tmp_path)))
    service = LsService(options, reactor=reactor, output=JsonLinesWriter(io.BytesIO()))
    service.startService()
    try:
        await wait_until(lambda: service.client is not None)
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_taken_demo_port_is_one_clear_line() -> None:
    busy = reactor.listenTCP(0, ServerFactory(), interface="127.0.0.1")
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        service = LsService(parse("--demo-port", str(busy.getHost().port)), reactor=reactor,
                            output=JsonLinesWriter(io.BytesIO()))
        service.startService()
        assert await service.when_done() == 1
    finally:
        globalLogPublisher.removeObserver(seen.append)
        await busy.stopListening()
    mine = [e for e in seen if str(e.get("log_namespace", "")).startswith("txlightstreamer")]
    assert not [e for e in mine if e.get("log_level") == LogLevel.critical]
    assert not [e for e in mine if "log_failure" in e]


def test_demo_profile_ig_keeps_its_account_with_a_password_in_the_environment() -> None:
    options = parse("--demo-profile", "ig", environ={"LS_PASSWORD": "mine"})
    assert options["user"] is not None
    assert options.password != "mine"
    explicit = parse("--demo-profile", "ig", "--password", "given")
    assert explicit.password == "given"
