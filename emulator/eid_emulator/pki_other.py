"""Test PKIs for the virtual Estonian, Latvian and Finnish cards.

Each profile mirrors the shape of the real test CA in the reference digest
(``other-cards.md`` sections 4.5, 6.5 and 7): the CA common names, the leaf subject style,
key types, KeyUsage / ExtendedKeyUsage sets and policy OIDs. Organisation names and
organizationIdentifier values are our own (never a real operator's), as the digest
advises.

* ``EE2018``: ``TEST of EE-GovCA2018`` -> ``TEST of ESTEID2018``; P-384 leaves; auth
  policies ``1.3.6.1.4.1.51361.1.2.1`` + ``0.4.0.2042.1.2`` (EKU clientAuth,
  emailProtection), sign ``...51361.1.2.1`` + ``0.4.0.194112.1.2`` with qcStatements;
  subject ``CN=SURNAME,GIVEN,CODE``, ``serialNumber=PNOEE-CODE``.
* ``EE2025``: ``Test EEGovCA2025`` -> ``Test ESTEID2025``; P-384.
* ``LV``: ``DEMO LV eID ICA 2017``; RSA-2048 (``LV-RSA``) or P-384 (``LV-EC``) leaves;
  policies ``1.3.6.1.4.1.32061.2.1.2.2`` + ETSI; sign EKU document signing.
* ``FI3``: ``VRK CA for Test Purposes - G3``; auth RSA-2048 (KU digitalSignature,
  keyEncipherment, dataEncipherment; no EKU; e-mail SAN), sign P-256; policy
  ``1.2.246.517.99.10.32.1``.
* ``FI4``: ``DVV TEST Certificates - G5E``; P-384 (auth KU digitalSignature,
  keyAgreement; no EKU); policy ``1.2.246.517.99.10.352.1``.

:func:`make_pki` builds a CA pair in memory (:func:`load_or_make_pki` keeps it in a
folder), :meth:`OtherPki.issue` the holder's two key pairs and certificates (never saved).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from eid_emulator.pki import Issued, _builder, _key_usage, _name, _sign

logger = logging.getLogger(__name__)

__all__ = ["PKI_PROFILES", "Person", "PkiProfile", "OtherPki", "HolderKeys", "document_number",
           "load_or_make_pki", "make_pki"]

OID_QC_STATEMENTS: Final = ObjectIdentifier("1.3.6.1.5.5.7.1.3")
QC_STATEMENTS_DER: Final = bytes.fromhex("3014" "3008060604008E460101" "3008060604008E460104")
OID_ORGANIZATION_IDENTIFIER: Final = ObjectIdentifier("2.5.4.97")
OID_DOCUMENT_SIGNING: Final = ObjectIdentifier("1.3.6.1.4.1.311.10.3.12")
NCP_PLUS: Final = "0.4.0.2042.1.2"
QCP_N_QSCD: Final = "0.4.0.194112.1.2"

KEY_EC384 = "ec384"
KEY_EC256 = "ec256"
KEY_RSA2048 = "rsa2048"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Person:
    """The card holder as the certificates name them."""

    given_name: str = "JAAK-KRISTJAN"
    surname: str = "JÕEORG"
    personal_code: str = "38001085718"
    email: str | None = None


@dataclass(frozen=True)
class PkiProfile:
    key: str
    country: str
    root_cn: str
    ca_cn: str
    auth_key: str
    sign_key: str
    auth_policies: tuple[str, ...]
    sign_policies: tuple[str, ...]
    subject_style: str  # "EE": CN=SURNAME,GIVEN,CODE; "LV"/"FI": CN=GIVEN SURNAME
    serial_prefix: str  # serialNumber attribute: prefix + code
    auth_eku: tuple[ObjectIdentifier, ...] = ()
    sign_eku: tuple[ObjectIdentifier, ...] = ()
    auth_key_usage: tuple[str, ...] = ("digital_signature", "key_agreement")
    ocsp_url: str = "http://127.0.0.1:8080/ocsp"
    organization: str = "eid-agent test PKI"
    organization_identifier: str = "NTR00-00000000"
    email_domain: str | None = None


PKI_PROFILES: Final = {
    "EE2018": PkiProfile(
        key="EE2018", country="EE", root_cn="TEST of EE-GovCA2018", ca_cn="TEST of ESTEID2018",
        auth_key=KEY_EC384, sign_key=KEY_EC384,
        auth_policies=("1.3.6.1.4.1.51361.1.2.1", NCP_PLUS),
        sign_policies=("1.3.6.1.4.1.51361.1.2.1", QCP_N_QSCD),
        subject_style="EE", serial_prefix="PNOEE-",
        auth_eku=(ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION),
        organization_identifier="NTREE-00000000", email_domain="eesti.ee",
    ),
    "EE2025": PkiProfile(
        key="EE2025", country="EE", root_cn="Test EEGovCA2025", ca_cn="Test ESTEID2025",
        auth_key=KEY_EC384, sign_key=KEY_EC384,
        auth_policies=("2.999.1.3.6.1.4.1.51361.2.1.1", NCP_PLUS),
        sign_policies=("2.999.1.3.6.1.4.1.51361.2.1.1", QCP_N_QSCD),
        subject_style="EE", serial_prefix="PNOEE-",
        auth_eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        organization_identifier="NTREE-00000000",
    ),
    "LV-RSA": PkiProfile(
        key="LV-RSA", country="LV", root_cn="DEMO LV eID Root 2017", ca_cn="DEMO LV eID ICA 2017",
        auth_key=KEY_RSA2048, sign_key=KEY_RSA2048,
        auth_policies=(NCP_PLUS, "1.3.6.1.4.1.32061.2.1.2.2"),
        sign_policies=(QCP_N_QSCD, "1.3.6.1.4.1.32061.2.1.2.2"),
        subject_style="LV", serial_prefix="PNOLV-",
        auth_eku=(ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION),
        sign_eku=(OID_DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION),
        auth_key_usage=("digital_signature", "key_encipherment"),
        organization_identifier="NTRLV-00000000",
    ),
    "LV-EC": PkiProfile(
        key="LV-EC", country="LV", root_cn="DEMO LV eID Root 2017", ca_cn="DEMO LV eID ICA 2017",
        auth_key=KEY_EC384, sign_key=KEY_EC384,
        auth_policies=(NCP_PLUS, "1.3.6.1.4.1.32061.2.1.2.2"),
        sign_policies=(QCP_N_QSCD, "1.3.6.1.4.1.32061.2.1.2.2"),
        subject_style="LV", serial_prefix="PNOLV-",
        auth_eku=(ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION),
        sign_eku=(OID_DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION),
        organization_identifier="NTRLV-00000000",
    ),
    "FI3": PkiProfile(
        key="FI3", country="FI", root_cn="VRK Root CA for Test Purposes - G3",
        ca_cn="VRK CA for Test Purposes - G3",
        auth_key=KEY_RSA2048, sign_key=KEY_EC256,
        auth_policies=("1.2.246.517.99.10.32.1",), sign_policies=("1.2.246.517.99.10.32.1",),
        subject_style="FI", serial_prefix="",
        auth_key_usage=("digital_signature", "key_encipherment", "data_encipherment"),
        email_domain="example.fi",
    ),
    "FI4": PkiProfile(
        key="FI4", country="FI", root_cn="DVV TEST Root Certificates - G5E",
        ca_cn="DVV TEST Certificates - G5E",
        auth_key=KEY_EC384, sign_key=KEY_EC384,
        auth_policies=("1.2.246.517.99.10.352.1",), sign_policies=("1.2.246.517.99.10.352.1",),
        subject_style="FI", serial_prefix="",
        email_domain="example.fi",
    ),
}


def new_key(kind: str) -> PrivateKey:
    if kind == KEY_RSA2048:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1() if kind == KEY_EC256 else ec.SECP384R1())


@dataclass(frozen=True)
class HolderKeys:
    """A holder's two key pairs and certificates."""

    auth: Issued
    sign: Issued

    @property
    def auth_der(self) -> bytes:
        return self.auth.der

    @property
    def sign_der(self) -> bytes:
        return self.sign.der


