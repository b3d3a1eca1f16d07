"""The IDEMIA IAS-ECC driver (Estonian 2018, Latvian) against the virtual card: exact APDUs
in-process, then every card through the real pcscd + vpcd."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from eid_emulator.base import VirtualConnection
from eid_emulator.idemia import IdemiaCard, make_card
from eid_emulator.pki_other import OtherPki, make_pki

from agent.cards import idemia, registry
from agent.cards.base import KeyRole
from agent.cards.common import CertificateCache, ecdsa_raw_to_der
from agent.cards.twopin import fit_hash
from agent.errors import InvalidPinError, PinBlockedError, PinFormatError, UnsupportedCardError
from agent.smartcard.apdu import SmartCardConnection
from agent.ws.messages import algorithm_json
from tests.conftest import READER_0, READER_1
from tests.scripted import ScriptedConnection, Step

# (emulator profile, PKI profile, extra card data)
CARDS = {
    "EE": ("EE", "EE2018", {}),
    "EE-X": ("EE-X", "EE2018", {}),
    "LV-RSA": ("LV", "LV-RSA", {}),
    "LV-EC-X": ("LV-X", "LV-EC", {}),
    "LV-EC-slots2": ("LV", "LV-EC", {"slot_variant": 2}),
}


@pytest.fixture(scope="module")
def pkis() -> Callable[[str], OtherPki]:
    made: dict[str, OtherPki] = {}

    def get(key: str) -> OtherPki:
        if key not in made:
            made[key] = make_pki(key)
        return made[key]

    return get


@pytest.fixture
def new_card(pkis: Callable[[str], OtherPki]) -> Callable[[str], IdemiaCard]:
    def make(name: str) -> IdemiaCard:
        profile, pki, extra = CARDS[name]
        return make_card(pkis(pki), profile, **extra)

    return make


def verify(cert_der: bytes, signature: bytes, digest: bytes) -> None:
    """Raises InvalidSignature unless ``signature`` is the certificate key's over ``digest``."""
    key = x509.load_der_x509_certificate(cert_der).public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(ecdsa_raw_to_der(signature), fit_hash(digest, 48),
                   ec.ECDSA(Prehashed(hashes.SHA384())))
    else:
        key.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))


def session(connection: SmartCardConnection) -> idemia.IdemiaSession:
    return idemia.open_session(connection, CertificateCache())


def exercise(connection: SmartCardConnection, card: IdemiaCard) -> None:
    """Certificates, PIN status, authentication and signing, as the core uses them."""
    s = session(connection)
    assert s.certificate(KeyRole.AUTHENTICATION) == card.data.keys.auth_der
    assert s.certificate(KeyRole.SIGNING) == card.data.keys.sign_der
    assert s.info.serial == card.data.document_number
    assert s.info.holder_name == "Jaak-Kristjan Jõeorg"
    assert [p.name for p in s.info.pins] == ["PIN1", "PIN2", "PUK"]
    assert s.pin_for(KeyRole.AUTHENTICATION).name == "PIN1"
    assert s.pin_for(KeyRole.SIGNING).name == "PIN2"
    for pin in s.info.pins:
        status = s.pin_status(pin)
        assert (status.tries_left, status.blocked) == (3, False)
    rsa_key = card.rsa
    digest = hashlib.sha256(b"challenge").digest() if rsa_key else hashlib.sha384(b"c").digest()
    hash_function = "SHA-256" if rsa_key else "SHA-384"
    signature = s.sign(KeyRole.AUTHENTICATION, digest, hash_function, card.data.pin1)
    verify(card.data.keys.auth_der, signature, digest)
    assert len(signature) == (256 if rsa_key else 96)
    sign_digest = hashlib.sha256(b"document").digest()
    signature = s.sign(KeyRole.SIGNING, sign_digest, "SHA-256", card.pin_value("PIN2"))
    verify(card.data.keys.sign_der, signature, sign_digest)
    algorithms = s.signature_algorithms(KeyRole.SIGNING)
    if rsa_key:
        assert [algorithm_json(a) for a in algorithms] == [
            {"cryptoAlgorithm": "RSA", "hashFunction": "SHA-256", "paddingScheme": "PKCS1.5"}]
    else:
        assert {a.hash_function for a in algorithms} >= {"SHA-256", "SHA-384", "SHA-512"}


