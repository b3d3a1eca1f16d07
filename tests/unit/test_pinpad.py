"""PC/SC part 10 at byte level: feature list parsing and the PIN_VERIFY/MODIFY structures."""

from __future__ import annotations

import pytest

from agent.errors import BadResponseError, NotSupportedError
from agent.smartcard.apdu import SmartCardConnection
from agent.smartcard.backend import PinPadFeatures
from agent.smartcard.pinpad import (
    PinFormat,
    modify_structure,
    parse_features,
    pinpad_features,
    pinpad_modify,
    pinpad_verify,
    verify_structure,
)

VERIFY_TEMPLATE = bytes.fromhex("0020000108") + bytes.fromhex("20") + b"\xff" * 7
CHANGE_TEMPLATE = bytes.fromhex("0024000110") + (bytes.fromhex("20") + b"\xff" * 7) * 2


def test_feature_list_from_the_belgian_middleware_example() -> None:
    # eid-mw's comment: 06 04 00 31 20 30 07 04 00 31 20 34
    features = parse_features(bytes.fromhex("060400312030070400312034"))
    assert features == {0x06: 0x00312030, 0x07: 0x00312034}
    assert pinpad_features(bytes.fromhex("060400312030070400312034")) == PinPadFeatures(
        verify_pin_direct=0x00312030, modify_pin_direct=0x00312034
    )


def test_reader_without_pin_pad() -> None:
    # vpcd and plain readers announce only GET_TLV_PROPERTIES
    assert pinpad_features(bytes.fromhex("120442330012")) is None
    assert pinpad_features(b"") is None


def test_malformed_feature_list() -> None:
    with pytest.raises(BadResponseError):
        parse_features(bytes.fromhex("0603003120"))


def test_verify_structure_matches_the_belgian_middleware() -> None:
    structure = verify_structure(VERIFY_TEMPLATE, PinFormat(), timeout=30, lang_id=0x0813)
    assert structure == bytes.fromhex(
        "1e1e" "89" "47" "04" "0c04" "02" "01" "1308" "00" "000000" "0d000000"
    ) + VERIFY_TEMPLATE


def test_modify_structure_layout() -> None:
    structure = modify_structure(CHANGE_TEMPLATE, PinFormat(min_length=4, max_length=8))
    assert structure[:5] == bytes.fromhex("1e1e894704")
    assert structure[5:7] == bytes((0, 8))  # insertion offsets old/new
    assert structure[7:9] == bytes.fromhex("0804")  # max 8, min 4, little-endian
    assert structure[9:12] == bytes((0x03, 0x02, 0x03))
    assert structure[12:14] == bytes.fromhex("0904")
    assert structure[14:17] == bytes((0, 1, 2))
    assert structure[17:20] == bytes(3)
    assert structure[20:24] == len(CHANGE_TEMPLATE).to_bytes(4, "little")
    assert structure[24:] == CHANGE_TEMPLATE


class ControlRecorder(SmartCardConnection):
    reader = "PIN pad reader"

    def __init__(self, answer: bytes, features: PinPadFeatures | None) -> None:
        self.answer = answer
        self.pinpad = features
        self.calls: list[tuple[int, bytes]] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        raise AssertionError("a PIN-pad verify must not send a plain APDU")

    def control(self, code: int, data: bytes = b"") -> bytes:
        self.calls.append((code, data))
        return self.answer

    def close(self) -> None:
        pass


def test_pinpad_verify_uses_the_direct_feature_code() -> None:
    conn = ControlRecorder(bytes.fromhex("63c2"), PinPadFeatures(0x42330006, None))
    data, sw = pinpad_verify(conn, VERIFY_TEMPLATE, timeout=90)
    assert (data, sw) == (b"", 0x63C2)
    code, structure = conn.calls[0]
    assert code == 0x42330006
    assert structure == verify_structure(VERIFY_TEMPLATE, timeout=90)


def test_pinpad_modify_and_missing_features() -> None:
    conn = ControlRecorder(bytes.fromhex("9000"), PinPadFeatures(0x1, 0x2))
    assert pinpad_modify(conn, CHANGE_TEMPLATE) == (b"", 0x9000)
    assert conn.calls[0][0] == 0x2
    with pytest.raises(NotSupportedError):
        pinpad_verify(ControlRecorder(b"\x90\x00", None), VERIFY_TEMPLATE)
    with pytest.raises(NotSupportedError):
        pinpad_modify(ControlRecorder(b"\x90\x00", PinPadFeatures(0x1, None)), CHANGE_TEMPLATE)
    with pytest.raises(BadResponseError):
        pinpad_verify(ControlRecorder(b"\x90", PinPadFeatures(0x1, None)), VERIFY_TEMPLATE)
