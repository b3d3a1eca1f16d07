"""One interactive operation at a time per card.

The backend's single worker already keeps APDUs from interleaving; this queue keeps whole
operations (a PIN dialog and the card work around it) apart, so a second page never gets
a PIN dialog for a card another page is using. A waiter that runs out of time gets
:class:`~agent.errors.BusyError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from agent.errors import BusyError

__all__ = ["CardQueue"]

logger = logging.getLogger(__name__)


class CardQueue:
    """Per-reader locks for interactive operations (used on the event loop only)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: dict[str, str] = {}

    def busy_readers(self) -> tuple[str, ...]:
        return tuple(sorted(self._holders))

    @contextlib.asynccontextmanager
    async def hold(self, reader: str, origin: str, timeout: float) -> AsyncIterator[None]:
        """Hold ``reader`` for one operation, waiting at most ``timeout`` seconds.

        Raises:
            BusyError: another operation kept the card for longer than ``timeout``.
        """
        lock = self._locks.setdefault(reader, asyncio.Lock())
        if lock.locked():
            logger.info("%s waits for the card in %r", origin, reader)
        try:
            async with asyncio.timeout(timeout):
                await lock.acquire()
        except TimeoutError:
            raise BusyError(
                f"the card in {reader!r} is busy with another request; try again later"
            ) from None
        self._holders[reader] = origin
        try:
            yield
        finally:
            self._holders.pop(reader, None)
            lock.release()