def wrong_pins_then_blocked(connection: SmartCardConnection, card: IdemiaCard) -> None:
    s = session(connection)
    digest = hashlib.sha384(b"x").digest()[: 32 if card.rsa else 48]
    hash_function = "SHA-256" if card.rsa else "SHA-384"
    with pytest.raises(InvalidPinError) as wrong1:
        s.sign(KeyRole.AUTHENTICATION, digest, hash_function, "0000")
    assert (wrong1.value.pin_name, wrong1.value.tries_left) == ("PIN1", 2)
    with pytest.raises(InvalidPinError) as wrong2:
        s.sign(KeyRole.SIGNING, hashlib.sha256(b"d").digest(), "SHA-256", "000000")
    assert (wrong2.value.pin_name, wrong2.value.tries_left) == ("PIN2", 2)
    pin1, pin2 = s.pin_for(KeyRole.AUTHENTICATION), s.pin_for(KeyRole.SIGNING)
    assert s.pin_status(pin1).tries_left == 2
    assert s.pin_status(pin2).tries_left == 2
    with pytest.raises(InvalidPinError) as again:
        s.verify_pin(pin2, "000000")
    assert again.value.tries_left == 1
    with pytest.raises(PinBlockedError) as blocked:
        s.verify_pin(pin2, "000000")
    assert blocked.value.pin_name == "PIN2"
    status = s.pin_status(pin2)
    assert (status.tries_left, status.blocked) == (0, True)
    with pytest.raises(PinBlockedError):
        s.sign(KeyRole.SIGNING, hashlib.sha256(b"d").digest(), "SHA-256", card.pin_value("PIN2"))
    # PIN1 is independent and still works.
    s.sign(KeyRole.AUTHENTICATION, digest, hash_function, card.data.pin1)
    assert card.tries_left("PIN1") == 3


# -- in-process -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CARDS))
def test_in_process(name: str, new_card: Callable[[str], IdemiaCard]) -> None:
    card = new_card(name)
    exercise(VirtualConnection(card), card)


@pytest.mark.parametrize("name", ["EE", "LV-RSA"])
def test_wrong_pins_and_blocked_in_process(name: str, new_card: Callable[[str], IdemiaCard]) -> None:
    card = new_card(name)
    wrong_pins_then_blocked(VirtualConnection(card), card)


def test_estonian_apdus_are_the_recorded_ones(new_card: Callable[[str], IdemiaCard]) -> None:
    card = new_card("EE")
    s = session(VirtualConnection(card))
    s.certificate(KeyRole.AUTHENTICATION)
    s.sign(KeyRole.AUTHENTICATION, bytes(48), "SHA-384", "1234")
    s.sign(KeyRole.SIGNING, bytes(32), "SHA-256", "12345")
    sent = [c.hex().upper() for c in card.commands]
    assert sent[0] == "00A4040C10A000000077010800070000FE00000100"
    assert "00A4090404ADF1340100" in sent
    assert any(c.startswith("00B0") and c.endswith("C0") for c in sent)
    assert "002241A40680010484018100" not in sent  # case 3, no Le
    assert "002241A406800104840181" in sent
    assert "00200001" + "0C" + "31323334" + "FF" * 8 in sent
    assert "0088000030" + "00" * 48 + "00" in sent
    assert "002241B60680015484019F" in sent
    assert "00200085" + "0C" + "3132333435" + "FF" * 7 in sent
    # A SHA-256 hash is left-padded to 48 bytes for the P-384 key.
    assert "002A9E9A30" + "00" * 48 + "00" in sent
    # PIN2 is verified inside ADF2 (QSCD), selected by AID just before.
    qscd = sent.index("00A4040C1051534344204170706C69636174696F6E")
    assert sent[qscd + 1].startswith("002241B6") and sent[qscd + 2].startswith("00200085")


