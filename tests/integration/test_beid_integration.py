"""The Belgian eID driver against the virtual card: in-process and through pcscd + vpcd."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from eid_emulator.base import VirtualConnection
from eid_emulator.beid import BeidCard, BeidCardData
from eid_emulator.pki import Holder, TestPki, make_card_data

from agent.cards.base import KeyRole
from agent.cards.beid import PIN, BeidFile, BeidSession, open_session
from agent.cards.beid_identity import Sex
from agent.cards.common import CertificateCache, ecdsa_raw_to_der
from agent.errors import InvalidPinError, PinBlockedError
from agent.smartcard.apdu import SmartCardConnection

APPLETS = ("1.7", "1.8")
HOLDER = Holder()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(Path(tmp_path_factory.mktemp("beid-pki")))


@pytest.fixture(scope="module")
def card_data(pki: TestPki) -> Callable[..., BeidCardData]:
    made: dict[tuple[str, Holder], BeidCardData] = {}

    def get(applet: str, holder: Holder = HOLDER) -> BeidCardData:
        if (applet, holder) not in made:
            made[(applet, holder)] = make_card_data(pki, holder, applet)
        return made[(applet, holder)]

    return get


def _session(connection: SmartCardConnection, cache: CertificateCache | None = None) -> BeidSession:
    return open_session(connection, cache or CertificateCache(), resend_delay=0)


def _verify_signature(cert_der: bytes, signature: bytes, digest: bytes, scheme: str) -> None:
    """Verify with the certificate's public key; raises InvalidSignature on mismatch."""
    key = x509.load_der_x509_certificate(cert_der).public_key()
    algorithm = {32: hashes.SHA256(), 48: hashes.SHA384(), 64: hashes.SHA512()}[len(digest)]
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(ecdsa_raw_to_der(signature), digest, ec.ECDSA(Prehashed(algorithm)))
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        pad: padding.AsymmetricPadding = (
            padding.PSS(padding.MGF1(algorithm), padding.PSS.DIGEST_LENGTH)
            if scheme == "PSS"
            else padding.PKCS1v15()
        )
        key.verify(signature, digest, pad, Prehashed(algorithm))


def check_card(connection: SmartCardConnection, applet: str, data: BeidCardData) -> None:
    """Detection, certificates, identity and signatures on one card (shared by both tiers)."""
    session = _session(connection)
    assert session.info.card_type == f"BE eID (applet {applet})"
    assert session.info.serial == data.chip_serial.hex().upper()
    assert session.info.holder_name == f"{HOLDER.first_given_name} {HOLDER.surname}"
    assert session.certificate(KeyRole.AUTHENTICATION) == data.auth_cert
    assert session.certificate(KeyRole.SIGNING) == data.sign_cert
    assert session.read_certificate(BeidFile.CERT_CA) == data.ca_cert
    assert session.read_certificate(BeidFile.CERT_ROOT) == data.root_cert
    assert session.read_certificate(BeidFile.CERT_RRN) == data.rrn_cert

    identity = session.read_identity()
    assert identity.identity.surname == HOLDER.surname
    assert identity.identity.given_names == HOLDER.given_names
    assert identity.identity.national_number == HOLDER.national_number
    assert identity.identity.birth_date == HOLDER.birth_date
    assert identity.identity.sex is Sex.FEMALE
    assert identity.identity.chip_number == data.chip_serial
    assert identity.identity.card_number == HOLDER.card_number
    assert identity.address.street_and_number == HOLDER.street
    assert identity.address.zip_code == HOLDER.zip_code
    assert identity.photo == data.photo
    assert (identity.identity.basic_key_hash is not None) == (applet == "1.8")

    status = session.pin_status(PIN)
    assert (status.tries_left, status.blocked) == (3, False)

    schemes = [("SHA-256", None), ("SHA-384", None), ("SHA-512", None)]
    if applet == "1.7":
        schemes.append(("SHA-256", "PSS"))
    for role in (KeyRole.AUTHENTICATION, KeyRole.SIGNING):
        cert = session.certificate(role)
        assert cert is not None
        for hash_function, scheme in schemes:
            digest = hashlib.new(hash_function.replace("-", "").lower(), b"doc").digest()
            signature = session.sign(role, digest, hash_function, data.pin, padding=scheme)
            _verify_signature(cert, signature, digest, scheme or "")
    if applet == "1.8":
        assert len(signature) == 96


