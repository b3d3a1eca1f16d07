"""Server-side Web eID validation: authentication tokens, nonces, OCSP, hash signatures.

Imports only the standard library and ``cryptography`` so a portal's server can use it without
the agent's PC/SC or WebSocket dependencies. See ``docs/validator.md``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from eid_validator.algorithms import ALL_ALGORITHMS
from eid_validator.authtoken import (
    AuthTokenValidator,
    check_origin,
    load_trusted_cas,
    signed_data,
    verify_token_signature,
)
from eid_validator.certs import MOBILE_ID_POLICIES
from eid_validator.errors import (
    AlgorithmNotAllowedError,
    CertificateDisallowedPolicyError,
    CertificateExpiredError,
    CertificateMissingPurposeError,
    CertificateNotTrustedError,
    CertificateNotYetValidError,
    CertificateRevokedError,
    CertificateWrongPurposeError,
    NonceError,
    NonceExpiredError,
    NonceMismatchError,
    NonceNotFoundError,
    NotSamePersonError,
    OcspCheckFailedError,
    SignatureVerificationError,
    TokenFormatError,
    TokenParseError,
    ValidationError,
)
from eid_validator.identity import ValidatedIdentity
from eid_validator.nonce import NonceStore
from eid_validator.ocsp import DesignatedOcspService, OcspConfig, OcspFetcher, http_fetch
from eid_validator.signing import verify_signature

__all__ = [
    "ALL_ALGORITHMS",
    "MOBILE_ID_POLICIES",
    "AlgorithmNotAllowedError",
    "AuthTokenValidator",
    "CertificateDisallowedPolicyError",
    "CertificateExpiredError",
    "CertificateMissingPurposeError",
    "CertificateNotTrustedError",
    "CertificateNotYetValidError",
    "CertificateRevokedError",
    "CertificateWrongPurposeError",
    "DesignatedOcspService",
    "NonceError",
    "NonceExpiredError",
    "NonceMismatchError",
    "NonceNotFoundError",
    "NonceStore",
    "NotSamePersonError",
    "OcspCheckFailedError",
    "OcspConfig",
    "OcspFetcher",
    "SignatureVerificationError",
    "TokenFormatError",
    "TokenParseError",
    "ValidatedIdentity",
    "ValidationError",
    "check_origin",
    "http_fetch",
    "load_trusted_cas",
    "signed_data",
    "verify_signature",
    "verify_token_signature",
]
