"""Belgian eID identity files: simple TLV, birth dates, every tag, signature checks."""

from __future__ import annotations

import base64
import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from agent.cards.beid_identity import (
    Address,
    BeidIdentity,
    Identity,
    IdentitySignatureError,
    Sex,
    SpecialStatus,
    parse_birth_date,
    verify_identity_files,
)
from agent.errors import BadResponseError
from agent.smartcard.tlv import der_length, encode_simple_tlv, iter_ber, parse_simple_tlv, trim_der
from agent.ws.identity import identity_json

# -- TLV ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "encoded"),
    [(0, "00"), (1, "01"), (254, "FE"), (255, "FF00"), (300, "FF2D"), (509, "FFFE"),
     (510, "FFFF00"), (600, "FFFF5A")],
)  # fmt: skip
def test_simple_tlv_length_runs(length: int, encoded: str) -> None:
    value = bytes(i % 251 + 1 for i in range(length))
    item = encode_simple_tlv(0x35, value)
    assert item[1 : 1 + len(encoded) // 2] == bytes.fromhex(encoded)
    assert parse_simple_tlv(item) == [(0x35, value)]


def test_simple_tlv_ignores_zero_padding_and_keeps_version_tag() -> None:
    data = (
        encode_simple_tlv(0x00, b"\x00\x01")
        + encode_simple_tlv(0x01, b"Rue 1")
        + encode_simple_tlv(0x14, b"")
        + bytes(40)
    )
    assert parse_simple_tlv(data) == [(0x00, b"\x00\x01"), (0x01, b"Rue 1"), (0x14, b"")]
    # A 00 tag after higher tags is padding, even if something non-zero follows.
    assert parse_simple_tlv(encode_simple_tlv(0x02, b"1000") + b"\x00\x00\x00\x05") == [(0x02, b"1000")]


def test_simple_tlv_truncated() -> None:
    with pytest.raises(BadResponseError):
        parse_simple_tlv(bytes.fromhex("0105 4142"))
    with pytest.raises(BadResponseError):
        parse_simple_tlv(bytes.fromhex("01FFFF"))


def test_der_helpers() -> None:
    assert der_length(bytes.fromhex("3003020101")) == 5
    assert der_length(bytes.fromhex("308201F4")) == 4 + 500
    assert trim_der(bytes.fromhex("3003020101 0000".replace(" ", ""))) == bytes.fromhex("3003020101")
    with pytest.raises(BadResponseError):
        trim_der(bytes.fromhex("300502"))
    with pytest.raises(BadResponseError):
        der_length(bytes.fromhex("3080"))
    assert list(iter_ber(bytes.fromhex("5F2001 41 8002 0102 0000"))) == [
        (0x5F20, b"A"),
        (0x80, b"\x01\x02"),
    ]


# -- birth dates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("01 JAN 1980", (1, 1, 1980)),
        ("15 FEV 1975", (15, 2, 1975)),
        ("15 FEB 1975", (15, 2, 1975)),
        ("15 MARS 1975", (15, 3, 1975)),
        ("15 MAAR 1975", (15, 3, 1975)),
        ("15.MÄR.1975", (15, 3, 1975)),
        ("03 AVR 2001", (3, 4, 2001)),
        ("03 MEI 2001", (3, 5, 2001)),
        ("03.MAI.2001", (3, 5, 2001)),
        ("30 JUIN 1999", (30, 6, 1999)),
        ("14 JUIL 1999", (14, 7, 1999)),
        ("14 AOUT 1999", (14, 8, 1999)),
        ("14 AUG 1999", (14, 8, 1999)),
        ("09 SEPT 1960", (9, 9, 1960)),
        ("09 SEP 1960", (9, 9, 1960)),
        ("31 OCT 1960", (31, 10, 1960)),
        ("31 OKT 1960", (31, 10, 1960)),
        ("30.NOV.1960", (30, 11, 1960)),
        ("24 DEC 2010", (24, 12, 2010)),
        ("24.DEZ.2010", (24, 12, 2010)),
        ("     1953", (None, None, 1953)),  # day and month blank
        ("   JAN 1953", (None, 1, 1953)),  # day blank
        ("12      1953", (12, None, 1953)),  # month blank
        ("", (None, None, None)),
    ],
)
def test_birth_dates(raw: str, expected: tuple[int | None, int | None, int | None]) -> None:
    assert parse_birth_date(raw) == expected


def test_birth_date_in_identity_file_utf8_and_partial() -> None:
    full = Identity.parse(encode_simple_tlv(0x0C, "15.MÄR.1975".encode()))
    assert full.birth_date == datetime.date(1975, 3, 15)
    assert full.birth_date_raw == "15.MÄR.1975"
    assert len("15.MÄR.1975".encode()) == 12  # Ä takes two bytes
    partial = Identity.parse(encode_simple_tlv(0x0C, b"     1953"))
    assert partial.birth_date is None
    assert partial.birth_year == 1953
    assert partial.birth_date_raw == "     1953"


