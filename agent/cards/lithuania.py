"""Lithuanian ID cards (MaskTech MTCOS, issued since 2021): recognised and refused.

The card needs PACE with the 6-digit card access number (CAN) even over the contact
interface, and its commands have no public specification (reference digest
``other-cards.md`` section 5; OpenSC's reverse-engineered ``lteid`` driver depends on
OpenPACE, Web eID uses the vendor's PKCS#11 module instead). The agent recognises the card
by its ATR and says clearly that it is not supported, without sending it any APDU.

ATR (Web eID, Feb 2026): ``3B 9D 18 81 31 FC 35 80 31 C0 69 4D 54 43 4F 53 73 02 06 xx xx``
with the last two bytes masked, and the earlier exact ``... 73 02 05 05 D3``.
"""

from __future__ import annotations

import logging
from typing import Final, NoReturn

from agent.errors import UnsupportedCardError
from agent.smartcard.apdu import SmartCardConnection

logger = logging.getLogger(__name__)

__all__ = ["ATR_PREFIX", "LithuanianCardError", "is_lithuanian", "open_session"]

ATR_PREFIX: Final = bytes.fromhex("3B9D188131FC358031C0694D54434F53730206")
ATR_OLD: Final = bytes.fromhex("3B9D188131FC358031C0694D54434F5373020505D3")
ATR_LENGTH: Final = len(ATR_PREFIX) + 2

MESSAGE: Final = (
    "Lithuanian ID card: not supported. This card needs PACE with the 6-digit card access "
    "number (CAN) even in a card reader, and its commands are not publicly specified; use "
    "the Lithuanian ID card software for it."
)


class LithuanianCardError(UnsupportedCardError):
    """A card the agent recognises and knows it cannot drive (the registry stops here)."""

    recognised = True

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


def is_lithuanian(atr: bytes) -> bool:
    return atr == ATR_OLD or (len(atr) == ATR_LENGTH and atr.startswith(ATR_PREFIX))


def open_session(connection: SmartCardConnection, cache: object = None) -> NoReturn:
    """Raise :class:`LithuanianCardError` for a Lithuanian card, else UnsupportedCardError
    (another driver may know the card). Never sends an APDU."""
    if is_lithuanian(bytes(connection.atr)):
        logger.info("Lithuanian ID card in %r: not supported (PACE with CAN)", connection.reader)
        raise LithuanianCardError
    raise UnsupportedCardError("not a Lithuanian ID card (ATR)")


class LithuanianCard:
    """The registry's entry for Lithuanian cards: recognised, never opened."""

    @classmethod
    def open(cls, connection: SmartCardConnection, cache: object = None) -> NoReturn:
        open_session(connection, cache)
