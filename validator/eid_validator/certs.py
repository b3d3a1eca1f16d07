"""Certificate checks: decoding, purpose, policies, validity, path building to trust anchors.

Path building: from the leaf, look for an issuer among the trust anchors and the optional untrusted
intermediates (same subject as the child's issuer, signature verifies); stop at the first anchor.
Every certificate on the path must be valid at ``now``; every issuing certificate (anchors too) must
be a CA (basicConstraints cA, keyCertSign when KeyUsage is present, pathLenConstraint respected).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from eid_validator.der import DerError, normalise_certificate, tbs_bytes
from eid_validator.errors import (
    CertificateDisallowedPolicyError,
    CertificateExpiredError,
    CertificateMissingPurposeError,
    CertificateNotTrustedError,
    CertificateNotYetValidError,
    CertificateWrongPurposeError,
    TokenParseError,
)

__all__ = [
    "MAX_PATH_LENGTH",
    "MOBILE_ID_POLICIES",
    "ParsedCertificate",
    "build_path",
    "check_auth_purpose",
    "check_policies",
    "check_validity",
    "decode_certificate",
    "load_certificate",
    "verify_issued_by",
]

logger = logging.getLogger(__name__)

MAX_PATH_LENGTH = 8
MOBILE_ID_POLICIES: tuple[x509.ObjectIdentifier, ...] = (
    x509.ObjectIdentifier("1.3.6.1.4.1.10015.1.3"),
    x509.ObjectIdentifier("1.3.6.1.4.1.10015.1.3.1"),
    x509.ObjectIdentifier("1.3.6.1.4.1.10015.1.3.2"),
    x509.ObjectIdentifier("1.3.6.1.4.1.10015.1.3.3"),
)


@dataclass(frozen=True)
class ParsedCertificate:
    """A certificate plus the bytes its issuer signed (they differ only for non-DER originals)."""

    certificate: x509.Certificate
    der: bytes
    tbs: bytes

    @classmethod
    def of(cls, certificate: x509.Certificate) -> ParsedCertificate:
        from cryptography.hazmat.primitives.serialization import Encoding

        return cls(certificate, certificate.public_bytes(Encoding.DER),
                   certificate.tbs_certificate_bytes)


def load_certificate(der: bytes) -> ParsedCertificate:
    """Parse DER, tolerating the known non-strict encodings of some national CAs.

    Raises:
        ValueError: not a certificate even after normalisation.
    """
    try:
        certificate = x509.load_der_x509_certificate(der)
        _ = certificate.extensions  # parsed lazily; force strict parsing now
        return ParsedCertificate(certificate, der, certificate.tbs_certificate_bytes)
    except ValueError as strict_error:
        try:
            fixed = normalise_certificate(der)
            certificate = x509.load_der_x509_certificate(fixed)
            _ = certificate.extensions
            original_tbs = tbs_bytes(der)
        except (ValueError, DerError):
            raise strict_error from None
        logger.debug("certificate %s is not strict DER; normalised", certificate.subject)
        return ParsedCertificate(certificate, der, original_tbs)


def decode_certificate(value: object) -> ParsedCertificate:
    """Decode ``unverifiedCertificate`` (standard padded base64 of DER).

    Raises:
        TokenParseError: not a string, not base64, or not a certificate.
    """
    if not isinstance(value, str) or not value:
        raise TokenParseError("unverifiedCertificate is missing", check="certificate-decode")
    try:
        der = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TokenParseError("unverifiedCertificate is not base64",
                              check="certificate-decode") from exc
    try:
        return load_certificate(der)
    except ValueError as exc:
        raise TokenParseError(f"unverifiedCertificate is not an X.509 certificate: {exc}",
                              check="certificate-decode") from exc


def _extension(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> object | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def check_auth_purpose(certificate: x509.Certificate) -> None:
    """KeyUsage present with digitalSignature; EKU, if present, includes clientAuth."""
    usage = _extension(certificate, x509.KeyUsage)
    if usage is None:
        raise CertificateMissingPurposeError("certificate has no KeyUsage extension")
    assert isinstance(usage, x509.KeyUsage)
    if not usage.digital_signature:
        raise CertificateWrongPurposeError("certificate KeyUsage lacks digitalSignature")
    eku = _extension(certificate, x509.ExtendedKeyUsage)
    if eku is not None:
        assert isinstance(eku, x509.ExtendedKeyUsage)
        if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            raise CertificateWrongPurposeError("certificate ExtendedKeyUsage lacks clientAuth")


def check_policies(certificate: x509.Certificate,
                   disallowed: Iterable[x509.ObjectIdentifier]) -> None:
    """None of the certificate's policies may be in ``disallowed``."""
    policies = _extension(certificate, x509.CertificatePolicies)
    if policies is None:
        return
    assert isinstance(policies, x509.CertificatePolicies)
    banned = set(disallowed)
    for info in policies:
        if info.policy_identifier in banned:
            raise CertificateDisallowedPolicyError(
                f"certificate policy {info.policy_identifier.dotted_string} is not allowed")