def test_pin_status_parses_the_recorded_answer() -> None:
    atr = bytes.fromhex("3BDB960080B1FE451F830012233F536549440F9000F1")
    main = "00A4040C10A000000077010800070000FE00000100"
    conn = ScriptedConnection([
        Step(main),
        Step(main),
        Step("00A4090402D00300", "62048002000B"),
        Step("00B000000B", "0409" + b"AB0012345".hex()),
        Step(main),  # the certificate for the holder name comes from the cache
        Step("00CB3FFF0A4D087006BF810102A08000",
             "701EBF81011AA0189A01039B0102A1108C06F300007343009C06F30000734300"),
    ], atr=atr)
    cache = CertificateCache()
    cache.put("AB0012345", (0xADF1 << 16) | 0x3400, None)
    s = idemia.open_session(conn, cache)
    status = s.pin_status(idemia.PIN1)
    assert (status.pin.name, status.tries_left, status.blocked) == ("PIN1", 2, False)
    conn.assert_done()


def test_pin_format_is_checked_before_anything_is_sent(new_card: Callable[[str], IdemiaCard]) -> None:
    card = new_card("LV-RSA")
    s = session(VirtualConnection(card))
    before = len(card.commands)
    with pytest.raises(PinFormatError):
        s.verify_pin(s.pin_for(KeyRole.SIGNING), "12345")  # Latvian PIN2: 6 digits at least
    with pytest.raises(PinFormatError):
        s.verify_pin(s.pin_for(KeyRole.AUTHENTICATION), "12a4")
    assert len(card.commands) == before


def test_other_atr_is_not_claimed() -> None:
    conn = ScriptedConnection([], atr=bytes.fromhex("3B7F96000080318065B085040120120FFF829000"))
    with pytest.raises(UnsupportedCardError):
        idemia.open_session(conn)
    conn.assert_done()


def test_change_and_unblock_pin2_with_puk(new_card: Callable[[str], IdemiaCard]) -> None:
    card = new_card("EE")
    s = session(VirtualConnection(card))
    pin2 = s.pin_for(KeyRole.SIGNING)
    s.change_pin(pin2, "12345", "54321")
    assert card.pin_value("PIN2") == "54321"
    with pytest.raises(InvalidPinError) as wrong:
        s.change_pin(pin2, "11111", "22222")
    assert wrong.value.tries_left == 2


# -- through pcscd + vpcd -----------------------------------------------------------------


@pytest.mark.pcsc
@pytest.mark.parametrize("name", sorted(CARDS))
def test_through_pcscd(name: str, new_card: Callable[[str], IdemiaCard], vpcd) -> None:
    from agent.pcsc import connect

    card = new_card(name)
    vpcd(card)
    with connect(READER_0) as connection, connection.transaction():
        assert connection.atr == card.atr
        assert isinstance(registry.open_session(connection), idemia.IdemiaSession)
        exercise(connection, card)


@pytest.mark.pcsc
@pytest.mark.parametrize("name", ["EE-X", "LV-RSA"])
def test_wrong_pins_and_blocked_through_pcscd(
    name: str, new_card: Callable[[str], IdemiaCard], vpcd
) -> None:
    from agent.pcsc import connect

    card = new_card(name)
    vpcd(card, slot=1)
    with connect(READER_1) as connection, connection.transaction():
        wrong_pins_then_blocked(connection, card)


@pytest.mark.pcsc
def test_virtual_card_command_serves_an_estonian_card(pcscd, tmp_path) -> None:
    import subprocess
    import sys

    from agent.pcsc import connect, wait_for_card

    process = subprocess.Popen(
        [sys.executable, "-m", "eid_emulator.cli", "virtual-card", "--card", "EE",
         "--data-dir", str(tmp_path), "--port", str(pcscd.ports[0]), "--remove-after", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_card(READER_0, present=True, timeout=30)
        with connect(READER_0) as connection, connection.transaction():
            s = registry.open_session(connection)
            assert s.info.card_type == "EE ID card (IDEMIA 2018)"
            cert = x509.load_der_x509_certificate(s.certificate(KeyRole.AUTHENTICATION))
        root = x509.load_pem_x509_certificate((tmp_path / "EE2018" / "root.crt.pem").read_bytes())
        ca = x509.load_pem_x509_certificate((tmp_path / "EE2018" / "ca.crt.pem").read_bytes())
        assert cert.issuer == ca.subject and ca.issuer == root.subject
    finally:
        process.terminate()
        process.wait(15)
        wait_for_card(READER_0, present=False, timeout=10)
