"""The web-eid:1.0 token: algorithms from the certificate key, the signed value, nonce rules."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from eid_validator.algorithms import hash_for_name
from eid_validator.certs import load_certificate
from hypothesis import given
from hypothesis import strategies as st

from agent.cards.base import SignatureAlgorithm
from agent.core import token
from agent.errors import InvalidArgumentError
from agent.ws.messages import token_json

VECTORS = Path("/work/shared/reference/vectors/webeid-tokens.json")


def _self_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    import datetime as dt

    from cryptography.hazmat.primitives import serialization

    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "t")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("curve", "name", "hash_name"),
    [(ec.SECP256R1(), "ES256", "SHA-256"), (ec.SECP384R1(), "ES384", "SHA-384"),
     (ec.SECP521R1(), "ES512", "SHA-512")],
)
def test_ec_algorithms_follow_the_curve(curve: ec.EllipticCurve, name: str, hash_name: str) -> None:
    algorithm = token.token_algorithm(_self_signed(ec.generate_private_key(curve)))
    assert (algorithm.name, algorithm.hash_function, algorithm.padding) == (name, hash_name, None)


def test_rsa_is_rs256_unless_the_card_only_does_pss() -> None:
    cert = _self_signed(rsa.generate_private_key(65537, 2048))
    both = [SignatureAlgorithm("RSA", "SHA-256", "PKCS1.5"), SignatureAlgorithm("RSA", "SHA-256", "PSS")]
    assert token.token_algorithm(cert, both).name == "RS256"
    assert token.token_algorithm(cert).name == "RS256"
    pss = token.token_algorithm(cert, [SignatureAlgorithm("RSA", "SHA-256", "PSS")])
    assert (pss.name, pss.padding) == ("PS256", "PSS")


def test_unsupported_curve_is_not_supported() -> None:
    from agent.errors import NotSupportedError

    with pytest.raises(NotSupportedError):
        token.token_algorithm(_self_signed(ec.generate_private_key(ec.SECP256K1())))


def test_auth_digest_is_hash_of_hashes() -> None:
    origin, nonce = "https://ria.example.ee", "A" * 44
    data = hashlib.sha384(origin.encode()).digest() + hashlib.sha384(nonce.encode()).digest()
    assert token.signed_data(origin, nonce, "SHA-384") == data
    assert token.auth_digest(origin, nonce, "SHA-384") == hashlib.sha384(data).digest()


@pytest.mark.parametrize(
    "nonce", ["A" * 43, "A" * 129, "", "A" * 43 + "!", "A" * 44 + "\n", None, 12345]
)
def test_bad_nonces_are_invalid_arguments(nonce: object) -> None:
    with pytest.raises(InvalidArgumentError):
        token.validate_nonce(nonce)


@given(st.binary(min_size=32, max_size=96))
def test_base64_of_32_to_96_bytes_is_a_valid_nonce(raw: bytes) -> None:
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        assert token.validate_nonce(encoded) == encoded


def test_build_token_shape() -> None:
    cert = _self_signed(ec.generate_private_key(ec.SECP384R1()))
    built = token_json(token.build_token(cert, token.TokenAlgorithm("ES384", "SHA-384"),
                                         b"\x01" * 96, "https://x/releases/1"))
    assert list(built) == ["unverifiedCertificate", "algorithm", "signature", "format",
                           "appVersion"]
    assert set(built) == {"unverifiedCertificate", "algorithm", "signature", "format", "appVersion"}
    assert base64.b64decode(built["unverifiedCertificate"]) == cert
    assert built["format"] == "web-eid:1.0"


REAL_APP_TOKENS = (0, 2, 3, 4, 5)  # made by the Web eID app from real test cards


@pytest.mark.skipif(not VECTORS.exists(), reason="no reference vectors")
@pytest.mark.parametrize("index", REAL_APP_TOKENS)
def test_real_web_eid_tokens_match_our_algorithm_and_signed_data(index: int) -> None:
    """Real tokens: our algorithm mapping gives the app's choice, and the card's signature
    verifies over OUR signed_data(origin, nonce) (byte compatibility)."""
    vector = json.loads(VECTORS.read_text())[index]
    real = vector["token"]
    der = base64.b64decode(real["unverifiedCertificate"])
    card_algorithms = (
        [SignatureAlgorithm("RSA", "SHA-256", "PSS")] if real["algorithm"] == "PS256" else []
    )
    algorithm = token.token_algorithm(der, card_algorithms)
    assert algorithm.name == real["algorithm"]
    data = token.signed_data(vector["origin"], vector["nonce"], algorithm.hash_function)
    _verify(load_certificate(der).certificate, algorithm, base64.b64decode(real["signature"]), data)
    with pytest.raises(InvalidSignature):
        other = token.signed_data(vector["origin"] + "x", vector["nonce"], algorithm.hash_function)
        _verify(load_certificate(der).certificate, algorithm, base64.b64decode(real["signature"]),
                other)


def _verify(cert: x509.Certificate, algorithm: token.TokenAlgorithm, signature: bytes,
            data: bytes) -> None:
    key = cert.public_key()
    h = hash_for_name(algorithm.hash_function)
    if isinstance(key, ec.EllipticCurvePublicKey):
        half = len(signature) // 2
        der_sig = encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                       int.from_bytes(signature[half:], "big"))
        key.verify(der_sig, data, ec.ECDSA(h))
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        pad: padding.AsymmetricPadding = (
            padding.PSS(padding.MGF1(h), padding.PSS.DIGEST_LENGTH)
            if algorithm.padding == "PSS" else padding.PKCS1v15()
        )
        key.verify(signature, data, pad, h)