@pytest.mark.parametrize("applet", APPLETS)
def test_in_process_card(applet: str, card_data: Callable[..., BeidCardData]) -> None:
    data = card_data(applet)
    check_card(VirtualConnection(BeidCard(applet, data)), applet, data)


@pytest.mark.parametrize("applet", APPLETS)
def test_authentication_pin_once_then_no_pin(applet: str, card_data: Callable[..., BeidCardData]) -> None:
    data = card_data(applet)
    session = _session(VirtualConnection(BeidCard(applet, data)))
    digest = hashlib.sha256(b"challenge").digest()
    first = session.sign(KeyRole.AUTHENTICATION, digest, "SHA-256", data.pin)
    again = session.sign(KeyRole.AUTHENTICATION, digest, "SHA-256", None)  # PIN once
    cert = data.auth_cert
    _verify_signature(cert, first, digest, "")
    _verify_signature(cert, again, digest, "")


@pytest.mark.parametrize("applet", APPLETS)
def test_wrong_pin_then_blocked(applet: str, card_data: Callable[..., BeidCardData]) -> None:
    data = card_data(applet)
    card = BeidCard(applet, data)
    session = _session(VirtualConnection(card))
    with pytest.raises(InvalidPinError) as info:
        session.verify_pin(PIN, "9999")
    assert info.value.tries_left == 2
    assert session.pin_status(PIN).tries_left == 2
    session.verify_pin(PIN, data.pin)  # a right PIN resets the counter
    assert session.pin_status(PIN).tries_left == 3
    with pytest.raises(InvalidPinError):
        session.sign(KeyRole.SIGNING, bytes(32), "SHA-256", "9998")
    with pytest.raises(InvalidPinError) as info:
        session.verify_pin(PIN, "9999")
    assert info.value.tries_left == 1
    with pytest.raises(PinBlockedError):
        session.verify_pin(PIN, "9999")
    status = session.pin_status(PIN)
    assert status.blocked and status.tries_left == 0
    with pytest.raises(PinBlockedError):
        session.verify_pin(PIN, data.pin)
    assert card.tries_left == 0


@pytest.mark.parametrize("applet", APPLETS)
def test_change_pin(applet: str, card_data: Callable[..., BeidCardData]) -> None:
    data = card_data(applet)
    session = _session(VirtualConnection(BeidCard(applet, data)))
    session.change_pin(PIN, data.pin, "987654")
    session.log_off()
    with pytest.raises(InvalidPinError):
        session.verify_pin(PIN, data.pin)
    session.verify_pin(PIN, "987654")


@pytest.mark.parametrize("applet", APPLETS)
def test_card_without_signing_certificate(applet: str, card_data: Callable[..., BeidCardData]) -> None:
    holder = Holder(has_signing_certificate=False, national_number="15010100123")
    data = card_data(applet, holder)
    session = _session(VirtualConnection(BeidCard(applet, data)))
    assert session.certificate(KeyRole.SIGNING) is None
    assert session.certificate(KeyRole.AUTHENTICATION) == data.auth_cert
    assert session.read_identity(photo=False).identity.national_number == "15010100123"


@pytest.mark.parametrize("applet", APPLETS)
def test_second_session_reads_no_certificate(applet: str, card_data: Callable[..., BeidCardData]) -> None:
    data = card_data(applet)
    card = BeidCard(applet, data)
    cache = CertificateCache()
    first = _session(VirtualConnection(card), cache)
    for role in KeyRole:
        first.certificate(role)
    reads_before = sum(1 for apdu in card.commands if apdu[1] == 0xB0)
    second = _session(VirtualConnection(card), cache)
    assert second.certificate(KeyRole.AUTHENTICATION) == data.auth_cert
    assert second.certificate(KeyRole.SIGNING) == data.sign_cert
    assert sum(1 for apdu in card.commands if apdu[1] == 0xB0) == reads_before
    expected = 3 if applet == "1.8" else 2  # SELECT, GET CARD DATA (x2 on 1.8)
    assert second.channel.apdu_count == expected


