"""TEST-ONLY helpers: a throw-away PKI and a local OCSP responder. Never use in production.

Not imported by ``eid_validator``. Reusable by end-to-end tests (the virtual card's PKI)::

    responder = OcspResponder(issuer_cert, responder_cert, responder_key)
    url = responder.start()              # http://127.0.0.1:<port>/ ; put it in the leaf's AIA
    responder.set_status(leaf.serial_number, CertStatus.REVOKED)
    ...
    responder.stop()

Misbehaviour switches (attributes, change any time): ``wrong_nonce``, ``omit_nonce``,
``this_update_offset`` (e.g. -10 min for a stale answer), ``bad_signature``,
``omit_certificate``, ``response_status`` (e.g. ``OCSPResponseStatus.TRY_LATER``), ``http_status``.
"""

from __future__ import annotations

import enum
import http.server
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

__all__ = [
    "CertStatus",
    "OcspResponder",
    "PrivateKey",
    "SamplePki",
    "issue_certificate",
    "make_key",
    "name",
]

logger = logging.getLogger(__name__)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | \
    ed448.Ed448PrivateKey


class CertStatus(enum.Enum):
    GOOD = "GOOD"
    REVOKED = "REVOKED"
    UNKNOWN = "UNKNOWN"


def make_key(kind: str = "ec-p384") -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """``ec-p256``, ``ec-p384``, ``ec-p521`` or ``rsa-<bits>``."""
    curves: dict[str, ec.EllipticCurve] = {
        "ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1(), "ec-p521": ec.SECP521R1()}
    if kind in curves:
        return ec.generate_private_key(curves[kind])
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[4:]))
    raise ValueError(f"unknown key kind {kind!r}")


def name(common_name: str, *, country: str | None = None, serial_number: str | None = None,
         given_name: str | None = None, surname: str | None = None) -> x509.Name:
    """A subject name; attributes in the order ID-card certificates use."""
    attrs = []
    if country:
        attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    if surname:
        attrs.append(x509.NameAttribute(NameOID.SURNAME, surname))
    if given_name:
        attrs.append(x509.NameAttribute(NameOID.GIVEN_NAME, given_name))
    if serial_number:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    return x509.Name(attrs)


def _signing_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _key_usage(*, digital_signature: bool = False, content_commitment: bool = False,
               key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature, content_commitment, False, False, False,
                         key_cert_sign, crl_sign, False, False)


_DEFAULT = object()


def issue_certificate(subject: x509.Name, public_key: object, issuer: x509.Certificate | None,
                      issuer_key: PrivateKey, *,
                      not_before: datetime | None = None, not_after: datetime | None = None,
                      ca: bool = False, path_length: int | None = None,
                      key_usage: x509.KeyUsage | None | object = _DEFAULT,
                      eku: Sequence[x509.ObjectIdentifier] | None = None,
                      policies: Sequence[x509.ObjectIdentifier] = (),
                      ocsp_url: str | None = None,
                      serial_number: int | None = None) -> x509.Certificate:
    """Issue a certificate (``issuer=None``: self-signed root, subject = issuer name).

    ``key_usage`` defaults to keyCertSign+cRLSign for CAs and digitalSignature for leaves;
    pass ``None`` to leave the extension out.
    """
    now = datetime.now(UTC)
    not_before = not_before or now - timedelta(days=1)
    not_after = not_after or now + timedelta(days=365)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.subject if issuer is not None else subject)
               .public_key(public_key)  # type: ignore[arg-type]
               .serial_number(serial_number or x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length),
                              critical=True))
    if key_usage is _DEFAULT:
        key_usage = _key_usage(key_cert_sign=True, crl_sign=True) if ca \
            else _key_usage(digital_signature=True)
    if isinstance(key_usage, x509.KeyUsage):
        builder = builder.add_extension(key_usage, critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if policies:
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(p, None) for p in policies]),
            critical=False)
    if ocsp_url:
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(ocsp_url))]), critical=False)
    return builder.sign(issuer_key, _signing_hash(issuer_key))  # type: ignore[arg-type]


