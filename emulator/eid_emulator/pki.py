"""A test PKI for virtual Belgian eID cards, persisted in a data folder.

Hierarchy (one EC hierarchy for both applets, as on re-keyed 1.7 cards, see ADD17 in
beid-card.md section 3):

* ``Belgium Root CA Test`` (EC P-384, self-signed) issues
  * ``Citizen CA Test`` (EC P-384, pathlen 0), which issues the cards' authentication and
    signing certificates (P-384 keys on 1.8 cards, RSA-2048 keys on 1.7 cards) and the
    test OCSP responder certificate (EKU OCSPSigning, ocsp-nocheck);
  * the ``RRN`` certificates: one EC P-384 (data signatures: ECDSA SHA-384, DER) and one
    RSA-2048 (data signatures: PKCS#1 v1.5 SHA-256). 1.8 cards use the EC RRN, 1.7 cards
    the RSA RRN unless ``rrn="ec"`` is asked for.

Data folder layout (PEM; keys unencrypted PKCS#8; reused on the next run, the CA set is
regenerated as a whole when any file of it is missing)::

    <folder>/ca/root.{crt,key}.pem
    <folder>/ca/citizen-ca.{crt,key}.pem
    <folder>/ca/rrn-ec.{crt,key}.pem
    <folder>/ca/rrn-rsa.{crt,key}.pem
    <folder>/ca/ocsp.{crt,key}.pem
    <folder>/cards/<applet>-<national number>-<holder hash>/
        holder.json  auth.{crt,key}.pem  sign.{crt,key}.pem  basic.key.pem

Use :meth:`TestPki.load_or_create` then :func:`make_card_data`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from agent.smartcard.tlv import encode_simple_tlv
from eid_emulator.beid import (
    PROFILES,
    BeidCardData,
    KeyKind,
    PrivateKey,
    basic_public_key_file,
    data_signature_file,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OCSP_URL",
    "Holder",
    "TestPki",
    "birth_date_text",
    "build_address_file",
    "build_identity_file",
    "make_card_data",
    "make_photo",
    "sign_data",
]

DEFAULT_OCSP_URL = "http://127.0.0.1:8080/ocsp"
ROOT_NAME = "Belgium Root CA Test"
CITIZEN_CA_NAME = "Citizen CA Test"
POLICY_AUTH = ObjectIdentifier("2.16.56.12.1.1.2.2")
POLICY_SIGN = ObjectIdentifier("2.16.56.12.1.1.2.1")
POLICY_RRN = ObjectIdentifier("2.16.56.12.1.1.4")
OID_QC_STATEMENTS = ObjectIdentifier("1.3.6.1.5.5.7.1.3")
# qcStatements: QcCompliance (0.4.0.1862.1.1) and QcSSCD (0.4.0.1862.1.4).
QC_STATEMENTS_DER = bytes.fromhex("3014" "3008060604008E460101" "3008060604008E460104")

MONTHS = {
    "fr": ("JAN", "FEV", "MARS", "AVR", "MAI", "JUIN", "JUIL", "AOUT", "SEPT", "OCT", "NOV",
           "DEC"),
    "nl": ("JAN", "FEB", "MAAR", "APR", "MEI", "JUN", "JUL", "AUG", "SEP", "OKT", "NOV", "DEC"),
    "de": ("JAN", "FEB", "MÄR", "APR", "MAI", "JUN", "JUL", "AUG", "SEP", "OKT", "NOV", "DEZ"),
}
FEMALE = {"fr": "F", "nl": "V", "de": "W"}


# --------------------------------------------------------------------------- holder


@dataclass(frozen=True)
class Holder:
    """The card holder and the card's own identity fields."""

    given_names: str = "Alice Geneviève"
    third_initial: str = ""
    surname: str = "Specimen"
    national_number: str = "85073003328"
    birth_date: dt.date = dt.date(1985, 7, 30)
    birth_place: str = "Brussel"
    sex: str = "F"  # "M" or "F"; written on the card in the language's letter
    nationality: str = "Belg"
    street: str = "Wetstraat 16"
    zip_code: str = "1000"
    municipality: str = "Brussel"
    card_number: str = "592123456789"
    validity_begin: dt.date = dt.date(2024, 1, 15)
    validity_end: dt.date = dt.date(2034, 1, 15)
    delivery_municipality: str = "Brussel"
    document_type: str = "1"
    special_status: str = "0"
    noble_condition: str = ""
    duplicate: str = ""
    language: str = "nl"  # nl, fr or de: birth date month names and the female letter
    has_signing_certificate: bool = True
    pin: str = "1234"

    def __post_init__(self) -> None:
        if self.language not in MONTHS:
            raise ValueError("language is nl, fr or de")
        if self.sex not in ("M", "F"):
            raise ValueError("sex is M or F")
        if len(self.national_number) != 11 or not self.national_number.isdigit():
            raise ValueError("the national number is 11 digits")

    @property
    def first_given_name(self) -> str:
        return self.given_names.split()[0] if self.given_names.split() else ""

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, dt.date):
                out[key] = value.isoformat()
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Holder:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(obj) - set(fields)
        if unknown:
            raise ValueError(f"unknown holder fields: {sorted(unknown)}")
        values = dict(obj)
        for name in ("birth_date", "validity_begin", "validity_end"):
            if isinstance(values.get(name), str):
                values[name] = dt.date.fromisoformat(values[name])
        return cls(**values)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:8]