# -- every tag ---------------------------------------------------------------------------

PHOTO = b"\xff\xd8\xff\xe0 fake jpeg \xff\xd9"
BASIC_KEY = bytes.fromhex("3076301006072A8648CE3D020106052B81040022036200") + bytes(98)


def identity_file(photo_hash: bytes, extra: bytes = b"", tag_1a: bool = True) -> bytes:
    items = [
        (0x00, b"\x00\x05"),
        (0x01, b"592000155079"),
        (0x02, bytes.fromhex("534C47904043000038E977A912924251")),
        (0x03, b"01.02.2021"),
        (0x04, b"01.02.2031"),
        (0x05, "Liège".encode()),
        (0x06, b"71071513731"),
        (0x07, "Van den Bössche".encode()),
        (0x08, b"Alice Marie"),
        (0x09, b"J"),
        (0x0A, b"Belg"),
        (0x0B, b"Antwerpen"),
        (0x0C, b"15 JUL 1971"),
        (0x0D, b"V"),
        (0x0E, b"Baron"),
        (0x0F, b"1"),
        (0x10, b"3"),
        (0x11, photo_hash),
        (0x12, b"01"),
        (0x13, b"2"),
        (0x14, b""),
        (0x15, b"01.01.2020-SY"),
        (0x16, b"8"),
        (0x17, b"0123.456.789"),
        (0x18, b"0987.654.321"),
        (0x19, b"RF-123456"),
        (0x1A, hashlib.sha384(BASIC_KEY).digest() if tag_1a else None),
        (0x1B, b"B"),
        (0x1C, b"C"),
        (0x1D, b"D"),
        (0x1E, b"K"),
        (0x1F, b"05.06.2019"),
    ]
    body = b"".join(encode_simple_tlv(tag, value) for tag, value in items if value is not None)
    return body + extra


ADDRESS = (
    encode_simple_tlv(0x00, b"\x00\x01")
    + encode_simple_tlv(0x01, "Rue de l'Été 12".encode())
    + encode_simple_tlv(0x02, b"1000")
    + encode_simple_tlv(0x03, b"Bruxelles")
)
ADDRESS_FILE = ADDRESS + bytes(117 - len(ADDRESS))


def test_all_identity_tags() -> None:
    ident = Identity.parse(identity_file(hashlib.sha384(PHOTO).digest(), b"\x20\x02ZZ"))
    assert ident.file_version == b"\x00\x05"
    assert ident.card_number == "592000155079"
    assert ident.chip_number.hex().upper() == "534C47904043000038E977A912924251"
    assert ident.validity_begin == datetime.date(2021, 2, 1)
    assert ident.validity_end == datetime.date(2031, 2, 1)
    assert ident.validity_end_raw == "01.02.2031"
    assert ident.card_delivery_municipality == "Liège"
    assert ident.national_number == "71071513731"
    assert ident.formatted_national_number == "71.07.15-137.31"
    assert ident.surname == "Van den Bössche"
    assert ident.given_names == "Alice Marie"
    assert ident.third_given_name_initial == "J"
    assert ident.nationality == "Belg"
    assert ident.birth_location == "Antwerpen"
    assert ident.birth_date == datetime.date(1971, 7, 15)
    assert ident.sex is Sex.FEMALE and ident.sex_raw == "V"
    assert ident.noble_condition == "Baron"
    assert ident.document_type == 1 and ident.document_type_name == "eID"
    assert ident.special_status is SpecialStatus.WHITE_CANE_AND_EXTENDED_MINORITY
    assert ident.photo_hash == hashlib.sha384(PHOTO).digest()
    assert ident.duplicate == "01"
    assert ident.special_organisation == "2"
    assert ident.member_of_family is True
    assert ident.date_and_country_of_protection == "01.01.2020-SY"
    assert ident.work_permit_mention == "8"
    assert ident.employer_vat_1 == "0123.456.789"
    assert ident.employer_vat_2 == "0987.654.321"
    assert ident.regional_file_number == "RF-123456"
    assert ident.basic_key_hash == hashlib.sha384(BASIC_KEY).digest()
    assert (ident.brexit_mention_1, ident.brexit_mention_2) == ("B", "C")
    assert (ident.card_a_mention_1, ident.card_a_mention_2) == ("D", "K")
    assert ident.eu_registration_date == datetime.date(2019, 6, 5)
    assert ident.extra == ((0x20, b"ZZ"),)


