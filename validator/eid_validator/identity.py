"""What a validated certificate says about its holder."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["ValidatedIdentity"]

# ETSI EN 319 412-1 semantics identifier: PNOEE-38001085718, IDCLV-..., PASFI-...
_SEMANTICS = re.compile(r"^(PAS|IDC|PNO|TAX|TIN)([A-Z]{2})-(.+)$")


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


@dataclass(frozen=True)
class ValidatedIdentity:
    """The authenticated person, from the subject of the validated certificate.

    ``serial_number`` is the raw subject serialNumber ("PNOEE-38001085718", or the Belgian
    national number "01050399864"); ``personal_code`` is it without an ETSI "PNOxx-" style prefix,
    whose parts go to ``id_type`` ("PNO") and ``id_country`` ("EE").
    """

    certificate: x509.Certificate
    certificate_der: bytes
    common_name: str | None
    given_name: str | None
    surname: str | None
    serial_number: str | None
    personal_code: str | None
    id_type: str | None
    id_country: str | None
    country: str | None

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate, der: bytes) -> ValidatedIdentity:
        subject = certificate.subject
        serial = _attribute(subject, NameOID.SERIAL_NUMBER)
        match = _SEMANTICS.fullmatch(serial) if serial else None
        return cls(
            certificate=certificate,
            certificate_der=der,
            common_name=_attribute(subject, NameOID.COMMON_NAME),
            given_name=_attribute(subject, NameOID.GIVEN_NAME),
            surname=_attribute(subject, NameOID.SURNAME),
            serial_number=serial,
            personal_code=match.group(3) if match else serial,
            id_type=match.group(1) if match else None,
            id_country=match.group(2) if match else None,
            country=_attribute(subject, NameOID.COUNTRY_NAME),
        )