@dataclass(frozen=True)
class OtherPki:
    """A root and an issuing CA shaped like one country's test CA."""

    profile: PkiProfile
    root: Issued
    ca: Issued
    issued: list[HolderKeys] = field(default_factory=list, compare=False)

    @property
    def trust_anchors(self) -> list[x509.Certificate]:
        return [self.root.cert]

    def _subject(self, person: Person, role: str) -> x509.Name:
        profile = self.profile
        if profile.subject_style == "EE":
            cn = f"{person.surname},{person.given_name},{person.personal_code}"
        else:
            cn = f"{person.given_name} {person.surname}"
        return _name(
            (NameOID.COUNTRY_NAME, profile.country),
            (NameOID.COMMON_NAME, cn),
            (NameOID.SURNAME, person.surname),
            (NameOID.GIVEN_NAME, person.given_name),
            (NameOID.SERIAL_NUMBER, profile.serial_prefix + person.personal_code),
        )

    def _leaf(self, person: Person, key: PrivateKey, signing: bool) -> x509.Certificate:
        profile = self.profile
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        builder = _builder(self._subject(person, "sign" if signing else "auth"), self.ca,
                           key.public_key(), days=5 * 365, not_before=start)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                        critical=False)
        if signing:
            usage = _key_usage(content_commitment=True)
            policies = profile.sign_policies
            eku = profile.sign_eku
        else:
            flags = dict.fromkeys(profile.auth_key_usage, True)
            if isinstance(key, rsa.RSAPrivateKey):
                flags.pop("key_agreement", None)
            usage = _key_usage(**flags)
            policies = profile.auth_policies
            eku = profile.auth_eku
        builder = builder.add_extension(usage, critical=True).add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(ObjectIdentifier(oid), None) for oid in policies]),
            critical=False,
        ).add_extension(
            x509.AuthorityInformationAccess([x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(profile.ocsp_url))]), critical=False)
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        if signing:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(OID_QC_STATEMENTS, QC_STATEMENTS_DER), critical=False)
        elif profile.email_domain or person.email:
            email = person.email or f"{person.personal_code}@{profile.email_domain}"
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        return _sign(builder, self.ca.key)

    def issue(self, person: Person | None = None) -> HolderKeys:
        """New authentication and signing key pairs and certificates for ``person``."""
        person = person or Person()
        auth_key = new_key(self.profile.auth_key)
        sign_key = new_key(self.profile.sign_key)
        keys = HolderKeys(
            auth=Issued(self._leaf(person, auth_key, signing=False), auth_key),
            sign=Issued(self._leaf(person, sign_key, signing=True), sign_key),
        )
        self.issued.append(keys)
        return keys


