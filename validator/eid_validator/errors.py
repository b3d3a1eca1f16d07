"""Typed failures of the server-side Web eID validator.

Every check raises its own class; ``check`` names the check that failed (stable, machine-readable).

ValidationError
 ├── TokenParseError                    not JSON, wrong size, missing/mistyped field, bad base64/DER
 ├── TokenFormatError                   ``format`` does not start with ``web-eid:1``
 ├── CertificateMissingPurposeError     no KeyUsage extension
 ├── CertificateWrongPurposeError       no digitalSignature / nonRepudiation, EKU without clientAuth
 ├── CertificateDisallowedPolicyError   a disallowed certificate policy (EE Mobile-ID by default)
 ├── CertificateExpiredError            the user (or a CA) certificate is past notAfter
 ├── CertificateNotYetValidError        the user (or a CA) certificate is before notBefore
 ├── CertificateNotTrustedError         no path to a configured trust anchor
 ├── CertificateRevokedError            OCSP said REVOKED or UNKNOWN (``.status``)
 ├── OcspCheckFailedError               OCSP unreachable or response unacceptable
 ├── AlgorithmNotAllowedError           ``algorithm`` not allowed or not matching the key
 ├── SignatureVerificationError         the signature does not verify
 ├── NonceError
 │    ├── NonceNotFoundError            no nonce issued for this session (or already used), or empty
 │    ├── NonceExpiredError             the nonce's TTL has passed
 │    └── NonceMismatchError            the nonce given is not the one issued to this session
 └── NotSamePersonError                 signing certificate belongs to another person
"""

from __future__ import annotations

__all__ = [
    "AlgorithmNotAllowedError",
    "CertificateDisallowedPolicyError",
    "CertificateExpiredError",
    "CertificateMissingPurposeError",
    "CertificateNotTrustedError",
    "CertificateNotYetValidError",
    "CertificateRevokedError",
    "CertificateWrongPurposeError",
    "NonceError",
    "NonceExpiredError",
    "NonceMismatchError",
    "NonceNotFoundError",
    "NotSamePersonError",
    "OcspCheckFailedError",
    "SignatureVerificationError",
    "TokenFormatError",
    "TokenParseError",
    "ValidationError",
]


class ValidationError(Exception):
    """Base of every validator failure. ``check`` names the check that failed."""

    check: str = "validation"

    def __init__(self, message: str, *, check: str | None = None) -> None:
        super().__init__(message)
        if check is not None:
            self.check = check


class TokenParseError(ValidationError):
    check = "parse"


class TokenFormatError(ValidationError):
    check = "format"


class CertificateMissingPurposeError(ValidationError):
    check = "purpose"


class CertificateWrongPurposeError(ValidationError):
    check = "purpose"


class CertificateDisallowedPolicyError(ValidationError):
    check = "policy"


class CertificateExpiredError(ValidationError):
    check = "validity"


class CertificateNotYetValidError(ValidationError):
    check = "validity"


class CertificateNotTrustedError(ValidationError):
    check = "trust"


class CertificateRevokedError(ValidationError):
    check = "ocsp"

    def __init__(self, message: str, *, status: str, check: str | None = None) -> None:
        super().__init__(message, check=check)
        self.status = status


class OcspCheckFailedError(ValidationError):
    check = "ocsp"


class AlgorithmNotAllowedError(ValidationError):
    check = "algorithm"


class SignatureVerificationError(ValidationError):
    check = "signature"


class NonceError(ValidationError):
    check = "nonce"


class NonceNotFoundError(NonceError):
    pass


class NonceExpiredError(NonceError):
    pass


class NonceMismatchError(NonceError):
    pass


class NotSamePersonError(ValidationError):
    check = "same-person"
