"""The certificate set as the resident agent serves it: found, checked and loaded with the
standard library only.

:mod:`agent.tls.localca` makes the set (with ``cryptography``); the serving process only
reads it: the leaf must be issued by the CA next to it, match its key and have more than
:data:`RENEW_BEFORE` left. When it does not, ``serve`` has the set made by a short-lived
``eid-agent prepare-certificate`` process, so the resident never loads ``cryptography``
(see ``docs/performance.md``, Idle).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from agent.smartcard.certinfo import CertificateInfo, read_certificate

__all__ = ["RENEW_BEFORE", "ServedTls", "TlsFiles", "fingerprint", "read", "server_context"]

RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA certificate, the leaf and the leaf's key live."""

    folder: Path

    @classmethod
    def in_config_dir(cls, config_dir: Path) -> TlsFiles:
        return cls(Path(config_dir) / "tls")

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "cert.pem"

    @property
    def key(self) -> Path:
        return self.folder / "key.pem"

    def remove(self) -> None:
        for path in (self.key, self.cert, self.ca):
            path.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, as ``AB:CD:…`` (what browsers show)."""
    return hashlib.sha256(der).digest().hex(":").upper()


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The server side of ``wss://``: TLS 1.2+, the leaf and its key.

    Raises:
        ssl.SSLError: the key does not belong to the leaf, or a file is not PEM.
        OSError: a file cannot be read.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    return context


@dataclass(frozen=True)
class ServedTls:
    """A usable set: its files, the two certificates as read, and the loaded server context."""

    files: TlsFiles
    ca: CertificateInfo
    leaf: CertificateInfo
    ssl_context: ssl.SSLContext

    @property
    def ca_fingerprint(self) -> str:
        return fingerprint(self.ca.der)

    @property
    def expires(self) -> dt.datetime:
        return self.leaf.not_after

    def context(self) -> ssl.SSLContext:
        return self.ssl_context


def _certificate(path: Path) -> CertificateInfo:
    return read_certificate(ssl.PEM_cert_to_DER_cert(path.read_text(encoding="ascii")))


def read(files: TlsFiles, *, now: dt.datetime | None = None,
         renew_before: dt.timedelta = RENEW_BEFORE) -> ServedTls | None:
    """The set on disk when it can be served as it is, else None (missing, unreadable, the
    leaf not the CA's or not its key's, or fewer than ``renew_before`` left)."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        ca = _certificate(files.ca)
        leaf = _certificate(files.cert)
        context = server_context(files)
    except (OSError, ValueError, ssl.SSLError):
        return None
    if leaf.issuer != ca.subject or leaf.not_after - now <= renew_before:
        return None
    return ServedTls(files, ca, leaf, context)
