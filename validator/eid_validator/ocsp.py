"""OCSP revocation check of the user certificate, following the Java Web eID validator.

Request: SHA-1 CertID plus a nonce extension (unless the URL is listed as nonce-disabled), POSTed
to the designated responder (if configured and covering the issuer) or to the AIA OCSP URL.
Response: SUCCESSFUL, exactly one SingleResp with our CertID, the responder certificate in the
response (valid, OCSPSigning EKU, chaining to a trust anchor), or the designated responder's
certificate; signature verifies; thisUpdate/nextUpdate within the allowed windows; the nonce
matches; status GOOD.
"""

from __future__ import annotations

import logging
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from eid_validator.certs import ParsedCertificate, build_path, check_validity, verify_with_key
from eid_validator.errors import (
    CertificateRevokedError,
    OcspCheckFailedError,
    ValidationError,
)

__all__ = [
    "DesignatedOcspService",
    "OcspConfig",
    "OcspFetcher",
    "check_revocation",
    "http_fetch",
    "ocsp_url_of",
]

logger = logging.getLogger(__name__)

OcspFetcher = Callable[[str, bytes, float], bytes]
"""``fetcher(url, request_der, timeout_seconds) -> response_der``; must be thread-safe."""

MAX_RESPONSE_BYTES = 1 << 20


def http_fetch(url: str, request_der: bytes, timeout: float) -> bytes:
    """POST an OCSP request over plain HTTP(S) with urllib.

    Raises:
        OcspCheckFailedError: the responder cannot be reached or answers non-200.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise OcspCheckFailedError(f"OCSP URL {url!r} is not http(s)", check="ocsp-request")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=request_der, method="POST",
        headers={"Content-Type": "application/ocsp-request",
                 "Accept": "application/ocsp-response"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return bytes(response.read(MAX_RESPONSE_BYTES))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise OcspCheckFailedError(f"OCSP request to {url} failed: {exc}",
                                   check="ocsp-request") from exc


@dataclass(frozen=True)
class DesignatedOcspService:
    """A fixed OCSP responder (its URL and certificate) for the listed issuing CAs."""

    url: str
    responder_certificate: x509.Certificate
    supported_issuers: tuple[x509.Certificate, ...]

    def covers(self, issuer: x509.Certificate) -> bool:
        return any(issuer == candidate for candidate in self.supported_issuers)


@dataclass(frozen=True)
class OcspConfig:
    """OCSP settings; defaults are the Java validator's."""

    enabled: bool = True
    timeout: float = 5.0
    allowed_skew: timedelta = timedelta(minutes=15)
    max_this_update_age: timedelta = timedelta(minutes=2)
    designated: DesignatedOcspService | None = None
    nonce_disabled_urls: frozenset[str] = frozenset()
    fetcher: OcspFetcher = field(default=http_fetch)


def ocsp_url_of(certificate: x509.Certificate) -> str | None:
    """The first OCSP URL in the certificate's AuthorityInformationAccess, if any."""
    try:
        aia = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return None
    for description in aia.value:
        if (description.access_method == AuthorityInformationAccessOID.OCSP
                and isinstance(description.access_location, x509.UniformResourceIdentifier)):
            return description.access_location.value
    return None


def _fail(message: str, check: str = "ocsp") -> OcspCheckFailedError:
    return OcspCheckFailedError(message, check=check)


def _build_request(leaf: x509.Certificate, issuer: x509.Certificate,
                   nonce: bytes | None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1())  # noqa: S303
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _single_response(response: ocsp.OCSPResponse, leaf: x509.Certificate,
                     issuer: x509.Certificate) -> ocsp.OCSPSingleResponse:
    singles = list(response.responses)
    if len(singles) != 1:
        raise _fail(f"OCSP response has {len(singles)} SingleResponses, expected 1")
    single = singles[0]
    if not isinstance(single.hash_algorithm, hashes.SHA1):
        raise _fail("OCSP response CertID does not use SHA-1 as requested")
    expected = ocsp.OCSPRequestBuilder().add_certificate(
        leaf, issuer, hashes.SHA1()).build()  # noqa: S303
    if (single.serial_number != expected.serial_number
            or single.issuer_name_hash != expected.issuer_name_hash
            or single.issuer_key_hash != expected.issuer_key_hash):
        raise _fail("OCSP response CertID does not match the request")
    return single


def _responder_in_response(response: ocsp.OCSPResponse) -> x509.Certificate:
    certificates = response.certificates
    if not certificates:
        raise _fail("OCSP response does not contain the responder certificate", "ocsp-responder")
    for certificate in certificates:
        if response.responder_name is not None and certificate.subject == response.responder_name:
            return certificate
        if response.responder_key_hash is not None:
            key_id = x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest
            if key_id == response.responder_key_hash:
                return certificate
    raise _fail("no certificate in the OCSP response matches its ResponderID", "ocsp-responder")


