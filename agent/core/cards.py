"""The card book: what the core knows about the card in each reader, and the card jobs.

One :class:`CardBook` per core. Per reader it keeps a :class:`CardState` (a new one per
insertion, dropped on removal) and an epoch (a count of card changes, so a request can
tell that the card it read is still the one in the reader). Every card job — the work a
request does on a card, run on the backend's worker thread — goes through
:meth:`CardBook.card_job`, which opens the driver session (resuming a known card without
its detection commands), checks the card's serial when asked to and remembers what the
job learnt about the card.

Event-loop side only, except :meth:`CardBook.info` and :meth:`CardBook.pin_blocked`, which
the tray's snapshot reads from its own thread (plain dictionary look-ups).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.cards import registry
from agent.cards.base import CardInfo, CardSession, KeyRole, PinInfo, PinStatus, SignatureAlgorithm
from agent.errors import AgentError, CardRemovedError, NoCardError
from agent.smartcard.apdu import SmartCardConnection
from agent.smartcard.backend import EventKind, ReaderBackend, ReaderEvent, ReaderInfo

__all__ = ["CardBook", "CardState", "SessionOpener"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
SessionOpener = Callable[..., CardSession]  # (connection, cache[, known]) -> session


@dataclass
class CardState:
    """What the core remembers about the card in one reader (event-loop side only).

    A new one per insertion, dropped on removal, so all of it is about one card. What an
    operation read from the card is kept so that the next one need not read it again:

    * ``known``: the driver's resume token (a session opens without the detection commands);
    * ``certificates``: per key, the certificate and its signature algorithms;
    * ``pins`` / ``pin_statuses``: the PIN of each key and its last known tries left, shown
      in the next PIN dialog without a card job. The job that sends the PIN first checks
      the card's counter is no lower (another program may have spent a try) — see
      :func:`agent.core.pin.confirm_pin_status`.

    If a card job meets another card (its serial differs), all of it is forgotten.
    """

    info: CardInfo | None = None
    pin_blocked: bool = False
    unsupported: bool = False
    known: registry.KnownCard | None = None
    certificates: dict[KeyRole, tuple[bytes | None, tuple[SignatureAlgorithm, ...]]] = field(
        default_factory=dict
    )
    pins: dict[KeyRole, PinInfo] = field(default_factory=dict)
    pin_statuses: dict[PinInfo, PinStatus] = field(default_factory=dict)

    def seen(self, info: CardInfo, known: registry.KnownCard | None) -> None:
        """A card job on this reader opened a session on the card ``info``."""
        if self.info is not None and self.info.serial != info.serial:
            self.certificates.clear()
            self.pins.clear()
            self.pin_statuses.clear()
        self.info = info
        self.known = known

    def remember_pin(self, serial: str, pin: PinInfo, status: PinStatus | None) -> None:
        """Keep ``status`` for the next dialog, or forget it (unknown, blocked, must change:
        those are always read again, another program may have changed them)."""
        if self.info is None or self.info.serial != serial:
            return
        if status is None or status.blocked or status.must_change or status.tries_left is None:
            self.pin_statuses.pop(pin, None)
        else:
            self.pin_statuses[pin] = status


def _open_and_run(
    opener: SessionOpener,
    cache: Any,
    known: registry.KnownCard | None,
    expect_serial: str | None,
    work: Callable[[CardSession], T],
    connection: SmartCardConnection,
) -> tuple[CardInfo, registry.KnownCard | None, T]:
    """On the backend worker: open the driver session, check the serial, run ``work``."""
    if known is None:
        session = opener(connection, cache)
    else:
        session = opener(connection, cache, known)
    if expect_serial is not None and session.info.serial != expect_serial:
        raise CardRemovedError("another card was put in the reader")
    return session.info, registry.known_card(session), work(session)


class CardBook:
    """Per-reader card state, card epochs, reader-change signals and the card jobs."""

    def __init__(
        self,
        backend: ReaderBackend,
        *,
        open_session: SessionOpener = registry.open_session,
        card_cache: Any = None,
    ) -> None:
        """Args:
        backend: the readers (card jobs run on its worker).
        open_session: the driver dispatch (tests may inject one).
        card_cache: handed to ``open_session`` as its ``cache`` (None: the driver's own
            process-wide cache).
        """
        self.backend = backend
        self.open_session = open_session
        self.card_cache = card_cache
        self._cards: dict[str, CardState] = {}
        self._epochs: dict[str, int] = {}  # reader -> count of its card changes
        self._reader_change = asyncio.Event()  # set (and replaced) after each handled event
        self._log_offs: set[asyncio.Task[None]] = set()  # LOG OFF jobs queued after PIN use

    # -- what is known ---------------------------------------------------------------------

    def state(self, reader: str) -> CardState | None:
        """The state of the card in ``reader``, None when none was seen since insertion."""
        return self._cards.get(reader)

    def info(self, reader: str) -> CardInfo | None:
        """Type, holder and serial of the card in ``reader``, once a card job read them."""
        state = self._cards.get(reader)
        return state.info if state is not None else None

    def pin_blocked(self, reader: str) -> bool:
        state = self._cards.get(reader)
        return bool(state and state.pin_blocked)

    def mark_pin_blocked(self, reader: str) -> None:
        state = self._cards.get(reader)
        if state is not None:
            state.pin_blocked = True

    def card_unsupported(self, reader: str) -> bool:
        """The card in ``reader`` was identified and no driver can use it."""
        state = self._cards.get(reader)
        return state is not None and state.unsupported

    def readers(self) -> list[ReaderInfo]:
        return self.backend.readers()

    def reader_info(self, reader: str) -> ReaderInfo | None:
        return next((r for r in self.backend.readers() if r.name == reader), None)

    def remember_pin(
        self, reader: str, serial: str, pin: PinInfo, status: PinStatus | None
    ) -> None:
        """See :meth:`CardState.remember_pin` (nothing when the reader has no state)."""
        state = self._cards.get(reader)
        if state is not None:
            state.remember_pin(serial, pin, status)

    def remembered_pin(self, reader: str, role: KeyRole, info: CardInfo) -> tuple[PinInfo, PinStatus] | None:
        """The PIN of ``role`` and its last known status, if remembered for the card ``info``."""
        state = self._cards.get(reader)
        if state is None or state.info != info:
            return None
        pin = state.pins.get(role)
        status = state.pin_statuses.get(pin) if pin is not None else None
        return (pin, status) if pin is not None and status is not None else None

    def remember_pin_of(self, reader: str, role: KeyRole, info: CardInfo, pin: PinInfo) -> None:
        """The card ``info`` uses ``pin`` for the key ``role``."""
        state = self._cards.get(reader)
        if state is not None and state.info == info:
            state.pins[role] = pin

    # -- epochs and changes ----------------------------------------------------------------

    def reader_change(self) -> asyncio.Event:
        """An event set once the next reader/card event has been handled.

        Take it BEFORE looking at the readers, then wait on it: no change is missed.
        """
        return self._reader_change

    def card_epoch(self, reader: str) -> int:
        """Changes so far to the card in ``reader``: a removal or insertion bumps it."""
        return self._epochs.get(reader, 0)

    def signal_change(self) -> None:
        """Wake everyone waiting on :meth:`reader_change`."""
        changed, self._reader_change = self._reader_change, asyncio.Event()
        changed.set()

    def card_event(self, event: ReaderEvent) -> None:
        """Account for a reader event: epochs, and the card state of its reader.

        On a removal the waiters are woken at once (PIN prompts for that card close before
        anything else happens); the caller signals the change again once it has handled
        the event.
        """
        if event.kind is not EventKind.READER_ADDED:
            self._epochs[event.reader] = self.card_epoch(event.reader) + 1
        if event.kind in (EventKind.CARD_REMOVED, EventKind.READER_REMOVED):
            self.signal_change()
            self._cards.pop(event.reader, None)
        elif event.kind is EventKind.CARD_INSERTED:
            self._cards[event.reader] = CardState()

    # -- card jobs -------------------------------------------------------------------------

    def _state(self, reader: str) -> CardState:
        return self._cards.setdefault(reader, CardState())

    async def card_job(
        self,
        reader: str,
        work: Callable[[CardSession], T],
        *,
        expect_serial: str | None = None,
    ) -> T:
        """Run ``work(session)`` on the card in ``reader``, on the backend worker.

        ``expect_serial`` makes sure it is still the same card as when the operation began.
        """
        _info, result = await self.card_job_info(reader, work, expect_serial=expect_serial)
        return result

    async def card_job_info(
        self,
        reader: str,
        work: Callable[[CardSession], T],
        *,
        expect_serial: str | None = None,
    ) -> tuple[CardInfo, T]:
        """:meth:`card_job`, also giving the card's info.

        The session resumes without the driver's detection when the card in ``reader`` was
        identified since its insertion (the driver still confirms the card and gives its
        serial, checked against ``expect_serial`` before ``work`` runs).
        """
        state = self._state(reader)
        job = functools.partial(
            _open_and_run, self.open_session, self.card_cache, state.known, expect_serial, work
        )
        try:
            info, resume, result = await asyncio.wrap_future(self.backend.run(reader, job))
        except NoCardError:
            if expect_serial is not None:
                raise CardRemovedError("the card was removed") from None
            raise
        if self._cards.get(reader) is state:
            state.seen(info, resume)
        return info, result

    # -- LOG OFF after every PIN use (issue 13) ---------------------------------------------

    def log_off_after_pin(self, reader: str, serial: str) -> None:
        """Queue ``session.log_off()`` on ``reader`` after a card job that sent a PIN.

        A follow-up card job, started as a task: it runs once the current task has handed
        the answer on (the page gets it first, the card is logged off meanwhile on the
        PC/SC worker), so it costs the user no time; the next job on the reader comes after
        it. ``serial``: only that card is logged off (a removed card is logged off already).
        Failures are logged, never raised: the answer has gone.
        """

        async def log_off() -> None:
            try:
                await self.card_job(reader, _log_off, expect_serial=serial)
            except Exception as exc:  # noqa: BLE001 - nobody waits for this job
                logger.info("no LOG OFF on %r: %s", reader, exc)

        task = asyncio.get_running_loop().create_task(log_off(), name=f"log-off {reader}")
        self._log_offs.add(task)
        task.add_done_callback(self._log_offs.discard)

    async def log_offs_done(self) -> None:
        """Wait for the LOG OFF jobs queued so far (on stop: the cards are logged off first)."""
        await asyncio.gather(*self._log_offs, return_exceptions=True)

    async def card_certificate(
        self, reader: str, role: KeyRole
    ) -> tuple[CardInfo, bytes | None, list[SignatureAlgorithm]]:
        """The card in ``reader``: its info, its certificate for ``role`` (None: none on
        the card) and what that key can do. Read once per inserted card."""
        state = self._state(reader)
        remembered = state.certificates.get(role)
        if state.info is not None and remembered is not None:
            return state.info, remembered[0], list(remembered[1])
        info, (certificate, algorithms) = await self.card_job_info(
            reader, functools.partial(_read_certificate, role)
        )
        if self._cards.get(reader) is state and state.info == info:
            state.certificates[role] = (certificate, tuple(algorithms))
        return info, certificate, algorithms

    async def identify(self, reader: str) -> None:
        """Read the type, holder and serial of the card in ``reader`` (for tray and status)."""
        state = self._state(reader)
        try:
            await self.card_job(reader, _nothing)
        except AgentError as exc:
            state.unsupported = True
            logger.info("could not identify the card in %r: %s", reader, exc)
        except Exception:
            logger.exception("identifying the card in %r failed", reader)


def _read_certificate(
    role: KeyRole, session: CardSession
) -> tuple[bytes | None, list[SignatureAlgorithm]]:
    return session.certificate(role), session.signature_algorithms(role)


def _nothing(session: CardSession) -> None:
    return None


def _log_off(session: CardSession) -> None:
    session.log_off()
