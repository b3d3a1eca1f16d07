"""Card holder certificates as the agent reads them: subject names, key type, validity.

The agent only *reads* certificates (names for the dialogs and the tray, the key type that
names the token algorithm); the validator decides whether to trust them. This reader walks
the X.509 structure with the standard library, so the resident agent needs no
``cryptography`` to identify a card, build a token or serve ``wss://`` with its existing
certificate (see ``docs/performance.md``, Idle). ``tests/unit/test_certinfo.py`` checks it
field by field against ``cryptography`` on every certificate the project has.

It is lenient the way the validator's :mod:`eid_validator.der` is: some national CAs
issue certificates that are not strict DER (explicit NULL parameters, explicit DEFAULT
values); the fields read here do not depend on those encodings.

Holder names come from the subject, as the cards write it
(``/work/shared/reference/beid-card.md`` and ``other-cards.md``):

* Belgian eID: ``CN=<first given name> <surname> (Authentication|Signature)``, with ``GN`` all
  given names and ``SN`` the surname;
* Estonian ID: ``CN=SURNAME,GIVEN,CODE`` with ``GN``/``SN`` in capitals;
* Latvian and Finnish cards: ``GN`` and ``SN``, ``CN=GIVEN SURNAME``.

No pyscard, no sockets, no ``cryptography``: drivers, the operations core and the TLS room use it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from agent.errors import BadResponseError
from agent.smartcard.tlv import parse_ber_header

logger = logging.getLogger(__name__)

__all__ = [
    "OID_COMMON_NAME",
    "OID_GIVEN_NAME",
    "OID_SERIAL_NUMBER",
    "OID_SURNAME",
    "CertificateInfo",
    "holder_id",
    "holder_name",
    "read_certificate",
]

OID_COMMON_NAME: Final = "2.5.4.3"
OID_SURNAME: Final = "2.5.4.4"
OID_SERIAL_NUMBER: Final = "2.5.4.5"
OID_GIVEN_NAME: Final = "2.5.4.42"

_RSA_KEY_OIDS: Final = frozenset({"1.2.840.113549.1.1.1", "1.2.840.113549.1.1.10"})
_EC_KEY_OID: Final = "1.2.840.10045.2.1"
# Named curves by their SEC names (the names ``cryptography`` and the Web eID contract use).
_CURVES: Final = {
    "1.2.840.10045.3.1.7": "secp256r1",
    "1.3.132.0.34": "secp384r1",
    "1.3.132.0.35": "secp521r1",
    "1.3.132.0.10": "secp256k1",
    "1.3.36.3.3.2.8.1.1.7": "brainpoolP256r1",
    "1.3.36.3.3.2.8.1.1.11": "brainpoolP384r1",
    "1.3.36.3.3.2.8.1.1.13": "brainpoolP512r1",
}

_SEQUENCE, _SET, _INTEGER, _BIT_STRING, _OID = 0x30, 0x31, 0x02, 0x03, 0x06
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_VERSION = 0xA0
# Directory string types and how their bytes become text.
_STRING_CODECS: Final = {
    0x0C: "utf-8",  # UTF8String
    0x13: "latin-1",  # PrintableString
    0x14: "latin-1",  # TeletexString (T61), as cryptography reads it
    0x16: "latin-1",  # IA5String
    0x1A: "latin-1",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}

_BELGIAN_SUFFIXES: Final = (" (Authentication)", " (Signature)")


@dataclass(frozen=True)
class CertificateInfo:
    """What the agent reads from a certificate.

    ``subject``/``issuer`` map an attribute's dotted OID to its first value; ``key_type`` is
    ``"RSA"``, ``"EC"`` or the key algorithm's dotted OID; ``curve`` the SEC name of an EC
    key's named curve (or its dotted OID when unknown here).
    """

    der: bytes
    subject: Mapping[str, str]
    issuer: Mapping[str, str]
    key_type: str
    curve: str | None
    not_before: dt.datetime
    not_after: dt.datetime
    serial_number: int
    public_key_info: bytes = field(repr=False)  # DER SubjectPublicKeyInfo


class _Reader:
    """Consecutive DER elements of one value."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.data)

    def peek(self) -> int:
        if not self.more():
            raise ValueError("certificate ends early")
        return self.data[self.pos]

    def element(self, tag: int | None = None) -> tuple[int, bytes, bytes]:
        """(tag, value, whole encoding) of the next element; ``tag`` is checked when given."""
        try:
            found, length, header = parse_ber_header(self.data, self.pos)
        except BadResponseError as exc:
            raise ValueError(f"not a certificate: {exc}") from None
        start = self.pos + header
        end = start + length
        if end > len(self.data):
            raise ValueError("not a certificate: an element runs past its container")
        if tag is not None and found != tag:
            raise ValueError(f"not a certificate: tag {found:X} where {tag:X} belongs")
        whole = self.data[self.pos:end]
        self.pos = end
        return found, self.data[start:end], whole

    def value(self, tag: int) -> bytes:
        return self.element(tag)[1]