def test_minimal_identity_defaults() -> None:
    ident = Identity.parse(encode_simple_tlv(0x01, b"1") + encode_simple_tlv(0x0D, b"M"))
    assert ident.sex is Sex.MALE
    assert ident.member_of_family is False
    assert ident.special_status is None and ident.basic_key_hash is None
    assert Sex.from_card("W") is Sex.FEMALE and Sex.from_card("?") is None


def test_address_and_json() -> None:
    address = Address.parse(ADDRESS_FILE)
    assert address.street_and_number == "Rue de l'Été 12"
    assert (address.zip_code, address.municipality) == ("1000", "Bruxelles")
    ident = Identity.parse(identity_file(hashlib.sha384(PHOTO).digest()))
    result = identity_json(BeidIdentity(ident, address, PHOTO, "AB"))
    assert base64.b64decode(result["photo"]) == PHOTO
    assert result["identity"]["birthDate"] == "1971-07-15"
    assert result["identity"]["sex"] == "female"
    assert result["identity"]["memberOfFamily"] is True
    assert result["identity"]["documentTypeName"] == "eID"
    assert result["address"]["zipCode"] == "1000"
    assert result["cardSerial"] == "AB"


# -- signatures --------------------------------------------------------------------------


def _cert(subject: str, key, issuer_key, issuer: str) -> bytes:
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(issuer_key, hashes.SHA384() if isinstance(issuer_key, ec.EllipticCurvePrivateKey)
              else hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.DER)


EC_ROOT = ec.generate_private_key(ec.SECP384R1())
EC_RRN = ec.generate_private_key(ec.SECP384R1())
RSA_RRN = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_ROOT_CERT = _cert("Root", EC_ROOT, EC_ROOT, "Root")
EC_RRN_CERT = _cert("RRN", EC_RRN, EC_ROOT, "Root")
RSA_RRN_CERT = _cert("RRN", RSA_RRN, EC_ROOT, "Root")


def ec_files(photo: bytes = PHOTO) -> dict[str, bytes]:
    ident = identity_file(hashlib.sha384(photo).digest())
    sig_id = EC_RRN.sign(ident, ec.ECDSA(hashes.SHA384()))
    sig_id_file = sig_id + bytes(104 - len(sig_id))
    sig_addr = EC_RRN.sign(ADDRESS + sig_id_file, ec.ECDSA(hashes.SHA384()))
    return dict(
        rrn_certificate=EC_RRN_CERT,
        identity_file=ident,
        identity_signature=sig_id_file,
        address_file=ADDRESS_FILE,
        address_signature=sig_addr + bytes(104 - len(sig_addr)),
        photo=PHOTO,
        basic_key_file=BASIC_KEY,
        root_certificate=EC_ROOT_CERT,
    )


def test_ec_signatures_verify() -> None:
    verify_identity_files(**ec_files())


@pytest.mark.parametrize(
    "field",
    ["identity_file", "identity_signature", "address_file", "address_signature", "photo",
     "basic_key_file"],
)  # fmt: skip
def test_tampering_is_detected(field: str) -> None:
    files = ec_files()
    value = bytearray(files[field])
    index = {"identity_file": 30, "address_file": 10, "photo": 3, "basic_key_file": 40}.get(field, 20)
    value[index] ^= 0x01
    files[field] = bytes(value)
    with pytest.raises(IdentitySignatureError):
        verify_identity_files(**files)


def test_rrn_certificate_must_come_from_the_root() -> None:
    other_root = ec.generate_private_key(ec.SECP384R1())
    files = ec_files()
    files["root_certificate"] = _cert("Root", other_root, other_root, "Root")
    with pytest.raises(IdentitySignatureError, match="root"):
        verify_identity_files(**files)


@pytest.mark.parametrize(
    ("photo_hash", "signature_hash"),
    [
        (hashlib.sha256, hashes.SHA256()),
        (hashlib.sha1, hashes.SHA1()),
        (hashlib.sha1, hashes.SHA256()),  # eid-mw's retry: re-signed CA3 cards
    ],
)
def test_rsa_signatures(photo_hash, signature_hash) -> None:
    ident = identity_file(photo_hash(PHOTO).digest(), tag_1a=False)
    sig_id = RSA_RRN.sign(ident, padding.PKCS1v15(), signature_hash)
    sig_addr = RSA_RRN.sign(ADDRESS + sig_id, padding.PKCS1v15(), signature_hash)
    files = dict(
        rrn_certificate=RSA_RRN_CERT,
        identity_file=ident,
        identity_signature=sig_id,
        address_file=ADDRESS_FILE,
        address_signature=sig_addr,
        photo=PHOTO,
    )
    verify_identity_files(**files)
    files["address_signature"] = RSA_RRN.sign(ADDRESS_FILE + sig_id, padding.PKCS1v15(),
                                              signature_hash)  # fmt: skip
    with pytest.raises(IdentitySignatureError, match="address"):
        verify_identity_files(**files)
