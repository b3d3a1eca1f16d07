"""A trivial ISO 7816 test card: one transparent file and a T=0-style answer.

Commands:
* ``00 A4 04 00 <AID>``: select the test application (AID ``F0 65 69 64 74 65 73 74``).
* ``00 B0 off off Le``: read the 300-byte test file; ``6C xx`` when Le is too large,
  ``6B00`` past the end.
* ``00 CA 00 00 00`` (GET DATA): answers ``61 xx`` so the terminal must send GET RESPONSE
  (a case-4 style exchange, as T=0 cards do).
* ``00 C0 00 00 Le``: GET RESPONSE.
* ``80 10 00 00 Lc data``: ECHO, reversed data through ``61xx``.
"""

from __future__ import annotations

from eid_emulator.base import VirtualCard

TEST_AID = bytes.fromhex("F0656964746573 74".replace(" ", ""))
TEST_ATR = bytes.fromhex("3B 88 80 01 65 69 64 2D 74 65 73 74 4D".replace(" ", ""))
TEST_FILE = bytes(i % 251 for i in range(300))
GET_DATA_VALUE = b"eid-agent virtual test card"


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


class TestCard(VirtualCard):
    """A minimal card for exercising the transport layers."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self._pending = b""
        self._selected = False
        self.commands: list[bytes] = []

    @property
    def atr(self) -> bytes:
        return TEST_ATR

    def reset(self) -> None:
        self._pending = b""
        self._selected = False

    def _chain(self, data: bytes) -> bytes:
        self._pending = data
        return _sw(0x6100 | min(len(data), 256) & 0xFF)

    def process(self, apdu: bytes) -> bytes:
        self.commands.append(apdu)
        if len(apdu) < 4:
            return _sw(0x6700)
        cla, ins, p1, p2 = apdu[:4]
        if cla not in (0x00, 0x80):
            return _sw(0x6E00)
        if ins == 0xA4:
            if p1 != 0x04 or len(apdu) < 5 or apdu[5 : 5 + apdu[4]] != TEST_AID:
                return _sw(0x6A82)
            self._selected = True
            return _sw(0x9000)
        if ins == 0xB0:
            offset = p1 << 8 | p2
            le = apdu[4] if len(apdu) > 4 else 0
            le = le or 256
            if offset >= len(TEST_FILE):
                return _sw(0x6B00)
            remaining = len(TEST_FILE) - offset
            if le > remaining:
                return _sw(0x6C00 | remaining)
            return TEST_FILE[offset : offset + le] + _sw(0x9000)
        if ins == 0xCA:
            return self._chain(GET_DATA_VALUE)
        if ins == 0x10 and cla == 0x80:
            lc = apdu[4] if len(apdu) > 4 else 0
            return self._chain(apdu[5 : 5 + lc][::-1])
        if ins == 0xC0:
            if not self._pending:
                return _sw(0x6985)
            le = (apdu[4] if len(apdu) > 4 else 0) or 256
            if le > len(self._pending):
                return _sw(0x6C00 | len(self._pending))
            out, self._pending = self._pending[:le], self._pending[le:]
            if self._pending:
                return out + _sw(0x6100 | min(len(self._pending), 256) & 0xFF)
            return out + _sw(0x9000)
        return _sw(0x6D00)
