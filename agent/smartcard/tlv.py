"""TLV helpers: BER-TLV (DER lengths, PKCS#15) and the Belgian eID's simple TLV.

BER-TLV (ISO 7816-4 / X.690): multi-byte tags (low five bits ``1F``), short and long
lengths (``81``..``84``). The Belgian card stores certificates and EC signatures as DER
followed by zero padding, and returns no file length, so :func:`der_length` is how a
reader knows where the object ends.

Belgian simple TLV (identity and address files, C18 §6.1): a 1-byte tag, then a length
that is one byte below 255, or a run of ``FF`` bytes followed by one byte for longer
values (``FF x`` = 255 + x, ``FF FF x`` = 510 + x). Tags come in ascending order; the file
ends with zero padding that is not data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from agent.errors import BadResponseError

logger = logging.getLogger(__name__)

__all__ = [
    "parse_ber_header",
    "der_length",
    "trim_der",
    "iter_ber",
    "parse_simple_tlv",
    "encode_simple_tlv",
    "encode_ber",
]


def parse_ber_header(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """Parse the tag and length of the BER-TLV at ``offset``.

    Returns:
        ``(tag, value_length, header_length)``; the tag is the big-endian integer of its
        bytes (``0x30``, ``0x5F20``, ...).

    Raises:
        BadResponseError: truncated header, indefinite or oversized length.
    """
    pos = offset
    try:
        first = data[pos]
        tag = first
        pos += 1
        if first & 0x1F == 0x1F:
            while True:
                byte = data[pos]
                tag = (tag << 8) | byte
                pos += 1
                if not byte & 0x80:
                    break
        length = data[pos]
        pos += 1
        if length == 0x80:
            raise BadResponseError("indefinite BER length")
        if length > 0x80:
            count = length & 0x7F
            if count > 4:
                raise BadResponseError(f"BER length of {count} bytes")
            if pos + count > len(data):
                raise IndexError
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
    except IndexError:
        raise BadResponseError("truncated BER-TLV header") from None
    return tag, length, pos - offset


def der_length(data: bytes) -> int:
    """Total encoded length (header + value) of the DER object at the start of ``data``.

    Raises:
        BadResponseError: bad header, or ``data`` shorter than the object's header.
    """
    _tag, length, header = parse_ber_header(data)
    return header + length


def trim_der(data: bytes) -> bytes:
    """The DER object at the start of ``data``, without what follows (zero padding).

    Raises:
        BadResponseError: the data is shorter than the object claims.
    """
    total = der_length(data)
    if total > len(data):
        raise BadResponseError(f"DER object of {total} bytes, only {len(data)} available")
    return data[:total]


def iter_ber(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield ``(tag, value)`` for the consecutive BER-TLVs of ``data``.

    Stops at the first ``00`` or ``FF`` padding byte where a tag would start.
    """
    pos = 0
    while pos < len(data) and data[pos] not in (0x00, 0xFF):
        tag, length, header = parse_ber_header(data, pos)
        start = pos + header
        if start + length > len(data):
            raise BadResponseError(f"BER value of tag {tag:X} runs past the data")
        yield tag, data[start : start + length]
        pos = start + length


def parse_simple_tlv(data: bytes) -> list[tuple[int, bytes]]:
    """Parse a Belgian eID simple-TLV file (identity or address) into ``(tag, value)``.

    Trailing zero padding is ignored: parsing stops when the rest of the file is all
    zero bytes, or when a tag ``00`` would follow a higher tag (tags are ascending, and
    tag ``00``, the file version, can only come first).

    Raises:
        BadResponseError: a length runs past the end of the data.
    """
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if not any(data[pos:]):
            break
        tag = data[pos]
        if tag == 0x00 and items:
            break
        pos += 1
        length = 0
        try:
            while data[pos] == 0xFF:
                length += 0xFF
                pos += 1
            length += data[pos]
        except IndexError:
            raise BadResponseError(f"truncated length of tag {tag:02X}") from None
        pos += 1
        if pos + length > len(data):
            raise BadResponseError(f"value of tag {tag:02X} runs past the end of the file")
        items.append((tag, data[pos : pos + length]))
        pos += length
    return items


def encode_ber(tag: int, value: bytes) -> bytes:
    """Encode one BER-TLV item with a one-byte tag and a DER length (the inverse of
    :func:`iter_ber` for such items)."""
    if not 0 <= tag <= 0xFF:
        raise ValueError("only one-byte tags are encoded here")
    n = len(value)
    if n < 0x80:
        length = bytes((n,))
    else:
        size = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes((0x80 | len(size),)) + size
    return bytes((tag,)) + length + value


def encode_simple_tlv(tag: int, value: bytes) -> bytes:
    """Encode one Belgian simple-TLV item (the inverse of :func:`parse_simple_tlv`)."""
    if not 0 <= tag <= 0xFF:
        raise ValueError("simple-TLV tags are one byte")
    runs, rest = divmod(len(value), 0xFF)
    return bytes((tag,)) + b"\xff" * runs + bytes((rest,)) + value
