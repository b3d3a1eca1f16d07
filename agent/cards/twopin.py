"""Shared pieces of the two-PIN card drivers (IDEMIA IAS-ECC and Thales PKCS-15 families).

Facts from ``/work/shared/reference/other-cards.md`` section 1 (libelectronic-id's
``pcsc-common.hpp`` and OpenSC):

* VERIFY / CHANGE REFERENCE DATA carry the PIN as ASCII digits padded to 12 bytes, with
  ``FF`` (IDEMIA) or ``00`` (Thales);
* status words: ``63Cx`` wrong PIN with x tries left (``63C0`` blocked), ``6983``/``6984``
  blocked, ``6700``/``6A80`` wrong length, ``6400``..``6404`` PIN-pad outcomes;
* SELECT with an FCP answers tag ``62``; the file size is tag ``80``, else ``81``;
* certificates are read with READ BINARY until the FCP size, on the length returned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NoReturn

from agent.cards.base import PINPAD, KeyRole, PinEntry, PinInfo, SignatureAlgorithm
from agent.cards.common import CertificateCache, PinRequiredError
from agent.errors import (
    BadResponseError,
    InvalidPinError,
    NotSupportedError,
    PinBlockedError,
    PinChangeRequiredError,
    PinFormatError,
    PinPadCancelledError,
    PinPadTimeoutError,
)
from agent.smartcard.apdu import (
    INS_CHANGE_REFERENCE_DATA,
    INS_VERIFY,
    ApduError,
    CardChannel,
    StatusWord,
    encode_apdu,
)
from agent.smartcard.tlv import iter_ber, parse_ber_header

if TYPE_CHECKING:
    from agent.smartcard.pinpad import PinFormat

logger = logging.getLogger(__name__)

__all__ = [
    "PIN_BLOCK_LENGTH",
    "PinChangeRequiredError",
    "encode_pin",
    "raise_for_pin_sw",
    "fcp_file_size",
    "read_binary",
    "find_tag",
    "fit_hash",
    "ecdsa_algorithms",
    "transmit_pin_command",
    "known_pin",
    "pinpad_format",
    "verify_pin_command",
    "change_pin_command",
    "cached_certificate",
    "transmit_signature_command",
    "identity_not_supported",
]

PIN_BLOCK_LENGTH: Final = 12

_CONSTRUCTED: Final = 0x20


def encode_pin(pin: str, info: PinInfo, pad: int) -> bytes:
    """ASCII digits padded to 12 bytes with ``pad``.

    Raises:
        PinFormatError: not digits, or a length outside the PIN's limits (nothing is sent).
    """
    if not (pin.isascii() and pin.isdigit()):
        raise PinFormatError(f"the {info.name} must consist of digits only")
    if not info.min_length <= len(pin) <= min(info.max_length, PIN_BLOCK_LENGTH):
        raise PinFormatError(
            f"the {info.name} must have {info.min_length} to {info.max_length} digits"
        )
    return pin.encode("ascii").ljust(PIN_BLOCK_LENGTH, bytes((pad,)))


def raise_for_pin_sw(sw: int, data: bytes, pin: PinInfo) -> None:
    """Turn the status word of a VERIFY / CHANGE / RESET RETRY COUNTER into an error."""
    if sw == StatusWord.OK:
        return
    if sw & 0xFFF0 == 0x63C0:
        tries = sw & 0x0F
        logger.info("wrong %s, %d tries left", pin.name, tries)
        if tries == 0:
            raise PinBlockedError(pin.name)
        raise InvalidPinError(tries_left=tries, pin_name=pin.name)
    if sw in (StatusWord.AUTH_METHOD_BLOCKED, StatusWord.REFERENCE_DATA_NOT_USABLE):
        raise PinBlockedError(pin.name)
    if sw == StatusWord.PINPAD_TIMEOUT:
        raise PinPadTimeoutError(f"nobody entered the {pin.name} on the PIN pad in time")
    if sw == StatusWord.PINPAD_CANCELLED:
        raise PinPadCancelledError(f"the {pin.name} entry was cancelled on the PIN pad")
    if sw == StatusWord.PINPAD_PIN_MISMATCH:
        raise PinFormatError(f"the new {pin.name}s entered on the PIN pad differ")
    if sw in (StatusWord.PINPAD_PIN_FORMAT, 0x6404, StatusWord.WRONG_LENGTH,
              StatusWord.INCORRECT_DATA):
        raise PinFormatError(f"the card refused the {pin.name} format")
    raise ApduError(sw, data, f"{pin.name} command: card answered {sw:04X}")


def transmit_pin_command(
    channel: CardChannel, ins: int, pin: PinInfo, body: bytes
) -> tuple[bytes, int]:
    """Send VERIFY or CHANGE REFERENCE DATA for ``pin`` (P1 00, P2 the reference)."""
    if ins not in (INS_VERIFY, INS_CHANGE_REFERENCE_DATA):
        raise ValueError("not a PIN command")
    return channel.transmit(encode_apdu(0x00, ins, 0x00, pin.reference, body))


def log_off_pins(
    channel: CardChannel, pins: tuple[PinInfo, ...], select: Callable[[PinInfo], None]
) -> bool:
    """VERIFY ``00 20 FF <ref>`` (no data) for each PIN, in its DF: ISO 7816-4 sets the
    PIN's verification status back to "not verified". True when the card confirmed every
    one with 9000; False otherwise (the caller then has the card reset instead).
    """
    confirmed = True
    for pin in pins:
        select(pin)
        _data, sw = channel.transmit(encode_apdu(0x00, INS_VERIFY, 0xFF, pin.reference))
        if sw != StatusWord.OK:
            logger.info("%s: VERIFY P1=FF answered %04X", pin.name, sw)
            confirmed = False
    return confirmed


def known_pin(pins: tuple[PinInfo, ...], pin: PinInfo) -> PinInfo:
    """The card's own description of the PIN with ``pin``'s reference.

    Raises:
        NotSupportedError: the card has no such PIN.
    """
    for known in pins:
        if known.reference == pin.reference:
            return known
    raise NotSupportedError(f"this card has no PIN with reference {pin.reference:02X}")


def pinpad_format(pin: PinInfo) -> PinFormat:
    """ASCII, left justified at byte 0, 12-byte block, no length field."""
    from agent.smartcard.pinpad import PinFormat

    return PinFormat(format_string=0x82, pin_block_string=0x0C, length_format=0x00,
                     min_length=pin.min_length, max_length=pin.max_length)


def verify_pin_command(channel: CardChannel, pin: PinInfo, block: bytes | None, pad: int) -> None:
    """VERIFY ``00 20 00 <ref> 0C <block>`` once, in the DF already selected; with
    ``block`` None the reader's PIN pad fills in a ``pad``-padded template.

    Raises:
        InvalidPinError, PinBlockedError, PinFormatError, PIN-pad errors: see
        :func:`raise_for_pin_sw`.
    """
    if block is None:
        from agent.smartcard import pinpad

        template = encode_apdu(0x00, INS_VERIFY, 0x00, pin.reference,
                               bytes((pad,)) * PIN_BLOCK_LENGTH)
        data, sw = pinpad.pinpad_verify(channel.connection, template, pinpad_format(pin))
    else:
        data, sw = transmit_pin_command(channel, INS_VERIFY, pin, block)
    raise_for_pin_sw(sw, data, pin)
    logger.info("%s verified", pin.name)


def change_pin_command(
    channel: CardChannel, pin: PinInfo, old: PinEntry, new: str | None, pad: int,
    select: Callable[[], None],
) -> None:
    """CHANGE REFERENCE DATA ``00 24 00 <ref> 18 <old> <new>`` (each ``pad``-padded to 12
    bytes); ``old=PINPAD, new=None`` lets the PIN pad collect both. ``select`` makes the
    PIN's DF current, once the PINs are checked.

    Raises:
        PinFormatError: a missing or malformed PIN (nothing sent); else as
        :func:`raise_for_pin_sw`.
    """
    if old is PINPAD:
        if new is not None:
            raise PinFormatError("with a PIN pad both PINs are entered on the reader")
        from agent.smartcard import pinpad

        select()
        template = encode_apdu(0x00, INS_CHANGE_REFERENCE_DATA, 0x00, pin.reference,
                               bytes((pad,)) * (2 * PIN_BLOCK_LENGTH))
        data, sw = pinpad.pinpad_modify(channel.connection, template, pinpad_format(pin),
                                        offset_old=0, offset_new=PIN_BLOCK_LENGTH)
    else:
        if not isinstance(new, str):
            raise PinFormatError(f"the new {pin.name} is missing")
        body = encode_pin(str(old), pin, pad) + encode_pin(new, pin, pad)
        select()
        data, sw = transmit_pin_command(channel, INS_CHANGE_REFERENCE_DATA, pin, body)
    raise_for_pin_sw(sw, data, pin)
    logger.info("%s changed", pin.name)


def cached_certificate(
    cache: CertificateCache, serial: str, cache_id: int, read: Callable[[], bytes | None]
) -> bytes | None:
    """A certificate from ``cache`` (``None`` cached too), else ``read()`` and cache it."""
    found, cached = cache.get(serial, cache_id)
    if found:
        return cached
    certificate = read()
    cache.put(serial, cache_id, certificate)
    return certificate


def transmit_signature_command(
    channel: CardChannel, apdu: bytes, role: KeyRole, pin: PinInfo, key_reference: int,
    algorithm: int,
) -> bytes:
    """Send INTERNAL AUTHENTICATE or PSO:CDS (after MSE SET) and return the signature.

    Raises:
        PinRequiredError: the card wants ``pin`` verified first (6982).
        ApduError: any other refusal, or an empty answer.
    """
    signature, sw = channel.transmit(apdu)
    if sw == StatusWord.SECURITY_CONDITION_NOT_SATISFIED:
        raise PinRequiredError(f"the card needs {pin.name} before this signature")
    if sw != StatusWord.OK or not signature:
        raise ApduError(sw, signature, f"{role.value} signature: card answered {sw:04X}")
    logger.info("signed with key %02X (algorithm %02X)", key_reference, algorithm)
    return signature


def identity_not_supported(card_type: str) -> NoReturn:
    """``read_identity`` of the two-PIN cards: they have no identity file the agent reads.

    Raises:
        NotSupportedError: always.
    """
    raise NotSupportedError(f"reading the identity of a {card_type} is not supported")


def find_tag(data: bytes, tag: int) -> bytes | None:
    """The value of the first ``tag`` in BER-TLV ``data``, searching constructed values."""
    try:
        for found, value in iter_ber(data):
            if found == tag:
                return value
            first = found
            while first > 0xFF:
                first >>= 8
            if first & _CONSTRUCTED:
                inner = find_tag(value, tag)
                if inner is not None:
                    return inner
    except BadResponseError:
        return None
    return None


def fcp_file_size(fcp: bytes) -> int:
    """The size of a file from its FCP (``62``: tag ``80``, else ``81``; 2 bytes).

    Raises:
        BadResponseError: no FCP template or no size in it.
    """
    tag, _length, _header = parse_ber_header(fcp) if fcp else (0, 0, 0)
    if tag != 0x62:
        raise BadResponseError("SELECT returned no FCP template")
    for size_tag in (0x80, 0x81):
        value = find_tag(fcp, size_tag)
        if value:
            return int.from_bytes(value, "big")
    raise BadResponseError("the FCP has no file size")


def read_binary(channel: CardChannel, size: int, le: int) -> bytes:
    """READ BINARY the selected EF up to ``size`` bytes, ``le`` bytes at a time, looping on
    the length the card actually returns."""
    out = bytearray()
    while len(out) < size:
        want = min(le, size - len(out)) if le != 256 else 256
        offset = len(out)
        data, sw = channel.transmit(encode_apdu(0x00, 0xB0, offset >> 8, offset & 0xFF, le=want))
        if sw == 0x6282 and data:
            out += data
            break
        if sw != StatusWord.OK:
            raise ApduError(sw, data, f"READ BINARY at {offset}: card answered {sw:04X}")
        if not data:
            break
        out += data
    if len(out) < size:
        raise BadResponseError(f"file shorter ({len(out)} bytes) than its FCP size {size}")
    return bytes(out[:size])


def fit_hash(digest: bytes, size: int) -> bytes:
    """An ECDSA input of exactly ``size`` bytes: shorter hashes left-padded with zeros,
    longer ones cut to their leftmost bytes (FIPS 186-5 6.4), as libelectronic-id does."""
    if len(digest) >= size:
        return digest[:size]
    return bytes(size - len(digest)) + digest


def ecdsa_algorithms(hashes: tuple[str, ...]) -> list[SignatureAlgorithm]:
    return [SignatureAlgorithm("ECC", name, "NONE") for name in hashes]
