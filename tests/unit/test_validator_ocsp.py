"""OCSP step of the validator against the local test responder (real HTTP on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from eid_emulator.testing import (
    CertStatus,
    OcspResponder,
    SamplePki,
    issue_certificate,
    make_key,
    name,
)
from eid_validator import (
    AuthTokenValidator,
    CertificateRevokedError,
    DesignatedOcspService,
    OcspCheckFailedError,
    OcspConfig,
)

from tests.unit.test_validator import NONCE, ORIGIN, make_token


@pytest.fixture(scope="module")
def pki() -> SamplePki:
    return SamplePki(prefix="Ocsp")


@pytest.fixture()
def responder(pki: SamplePki) -> Iterator[OcspResponder]:
    responder = pki.responder_for()
    pki.ocsp_url = responder.start()
    yield responder
    responder.stop()


@pytest.fixture()
def user(pki: SamplePki, responder: OcspResponder) -> tuple[Any, x509.Certificate]:
    key, cert = pki.issue_user("ec-p384")
    responder.set_status(cert.serial_number, CertStatus.GOOD)
    return key, cert


def _validate(pki: SamplePki, user: tuple[Any, x509.Certificate], **config: Any) -> Any:
    validator = AuthTokenValidator(ORIGIN, [pki.ca], ocsp=OcspConfig(**config))
    return validator.validate(make_token(*user, "ES384"), NONCE)


def _fails(pki: SamplePki, user: Any, check: str, **config: Any) -> OcspCheckFailedError:
    with pytest.raises(OcspCheckFailedError) as caught:
        _validate(pki, user, **config)
    assert caught.value.check == check, caught.value
    return caught.value


def test_good(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    assert _validate(pki, user).certificate == user[1]
    assert len(responder.requests) == 1
    request = ocsp.load_der_ocsp_request(responder.requests[0])
    assert isinstance(request.hash_algorithm, hashes.SHA1)
    assert request.serial_number == user[1].serial_number
    nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    assert len(nonce) == 32


def test_revoked(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    responder.set_status(user[1].serial_number, CertStatus.REVOKED)
    with pytest.raises(CertificateRevokedError) as caught:
        _validate(pki, user)
    assert caught.value.status == "REVOKED" and caught.value.check == "ocsp"


def test_unknown(pki: SamplePki, responder: OcspResponder) -> None:
    key, cert = pki.issue_user("rsa-2048")  # never registered with the responder
    with pytest.raises(CertificateRevokedError) as caught:
        AuthTokenValidator(ORIGIN, [pki.ca], ocsp=OcspConfig()).validate(
            make_token(key, cert, "PS256"), NONCE)
    assert caught.value.status == "UNKNOWN"


def test_wrong_nonce(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    responder.wrong_nonce = True
    _fails(pki, user, "ocsp-nonce")


def test_missing_nonce(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    responder.omit_nonce = True
    _fails(pki, user, "ocsp-nonce")


def test_nonce_disabled_url(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    assert _validate(pki, user, nonce_disabled_urls=frozenset({responder.url}))
    request = ocsp.load_der_ocsp_request(responder.requests[-1])
    with pytest.raises(x509.ExtensionNotFound):
        request.extensions.get_extension_for_class(x509.OCSPNonce)


def test_stale_this_update(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    responder.this_update_offset = -timedelta(minutes=10)
    _fails(pki, user, "ocsp-time")
    assert _validate(pki, user, max_this_update_age=timedelta(minutes=15))


def test_this_update_in_the_future(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    responder.this_update_offset = timedelta(minutes=1)
    assert _validate(pki, user)  # within the 15-minute skew
    responder.this_update_offset = timedelta(minutes=20)
    _fails(pki, user, "ocsp-time")


def test_next_update_in_the_past(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    responder.this_update_offset = -timedelta(hours=2)
    responder.next_update_after = timedelta(minutes=30)
    _fails(pki, user, "ocsp-time", max_this_update_age=timedelta(days=1))


def test_bad_signature(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    responder.bad_signature = True
    _fails(pki, user, "ocsp-signature")


def test_responder_certificate_missing(pki: SamplePki, responder: OcspResponder,
                                       user: Any) -> None:
    responder.omit_certificate = True
    _fails(pki, user, "ocsp-responder")


def test_responder_without_ocsp_signing_eku(pki: SamplePki, responder: OcspResponder,
                                            user: Any) -> None:
    key = make_key("ec-p256")
    responder.responder_key = key
    responder.responder_cert = issue_certificate(
        name("No EKU Responder"), key.public_key(), pki.ca, pki.ca_key,
        eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    error = _fails(pki, user, "ocsp-responder")
    assert "OCSPSigning" in str(error)


def test_responder_from_another_ca(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    other = SamplePki(prefix="Rogue")
    responder.responder_key = other.responder_key
    responder.responder_cert = other.responder
    _fails(pki, user, "ocsp-responder")


def test_expired_responder_certificate(pki: SamplePki, responder: OcspResponder,
                                       user: Any) -> None:
    key = make_key("ec-p256")
    now = datetime.now(UTC)
    responder.responder_key = key
    responder.responder_cert = issue_certificate(
        name("Old Responder"), key.public_key(), pki.ca, pki.ca_key,
        eku=[ExtendedKeyUsageOID.OCSP_SIGNING], not_before=now - timedelta(days=9),
        not_after=now - timedelta(days=1))
    _fails(pki, user, "ocsp-responder")


def test_unsuccessful_response(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    responder.response_status = ocsp.OCSPResponseStatus.TRY_LATER
    error = _fails(pki, user, "ocsp")
    assert "TRY_LATER" in str(error)


def test_http_error(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    responder.http_status = 500
    _fails(pki, user, "ocsp-request")


def test_responder_unreachable(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    responder.stop()
    _fails(pki, user, "ocsp-request", timeout=2.0)


def test_no_ocsp_url(pki: SamplePki) -> None:
    key, cert = pki.issue_user("ec-p384", ocsp_url=None)
    _fails(pki, (key, cert), "ocsp-url")


def test_garbage_response(pki: SamplePki, user: Any) -> None:
    _fails(pki, user, "ocsp", fetcher=lambda url, der, timeout: b"\x30\x03garbage")


def test_response_for_another_certificate(pki: SamplePki, responder: OcspResponder,
                                          user: Any) -> None:
    _, other = pki.issue_user("ec-p256")
    responder.set_status(other.serial_number, CertStatus.GOOD)
    other_request = ocsp.OCSPRequestBuilder().add_certificate(
        other, pki.ca, hashes.SHA1()).build().public_bytes(serialization.Encoding.DER)
    error = _fails(pki, user, "ocsp",
                   fetcher=lambda url, der, timeout: responder.answer(other_request))
    assert "CertID" in str(error)


def test_injected_fetcher_gets_aia_url(pki: SamplePki, responder: OcspResponder,
                                       user: Any) -> None:
    seen: list[tuple[str, float]] = []

    def fetch(url: str, der: bytes, timeout: float) -> bytes:
        seen.append((url, timeout))
        return responder.answer(der)

    assert _validate(pki, user, fetcher=fetch, timeout=3.0)
    assert seen == [(responder.url, 3.0)]


def test_disabled_config_skips_ocsp(pki: SamplePki, responder: OcspResponder, user: Any) -> None:
    responder.set_status(user[1].serial_number, CertStatus.REVOKED)
    assert _validate(pki, user, enabled=False)
    assert responder.requests == []


def test_designated_responder(pki: SamplePki, user: Any) -> None:
    key = make_key("ec-p256")
    designated_cert = issue_certificate(name("Designated OCSP"), key.public_key(), None, key)
    with OcspResponder(pki.ca, designated_cert, key) as designated:
        designated.set_status(user[1].serial_number, CertStatus.GOOD)
        service = DesignatedOcspService(designated.url, designated_cert, (pki.ca,))
        assert _validate(pki, user, designated=service)  # AIA responder not asked
        assert len(designated.requests) == 1
        designated.set_status(user[1].serial_number, CertStatus.REVOKED)
        with pytest.raises(CertificateRevokedError):
            _validate(pki, user, designated=service)
        # a response signed by someone else is refused
        designated.responder_cert, designated.responder_key = pki.responder, pki.responder_key
        _fails(pki, user, "ocsp-responder", designated=service)


def test_fetcher_exception_is_typed(pki: SamplePki, user: Any) -> None:
    def broken(url: str, der: bytes, timeout: float) -> bytes:
        raise ConnectionResetError("proxy hung up")

    _fails(pki, user, "ocsp-request", fetcher=broken)