class OcspResponder:
    """A tiny OCSP responder on 127.0.0.1 for one issuing CA (test use only).

    Serials without a status set answer ``default_status`` (UNKNOWN unless changed).
    """

    def __init__(self, issuer_cert: x509.Certificate, responder_cert: x509.Certificate,
                 responder_key: PrivateKey, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 next_update_after: timedelta | None = timedelta(minutes=10)) -> None:
        self.issuer_cert = issuer_cert
        self.responder_cert = responder_cert
        self.responder_key = responder_key
        self.clock = clock
        self.next_update_after = next_update_after
        self.default_status = CertStatus.UNKNOWN
        self.wrong_nonce = False
        self.omit_nonce = False
        self.this_update_offset = timedelta(0)
        self.bad_signature = False
        self.omit_certificate = False
        self.response_status: ocsp.OCSPResponseStatus | None = None
        self.http_status = 200
        self.requests: list[bytes] = []
        self._statuses: dict[int, tuple[CertStatus, datetime | None]] = {}
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def set_status(self, serial: int, status: CertStatus,
                   revoked_at: datetime | None = None) -> None:
        with self._lock:
            self._statuses[serial] = (status, revoked_at)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("responder not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def start(self) -> str:
        """Serve on a free loopback port; return the URL to put in AIA."""
        responder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = responder.answer(body)
                self.send_response(responder.http_status)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                logger.debug("ocsp responder: " + format, *args)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="test-ocsp-responder", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OcspResponder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, request_der: bytes) -> bytes:
        """The DER OCSP response to ``request_der`` (also usable without HTTP)."""
        self.requests.append(request_der)
        if self.response_status is not None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(self.response_status).public_bytes(
                serialization.Encoding.DER)
        try:
            request = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return self._unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        expected = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            _hash(request.hash_algorithm, self.issuer_cert.subject.public_bytes()),
            _hash(request.hash_algorithm, _key_bits(self.issuer_cert)),
            request.serial_number, request.hash_algorithm).build()
        if (request.issuer_name_hash, request.issuer_key_hash) != (
                expected.issuer_name_hash, expected.issuer_key_hash):
            return self._unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        return self._sign(request)

    def _unsuccessful(self, status: ocsp.OCSPResponseStatus) -> bytes:
        return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
            serialization.Encoding.DER)

    def _sign(self, request: ocsp.OCSPRequest) -> bytes:
        with self._lock:
            status, revoked_at = self._statuses.get(request.serial_number,
                                                    (self.default_status, None))
        this_update = self.clock() + self.this_update_offset
        next_update = this_update + self.next_update_after if self.next_update_after else None
        cert_status = {CertStatus.GOOD: ocsp.OCSPCertStatus.GOOD,
                       CertStatus.REVOKED: ocsp.OCSPCertStatus.REVOKED,
                       CertStatus.UNKNOWN: ocsp.OCSPCertStatus.UNKNOWN}[status]
        revoked = status is CertStatus.REVOKED
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            request.issuer_name_hash, request.issuer_key_hash, request.serial_number,
            request.hash_algorithm, cert_status, this_update, next_update,
            (revoked_at or this_update - timedelta(days=1)) if revoked else None,
            x509.ReasonFlags.key_compromise if revoked else None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, self.responder_cert)
        if not self.omit_certificate:
            builder = builder.certificates([self.responder_cert])
        nonce = _request_nonce(request)
        if nonce is not None and not self.omit_nonce:
            if self.wrong_nonce:
                nonce = bytes(b ^ 0xFF for b in nonce)
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(self.responder_key,  # type: ignore[arg-type]
                                _signing_hash(self.responder_key))
        der = response.public_bytes(serialization.Encoding.DER)
        if self.bad_signature:
            signature = response.signature
            der = der.replace(signature, signature[:-1] + bytes([signature[-1] ^ 0x01]), 1)
        return der


def _request_nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _hash(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _key_bits(certificate: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING contents (what OCSP's issuerKeyHash hashes)."""
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return key.public_bytes(serialization.Encoding.Raw,  # type: ignore[union-attr]
                            serialization.PublicFormat.Raw)


class SamplePki:
    """Root (RSA-2048) → intermediate "Citizen CA" (EC P-384) → users, plus an OCSP responder
    certificate (EC P-256, OCSPSigning EKU) issued by the intermediate. Test use only."""

    def __init__(self, *, ocsp_url: str | None = None, prefix: str = "Sample") -> None:
        self.ocsp_url = ocsp_url
        self.root_key = make_key("rsa-2048")
        self.root = issue_certificate(name(f"{prefix} Root CA", country="BE"),
                                      self.root_key.public_key(), None, self.root_key,
                                      ca=True, path_length=1)
        self.ca_key = make_key("ec-p384")
        self.ca = issue_certificate(name(f"{prefix} Citizen CA", country="BE"),
                                    self.ca_key.public_key(), self.root, self.root_key,
                                    ca=True, path_length=0)
        self.responder_key = make_key("ec-p256")
        self.responder = issue_certificate(
            name(f"{prefix} OCSP Responder", country="BE"), self.responder_key.public_key(),
            self.ca, self.ca_key, key_usage=_key_usage(digital_signature=True),
            eku=[x509.ExtendedKeyUsageOID.OCSP_SIGNING])

    def issue_user(self, kind: str = "ec-p384", *, role: str = "Authentication",
                   serial_number: str = "PNOBE-85010112345", country: str = "BE",
                   **options: object) -> tuple[rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                                               x509.Certificate]:
        """A user key and certificate; ``options`` go to :func:`issue_certificate`."""
        key = make_key(kind)
        subject = name(f"Alice Sample ({role})", country=country, serial_number=serial_number,
                       given_name="Alice", surname="Sample")
        if role == "Authentication":
            defaults: dict[str, object] = {"eku": [x509.ExtendedKeyUsageOID.CLIENT_AUTH]}
        else:
            defaults = {"key_usage": _key_usage(content_commitment=True)}
        defaults["ocsp_url"] = self.ocsp_url
        defaults.update(options)
        cert = issue_certificate(subject, key.public_key(), self.ca, self.ca_key,
                                 **defaults)  # type: ignore[arg-type]
        return key, cert

    def responder_for(self, **kwargs: object) -> OcspResponder:
        return OcspResponder(self.ca, self.responder, self.responder_key,
                             **kwargs)  # type: ignore[arg-type]
