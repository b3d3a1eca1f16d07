"""Find the driver for the card in a reader.

Each known driver module offers ``open_session(connection, cache=None) -> CardSession``
and raises :class:`~agent.errors.UnsupportedCardError` when the card is not its kind. The
registry tries them in order (Estonian, Latvian, Finnish and Belgian cards; Lithuanian cards are
recognised and refused).

A driver may also offer ``resume_session(connection, cache, state) -> CardSession``: a
session on a card it identified before in the same reader, without its detection commands.
Its sessions then expose ``resume_state`` (what it needs to resume). The caller (the
operations core) keeps a :class:`KnownCard` per inserted card and drops it on removal; the
driver confirms the card on its first command and detects it afresh when the card answers
anything unexpected, and the caller still compares the session's serial with the card it
expects before sending a PIN.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from agent.cards.base import CardSession
from agent.errors import UnsupportedCardError
from agent.smartcard.apdu import SmartCardConnection

__all__ = ["DRIVERS", "KnownCard", "known_card", "open_session"]

logger = logging.getLogger(__name__)

DRIVERS: tuple[str, ...] = (
    "agent.cards.idemia",
    "agent.cards.thales",
    "agent.cards.lithuania",
    "agent.cards.beid",
)
"""Driver modules, tried in order (the ATR-matching drivers first: they send no APDU to a
card that is not theirs)."""


@dataclass(frozen=True)
class KnownCard:
    """A card a driver identified, as that driver needs it to resume a session."""

    driver: str  # the driver module, one of DRIVERS
    state: Any  # the session's ``resume_state`` (e.g. the Belgian card's CardData)


def _driver(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        logger.debug("card driver %s is not available", name)
        return None


def known_card(session: CardSession) -> KnownCard | None:
    """What resumes a later session on this card, or None (driver without a fast path)."""
    driver = type(session).__module__
    state = getattr(session, "resume_state", None)
    if state is None or driver not in DRIVERS:
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
        module = _driver(known.driver)
        resume = getattr(module, "resume_session", None)
        if resume is not None:
            resumed: CardSession = resume(connection, cache, known.state)
            return resumed
    for name in DRIVERS:
        module = _driver(name)
        if module is None:
            continue
        try:
            session: CardSession = module.open_session(connection, cache)
        except UnsupportedCardError as exc:
            if getattr(exc, "recognised", False):
                raise  # a card its driver knows and refuses (Lithuanian): say so
            continue
        return session
    raise UnsupportedCardError(f"unknown card (ATR {connection.atr.hex()})")