def birth_date_text(date: dt.date, language: str) -> str:
    """The card's birth date text: ``DD mmmm YYYY``, or ``DD.mmm.YYYY`` in German."""
    month = MONTHS[language][date.month - 1]
    sep = "." if language == "de" else " "
    return f"{date.day:02d}{sep}{month}{sep}{date.year:04d}"


# --------------------------------------------------------------------------- files


def _date(d: dt.date) -> bytes:
    return f"{d.day:02d}.{d.month:02d}.{d.year:04d}".encode()


def build_identity_file(
    holder: Holder,
    chip_serial: bytes,
    photo_hash: bytes,
    basic_key_hash: bytes | None,
) -> bytes:
    """EF(ID#RN) 4031: the tags of section 4.2 that apply, in ascending order.

    ``basic_key_hash`` (tag 0x1A, SHA-384 of file 4040) is given for 1.8 cards; those
    also carry the file structure version tag 0x00.
    """
    sex = "M" if holder.sex == "M" else FEMALE[holder.language]
    fields: list[tuple[int, bytes]] = []
    if basic_key_hash is not None:
        fields.append((0x00, b"\x00\x05"))
    fields += [
        (0x01, holder.card_number.encode()),
        (0x02, chip_serial),
        (0x03, _date(holder.validity_begin)),
        (0x04, _date(holder.validity_end)),
        (0x05, holder.delivery_municipality.encode()),
        (0x06, holder.national_number.encode()),
        (0x07, holder.surname.encode()),
        (0x08, holder.given_names.encode()),
        (0x09, holder.third_initial.encode()),
        (0x0A, holder.nationality.encode()),
        (0x0B, holder.birth_place.encode()),
        (0x0C, birth_date_text(holder.birth_date, holder.language).encode()),
        (0x0D, sex.encode()),
        (0x0E, holder.noble_condition.encode()),
        (0x0F, holder.document_type.encode()),
    ]
    if holder.special_status:
        fields.append((0x10, holder.special_status.encode()))
    fields.append((0x11, photo_hash))
    if holder.duplicate:
        fields.append((0x12, holder.duplicate.encode()))
    if basic_key_hash is not None:
        fields.append((0x1A, basic_key_hash))
    return b"".join(encode_simple_tlv(tag, value) for tag, value in fields)


def build_address_file(holder: Holder) -> bytes:
    """EF(ID#Address) 4033 without its zero padding (the card pads it to 117 bytes)."""
    return (
        encode_simple_tlv(0x01, holder.street.encode())
        + encode_simple_tlv(0x02, holder.zip_code.encode())
        + encode_simple_tlv(0x03, holder.municipality.encode())
    )


