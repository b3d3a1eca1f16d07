"""CardChannel over a scripted connection: the exact bytes sent for 61xx and 6Cxx."""

from __future__ import annotations

import pytest

from agent.logging import TRAFFIC
from agent.smartcard.apdu import (
    ApduError,
    CardChannel,
    SmartCardConnection,
    encode_apdu,
    log_traffic,
    redact_apdu,
)


class Script(SmartCardConnection):
    """Replays (expected command, response) pairs and fails on any other command."""

    def __init__(self, *pairs: tuple[str, str]) -> None:
        self.pairs = [(bytes.fromhex(c), bytes.fromhex(r)) for c, r in pairs]
        self.sent: list[bytes] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        assert self.pairs, f"unexpected command {apdu.hex()}"
        expected, response = self.pairs.pop(0)
        assert apdu == expected, f"sent {apdu.hex()}, expected {expected.hex()}"
        self.sent.append(apdu)
        return response[:-2], int.from_bytes(response[-2:], "big")

    def close(self) -> None:
        pass


def test_encode_cases() -> None:
    assert encode_apdu(0, 0xA4, 2, 0x0C, b"\x3f\x00") == bytes.fromhex("00a4020c023f00")
    assert encode_apdu(0x80, 0xE4, 0, 0, le=0x1C) == bytes.fromhex("80e400001c")
    assert encode_apdu(0, 0xB0, 0, 0, le=256) == bytes.fromhex("00b0000000")
    assert encode_apdu(0x80, 0xE6, 0, 0) == bytes.fromhex("80e60000")
    with pytest.raises(ValueError):
        encode_apdu(0, 0, 0, 0, bytes(256))


def test_get_response_chain_collects_all_data() -> None:
    conn = Script(
        ("002a9e9a03010203", "6160"),
        ("00c0000060", "aa" * 0x60 + "6110"),
        ("00c0000010", "bb" * 0x10 + "9000"),
    )
    channel = CardChannel(conn)
    data, sw = channel.transmit(bytes.fromhex("002a9e9a03010203"))
    assert sw == 0x9000
    assert data == b"\xaa" * 0x60 + b"\xbb" * 0x10
    assert channel.apdu_count == 3
    assert not conn.pairs


def test_wrong_le_resends_same_command_with_le() -> None:
    conn = Script(("00b0010000", "6c2c"), ("00b001002c", "11" * 0x2C + "9000"))
    data, sw = CardChannel(conn).transmit(bytes.fromhex("00b0010000"))
    assert (data, sw) == (b"\x11" * 0x2C, 0x9000)


def test_wrong_le_on_case4_keeps_data_field() -> None:
    conn = Script(("80b2010204aabbccdd00", "6c05"), ("80b2010204aabbccdd05", "0102030405" "9000"))
    data, _ = CardChannel(conn).transmit(bytes.fromhex("80b2010204aabbccdd00"))
    assert data == bytes.fromhex("0102030405")


def test_wrong_le_on_get_response() -> None:
    conn = Script(("002a9e9a0101", "6120"), ("00c0000020", "6c10"), ("00c0000010", "ee" * 16 + "9000"))
    data, sw = CardChannel(conn).transmit(bytes.fromhex("002a9e9a0101"))
    assert (data, sw) == (b"\xee" * 16, 0x9000)


def test_send_apdu_raises_typed_error_with_sw() -> None:
    conn = Script(("00a4020c025038", "6a82"))
    with pytest.raises(ApduError) as info:
        CardChannel(conn).send_apdu(0, 0xA4, 2, 0x0C, bytes.fromhex("5038"))
    assert info.value.sw == 0x6A82
    assert "file not found" in str(info.value)


def test_pin_commands_are_redacted_in_traffic_log(caplog: pytest.LogCaptureFixture) -> None:
    verify = bytes.fromhex("002000010824123456ffffffff")
    assert "123456" not in redact_apdu(verify)
    assert redact_apdu(bytes.fromhex("00200001")) == "00200001"
    change = bytes.fromhex("002400011024123456ffffffff2465432198ffffff")
    assert "654321" not in redact_apdu(change)
    with caplog.at_level(TRAFFIC, logger="agent"):
        log_traffic("SEND", verify)
        log_traffic("RECV", b"", 0x63C2)
    text = caplog.text
    assert "SEND 0020000108 <8 bytes redacted>" in text
    assert "123456" not in text
