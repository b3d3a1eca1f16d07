"""Belgian eID identity data: the ID, address and photo files, parsed and verified.

Pure functions and frozen dataclasses, no card I/O (the driver in :mod:`agent.cards.beid`
reads the files). Tables and rules: the reference digest ``beid-card.md`` §4 (IDF5, C17,
C18, eid-mw's ``dob.cpp`` and ``certhelpers.c``).

* :class:`Identity` has one field per tag of EF(ID#RN) 4031 (tags 00..1F), unknown tags kept
  in ``extra``; :class:`Address` the tags of EF(ID#Address) 4033.
* :func:`parse_birth_date` reads ``DD mmmm YYYY`` / ``DD.mmm.YYYY`` with French, Dutch and
  German month abbreviations, tolerating blank day and month (partial dates).
* :func:`verify_identity_files` checks the RRN signatures over identity and address, the
  photo hash and (applet 1.8) the hash of the card's basic public key, raising
  :class:`IdentitySignatureError` on any mismatch.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.errors import BadResponseError, CardError
from agent.smartcard.tlv import parse_simple_tlv, trim_der

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

logger = logging.getLogger(__name__)

__all__ = [
    "IdentitySignatureError",
    "Sex",
    "SpecialStatus",
    "DOCUMENT_TYPES",
    "Identity",
    "Address",
    "BeidIdentity",
    "parse_birth_date",
    "parse_card_date",
    "verify_identity_files",
    "check_basic_key_hash",
]


class IdentitySignatureError(CardError):
    """The identity data does not verify: RRN signature, photo hash or card key hash."""


class Sex(enum.Enum):
    MALE = "M"
    FEMALE = "F"

    @classmethod
    def from_card(cls, raw: str) -> Sex | None:
        """``M`` male; ``F``/``V``/``W`` female (French, Dutch, German)."""
        code = raw.strip().upper()
        if code == "M":
            return cls.MALE
        if code in ("F", "V", "W"):
            return cls.FEMALE
        return None


class SpecialStatus(enum.IntEnum):
    NONE = 0
    WHITE_CANE = 1
    EXTENDED_MINORITY = 2
    WHITE_CANE_AND_EXTENDED_MINORITY = 3
    YELLOW_CANE = 4
    YELLOW_CANE_AND_EXTENDED_MINORITY = 5


# Tag 0x0F, IDF5 v5.
DOCUMENT_TYPES: dict[int, str] = {
    1: "eID",
    6: "Kids ID",
    7: "Bootstrap card",
    8: "Habilitation card",
    11: "A card",
    12: "B card",
    13: "C card",
    14: "D card",
    15: "E card",
    16: "E+ card",
    17: "F card",
    18: "F+ card",
    19: "H card",
    20: "I card",
    21: "J card",
    22: "M card",
    23: "N card",
    27: "K card",
    28: "L card",
    31: "EU card",
    32: "EU+ card",
    33: "A card (Regulation 1030/2002)",
    34: "B card (Regulation 1030/2002)",
    35: "F card (Regulation 1030/2002)",
    36: "F+ card (Regulation 1030/2002)",
    61: "Kids EU card",
    62: "Kids EU+ card",
    63: "Kids A card",
    64: "Kids B card",
    65: "Kids K card",
    66: "Kids L card",
    67: "Kids F card",
    68: "Kids F+ card",
    69: "Kids M card",
}

# Birth-date month abbreviations (FR, NL, DE), plus accented and common variants.
_MONTHS: dict[str, int] = {
    "JAN": 1,
    "FEV": 2, "FÉV": 2, "FEB": 2,
    "MARS": 3, "MAAR": 3, "MÄR": 3, "MAR": 3, "MRZ": 3,
    "AVR": 4, "APR": 4,
    "MAI": 5, "MEI": 5,
    "JUIN": 6, "JUN": 6,
    "JUIL": 7, "JUL": 7,
    "AOUT": 8, "AOÛT": 8, "AOU": 8, "AOÛ": 8, "AUG": 8,
    "SEPT": 9, "SEP": 9,
    "OCT": 10, "OKT": 10,
    "NOV": 11,
    "DEC": 12, "DÉC": 12, "DEZ": 12,
}  # fmt: skip

_YEAR = re.compile(r"(\d{4})\s*$")


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²", which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def parse_birth_date(raw: str) -> tuple[int | None, int | None, int | None]:
    """Split a card birth date into ``(day, month, year)``, ``None`` for blank parts.

    Follows eid-mw's reading: the day is the first two characters; the month is the token
    after the first separator (``.`` if the string has one, else a space); the year is
    the four digits at the end. ``"01 JAN 1980"``, ``"01.MÄR.1980"``, ``"   1980"``.
    """
    text = raw.replace("\x00", "")
    day_text = text[:2].strip()
    day = int(day_text) if _digits(day_text) and 0 < int(day_text) <= 31 else None
    separator = "." if "." in text else " "
    start = text.find(separator, 2)
    month: int | None = None
    if start >= 0:
        end = text.find(separator, start + 1)
        token = text[start + 1 : end if end >= 0 else len(text)].strip().upper()
        if _digits(token):
            month = int(token) if 1 <= int(token) <= 12 else None
        else:
            month = _MONTHS.get(token.rstrip("."))
    match = _YEAR.search(text)
    year = int(match.group(1)) if match else None
    return day, month, year


def parse_card_date(raw: str) -> datetime.date | None:
    """A ``DD.MM.YYYY`` date (validity, registration), or ``None`` if blank or malformed."""
    try:
        return datetime.datetime.strptime(raw.strip(), "%d.%m.%Y").date()
    except ValueError:
        return None


def _birth_date(raw: str) -> datetime.date | None:
    day, month, year = parse_birth_date(raw)
    if day is None or month is None or year is None:
        return None
    try:
        return datetime.date(year, month, day)
    except ValueError:
        return None


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _int_or_none(raw: str) -> int | None:
    text = raw.strip()
    return int(text) if _digits(text) else None


# Tag -> field name for the plain text fields of the ID file.
_ID_TEXT_TAGS: dict[int, str] = {
    0x01: "card_number",
    0x05: "card_delivery_municipality",
    0x06: "national_number",
    0x07: "surname",
    0x08: "given_names",
    0x09: "third_given_name_initial",
    0x0A: "nationality",
    0x0B: "birth_location",
    0x0E: "noble_condition",
    0x12: "duplicate",
    0x13: "special_organisation",
    0x15: "date_and_country_of_protection",
    0x16: "work_permit_mention",
    0x17: "employer_vat_1",
    0x18: "employer_vat_2",
    0x19: "regional_file_number",
    0x1B: "brexit_mention_1",
    0x1C: "brexit_mention_2",
    0x1D: "card_a_mention_1",
    0x1E: "card_a_mention_2",
}
_ID_RAW_TAGS = {0x03, 0x04, 0x0C, 0x0D, 0x0F, 0x10, 0x1F}
_ID_BINARY_TAGS = {0x00: "file_version", 0x02: "chip_number", 0x11: "photo_hash"}
TAG_PHOTO_HASH = 0x11
TAG_BASIC_KEY_HASH = 0x1A
TAG_MEMBER_OF_FAMILY = 0x14


@dataclass(frozen=True)
class Identity:
    """EF(ID#RN) 4031, one field per tag (IDF5 §1). Text is as on the card."""

    file_version: bytes | None = None  # 00
    card_number: str = ""  # 01
    chip_number: bytes = b""  # 02, = GET CARD DATA serial
    validity_begin: datetime.date | None = None  # 03
    validity_begin_raw: str = ""
    validity_end: datetime.date | None = None  # 04
    validity_end_raw: str = ""
    card_delivery_municipality: str = ""  # 05
    national_number: str = ""  # 06, YYMMDDxxxcc
    surname: str = ""  # 07
    given_names: str = ""  # 08, first two given names
    third_given_name_initial: str = ""  # 09
    nationality: str = ""  # 0A
    birth_location: str = ""  # 0B
    birth_date: datetime.date | None = None  # 0C, None when blank or partial
    birth_date_raw: str = ""
    birth_year: int | None = None
    sex: Sex | None = None  # 0D
    sex_raw: str = ""
    noble_condition: str = ""  # 0E
    document_type: int | None = None  # 0F, see DOCUMENT_TYPES
    document_type_raw: str = ""
    special_status: SpecialStatus | None = None  # 10
    special_status_raw: str = ""
    photo_hash: bytes = b""  # 11
    duplicate: str = ""  # 12
    special_organisation: str = ""  # 13
    member_of_family: bool = False  # 14, presence means true
    date_and_country_of_protection: str = ""  # 15
    work_permit_mention: str = ""  # 16
    employer_vat_1: str = ""  # 17
    employer_vat_2: str = ""  # 18
    regional_file_number: str = ""  # 19
    basic_key_hash: bytes | None = None  # 1A, SHA-384 of 4040 (applet 1.8)
    brexit_mention_1: str = ""  # 1B
    brexit_mention_2: str = ""  # 1C
    card_a_mention_1: str = ""  # 1D
    card_a_mention_2: str = ""  # 1E
    eu_registration_date: datetime.date | None = None  # 1F
    eu_registration_date_raw: str = ""
    extra: tuple[tuple[int, bytes], ...] = field(default_factory=tuple)  # unknown tags

    @classmethod
    def parse(cls, data: bytes) -> Identity:
        """Parse the content of EF(ID#RN).

        Raises:
            BadResponseError: the TLV structure is broken.
        """
        values: dict[str, Any] = {}
        extra: list[tuple[int, bytes]] = []
        raw: dict[int, str] = {}
        for tag, value in parse_simple_tlv(data):
            if tag in _ID_TEXT_TAGS:
                values[_ID_TEXT_TAGS[tag]] = _text(value)
            elif tag in _ID_BINARY_TAGS:
                values[_ID_BINARY_TAGS[tag]] = value
            elif tag in _ID_RAW_TAGS:
                raw[tag] = _text(value)
            elif tag == TAG_MEMBER_OF_FAMILY:
                values["member_of_family"] = True
            elif tag == TAG_BASIC_KEY_HASH:
                values["basic_key_hash"] = value
            else:
                extra.append((tag, value))
        if 0x03 in raw:
            values.update(validity_begin_raw=raw[0x03], validity_begin=parse_card_date(raw[0x03]))
        if 0x04 in raw:
            values.update(validity_end_raw=raw[0x04], validity_end=parse_card_date(raw[0x04]))
        if 0x0C in raw:
            values.update(
                birth_date_raw=raw[0x0C],
                birth_date=_birth_date(raw[0x0C]),
                birth_year=parse_birth_date(raw[0x0C])[2],
            )
        if 0x0D in raw:
            values.update(sex_raw=raw[0x0D], sex=Sex.from_card(raw[0x0D]))
        if 0x0F in raw:
            values.update(document_type_raw=raw[0x0F], document_type=_int_or_none(raw[0x0F]))
        if 0x10 in raw:
            code = _int_or_none(raw[0x10])
            status = SpecialStatus(code) if code in {s.value for s in SpecialStatus} else None
            values.update(special_status_raw=raw[0x10], special_status=status)
        if 0x1F in raw:
            values.update(
                eu_registration_date_raw=raw[0x1F],
                eu_registration_date=parse_card_date(raw[0x1F]),
            )
        return cls(extra=tuple(extra), **values)

    @property
    def document_type_name(self) -> str | None:
        return None if self.document_type is None else DOCUMENT_TYPES.get(self.document_type)

    @property
    def formatted_national_number(self) -> str:
        """``YY.MM.DD-XXX.CC`` as eid-mw shows it."""
        n = self.national_number
        if len(n) != 11 or not n.isdigit():
            return n
        return f"{n[0:2]}.{n[2:4]}.{n[4:6]}-{n[6:9]}.{n[9:11]}"


@dataclass(frozen=True)
class Address:
    """EF(ID#Address) 4033 (IDF5 §2)."""

    file_version: bytes | None = None  # 00
    street_and_number: str = ""  # 01
    zip_code: str = ""  # 02
    municipality: str = ""  # 03
    extra: tuple[tuple[int, bytes], ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, data: bytes) -> Address:
        values: dict[str, Any] = {}
        extra: list[tuple[int, bytes]] = []
        names = {0x01: "street_and_number", 0x02: "zip_code", 0x03: "municipality"}
        for tag, value in parse_simple_tlv(data):
            if tag == 0x00:
                values["file_version"] = value
            elif tag in names:
                values[names[tag]] = _text(value)
            else:
                extra.append((tag, value))
        return cls(extra=tuple(extra), **values)


@dataclass(frozen=True)
class BeidIdentity:
    """What :meth:`BeidSession.read_identity` returns: all of it verified."""

    identity: Identity
    address: Address
    photo: bytes | None  # JPEG, None when not read
    card_serial: str = ""


_PHOTO_HASHES = {20: hashlib.sha1, 32: hashlib.sha256, 48: hashlib.sha384}


def _rsa_hashes(photo_hash_length: int) -> list[hashes.HashAlgorithm]:
    """Hash choice for RSA data signatures (eid-mw ``verify_once``): by photo-hash length,
    with a SHA-256 retry after SHA-1 ("some CA4 cards are re-signed CA3 ones")."""
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 - see verify_identity_files

    if photo_hash_length == 48:
        return [hashes.SHA384()]
    if photo_hash_length == 32:
        return [hashes.SHA256()]
    return [hashes.SHA1(), hashes.SHA256()]  # noqa: S303 - the card's own scheme


def _verify_rrn_signature(
    rrn_cert: x509.Certificate, data: bytes, signature: bytes, photo_hash_length: int, what: str
) -> None:
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: PLC0415

    key = rrn_cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(trim_der(signature), data, ec.ECDSA(hashes.SHA384()))
            return
        if isinstance(key, rsa.RSAPublicKey):
            raw = signature[: (key.key_size + 7) // 8]
            for algorithm in _rsa_hashes(photo_hash_length):
                try:
                    key.verify(raw, data, padding.PKCS1v15(), algorithm)
                    return
                except InvalidSignature:
                    continue
            raise InvalidSignature
    except (InvalidSignature, BadResponseError, ValueError) as exc:
        raise IdentitySignatureError(f"the {what} signature does not verify") from exc
    raise IdentitySignatureError(f"unsupported RRN key type {type(key).__name__}")


def check_basic_key_hash(expected: bytes | None, basic_key_file: bytes) -> None:
    """SHA-384 of EF(PuK#1 Basic) 4040 (as read, or trimmed to its DER) must be ``expected``
    (ID tag 0x1A).

    Raises:
        IdentitySignatureError: no expected hash, or a mismatch.
    """
    candidates = {hashlib.sha384(basic_key_file).digest()}
    try:
        candidates.add(hashlib.sha384(trim_der(basic_key_file)).digest())
    except BadResponseError:
        pass
    if expected is None or expected not in candidates:
        raise IdentitySignatureError("the card key (4040) does not match its hash")


def verify_identity_files(
    *,
    rrn_certificate: bytes,
    identity_file: bytes,
    identity_signature: bytes,
    address_file: bytes,
    address_signature: bytes,
    photo: bytes | None = None,
    basic_key_file: bytes | None = None,
    root_certificate: bytes | None = None,
) -> None:
    """Check the card's data signatures as eid-mw does (reference §4.5).

    Args:
        rrn_certificate: DER of 503C.
        identity_file, identity_signature: 4031 and 4032 as read.
        address_file, address_signature: 4033 and 4034 as read (zero padding included).
        photo: 4035, checked against tag 0x11 when given.
        basic_key_file: 4040, checked against tag 0x1A when the ID file has that tag.
        root_certificate: DER of 503B; when given, the RRN certificate must be signed by it.

    Raises:
        IdentitySignatureError: anything does not verify.
    """
    # cryptography is imported only here, when a card's identity is read: the resident agent
    # identifies cards and builds tokens without it (agent.smartcard.certinfo).
    from cryptography import x509  # noqa: PLC0415
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

    try:
        rrn = x509.load_der_x509_certificate(rrn_certificate)
    except ValueError as exc:
        raise IdentitySignatureError("the RRN certificate cannot be parsed") from exc
    if root_certificate is not None:
        try:
            rrn.verify_directly_issued_by(x509.load_der_x509_certificate(root_certificate))
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise IdentitySignatureError("the RRN certificate is not issued by the root") from exc
    tags = dict(parse_simple_tlv(identity_file))
    photo_hash = tags.get(TAG_PHOTO_HASH, b"")
    _verify_rrn_signature(rrn, identity_file, identity_signature, len(photo_hash), "identity")
    signed_address = address_file.rstrip(b"\x00") + identity_signature
    _verify_rrn_signature(rrn, signed_address, address_signature, len(photo_hash), "address")
    if photo is not None:
        hash_function = _PHOTO_HASHES.get(len(photo_hash))
        if hash_function is None:
            raise IdentitySignatureError(f"photo hash of unexpected length {len(photo_hash)}")
        if hash_function(photo).digest() != photo_hash:
            raise IdentitySignatureError("the photo does not match its hash in the ID file")
    expected_key_hash = tags.get(TAG_BASIC_KEY_HASH)
    if expected_key_hash is not None and basic_key_file is not None:
        check_basic_key_hash(expected_key_hash, basic_key_file)
    logger.debug("identity, address%s signatures verified", " and photo" if photo else "")