def check_validity(certificate: x509.Certificate, now: datetime, *, what: str = "user") -> None:
    """``now`` must lie within notBefore..notAfter (inclusive)."""
    check = "validity" if what == "user" else f"{what}-validity"
    if now < certificate.not_valid_before_utc:
        raise CertificateNotYetValidError(
            f"{what} certificate is not valid before {certificate.not_valid_before_utc}",
            check=check)
    if now > certificate.not_valid_after_utc:
        raise CertificateExpiredError(
            f"{what} certificate expired at {certificate.not_valid_after_utc}", check=check)


def verify_with_key(public_key: object, signature: bytes, data: bytes,
                    hash_algorithm: hashes.HashAlgorithm | None,
                    parameters: object | None = None) -> None:
    """Verify an X.509-style signature (certificate, OCSP response) over ``data``.

    Raises:
        InvalidSignature: the signature does not verify or the key type does not fit.
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        if hash_algorithm is None:
            raise InvalidSignature("RSA signature without a hash")
        pad = parameters if isinstance(parameters, padding.PSS | padding.PKCS1v15) \
            else padding.PKCS1v15()
        public_key.verify(signature, data, pad, hash_algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if hash_algorithm is None:
            raise InvalidSignature("ECDSA signature without a hash")
        public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
    elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        public_key.verify(signature, data)
    else:
        raise InvalidSignature(f"unsupported key type {type(public_key).__name__}")


def verify_issued_by(child: ParsedCertificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s subject is ``child``'s issuer and its key signed ``child``."""
    cert = child.certificate
    if cert.issuer != issuer.subject:
        return False
    try:
        verify_with_key(issuer.public_key(), cert.signature, child.tbs,
                        cert.signature_hash_algorithm, cert.signature_algorithm_parameters)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _check_ca(issuer: x509.Certificate, intermediates_below: int) -> str | None:
    """Why ``issuer`` may not issue this path, or None when it may."""
    constraints = _extension(issuer, x509.BasicConstraints)
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        return f"{issuer.subject.rfc4514_string()} is not a CA (basicConstraints)"
    if constraints.path_length is not None and intermediates_below > constraints.path_length:
        return f"{issuer.subject.rfc4514_string()} path length constraint exceeded"
    usage = _extension(issuer, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
        return f"{issuer.subject.rfc4514_string()} KeyUsage lacks keyCertSign"
    return None


def build_path(leaf: ParsedCertificate, anchors: Sequence[x509.Certificate],
               intermediates: Sequence[ParsedCertificate], now: datetime) -> list[x509.Certificate]:
    """Find a path leaf → … → anchor; return it (leaf first, anchor last).

    The leaf's own validity is checked by the caller (:func:`check_validity`).

    Raises:
        CertificateNotTrustedError: no acceptable path.
        CertificateExpiredError / CertificateNotYetValidError: the only path runs through a CA
            certificate outside its validity (``check`` is ``ca-validity``).
    """
    reasons: list[str] = []
    validity_errors: list[CertificateExpiredError | CertificateNotYetValidError] = []

    def extend(path: list[ParsedCertificate]) -> list[x509.Certificate] | None:
        child = path[-1]
        if len(path) > MAX_PATH_LENGTH:
            reasons.append("path too long")
            return None
        candidates = [(ParsedCertificate.of(a), True) for a in anchors]
        candidates += [(c, False) for c in intermediates]
        for candidate, is_anchor in candidates:
            if any(candidate.der == p.der for p in path):
                continue
            if not verify_issued_by(child, candidate.certificate):
                continue
            why = _check_ca(candidate.certificate, len(path) - 1)
            if why:
                reasons.append(why)
                continue
            try:
                check_validity(candidate.certificate, now, what="ca")
            except (CertificateExpiredError, CertificateNotYetValidError) as exc:
                validity_errors.append(exc)
                continue
            if is_anchor:
                return [p.certificate for p in path] + [candidate.certificate]
            found = extend([*path, candidate])
            if found:
                return found
        return None

    path = extend([leaf])
    if path is not None:
        return path
    if validity_errors and not reasons:
        raise validity_errors[0]
    detail = "; ".join(reasons) or "no issuer among the trusted CAs"
    raise CertificateNotTrustedError(
        f"certificate {leaf.certificate.subject.rfc4514_string()} is not trusted: {detail}")
