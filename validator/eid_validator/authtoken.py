"""Validate a Web eID ``web-eid:1`` authentication token, step by step as the Java validator.

1. parse: JSON object of 100-10000 characters with string fields
2. format starts with ``web-eid:1``; 3. certificate decodes; 4. purpose; 5. policies;
6. validity now; 7. path to a trust anchor; 8. OCSP (if configured);
9. algorithm allowed and fitting the key; 10. signature over ``H(origin) || H(nonce)``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from eid_validator import contract
from eid_validator.algorithms import (
    Algorithm,
    check_algorithm_fits_key,
    verify_prehashed,
)
from eid_validator.certs import (
    MOBILE_ID_POLICIES,
    ParsedCertificate,
    build_path,
    check_auth_purpose,
    check_policies,
    check_validity,
    decode_certificate,
    load_certificate,
)
from eid_validator.errors import (
    AlgorithmNotAllowedError,
    NonceNotFoundError,
    TokenFormatError,
    TokenParseError,
)
from eid_validator.identity import ValidatedIdentity
from eid_validator.nonce import NonceStore, utc_now
from eid_validator.ocsp import OcspConfig, check_revocation

__all__ = [
    "MAX_TOKEN_LENGTH",
    "MIN_TOKEN_LENGTH",
    "AuthTokenValidator",
    "check_origin",
    "load_trusted_cas",
    "signed_data",
    "verify_token_signature",
]

logger = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 100
MAX_TOKEN_LENGTH = 10000
SUPPORTED_FORMAT_PREFIX = contract.FORMAT_PREFIX


def check_origin(origin: str, *, allow_http_localhost: bool = False) -> str:
    """``origin`` must be ``https://host[:port]`` as ``location.origin`` writes it.

    ``allow_http_localhost`` (development and demos only) also accepts
    ``http://localhost[:port]``, ``http://127.0.0.1[:port]`` and ``http://[::1][:port]``.
    The rule is :func:`eid_validator.contract.check_origin`, the one the agent uses.

    Raises:
        ValueError: anything else (path, trailing slash, query, user info, upper case, :443).
    """
    return contract.check_origin(origin, allow_http_loopback=allow_http_localhost)


def _now_utc(clock: Callable[[], datetime]) -> datetime:
    now = clock()
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def signed_data(algorithm: Algorithm, origin: str, nonce: str) -> bytes:
    """``H(UTF-8(origin)) || H(UTF-8(nonce))``: what the card's key signs (hashed once more)."""
    return contract.signed_data(algorithm.hash_name, origin, nonce)


def verify_token_signature(public_key: object, algorithm: str, signature_b64: object,
                           origin: str, nonce: str) -> None:
    """Step 10 alone: ``signature_b64`` over ``H(origin)||H(nonce)`` with ``algorithm``.

    Raises:
        AlgorithmNotAllowedError: unknown algorithm, or it does not fit the key.
        TokenParseError: signature missing or not base64.
        SignatureVerificationError: the signature does not verify.
    """
    parsed = Algorithm.parse(algorithm)
    check_algorithm_fits_key(parsed, public_key)
    if not isinstance(signature_b64, str) or not signature_b64:
        raise TokenParseError("signature is missing", check="signature-decode")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TokenParseError("signature is not base64", check="signature-decode") from exc
    digest = contract.digest(parsed.hash_name, signed_data(parsed, origin, nonce))
    verify_prehashed(public_key, parsed.family, digest, parsed.hash, signature)