def make_photo(size: tuple[int, int] = (150, 195)) -> bytes:
    """A small baseline 8-bit grey JPEG with a face-like drawing."""
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("L", size, 235)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.25, height * 0.12, width * 0.75, height * 0.6), fill=170)
    draw.rectangle((width * 0.15, height * 0.65, width * 0.85, height), fill=90)
    draw.ellipse((width * 0.37, height * 0.3, width * 0.45, height * 0.36), fill=40)
    draw.ellipse((width * 0.55, height * 0.3, width * 0.63, height * 0.36), fill=40)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=60, progressive=False, optimize=False)
    return out.getvalue()


def sign_data(key: PrivateKey, data: bytes) -> bytes:
    """An RRN data signature: ECDSA SHA-384 DER, or RSA PKCS#1 v1.5 SHA-256."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA384()))
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


# --------------------------------------------------------------------------- keys and certs


def _new_key(kind: KeyKind) -> PrivateKey:
    if kind is KeyKind.EC:
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key


def _signing_hash(issuer_key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA384() if isinstance(issuer_key, ec.EllipticCurvePrivateKey) else (
        hashes.SHA256())


def _name(*attrs: tuple[ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def save(self, folder: Path, stem: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.key.pem").write_bytes(_key_pem(self.key))
        (folder / f"{stem}.crt.pem").write_bytes(
            self.cert.public_bytes(serialization.Encoding.PEM))

    @classmethod
    def load(cls, folder: Path, stem: str) -> Issued:
        cert = x509.load_pem_x509_certificate((folder / f"{stem}.crt.pem").read_bytes())
        return cls(cert, _load_key(folder / f"{stem}.key.pem"))

    @staticmethod
    def exists(folder: Path, stem: str) -> bool:
        return (folder / f"{stem}.key.pem").is_file() and (folder / f"{stem}.crt.pem").is_file()


def _builder(
    subject: x509.Name,
    issuer: Issued | None,
    public_key: Any,
    days: int = 0,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    end = not_after or start + dt.timedelta(days=days)
    issuer_name = issuer.cert.subject if issuer is not None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    return builder


def _key_usage(**flags: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


def _sign(builder: x509.CertificateBuilder, issuer_key: PrivateKey) -> x509.Certificate:
    return builder.sign(issuer_key, _signing_hash(issuer_key))


def _make_root() -> Issued:
    key = _new_key(KeyKind.EC)
    name = _name((NameOID.COUNTRY_NAME, "BE"), (NameOID.COMMON_NAME, ROOT_NAME))
    builder = (
        _builder(name, None, key.public_key(), days=20 * 365)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
    )
    return Issued(_sign(builder, key), key)


def _make_citizen_ca(root: Issued) -> Issued:
    key = _new_key(KeyKind.EC)
    name = _name(
        (NameOID.COUNTRY_NAME, "BE"), (NameOID.COMMON_NAME, CITIZEN_CA_NAME),
        (NameOID.SERIAL_NUMBER, "999901"),
    )
    builder = (
        _builder(name, root, key.public_key(), days=12 * 365)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(
                "2.5.29.32.0"), None)]), critical=False)
    )
    return Issued(_sign(builder, root.key), key)


def _make_rrn(root: Issued, kind: KeyKind) -> Issued:
    key = _new_key(kind)
    name = _name(
        (NameOID.COUNTRY_NAME, "BE"), (NameOID.ORGANIZATION_NAME, "RRN"),
        (NameOID.COMMON_NAME, "RRN"),
    )
    builder = (
        _builder(name, root, key.public_key(), days=12 * 365)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, content_commitment=True),
                       critical=True)
        .add_extension(x509.CertificatePolicies([x509.PolicyInformation(POLICY_RRN, None)]),
                       critical=False)
    )
    return Issued(_sign(builder, root.key), key)


def _make_ocsp(ca: Issued) -> Issued:
    key = _new_key(KeyKind.EC)
    name = _name((NameOID.COUNTRY_NAME, "BE"), (NameOID.COMMON_NAME, "Citizen CA Test OCSP"))
    builder = (
        _builder(name, ca, key.public_key(), days=10 * 365)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]),
                       critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
    )
    return Issued(_sign(builder, ca.key), key)


def _make_leaf(
    ca: Issued, holder: Holder, key: PrivateKey, role: str, ocsp_url: str
) -> x509.Certificate:
    signing = role == "Signature"
    name = _name(
        (NameOID.COUNTRY_NAME, "BE"),
        (NameOID.COMMON_NAME, f"{holder.first_given_name} {holder.surname} ({role})"),
        (NameOID.SURNAME, holder.surname),
        (NameOID.GIVEN_NAME, holder.given_names),
        (NameOID.SERIAL_NUMBER, holder.national_number),
    )
    start = dt.datetime.combine(holder.validity_begin, dt.time(), dt.UTC)
    end = dt.datetime.combine(holder.validity_end, dt.time(), dt.UTC)
    builder = (
        _builder(name, ca, key.public_key(), not_before=start, not_after=end)
        .add_extension(
            _key_usage(digital_signature=not signing, content_commitment=signing),
            critical=True)
        .add_extension(x509.CertificatePolicies([x509.PolicyInformation(
            POLICY_SIGN if signing else POLICY_AUTH, None)]), critical=False)
        .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.OCSP,
            x509.UniformResourceIdentifier(ocsp_url))]), critical=False)
    )
    if signing:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(OID_QC_STATEMENTS, QC_STATEMENTS_DER), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return _sign(builder, ca.key)


# --------------------------------------------------------------------------- the PKI


_CA_STEMS = ("root", "citizen-ca", "rrn-ec", "rrn-rsa", "ocsp")


@dataclass(frozen=True)
class TestPki:
    """The CA side of the test PKI (see the module docstring for the folder layout)."""

    __test__ = False  # not a pytest test class

    folder: Path
    root: Issued
    citizen_ca: Issued
    rrn_ec: Issued
    rrn_rsa: Issued
    ocsp: Issued
    ocsp_url: str = DEFAULT_OCSP_URL

    @classmethod
    def load_or_create(cls, folder: Path, ocsp_url: str = DEFAULT_OCSP_URL) -> TestPki:
        """Load the CA set from ``folder``; generate (and save) it when anything is missing.

        ``ocsp_url`` goes into the AIA extension of card certificates made from now on.
        """
        folder = Path(folder)
        ca_dir = folder / "ca"
        if all(Issued.exists(ca_dir, stem) for stem in _CA_STEMS):
            made = {stem: Issued.load(ca_dir, stem) for stem in _CA_STEMS}
            logger.debug("test PKI loaded from %s", ca_dir)
            return cls._from(folder, made, ocsp_url)
        root = _make_root()
        ca = _make_citizen_ca(root)
        made = {
            "root": root,
            "citizen-ca": ca,
            "rrn-ec": _make_rrn(root, KeyKind.EC),
            "rrn-rsa": _make_rrn(root, KeyKind.RSA),
            "ocsp": _make_ocsp(ca),
        }
        for stem, issued in made.items():
            issued.save(ca_dir, stem)
        logger.info("test PKI generated in %s", ca_dir)
        return cls._from(folder, made, ocsp_url)

    @classmethod
    def _from(cls, folder: Path, made: Mapping[str, Issued], ocsp_url: str) -> TestPki:
        return cls(folder=folder, root=made["root"], citizen_ca=made["citizen-ca"],
                   rrn_ec=made["rrn-ec"], rrn_rsa=made["rrn-rsa"], ocsp=made["ocsp"],
                   ocsp_url=ocsp_url)

    @property
    def trust_anchors(self) -> list[x509.Certificate]:
        """The root certificate(s) a validator should trust."""
        return [self.root.cert]

    @property
    def intermediates(self) -> list[x509.Certificate]:
        return [self.citizen_ca.cert]

    @property
    def ocsp_url_digest(self) -> str:
        return hashlib.sha256(self.ocsp_url.encode()).hexdigest()[:6]

    def rrn(self, kind: str) -> Issued:
        return {"ec": self.rrn_ec, "rsa": self.rrn_rsa}[kind]


def _card_material(
    pki: TestPki, holder: Holder, kind: KeyKind, folder: Path
) -> tuple[Issued, Issued | None, PrivateKey]:
    """The holder's auth/sign certificates and keys and the basic key, cached in folder."""
    stems = ["auth", "sign"] if holder.has_signing_certificate else ["auth"]
    if all(Issued.exists(folder, s) for s in stems) and (folder / "basic.key.pem").is_file():
        auth = Issued.load(folder, "auth")
        sign = Issued.load(folder, "sign") if holder.has_signing_certificate else None
        return auth, sign, _load_key(folder / "basic.key.pem")
    folder.mkdir(parents=True, exist_ok=True)
    auth_key = _new_key(kind)
    auth = Issued(_make_leaf(pki.citizen_ca, holder, auth_key, "Authentication",
                             pki.ocsp_url), auth_key)
    auth.save(folder, "auth")
    sign = None
    if holder.has_signing_certificate:
        sign_key = _new_key(kind)
        sign = Issued(_make_leaf(pki.citizen_ca, holder, sign_key, "Signature", pki.ocsp_url),
                      sign_key)
        sign.save(folder, "sign")
    basic = _new_key(kind)
    (folder / "basic.key.pem").write_bytes(_key_pem(basic))
    (folder / "holder.json").write_text(json.dumps(holder.to_json(), indent=2,
                                                   ensure_ascii=False))
    return auth, sign, basic


