"""Byte-level tests of the Belgian eID driver over a scripted connection."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from agent.cards.base import PINPAD, KeyRole, SignatureAlgorithm
from agent.cards.beid import PIN, BeidFile, CardData, encode_pin_block, open_session, resume_session
from agent.cards.common import CertificateCache, PinRequiredError, ecdsa_raw_to_der
from agent.errors import (
    InvalidPinError,
    NotSupportedError,
    PinBlockedError,
    PinFormatError,
    PinPadCancelledError,
    PinPadTimeoutError,
    UnsupportedCardError,
)
from agent.smartcard.apdu import ApduError
from agent.smartcard.backend import PinPadFeatures
from agent.ws.messages import algorithm_json
from tests.scripted import ScriptedConnection, Step

SERIAL = bytes.fromhex("534C47904043000038E977A912924251")
# OpenSC#1112's real 1.7 trace: serial + F3 36 01 25 01 17 0003 00 21 01 0F.
CARD_DATA_17 = SERIAL + bytes.fromhex("F336012501170003002101 0F".replace(" ", ""))
CARD_DATA_18 = SERIAL + bytes.fromhex("F33601250118000100000207")
CARD_DATA_18_P2 = CARD_DATA_18 + bytes.fromhex("02FFFF")

SELECT_APPLET = "00A404000F A00000003029057000AD13100101FF"
SELECT_MF = "00A4020C02 3F00"
SELECT_DF00 = "00A4020C02 DF00"
SELECT_DF01 = "00A4020C02 DF01"
SELECT_BELPIC_PATH = "00A4080C02 DF00"  # before MSE SET, when the card refuses it


def _select(fid: int) -> str:
    return f"00A4020C02{fid:04X}"


def _read(offset: int, le: int) -> str:
    return f"00B0{offset:04X}{le & 0xFF:02X}"


def make_certificate(cn: str, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "BE"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


AUTH_CERT = make_certificate("Alice Test (Authentication)")


def der_reads(der: bytes, padding: int = 1100) -> list[Step]:
    """The READ BINARY steps for a DER file: first chunk, then exactly up to its length."""
    content = der + bytes(padding)
    steps = [Step(_read(0, 252), content[:252])]
    offset = 252
    while offset < len(der):
        want = min(252, len(der) - offset)
        steps.append(Step(_read(offset, want), content[offset : offset + want]))
        offset += want
    return steps


def whole_reads(content: bytes) -> list[Step]:
    """READ BINARY steps for a whole file: 252-byte chunks, 6Cxx at the tail, 6B00 at EOF."""
    steps: list[Step] = []
    offset = 0
    while True:
        rest = len(content) - offset
        if rest >= 252:
            steps.append(Step(_read(offset, 252), content[offset : offset + 252]))
            offset += 252
            if rest == 252:
                steps.append(Step(_read(offset, 252), sw=0x6B00))
                return steps
        else:
            steps.append(Step(_read(offset, 252), sw=0x6C00 | rest))
            steps.append(Step(_read(offset, rest), content[offset:]))
            return steps


def open_steps(card_data: bytes = CARD_DATA_17, auth_cert: bytes | None = AUTH_CERT) -> list[Step]:
    steps = [Step(SELECT_APPLET), Step("80E400001C", card_data)]
    if card_data[21] >= 0x18:
        steps.append(Step("80E400011F", card_data + bytes.fromhex("03FFFF")))
    steps += [Step(SELECT_MF), Step(SELECT_DF00), Step(_select(0x5038))]
    if auth_cert is None:
        steps.append(Step(_read(0, 252), bytes(252)))
    else:
        steps += der_reads(auth_cert)
    return steps


def session_for(card_data: bytes = CARD_DATA_17, *steps: Step):
    conn = ScriptedConnection(open_steps(card_data) + list(steps))
    session = open_session(conn, CertificateCache(), resend_delay=0)
    return conn, session


# -- detection ---------------------------------------------------------------------------


def test_detects_applet_17() -> None:
    conn, session = session_for(CARD_DATA_17)
    conn.assert_done()
    assert session.info.card_type == "BE eID (applet 1.7)"
    assert session.info.serial == SERIAL.hex().upper()
    assert session.info.holder_name == "Alice Test"
    assert session.info.pins == (PIN,)
    assert session.card_data.applet_version == 0x17
    assert session.card_data.pkcs1_support == 0x21
    assert session.card_data.life_cycle == 0x0F
    assert session.card_data.pin_tries_left is None


def test_detects_applet_18_and_reads_pin_counter() -> None:
    conn, session = session_for(CARD_DATA_18)
    conn.assert_done()
    assert session.info.card_type == "BE eID (applet 1.8)"
    assert session.card_data.global_os_version == 0x0001
    assert session.card_data.pin_tries_left == 3


def test_card_data_parse_fields() -> None:
    data = CardData.parse(CARD_DATA_18_P2)
    assert data.serial == SERIAL
    assert (data.component_code, data.os_number, data.os_version) == (0xF3, 0x36, 0x01)
    assert (data.softmask_number, data.softmask_version) == (0x25, 0x01)
    assert data.applet_label == "1.8"
    assert data.key_exchange_version == 0x02
    assert data.pin_tries_left == 2
    assert CardData.parse(CARD_DATA_18 + b"\xff\xff\xff").pin_tries_left is None


def test_not_a_belgian_card() -> None:
    conn = ScriptedConnection(
        [
            Step(SELECT_APPLET, sw=0x6A82),
            Step("00A4040C0C A000000177504B43532D3135", sw=0x6A82),
        ]
    )
    with pytest.raises(UnsupportedCardError):
        open_session(conn, CertificateCache(), resend_delay=0)
    conn.assert_done()


def test_belpic_aid_fallback_then_get_card_data_refused() -> None:
    conn = ScriptedConnection(
        [
            Step(SELECT_APPLET, sw=0x6A82),
            Step("00A4040C0C A000000177504B43532D3135"),
            Step("80E400001C", sw=0x6D00),
        ]
    )
    with pytest.raises(UnsupportedCardError):
        open_session(conn, CertificateCache(), resend_delay=0)
    conn.assert_done()


def test_applet_11_is_refused() -> None:
    old = bytearray(CARD_DATA_17)
    old[21] = 0x11
    conn = ScriptedConnection([Step(SELECT_APPLET), Step("80E400001C", bytes(old))])
    with pytest.raises(UnsupportedCardError, match="1.1"):
        open_session(conn, CertificateCache(), resend_delay=0)


# -- files and certificates ----------------------------------------------------------------


def test_certificate_is_trimmed_and_signing_certificate_absent() -> None:
    signing = make_certificate("Alice Test (Signature)")
    conn, session = session_for(
        CARD_DATA_17,
        # 5039 in the current DF (DF00): one SELECT by FID.
        Step(_select(0x5039)),
        *der_reads(signing, 50),
        Step(_select(0x503A)),
        Step(_read(0, 252), bytes(252)),  # all zero: not issued
    )
    assert session.certificate(KeyRole.AUTHENTICATION) == AUTH_CERT  # cached: no APDU
    assert session.certificate(KeyRole.SIGNING) == signing
    assert session.read_certificate(BeidFile.CERT_CA) is None
    conn.assert_done()


def test_long_certificate_read_in_chunks_up_to_der_length() -> None:
    cert = bytes.fromhex("308204D2") + bytes(range(256)) * 5  # 4 + 1234 = 1238 bytes
    cert = cert[:1238]
    steps = der_reads(cert)
    assert [s.command_bytes[-1] for s in steps] == [252, 252, 252, 252, 230]
    conn, session = session_for(CARD_DATA_17, Step(_select(0x503B)), *steps)
    assert session.read_certificate(BeidFile.CERT_ROOT) == cert
    conn.assert_done()


def test_read_loop_6c_tail_and_6b00_eof() -> None:
    identity = bytes(range(1, 201)) + bytes(range(1, 101))  # 300 bytes
    photo = bytes(i % 256 for i in range(504))  # exactly two chunks
    conn, session = session_for(
        CARD_DATA_17,
        Step(SELECT_MF),
        Step(SELECT_DF01),
        Step(_select(0x4031)),
        Step(_read(0, 252), identity[:252]),
        Step(_read(252, 252), sw=0x6C30),
        Step(_read(252, 0x30), identity[252:]),
        Step(_select(0x4035)),  # same DF: by FID only
        Step(_read(0, 252), photo[:252]),
        Step(_read(252, 252), photo[252:]),
        Step(_read(504, 252), sw=0x6B00),
    )
    assert session.read_file(BeidFile.IDENTITY) == identity
    assert session.read_file(BeidFile.PHOTO) == photo
    conn.assert_done()


def test_6b00_at_offset_zero_is_an_error() -> None:
    conn, session = session_for(
        CARD_DATA_17,
        Step(_select(0x5032)),
        Step(_read(0, 252), sw=0x6B00),
    )
    with pytest.raises(ApduError) as info:
        session.read_file(BeidFile.TOKEN_INFO)
    assert info.value.sw == 0x6B00


def test_select_falls_back_to_path_walk() -> None:
    conn, session = session_for(
        CARD_DATA_17,
        Step(_select(0x5032), sw=0x6A82),  # the card lost track of the DF
        Step(SELECT_MF),
        Step(SELECT_DF00),
        Step(_select(0x5032)),
        Step(_read(0, 252), b"\x30\x03\x02\x01\x00"),
    )
    assert session.read_file(BeidFile.TOKEN_INFO) == b"\x30\x03\x02\x01\x00"
    conn.assert_done()


def test_certificate_cache_spares_the_second_session() -> None:
    cache = CertificateCache()
    first = ScriptedConnection(open_steps(CARD_DATA_18))
    session = open_session(first, cache, resend_delay=0)
    assert session.channel.apdu_count == len(open_steps(CARD_DATA_18))
    first.assert_done()
    # Same card again: SELECT + two GET CARD DATA, no certificate read at all.
    second = ScriptedConnection(open_steps(CARD_DATA_18)[:3])
    session = open_session(second, cache, resend_delay=0)
    assert session.certificate(KeyRole.AUTHENTICATION) == AUTH_CERT
    assert session.channel.apdu_count == 3
    second.assert_done()
    # A different card is read.
    other = bytearray(CARD_DATA_18)
    other[15] ^= 1
    third = ScriptedConnection(open_steps(bytes(other)))
    open_session(third, cache, resend_delay=0)
    third.assert_done()


# -- PIN -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pin", "block"),
    [
        ("1234", "2412 34FF FFFF FFFF"),
        ("12345", "2512 345F FFFF FFFF"),
        ("0000", "2400 00FF FFFF FFFF"),
        ("123456789012", "2C12 3456 7890 12FF"),
    ],
)
def test_pin_block(pin: str, block: str) -> None:
    assert encode_pin_block(pin) == bytes.fromhex(block.replace(" ", ""))


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a4", "１２３４", "12 34", ""])
def test_bad_pin_is_refused_before_sending(pin: str) -> None:
    conn, session = session_for(CARD_DATA_17)
    sent = len(conn.sent)
    with pytest.raises(PinFormatError):
        session.verify_pin(PIN, pin)
    with pytest.raises(PinFormatError):
        session.change_pin(PIN, "1234", pin)
    with pytest.raises(PinFormatError):
        session.sign(KeyRole.SIGNING, bytes(32), "SHA-256", pin)
    assert len(conn.sent) == sent


def test_verify_pin_ok_wrong_blocked() -> None:
    verify = "0020000108 2412 34FF FFFF FFFF"
    conn, session = session_for(
        CARD_DATA_17,
        Step(verify),
        Step(verify, sw=0x63C2),
        Step(verify, sw=0x63C0),
        Step(verify, sw=0x6983),
    )
    session.verify_pin(PIN, "1234")
    with pytest.raises(InvalidPinError) as info:
        session.verify_pin(PIN, "1234")
    assert (info.value.tries_left, info.value.pin_name) == (2, "PIN")
    with pytest.raises(PinBlockedError):
        session.verify_pin(PIN, "1234")
    with pytest.raises(PinBlockedError):
        session.verify_pin(PIN, "1234")
    conn.assert_done()


def test_pin_status_without_spending_a_try() -> None:
    conn, session = session_for(
        CARD_DATA_17,
        Step("00200001", sw=0x63C3),
        Step("00200001", sw=0x63C1),
        Step("00200001"),
        Step("00200001", sw=0x6983),
    )
    status = session.pin_status(PIN)
    assert (status.tries_left, status.verified, status.blocked) == (3, False, False)
    assert session.pin_status(PIN).tries_left == 1
    status = session.pin_status(PIN)
    assert status.verified and status.tries_left == 3
    status = session.pin_status(PIN)
    assert status.blocked and status.tries_left == 0
    conn.assert_done()


def test_pin_status_18_from_card_data_until_a_pin_command() -> None:
    """On 1.8 the counter the session's GET CARD DATA (P2=01) read answers without a
    command; after a PIN command it is stale: VERIFY Lc=0, GET CARD DATA if refused."""
    conn, session = session_for(
        CARD_DATA_18,
        Step(PIN_1234, sw=0x63C2),
        Step("00200001", sw=0x6700),
        Step("80E400011F", CARD_DATA_18 + bytes.fromhex("02FFFF")),
    )
    assert session.pin_status(PIN).tries_left == 3  # open_steps' GET CARD DATA: 03
    assert len(conn.sent) == len(open_steps(CARD_DATA_18))
    with pytest.raises(InvalidPinError):
        session.verify_pin(PIN, "1234")
    assert session.pin_status(PIN).tries_left == 2
    conn.assert_done()


def test_resume_sends_one_get_card_data_and_falls_back_to_detection() -> None:
    cache = CertificateCache()
    conn = ScriptedConnection(open_steps(CARD_DATA_18))
    known = open_session(conn, cache, resend_delay=0).resume_state
    conn = ScriptedConnection([Step("80E400011F", CARD_DATA_18 + bytes.fromhex("01FFFF"))])
    session = resume_session(conn, cache, known, resend_delay=0)
    assert session.info.serial == SERIAL.hex().upper()
    assert session.pin_status(PIN).tries_left == 1
    conn.assert_done()
    # Another program selected something else: 6D00, then the whole detection.
    steps = open_steps(CARD_DATA_18)
    conn = ScriptedConnection([Step("80E400011F", sw=0x6D00), *steps[:3]])
    session = resume_session(conn, cache, known, resend_delay=0)
    assert session.info.serial == SERIAL.hex().upper()
    conn.assert_done()


def test_change_pin() -> None:
    command = "0024000110 2412 34FF FFFF FFFF 2654 3210 FFFF FFFF"
    conn, session = session_for(
        CARD_DATA_17, Step(command), Step(command, sw=0x63C1), Step(command, sw=0x6A80)
    )
    session.change_pin(PIN, "1234", "543210")
    with pytest.raises(InvalidPinError) as info:
        session.change_pin(PIN, "1234", "543210")
    assert info.value.tries_left == 1
    with pytest.raises(PinFormatError):
        session.change_pin(PIN, "1234", "543210")
    conn.assert_done()


# -- PIN pad ---------------------------------------------------------------------------------

VERIFY_TEMPLATE = bytes.fromhex("00200001 08 20FFFFFFFFFFFFFF")
MODIFY_TEMPLATE = bytes.fromhex("00240001 10 20FFFFFFFFFFFFFF 20FFFFFFFFFFFFFF")


def pinpad_session(*responses: bytes):
    conn = ScriptedConnection(
        open_steps(CARD_DATA_17),
        pinpad=PinPadFeatures(verify_pin_direct=0x42330006, modify_pin_direct=0x42330007),
        control_responses=list(responses),
    )
    return conn, open_session(conn, CertificateCache(), resend_delay=0)


def test_pinpad_verify_sends_eid_mw_structure() -> None:
    conn, session = pinpad_session(b"\x90\x00", b"\x63\xc1", b"\x64\x00", b"\x64\x01", b"\x64\x03")
    session.verify_pin(PIN, PINPAD)
    code, structure = conn.controls[0]
    assert code == 0x42330006
    # bTimerOut 30, 30; bmFormatString 89; bmPINBlockString 47; bmPINLengthFormat 04;
    # wPINMaxExtraDigit 0C 04 (min 4, max 12); OK key; one message.
    assert structure[:9] == bytes.fromhex("1E1E894704 0C04 0201".replace(" ", ""))
    assert structure.endswith(len(VERIFY_TEMPLATE).to_bytes(4, "little") + VERIFY_TEMPLATE)
    with pytest.raises(InvalidPinError):
        session.verify_pin(PIN, PINPAD)
    with pytest.raises(PinPadTimeoutError):
        session.verify_pin(PIN, PINPAD)
    with pytest.raises(PinPadCancelledError):
        session.verify_pin(PIN, PINPAD)
    with pytest.raises(PinFormatError):
        session.verify_pin(PIN, PINPAD)
    conn.assert_done()
    assert len(conn.sent) == len(open_steps(CARD_DATA_17))  # nothing by transmit


def test_pinpad_change_pin() -> None:
    conn, session = pinpad_session(b"\x90\x00", b"\x64\x02")
    session.change_pin(PIN, PINPAD, None)
    code, structure = conn.controls[0]
    assert code == 0x42330007
    assert structure[5:7] == b"\x00\x08"  # insertion offsets old / new
    assert structure.endswith(MODIFY_TEMPLATE)
    with pytest.raises(PinFormatError):
        session.change_pin(PIN, PINPAD, None)


def test_pinpad_sign_verifies_on_the_reader() -> None:
    digest = hashlib.sha256(b"x").digest()
    conn, session = pinpad_session(b"\x90\x00")
    conn.add(
        Step("0022 41B6 05 04 80 08 84 83"),
        Step("002A9E9A20" + digest.hex(), sw=0x6100),
        Step("00C0000000", bytes(256)),
    )
    assert session.sign(KeyRole.SIGNING, digest, "SHA-256", PINPAD) == bytes(256)
    assert conn.controls[0][0] == 0x42330006
    conn.assert_done()


# -- signing ---------------------------------------------------------------------------------

PIN_1234 = "0020000108 2412 34FF FFFF FFFF"


def test_sign_17_authentication_sha256_pin_once() -> None:
    digest = hashlib.sha256(b"hello").digest()
    signature = bytes(range(256))
    conn, session = session_for(
        CARD_DATA_17,
        Step("002241B605 0480088482"),
        Step("002A9E9A20" + digest.hex(), sw=0x6100),  # no Le, T=0 style
        Step("00C0000000", signature),
    )
    assert session.sign(KeyRole.AUTHENTICATION, digest, "SHA-256", None) == signature
    conn.assert_done()


def test_sign_17_signing_sha384_uses_digest_info_and_pin_right_before() -> None:
    digest = hashlib.sha384(b"hello").digest()
    digest_info = bytes.fromhex("3041300D060960864801650304020205000430") + digest
    conn, session = session_for(
        CARD_DATA_17,
        Step("002241B605 0480018483"),
        Step(PIN_1234),
        Step(f"002A9E9A{len(digest_info):02X}" + digest_info.hex(), bytes(256)),
    )
    assert session.sign(KeyRole.SIGNING, digest, "SHA-384", "1234") == bytes(256)
    conn.assert_done()


@pytest.mark.parametrize(
    ("hash_function", "padding", "algorithm"),
    [("SHA-256", "PSS", 0x20), ("SHA-1", "PSS", 0x10), ("SHA-1", None, 0x02)],
)
def test_sign_17_algorithm_bytes(hash_function: str, padding: str | None, algorithm: int) -> None:
    digest = bytes(32 if hash_function == "SHA-256" else 20)
    conn, session = session_for(
        CARD_DATA_17,
        Step(f"002241B605 0480{algorithm:02X}8482"),
        Step(PIN_1234),
        Step(f"002A9E9A{len(digest):02X}" + digest.hex(), b"\x01" * 256),
    )
    result = session.sign(KeyRole.AUTHENTICATION, digest, hash_function, "1234", padding=padding)
    assert result == b"\x01" * 256
    conn.assert_done()


@pytest.mark.parametrize(
    ("hash_function", "length", "algorithm"),
    [
        ("SHA-256", 32, 0x01),
        ("SHA-384", 48, 0x02),
        ("SHA-512", 64, 0x04),
        ("SHA3-256", 32, 0x08),
        ("SHA3-384", 48, 0x10),
        ("SHA3-512", 64, 0x20),
    ],
)
def test_sign_18_ecdsa_signing_key(hash_function: str, length: int, algorithm: int) -> None:
    digest = bytes(range(length))
    raw = bytes(range(1, 97))
    conn, session = session_for(
        CARD_DATA_18,
        Step(f"002241B605 0480{algorithm:02X}8483"),
        Step(PIN_1234),
        Step(f"002A9E9A{length:02X}" + digest.hex(), sw=0x6160),
        Step("00C0000060", raw),
    )
    assert session.sign(KeyRole.SIGNING, digest, hash_function, "1234") == raw
    conn.assert_done()


def test_sign_18_authentication_data_directly() -> None:
    digest = bytes(48)
    conn, session = session_for(
        CARD_DATA_18,
        Step("002241B605 0480028482"),
        Step("002A9E9A30" + digest.hex(), b"\x07" * 96),
    )
    assert session.sign(KeyRole.AUTHENTICATION, digest, "SHA-384", None) == b"\x07" * 96
    conn.assert_done()


def test_signing_key_without_pin_sends_nothing() -> None:
    conn, session = session_for(CARD_DATA_18)
    sent = len(conn.sent)
    with pytest.raises(PinRequiredError):
        session.sign(KeyRole.SIGNING, bytes(48), "SHA-384", None)
    assert len(conn.sent) == sent


def test_authentication_without_pin_when_card_wants_it() -> None:
    conn, session = session_for(
        CARD_DATA_18,
        Step("002241B605 0480028482"),
        Step("002A9E9A30" + bytes(48).hex(), sw=0x6982),
    )
    with pytest.raises(PinRequiredError):
        session.sign(KeyRole.AUTHENTICATION, bytes(48), "SHA-384", None)
    conn.assert_done()


def test_wrong_pin_stops_before_pso() -> None:
    conn, session = session_for(
        CARD_DATA_18,
        Step("002241B605 0480028483"),
        Step(PIN_1234, sw=0x63C2),
    )
    with pytest.raises(InvalidPinError) as info:
        session.sign(KeyRole.SIGNING, bytes(48), "SHA-384", "1234")
    assert info.value.tries_left == 2
    conn.assert_done()


def test_unsupported_requests_send_nothing() -> None:
    conn, session = session_for(CARD_DATA_18)
    sent = len(conn.sent)
    with pytest.raises(NotSupportedError):
        session.sign(KeyRole.AUTHENTICATION, bytes(32), "SHA-256", None, padding="PSS")
    with pytest.raises(NotSupportedError):
        session.sign(KeyRole.AUTHENTICATION, bytes(20), "SHA-1", None)
    with pytest.raises(NotSupportedError):
        session.sign(KeyRole.AUTHENTICATION, bytes(32), "MD4", None)
    with pytest.raises(ValueError, match="48 bytes"):
        session.sign(KeyRole.AUTHENTICATION, bytes(32), "SHA-384", None)
    assert len(conn.sent) == sent


def test_signature_algorithms() -> None:
    _conn, ecc = session_for(CARD_DATA_18)
    algorithms = ecc.signature_algorithms(KeyRole.SIGNING)
    assert SignatureAlgorithm("ECC", "SHA-384", "NONE") in algorithms
    assert {a.crypto_algorithm for a in algorithms} == {"ECC"}
    assert {a.hash_function for a in algorithms} >= {"SHA-256", "SHA-384", "SHA-512"}
    _conn, rsa = session_for(CARD_DATA_17)
    algorithms = rsa.signature_algorithms(KeyRole.AUTHENTICATION)
    assert SignatureAlgorithm("RSA", "SHA-256", "PKCS1.5") in algorithms
    assert SignatureAlgorithm("RSA", "SHA-512", "PKCS1.5") in algorithms
    assert SignatureAlgorithm("RSA", "SHA-256", "PSS") in algorithms
    assert algorithm_json(algorithms[0])["paddingScheme"] in ("PKCS1.5", "PSS")


def test_ecdsa_raw_to_der() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    der = key.sign(b"data", ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    assert ecdsa_raw_to_der(raw) == der
    key.public_key().verify(ecdsa_raw_to_der(raw), b"data", ec.ECDSA(hashes.SHA384()))
    with pytest.raises(ValueError):
        ecdsa_raw_to_der(b"\x01" * 95)


def test_log_off() -> None:
    conn, session = session_for(CARD_DATA_17, Step("80E60000"))
    session.log_off()
    conn.assert_done()


# -- the BELPIC DF before MSE SET ------------------------------------------------------------


def test_mse_refused_in_another_df_selects_df00_and_sets_again() -> None:
    """Another program left another DF current: the card refuses MSE SET (key not found);
    the driver selects DF00 by path and sets the environment again, then the PIN."""
    digest = bytes(range(32))
    conn, session = session_for(
        CARD_DATA_18,
        Step("002241B605 0480018483", sw=0x6A88),
        Step(SELECT_BELPIC_PATH),
        Step("002241B605 0480018483"),
        Step(PIN_1234),
        Step("002A9E9A20" + digest.hex(), b"\x05" * 96),
    )
    assert session.sign(KeyRole.SIGNING, digest, "SHA-256", "1234") == b"\x05" * 96
    conn.assert_done()


def test_mse_refused_twice_sends_no_pin() -> None:
    conn, session = session_for(
        CARD_DATA_18,
        Step("002241B605 0480018483", sw=0x6A88),
        Step(SELECT_BELPIC_PATH),
        Step("002241B605 0480018483", sw=0x6A88),
    )
    with pytest.raises(ApduError) as info:
        session.sign(KeyRole.SIGNING, bytes(32), "SHA-256", "1234")
    assert info.value.sw == 0x6A88
    conn.assert_done()
    assert not any(apdu[1] == 0x20 for apdu in conn.sent)


def test_df01_selected_in_the_session_selects_df00_first() -> None:
    """After reading a DF01 file in the same session the driver knows DF00 is not
    current: SELECT first, no refused MSE SET."""
    identity = bytes(range(1, 101))
    digest = bytes(48)
    conn, session = session_for(
        CARD_DATA_18,
        Step(SELECT_MF),
        Step(SELECT_DF01),
        Step(_select(0x4031)),
        Step(_read(0, 252), identity),
        Step(SELECT_BELPIC_PATH),
        Step("002241B605 0480028482"),
        Step("002A9E9A30" + digest.hex(), b"\x07" * 96),
    )
    assert session.read_file(BeidFile.IDENTITY) == identity
    assert session.sign(KeyRole.AUTHENTICATION, digest, "SHA-384", None) == b"\x07" * 96
    conn.assert_done()