def _check_responder(responder: x509.Certificate, issuer: x509.Certificate,
                     config: OcspConfig, anchors: Sequence[x509.Certificate],
                     intermediates: Sequence[ParsedCertificate], now: datetime) -> None:
    try:
        check_validity(responder, now, what="ocsp-responder")
    except ValidationError as exc:
        raise _fail(str(exc), "ocsp-responder") from exc
    if config.designated is not None and config.designated.covers(issuer):
        if responder != config.designated.responder_certificate:
            raise _fail("OCSP response not signed by the designated responder", "ocsp-responder")
        return
    try:
        eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        raise _fail("OCSP responder certificate lacks the OCSPSigning EKU", "ocsp-responder")
    try:
        build_path(ParsedCertificate.of(responder), anchors,
                   [*intermediates, ParsedCertificate.of(issuer)], now)
    except ValidationError as exc:
        raise _fail(f"OCSP responder certificate is not trusted: {exc}",
                    "ocsp-responder") from exc


def _check_times(single: ocsp.OCSPSingleResponse, config: OcspConfig, now: datetime) -> None:
    this_update = single.this_update_utc
    next_update = single.next_update_utc
    if this_update > now + config.allowed_skew:
        raise _fail(f"OCSP thisUpdate {this_update} is too far in the future", "ocsp-time")
    if this_update < now - config.max_this_update_age:
        raise _fail(f"OCSP thisUpdate {this_update} is too old", "ocsp-time")
    if next_update is not None:
        if next_update < now - config.allowed_skew:
            raise _fail(f"OCSP nextUpdate {next_update} is in the past", "ocsp-time")
        if next_update < this_update:
            raise _fail("OCSP nextUpdate is before thisUpdate", "ocsp-time")


def _check_nonce(response: ocsp.OCSPResponse, nonce: bytes | None) -> None:
    if nonce is None:
        return
    try:
        answered = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        raise _fail("OCSP response has no nonce", "ocsp-nonce") from None
    if answered != nonce:
        raise _fail("OCSP response nonce does not match the request", "ocsp-nonce")


def check_revocation(leaf: x509.Certificate, issuer: x509.Certificate, config: OcspConfig, *,
                     anchors: Sequence[x509.Certificate],
                     intermediates: Sequence[ParsedCertificate], now: datetime) -> None:
    """Ask OCSP whether ``leaf`` (issued by ``issuer``) is revoked.

    Raises:
        CertificateRevokedError: status REVOKED or UNKNOWN (``.status``).
        OcspCheckFailedError: no URL, transport failure, or an unacceptable response.
    """
    designated = config.designated if config.designated and config.designated.covers(issuer) \
        else None
    url = designated.url if designated else ocsp_url_of(leaf)
    if not url:
        raise _fail("certificate has no OCSP URL and no designated responder covers it",
                    "ocsp-url")
    nonce = None if url in config.nonce_disabled_urls else secrets.token_bytes(32)
    try:
        raw = config.fetcher(url, _build_request(leaf, issuer, nonce), config.timeout)
    except (OSError, ValueError) as exc:
        raise _fail(f"OCSP request to {url} failed: {exc}", "ocsp-request") from exc
    try:
        response = ocsp.load_der_ocsp_response(raw)
    except ValueError as exc:
        raise _fail(f"OCSP response cannot be parsed: {exc}") from exc
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise _fail(f"OCSP response status is {response.response_status.name}")
    single = _single_response(response, leaf, issuer)
    if designated is not None and not response.certificates:
        responder = designated.responder_certificate
    else:
        responder = _responder_in_response(response)
    try:
        verify_with_key(responder.public_key(), response.signature,
                        response.tbs_response_bytes, response.signature_hash_algorithm)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError) as exc:
        raise _fail("OCSP response signature does not verify", "ocsp-signature") from exc
    _check_responder(responder, issuer, config, anchors, intermediates, now)
    _check_times(single, config, now)
    _check_nonce(response, nonce)
    status = single.certificate_status
    if status is ocsp.OCSPCertStatus.REVOKED:
        reason = single.revocation_reason.value if single.revocation_reason else "unspecified"
        raise CertificateRevokedError(
            f"certificate revoked at {single.revocation_time_utc} ({reason})", status="REVOKED")
    if status is not ocsp.OCSPCertStatus.GOOD:
        raise CertificateRevokedError("OCSP status of the certificate is UNKNOWN",
                                      status="UNKNOWN")
    logger.debug("OCSP status GOOD for serial %x", leaf.serial_number)
