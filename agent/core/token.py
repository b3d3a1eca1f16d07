"""The Web eID authentication token, format ``web-eid:1.0``.

The signed value (``/work/shared/reference/web-eid.md`` §2.1) is
``data = H(UTF-8(origin)) || H(UTF-8(challengeNonce))``; the card signs ``H(data)``, so a
validator checks the signature over ``data`` with the ordinary ``SHAxxxwithRSA/ECDSA``.
``H`` follows the algorithm named in the token, which follows the certificate's key: RSA
gives RS256 (PS256 when the card authenticates with PSS), EC P-256/384/521 give
ES256/384/512. ECDSA signatures are raw ``r || s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eid_validator import contract

from agent.cards.base import SignatureAlgorithm
from agent.core.values import AuthToken
from agent.errors import InvalidArgumentError, NotSupportedError
from agent.smartcard.certinfo import CertificateInfo, read_certificate

__all__ = [
    "TOKEN_FORMAT",
    "TokenAlgorithm",
    "auth_digest",
    "build_token",
    "digest",
    "load_certificate",
    "signed_data",
    "token_algorithm",
    "validate_nonce",
]

TOKEN_FORMAT = contract.TOKEN_FORMAT


@dataclass(frozen=True)
class TokenAlgorithm:
    """The JWA name of a token signature and how to make it."""

    name: str  # "RS256", "PS256", "ES256", "ES384", "ES512"
    hash_function: str  # web-eid.js name, e.g. "SHA-384"
    padding: str | None = None  # "PSS" for PS256, else None (the driver's default)


def load_certificate(certificate: bytes) -> CertificateInfo:
    """Read a card certificate, accepting the non-DER encodings some national CAs use.

    Raises:
        InvalidArgumentError: not an X.509 certificate.
    """
    try:
        return read_certificate(certificate)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from exc


def digest(hash_function: str, data: bytes) -> bytes:
    try:
        return contract.digest(hash_function, data)
    except ValueError as exc:  # an unknown hash name
        raise InvalidArgumentError(str(exc)) from None


def validate_nonce(nonce: object) -> str:
    """Check a challenge nonce as the Web eID app does: 44 to 128 characters of base64.

    Raises:
        InvalidArgumentError: missing, too short, too long or not base64 text.
    """
    try:
        return contract.check_nonce(nonce)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None


def token_algorithm(
    certificate: bytes, card_algorithms: Sequence[SignatureAlgorithm] = ()
) -> TokenAlgorithm:
    """The token algorithm for an authentication certificate's key.

    ``card_algorithms`` is what the driver says the authentication key does; an RSA key
    whose only padding there is PSS gives PS256, any other RSA key RS256.

    Raises:
        NotSupportedError: a key type or curve Web eID has no algorithm for.
        InvalidArgumentError: the certificate cannot be parsed.
    """
    info = load_certificate(certificate)
    paddings = {a.padding_scheme for a in card_algorithms if a.crypto_algorithm == "RSA"}
    try:
        name, hash_name = contract.token_algorithm_for(info.key_type, info.curve,
                                                       rsa_pss=paddings == {"PSS"})
    except ValueError as exc:
        raise NotSupportedError(str(exc)) from None
    return TokenAlgorithm(name, hash_name, "PSS" if name.startswith("PS") else None)


def signed_data(origin: str, nonce: str, hash_function: str) -> bytes:
    """``H(origin) || H(nonce)``: what the validator checks the signature over."""
    try:
        return contract.signed_data(hash_function, origin, nonce)
    except ValueError as exc:  # an unknown hash name
        raise InvalidArgumentError(str(exc)) from None


def auth_digest(origin: str, nonce: str, hash_function: str) -> bytes:
    """``H(H(origin) || H(nonce))``: the digest the card signs."""
    return digest(hash_function, signed_data(origin, nonce, hash_function))


def build_token(
    certificate: bytes, algorithm: TokenAlgorithm, signature: bytes, app_version: str
) -> AuthToken:
    """The token ``authenticate`` returns (``agent.ws.messages`` gives its JSON form)."""
    return AuthToken(certificate, algorithm.name, signature, TOKEN_FORMAT, app_version)
