"""The agent's own TLS certificate for ``wss://`` on loopback, from a one-shot local CA.

Per install, :func:`ensure` makes a CA whose certificate is name-constrained (critical
NameConstraints: DNS ``localhost``, IP ``127.0.0.1/32`` and ``::1/128`` only; basicConstraints
CA with pathlen 0), signs one leaf with it (SAN ``localhost``, ``127.0.0.1``, ``::1``; EKU
serverAuth; :data:`LEAF_DAYS` days) and drops the CA's private key: it lives only in a local
variable of :func:`_issue`, is never serialized and never written anywhere, so the CA can never
sign anything else. Browsers that trust the CA (see :mod:`agent.tls.truststore`) accept the leaf,
and even a stolen leaf key only serves loopback names.

Files, in ``<config dir>/tls/`` (folder 0700): ``ca.pem`` (the CA certificate, public),
``cert.pem`` (the leaf), ``key.pem`` (the leaf's key, 0600). When fewer than
:data:`RENEW_BEFORE` remain (or the files are broken), a NEW CA and leaf replace them; the
caller then swaps the trust stores (the old CA certificate is handed back for removal).

Pure: cryptography and the file system only. The serving process reads the set with
:mod:`agent.tls.served` (standard library) and runs this module only in a short-lived
``eid-agent prepare-certificate`` process.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.tls.served import RENEW_BEFORE, TlsFiles, server_context

__all__ = [
    "CA_DAYS",
    "LEAF_DAYS",
    "LOOPBACK_NAMES",
    "RENEW_BEFORE",
    "LocalTls",
    "TlsFiles",
    "ensure",
    "fingerprint",
    "load",
    "server_context",
]

LEAF_DAYS = 365
CA_DAYS = LEAF_DAYS + 1
"""The CA outlives its only leaf by a day; it can sign nothing after creation anyway."""
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
CA_NAME = "eid-agent local CA"


@dataclass(frozen=True)
class LocalTls:
    """The certificate set in use, as loaded or just made.

    Attributes:
        files: where it lives.
        ca: the CA certificate (what the trust stores hold).
        leaf: the agent's certificate.
        created: True when this call made a new set (first start or renewal).
        replaced_ca: the CA certificate of the set a renewal replaced (to be removed from
            the trust stores), else None.
    """

    files: TlsFiles
    ca: x509.Certificate
    leaf: x509.Certificate
    created: bool = False
    replaced_ca: x509.Certificate | None = None

    @property
    def ca_fingerprint(self) -> str:
        return fingerprint(self.ca)

    @property
    def expires(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc

    def context(self) -> ssl.SSLContext:
        return server_context(self.files)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, as ``AB:CD:…`` (what browsers show)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eid-agent"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _loopback_san() -> list[x509.GeneralName]:
    return [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]


def _issue(now: dt.datetime) -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new CA certificate, the leaf it signed, and the leaf's key.

    The CA key is created here and only referenced by the local ``ca_key``; it is deleted
    before returning, so when this returns nothing holds it (and it was never serialized).
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    start = now - dt.timedelta(minutes=5)  # clocks of the browsers' machine may lag a little
    # A random serial and a unique name per install: NSS refuses two CAs with the same
    # issuer and serial, and a renewal must not collide with the CA it replaces.
    suffix = os.urandom(4).hex()
    ca_name = _name(f"{CA_NAME} {suffix}")
    ca_public = ca_key.public_key()
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_public)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(
                permitted_subtrees=[
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
                    x509.IPAddress(ipaddress.ip_network("::1/128")),
                ],
                excluded_subtrees=None,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_loopback_san()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    del ca_key  # the only reference: the CA can sign nothing more
    return ca, leaf, leaf_key


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file created 0600 (never readable by others, not even briefly)."""
    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def load(files: TlsFiles) -> LocalTls | None:
    """The set on disk, or None when it is missing or unreadable."""
    try:
        ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
        leaf = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return None
    if leaf.issuer != ca.subject:
        return None
    return LocalTls(files, ca, leaf)


def ensure(
    config_dir: Path,
    *,
    now: dt.datetime | None = None,
    renew_before: dt.timedelta = RENEW_BEFORE,
) -> LocalTls:
    """The certificate set for this install: loaded, or made when missing, broken or near
    expiry (fewer than ``renew_before`` left)."""
    now = now or _now()
    files = TlsFiles.in_config_dir(config_dir)
    current = load(files)
    if current is not None and current.leaf.not_valid_after_utc - now > renew_before:
        return current
    files.folder.mkdir(parents=True, exist_ok=True)
    os.chmod(files.folder, 0o700)
    ca, leaf, leaf_key = _issue(now)
    _write_private(
        files.key,
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _write_public(files.cert, leaf.public_bytes(serialization.Encoding.PEM))
    _write_public(files.ca, ca.public_bytes(serialization.Encoding.PEM))
    return LocalTls(
        files, ca, leaf, created=True, replaced_ca=current.ca if current is not None else None
    )

