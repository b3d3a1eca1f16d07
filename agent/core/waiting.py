"""Waiting for the user and for the card: the reader to use, the card a signature needs,
and prompts that close when their card leaves.

:class:`CardWaiter` waits on the :class:`~agent.core.cards.CardBook`'s reader-change signal
(no polling) while showing the interaction's card notice ("Insert your ID card"), lets the
user choose among several cards, and runs a PIN prompt only as long as the card it is for
stays in its reader. :func:`ask_user` turns the agent's timeout into ``UserTimeoutError``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from agent.cards.base import KeyRole
from agent.core.cards import CardBook
from agent.core.interaction import (
    CardChoice,
    CardWaitReason,
    CardWaitRequest,
    ChoiceRequest,
    Operation,
    UserInteraction,
    card_notice,
)
from agent.errors import (
    AgentError,
    CardRemovedError,
    CertificateNotFoundError,
    UserCancelledError,
    UserTimeoutError,
)
from agent.smartcard.backend import ReaderInfo
from agent.smartcard.certinfo import holder_name

__all__ = ["CardWaiter", "ask_user"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


async def ask_user(coro: Awaitable[T], timeout: float) -> T:
    """Await a user interaction, turning the agent's timeout into UserTimeoutError."""
    try:
        async with asyncio.timeout(timeout):
            return await coro
    except TimeoutError:
        raise UserTimeoutError(f"no answer from the user within {timeout:g} s") from None


def _card_wait_timeout(reason: CardWaitReason, timeout: float) -> AgentError:
    if reason is CardWaitReason.WRONG_CARD:
        return CertificateNotFoundError(
            f"no card in the readers holds that signing certificate (waited {timeout:g} s)"
        )
    what = "card reader" if reason is CardWaitReason.NO_READER else "ID card"
    return UserTimeoutError(f"no {what} was connected within {timeout:g} s")


class CardWaiter:
    """Finds the card a request needs, waiting for reader events and asking the user."""

    def __init__(self, book: CardBook, interaction: UserInteraction) -> None:
        self.book = book
        self.interaction = interaction

    def usable_readers(self) -> list[ReaderInfo] | CardWaitReason:
        """The readers holding a card the agent may use, or why there is none."""
        readers = self.book.readers()
        if not readers:
            return CardWaitReason.NO_READER
        present = [r for r in readers if r.card_present]
        if not present:
            return CardWaitReason.NO_CARD
        usable = [r for r in present if not self.book.card_unsupported(r.name)]
        return usable or CardWaitReason.UNRECOGNISED

    async def until_card(
        self,
        origin: str,
        probe: Callable[[], Awaitable[R | CardWaitReason]],
        operation: Operation,
        timeout: float,
        lang: str | None,
        holder: str | None = None,
    ) -> R:
        """``probe()``'s result, waiting for reader events while it gives a reason instead.

        While waiting, the interaction's card notice ("Insert your ID card") is shown; it
        is shown afresh when the reason changes (a reader was connected, but no card) and
        closed when the wait ends: the card is there, the timeout, or the page went away.

        Raises:
            UserTimeoutError: no usable card within ``timeout``.
            CertificateNotFoundError: the wait was for the card of a certificate
                (WRONG_CARD) and other cards were still in the readers at the timeout.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        changed = self.book.reader_change()
        found = await probe()
        while isinstance(found, CardWaitReason):
            reason = found
            logger.info("%s waits for a card (%s)", origin, reason.value)
            request = CardWaitRequest(
                origin=origin,
                operation=operation,
                reason=reason,
                timeout=max(deadline - loop.time(), 0.0),
                holder=holder,
                lang=lang,
            )
            async with card_notice(self.interaction, request):
                while found is reason:
                    try:
                        async with asyncio.timeout_at(deadline):
                            await changed.wait()
                    except TimeoutError:
                        raise _card_wait_timeout(reason, timeout) from None
                    changed = self.book.reader_change()
                    found = await probe()
        return found

    async def _usable(self) -> list[ReaderInfo] | CardWaitReason:
        return self.usable_readers()

    async def pick_card(
        self, origin: str, operation: Operation, timeout: float, lang: str | None
    ) -> str:
        """The reader whose card to use: the only one, or the one the user chooses.

        Waits (with the card notice) while there is no reader or no usable card.
        """
        present = await self.until_card(origin, self._usable, operation, timeout, lang)
        if len(present) == 1:
            return present[0].name
        choices = []
        for reader in present:
            if self.book.info(reader.name) is None:
                await self.book.identify(reader.name)
            info = self.book.info(reader.name)
            choices.append(
                CardChoice(
                    reader=reader.name,
                    card_type=info.card_type if info else "unknown card",
                    holder=info.holder_name if info else None,
                    serial=info.serial if info else "",
                )
            )
        request = ChoiceRequest(origin, operation, tuple(choices), timeout, lang=lang)
        index = await ask_user(self.interaction.choose_card(request), timeout)
        if not 0 <= index < len(choices):
            raise UserCancelledError("no card chosen")
        return choices[index].reader

    async def _holding_reader(self, certificate: bytes) -> tuple[str, int] | CardWaitReason:
        """The reader (and its card epoch) whose card holds ``certificate``, or why none."""
        usable = self.usable_readers()
        if isinstance(usable, CardWaitReason):
            return usable
        for reader in usable:
            epoch = self.book.card_epoch(reader.name)
            try:
                _info, held, _algorithms = await self.book.card_certificate(
                    reader.name, KeyRole.SIGNING
                )
            except AgentError as exc:
                logger.info("skipping the card in %r: %s", reader.name, exc)
                continue
            if held == certificate:
                return reader.name, epoch
        return CardWaitReason.WRONG_CARD

    async def find_certificate(
        self, origin: str, certificate: bytes, timeout: float, lang: str | None
    ) -> tuple[str, int]:
        """The reader (and its card epoch) whose card holds the signing ``certificate``;
        waits for it to be inserted (card notice, reason WRONG_CARD)."""

        async def probe() -> tuple[str, int] | CardWaitReason:
            return await self._holding_reader(certificate)

        return await self.until_card(
            origin,
            probe,
            Operation.SIGN,
            timeout,
            lang,
            holder=holder_name(certificate, all_given_names=True),
        )

    async def while_card_present(self, reader: str, epoch: int, prompt: Awaitable[T]) -> T:
        """Await a PIN prompt; close it and fail when the card leaves ``reader`` meanwhile.

        ``epoch`` is :meth:`CardBook.card_epoch` when the card was read for this request;
        any removal (or swap) since then ends the prompt, and whatever PIN the user typed
        is dropped, never sent.

        Raises:
            CardRemovedError: the card was removed before or while the user answered.
        """
        asking = asyncio.ensure_future(prompt)
        try:
            while True:
                changed = self.book.reader_change()
                if self.book.card_epoch(reader) != epoch:
                    raise CardRemovedError("the card was removed while the PIN was asked")
                if asking.done():
                    return asking.result()
                waiter = asyncio.ensure_future(changed.wait())
                try:
                    await asyncio.wait({asking, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
        finally:
            if not asking.done():
                asking.cancel()
            await asyncio.gather(asking, return_exceptions=True)  # closed, and retrieved
