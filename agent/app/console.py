"""A console :class:`~agent.core.interaction.UserInteraction` for headless runs.

Prompts go to the controlling terminal; PINs are read with :func:`getpass.getpass` (echo
off) in a worker thread so the event loop keeps running. One prompt at a time. A prompt
that the core cancels (timeout, page gone) stops waiting at once, but the terminal read
itself only ends when the user presses Enter; that late input is discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import sys
from collections.abc import AsyncIterator, Callable
from typing import TextIO

from agent.core.interaction import (
    CardWaitReason,
    CardWaitRequest,
    ChoiceRequest,
    ConsentDecision,
    ConsentKind,
    ConsentRequest,
    Operation,
    PinRequest,
)
from agent.errors import UserCancelledError

__all__ = ["ConsoleInteraction"]

logger = logging.getLogger(__name__)

_ACTIONS = {
    Operation.AUTHENTICATE: "log in to",
    Operation.SIGN: "sign for",
    Operation.READ_IDENTITY: "read your identity for",
    Operation.CHANGE_PIN: "change your PIN (asked by",
    Operation.GET_CERTIFICATE: "read your certificate for",
}

_WAIT_TEXTS = {
    CardWaitReason.NO_READER: "Connect the card reader",
    CardWaitReason.NO_CARD: "Insert your ID card",
    CardWaitReason.UNRECOGNISED: "The card was not recognised; insert your ID card",
    CardWaitReason.WRONG_CARD: "Insert the ID card you used before",
}


class ConsoleInteraction:
    """Asks on the terminal: PINs with echo off, consents as y/always/N."""

    def __init__(
        self,
        *,
        output: TextIO | None = None,
        read_secret: Callable[[str], str] = getpass.getpass,
        read_line: Callable[[str], str] = input,
    ) -> None:
        self._out = output or sys.stderr
        self._read_secret = read_secret
        self._read_line = read_line
        self._lock = asyncio.Lock()

    def _say(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    async def _read(self, reader: Callable[[str], str], prompt: str) -> str:
        async with self._lock:
            try:
                return await asyncio.to_thread(reader, prompt)
            except (EOFError, KeyboardInterrupt):
                raise UserCancelledError("no answer on the console") from None

    def _describe(self, request: PinRequest) -> str:
        action = _ACTIONS.get(request.operation, request.operation.value)
        closing = ")" if request.operation is Operation.CHANGE_PIN else ""
        text = f"{request.card_type} in {request.reader!r}: {action} {request.origin}{closing}"
        if request.detail:
            text += f"\n  {request.detail}"
        if request.tries_left is not None:
            text += f"\n  {request.tries_left} tries left for {request.pin.name}"
        return text

    async def ask_pin(self, request: PinRequest) -> str:
        self._say(self._describe(request))
        value = await self._read(self._read_secret, f"{request.pin.name} (empty to cancel): ")
        if not value:
            raise UserCancelledError("PIN entry cancelled")
        return value

    async def ask_pin_change(self, request: PinRequest) -> tuple[str, str]:
        self._say(self._describe(request))
        old = await self._read(self._read_secret, f"Current {request.pin.name}: ")
        new = await self._read(self._read_secret, f"New {request.pin.name}: ")
        again = await self._read(self._read_secret, f"New {request.pin.name} again: ")
        if not old or not new:
            raise UserCancelledError("PIN change cancelled")
        if new != again:
            self._say("The new PINs do not match.")
            raise UserCancelledError("the new PINs did not match")
        return old, new

    @contextlib.asynccontextmanager
    async def pinpad_notice(self, request: PinRequest) -> AsyncIterator[None]:
        self._say(self._describe(request))
        self._say(f"Enter your {request.pin.name} on the reader's keypad.")
        try:
            yield
        finally:
            self._say("PIN pad done.")

    @contextlib.asynccontextmanager
    async def card_notice(self, request: CardWaitRequest) -> AsyncIterator[None]:
        text = _WAIT_TEXTS[request.reason]
        if request.reason is CardWaitReason.WRONG_CARD and request.holder:
            text = f"Insert the ID card of {request.holder}"
        action = _ACTIONS.get(request.operation, request.operation.value)
        closing = ")" if request.operation is Operation.CHANGE_PIN else ""
        self._say(
            f"{text} to {action} {request.origin}{closing} "
            f"(waiting up to {request.timeout:.0f} s)…"
        )
        yield

    async def ask_consent(self, request: ConsentRequest) -> ConsentDecision:
        if request.kind is ConsentKind.IDENTITY:
            question = (f"Allow {request.origin} to read your name, date and place of birth, "
                        "national number, address and photo?")
        elif request.kind is ConsentKind.CERTIFICATE:
            question = (
                f"Allow {request.origin} to read your signing certificate "
                f"(name {request.holder or '?'}, national number {request.subject_id or '?'})?"
            )
        elif request.kind is ConsentKind.SITE:
            question = (f"Allow {request.origin} to see that a card is inserted and whose it is, "
                        "read your certificates (name and national number) and ask for your PIN?")
        else:
            question = f"Allow {request.origin} to read your {request.kind.value} data?"
        self._say(question)
        answer = await self._read(self._read_line, "[o]nce, [a]lways, [N]o: ")
        answer = answer.strip().lower()
        if answer in ("o", "once", "y", "yes"):
            return ConsentDecision.ALLOW_ONCE
        if answer in ("a", "always"):
            return ConsentDecision.ALLOW_ALWAYS
        return ConsentDecision.DENY

    async def choose_card(self, request: ChoiceRequest) -> int:
        self._say(f"{request.origin} asks for a card. Which one?")
        for number, choice in enumerate(request.choices, 1):
            self._say(f"  {number}. {choice.card_type} ({choice.holder or '?'}) in {choice.reader}")
        answer = await self._read(self._read_line, "Number (empty to cancel): ")
        try:
            index = int(answer) - 1
        except ValueError:
            raise UserCancelledError("no card chosen") from None
        if not 0 <= index < len(request.choices):
            raise UserCancelledError("no card chosen")
        return index
