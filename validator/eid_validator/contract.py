"""The Web eID contract: the rules that the token's maker (the agent) and its checker share.

One place for: the origin form (``location.origin``), the challenge nonce form, the signed
data ``H(UTF-8(origin)) || H(UTF-8(nonce))``, the JWA algorithm names and which key gives
which, and the web-eid.js hash names. Reference: ``/work/shared/reference/web-eid.md`` §1
and §2.1. The eid-agent imports this module for its tokens, so a rule changed here changes
on both sides. Standard library only: the agent's resident process reads card certificates
and builds tokens without ``cryptography``, and the Web eID host checks origins with it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Final

__all__ = [
    "ALGORITHMS",
    "CURVE_ALGORITHMS",
    "FORMAT_PREFIX",
    "HASH_FUNCTIONS",
    "LOOPBACK_HOSTS",
    "NONCE_MAX_LENGTH",
    "NONCE_MIN_LENGTH",
    "ORIGIN_MAX_LENGTH",
    "TOKEN_FORMAT",
    "canonical_origin",
    "check_nonce",
    "check_origin",
    "digest",
    "hashlib_name",
    "signed_data",
    "token_algorithm_for",
]

TOKEN_FORMAT: Final = "web-eid:1.0"  # noqa: S105 - a format name; what a token maker writes
FORMAT_PREFIX: Final = "web-eid:1"  # what a checker accepts (any 1.x)

# web-eid.js ``hashFunction`` names (web-eid.md §1), exact spelling, and their ``hashlib``
# names (in capitals, the names of ``cryptography``'s hash classes: ``hashes.SHA3_384``).
HASH_FUNCTIONS: Final[Mapping[str, str]] = {
    "SHA-224": "sha224",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
    "SHA3-224": "sha3_224",
    "SHA3-256": "sha3_256",
    "SHA3-384": "sha3_384",
    "SHA3-512": "sha3_512",
}

# JWA names a token may carry; ES/RS/PS use SHA-2 of the named size.
ALGORITHMS: Final[frozenset[str]] = frozenset(
    f"{family}{bits}" for family in ("ES", "PS", "RS") for bits in (256, 384, 512)
)
# An EC authentication key's curve names the token algorithm and its hash.
CURVE_ALGORITHMS: Final[Mapping[str, tuple[str, str]]] = {
    "secp256r1": ("ES256", "SHA-256"),
    "secp384r1": ("ES384", "SHA-384"),
    "secp521r1": ("ES512", "SHA-512"),
}

NONCE_MIN_LENGTH: Final = 44  # base64 of 32 bytes, as the Web eID app requires
NONCE_MAX_LENGTH: Final = 128
_NONCE = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")

ORIGIN_MAX_LENGTH: Final = 255
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "[::1]"})
_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://"
    r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9])?)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}


def canonical_origin(origin: object, *, allow_http_loopback: bool = False) -> str:
    """An origin's canonical form: lower case, no default port.

    ``https://host[:port]`` for any host; ``http://`` only for ``localhost``, ``127.0.0.1``
    and ``[::1]`` and only when ``allow_http_loopback`` is set. No path, query, fragment,
    trailing slash or user info; ``null`` (an opaque origin) is refused.

    Raises:
        ValueError: not an origin of that form.
    """
    if not isinstance(origin, str) or not origin or len(origin) > ORIGIN_MAX_LENGTH:
        raise ValueError("not a valid origin")
    match = _ORIGIN.fullmatch(origin.lower())
    if match is None:
        raise ValueError(f"not a valid origin: {origin!r}")
    scheme, host, port = match["scheme"], match["host"], match["port"]
    if scheme == "http":
        if not allow_http_loopback or host not in LOOPBACK_HOSTS:
            raise ValueError(f"only https origins may use Web eID: {origin!r}")
    elif scheme != "https":
        raise ValueError(f"only https origins may use Web eID: {origin!r}")
    if port is None:
        return f"{scheme}://{host}"
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"not a valid port in origin {origin!r}")
    if number == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{number}"


def check_origin(origin: object, *, allow_http_loopback: bool = False) -> str:
    """``origin`` must already be in canonical form (as ``location.origin`` writes it).

    Raises:
        ValueError: not an origin, or not canonical (upper case, ``:443``).
    """
    canonical = canonical_origin(origin, allow_http_loopback=allow_http_loopback)
    if canonical != origin:
        raise ValueError(f"site origin is not in canonical form: {origin!r}")
    return canonical


def check_nonce(nonce: object) -> str:
    """A challenge nonce: 44 to 128 characters of base64 (or base64url) text.

    Raises:
        ValueError: not a string, too short, too long or not base64 text.
    """
    if not isinstance(nonce, str):
        raise ValueError("challengeNonce must be a string")
    if not NONCE_MIN_LENGTH <= len(nonce) <= NONCE_MAX_LENGTH:
        raise ValueError(
            f"challengeNonce must be {NONCE_MIN_LENGTH} to {NONCE_MAX_LENGTH} characters long"
        )
    if _NONCE.fullmatch(nonce) is None:
        raise ValueError("challengeNonce must be base64 text")
    return nonce


def hashlib_name(name: str) -> str:
    """The ``hashlib`` name of a web-eid.js hash name.

    Raises:
        ValueError: not one of the web-eid.js names (spelling is exact).
    """
    try:
        return HASH_FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown hash function {name!r}") from None


def digest(name: str, data: bytes) -> bytes:
    return hashlib.new(hashlib_name(name), data).digest()


def signed_data(hash_name: str, origin: str, nonce: str) -> bytes:
    """``H(UTF-8(origin)) || H(UTF-8(nonce))``: the card signs this, hashed once more."""
    return digest(hash_name, origin.encode("utf-8")) + digest(hash_name, nonce.encode("utf-8"))


def token_algorithm_for(key_type: str, curve: str | None = None, *,
                        rsa_pss: bool = False) -> tuple[str, str]:
    """The (JWA name, hash name) a token made with this authentication key carries.

    ``key_type`` is ``"RSA"`` or ``"EC"``; ``curve`` an EC key's curve by its SEC name
    (``secp384r1``, as ``cryptography`` names it). RSA gives RS256 (PS256 when the card pads
    with PSS only); EC P-256/384/521 give ES256/384/512.

    Raises:
        ValueError: a key type or curve Web eID has no algorithm for.
    """
    if key_type == "RSA":
        return ("PS256", "SHA-256") if rsa_pss else ("RS256", "SHA-256")
    if key_type == "EC":
        try:
            return CURVE_ALGORITHMS[curve or ""]
        except KeyError:
            raise ValueError(f"no Web eID algorithm for curve {curve}") from None
    raise ValueError(f"no Web eID algorithm for a {key_type} key")
