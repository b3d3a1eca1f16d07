"""The agent's own certificate reader against ``cryptography``, field by field.

Every certificate the project has (the Belgian test PKI for both applets, the Estonian,
Latvian, Finnish, Lithuanian... profiles of the other cards, the real Web eID token vectors,
the local TLS CA and its leaf) and made-up ones for each name string type, key type, curve
and time encoding: subject and issuer attributes, key type and curve, validity and serial
must be what ``cryptography`` reads. Garbage must give ``ValueError`` and nothing else.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import random
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from eid_emulator.pki import TestPki, make_card_data
from eid_emulator.pki_other import PKI_PROFILES, load_or_make_pki
from eid_validator.der import normalise_certificate

from agent.smartcard import certinfo
from agent.tls import localca

VECTORS = Path("/work/shared/reference/vectors/webeid-tokens.json")
KEY_TYPES = {rsa.RSAPublicKey: "RSA", ec.EllipticCurvePublicKey: "EC"}


def _expected_key(cert: x509.Certificate) -> tuple[str, str | None]:
    key = cert.public_key()
    for kind, name in KEY_TYPES.items():
        if isinstance(key, kind):
            curve = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else None
            return name, curve
    return cert.public_key_algorithm_oid.dotted_string, None


def _first(name: x509.Name) -> dict[str, str]:
    out: dict[str, str] = {}
    for attribute in name:
        if isinstance(attribute.value, str):
            out.setdefault(attribute.oid.dotted_string, attribute.value)
    return out


def assert_same(der: bytes) -> certinfo.CertificateInfo:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:  # a national CA's non-DER certificate: the validator normalises it
        cert = x509.load_der_x509_certificate(normalise_certificate(der))
    info = certinfo.read_certificate(der)
    assert info.subject == _first(cert.subject)
    assert info.issuer == _first(cert.issuer)
    assert (info.key_type, info.curve) == _expected_key(cert)
    assert info.not_before == cert.not_valid_before_utc
    assert info.not_after == cert.not_valid_after_utc
    assert info.serial_number == cert.serial_number
    assert info.der == der
    return info


def _project_certificates(tmp: Path) -> dict[str, bytes]:
    pki = TestPki.load_or_create(tmp / "pki")
    found: dict[str, bytes] = {}
    for applet in ("1.7", "1.8"):
        data = make_card_data(pki, applet=applet)
        found[f"BE {applet} auth"] = data.auth_cert
        assert data.sign_cert is not None
        found[f"BE {applet} sign"] = data.sign_cert
        found[f"BE {applet} CA"] = data.ca_cert
        found[f"BE {applet} root"] = data.root_cert
    for key in PKI_PROFILES:
        other = load_or_make_pki(key, tmp / key)
        keys = other.issue()
        found[f"{key} auth"] = keys.auth_der
        found[f"{key} sign"] = keys.sign_der
        for number, anchor in enumerate(other.trust_anchors):
            found[f"{key} anchor {number}"] = anchor.public_bytes(
                Encoding.DER)
    ca, leaf, _key = localca._issue(dt.datetime.now(dt.UTC))
    found["local CA"] = ca.public_bytes(Encoding.DER)
    found["local leaf"] = leaf.public_bytes(Encoding.DER)
    return found


def test_every_project_certificate_reads_as_cryptography_reads_it(tmp_path: Path) -> None:
    found = _project_certificates(tmp_path)
    assert len(found) >= 20
    for label, der in found.items():
        try:
            assert_same(der)
        except AssertionError as exc:
            raise AssertionError(f"{label}: {exc}") from None


@pytest.mark.skipif(not VECTORS.exists(), reason="no reference vectors")
def test_real_token_certificates() -> None:
    vectors = json.loads(VECTORS.read_text())
    ders = {base64.b64decode(v["token"]["unverifiedCertificate"]) for v in vectors}
    ders |= {ssl.PEM_cert_to_DER_cert(v["issuerCert"]) for v in vectors if v.get("issuerCert")}
    assert len(ders) >= 3
    for der in ders:
        info = assert_same(der)
        assert certinfo.holder_name(der)
        assert info.key_type in ("RSA", "EC")


def _made(key: object, *, string_type: _ASN1Type | None = None, not_before: dt.datetime,
          not_after: dt.datetime, serial: int = 12345) -> bytes:
    signer = ec.generate_private_key(ec.SECP256R1())
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "BE"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Ève Müller-Łukasz (Authentication)",
                           _type=string_type or _ASN1Type.UTF8String),
        x509.NameAttribute(NameOID.SURNAME, "Müller-Łukasz", _type=string_type or _ASN1Type.UTF8String),
        x509.NameAttribute(NameOID.GIVEN_NAME, "Ève Anne", _type=string_type or _ASN1Type.UTF8String),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, "85010100123", _type=_ASN1Type.PrintableString),
    ]
    if string_type in (_ASN1Type.PrintableString, _ASN1Type.IA5String, _ASN1Type.T61String):
        attributes = [x509.NameAttribute(a.oid, a.value.encode("ascii", "replace").decode()
                                         .replace("?", "e"), _type=a._type) for a in attributes]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    return builder.sign(signer, hashes.SHA256()).public_bytes(Encoding.DER)


START = dt.datetime(2024, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("key", [
    pytest.param(lambda: rsa.generate_private_key(65537, 2048), id="rsa"),
    pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="p256"),
    pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="p384"),
    pytest.param(lambda: ec.generate_private_key(ec.SECP521R1()), id="p521"),
    pytest.param(lambda: ec.generate_private_key(ec.SECP256K1()), id="secp256k1"),
    pytest.param(lambda: ec.generate_private_key(ec.BrainpoolP384R1()), id="brainpool384"),
    pytest.param(lambda: ed25519.Ed25519PrivateKey.generate(), id="ed25519"),
])
def test_key_types_and_curves(key) -> None:  # type: ignore[no-untyped-def]
    assert_same(_made(key(), not_before=START, not_after=START + dt.timedelta(days=365)))


@pytest.mark.parametrize("string_type", [
    _ASN1Type.UTF8String, _ASN1Type.BMPString, _ASN1Type.UniversalString,
    _ASN1Type.PrintableString, _ASN1Type.IA5String, _ASN1Type.T61String,
])
def test_name_string_types(string_type: _ASN1Type) -> None:
    der = _made(ec.generate_private_key(ec.SECP256R1()), string_type=string_type,
                not_before=START, not_after=START + dt.timedelta(days=1))
    info = assert_same(der)
    assert certinfo.holder_id(der) == "85010100123"
    assert certinfo.holder_name(der) == info.subject[certinfo.OID_COMMON_NAME].removesuffix(
        " (Authentication)")


@pytest.mark.parametrize(("not_before", "not_after"), [
    (dt.datetime(1950, 1, 1, tzinfo=dt.UTC), dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)),
    (dt.datetime(2049, 6, 1, tzinfo=dt.UTC), dt.datetime(2050, 1, 1, tzinfo=dt.UTC)),
    (dt.datetime(2030, 1, 1, tzinfo=dt.UTC), dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)),
])
def test_utc_and_generalized_times(not_before: dt.datetime, not_after: dt.datetime) -> None:
    assert_same(_made(ec.generate_private_key(ec.SECP256R1()), not_before=not_before,
                      not_after=not_after))


@pytest.mark.parametrize("serial", [1, 127, 128, 255, 256, 2**64 + 5, 2**159 - 1])
def test_serial_numbers(serial: int) -> None:
    assert_same(_made(ec.generate_private_key(ec.SECP256R1()), not_before=START,
                      not_after=START + dt.timedelta(days=1), serial=serial))


def test_garbage_is_a_value_error(tmp_path: Path) -> None:
    der = _project_certificates(tmp_path)["BE 1.8 auth"]
    rng = random.Random(7)
    for cut in range(0, len(der), 7):
        with pytest.raises(ValueError):
            certinfo.read_certificate(der[:cut])
    with pytest.raises(ValueError):
        certinfo.read_certificate(der + b"\x00")
    for _ in range(300):
        mangled = bytearray(der)
        for _ in range(3):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        try:
            certinfo.read_certificate(bytes(mangled))
        except ValueError:
            pass
    for blob in (b"", b"\x30", b"\x30\x80", os.urandom(64), b"\x30\x03\x02\x01\x01"):
        with pytest.raises(ValueError):
            certinfo.read_certificate(blob)
        assert certinfo.holder_name(blob) is None
        assert certinfo.holder_id(blob) is None


def test_the_resident_path_imports_no_cryptography() -> None:
    """The reader, the token, the drivers, the served TLS set and the whole command line
    (``serve`` included) load without cryptography; it is imported only where a certificate
    is made or an identity signature checked (see test_agent_e2e for the running agent)."""
    code = ("import sys; import agent.smartcard.certinfo, agent.core.token, agent.cards.beid, "
            "agent.cards.registry, agent.tls.served, agent.app.cli, eid_validator.contract; "
            "print([m for m in sys.modules if m.startswith('cryptography')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ}).stdout.strip()
    assert out == "[]"
