"""JWA signature algorithms of Web eID tokens, and raw signature verification."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from eid_validator import contract
from eid_validator.errors import AlgorithmNotAllowedError, SignatureVerificationError

__all__ = [
    "ALL_ALGORITHMS",
    "Algorithm",
    "KeyFamily",
    "check_algorithm_fits_key",
    "ecdsa_raw_to_der",
    "hash_for_name",
    "verify_prehashed",
]


class KeyFamily(enum.Enum):
    EC = "EC"
    RSA_PKCS1 = "RSA"
    RSA_PSS = "PSS"


def hash_for_name(name: str) -> hashes.HashAlgorithm:
    """A web-eid.js ``hashFunction`` name ("SHA-256", "SHA3-384", ...) as a hash object.

    The contract gives the ``hashlib`` name; ``cryptography`` names its class the same in
    capitals (``sha3_384`` -> ``hashes.SHA3_384``)."""
    try:
        algorithm: hashes.HashAlgorithm = getattr(hashes, contract.hashlib_name(name).upper())()
    except ValueError as exc:
        raise AlgorithmNotAllowedError(str(exc)) from None
    return algorithm


@dataclass(frozen=True)
class Algorithm:
    """One JWA name: ES256/384/512, PS256/384/512, RS256/384/512."""

    name: str
    family: KeyFamily
    bits: int

    @property
    def hash_name(self) -> str:
        """The web-eid.js name of the algorithm's hash, e.g. "SHA-384"."""
        return f"SHA-{self.bits}"

    @property
    def hash(self) -> hashes.HashAlgorithm:
        return hash_for_name(self.hash_name)

    @classmethod
    def parse(cls, name: str) -> Algorithm:
        family = {"ES": KeyFamily.EC, "RS": KeyFamily.RSA_PKCS1, "PS": KeyFamily.RSA_PSS}.get(
            name[:2])
        if family is None or name[2:] not in ("256", "384", "512") or len(name) != 5:
            raise AlgorithmNotAllowedError(f"unsupported algorithm {name!r}")
        return cls(name, family, int(name[2:]))


ALL_ALGORITHMS: frozenset[str] = contract.ALGORITHMS


def check_algorithm_fits_key(algorithm: Algorithm, public_key: object) -> None:
    """ES* needs an EC key on the matching curve; RS*/PS* need RSA."""
    if algorithm.family is KeyFamily.EC:
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise AlgorithmNotAllowedError(f"{algorithm.name} needs an EC key",
                                           check="algorithm-key")
        curve_algorithm = contract.CURVE_ALGORITHMS.get(public_key.curve.name, ("",))[0]
        if curve_algorithm != algorithm.name:
            raise AlgorithmNotAllowedError(
                f"{algorithm.name} does not fit curve {public_key.curve.name}",
                check="algorithm-key")
    elif not isinstance(public_key, rsa.RSAPublicKey):
        raise AlgorithmNotAllowedError(f"{algorithm.name} needs an RSA key", check="algorithm-key")


def ecdsa_raw_to_der(signature: bytes, curve: ec.EllipticCurve) -> bytes:
    """Raw ``r||s`` (each padded to the curve size) to the DER SEQUENCE cryptography verifies."""
    size = (curve.key_size + 7) // 8
    if len(signature) != 2 * size:
        raise SignatureVerificationError(
            f"ECDSA signature must be {2 * size} raw bytes (r||s), got {len(signature)}")
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    return utils.encode_dss_signature(r, s)


def verify_prehashed(public_key: object, family: KeyFamily, digest: bytes,
                     hash_algorithm: hashes.HashAlgorithm, signature: bytes, *,
                     allow_der_ecdsa: bool = False) -> None:
    """Verify ``signature`` over an already computed ``digest``.

    Raises:
        SignatureVerificationError: the signature does not verify.
    """
    if len(digest) != hash_algorithm.digest_size:
        raise SignatureVerificationError("hash length does not match the hash function")
    prehashed = utils.Prehashed(hash_algorithm)
    try:
        if family is KeyFamily.EC:
            assert isinstance(public_key, ec.EllipticCurvePublicKey)
            size = (public_key.curve.key_size + 7) // 8
            if allow_der_ecdsa and len(signature) != 2 * size:
                der = signature
            else:
                der = ecdsa_raw_to_der(signature, public_key.curve)
            public_key.verify(der, digest, ec.ECDSA(prehashed))
        elif family is KeyFamily.RSA_PKCS1:
            assert isinstance(public_key, rsa.RSAPublicKey)
            public_key.verify(signature, digest, padding.PKCS1v15(), prehashed)
        else:
            assert isinstance(public_key, rsa.RSAPublicKey)
            pss = padding.PSS(padding.MGF1(hash_algorithm), hash_algorithm.digest_size)
            public_key.verify(signature, digest, pss, prehashed)
    except InvalidSignature as exc:
        raise SignatureVerificationError("signature does not verify") from exc
    except ValueError as exc:  # malformed DER, wrong sizes
        raise SignatureVerificationError(f"signature is malformed: {exc}") from exc