def _oid(value: bytes) -> str:
    if not value or value[-1] & 0x80:
        raise ValueError("not a certificate: bad object identifier")
    arcs: list[int] = []
    current = 0
    for byte in value:
        current = (current << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(current)
            current = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


def _name(value: bytes) -> dict[str, str]:
    """The first value of each attribute of an X.501 Name (RDN order)."""
    names: dict[str, str] = {}
    rdns = _Reader(value)
    while rdns.more():
        attributes = _Reader(rdns.value(_SET))
        while attributes.more():
            pair = _Reader(attributes.value(_SEQUENCE))
            oid = _oid(pair.value(_OID))
            tag, text, _ = pair.element()
            codec = _STRING_CODECS.get(tag)
            if codec is None:
                continue  # not a directory string: nothing a name is read from
            try:
                names.setdefault(oid, text.decode(codec))
            except UnicodeDecodeError:
                raise ValueError("not a certificate: a name is not valid text") from None
    return names


def _time(tag: int, value: bytes) -> dt.datetime:
    try:
        text = value.decode("ascii")
        if tag == _UTC_TIME and len(text) == 13 and text.endswith("Z"):
            year = int(text[:2])
            text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
        elif tag != _GENERALIZED_TIME or len(text) != 15 or not text.endswith("Z"):
            raise ValueError
        if not text[:14].isascii() or not text[:14].isdigit():
            raise ValueError
        return dt.datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError("not a certificate: bad validity time") from None


def read_certificate(certificate: bytes) -> CertificateInfo:
    """Read a DER certificate (nothing after it). The last few are remembered: the same card
    certificates are read for every dialog and token.

    Raises:
        ValueError: not an X.509 certificate.
    """
    return _read_cached(bytes(certificate))


@functools.lru_cache(maxsize=32)
def _read_cached(certificate: bytes) -> CertificateInfo:
    outer = _Reader(certificate)
    whole = _Reader(outer.value(_SEQUENCE))
    if outer.more():
        raise ValueError("not a certificate: data after it")
    tbs = _Reader(whole.value(_SEQUENCE))
    if tbs.peek() == _VERSION:
        tbs.element(_VERSION)
    serial = int.from_bytes(tbs.value(_INTEGER), "big", signed=True)
    tbs.value(_SEQUENCE)  # signature algorithm
    issuer = _name(tbs.value(_SEQUENCE))
    validity = _Reader(tbs.value(_SEQUENCE))
    not_before = _time(*validity.element()[:2])
    not_after = _time(*validity.element()[:2])
    subject = _name(tbs.value(_SEQUENCE))
    _tag, spki, spki_der = tbs.element(_SEQUENCE)
    key = _Reader(spki)
    algorithm = _Reader(key.value(_SEQUENCE))
    key.value(_BIT_STRING)
    key_oid = _oid(algorithm.value(_OID))
    curve = None
    if key_oid in _RSA_KEY_OIDS:
        key_type = "RSA"
    elif key_oid == _EC_KEY_OID:
        key_type = "EC"
        if algorithm.more() and algorithm.peek() == _OID:
            curve_oid = _oid(algorithm.value(_OID))
            curve = _CURVES.get(curve_oid, curve_oid)
    else:
        key_type = key_oid
    whole.value(_SEQUENCE)  # signature algorithm again
    whole.value(_BIT_STRING)  # the CA's signature
    return CertificateInfo(certificate, MappingProxyType(subject), MappingProxyType(issuer),
                           key_type, curve, not_before, not_after, serial, spki_der)


def _read(certificate: bytes | None) -> CertificateInfo | None:
    if not certificate:
        return None
    try:
        return read_certificate(certificate)
    except ValueError:
        return None


def _display(part: str) -> str:
    """A name part as people write it: capitals-only names (Baltic certificates) title-cased,
    others left alone (``McAllister``, ``van den Berg``)."""
    return part.title() if part.isupper() else part


def holder_id(certificate: bytes | None) -> str | None:
    """The subject's ``serialNumber``: the Belgian national number, an Estonian or Baltic
    personal code (``PNOEE-...``); ``None`` when absent or unparsable."""
    info = _read(certificate)
    return info.subject.get(OID_SERIAL_NUMBER) if info else None


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
    info = _read(certificate)
    if info is None:
        return None
    cn = info.subject.get(OID_COMMON_NAME)
    given, surname = info.subject.get(OID_GIVEN_NAME), info.subject.get(OID_SURNAME)
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
