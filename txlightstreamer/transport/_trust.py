"""
The certificates a client trusts instead of the platform's, as `LsClient`'s and
`TransportOptions`'s ``trust_roots`` take them: PEM files, PEM text, certificates.
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["trust_root"]

# Each certificate block; anything around them (a key, comments, other blocks) is not one.
_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def read_trust_roots(roots: Any) -> Any:
    """
    ``trust_roots`` as a list of certificates: a PEM file path (or PEM text, str or bytes),
    a ``twisted.internet.ssl.Certificate``, or a list of these; anything else (an
    ``IOpenSSLTrustRoot``) is passed on. Files are read now: a clear ValueError for a file
    that cannot be read or holds no certificate.
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
        blocks = _CERTIFICATE.findall(pem)
        if not blocks:
            raise ValueError(f"trust_roots: no PEM certificate in {_name_of(root)}")
        for block in blocks:
            try:
                certificates.append(ssl.Certificate.loadPEM(block))
            except Exception:  # OpenSSL's error names no file
                raise ValueError(
                    f"trust_roots: a bad certificate in {_name_of(root)}") from None
    if not certificates:
        raise ValueError("trust_roots is empty")
    return certificates


def _pem_of(root: str | bytes | os.PathLike[str]) -> bytes:
    if isinstance(root, bytes):
        return root
    if isinstance(root, str) and "-----BEGIN" in root:
        return root.encode("ascii")
    try:
        # Read once, when the client makes its transports (before any connection).
        with open(root, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"trust_roots: cannot read {os.fspath(root)!r}: {e.strerror}") from None


def _name_of(root: object) -> str:
    if isinstance(root, str | os.PathLike) and "-----BEGIN" not in str(root):
        return repr(os.fspath(root))
    return "the given text"


def trust_root(roots: Any) -> Any:
    """``roots`` (anything `read_trust_roots` reads) as an ``IOpenSSLTrustRoot``."""
    from twisted.internet import ssl

    certificates = read_trust_roots(roots)
    if isinstance(certificates, list):
        return ssl.trustRootFromCertificates(certificates)
    return certificates  # an IOpenSSLTrustRoot
