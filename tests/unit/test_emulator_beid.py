"""Byte-level tests of the virtual Belgian eID card (applets 1.7 and 1.8) and its PKI."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from eid_emulator.base import VirtualConnection
from eid_emulator.beid import (
    APPLET_AID,
    ATR_1_7,
    ATR_1_8,
    BELPIC_AID,
    ID_AID,
    BeidCard,
    pin_block,
)
from eid_emulator.pki import Holder, TestPki, birth_date_text, make_card_data

from agent.errors import CardRemovedError

APPLETS = ("1.7", "1.8")


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("beid-pki"))


@pytest.fixture(scope="module")
def card_data(pki: TestPki) -> dict:
    return {applet: make_card_data(pki, Holder(), applet) for applet in APPLETS}


@pytest.fixture(params=APPLETS)
def card(request: pytest.FixtureRequest, card_data: dict) -> BeidCard:
    return BeidCard(request.param, card_data[request.param])


@pytest.fixture
def card17(card_data: dict) -> BeidCard:
    return BeidCard("1.7", card_data["1.7"])


@pytest.fixture
def card18(card_data: dict) -> BeidCard:
    return BeidCard("1.8", card_data["1.8"])


def tx(card: BeidCard, apdu: str | bytes) -> tuple[bytes, int]:
    raw = bytes.fromhex(apdu.replace(" ", "")) if isinstance(apdu, str) else apdu
    out = card.process(raw)
    return out[:-2], int.from_bytes(out[-2:], "big")


def ok(card: BeidCard, apdu: str | bytes) -> bytes:
    data, sw = tx(card, apdu)
    assert sw == 0x9000, f"{apdu}: {sw:04X}"
    return data


def select_path(card: BeidCard, path: str) -> None:
    raw = bytes.fromhex(path)
    ok(card, bytes([0x00, 0xA4, 0x08, 0x0C, len(raw)]) + raw)


def read_file(card: BeidCard, path: str) -> bytes:
    """Read an EF the way eid-mw does: 252-byte chunks, 6Cxx re-read, 6B00 = EOF."""
    select_path(card, path)
    out = b""
    while True:
        off = len(out)
        data, sw = tx(card, bytes([0x00, 0xB0, off >> 8, off & 0xFF, 252]))
        if sw == 0x6B00:
            return out
        if sw >> 8 == 0x6C:
            data = ok(card, bytes([0x00, 0xB0, off >> 8, off & 0xFF, sw & 0xFF]))
            return out + data
        assert sw == 0x9000
        out += data


def verify(card: BeidCard, pin: str = "1234") -> int:
    return tx(card, bytes.fromhex("0020000108") + pin_block(pin))[1]


def mse(card: BeidCard, alg: int, key: int) -> int:
    """MSE SET with the BELPIC DF current (selected by path first when it is not)."""
    if card._current_df().fid != 0xDF00:
        select_path(card, "DF00")
    return tx(card, bytes([0x00, 0x22, 0x41, 0xB6, 0x05, 0x04, 0x80, alg, 0x84, key]))[1]


def test_mse_set_needs_the_belpic_df(card: BeidCard) -> None:
    """The keys belong to DF00: with the MF (after reset) or DF01 current the key is not
    found; once DF00 or one of its EFs is current MSE SET works."""
    alg = 0x01 if card.profile.version == "1.8" else 0x08
    raw = bytes([0x00, 0x22, 0x41, 0xB6, 0x05, 0x04, 0x80, alg, 0x84, 0x82])
    assert tx(card, raw)[1] == 0x6A88  # MF current after reset
    select_path(card, "DF014031")
    assert tx(card, raw)[1] == 0x6A88
    select_path(card, "DF005038")
    assert tx(card, raw)[1] == 0x9000


def pso(card: BeidCard, dtbs: bytes) -> tuple[bytes, int]:
    """PSO:CDS without Le, then GET RESPONSE as announced by 61xx."""
    data, sw = tx(card, bytes([0x00, 0x2A, 0x9E, 0x9A, len(dtbs)]) + dtbs)
    if sw >> 8 != 0x61:
        return data, sw
    assert data == b""
    return tx(card, bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))


def parse_tlv(content: bytes) -> dict[int, bytes]:
    out, i = {}, 0
    while i < len(content):
        tag = content[i]
        i += 1
        length = 0
        while content[i] == 0xFF:
            length += 255
            i += 1
        length += content[i]
        i += 1
        if tag == 0 and length == 0 and out:
            break
        out[tag] = content[i : i + length]
        i += length
    return out


def der_length(blob: bytes) -> int:
    """Total length of the DER element at the start of blob."""
    if blob[1] < 0x80:
        return 2 + blob[1]
    n = blob[1] & 0x7F
    return 2 + n + int.from_bytes(blob[2 : 2 + n], "big")


def cert_of(card: BeidCard, fid: str) -> x509.Certificate:
    content = read_file(card, "3F00DF00" + fid)
    return x509.load_der_x509_certificate(content[: der_length(content)])


def verify_card_signature(cert: x509.Certificate, digest: bytes, signature: bytes,
                          scheme: str = "ecdsa") -> None:
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        half = len(signature) // 2
        der = encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                   int.from_bytes(signature[half:], "big"))
        size_hash = {20: hashes.SHA1(), 32: hashes.SHA256(), 48: hashes.SHA384(),
                     64: hashes.SHA512(), 28: hashes.SHA224()}[len(digest)]
        public.verify(der, digest, ec.ECDSA(Prehashed(size_hash)))
        return
    assert isinstance(public, rsa.RSAPublicKey)
    if scheme == "pss":
        h = hashes.SHA256() if len(digest) == 32 else hashes.SHA1()
        public.verify(signature, digest, padding.PSS(padding.MGF1(h), h.digest_size),
                      Prehashed(h))
        return
    # PKCS#1 v1.5 with `digest` being the full DigestInfo: check the EMSA block directly.
    numbers = public.public_numbers()
    em = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(256, "big")
    assert em == b"\x00\x01" + b"\xff" * (256 - 3 - len(digest)) + b"\x00" + digest


SHA256_PREFIX = bytes.fromhex("3031300D060960864801650304020105000420")
SHA1_PREFIX = bytes.fromhex("3021300906052B0E03021A05000414")
MD5_PREFIX = bytes.fromhex("3020300C06082A864886F70D020505000410")


# ------------------------------------------------------------------ ATR and file system


def test_atrs(card_data: dict) -> None:
    assert BeidCard("1.8", card_data["1.8"]).atr.hex(" ").upper() == (
        "3B 7F 96 00 00 80 31 80 65 B0 85 04 01 20 12 0F FF 82 90 00")
    assert BeidCard("1.7", card_data["1.7"]).atr == bytes.fromhex("3B9813400AA503010101AD1311")
    assert ATR_1_7 != ATR_1_8
    assert VirtualConnection(BeidCard("1.7", card_data["1.7"])).atr == ATR_1_7


# Byte-exact PKCS#15 content of the 1.7 test card dump (VSCB belpic.xml in beid-card.md).
TEST_CARD_17 = {
    "3F002F00": "61234F0CA000000177504B43532D3135500642454C50494351043F00DF0073050603603802",
    "3F00DF005031": "A00A300804063F00DF005035A40A300804063F00DF005037A80A300804063F00DF005034",
    "3F00DF005034": "3033300F0C0942617369632050494E030206C03003040101A11B30190302020C0A0100020104"
                    "0201088001010401FF300404023F00",
    "3F00DF005035": "303A30170C0E41757468656E7469636174696F6E030206C0040101300F040102030205200302"
                    "03B802020082A10E300C300604043F00DF0002020800303930150C095369676E6174757265"
                    "030206C004010102010130100401030303060040030203B802020083A10E300C300604043F"
                    "00DF0002020800",
    "3F00DF005037": "302C30170C0E41757468656E7469636174696F6E030206C00401013003040102A10C300A3008"
                    "04063F00DF005038302730120C095369676E6174757265030206C00401013003040103A10C"
                    "300A300804063F00DF0050393023300B0C024341030206C004010130060401040101FFA10C"
                    "300A300804063F00DF00503A3025300D0C04526F6F74030206C004010130060401060101FF"
                    "A10C300A300804063F00DF00503B",
}


@pytest.mark.parametrize("path", sorted(TEST_CARD_17))
def test_pkcs15_files_match_the_17_test_card(card17: BeidCard, path: str) -> None:
    assert read_file(card17, path).hex().upper() == TEST_CARD_17[path]


def test_18_prkdf_holds_ec_keys_of_384_bits(card18: BeidCard) -> None:
    prkdf = read_file(card18, "3F00DF005035")
    expected_17 = bytes.fromhex(TEST_CARD_17["3F00DF005035"])
    # Same objects, but the outer tag is [0] privateECKey and the key size 0x0180.
    as_ec = expected_17.replace(b"\x02\x02\x08\x00", b"\x02\x02\x01\x80")
    as_ec = b"\xa0" + as_ec[1:0x3C] + b"\xa0" + as_ec[0x3D:]
    assert prkdf == as_ec


def test_token_info_carries_the_chip_serial(card: BeidCard) -> None:
    info = read_file(card, "3F00DF005032")
    serial = ok(card, "80E400001C")[:16]
    assert info[:7] == bytes.fromhex("30270201000410")
    assert info[7:23] == serial
    assert info[23:37] == bytes.fromhex("800642454C504943030204309E04")
    assert len(info) == 0x29


@pytest.mark.parametrize(("applet", "pad", "empty"), [("1.7", 50, 1300), ("1.8", 1100, 2500)])
def test_certificate_padding_and_missing_signing_certificate(
    pki: TestPki, card_data: dict, applet: str, pad: int, empty: int
) -> None:
    card = BeidCard(applet, card_data[applet])
    for fid, der in (("5038", card.data.auth_cert), ("503A", card.data.ca_cert),
                     ("503B", card.data.root_cert), ("503C", card.data.rrn_cert)):
        assert read_file(card, "3F00DF00" + fid) == der + bytes(pad)
    full_cdf = read_file(card, "3F00DF005037")

    kid = BeidCard(applet, make_card_data(
        pki, Holder(given_names="Kid", national_number="18010112345",
                    has_signing_certificate=False), applet))
    assert read_file(kid, "3F00DF005039") == bytes(empty)
    cdf = read_file(kid, "3F00DF005037")
    assert len(cdf) == len(full_cdf)
    assert b"\x3f\x00\xdf\x00\x50\x39" not in cdf
    assert b"\x3f\x00\xdf\x00\x50\x38" in cdf and cdf.endswith(bytes(0x29))
    assert mse(kid, 0x40 if applet == "1.8" else 0x01, 0x83) == 0x6A88


def test_identity_files_exist_per_applet(card17: BeidCard, card18: BeidCard) -> None:
    for fid in ("4031", "4032", "4033", "4034", "4035", "4038", "4039"):
        assert read_file(card17, "DF01" + fid)
    assert tx(card17, "00A4080C04DF014040")[1] == 0x6A82
    assert tx(card18, "00A4080C04DF014038")[1] == 0x6A82
    spki = read_file(card18, "DF014040")
    key = serialization.load_der_public_key(spki)
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    assert len(read_file(card18, "DF014033")) == 117


# ------------------------------------------------------------------ SELECT


def test_select_by_fid_walk_and_relative(card: BeidCard) -> None:
    for fid in ("3F00", "DF01", "4031"):
        assert tx(card, "00A4020C02" + fid) == (b"", 0x9000)
    assert ok(card, "00B0000002")[:1] in (b"\x00", b"\x01")
    # From an EF, P1=02 searches the parent DF; DF00 is reachable from DF01.
    assert tx(card, "00A4020C024033") == (b"", 0x9000)
    assert tx(card, "00A4020C025038")[1] == 0x6A82
    assert tx(card, "00A4020C02DF00") == (b"", 0x9000)
    assert tx(card, "00A4020C025038") == (b"", 0x9000)
    assert tx(card, "00A4020C023F00") == (b"", 0x9000)
    assert tx(card, "00A4020C024031")[1] == 0x6A82


def test_select_lengths_p1_p2(card: BeidCard) -> None:
    assert tx(card, "00A4020C033F0000")[1] == 0x6A87
    assert tx(card, "00A4020C013F")[1] == 0x6A87
    assert tx(card, "00A4030C023F00")[1] == 0x6A86
    assert tx(card, "00A4020402 3F00")[1] == 0x6A86
    assert tx(card, "00A4040C03A00000")[1] == 0x6A87
    assert tx(card, "00A4080C03DF0140")[1] == 0x6A87
    assert tx(card, "00A4080C04DF017777")[1] == 0x6A82


def test_select_by_path_with_and_without_mf(card: BeidCard) -> None:
    with_mf = read_file(card, "3F00DF014031")
    without = read_file(card, "DF014031")
    assert with_mf == without and with_mf[:1] in (b"\x00", b"\x01")
    assert tx(card, "00A4080C023F00") == (b"", 0x9000)


@pytest.mark.parametrize("p2", ["00", "0C"])
def test_select_by_aid_never_returns_fci(card: BeidCard, p2: str) -> None:
    for aid, then in ((APPLET_AID, "DF00"), (BELPIC_AID, "5038"), (ID_AID, "4031")):
        data, sw = tx(card, bytes.fromhex("00A404" + p2) + bytes([len(aid)]) + aid)
        assert (data, sw) == (b"", 0x9000)
        assert tx(card, "00A4020C02" + then) == (b"", 0x9000)
    # A longer AID matches the stored one on prefix, like the real card.
    assert tx(card, bytes.fromhex("00A4040C0D") + ID_AID + b"\x01\x02")[1] == 0x9000
    assert tx(card, "00A4040C05A000000000")[1] == 0x6A82


# ------------------------------------------------------------------ READ BINARY / RECORD


def test_read_binary_eof_6c_and_le_256(card: BeidCard) -> None:
    select_path(card, "3F00DF005038")
    size = len(card.files[(0x3F00, 0xDF00, 0x5038)])
    assert len(ok(card, "00B0000000")) == 256
    last = size - 10
    assert tx(card, bytes([0, 0xB0, last >> 8, last & 0xFF, 0x20]))[1] == 0x6C0A
    assert len(ok(card, bytes([0, 0xB0, last >> 8, last & 0xFF, 0x0A]))) == 10
    assert tx(card, bytes([0, 0xB0, size >> 8, size & 0xFF, 0x01]))[1] == 0x6B00
    assert tx(card, "00B0800001")[1] == 0x6B00
    assert tx(card, "00A4080C043F00DF00")[1] == 0x9000
    assert tx(card, "00B0000001")[1] == 0x6986


def test_read_record_only_on_18(card17: BeidCard, card18: BeidCard) -> None:
    select_path(card17, "DF014031")
    assert tx(card17, "80B2060600")[1] == 0x6D00
    select_path(card18, "DF014031")
    fields = parse_tlv(card18.data.identity)
    data = ok(card18, "80B2060600")
    assert data == b"\x06\x0b" + fields[0x06]
    assert ok(card18, "80B2070800") == (bytes([7, len(fields[7])]) + fields[7]
                                         + bytes([8, len(fields[8])]) + fields[8])
    assert tx(card18, "80B2080700")[1] == 0x6A83
    assert tx(card18, "80B2060601")[1] == 0x6C0D
    select_path(card18, "DF014035")
    assert tx(card18, "80B2060600")[1] == 0x6981


# ------------------------------------------------------------------ GET CARD DATA


def test_get_card_data(card: BeidCard) -> None:
    data = ok(card, "80E400001C")
    assert len(data) == 28
    applet_byte = {"1.7": 0x17, "1.8": 0x18}[card.profile.version]
    assert data[21] == applet_byte
    assert data[:16] == card.data.chip_serial
    assert data[27] == 0x0F
    assert tx(card, "80E4000010")[1] == 0x6C1C
    assert tx(card, "80E4000000")[1] == 0x6C1C
    assert tx(card, "80E4010000")[1] == 0x6B00
    assert tx(card, "00E400001C")[1] == 0x6E00


def test_get_card_data_p2_01_has_the_pin_counter_on_18(card17: BeidCard,
                                                        card18: BeidCard) -> None:
    assert tx(card17, "80E400011F")[1] == 0x6B00
    data = ok(card18, "80E400011F")
    assert len(data) == 31 and data[28] == 3 and data[29:] == b"\xff\xff"
    assert data[:28] == ok(card18, "80E400001C")
    assert tx(card18, "80E400011C")[1] == 0x6C1F
    assert verify(card18, "9999") == 0x63C2
    assert ok(card18, "80E400011F")[28] == 2


# ------------------------------------------------------------------ PIN


def test_verify_counts_tries_and_probe_spends_none(card: BeidCard) -> None:
    assert tx(card, "00200001") == (b"", 0x63C3)
    assert verify(card, "1111") == 0x63C2
    assert tx(card, "00200001") == (b"", 0x63C2)
    assert tx(card, "00200001") == (b"", 0x63C2)
    assert verify(card) == 0x9000
    assert tx(card, "00200001") == (b"", 0x9000)
    assert card.tries_left == 3


def test_pin_blocks_after_three_wrong(card: BeidCard) -> None:
    assert [verify(card, "0000") for _ in range(3)] == [0x63C2, 0x63C1, 0x6983]
    assert verify(card) == 0x6983
    assert tx(card, "00200001")[1] == 0x6983
    assert tx(card, bytes.fromhex("0024000110") + pin_block("1234") + pin_block("5678"))[1] == (
        0x6983)


def test_verify_format_and_reference_errors(card: BeidCard) -> None:
    assert tx(card, "00200001081234FFFFFFFFFFFF")[1] == 0x6A80  # nibble 1 must be 2
    assert tx(card, "0020000108231234FFFFFFFFFF")[1] == 0x6A80  # length 3
    assert tx(card, "00200001082412A4FFFFFFFFFF")[1] == 0x6A80  # not BCD
    assert tx(card, "002000010424123 4".replace(" ", "") + "FF")[1] == 0x6700
    assert tx(card, bytes.fromhex("0020000208") + pin_block("1234"))[1] == 0x6A88
    assert tx(card, bytes.fromhex("0020010108") + pin_block("1234"))[1] == 0x6A86
    assert card.tries_left == 3


def test_wrong_pin_clears_access_rights(card: BeidCard) -> None:
    alg = card.profile.algorithms and (0x40 if card.profile.version == "1.8" else 0x08)
    assert mse(card, alg, 0x82) == 0x9000
    assert verify(card) == 0x9000
    assert verify(card, "4321") == 0x63C2
    assert pso(card, bytes(32))[1] == 0x6982
    assert tx(card, "00200001")[1] == 0x63C2


def test_change_reference_data(card: BeidCard) -> None:
    change = bytes.fromhex("0024000110")
    assert tx(card, change + pin_block("9999") + pin_block("5678"))[1] == 0x63C2
    assert tx(card, change + pin_block("1234") + bytes(8))[1] == 0x6A80
    assert tx(card, change + pin_block("1234") + pin_block("567890"))[1] == 0x9000
    assert tx(card, "00200001")[1] == 0x9000  # the access right is granted
    assert card.tries_left == 3 and card.pin == "567890"
    assert verify(card, "1234") == 0x63C2
    assert verify(card, "567890") == 0x9000
    assert tx(card, bytes.fromhex("0024000108") + pin_block("1234"))[1] == 0x6700


def test_log_off_and_reset_clear_pin_state(card: BeidCard) -> None:
    assert verify(card) == 0x9000
    assert tx(card, "80E60000") == (b"", 0x9000)
    assert tx(card, "00200001")[1] == 0x63C3
    assert verify(card) == 0x9000
    card.reset()
    assert tx(card, "00200001")[1] == 0x63C3
    assert tx(card, "80E6000000")[1] == 0x9000  # eid-mw's 5-byte form


# ------------------------------------------------------------------ MSE SET / PSO:CDS


@pytest.mark.parametrize(("applet", "valid"), [
    ("1.7", {0x01, 0x02, 0x04, 0x08, 0x10, 0x20}),
    ("1.8", {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40}),
])
def test_mse_set_algorithms(card_data: dict, applet: str, valid: set[int]) -> None:
    card = BeidCard(applet, card_data[applet])
    for alg in (0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x03):
        assert mse(card, alg, 0x82) == (0x9000 if alg in valid else 0x6A80), hex(alg)
    assert mse(card, 0x01, 0x81) == 0x6A88
    assert mse(card, 0x01, 0x84) == 0x6A88
    assert tx(card, "002241B6050580018482")[1] == 0x6A80
    assert tx(card, "002241B6050481018482")[1] == 0x6A80
    assert tx(card, "002241B60404800184")[1] == 0x6700
    assert tx(card, "002281B6050480018482")[1] == 0x6B00


def test_pso_needs_se_then_pin(card: BeidCard) -> None:
    assert pso(card, bytes(32))[1] == 0x6985
    assert mse(card, 0x01 if card.profile.version == "1.8" else 0x08, 0x82) == 0x9000
    assert pso(card, bytes(32))[1] == 0x6982
    assert verify(card) == 0x9000
    signature, sw = pso(card, bytes(32))
    assert sw == 0x9000 and signature


@pytest.mark.parametrize(("alg", "length"), [
    (0x01, 32), (0x02, 48), (0x04, 64), (0x08, 32), (0x10, 48), (0x20, 64),
    (0x40, 20), (0x40, 28), (0x40, 32), (0x40, 48), (0x40, 64),
])
def test_18_ecdsa_signatures_verify(card18: BeidCard, alg: int, length: int) -> None:
    cert = cert_of(card18, "5038")
    assert mse(card18, alg, 0x82) == 0x9000
    assert verify(card18) == 0x9000
    digest = hashlib.sha512(bytes([alg, length])).digest()[:length]
    data, sw = tx(card18, bytes([0, 0x2A, 0x9E, 0x9A, length]) + digest)
    assert (data, sw) == (b"", 0x6160)
    signature = ok(card18, "00C0000060")
    assert len(signature) == 96
    verify_card_signature(cert, digest, signature)
    with pytest.raises(InvalidSignature):
        verify_card_signature(cert, bytes(length), signature)


@pytest.mark.parametrize(("alg", "length"), [(0x01, 33), (0x02, 32), (0x40, 47), (0x40, 65)])
def test_18_dtbs_length_is_checked(card18: BeidCard, alg: int, length: int) -> None:
    assert mse(card18, alg, 0x82) == 0x9000
    assert verify(card18) == 0x9000
    assert pso(card18, bytes(length))[1] == 0x6700


def test_17_rsa_signatures_verify(card17: BeidCard) -> None:
    cert = cert_of(card17, "5038")
    assert verify(card17) == 0x9000
    msg = b"to be signed"
    sha256, sha1 = hashlib.sha256(msg).digest(), hashlib.sha1(msg).digest()  # noqa: S324
    md5 = hashlib.md5(msg).digest()  # noqa: S324
    cases = [
        (0x01, SHA256_PREFIX + sha256, SHA256_PREFIX + sha256, "pkcs1"),
        (0x02, sha1, SHA1_PREFIX + sha1, "pkcs1"),
        (0x04, md5, MD5_PREFIX + md5, "pkcs1"),
        (0x08, sha256, SHA256_PREFIX + sha256, "pkcs1"),
        (0x10, sha1, sha1, "pss"),
        (0x20, sha256, sha256, "pss"),
    ]
    for alg, dtbs, checked, scheme in cases:
        assert mse(card17, alg, 0x82) == 0x9000
        data, sw = tx(card17, bytes([0, 0x2A, 0x9E, 0x9A, len(dtbs)]) + dtbs)
        assert (data, sw) == (b"", 0x6100)
        signature = ok(card17, "00C0000000")
        assert len(signature) == 256
        verify_card_signature(cert, checked, signature, scheme)
    # The standard library view: PKCS#1 v1.5 SHA-256 over the message.
    assert mse(card17, 0x08, 0x82) == 0x9000
    signature, _ = pso(card17, sha256)
    cert.public_key().verify(signature, msg, padding.PKCS1v15(), hashes.SHA256())


def test_17_dtbs_length_is_checked(card17: BeidCard) -> None:
    assert verify(card17) == 0x9000
    for alg, length in ((0x02, 32), (0x08, 20), (0x04, 20), (0x20, 20), (0x01, 246)):
        assert mse(card17, alg, 0x82) == 0x9000
        data = bytes(length)
        apdu = bytes([0, 0x2A, 0x9E, 0x9A, length & 0xFF]) + data if length < 256 else None
        assert apdu is not None
        assert tx(card17, apdu)[1] == 0x6700, hex(alg)


def test_get_response_rules(card18: BeidCard) -> None:
    assert tx(card18, "00C0000010")[1] == 0x6985
    assert mse(card18, 0x02, 0x82) == 0x9000
    assert verify(card18) == 0x9000
    assert tx(card18, bytes([0, 0x2A, 0x9E, 0x9A, 48]) + bytes(48))[1] == 0x6160
    assert tx(card18, "00C00000FF")[1] == 0x6C60
    part = ok(card18, "00C0000060")
    assert len(part) == 96
    assert tx(card18, "00C0000010")[1] == 0x6985
    # Chained in pieces: 61xx announces the rest.
    assert tx(card18, bytes([0, 0x2A, 0x9E, 0x9A, 48]) + bytes(48))[1] == 0x6160
    first, sw = tx(card18, "00C0000040")
    assert len(first) == 0x40 and sw == 0x6120
    assert len(ok(card18, "00C0000020")) == 0x20
    # Any other command drops a pending response.
    assert tx(card18, bytes([0, 0x2A, 0x9E, 0x9A, 48]) + bytes(48))[1] == 0x6160
    ok(card18, "80E400001C")
    assert tx(card18, "00C0000060")[1] == 0x6985


# ------------------------------------------------------------------ PIN modes


def alg_for(card: BeidCard) -> int:
    return 0x02 if card.profile.version == "1.8" else 0x08


def dtbs_for(card: BeidCard) -> bytes:
    return bytes(range(48)) if card.profile.version == "1.8" else bytes(range(32))


def test_auth_key_is_pin_once(card: BeidCard) -> None:
    assert mse(card, alg_for(card), 0x82) == 0x9000
    assert verify(card) == 0x9000
    for _ in range(3):
        read_file(card, "3F00DF005032")
        ok(card, "80E400001C")
        assert mse(card, alg_for(card), 0x82) == 0x9000
        assert pso(card, dtbs_for(card))[1] == 0x9000


def test_nonrep_key_is_pin_just_before(card: BeidCard) -> None:
    sign_cert = cert_of(card, "5039")
    # eid-mw's order: MSE SET, VERIFY, PSO.
    assert mse(card, alg_for(card), 0x83) == 0x9000
    assert verify(card) == 0x9000
    signature, sw = pso(card, dtbs_for(card))
    assert sw == 0x9000
    if card.profile.version == "1.8":
        verify_card_signature(sign_cert, dtbs_for(card), signature)
    else:
        verify_card_signature(sign_cert, SHA256_PREFIX + dtbs_for(card), signature)
    # The right is spent: a second signature needs a new VERIFY.
    assert pso(card, dtbs_for(card))[1] == 0x6982
    assert verify(card) == 0x9000
    assert pso(card, dtbs_for(card))[1] == 0x9000


def test_nonrep_intervening_commands_17(card17: BeidCard) -> None:
    select_path(card17, "DF00")
    assert verify(card17) == 0x9000
    assert mse(card17, 0x08, 0x83) == 0x9000  # one command in between: too many on 1.7
    assert pso(card17, bytes(32))[1] == 0x6982


def test_nonrep_intervening_commands_18(card18: BeidCard) -> None:
    select_path(card18, "DF00")
    assert verify(card18) == 0x9000
    assert mse(card18, 0x02, 0x83) == 0x9000  # one command in between is allowed on 1.8
    assert pso(card18, bytes(48))[1] == 0x9000

    assert verify(card18) == 0x9000
    ok(card18, "80E400001C")
    ok(card18, "80E400001C")  # two: too many
    assert pso(card18, bytes(48))[1] == 0x6982

    for between in ("00200001", "80E60000"):  # VERIFY (probe) and LOG OFF are never allowed
        assert verify(card18) == 0x9000
        tx(card18, between)
        assert pso(card18, bytes(48))[1] == 0x6982

    assert verify(card18) == 0x9000
    assert mse(card18, 0x02, 0x82) == 0x9000
    assert pso(card18, bytes(48))[1] == 0x9000  # key 82 signature in between
    assert mse(card18, 0x02, 0x83) == 0x9000
    assert pso(card18, bytes(48))[1] == 0x6982


def test_mixed_rule_auth_after_nonrep_needs_verify(card: BeidCard) -> None:
    assert verify(card) == 0x9000
    assert mse(card, alg_for(card), 0x82) == 0x9000
    assert pso(card, dtbs_for(card))[1] == 0x9000
    assert mse(card, alg_for(card), 0x83) == 0x9000
    assert verify(card) == 0x9000
    assert pso(card, dtbs_for(card))[1] == 0x9000
    assert mse(card, alg_for(card), 0x82) == 0x9000
    assert pso(card, dtbs_for(card))[1] == 0x6982
    assert verify(card) == 0x9000
    assert pso(card, dtbs_for(card))[1] == 0x9000


# ------------------------------------------------------------------ INTERNAL AUTHENTICATE


def test_internal_authenticate_18(card18: BeidCard) -> None:
    spki = read_file(card18, "DF014040")
    identity = parse_tlv(read_file(card18, "DF014031"))
    assert identity[0x1A] == hashlib.sha384(spki).digest()
    key = serialization.load_der_public_key(spki)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert mse(card18, 0x02, 0x82) == 0x9000
    challenge = bytes(range(48))
    data, sw = tx(card18, bytes.fromhex("0088028132 9430") + challenge)
    assert (data, sw) == (b"", 0x6160)
    signature = ok(card18, "00C0000060")
    der = encode_dss_signature(int.from_bytes(signature[:48], "big"),
                               int.from_bytes(signature[48:], "big"))
    key.verify(der, challenge, ec.ECDSA(Prehashed(hashes.SHA384())))
    # No PIN was needed, and the SE is gone.
    assert verify(card18) == 0x9000
    assert pso(card18, bytes(48))[1] == 0x6985
    assert tx(card18, bytes.fromhex("0088028232 9430") + challenge)[1] == 0x6A88
    assert tx(card18, bytes.fromhex("0088028122 9420") + bytes(32))[1] == 0x6700
    assert tx(card18, bytes.fromhex("0088018132 9530") + challenge)[1] == 0x6A80


def test_internal_authenticate_absent_on_17(card17: BeidCard) -> None:
    assert tx(card17, bytes.fromhex("0088028132 9430") + bytes(48))[1] == 0x6D00


# ------------------------------------------------------------------ CLA / INS


def test_wrong_cla_and_unknown_ins(card: BeidCard) -> None:
    assert tx(card, "90A4020C023F00")[1] == 0x6E00
    assert tx(card, "80A4020C023F00")[1] == 0x6E00
    assert tx(card, "0084000008")[1] == 0x6D00
    assert tx(card, "00CA000000")[1] == 0x6D00
    assert tx(card, "00A4")[1] == 0x6700


# ------------------------------------------------------------------ identity data


@pytest.mark.parametrize("applet", APPLETS)
def test_identity_signatures_verify(pki: TestPki, card_data: dict, applet: str) -> None:
    card = BeidCard(applet, card_data[applet])
    identity = read_file(card, "DF014031")
    sgn_id = read_file(card, "DF014032")
    address = read_file(card, "DF014033")
    sgn_address = read_file(card, "DF014034")
    photo = read_file(card, "DF014035")
    rrn = cert_of(card, "503C")
    assert rrn.subject.rfc4514_string() == "CN=RRN,O=RRN,C=BE"
    rrn.verify_directly_issued_by(pki.root.cert)
    fields = parse_tlv(identity)
    key = rrn.public_key()
    signed_address = address.rstrip(b"\x00") + sgn_id
    if isinstance(key, ec.EllipticCurvePublicKey):
        assert applet == "1.8"
        assert fields[0x11] == hashlib.sha384(photo).digest()
        key.verify(sgn_id[: der_length(sgn_id)], identity, ec.ECDSA(hashes.SHA384()))
        key.verify(sgn_address[: der_length(sgn_address)], signed_address,
                   ec.ECDSA(hashes.SHA384()))
        assert len(sgn_id) == len(sgn_address) == 104
    else:
        assert isinstance(key, rsa.RSAPublicKey) and applet == "1.7"
        assert fields[0x11] == hashlib.sha256(photo).digest()
        key.verify(sgn_id, identity, padding.PKCS1v15(), hashes.SHA256())
        key.verify(sgn_address, signed_address, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        tampered = identity.replace(b"Specimen", b"Specimem")
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sgn_id[: der_length(sgn_id)], tampered, ec.ECDSA(hashes.SHA384()))
        else:
            key.verify(sgn_id, tampered, padding.PKCS1v15(), hashes.SHA256())


def test_1_7_card_can_use_the_ec_rrn(pki: TestPki) -> None:
    card = BeidCard("1.7", make_card_data(pki, Holder(), "1.7", rrn="ec"))
    identity, sgn_id = read_file(card, "DF014031"), read_file(card, "DF014032")
    key = cert_of(card, "503C").public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(sgn_id[: der_length(sgn_id)], identity, ec.ECDSA(hashes.SHA384()))
    assert len(parse_tlv(identity)[0x11]) == 48


def test_identity_fields(card18: BeidCard, card17: BeidCard) -> None:
    holder = Holder()
    fields = parse_tlv(read_file(card18, "DF014031"))
    assert fields[0x01] == holder.card_number.encode()
    assert fields[0x02] == ok(card18, "80E400001C")[:16]
    assert fields[0x03] == b"15.01.2024" and fields[0x04] == b"15.01.2034"
    assert fields[0x06] == b"85073003328"
    assert fields[0x07] == b"Specimen"
    assert fields[0x08] == "Alice Geneviève".encode()
    assert fields[0x0C] == b"30 JUL 1985"
    assert fields[0x0D] == b"V"  # female, Dutch
    assert fields[0x0F] == b"1"
    assert sorted(fields) == list(fields)  # ascending tags
    assert 0x1A not in parse_tlv(read_file(card17, "DF014031"))
    address = parse_tlv(read_file(card18, "DF014033"))
    assert address == {1: b"Wetstraat 16", 2: b"1000", 3: b"Brussel"}
    photo = read_file(card18, "DF014035")
    assert photo[:2] == b"\xff\xd8" and photo[-2:] == b"\xff\xd9"
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(photo))
    assert image.mode == "L" and image.size == (150, 195)
    assert not image.info.get("progressive")


@pytest.mark.parametrize(("language", "expected"), [
    ("nl", "03 MAAR 1990"), ("fr", "03 MARS 1990"), ("de", "03.MÄR.1990"),
])
def test_birth_date_formats(language: str, expected: str) -> None:
    text = birth_date_text(dt.date(1990, 3, 3), language)
    assert text == expected and len(text.encode()) <= 12


# ------------------------------------------------------------------ certificates and PKI


@pytest.mark.parametrize("applet", APPLETS)
def test_certificates(pki: TestPki, card_data: dict, applet: str) -> None:
    card = BeidCard(applet, card_data[applet])
    root, ca = cert_of(card, "503B"), cert_of(card, "503A")
    assert root == pki.root.cert and ca == pki.citizen_ca.cert
    ca.verify_directly_issued_by(root)
    for fid, role in (("5038", "Authentication"), ("5039", "Signature")):
        cert = cert_of(card, fid)
        cert.verify_directly_issued_by(ca)
        subject = cert.subject
        assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
            f"Alice Specimen ({role})")
        assert subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "85073003328"
        assert subject.get_attributes_for_oid(NameOID.SURNAME)[0].value == "Specimen"
        assert subject.get_attributes_for_oid(NameOID.GIVEN_NAME)[0].value == "Alice Geneviève"
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert usage.critical
        assert usage.value.digital_signature == (role == "Authentication")
        assert usage.value.content_commitment == (role == "Signature")
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
        assert aia.value[0].access_location.value == pki.ocsp_url
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        assert policies[0].policy_identifier.dotted_string == (
            "2.16.56.12.1.1.2.2" if role == "Authentication" else "2.16.56.12.1.1.2.1")
        key_type = ec.EllipticCurvePublicKey if applet == "1.8" else rsa.RSAPublicKey
        assert isinstance(cert.public_key(), key_type)
    auth = cert_of(card, "5038")
    eku = auth.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    sign = cert_of(card, "5039")
    sign.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.3"))
    ocsp = pki.ocsp.cert
    ocsp.verify_directly_issued_by(ca)
    assert ExtendedKeyUsageOID.OCSP_SIGNING in ocsp.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value


def test_pki_is_reused_and_regenerated(tmp_path: Path) -> None:
    first = TestPki.load_or_create(tmp_path)
    again = TestPki.load_or_create(tmp_path)
    assert again.root.cert == first.root.cert
    data1 = make_card_data(first, Holder(), "1.8")
    data2 = make_card_data(again, Holder(), "1.8")
    assert data1.auth_cert == data2.auth_cert
    assert (tmp_path / "ca" / "root.crt.pem").is_file()
    (tmp_path / "ca" / "ocsp.key.pem").unlink()
    fresh = TestPki.load_or_create(tmp_path)
    assert fresh.root.cert != first.root.cert
    other_url = TestPki.load_or_create(tmp_path, ocsp_url="http://127.0.0.1:9/ocsp")
    cert = x509.load_der_x509_certificate(make_card_data(other_url, Holder(), "1.8").auth_cert)
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert aia[0].access_location.value == "http://127.0.0.1:9/ocsp"


def test_holder_json_round_trip() -> None:
    holder = Holder(surname="Peeters", language="fr", sex="M")
    assert Holder.from_json(holder.to_json()) == holder
    with pytest.raises(ValueError):
        Holder.from_json({"nickname": "x"})
    with pytest.raises(ValueError):
        Holder(national_number="123")


# ------------------------------------------------------------------ faults


def test_faults(card18: BeidCard) -> None:
    conn = VirtualConnection(card18)
    card18.faults.fail_next(0x6F00, count=2)
    assert conn.send_and_receive(bytes.fromhex("80E400001C")) == (b"", 0x6F00)
    assert conn.send_and_receive(bytes.fromhex("80E400001C")) == (b"", 0x6F00)
    assert conn.send_and_receive(bytes.fromhex("80E400001C"))[1] == 0x9000

    card18.faults.fail_next(0x6581, ins=0xB0)
    select_path(card18, "DF014031")
    assert tx(card18, "00B0000001")[1] == 0x6581
    assert tx(card18, "00B0000001")[1] == 0x9000

    card18.faults.garble_next(payload=b"\x01\x02\x03")
    assert card18.process(bytes.fromhex("80E400001C")) == b"\x01\x02\x03"

    card18.faults.remove_next(ins=0x20)
    assert card18.faults.pending == 1
    ok(card18, "80E400001C")
    with pytest.raises(CardRemovedError):
        conn.send_and_receive(bytes.fromhex("00200001"))
    assert card18.faults.pending == 0

    from eid_emulator.vpcd import REMOVE

    card18.faults.remove_next()
    assert card18.faults.vpcd_hook(bytes.fromhex("00200001")) is REMOVE
    assert card18.faults.vpcd_hook(bytes.fromhex("00200001")) is None
