"""The Thales PKCS-15 driver (EstEID 2025, FinEID v3, FinEID v4) against the virtual card:
in-process with exact APDUs, and through the real pcscd + vpcd."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from eid_emulator.base import VirtualConnection
from eid_emulator.idemia import make_card as make_idemia_card
from eid_emulator.pki_other import OtherPki, make_pki
from eid_emulator.thales import ThalesCard, make_card

from agent.cards import registry, thales
from agent.cards.base import KeyRole
from agent.cards.common import CertificateCache, ecdsa_raw_to_der
from agent.cards.twopin import PinChangeRequiredError
from agent.core import token
from agent.errors import InvalidPinError, NotSupportedError, PinBlockedError
from agent.smartcard.apdu import SmartCardConnection
from agent.ws.messages import algorithm_json
from tests.conftest import READER_0, READER_1

CARDS = {"EE2025": "EE2025", "FI3": "FI3", "FI4": "FI4"}  # card profile -> PKI profile
JWA = {"EE2025": "ES384", "FI3": "PS256", "FI4": "ES384"}


@pytest.fixture(scope="module")
def pkis() -> Callable[[str], OtherPki]:
    made: dict[str, OtherPki] = {}

    def get(key: str) -> OtherPki:
        if key not in made:
            made[key] = make_pki(key)
        return made[key]

    return get


@pytest.fixture
def new_card(pkis: Callable[[str], OtherPki]) -> Callable[..., ThalesCard]:
    def make(name: str, **data: object) -> ThalesCard:
        return make_card(pkis(CARDS[name]), name, **data)

    return make


def verify(cert_der: bytes, signature: bytes, digest: bytes) -> None:
    key = x509.load_der_x509_certificate(cert_der).public_key()
    prehashed = Prehashed({32: hashes.SHA256(), 48: hashes.SHA384(), 64: hashes.SHA512()}[
        len(digest)])
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(ecdsa_raw_to_der(signature), digest, ec.ECDSA(prehashed))
    else:
        key.verify(signature, digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32), prehashed)


def session(connection: SmartCardConnection) -> thales.ThalesSession:
    return thales.open_session(connection, CertificateCache())


def exercise(connection: SmartCardConnection, card: ThalesCard, name: str) -> None:
    s = session(connection)
    keys = card.data.keys
    assert s.certificate(KeyRole.AUTHENTICATION) == keys.auth_der
    assert s.certificate(KeyRole.SIGNING) == keys.sign_der
    assert s.info.serial == card.data.document_number
    assert s.info.holder_name == "Jaak-Kristjan Jõeorg"
    assert [p.name for p in s.info.pins] == ["PIN1", "PIN2", "PUK"]
    for pin in s.info.pins:
        status = s.pin_status(pin)
        assert status.tries_left == card.profile.max_tries
        assert not status.blocked and not status.must_change
    auth_algorithms = s.signature_algorithms(KeyRole.AUTHENTICATION)
    algorithm = token.token_algorithm(keys.auth_der, auth_algorithms)
    assert algorithm.name == JWA[name]
    digest = hashlib.new(algorithm.hash_function.replace("-", "").lower(), b"origin+nonce").digest()
    signature = s.sign(KeyRole.AUTHENTICATION, digest, algorithm.hash_function, card.data.pin1,
                       padding=algorithm.padding)
    verify(keys.auth_der, signature, digest)
    assert len(signature) == {"ES384": 96, "PS256": 256}[algorithm.name]
    sign_digest = hashlib.sha256(b"document").digest()
    signature = s.sign(KeyRole.SIGNING, sign_digest, "SHA-256", card.data.pin2)
    verify(keys.sign_der, signature, sign_digest)
    assert len(signature) == (64 if name == "FI3" else 96)


def wrong_pins_then_blocked(connection: SmartCardConnection, card: ThalesCard) -> None:
    s = session(connection)
    top = card.profile.max_tries
    auth_algorithm = token.token_algorithm(card.data.keys.auth_der,
                                           s.signature_algorithms(KeyRole.AUTHENTICATION))
    size = 48 if auth_algorithm.hash_function == "SHA-384" else 32
    with pytest.raises(InvalidPinError) as wrong1:
        s.sign(KeyRole.AUTHENTICATION, bytes(size), auth_algorithm.hash_function, "0000",
               padding=auth_algorithm.padding)
    assert (wrong1.value.pin_name, wrong1.value.tries_left) == ("PIN1", top - 1)
    pin2 = s.pin_for(KeyRole.SIGNING)
    for left in range(top - 1, 0, -1):
        with pytest.raises(InvalidPinError) as wrong2:
            s.sign(KeyRole.SIGNING, bytes(32), "SHA-256", "000000")
        assert (wrong2.value.pin_name, wrong2.value.tries_left) == ("PIN2", left)
        assert s.pin_status(pin2).tries_left == left
    with pytest.raises(PinBlockedError) as blocked:
        s.verify_pin(pin2, "000000")
    assert blocked.value.pin_name == "PIN2"
    status = s.pin_status(pin2)
    assert (status.tries_left, status.blocked) == (0, True)
    assert s.pin_status(s.pin_for(KeyRole.AUTHENTICATION)).tries_left == top - 1


# -- in-process ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CARDS))
def test_in_process(name: str, new_card: Callable[..., ThalesCard]) -> None:
    card = new_card(name)
    exercise(VirtualConnection(card), card, name)


@pytest.mark.parametrize("name", ["EE2025", "FI3"])
def test_wrong_pins_and_blocked_in_process(name: str, new_card: Callable[..., ThalesCard]) -> None:
    card = new_card(name)
    wrong_pins_then_blocked(VirtualConnection(card), card)


def test_estonian_2025_apdus(new_card: Callable[..., ThalesCard]) -> None:
    card = new_card("EE2025")
    s = session(VirtualConnection(card))
    s.certificate(KeyRole.SIGNING)
    s.sign(KeyRole.AUTHENTICATION, bytes(48), "SHA-384", "1234")
    s.sign(KeyRole.SIGNING, bytes(32), "SHA-256", "123456")
    sent = [c.hex().upper() for c in card.commands]
    assert sent[0] == "00A4040C0CA000000063504B43532D3135"
    assert "00A4080404ADF2342100" in sent
    assert "00CB00FF05A003830181" in sent  # case 3 in-process (no T=1)
    assert "00200081" + "0C" + "31323334" + "00" * 8 in sent
    assert "002241B6068001548401" + "01" in sent
    assert "002A90A03290" + "30" + "00" * 48 in sent
    assert "002A9E9A00" in sent
    assert "002241B6068001448401" + "05" in sent  # SHA-256 on the P-384 signing key
    verify_pin2 = sent.index("00200082" + "0C" + "313233343536" + "00" * 6)
    assert sent[verify_pin2 + 1].startswith("002241B6")


def test_fineid_v3_authenticates_with_pss(new_card: Callable[..., ThalesCard]) -> None:
    card = new_card("FI3")
    s = session(VirtualConnection(card))
    assert [algorithm_json(a) for a in s.signature_algorithms(KeyRole.AUTHENTICATION)] == [
        {"cryptoAlgorithm": "RSA", "hashFunction": "SHA-256", "paddingScheme": "PSS"}]
    s.sign(KeyRole.AUTHENTICATION, bytes(32), "SHA-256", "1234", padding="PSS")
    assert "002241B6068001458401" + "01" in [c.hex().upper() for c in card.commands]
    with pytest.raises(NotSupportedError):
        s.sign(KeyRole.AUTHENTICATION, bytes(48), "SHA-384", "1234")


def test_estonian_2025_pin_not_changed_yet(new_card: Callable[..., ThalesCard]) -> None:
    card = new_card("EE2025", pins_changed=False)
    s = session(VirtualConnection(card))
    pin1, pin2 = s.pin_for(KeyRole.AUTHENTICATION), s.pin_for(KeyRole.SIGNING)
    assert s.pin_status(pin1).must_change and s.pin_status(pin2).must_change
    assert not s.pin_status(s.info.pins[2]).must_change  # the PUK has no such state
    with pytest.raises(PinChangeRequiredError) as refused:
        s.sign(KeyRole.SIGNING, bytes(32), "SHA-256", "123456")
    assert refused.value.pin_name == "PIN2"
    assert "change PIN2" in str(refused.value)
    with pytest.raises(PinChangeRequiredError, match="activated"):
        s.verify_pin(pin1, "1234")
    assert not any(c[1] == 0x20 for c in card.commands)  # no VERIFY reached the card
    s.change_pin(pin2, "123456", "654321")
    assert not s.pin_status(pin2).must_change
    signature = s.sign(KeyRole.SIGNING, bytes(32), "SHA-256", "654321")
    verify(card.data.keys.sign_der, signature, bytes(32))


def test_puk_cannot_be_changed_on_estonian_2025(new_card: Callable[..., ThalesCard]) -> None:
    s = session(VirtualConnection(new_card("EE2025")))
    with pytest.raises(NotSupportedError):
        s.change_pin(s.info.pins[2], "12345678", "87654321")


def test_fineid_v4_atr_mask() -> None:
    v41 = bytes.fromhex("3B7F9600008031B865B085051024122460829000")  # OpenSC's "FinEID 2025"
    assert thales.profile_for_atr(v41) is thales.PROFILES["FI4"]
    belgian = bytes.fromhex("3B7F96000080318065B085040120120FFF829000")
    assert thales.profile_for_atr(belgian) is None


def test_token_algorithm_for_latvian_rsa(pkis: Callable[[str], OtherPki]) -> None:
    from agent.cards import idemia

    card = make_idemia_card(pkis("LV-RSA"), "LV")
    s = idemia.open_session(VirtualConnection(card), CertificateCache())
    algorithm = token.token_algorithm(card.data.keys.auth_der,
                                      s.signature_algorithms(KeyRole.AUTHENTICATION))
    assert algorithm.name == "RS256"


# -- through pcscd + vpcd -----------------------------------------------------------------


@pytest.mark.pcsc
@pytest.mark.parametrize("name", sorted(CARDS))
def test_through_pcscd(name: str, new_card: Callable[..., ThalesCard], vpcd) -> None:
    from agent.pcsc import connect

    card = new_card(name)
    vpcd(card)
    with connect(READER_0) as connection, connection.transaction():
        assert connection.atr == card.atr
        assert isinstance(registry.open_session(connection), thales.ThalesSession)
        exercise(connection, card, name)


@pytest.mark.pcsc
@pytest.mark.parametrize("name", ["EE2025", "FI4"])
def test_wrong_pins_and_blocked_through_pcscd(
    name: str, new_card: Callable[..., ThalesCard], vpcd
) -> None:
    from agent.pcsc import connect

    card = new_card(name)
    vpcd(card, slot=1)
    with connect(READER_1) as connection, connection.transaction():
        wrong_pins_then_blocked(connection, card)