def make_card_data(
    pki: TestPki, holder: Holder | None = None, applet: str = "1.8", *, rrn: str | None = None
) -> BeidCardData:
    """Personalise a card for ``holder`` (keys and certificates cached in the PKI folder).

    ``rrn`` picks the RRN key for the identity signatures: "ec" (default on 1.8) or "rsa"
    (default on 1.7). The photo hash follows: SHA-384 with the EC RRN, SHA-256 with RSA.
    """
    holder = holder or Holder()
    profile = PROFILES[applet]
    rrn_kind = rrn or ("ec" if profile.key_kind is KeyKind.EC else "rsa")
    rrn_issued = pki.rrn(rrn_kind)
    folder = pki.folder / "cards" / (
        f"{applet}-{holder.national_number}-{holder.digest()}-{pki.ocsp_url_digest}")
    auth, sign, basic = _card_material(pki, holder, profile.key_kind, folder)

    # Unique per personalisation, so clients that cache by chip serial see new cards.
    chip_serial = bytes.fromhex("534C494E") + hashlib.sha256(
        f"{applet}:{rrn_kind}:{folder.name}".encode()).digest()[:12]
    photo = make_photo((150, 195) if applet == "1.8" else (140, 200))
    photo_hash = (hashlib.sha384 if rrn_kind == "ec" else hashlib.sha256)(photo).digest()
    basic_hash = (hashlib.sha384(basic_public_key_file(basic)).digest()
                  if applet == "1.8" else None)
    identity = build_identity_file(holder, chip_serial, photo_hash, basic_hash)
    identity_signature = sign_data(rrn_issued.key, identity)
    address = build_address_file(holder)
    # Signed: the address without its padding || EF(SGN#ID) exactly as the card holds it.
    address_signature = sign_data(
        rrn_issued.key, address + data_signature_file(identity_signature))
    return BeidCardData(
        chip_serial=chip_serial,
        auth_key=auth.key,
        auth_cert=auth.der,
        sign_key=sign.key if sign else None,
        sign_cert=sign.der if sign else None,
        ca_cert=pki.citizen_ca.der,
        root_cert=pki.root.der,
        rrn_cert=rrn_issued.der,
        basic_key=basic,
        identity=identity,
        identity_signature=identity_signature,
        address=address,
        address_signature=address_signature,
        photo=photo,
        pin=holder.pin,
        token_versions=b"\x03\x02\x00\x00" if applet == "1.7" else b"\x08\x05\x00\x00",
    )
