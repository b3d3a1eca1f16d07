"""Card-side signature primitives shared by the virtual cards: raw RSASSA-PKCS1-v1_5 over a
DigestInfo, and ECDSA over a precomputed digest answered as ``r || s``."""

from __future__ import annotations

from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from eid_emulator.iso7816 import CardError

__all__ = ["DIGEST_INFO_PREFIX", "EC_PREHASH", "PrivateKey", "ecdsa_raw", "rsa_pkcs1_raw"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


DIGEST_INFO_PREFIX = {
    "sha1": bytes.fromhex("3021300906052B0E03021A05000414"),
    "md5": bytes.fromhex("3020300C06082A864886F70D020505000410"),
    "sha256": bytes.fromhex("3031300D060960864801650304020105000420"),
}


def rsa_pkcs1_raw(key: PrivateKey, digest_info: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 over a caller-built DigestInfo (EMSA padding done here)."""
    assert isinstance(key, rsa.RSAPrivateKey)
    k = (key.key_size + 7) // 8
    if len(digest_info) > k - 11:
        raise CardError(0x6700)
    em = b"\x00\x01" + b"\xff" * (k - 3 - len(digest_info)) + b"\x00" + digest_info
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    return pow(int.from_bytes(em, "big"), numbers.d, n).to_bytes(k, "big")


# For ECDSA only the digest bytes matter; pick a hash of that length for Prehashed.
EC_PREHASH: Mapping[int, hashes.HashAlgorithm] = {
    20: hashes.SHA1(),  # noqa: S303 - only tells Prehashed the digest size
    28: hashes.SHA224(),
    32: hashes.SHA256(),
    48: hashes.SHA384(),
    64: hashes.SHA512(),
}


def ecdsa_raw(key: PrivateKey, digest: bytes) -> bytes:
    """ECDSA over a precomputed digest, as raw ``r || s`` (TR-03111), like the card."""
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.sign(digest, ec.ECDSA(Prehashed(EC_PREHASH[len(digest)])))
    r, s = decode_dss_signature(der)
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")
