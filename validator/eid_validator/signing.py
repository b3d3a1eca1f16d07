"""Check a signature returned by ``webeid.sign()`` (hash signing) on the server."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from eid_validator.algorithms import KeyFamily, hash_for_name, verify_prehashed
from eid_validator.certs import ParsedCertificate, build_path, check_validity, load_certificate
from eid_validator.errors import (
    AlgorithmNotAllowedError,
    CertificateMissingPurposeError,
    CertificateWrongPurposeError,
    NotSamePersonError,
    TokenParseError,
)
from eid_validator.identity import ValidatedIdentity
from eid_validator.nonce import utc_now

__all__ = ["SignatureCheck", "verify_signature"]

logger = logging.getLogger(__name__)

_FAMILIES = {
    ("ECC", "NONE"): KeyFamily.EC,
    ("RSA", "PKCS1.5"): KeyFamily.RSA_PKCS1,
    ("RSA", "PSS"): KeyFamily.RSA_PSS,
}

SignatureCheck = ValidatedIdentity
"""The signer's identity (same person as the authenticated user) on success."""


def _certificate(value: bytes | str) -> ParsedCertificate:
    try:
        der = base64.b64decode(value, validate=True) if isinstance(value, str) else bytes(value)
        return load_certificate(der)
    except (binascii.Error, ValueError) as exc:
        raise TokenParseError(f"signing certificate cannot be decoded: {exc}",
                              check="certificate-decode") from exc


def _family(signature_algorithm: Mapping[str, object], hash_function: str,
            public_key: object) -> KeyFamily:
    crypto = signature_algorithm.get("cryptoAlgorithm")
    pad = signature_algorithm.get("paddingScheme")
    if signature_algorithm.get("hashFunction") != hash_function:
        raise AlgorithmNotAllowedError("signatureAlgorithm.hashFunction differs from the hash's")
    family = _FAMILIES.get((str(crypto), str(pad)))
    if family is None:
        raise AlgorithmNotAllowedError(f"unsupported signature algorithm {crypto}/{pad}")
    fits = isinstance(public_key, ec.EllipticCurvePublicKey) if family is KeyFamily.EC \
        else isinstance(public_key, rsa.RSAPublicKey)
    if not fits:
        raise AlgorithmNotAllowedError(f"{crypto} does not fit the certificate's key",
                                       check="algorithm-key")
    return family


def _check_non_repudiation(certificate: x509.Certificate) -> None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CertificateMissingPurposeError("signing certificate has no KeyUsage") from None
    if not usage.content_commitment:
        raise CertificateWrongPurposeError("signing certificate lacks nonRepudiation")


def _check_same_person(signer: ValidatedIdentity, authenticated: ValidatedIdentity) -> None:
    if not signer.serial_number or signer.serial_number != authenticated.serial_number:
        raise NotSamePersonError("signing certificate serialNumber differs from the user's")
    if signer.country != authenticated.country:
        raise NotSamePersonError("signing certificate country differs from the user's")


def verify_signature(signing_cert_der: bytes | str, hash: bytes, hash_function: str,  # noqa: A002
                     signature: bytes, signature_algorithm: Mapping[str, object], *,
                     trusted_cas: Sequence[x509.Certificate],
                     authenticated: ValidatedIdentity,
                     intermediates: Sequence[x509.Certificate] = (),
                     clock: Callable[[], datetime] = utc_now) -> ValidatedIdentity:
    """Check a hash signature from ``webeid.sign()``.

    Args:
        signing_cert_der: the signing certificate (DER bytes or base64 text).
        hash: the digest that was signed (not the document).
        hash_function: its name ("SHA-256", "SHA3-384", ...).
        signature: raw signature bytes (ECDSA raw r||s or DER; RSA PKCS#1 v1.5 or PSS).
        signature_algorithm: ``{cryptoAlgorithm, hashFunction, paddingScheme}`` from the agent.
        trusted_cas: trust anchors for the signing certificate.
        authenticated: the identity from :meth:`AuthTokenValidator.validate`.

    Returns:
        The signer's identity.

    Raises:
        TokenParseError, AlgorithmNotAllowedError, CertificateMissingPurposeError,
        CertificateWrongPurposeError, CertificateExpiredError, CertificateNotYetValidError,
        CertificateNotTrustedError, NotSamePersonError, SignatureVerificationError.
    """
    parsed = _certificate(signing_cert_der)
    cert = parsed.certificate
    hash_algorithm = hash_for_name(hash_function)
    family = _family(signature_algorithm, hash_function, cert.public_key())
    _check_non_repudiation(cert)
    now = clock()
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    check_validity(cert, now)
    build_path(parsed, trusted_cas, [ParsedCertificate.of(c) for c in intermediates], now)
    signer = ValidatedIdentity.from_certificate(cert, parsed.der)
    _check_same_person(signer, authenticated)
    verify_prehashed(cert.public_key(), family, bytes(hash), hash_algorithm, bytes(signature),
                     allow_der_ecdsa=True)
    logger.info("signature by %s verified", signer.common_name)
    return signer
