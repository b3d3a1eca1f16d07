"""PC/SC part 10 secure PIN entry: feature discovery and the PIN_VERIFY / PIN_MODIFY
structures, at byte level. Pure: the control call goes through the connection.

References: PC/SC part 10 v2.02 (structures, little-endian multi-byte fields); the
Belgian middleware's choices are in ../shared/reference/beid-card.md section 7.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agent.errors import BadResponseError, NotSupportedError
from agent.smartcard.apdu import SmartCardConnection
from agent.smartcard.backend import PinPadFeatures

CM_IOCTL_GET_FEATURE_REQUEST_PCSCLITE = 0x42000D48  # SCARD_CTL_CODE(3400), pcsc-lite
CM_IOCTL_GET_FEATURE_REQUEST_WINDOWS = 0x00313520  # SCARD_CTL_CODE(3400), Windows

FEATURE_VERIFY_PIN_START = 0x01
FEATURE_VERIFY_PIN_FINISH = 0x02
FEATURE_MODIFY_PIN_START = 0x03
FEATURE_MODIFY_PIN_FINISH = 0x04
FEATURE_GET_KEY_PRESSED = 0x05
FEATURE_VERIFY_PIN_DIRECT = 0x06
FEATURE_MODIFY_PIN_DIRECT = 0x07
FEATURE_IFD_PIN_PROPERTIES = 0x0A
FEATURE_GET_TLV_PROPERTIES = 0x12

# Language IDs for the reader's own display.
LANG_IDS = {"en": 0x0409, "nl": 0x0813, "fr": 0x080C, "de": 0x0407}


def parse_features(response: bytes) -> dict[int, int]:
    """Parse a GET_FEATURE_REQUEST answer: 6-byte TLVs (tag, 4, big-endian control code)."""
    features: dict[int, int] = {}
    i = 0
    while i + 2 <= len(response):
        tag, length = response[i], response[i + 1]
        value = response[i + 2 : i + 2 + length]
        if length != 4 or len(value) != 4:
            raise BadResponseError(f"malformed feature TLV at offset {i}: {response.hex()}")
        features[tag] = int.from_bytes(value, "big")
        i += 2 + length
    return features


def pinpad_features(response: bytes) -> PinPadFeatures | None:
    """The PIN-pad control codes in a feature list, or None for a reader without a PIN pad."""
    features = parse_features(response)
    verify = features.get(FEATURE_VERIFY_PIN_DIRECT)
    modify = features.get(FEATURE_MODIFY_PIN_DIRECT)
    if verify is None and modify is None:
        return None
    return PinPadFeatures(verify_pin_direct=verify, modify_pin_direct=modify)


@dataclass(frozen=True)
class PinFormat:
    """How the reader writes the typed PIN into the APDU (bmFormatString & co).

    Defaults: the Belgian card's format-2 block, as eid-mw sends it: BCD, left justified,
    PIN at byte 1 of the block (0x89), 4-bit length field and 7-byte PIN area (0x47),
    length written at bit 4 of the first byte (0x04).
    """

    format_string: int = 0x89
    pin_block_string: int = 0x47
    length_format: int = 0x04
    min_length: int = 4
    max_length: int = 12


def _max_extra_digit(fmt: PinFormat) -> bytes:
    # wPINMaxExtraDigit = 0xXXYY (XX min, YY max), little-endian on the wire.
    return struct.pack("<H", fmt.min_length << 8 | fmt.max_length)


def verify_structure(
    apdu: bytes, fmt: PinFormat = PinFormat(), *, timeout: int = 30, lang_id: int = 0x0409
) -> bytes:
    """PIN_VERIFY_STRUCTURE for FEATURE_VERIFY_PIN_DIRECT around a VERIFY template."""
    return (
        bytes((timeout, timeout, fmt.format_string, fmt.pin_block_string, fmt.length_format))
        + _max_extra_digit(fmt)
        + bytes((0x02, 0x01))  # validation: OK key; one message
        + struct.pack("<H", lang_id)
        + bytes((0x00,))  # bMsgIndex
        + bytes(3)  # bTeoPrologue
        + struct.pack("<I", len(apdu))
        + apdu
    )


def modify_structure(
    apdu: bytes,
    fmt: PinFormat = PinFormat(),
    *,
    offset_old: int = 0,
    offset_new: int = 8,
    confirm: int = 0x03,  # ask for the current PIN and confirm the new one
    timeout: int = 30,
    lang_id: int = 0x0409,
) -> bytes:
    """PIN_MODIFY_STRUCTURE for FEATURE_MODIFY_PIN_DIRECT around a CHANGE REFERENCE DATA."""
    return (
        bytes((timeout, timeout, fmt.format_string, fmt.pin_block_string, fmt.length_format))
        + bytes((offset_old, offset_new))
        + _max_extra_digit(fmt)
        + bytes((confirm, 0x02, 0x03))  # bConfirmPIN, validation OK key, three messages
        + struct.pack("<H", lang_id)
        + bytes((0x00, 0x01, 0x02))  # message indexes
        + bytes(3)
        + struct.pack("<I", len(apdu))
        + apdu
    )


def _split(response: bytes) -> tuple[bytes, int]:
    if len(response) < 2:
        raise BadResponseError(f"PIN pad answered {response.hex() or 'nothing'}")
    return response[:-2], int.from_bytes(response[-2:], "big")


def _features(connection: SmartCardConnection) -> PinPadFeatures:
    features = connection.pinpad
    if not isinstance(features, PinPadFeatures):
        raise NotSupportedError(f"reader {connection.reader!r} has no PIN pad")
    return features


def pinpad_verify(
    connection: SmartCardConnection,
    apdu_template: bytes,
    fmt: PinFormat = PinFormat(),
    *,
    timeout: int = 30,
    lang_id: int = 0x0409,
) -> tuple[bytes, int]:
    """Let the user type the PIN on the reader; returns the card's data and status word."""
    code = _features(connection).verify_pin_direct
    if code is None:
        raise NotSupportedError(f"reader {connection.reader!r} cannot verify a PIN itself")
    structure = verify_structure(apdu_template, fmt, timeout=timeout, lang_id=lang_id)
    return _split(connection.control(code, structure))


def pinpad_modify(
    connection: SmartCardConnection,
    apdu_template: bytes,
    fmt: PinFormat = PinFormat(),
    *,
    offset_old: int = 0,
    offset_new: int = 8,
    timeout: int = 30,
    lang_id: int = 0x0409,
) -> tuple[bytes, int]:
    """Let the user type current and new PIN on the reader; returns data and status word."""
    code = _features(connection).modify_pin_direct
    if code is None:
        raise NotSupportedError(f"reader {connection.reader!r} cannot change a PIN itself")
    structure = modify_structure(
        apdu_template, fmt, offset_old=offset_old, offset_new=offset_new,
        timeout=timeout, lang_id=lang_id,
    )
    return _split(connection.control(code, structure))
