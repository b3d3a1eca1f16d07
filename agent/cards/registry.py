"""Find the driver for the card in a reader.

Each known driver module offers ``open_session(connection, cache=None) -> CardSession``
and raises :class:`~agent.errors.UnsupportedCardError` when the card is not its kind. The
registry tries them in order (Estonian, Latvian, Finnish and Belgian cards; Lithuanian cards are
recognised and refused).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from agent.apdu import SmartCardConnection
from agent.cards.base import CardSession
from agent.errors import UnsupportedCardError

__all__ = ["DRIVERS", "open_session"]

logger = logging.getLogger(__name__)

DRIVERS: tuple[str, ...] = (
    "agent.cards.idemia",
    "agent.cards.thales",
    "agent.cards.lithuania",
    "agent.cards.beid",
)
"""Driver modules, tried in order (the ATR-matching drivers first: they send no APDU to a
card that is not theirs)."""


def open_session(connection: SmartCardConnection, cache: Any = None) -> CardSession:
    """Open a session with the first driver that recognises the card.

    Raises:
        UnsupportedCardError: no driver knows this card.
    """
    for name in DRIVERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            logger.debug("card driver %s is not available", name)
            continue
        try:
            session: CardSession = module.open_session(connection, cache)
        except UnsupportedCardError as exc:
            if getattr(exc, "recognised", False):
                raise  # a card its driver knows and refuses (Lithuanian): say so
            continue
        return session
    raise UnsupportedCardError(f"unknown card (ATR {connection.atr.hex()})")
