"""Lithuanian ID cards are recognised by their ATR and refused clearly, with no APDU sent."""

from __future__ import annotations

import pytest
from eid_emulator.base import VirtualCard

from agent.cards import lithuania, registry
from agent.errors import UnsupportedCardError
from tests.conftest import READER_0
from tests.scripted import ScriptedConnection

ATR_2026 = bytes.fromhex("3B9D188131FC358031C0694D54434F537302061234")


class SilentMtcos(VirtualCard):
    """Answers every command with 6D00 and records it (PACE is not emulated)."""

    def __init__(self, atr: bytes) -> None:
        self._atr = atr
        self.commands: list[bytes] = []

    @property
    def atr(self) -> bytes:
        return self._atr

    def process(self, apdu: bytes) -> bytes:
        self.commands.append(apdu)
        return b"\x6d\x00"


@pytest.mark.parametrize("atr", [ATR_2026, lithuania.ATR_OLD])
def test_registry_refuses_with_a_clear_message(atr: bytes) -> None:
    conn = ScriptedConnection([], atr=atr)
    with pytest.raises(lithuania.LithuanianCardError, match="Lithuanian ID card: not supported"):
        registry.open_session(conn)
    conn.assert_done()


def test_other_mtcos_atrs_are_not_claimed() -> None:
    conn = ScriptedConnection([], atr=ATR_2026[:-3] + b"\x07\x12\x34")
    with pytest.raises(UnsupportedCardError) as exc:
        lithuania.open_session(conn)
    assert not isinstance(exc.value, lithuania.LithuanianCardError)


@pytest.mark.pcsc
def test_through_pcscd(vpcd) -> None:
    from agent.pcsc import connect

    card = SilentMtcos(ATR_2026)
    vpcd(card)
    with connect(READER_0) as connection, connection.transaction():
        with pytest.raises(lithuania.LithuanianCardError) as exc:
            registry.open_session(connection)
    assert "CAN" in str(exc.value)
    assert card.commands == []
