"""The Web eID authentication token, format ``web-eid:1.0``.

The signed value (``/work/shared/reference/web-eid.md`` §2.1) is
``data = H(UTF-8(origin)) || H(UTF-8(challengeNonce))``; the card signs ``H(data)``, so a
validator checks the signature over ``data`` with the ordinary ``SHAxxxwithRSA/ECDSA``.
``H`` follows the algorithm named in the token, which follows the certificate's key: RSA
gives RS256 (PS256 when the card authenticates with PSS), EC P-256/384/521 give
ES256/384/512. ECDSA signatures are raw ``r || s``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.cards.base import SignatureAlgorithm
from agent.core.values import AuthToken
from agent.errors import InvalidArgumentError, NotSupportedError
from agent.smartcard.certinfo import parse_certificate
from agent.smartcard.hashes import WEB_EID_HASHES

__all__ = [
    "TOKEN_FORMAT",
    "TokenAlgorithm",
    "auth_digest",
    "build_token",
    "digest",
    "hash_function_for",
    "load_certificate",
    "signed_data",
    "token_algorithm",
    "validate_nonce",
]

TOKEN_FORMAT = "web-eid:1.0"  # noqa: S105 - a format name, not a secret
NONCE_MIN_LENGTH = 44  # base64 of 32 bytes, as the Web eID app requires
NONCE_MAX_LENGTH = 128
_NONCE = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")

_CURVES: dict[str, tuple[str, str]] = {
    "secp256r1": ("ES256", "SHA-256"),
    "secp384r1": ("ES384", "SHA-384"),
    "secp521r1": ("ES512", "SHA-512"),
}


@dataclass(frozen=True)
class TokenAlgorithm:
    """The JWA name of a token signature and how to make it."""

    name: str  # "RS256", "PS256", "ES256", "ES384", "ES512"
    hash_function: str  # web-eid.js name, e.g. "SHA-384"
    padding: str | None = None  # "PSS" for PS256, else None (the driver's default)


def load_certificate(certificate: bytes) -> x509.Certificate:
    """Parse a card certificate, accepting the non-DER encodings some national CAs use.

    Raises:
        InvalidArgumentError: not an X.509 certificate.
    """
    try:
        return parse_certificate(certificate)
    except ValueError as exc:
        raise InvalidArgumentError(f"not an X.509 certificate: {exc}") from exc


def hash_function_for(name: str) -> hashes.HashAlgorithm:
    """A ``cryptography`` hash object for a web-eid.js hash name (exact spelling)."""
    try:
        return WEB_EID_HASHES[name].new()
    except KeyError:
        raise InvalidArgumentError(f"unknown hash function {name!r}") from None


def digest(hash_function: str, data: bytes) -> bytes:
    h = hashes.Hash(hash_function_for(hash_function))
    h.update(data)
    return h.finalize()


def validate_nonce(nonce: object) -> str:
    """Check a challenge nonce as the Web eID app does: 44 to 128 characters of base64.

    Raises:
        InvalidArgumentError: missing, too short, too long or not base64 text.
    """
    if not isinstance(nonce, str):
        raise InvalidArgumentError("challengeNonce must be a string")
    if not NONCE_MIN_LENGTH <= len(nonce) <= NONCE_MAX_LENGTH:
        raise InvalidArgumentError(
            f"challengeNonce must be {NONCE_MIN_LENGTH} to {NONCE_MAX_LENGTH} characters long"
        )
    if not _NONCE.fullmatch(nonce):  # fullmatch: `$` alone accepts a trailing newline
        raise InvalidArgumentError("challengeNonce must be base64 text")
    return nonce


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
    key = load_certificate(certificate).public_key()
    if isinstance(key, rsa.RSAPublicKey):
        paddings = {a.padding_scheme for a in card_algorithms if a.crypto_algorithm == "RSA"}
        if paddings == {"PSS"}:
            return TokenAlgorithm("PS256", "SHA-256", "PSS")
        return TokenAlgorithm("RS256", "SHA-256")
    if isinstance(key, ec.EllipticCurvePublicKey):
        try:
            name, hash_name = _CURVES[key.curve.name]
        except KeyError:
            raise NotSupportedError(f"no Web eID algorithm for curve {key.curve.name}") from None
        return TokenAlgorithm(name, hash_name)
    raise NotSupportedError(f"no Web eID algorithm for a {type(key).__name__}")


def signed_data(origin: str, nonce: str, hash_function: str) -> bytes:
    """``H(origin) || H(nonce)``: what the validator checks the signature over."""
    return digest(hash_function, origin.encode("utf-8")) + digest(
        hash_function, nonce.encode("utf-8")
    )


def auth_digest(origin: str, nonce: str, hash_function: str) -> bytes:
    """``H(H(origin) || H(nonce))``: the digest the card signs."""
    return digest(hash_function, signed_data(origin, nonce, hash_function))


def build_token(
    certificate: bytes, algorithm: TokenAlgorithm, signature: bytes, app_version: str
) -> AuthToken:
    """The token ``authenticate`` returns (``agent.ws.messages`` gives its JSON form)."""
    return AuthToken(certificate, algorithm.name, signature, TOKEN_FORMAT, app_version)
