"""A minimal DER reader, used only to accept real ID-card certificates that are not strict DER.

Some national CAs (e.g. the Finnish DVV/VRK test CAs) issue certificates with an explicit NULL
parameter on ecdsa-with-SHA* or an explicitly encoded DEFAULT value (``cA FALSE``,
``critical FALSE``). ``cryptography`` rejects these. :func:`normalise_certificate` rewrites exactly
those encodings into their DER form so the certificate can be parsed; the CA's signature is then
checked over the *original* TBS bytes (:func:`tbs_bytes`), so nothing unsigned is trusted.
"""

from __future__ import annotations

import logging

__all__ = ["DerError", "normalise_certificate", "tbs_bytes"]

logger = logging.getLogger(__name__)

_SEQUENCE = 0x30
_BOOLEAN = 0x01
_NULL = 0x05
_OCTET_STRING = 0x04
_EXTENSIONS = 0xA3
_ECDSA_WITH_SHA_PREFIX = bytes.fromhex("06082a8648ce3d0403")  # 1.2.840.10045.4.3.x
_BASIC_CONSTRAINTS = bytes.fromhex("0603551d13")  # 2.5.29.19
_FALSE = bytes.fromhex("010100")


class DerError(ValueError):
    """The bytes are not the DER structure expected."""


def _read(data: bytes, pos: int) -> tuple[int, int, int]:
    """Read one TLV at ``pos``; return (tag, value_start, end)."""
    if pos + 2 > len(data):
        raise DerError("truncated TLV")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not expected here")
    first = data[pos + 1]
    start = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise DerError("bad length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise DerError("truncated value")
    return tag, start, end


def _children(data: bytes) -> list[bytes]:
    """Split a value into its encoded child TLVs."""
    out = []
    pos = 0
    while pos < len(data):
        _, _, end = _read(data, pos)
        out.append(data[pos:end])
        pos = end
    return out


def _value(tlv: bytes) -> bytes:
    _, start, end = _read(tlv, 0)
    if end != len(tlv):
        raise DerError("trailing data")
    return tlv[start:end]


def _encode(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + value


def _fix_algorithm(tlv: bytes) -> bytes:
    parts = _children(_value(tlv))
    if len(parts) == 2 and parts[0].startswith(_ECDSA_WITH_SHA_PREFIX) and parts[1][0] == _NULL:
        return _encode(_SEQUENCE, parts[0])
    return tlv


def _fix_extension(tlv: bytes) -> bytes:
    parts = _children(_value(tlv))
    if len(parts) == 3 and parts[1] == _FALSE:
        parts = [parts[0], parts[2]]
    if parts[0] == _BASIC_CONSTRAINTS and parts[-1][0] == _OCTET_STRING:
        inner = _children(_value(_value(parts[-1])))
        if inner and inner[0] == _FALSE:
            inner = inner[1:]
        parts[-1] = _encode(_OCTET_STRING, _encode(_SEQUENCE, b"".join(inner)))
    return _encode(_SEQUENCE, b"".join(parts))


def _fix_tbs(tlv: bytes) -> bytes:
    items = _children(_value(tlv))
    index = 2 if items and items[0][0] == 0xA0 else 1
    items[index] = _fix_algorithm(items[index])
    if items[-1][0] == _EXTENSIONS:
        extensions = _children(_value(_value(items[-1])))
        fixed = b"".join(_fix_extension(ext) for ext in extensions)
        items[-1] = _encode(_EXTENSIONS, _encode(_SEQUENCE, fixed))
    return _encode(_SEQUENCE, b"".join(items))


def _split_certificate(der: bytes) -> list[bytes]:
    _, start, end = _read(der, 0)
    if end != len(der):
        raise DerError("trailing data after certificate")
    parts = _children(der[start:end])
    if len(parts) != 3:
        raise DerError("a certificate has three parts")
    return parts


def tbs_bytes(der: bytes) -> bytes:
    """The TBSCertificate exactly as encoded in ``der`` (what the issuer signed)."""
    return _split_certificate(der)[0]


def normalise_certificate(der: bytes) -> bytes:
    """Re-encode the known non-DER encodings (NULL ECDSA params, explicit FALSE defaults).

    Raises:
        DerError: not the structure of a certificate.
    """
    tbs, algorithm, signature = _split_certificate(der)
    try:
        body = _fix_tbs(tbs) + _fix_algorithm(algorithm) + signature
    except IndexError as exc:  # an empty or missing part where the fixers look
        raise DerError("malformed certificate structure") from exc
    return _encode(_SEQUENCE, body)
