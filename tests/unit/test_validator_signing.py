"""verify_signature: hash signatures from webeid.sign(), checked against the authenticated user."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from eid_emulator.testing import SamplePki
from eid_validator import (
    AlgorithmNotAllowedError,
    AuthTokenValidator,
    CertificateExpiredError,
    CertificateMissingPurposeError,
    CertificateNotTrustedError,
    CertificateWrongPurposeError,
    NotSamePersonError,
    SignatureVerificationError,
    TokenParseError,
    ValidatedIdentity,
    verify_signature,
)

from tests.unit.test_validator import NONCE, ORIGIN, make_token

HASH = hashlib.sha384(b"the document").digest()
ECC = {"cryptoAlgorithm": "ECC", "hashFunction": "SHA-384", "paddingScheme": "NONE"}
PKCS1 = {"cryptoAlgorithm": "RSA", "hashFunction": "SHA-384", "paddingScheme": "PKCS1.5"}
PSS = {"cryptoAlgorithm": "RSA", "hashFunction": "SHA-384", "paddingScheme": "PSS"}


@pytest.fixture(scope="module")
def pki() -> SamplePki:
    return SamplePki(prefix="Sign")


@pytest.fixture(scope="module")
def alice(pki: SamplePki) -> ValidatedIdentity:
    key, cert = pki.issue_user("ec-p384")
    return AuthTokenValidator(ORIGIN, [pki.ca]).validate(make_token(key, cert, "ES384"), NONCE)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _sign(key: Any, algorithm: dict[str, str], digest: bytes = HASH) -> bytes:
    prehashed = utils.Prehashed(hashes.SHA384())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = utils.decode_dss_signature(key.sign(digest, ec.ECDSA(prehashed)))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    pad = padding.PKCS1v15() if algorithm["paddingScheme"] == "PKCS1.5" else \
        padding.PSS(padding.MGF1(hashes.SHA384()), 48)
    return key.sign(digest, pad, prehashed)


def _verify(pki: SamplePki, alice: ValidatedIdentity, cert: x509.Certificate | bytes | str,
            signature: bytes, algorithm: dict[str, str], **kwargs: Any) -> ValidatedIdentity:
    der = _der(cert) if isinstance(cert, x509.Certificate) else cert
    options: dict[str, Any] = {"trusted_cas": [pki.ca], "authenticated": alice}
    options.update(kwargs)
    return verify_signature(der, HASH, "SHA-384", signature, algorithm, **options)


@pytest.mark.parametrize(("kind", "algorithm"), [
    ("ec-p384", ECC), ("ec-p256", ECC), ("rsa-2048", PKCS1), ("rsa-2048", PSS)])
def test_valid_signature(pki: SamplePki, alice: ValidatedIdentity, kind: str,
                         algorithm: dict[str, str]) -> None:
    key, cert = pki.issue_user(kind, role="Signature")
    signer = _verify(pki, alice, cert, _sign(key, algorithm), algorithm)
    assert signer.serial_number == alice.serial_number and signer.certificate == cert


def test_ecdsa_der_signature_and_base64_certificate(pki: SamplePki,
                                                   alice: ValidatedIdentity) -> None:
    key, cert = pki.issue_user("ec-p384", role="Signature")
    der = key.sign(HASH, ec.ECDSA(utils.Prehashed(hashes.SHA384())))
    assert _verify(pki, alice, base64.b64encode(_der(cert)).decode(), der, ECC)


def test_signature_over_other_hash(pki: SamplePki, alice: ValidatedIdentity) -> None:
    key, cert = pki.issue_user("rsa-2048", role="Signature")
    signature = _sign(key, PKCS1, hashlib.sha384(b"another document").digest())
    with pytest.raises(SignatureVerificationError):
        _verify(pki, alice, cert, signature, PKCS1)


def test_pss_claimed_as_pkcs1(pki: SamplePki, alice: ValidatedIdentity) -> None:
    key, cert = pki.issue_user("rsa-2048", role="Signature")
    with pytest.raises(SignatureVerificationError):
        _verify(pki, alice, cert, _sign(key, PSS), PKCS1)


def test_algorithm_not_fitting_key(pki: SamplePki, alice: ValidatedIdentity) -> None:
    key, cert = pki.issue_user("ec-p384", role="Signature")
    with pytest.raises(AlgorithmNotAllowedError):
        _verify(pki, alice, cert, _sign(key, ECC), PKCS1)
    with pytest.raises(AlgorithmNotAllowedError):
        _verify(pki, alice, cert, _sign(key, ECC), {**ECC, "hashFunction": "SHA-256"})
    with pytest.raises(AlgorithmNotAllowedError):
        _verify(pki, alice, cert, _sign(key, ECC), {**ECC, "paddingScheme": "PSS"})


def test_hash_length_must_match(pki: SamplePki, alice: ValidatedIdentity) -> None:
    key, cert = pki.issue_user("ec-p384", role="Signature")
    with pytest.raises(SignatureVerificationError):
        verify_signature(_der(cert), HASH[:32], "SHA-384", _sign(key, ECC), ECC,
                         trusted_cas=[pki.ca], authenticated=alice)


def test_other_person(pki: SamplePki, alice: ValidatedIdentity) -> None:
    key, cert = pki.issue_user("ec-p384", role="Signature", serial_number="PNOBE-99999999999")
    with pytest.raises(NotSamePersonError) as caught:
        _verify(pki, alice, cert, _sign(key, ECC), ECC)
    assert caught.value.check == "same-person"


def test_other_country(pki: SamplePki, alice: ValidatedIdentity) -> None:
    key, cert = pki.issue_user("ec-p384", role="Signature", country="LU")
    with pytest.raises(NotSamePersonError):
        _verify(pki, alice, cert, _sign(key, ECC), ECC)


def test_auth_certificate_cannot_sign(pki: SamplePki, alice: ValidatedIdentity) -> None:
    key, cert = pki.issue_user("ec-p384")  # digitalSignature only
    with pytest.raises(CertificateWrongPurposeError):
        _verify(pki, alice, cert, _sign(key, ECC), ECC)
    key, cert = pki.issue_user("ec-p384", role="Signature", key_usage=None)
    with pytest.raises(CertificateMissingPurposeError):
        _verify(pki, alice, cert, _sign(key, ECC), ECC)


def test_untrusted_signing_certificate(pki: SamplePki, alice: ValidatedIdentity) -> None:
    other = SamplePki(prefix="Elsewhere")
    key, cert = other.issue_user("ec-p384", role="Signature")
    with pytest.raises(CertificateNotTrustedError):
        _verify(pki, alice, cert, _sign(key, ECC), ECC)


def test_expired_signing_certificate(pki: SamplePki, alice: ValidatedIdentity) -> None:
    key, cert = pki.issue_user("ec-p384", role="Signature")
    later = datetime.now(UTC) + timedelta(days=366)
    with pytest.raises(CertificateExpiredError):
        _verify(pki, alice, cert, _sign(key, ECC), ECC, clock=lambda: later)


def test_bad_certificate_bytes(pki: SamplePki, alice: ValidatedIdentity) -> None:
    with pytest.raises(TokenParseError):
        _verify(pki, alice, b"\x30\x00", b"\x00" * 96, ECC)
