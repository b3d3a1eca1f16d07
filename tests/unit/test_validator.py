"""The server-side Web eID token validator: real vectors, then a forged input for every check."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import ExtendedKeyUsageOID
from eid_emulator.testing import SamplePki, issue_certificate, make_key, name
from eid_validator import (
    AlgorithmNotAllowedError,
    AuthTokenValidator,
    CertificateDisallowedPolicyError,
    CertificateExpiredError,
    CertificateMissingPurposeError,
    CertificateNotTrustedError,
    CertificateNotYetValidError,
    CertificateWrongPurposeError,
    NonceExpiredError,
    NonceMismatchError,
    NonceNotFoundError,
    NonceStore,
    SignatureVerificationError,
    TokenFormatError,
    TokenParseError,
    ValidationError,
    signed_data,
    verify_token_signature,
)
from eid_validator.algorithms import Algorithm
from eid_validator.certs import load_certificate

# Copy of the reference vectors (web-eid validator test suites; see shared reference README).
VECTORS = Path(__file__).parents[1] / "data" / "webeid-tokens.json"
ORIGIN = "https://portal.example.be"
NONCE = base64.b64encode(bytes(range(32))).decode()
MOBILE_ID = x509.ObjectIdentifier("1.3.6.1.4.1.10015.1.3.1")


def _vectors() -> list[dict[str, Any]]:
    return json.loads(VECTORS.read_text(encoding="utf-8"))


def _clock(vector: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(vector["validAt"].replace("Z", "+00:00"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def make_token(key: Any, cert: x509.Certificate, alg: str, *, origin: str = ORIGIN,
               nonce: str = NONCE, **fields: Any) -> dict[str, Any]:
    """A token exactly as web-eid-app builds it (ECDSA raw r||s; PS salt = hash length)."""
    algorithm = Algorithm.parse(alg)
    data = signed_data(algorithm, origin, nonce)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(algorithm.hash)))
        size = (key.curve.key_size + 7) // 8
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    elif alg.startswith("PS"):
        signature = key.sign(data, padding.PSS(padding.MGF1(algorithm.hash),
                                               algorithm.hash.digest_size), algorithm.hash)
    else:
        signature = key.sign(data, padding.PKCS1v15(), algorithm.hash)
    token = {"unverifiedCertificate": _b64(_der(cert)), "algorithm": alg,
             "signature": _b64(signature), "format": "web-eid:1.0",
             "appVersion": "https://web-eid.eu/web-eid-app/releases/2.7.0+965"}
    token.update(fields)
    return token


# --- real vectors -------------------------------------------------------------------------------

EXPECTED_ERRORS: dict[str, type[ValidationError]] = {
    "EE ES384 token, wrong challenge nonce": SignatureVerificationError,
    "EE ES384 token, wrong origin": SignatureVerificationError,
    "EE ES384 token, certificate expired": CertificateExpiredError,
    "EE ES384 token, certificate not yet valid": CertificateNotYetValidError,
    "EE ES384 token, untrusted issuer": CertificateNotTrustedError,
    'EE token with algorithm "NONE"': AlgorithmNotAllowedError,
    'EE token with unknown format "invalid.0"': TokenFormatError,
    "EE ES384 signature paired with another certificate": SignatureVerificationError,
    "Token whose certificate has no KeyUsage extension": CertificateMissingPurposeError,
    "EE ES384 token from the web-eid-app README": SignatureVerificationError,
    "EE ES384 signature from an early .NET test": SignatureVerificationError,
    "EE ES384 token with the signature re-encoded as ASN.1 DER": SignatureVerificationError,
}


def _expected_error(vector: dict[str, Any]) -> type[ValidationError]:
    matches = [cls for prefix, cls in EXPECTED_ERRORS.items() if vector["name"].startswith(prefix)]
    assert len(matches) == 1, vector["name"]
    return matches[0]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"][:60] for v in vectors]


VALID_WITH_CA = [v for v in _vectors() if v["expect"] == "valid" and v["issuerCert"]]
VALID_WITHOUT_CA = [v for v in _vectors() if v["expect"] == "valid" and not v["issuerCert"]]
INVALID = [v for v in _vectors() if v["expect"] == "invalid"]


def test_vector_file_has_what_this_suite_expects() -> None:
    assert len(VALID_WITH_CA) == 6 and len(VALID_WITHOUT_CA) == 1 and len(INVALID) == 12


@pytest.mark.parametrize("vector", VALID_WITH_CA, ids=_ids(VALID_WITH_CA))
def test_real_valid_token_validates(vector: dict[str, Any]) -> None:
    anchor = x509.load_pem_x509_certificate(vector["issuerCert"].encode())
    validator = AuthTokenValidator(vector["origin"], [anchor], clock=lambda: _clock(vector))
    identity = validator.validate(vector["token"], vector["nonce"])
    assert identity.certificate_der == base64.b64decode(vector["token"]["unverifiedCertificate"])
    assert identity.country in ("EE", "BE", "FI")
    assert identity.common_name and identity.personal_code
    # the JSON-text form validates too
    assert validator.validate(json.dumps(vector["token"]), vector["nonce"]).serial_number == \
        identity.serial_number


def test_real_identity_fields() -> None:
    by_country = {}
    for vector in VALID_WITH_CA:
        anchor = x509.load_pem_x509_certificate(vector["issuerCert"].encode())
        validator = AuthTokenValidator(vector["origin"], [anchor], clock=lambda v=vector: _clock(v))
        identity = validator.validate(vector["token"], vector["nonce"])
        by_country[identity.country] = identity
    ee, be = by_country["EE"], by_country["BE"]
    assert (ee.serial_number, ee.personal_code, ee.id_type, ee.id_country) == (
        "PNOEE-38001085718", "38001085718", "PNO", "EE")
    assert (ee.given_name, ee.surname) == ("JAAK-KRISTJAN", "JÕEORG")
    assert (be.serial_number, be.personal_code, be.id_type) == ("01050399864", "01050399864", None)
    assert be.common_name == "Nora Specimen (Authentication)"
    assert (be.given_name, be.surname) == ("Nora Angèle", "Specimen")


@pytest.mark.parametrize("vector", VALID_WITHOUT_CA, ids=_ids(VALID_WITHOUT_CA))
def test_real_valid_token_without_shipped_ca(vector: dict[str, Any]) -> None:
    """No CA shipped: the signature step is checked alone, and the chain step must refuse it."""
    token = vector["token"]
    cert = load_certificate(base64.b64decode(token["unverifiedCertificate"])).certificate
    verify_token_signature(cert.public_key(), token["algorithm"], token["signature"],
                           vector["origin"], vector["nonce"])
    with pytest.raises(SignatureVerificationError):
        verify_token_signature(cert.public_key(), token["algorithm"], token["signature"],
                               vector["origin"], vector["nonce"][:-1] + "X")
    unrelated = SamplePki(prefix="Unrelated")
    validator = AuthTokenValidator(vector["origin"], [unrelated.ca], clock=lambda: _clock(vector))
    with pytest.raises(CertificateNotTrustedError):
        validator.validate(token, vector["nonce"])


@pytest.mark.parametrize("vector", INVALID, ids=_ids(INVALID))
def test_real_invalid_token_fails_with_the_right_error(vector: dict[str, Any]) -> None:
    if vector["issuerCert"]:
        anchors = [x509.load_pem_x509_certificate(vector["issuerCert"].encode())]
    else:
        anchors = [SamplePki(prefix="Unrelated").ca]
    validator = AuthTokenValidator(vector["origin"], anchors, clock=lambda: _clock(vector))
    with pytest.raises(ValidationError) as caught:
        validator.validate(vector["token"], vector["nonce"])
    assert type(caught.value) is _expected_error(vector), caught.value


# --- a generated PKI: EC P-384 and RSA-2048 users ----------------------------------------------

@pytest.fixture(scope="module")
def pki() -> SamplePki:
    return SamplePki()


@pytest.fixture(scope="module")
def ec_user(pki: SamplePki) -> tuple[Any, x509.Certificate]:
    return pki.issue_user("ec-p384")


@pytest.fixture(scope="module")
def rsa_user(pki: SamplePki) -> tuple[Any, x509.Certificate]:
    return pki.issue_user("rsa-2048")


@pytest.fixture()
def validator(pki: SamplePki) -> AuthTokenValidator:
    return AuthTokenValidator(ORIGIN, [pki.ca])


@pytest.mark.parametrize(("kind", "alg"), [
    ("ec-p256", "ES256"), ("ec-p384", "ES384"), ("ec-p521", "ES512"),
    ("rsa-2048", "RS256"), ("rsa-2048", "RS384"), ("rsa-2048", "RS512"),
    ("rsa-2048", "PS256"), ("rsa-2048", "PS384"), ("rsa-2048", "PS512"),
])
def test_generated_tokens_validate(pki: SamplePki, validator: AuthTokenValidator,
                                   kind: str, alg: str) -> None:
    key, cert = pki.issue_user(kind)
    identity = validator.validate(make_token(key, cert, alg), NONCE)
    assert identity.certificate == cert
    assert (identity.personal_code, identity.id_country, identity.country) == (
        "85010112345", "BE", "BE")


def test_root_as_anchor_through_an_untrusted_intermediate(pki: SamplePki, ec_user: Any) -> None:
    token = make_token(*ec_user, "ES384")
    with pytest.raises(CertificateNotTrustedError):
        AuthTokenValidator(ORIGIN, [pki.root]).validate(token, NONCE)
    identity = AuthTokenValidator(ORIGIN, [pki.root], intermediates=[pki.ca]).validate(token, NONCE)
    assert identity.certificate == ec_user[1]


def test_wrong_origin(validator: AuthTokenValidator, ec_user: Any) -> None:
    token = make_token(*ec_user, "ES384", origin="https://evil.example.be")
    with pytest.raises(SignatureVerificationError) as caught:
        validator.validate(token, NONCE)
    assert caught.value.check == "signature"


def test_wrong_nonce(validator: AuthTokenValidator, rsa_user: Any) -> None:
    token = make_token(*rsa_user, "RS256")
    with pytest.raises(SignatureVerificationError):
        validator.validate(token, base64.b64encode(bytes(32)).decode())


def test_empty_nonce(validator: AuthTokenValidator, rsa_user: Any) -> None:
    with pytest.raises(NonceNotFoundError):
        validator.validate(make_token(*rsa_user, "RS256"), "")


def test_tampered_signature(validator: AuthTokenValidator, ec_user: Any) -> None:
    token = make_token(*ec_user, "ES384")
    raw = bytearray(base64.b64decode(token["signature"]))
    raw[10] ^= 0x01
    token["signature"] = _b64(bytes(raw))
    with pytest.raises(SignatureVerificationError):
        validator.validate(token, NONCE)


def test_algorithm_not_matching_ec_curve(validator: AuthTokenValidator, ec_user: Any) -> None:
    token = make_token(*ec_user, "ES384")
    token["algorithm"] = "ES256"
    with pytest.raises(AlgorithmNotAllowedError) as caught:
        validator.validate(token, NONCE)
    assert caught.value.check == "algorithm-key"


@pytest.mark.parametrize("claimed", ["RS256", "PS384"])
def test_rsa_algorithm_with_ec_key(validator: AuthTokenValidator, ec_user: Any,
                                   claimed: str) -> None:
    token = make_token(*ec_user, "ES384")
    token["algorithm"] = claimed
    with pytest.raises(AlgorithmNotAllowedError):
        validator.validate(token, NONCE)


def test_es_algorithm_with_rsa_key(validator: AuthTokenValidator, rsa_user: Any) -> None:
    token = make_token(*rsa_user, "RS256")
    token["algorithm"] = "ES256"
    with pytest.raises(AlgorithmNotAllowedError):
        validator.validate(token, NONCE)


@pytest.mark.parametrize(("signed_as", "claimed"), [("PS256", "RS256"), ("RS256", "PS256")])
def test_rs_ps_mix_up(validator: AuthTokenValidator, rsa_user: Any, signed_as: str,
                      claimed: str) -> None:
    token = make_token(*rsa_user, signed_as)
    token["algorithm"] = claimed
    with pytest.raises(SignatureVerificationError):
        validator.validate(token, NONCE)


def test_pss_with_other_salt_length_is_refused(validator: AuthTokenValidator,
                                               rsa_user: Any) -> None:
    key, cert = rsa_user
    data = signed_data(Algorithm.parse("PS256"), ORIGIN, NONCE)
    signature = key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), 20), hashes.SHA256())
    token = make_token(key, cert, "PS256", signature=_b64(signature))
    with pytest.raises(SignatureVerificationError):
        validator.validate(token, NONCE)


def test_algorithm_outside_configured_set(pki: SamplePki, rsa_user: Any) -> None:
    restricted = AuthTokenValidator(ORIGIN, [pki.ca], allowed_algorithms={"ES384", "PS256"})
    with pytest.raises(AlgorithmNotAllowedError):
        restricted.validate(make_token(*rsa_user, "RS256"), NONCE)
    assert restricted.validate(make_token(*rsa_user, "PS256"), NONCE).country == "BE"


def test_der_ecdsa_signature_is_refused(validator: AuthTokenValidator, ec_user: Any) -> None:
    key, cert = ec_user
    der = key.sign(signed_data(Algorithm.parse("ES384"), ORIGIN, NONCE), ec.ECDSA(hashes.SHA384()))
    with pytest.raises(SignatureVerificationError):
        validator.validate(make_token(key, cert, "ES384", signature=_b64(der)), NONCE)


def test_untrusted_ca(ec_user: Any) -> None:
    other = SamplePki(prefix="Other")
    with pytest.raises(CertificateNotTrustedError) as caught:
        AuthTokenValidator(ORIGIN, [other.ca, other.root]).validate(
            make_token(*ec_user, "ES384"), NONCE)
    assert caught.value.check == "trust"


def test_same_name_but_other_key_is_untrusted(pki: SamplePki, ec_user: Any) -> None:
    impostor_key = make_key("ec-p384")
    impostor = issue_certificate(pki.ca.subject, impostor_key.public_key(), pki.root,
                                 pki.root_key, ca=True)
    with pytest.raises(CertificateNotTrustedError):
        AuthTokenValidator(ORIGIN, [impostor]).validate(make_token(*ec_user, "ES384"), NONCE)


def test_issuer_without_ca_basic_constraints(pki: SamplePki) -> None:
    not_ca_key = make_key("ec-p384")
    not_ca = issue_certificate(name("Not A CA", country="BE"), not_ca_key.public_key(), pki.ca,
                               pki.ca_key, ca=False)
    user_key = make_key("ec-p384")
    user = issue_certificate(name("Victim", country="BE", serial_number="1"),
                             user_key.public_key(), not_ca, not_ca_key)
    with pytest.raises(CertificateNotTrustedError) as caught:
        AuthTokenValidator(ORIGIN, [not_ca]).validate(make_token(user_key, user, "ES384"), NONCE)
    assert "not a CA" in str(caught.value)


def test_expired_certificate(pki: SamplePki, validator: AuthTokenValidator) -> None:
    now = datetime.now(UTC)
    key, cert = pki.issue_user(not_before=now - timedelta(days=30),
                               not_after=now - timedelta(days=1))
    with pytest.raises(CertificateExpiredError) as caught:
        validator.validate(make_token(key, cert, "ES384"), NONCE)
    assert caught.value.check == "validity"


def test_not_yet_valid_certificate(pki: SamplePki, validator: AuthTokenValidator) -> None:
    now = datetime.now(UTC)
    key, cert = pki.issue_user(not_before=now + timedelta(days=1))
    with pytest.raises(CertificateNotYetValidError):
        validator.validate(make_token(key, cert, "ES384"), NONCE)


def test_expired_trust_anchor(pki: SamplePki, ec_user: Any) -> None:
    later = datetime.now(UTC) + timedelta(days=400)  # the CA expires after 365 days
    key, cert = pki.issue_user(not_after=later + timedelta(days=30))
    with pytest.raises(CertificateExpiredError) as caught:
        AuthTokenValidator(ORIGIN, [pki.ca], clock=lambda: later).validate(
            make_token(key, cert, "ES384"), NONCE)
    assert caught.value.check == "ca-validity"


def test_injected_clock_is_used(pki: SamplePki, ec_user: Any) -> None:
    token = make_token(*ec_user, "ES384")
    past = datetime.now(UTC) - timedelta(days=10)
    with pytest.raises(CertificateNotYetValidError):
        AuthTokenValidator(ORIGIN, [pki.ca], clock=lambda: past).validate(token, NONCE)


def test_missing_key_usage(pki: SamplePki, validator: AuthTokenValidator) -> None:
    key, cert = pki.issue_user(key_usage=None)
    with pytest.raises(CertificateMissingPurposeError) as caught:
        validator.validate(make_token(key, cert, "ES384"), NONCE)
    assert caught.value.check == "purpose"


def test_no_digital_signature(pki: SamplePki, validator: AuthTokenValidator) -> None:
    usage = x509.KeyUsage(False, True, False, False, False, False, False, False, False)
    key, cert = pki.issue_user(key_usage=usage)
    with pytest.raises(CertificateWrongPurposeError):
        validator.validate(make_token(key, cert, "ES384"), NONCE)


def test_eku_without_client_auth(pki: SamplePki, validator: AuthTokenValidator) -> None:
    key, cert = pki.issue_user(eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION])
    with pytest.raises(CertificateWrongPurposeError):
        validator.validate(make_token(key, cert, "ES384"), NONCE)


def test_eku_absent_is_accepted(pki: SamplePki, validator: AuthTokenValidator) -> None:
    key, cert = pki.issue_user(eku=None)
    assert validator.validate(make_token(key, cert, "ES384"), NONCE).certificate == cert


def test_disallowed_policy(pki: SamplePki, validator: AuthTokenValidator) -> None:
    key, cert = pki.issue_user(policies=[x509.ObjectIdentifier("2.16.56.12.1.1.2.2"), MOBILE_ID])
    with pytest.raises(CertificateDisallowedPolicyError) as caught:
        validator.validate(make_token(key, cert, "ES384"), NONCE)
    assert caught.value.check == "policy"
    permissive = AuthTokenValidator(ORIGIN, [pki.ca], disallowed_policies=())
    assert permissive.validate(make_token(key, cert, "ES384"), NONCE).certificate == cert


def test_oversized_token(validator: AuthTokenValidator, ec_user: Any) -> None:
    token = make_token(*ec_user, "ES384", padding="x" * 10000)
    with pytest.raises(TokenParseError) as caught:
        validator.validate(token, NONCE)
    assert caught.value.check == "parse"
    with pytest.raises(TokenParseError):
        validator.validate(json.dumps(token), NONCE)


def test_undersized_token(validator: AuthTokenValidator) -> None:
    with pytest.raises(TokenParseError):
        validator.validate('{"format": "web-eid:1.0"}', NONCE)


@pytest.mark.parametrize("text", ["not json" * 20, json.dumps(["web-eid:1.0"] * 20), "{" * 150])
def test_not_a_json_object(validator: AuthTokenValidator, text: str) -> None:
    with pytest.raises(TokenParseError):
        validator.validate(text, NONCE)


@pytest.mark.parametrize("fmt", ["invalid.0", "web-eid:2", "WEB-EID:1.0", "web-eid"])
def test_wrong_format(validator: AuthTokenValidator, ec_user: Any, fmt: str) -> None:
    with pytest.raises(TokenFormatError):
        validator.validate(make_token(*ec_user, "ES384", format=fmt), NONCE)


def test_format_prefix_is_enough(validator: AuthTokenValidator, ec_user: Any) -> None:
    assert validator.validate(make_token(*ec_user, "ES384", format="web-eid:1.1"), NONCE)


@pytest.mark.parametrize("field", ["unverifiedCertificate", "algorithm", "signature", "format"])
def test_missing_field(validator: AuthTokenValidator, ec_user: Any, field: str) -> None:
    token = make_token(*ec_user, "ES384")
    del token[field]
    with pytest.raises(TokenParseError):
        validator.validate(token, NONCE)
    token[field] = 42
    with pytest.raises(TokenParseError):
        validator.validate(token, NONCE)


@pytest.mark.parametrize("field", ["unverifiedCertificate", "signature"])
def test_non_base64(validator: AuthTokenValidator, ec_user: Any, field: str) -> None:
    token = make_token(*ec_user, "ES384")
    token[field] = token[field][:20] + "!*" + token[field][22:]
    with pytest.raises(TokenParseError) as caught:
        validator.validate(token, NONCE)
    assert caught.value.check in ("certificate-decode", "signature-decode")


def test_certificate_not_der(validator: AuthTokenValidator, ec_user: Any) -> None:
    token = make_token(*ec_user, "ES384", unverifiedCertificate=_b64(b"\x30\x03\x02\x01\x01"))
    with pytest.raises(TokenParseError):
        validator.validate(token, NONCE)


@pytest.mark.parametrize("origin", [
    "http://portal.example.be", "https://portal.example.be/", "https://portal.example.be/login",
    "https://portal.example.be?x=1", "https://user@portal.example.be", "https://Portal.example.be",
    "https://portal.example.be:443", "portal.example.be", "https://", "https://host:99999",
])
def test_bad_site_origin_refused_at_construction(pki: SamplePki, origin: str) -> None:
    with pytest.raises(ValueError):
        AuthTokenValidator(origin, [pki.ca])


def test_origin_with_port(pki: SamplePki, ec_user: Any) -> None:
    origin = "https://localhost:8443"
    identity = AuthTokenValidator(origin, [pki.ca]).validate(
        make_token(*ec_user, "ES384", origin=origin), NONCE)
    assert identity.certificate == ec_user[1]


def test_construction_needs_anchors_and_known_algorithms(pki: SamplePki) -> None:
    with pytest.raises(ValueError):
        AuthTokenValidator(ORIGIN, [])
    with pytest.raises(ValueError):
        AuthTokenValidator(ORIGIN, [pki.ca], allowed_algorithms={"HS256"})


# --- nonce store ---------------------------------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_nonce_shape_and_uniqueness() -> None:
    store = NonceStore()
    nonces = {store.issue(f"s{i}") for i in range(50)}
    assert len(nonces) == 50
    for nonce in nonces:
        assert len(nonce) == 44 and len(base64.b64decode(nonce, validate=True)) == 32


def test_validate_with_store_single_use(validator: AuthTokenValidator, ec_user: Any) -> None:
    store = NonceStore()
    nonce = store.issue("session-a")
    token = make_token(*ec_user, "ES384", nonce=nonce)
    assert validator.validate_with_store(token, store, "session-a").certificate == ec_user[1]
    with pytest.raises(NonceNotFoundError):
        validator.validate_with_store(token, store, "session-a")


def test_nonce_of_other_session(validator: AuthTokenValidator, ec_user: Any) -> None:
    store = NonceStore()
    nonce_a = store.issue("session-a")
    store.issue("session-b")
    token = make_token(*ec_user, "ES384", nonce=nonce_a)
    with pytest.raises(NonceNotFoundError):
        validator.validate_with_store(token, store, "session-c")
    with pytest.raises(SignatureVerificationError):  # b's nonce is not the one signed
        validator.validate_with_store(token, store, "session-b")
    store.issue("session-b")
    with pytest.raises(NonceMismatchError):
        store.consume("session-b", nonce_a)


def test_expired_nonce(validator: AuthTokenValidator, ec_user: Any) -> None:
    clock = _Clock()
    store = NonceStore(clock=clock)
    nonce = store.issue("s")
    clock.now += timedelta(minutes=5, seconds=1)
    with pytest.raises(NonceExpiredError) as caught:
        validator.validate_with_store(make_token(*ec_user, "ES384", nonce=nonce), store, "s")
    assert caught.value.check == "nonce-expired"
    with pytest.raises(NonceNotFoundError):  # and it is gone
        store.consume("s")


def test_nonce_within_ttl_and_reissue_replaces() -> None:
    clock = _Clock()
    store = NonceStore(clock=clock)
    first = store.issue("s")
    second = store.issue("s")
    clock.now += timedelta(minutes=4, seconds=59)
    with pytest.raises(NonceMismatchError):
        store.consume("s", first)
    store.issue("s")
    assert store.consume("s") != second


def test_store_drops_expired_entries() -> None:
    clock = _Clock()
    store = NonceStore(clock=clock)
    for i in range(10):
        store.issue(f"s{i}")
    clock.now += timedelta(minutes=6)
    store.issue("fresh")
    assert len(store) == 1


def test_nonce_store_is_thread_safe() -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = NonceStore()
    store.issue("shared")
    results: list[str] = []

    def grab(_: int) -> None:
        try:
            results.append(store.consume("shared"))
        except NonceNotFoundError:
            pass

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(grab, range(64)))
    assert len(results) == 1


# --- import boundary -----------------------------------------------------------------------------

def test_import_needs_neither_pyscard_nor_websockets() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('smartcard', 'websockets'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import eid_validator, eid_emulator.testing\n"
        "assert 'smartcard' not in sys.modules and 'websockets' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_rsa_key_sizes_in_pki(rsa_user: Any, ec_user: Any) -> None:
    assert isinstance(rsa_user[0], rsa.RSAPrivateKey) and rsa_user[0].key_size == 2048
    assert isinstance(ec_user[0].curve, ec.SECP384R1)


def test_dict_token_that_is_not_json(validator: AuthTokenValidator, ec_user: Any) -> None:
    with pytest.raises(TokenParseError):
        validator.validate(make_token(*ec_user, "ES384", extra=object()), NONCE)


def test_http_localhost_only_when_allowed(pki: SamplePki, ec_user: Any) -> None:
    with pytest.raises(ValueError):
        AuthTokenValidator("http://localhost:8080", [pki.ca])
    for bad in ("http://portal.example.be", "http://localhost:80", "http://localhost/"):
        with pytest.raises(ValueError):
            AuthTokenValidator(bad, [pki.ca], allow_http_localhost=True)
    origin = "http://localhost:8080"
    validator = AuthTokenValidator(origin, [pki.ca], allow_http_localhost=True)
    assert validator.validate(make_token(*ec_user, "ES384", origin=origin), NONCE)