# -- through the real pcscd and vpcd ---------------------------------------------------------


@pytest.mark.pcsc
@pytest.mark.parametrize("applet", APPLETS)
def test_through_pcscd(applet: str, card_data: Callable[..., BeidCardData], vpcd) -> None:
    from agent.pcsc import connect, list_readers
    from tests.conftest import READER_0

    data = card_data(applet)
    card = BeidCard(applet, data)
    vpcd(card)
    reader = next(r for r in list_readers() if r.name == READER_0)
    assert reader.card_present
    with connect(READER_0) as connection, connection.transaction():
        check_card(connection, applet, data)
        session = _session(connection)
        with pytest.raises(InvalidPinError) as info:
            session.verify_pin(PIN, "0000")
        assert info.value.tries_left == 2
        session.verify_pin(PIN, data.pin)


@pytest.mark.pcsc
def test_through_pcscd_without_signing_certificate_and_blocked(
    card_data: Callable[..., BeidCardData], vpcd
) -> None:
    from agent.pcsc import connect
    from tests.conftest import READER_1

    holder = Holder(has_signing_certificate=False, national_number="15010100123")
    data = card_data("1.8", holder)
    vpcd(BeidCard("1.8", data), slot=1)
    with connect(READER_1) as connection, connection.transaction():
        session = _session(connection)
        assert session.certificate(KeyRole.SIGNING) is None
        for tries in (2, 1):
            with pytest.raises(InvalidPinError) as info:
                session.verify_pin(PIN, "0000")
            assert info.value.tries_left == tries
        with pytest.raises(PinBlockedError):
            session.verify_pin(PIN, "0000")
        assert session.pin_status(PIN).blocked


@pytest.mark.pcsc
def test_cli_card_info_and_identity(
    card_data: Callable[..., BeidCardData], vpcd, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import json

    from agent.app.cli import main
    from tests.conftest import READER_0, READER_1

    data = card_data("1.8")
    vpcd(BeidCard("1.8", data), slot=0)
    vpcd(BeidCard("1.7", card_data("1.7")), slot=1)
    assert main(["card"]) == 0
    out = capsys.readouterr().out
    assert f"{READER_0}:" in out and f"{READER_1}:" in out
    assert "BE eID (applet 1.8)" in out and "BE eID (applet 1.7)" in out
    assert data.chip_serial.hex().upper() in out
    assert "PIN tries left: 3" in out
    assert f"CN={HOLDER.first_given_name} {HOLDER.surname} (Authentication)" in out

    photo = tmp_path / "photo.jpg"
    assert main(["card", "identity", "--reader", READER_0, "--photo", str(photo)]) == 0
    out = capsys.readouterr().out
    assert "signatures verified" in out
    assert HOLDER.surname in out and HOLDER.street in out
    assert photo.read_bytes() == data.photo

    assert main(["card", "identity", "--reader", READER_1, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[READER_1]
    assert result["identity"]["nationalNumber"] == HOLDER.national_number
    assert result["address"]["zipCode"] == HOLDER.zip_code


def test_card_authentication_18(card_data: Callable[..., BeidCardData]) -> None:
    card = BeidCard("1.8", card_data("1.8"))
    session = _session(VirtualConnection(card))
    session.authenticate_card()
    internal = [apdu for apdu in card.commands if apdu[1] == 0x88]
    assert len(internal) == 1 and internal[0][:7] == bytes.fromhex("00880281329430")
    # The SE was cleared by INTERNAL AUTHENTICATE; signing sets it again.
    digest = hashlib.sha384(b"after").digest()
    signature = session.sign(KeyRole.SIGNING, digest, "SHA-384", card.data.pin)
    _verify_signature(card.data.sign_cert or b"", signature, digest, "")


def test_card_authentication_needs_18(card_data: Callable[..., BeidCardData]) -> None:
    from agent.errors import NotSupportedError

    session = _session(VirtualConnection(BeidCard("1.7", card_data("1.7"))))
    with pytest.raises(NotSupportedError):
        session.authenticate_card()