def _parse(token: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(token, dict):
        try:
            text = json.dumps(token, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise TokenParseError(f"token is not JSON-serialisable: {exc}") from exc
    elif isinstance(token, str):
        text = token
    else:
        raise TokenParseError(f"token must be a JSON string or dict, not {type(token).__name__}")
    if not MIN_TOKEN_LENGTH <= len(text) <= MAX_TOKEN_LENGTH:
        raise TokenParseError(
            f"token length {len(text)} outside {MIN_TOKEN_LENGTH}..{MAX_TOKEN_LENGTH}")
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise TokenParseError(f"token is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise TokenParseError("token is not a JSON object")
    for name in ("unverifiedCertificate", "algorithm", "signature", "format"):
        value = parsed.get(name)
        if value is None or value == "":
            raise TokenParseError(f"'{name}' field is missing")
        if not isinstance(value, str):
            raise TokenParseError(f"'{name}' field must be a string")
    return parsed


class AuthTokenValidator:
    """Validates Web eID authentication tokens for one site origin.

    Args:
        site_origin: ``https://host[:port]``; taken from configuration, never from the token.
        trusted_cas: trust anchors (intermediate CAs recommended, as with Web eID).
        intermediates: optional untrusted CA certificates usable to build a path to an anchor.
        allowed_algorithms: JWA names accepted (default all of ES/PS/RS 256/384/512).
        disallowed_policies: certificate policies refused (default Estonian Mobile-ID).
        ocsp: OCSP settings; ``None`` (or ``enabled=False``) skips the revocation check.
        clock: the current time (tz-aware UTC).
        allow_http_localhost: development only: accept an ``http://`` site origin on
            localhost, 127.0.0.1 or [::1] (browsers treat those as secure contexts).

    Raises:
        ValueError: bad origin, no trust anchors, unknown algorithm names.
    """

    def __init__(self, site_origin: str, trusted_cas: Sequence[x509.Certificate], *,
                 intermediates: Sequence[x509.Certificate] = (),
                 allowed_algorithms: Iterable[str] = contract.ALGORITHMS,
                 disallowed_policies: Iterable[x509.ObjectIdentifier] = MOBILE_ID_POLICIES,
                 ocsp: OcspConfig | None = None,
                 clock: Callable[[], datetime] = utc_now,
                 allow_http_localhost: bool = False) -> None:
        self.site_origin = check_origin(site_origin, allow_http_localhost=allow_http_localhost)
        if not trusted_cas:
            raise ValueError("at least one trusted CA certificate is required")
        self.trusted_cas = tuple(trusted_cas)
        self.intermediates = tuple(ParsedCertificate.of(c) for c in intermediates)
        self.allowed_algorithms = frozenset(allowed_algorithms)
        unknown = self.allowed_algorithms - contract.ALGORITHMS
        if unknown:
            raise ValueError(f"unknown algorithms {sorted(unknown)}")
        self.disallowed_policies = tuple(disallowed_policies)
        self.ocsp = ocsp
        self.clock = clock
        if ocsp is None or not ocsp.enabled:
            logger.warning("OCSP revocation checking of user certificates is disabled")

    def validate(self, token: dict[str, Any] | str, nonce: str) -> ValidatedIdentity:
        """Run every check; return the authenticated identity.

        Args:
            token: the token object from ``webeid.authenticate()`` (dict or JSON text).
            nonce: the challenge nonce this server issued (from its session store).

        Raises:
            ValidationError: one subclass per failed check (see ``eid_validator.errors``).
        """
        parsed = _parse(token)
        if not parsed["format"].startswith(SUPPORTED_FORMAT_PREFIX):
            raise TokenFormatError(f"unsupported token format {parsed['format']!r}")
        user = decode_certificate(parsed["unverifiedCertificate"])
        cert = user.certificate
        check_auth_purpose(cert)
        check_policies(cert, self.disallowed_policies)
        now = _now_utc(self.clock)
        check_validity(cert, now)
        path = build_path(user, self.trusted_cas, self.intermediates, now)
        if self.ocsp is not None and self.ocsp.enabled:
            check_revocation(cert, path[1], self.ocsp, anchors=self.trusted_cas,
                             intermediates=self.intermediates, now=now)
        if parsed["algorithm"] not in self.allowed_algorithms:
            raise AlgorithmNotAllowedError(f"algorithm {parsed['algorithm']!r} is not allowed")
        if not nonce:
            raise NonceNotFoundError("challenge nonce is empty", check="nonce-empty")
        verify_token_signature(cert.public_key(), parsed["algorithm"], parsed["signature"],
                               self.site_origin, nonce)
        identity = ValidatedIdentity.from_certificate(cert, user.der)
        logger.info("authenticated %s", identity.common_name)
        return identity

    def validate_with_store(self, token: dict[str, Any] | str, store: NonceStore,
                            session_id: str) -> ValidatedIdentity:
        """Take (and so burn) the session's nonce from ``store``, then :meth:`validate`.

        Raises:
            NonceNotFoundError / NonceExpiredError: no usable nonce for ``session_id``.
            ValidationError: as :meth:`validate`.
        """
        nonce = store.consume(session_id)
        return self.validate(token, nonce)


def load_trusted_cas(blobs: Iterable[bytes]) -> list[x509.Certificate]:
    """Parse PEM or DER CA certificates for ``trusted_cas``."""
    out = []
    for blob in blobs:
        if blob.lstrip().startswith(b"-----BEGIN"):
            out.extend(x509.load_pem_x509_certificates(blob))
        else:
            out.append(load_certificate(blob).certificate)
    return out
