"""Find the driver for the card in a reader.

Each driver is a class whose ``open(connection, cache=None) -> CardSession`` raises
:class:`~agent.errors.UnsupportedCardError` when the card is not its kind. The registry tries
them in order (Estonian, Latvian, Finnish and Belgian cards; Lithuanian cards are
recognised and refused).

A driver may also offer ``resume(connection, cache, state) -> CardSession``: a
session on a card it identified before in the same reader, without its detection commands.
Its sessions then expose ``resume_state`` (what it needs to resume). The caller (the
operations core) keeps a :class:`KnownCard` per inserted card and drops it on removal; the
driver confirms the card on its first command and detects it afresh when the card answers
anything unexpected, and the caller still compares the session's serial with the card it
expects before sending a PIN.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from agent.cards.base import CardSession
from agent.cards.beid import BeidSession
from agent.cards.idemia import IdemiaSession
from agent.cards.lithuania import LithuanianCard
from agent.cards.thales import ThalesSession
from agent.errors import UnsupportedCardError
from agent.smartcard.apdu import SmartCardConnection

__all__ = ["DRIVERS", "KnownCard", "known_card", "open_session"]

logger = logging.getLogger(__name__)

class CardDriver(Protocol):
    """What the registry needs of a driver class."""

    @classmethod
    def open(cls, connection: SmartCardConnection, cache: Any = None) -> CardSession: ...


DRIVERS: tuple[type[CardDriver], ...] = (IdemiaSession, ThalesSession, LithuanianCard, BeidSession)
"""Driver classes, tried in order (the ATR-matching drivers first: they send no APDU to a
card that is not theirs)."""


@dataclass(frozen=True)
class KnownCard:
    """A card a driver identified, as that driver needs it to resume a session."""

    driver: type[CardDriver]  # one of DRIVERS
    state: Any  # the session's ``resume_state`` (e.g. the Belgian card's CardData)


def known_card(session: CardSession) -> KnownCard | None:
    """What resumes a later session on this card, or None (driver without a fast path)."""
    state = getattr(session, "resume_state", None)
    driver = next((d for d in DRIVERS if type(session) is d), None)
    if state is None or driver is None:
        return None
    return KnownCard(driver, state)


def open_session(
    connection: SmartCardConnection, cache: Any = None, known: KnownCard | None = None
) -> CardSession:
    """Open a session with the first driver that recognises the card.

    Args:
        connection: the card, inside a transaction.
        cache: handed to the driver (its certificate cache).
        known: the card identified before in this reader (:func:`known_card`); its driver
            resumes without detection when it can.

    Raises:
        UnsupportedCardError: no driver knows this card.
    """
    if known is not None:
        resume = getattr(known.driver, "resume", None)
        if resume is not None:
            resumed: CardSession = resume(connection, cache, known.state)
            return resumed
    for driver in DRIVERS:
        try:
            session: CardSession = driver.open(connection, cache)
        except UnsupportedCardError as exc:
            if getattr(exc, "recognised", False):
                raise  # a card its driver knows and refuses (Lithuanian): say so
            continue
        return session
    raise UnsupportedCardError(f"unknown card (ATR {connection.atr.hex()})")
