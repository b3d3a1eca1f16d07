"""How the core asks the user things, through an injected provider.

Providers: the tray's Qt dialogs (``tray.dialogs``), a console prompt for headless runs,
PIN-pad readers (the PIN is typed on the reader; the provider only shows a notice), and
a scripted provider for tests that refuses to load unless explicitly enabled.

All methods are coroutines. The core enforces the timeout (``asyncio.wait_for``) and
cancels the coroutine when the page disconnects; providers must close their dialog on
cancellation. A user who declines raises :class:`~agent.errors.UserCancelledError`.

Notices (``pinpad_notice``, ``card_notice``) are async context managers: the notice is
shown while the core's block runs and closed when the block ends, however it ends. A
provider whose notice has a Cancel button cancels the block's task and raises
:class:`~agent.errors.UserCancelledError` from its exit (see ``tray.interaction``).

Every request carries the page's ``lang`` (a language code such as ``"fr"``, or None for
the OS language), for the dialog's texts.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from agent.cards.base import PinInfo


class Operation(enum.Enum):
    AUTHENTICATE = "authenticate"  # "log in"
    SIGN = "sign"
    READ_IDENTITY = "read-identity"
    CHANGE_PIN = "change-pin"
    GET_CERTIFICATE = "get-certificate"


@dataclass(frozen=True)
class PinRequest:
    origin: str  # the requesting site, always shown
    operation: Operation
    pin: PinInfo  # which PIN, named as the card names it
    tries_left: int | None
    card_type: str
    reader: str
    holder: str | None = None  # the certificate holder's name
    detail: str | None = None  # for SIGN: what is being signed, in plain words
    timeout: float = 120.0  # seconds; for the dialog's countdown
    lang: str | None = None  # the page's language; None: the OS language


class ConsentKind(enum.Enum):
    SITE = "site"  # may this site use the ID card at all?
    IDENTITY = "identity"  # may this site read name, address and photo?
    CERTIFICATE = "certificate"  # may this site read the signing certificate (name + number)?


class ConsentDecision(enum.Enum):
    ALLOW_ONCE = "allow-once"
    ALLOW_ALWAYS = "allow-always"
    DENY = "deny"


@dataclass(frozen=True)
class ConsentRequest:
    origin: str
    kind: ConsentKind
    holder: str | None = None
    timeout: float = 120.0
    lang: str | None = None
    subject_id: str | None = None  # CERTIFICATE: the national number (or personal code)


@dataclass(frozen=True)
class CardChoice:
    reader: str
    card_type: str
    holder: str | None
    serial: str


@dataclass(frozen=True)
class ChoiceRequest:
    origin: str
    operation: Operation
    choices: tuple[CardChoice, ...] = field(default_factory=tuple)
    timeout: float = 120.0
    lang: str | None = None


class CardWaitReason(enum.Enum):
    """Why the core waits for a card before it can go on."""

    NO_READER = "no-reader"  # "Connect the card reader"
    NO_CARD = "no-card"  # "Insert your ID card"
    UNRECOGNISED = "unrecognised"  # the inserted card is not an ID card the agent can use
    WRONG_CARD = "wrong-card"  # sign: no inserted card holds the certificate


@dataclass(frozen=True)
class CardWaitRequest:
    """The "insert your card" notice, shown while the core waits for a card event."""

    origin: str
    operation: Operation
    reason: CardWaitReason
    timeout: float = 120.0  # seconds left to wait; for the notice's countdown
    holder: str | None = None  # WRONG_CARD: whose card is wanted (from the certificate)
    lang: str | None = None


class UserInteraction(Protocol):
    async def ask_pin(self, request: PinRequest) -> str:
        """Return the PIN the user typed, or raise UserCancelledError."""

    async def ask_pin_change(self, request: PinRequest) -> tuple[str, str]:
        """Return (current PIN, new PIN) — the new one typed twice and matched by the UI."""

    def pinpad_notice(self, request: PinRequest) -> contextlib.AbstractAsyncContextManager[None]:
        """Show "enter your PIN on the reader" (with countdown) while the block runs."""

    def card_notice(
        self, request: CardWaitRequest
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Show "Insert your ID card" / "Connect the card reader" while the core waits.

        The core leaves the block when the card is there, at the timeout, or when the page
        goes away (cancellation); the notice must close in every case. Providers without a
        screen return :func:`no_notice`.
        """

    async def ask_consent(self, request: ConsentRequest) -> ConsentDecision: ...

    async def choose_card(self, request: ChoiceRequest) -> int:
        """Index into ``request.choices``, or raise UserCancelledError."""


@contextlib.asynccontextmanager
async def no_notice(request: PinRequest | CardWaitRequest) -> AsyncIterator[None]:
    """A pinpad_notice or card_notice that shows nothing (for providers without a screen)."""
    yield


def card_notice(
    interaction: UserInteraction, request: CardWaitRequest
) -> contextlib.AbstractAsyncContextManager[None]:
    """``interaction.card_notice(request)``, or :func:`no_notice` for a provider without one."""
    method = getattr(interaction, "card_notice", None)
    if method is None:
        return no_notice(request)
    notice: contextlib.AbstractAsyncContextManager[None] = method(request)
    return notice