def document_number(prefix: str, keys: HolderKeys) -> str:
    """A document number unique to the holder's keys: two letters and seven digits."""
    digest = int.from_bytes(hashlib.sha256(keys.auth_der).digest()[:8], "big")
    return f"{prefix}{digest % 10_000_000:07d}"


def _ca_name(profile: PkiProfile, cn: str) -> x509.Name:
    return _name(
        (NameOID.COUNTRY_NAME, profile.country),
        (NameOID.ORGANIZATION_NAME, profile.organization),
        (OID_ORGANIZATION_IDENTIFIER, profile.organization_identifier),
        (NameOID.COMMON_NAME, cn),
    )


def load_or_make_pki(key: str, folder: Path) -> OtherPki:
    """The CA pair for ``key`` from ``folder`` (``root``/``ca`` ``.{crt,key}.pem``), made
    and saved there when missing, so that a portal can trust the same root across runs."""
    folder = Path(folder)
    if Issued.exists(folder, "root") and Issued.exists(folder, "ca"):
        return OtherPki(PKI_PROFILES[key], Issued.load(folder, "root"), Issued.load(folder, "ca"))
    pki = make_pki(key)
    pki.root.save(folder, "root")
    pki.ca.save(folder, "ca")
    return pki


def make_pki(key: str) -> OtherPki:
    """A fresh root and issuing CA (EC P-384, ECDSA SHA-384) for profile ``key``."""
    profile = PKI_PROFILES[key]
    root_key = ec.generate_private_key(ec.SECP384R1())
    root_name = _ca_name(profile, profile.root_cn)
    root_builder = (
        _builder(root_name, None, root_key.public_key(), days=20 * 365)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
    )
    root = Issued(_sign(root_builder, root_key), root_key)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_builder = (
        _builder(_ca_name(profile, profile.ca_cn), root, ca_key.public_key(), days=12 * 365)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
    )
    ca = Issued(_sign(ca_builder, root_key), ca_key)
    logger.debug("test PKI %s generated", key)
    return OtherPki(profile, root, ca)
