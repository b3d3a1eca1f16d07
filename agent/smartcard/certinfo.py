"""Card holder certificates as the agent reads them: a lenient parse and a display name.

Some national CAs issue certificates that are not strict DER (see
:mod:`eid_validator.der`); the agent only reads them here (names, keys), the validator
decides whether to trust them. Holder names come from the subject, as the cards write it
(``/work/shared/reference/beid-card.md`` and ``other-cards.md``):

* Belgian eID: ``CN=<first given name> <surname> (Authentication|Signature)``, with ``GN`` all
  given names and ``SN`` the surname;
* Estonian ID: ``CN=SURNAME,GIVEN,CODE`` with ``GN``/``SN`` in capitals;
* Latvian and Finnish cards: ``GN`` and ``SN``, ``CN=GIVEN SURNAME``.

No pyscard, no sockets: drivers and the operations core both use it.
"""

from __future__ import annotations

import logging
from typing import Final

from cryptography import x509
from cryptography.x509.oid import NameOID

logger = logging.getLogger(__name__)

__all__ = ["holder_id", "holder_name", "parse_certificate"]

_BELGIAN_SUFFIXES: Final = (" (Authentication)", " (Signature)")


def parse_certificate(certificate: bytes) -> x509.Certificate:
    """Parse a DER certificate, accepting the non-DER encodings some national CAs use.

    Raises:
        ValueError: not an X.509 certificate, even after normalisation.
    """
    try:
        return x509.load_der_x509_certificate(certificate)
    except ValueError:
        pass
    # Imported here: the validator package is large and strict-DER certificates need none
    # of it (an idle agent does not load it).
    from eid_validator.der import normalise_certificate

    return x509.load_der_x509_certificate(normalise_certificate(certificate))


def _display(part: str) -> str:
    """A name part as people write it: capitals-only names (Baltic certificates) title-cased,
    others left alone (``McAllister``, ``van den Berg``)."""
    return part.title() if part.isupper() else part


def holder_id(certificate: bytes | None) -> str | None:
    """The subject's ``serialNumber``: the Belgian national number, an Estonian or Baltic
    personal code (``PNOEE-...``); ``None`` when absent or unparsable."""
    if not certificate:
        return None
    try:
        values = parse_certificate(certificate).subject.get_attributes_for_oid(
            NameOID.SERIAL_NUMBER
        )
    except (ValueError, TypeError, x509.InvalidVersion):
        return None
    return str(values[0].value) if values else None


def holder_name(certificate: bytes | None, *, all_given_names: bool = False) -> str | None:
    """The holder's name for display, from a certificate subject, or ``None`` when the
    certificate is missing or cannot be parsed.

    The first that applies:

    1. a Belgian CN ``Given Surname (Authentication)``: the CN without the suffix (the first
       given name only, as printed on the card); skipped when ``all_given_names``;
    2. ``GN`` and ``SN``: ``"Given Surname"``;
    3. an Estonian CN ``SURNAME,GIVEN,CODE``: ``"Given Surname"``;
    4. the CN as it is.

    In 2 and 3, names written in capitals only are title-cased
    (``JAAK-KRISTJAN JÕEORG`` -> ``Jaak-Kristjan Jõeorg``).
    """
    if not certificate:
        return None
    try:
        subject = parse_certificate(certificate).subject

        def first(oid: x509.ObjectIdentifier) -> str | None:
            values = subject.get_attributes_for_oid(oid)
            return str(values[0].value) if values else None

        cn, given, surname = (first(NameOID.COMMON_NAME), first(NameOID.GIVEN_NAME),
                              first(NameOID.SURNAME))
    except (ValueError, TypeError, x509.InvalidVersion):  # what garbage certificates raise
        return None
    if cn and not all_given_names:
        stripped = cn
        for suffix in _BELGIAN_SUFFIXES:
            stripped = stripped.removesuffix(suffix)
        if stripped != cn:
            return stripped
    if given and surname:
        return f"{_display(given)} {_display(surname)}"
    if cn and cn.count(",") == 2:
        last, given_cn, _code = cn.split(",")
        return f"{_display(given_cn)} {_display(last)}"
    return cn
