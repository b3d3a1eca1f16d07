"""Server-side Web eID validation: authentication tokens, nonces, OCSP, hash signatures.

Imports only the standard library and ``cryptography`` so a portal's server can use it without
the agent's PC/SC or WebSocket dependencies. See ``docs/validator.md``.
"""

from __future__ import annotations

from agent.validator.algorithms import ALL_ALGORITHMS
from agent.validator.authtoken import (
    AuthTokenValidator,
    check_origin,
    load_trusted_cas,
    signed_data,
    verify_token_signature,
)
from agent.validator.certs import MOBILE_ID_POLICIES
from agent.validator.errors import (
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
from agent.validator.identity import ValidatedIdentity
from agent.validator.nonce import NonceStore
from agent.validator.ocsp import DesignatedOcspService, OcspConfig, OcspFetcher, http_fetch
from agent.validator.signing import verify_signature

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
