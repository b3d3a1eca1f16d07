"""The PIN plan and the one retry loop.

A request that needs a PIN first makes a :class:`PinPlan` (which PIN, its tries left, the
reader's PIN pad), read from the card or remembered by the card book. :class:`PinDesk`
then asks the user (the agent's dialog, or the PIN pad) and runs the card job that uses
the PIN; after a wrong PIN it asks again, showing the tries left. Each attempt is one PIN
the user typed for this request: the core never retries by itself, and a PIN is handed
straight to one card job (a ``functools.partial`` of a module function), kept nowhere.

After every job that sent a PIN, the card book queues LOG OFF on that card (issue 13).

When the tries shown came from memory, the job first checks the card has at least those
(:func:`confirm_pin_status`): if another program spent a try meanwhile, nothing is sent
and the user is asked again with the card's count.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from agent.cards.base import PINPAD, CardInfo, CardSession, KeyRole, PinEntry, PinInfo, PinStatus
from agent.core.cards import CardBook
from agent.core.interaction import Operation, PinRequest, UserInteraction
from agent.core.waiting import CardWaiter, ask_user
from agent.errors import (
    InvalidPinError,
    PinBlockedError,
    PinChangeRequiredError,
    PinPadCancelledError,
    PinPadTimeoutError,
    UserCancelledError,
    UserTimeoutError,
)

__all__ = ["PinDesk", "PinPlan", "PinStatusChanged", "confirm_pin_status"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
PinAction = Callable[[CardSession, PinEntry], T]
"""What a verified PIN is for: ``action(session, pin)`` on the card (e.g. a signature)."""


@dataclass(frozen=True)
class PinPlan:
    """Everything a PIN dialog needs, read from the card (or remembered) before asking."""

    reader: str
    epoch: int  # CardBook.card_epoch when the operation picked the card
    info: CardInfo
    pin: PinInfo
    status: PinStatus
    pinpad_verify: bool
    pinpad_modify: bool
    probed: bool = True  # status read for this request; else remembered, confirmed later


class PinStatusChanged(Exception):
    """In the job that would send the PIN, before sending it: the card's PIN status is
    worse than the dialog showed (another program spent a try or blocked the PIN)."""

    def __init__(self, status: PinStatus) -> None:
        super().__init__(f"{status.pin.name}: {status.tries_left} tries left")
        self.status = status


def confirm_pin_status(session: CardSession, pin: PinInfo, shown: int | None) -> None:
    """Raise :class:`PinStatusChanged` unless the card has at least the tries ``shown``.

    Raises:
        PinStatusChanged: fewer tries (or blocked, or a PIN that must be changed first).
    """
    status = session.pin_status(pin)
    expected = shown if shown is not None else pin.max_tries
    fewer = status.tries_left is not None and status.tries_left < expected
    if status.blocked or status.must_change or fewer:
        raise PinStatusChanged(status)


# The card jobs that use a PIN (run on the backend worker; the PIN is an argument).


def _verify_job(
    pin: PinInfo,
    confirm: bool,
    shown: int | None,
    action: PinAction[T],
    entry: PinEntry,
    session: CardSession,
) -> T:
    if confirm:
        confirm_pin_status(session, pin, shown)
    return action(session, entry)


def _change_job(
    pin: PinInfo,
    confirm: bool,
    shown: int | None,
    old: PinEntry,
    new: str | None,
    session: CardSession,
) -> None:
    if confirm:
        confirm_pin_status(session, pin, shown)
    session.change_pin(pin, old, new)


def _read_pin(
    pin_for: Callable[[CardSession], PinInfo], session: CardSession
) -> tuple[PinInfo, PinStatus]:
    chosen = pin_for(session)
    return chosen, session.pin_status(chosen)


class PinDesk:
    """Plans PIN entries and runs them, with the one retry loop."""

    def __init__(
        self,
        book: CardBook,
        waiter: CardWaiter,
        interaction: UserInteraction,
        *,
        on_blocked: Callable[[str, str], None],
        reask_wrong_pin: bool = True,
    ) -> None:
        """Args:
        on_blocked: ``(reader, pin_name)`` when a PIN is found blocked (tray notice).
        reask_wrong_pin: after a wrong PIN, ask again (else the error goes to the page).
        """
        self.book = book
        self.waiter = waiter
        self.interaction = interaction
        self._on_blocked = on_blocked
        self._reask_wrong_pin = reask_wrong_pin

    async def plan(
        self,
        reader: str,
        epoch: int,
        pin_for: Callable[[CardSession], PinInfo],
        *,
        role: KeyRole | None = None,
        info: CardInfo | None = None,
    ) -> PinPlan:
        """The PIN to ask for and its status, for the dialog.

        With ``role`` and ``info`` (the card the operation read), a status remembered for
        that card's ``role`` PIN spares the card job (the job that sends the PIN confirms
        it first); else one card job reads it, on the card ``info`` when given.
        """
        book = self.book
        remembered = None
        if role is not None and info is not None:
            remembered = book.remembered_pin(reader, role, info)
        if remembered is None:
            expect = info.serial if info is not None else None
            info, (pin, status) = await book.card_job_info(
                reader, functools.partial(_read_pin, pin_for), expect_serial=expect
            )
            if role is not None:
                book.remember_pin_of(reader, role, info, pin)
            book.remember_pin(reader, info.serial, pin, status)
        else:
            pin, status = remembered
        assert info is not None
        features = book.reader_info(reader)
        pinpad = features.pinpad if features is not None else None
        return PinPlan(
            reader=reader,
            epoch=epoch,
            info=info,
            pin=pin,
            status=status,
            pinpad_verify=bool(pinpad and pinpad.can_verify),
            pinpad_modify=bool(pinpad and pinpad.modify_pin_direct is not None),
            probed=remembered is None,
        )

    async def verify(
        self,
        origin: str,
        plan: PinPlan,
        operation: Operation,
        timeout: float,
        action: PinAction[T],
        *,
        detail: str | None = None,
        lang: str | None = None,
    ) -> T:
        """Ask for the PIN of ``plan`` and run ``action(session, pin)`` on the card."""
        attempt = functools.partial(self._verify_once, plan, timeout, action)
        return await self._retry(origin, plan, operation, timeout, attempt, detail, lang)

    async def change(
        self, origin: str, plan: PinPlan, timeout: float, *, lang: str | None = None
    ) -> None:
        """Ask for the current and the new PIN of ``plan`` (or use the PIN pad) and change it."""
        attempt = functools.partial(self._change_once, plan, timeout)
        await self._retry(origin, plan, Operation.CHANGE_PIN, timeout, attempt, None, lang)

    async def _verify_once(
        self,
        plan: PinPlan,
        timeout: float,
        action: PinAction[T],
        request: PinRequest,
        confirm: bool,
    ) -> T:
        """One PIN entry (dialog or PIN pad), then ``action`` in one card job."""
        if plan.pinpad_verify:
            job = functools.partial(
                _verify_job, plan.pin, confirm, request.tries_left, action, PINPAD
            )
            async with self.interaction.pinpad_notice(request):
                return await self._pin_job(plan, job)
        entry = await self.waiter.while_card_present(
            plan.reader, plan.epoch, ask_user(self.interaction.ask_pin(request), timeout)
        )
        return await self._pin_job(
            plan,
            functools.partial(_verify_job, plan.pin, confirm, request.tries_left, action, entry),
        )

    async def _change_once(
        self, plan: PinPlan, timeout: float, request: PinRequest, confirm: bool
    ) -> None:
        """One PIN change entry (dialog or PIN pad), in one card job."""
        if plan.pinpad_modify:
            job = functools.partial(
                _change_job, plan.pin, confirm, request.tries_left, PINPAD, None
            )
            async with self.interaction.pinpad_notice(request):
                await self._pin_job(plan, job)
            return
        old, new = await self.waiter.while_card_present(
            plan.reader, plan.epoch, ask_user(self.interaction.ask_pin_change(request), timeout)
        )
        await self._pin_job(
            plan, functools.partial(_change_job, plan.pin, confirm, request.tries_left, old, new)
        )

    async def _pin_job(self, plan: PinPlan, job: Callable[[CardSession], T]) -> T:
        """Run a card job that sends a PIN on the card of ``plan``; then queue LOG OFF
        (issue 13) whatever its end, unless nothing was sent (the PIN status had changed)."""
        sent = True
        try:
            return await self.book.card_job(plan.reader, job, expect_serial=plan.info.serial)
        except PinStatusChanged:
            sent = False
            raise
        finally:
            if sent:
                self.book.log_off_after_pin(plan.reader, plan.info.serial)

    def _blocked(self, plan: PinPlan) -> PinBlockedError:
        self._on_blocked(plan.reader, plan.pin.name)
        return PinBlockedError(plan.pin.name)

    async def _retry(
        self,
        origin: str,
        plan: PinPlan,
        operation: Operation,
        timeout: float,
        attempt: Callable[[PinRequest, bool], Awaitable[T]],
        detail: str | None,
        lang: str | None,
    ) -> T:
        """The one retry loop: ask, run ``attempt``; after a wrong PIN ask again.

        ``attempt(request, confirm)``: with ``confirm``, its card job first checks the card
        has the tries the dialog showed (the status was remembered, not read for this
        request); when it has fewer, nothing was sent and the user is asked again with the
        new count.
        """
        if plan.status.blocked or plan.status.tries_left == 0:
            raise self._blocked(plan)
        if plan.status.must_change:
            # Never ask for a PIN the card will refuse to use (EstEID 2025 initial PINs).
            raise PinChangeRequiredError(plan.pin.name)
        book = self.book
        tries_left = plan.status.tries_left
        confirm = not plan.probed
        serial = plan.info.serial
        while True:
            request = PinRequest(
                origin=origin,
                operation=operation,
                pin=plan.pin,
                tries_left=tries_left,
                card_type=plan.info.card_type,
                reader=plan.reader,
                holder=plan.info.holder_name,
                detail=detail,
                timeout=timeout,
                lang=lang,
            )
            try:
                result = await attempt(request, confirm)
            except PinStatusChanged as exc:
                status = exc.status
                book.remember_pin(plan.reader, serial, plan.pin, status)
                logger.info(
                    "%s: %s tries left, not %s as shown: the PIN was not sent",
                    plan.pin.name, status.tries_left, tries_left,
                )
                if status.blocked or status.tries_left == 0:
                    raise self._blocked(plan) from None
                if status.must_change:
                    raise PinChangeRequiredError(plan.pin.name) from None
                tries_left, confirm = status.tries_left, False
                continue
            except InvalidPinError as exc:
                logger.info("wrong %s, %d tries left", exc.pin_name, exc.tries_left)
                status = PinStatus(plan.pin, exc.tries_left, blocked=exc.tries_left <= 0)
                book.remember_pin(plan.reader, serial, plan.pin, status)
                if exc.tries_left <= 0:
                    raise self._blocked(plan) from None
                if not self._reask_wrong_pin:
                    raise
                tries_left, confirm = exc.tries_left, False
                continue
            except PinBlockedError:
                book.remember_pin(plan.reader, serial, plan.pin, None)
                self._on_blocked(plan.reader, plan.pin.name)
                raise
            except PinPadCancelledError:
                raise UserCancelledError("cancelled on the PIN pad") from None
            except PinPadTimeoutError:
                raise UserTimeoutError("nobody typed the PIN on the PIN pad") from None
            # A PIN accepted: the card's counter is full again.
            book.remember_pin(plan.reader, serial, plan.pin, PinStatus(plan.pin, plan.pin.max_tries))
            return result
