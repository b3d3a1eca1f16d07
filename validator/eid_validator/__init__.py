"""Server-side Web eID validation: authentication tokens, nonces, OCSP, hash signatures.

Imports only the standard library and ``cryptography`` so a portal's server can use it without
the agent's PC/SC or WebSocket dependencies. See ``docs/validator.md``.

The names below are loaded on first use (PEP 562), so ``import eid_validator.contract`` (the
rules the agent shares, standard library only) loads no ``cryptography``.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_LAZY = {
    "ALL_ALGORITHMS": "eid_validator.algorithms",
    "AlgorithmNotAllowedError": "eid_validator.errors",
    "AuthTokenValidator": "eid_validator.authtoken",
    "CertificateDisallowedPolicyError": "eid_validator.errors",
    "CertificateExpiredError": "eid_validator.errors",
    "CertificateMissingPurposeError": "eid_validator.errors",
    "CertificateNotTrustedError": "eid_validator.errors",
    "CertificateNotYetValidError": "eid_validator.errors",
    "CertificateRevokedError": "eid_validator.errors",
    "CertificateWrongPurposeError": "eid_validator.errors",
    "DesignatedOcspService": "eid_validator.ocsp",
    "MOBILE_ID_POLICIES": "eid_validator.certs",
    "NonceError": "eid_validator.errors",
    "NonceExpiredError": "eid_validator.errors",
    "NonceMismatchError": "eid_validator.errors",
    "NonceNotFoundError": "eid_validator.errors",
    "NonceStore": "eid_validator.nonce",
    "NotSamePersonError": "eid_validator.errors",
    "OcspCheckFailedError": "eid_validator.errors",
    "OcspConfig": "eid_validator.ocsp",
    "OcspFetcher": "eid_validator.ocsp",
    "SignatureVerificationError": "eid_validator.errors",
    "TokenFormatError": "eid_validator.errors",
    "TokenParseError": "eid_validator.errors",
    "ValidatedIdentity": "eid_validator.identity",
    "ValidationError": "eid_validator.errors",
    "check_origin": "eid_validator.authtoken",
    "http_fetch": "eid_validator.ocsp",
    "load_trusted_cas": "eid_validator.authtoken",
    "signed_data": "eid_validator.authtoken",
    "verify_signature": "eid_validator.signing",
    "verify_token_signature": "eid_validator.authtoken",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eid_validator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
