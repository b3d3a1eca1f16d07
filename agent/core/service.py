"""The operations core: card operations for pages, with consent, PINs and one card queue.

One :class:`AgentService` per process owns the reader backend and the user-interaction
provider. Each WebSocket connection gets a :class:`ClientSession` bound to the handshake
``Origin``; every card method first makes sure that origin is approved (machine policy,
a stored "always", or the user's answer now) and only then touches a card.

Everything here runs on the asyncio event loop; card work goes to the backend's single
worker thread through ``backend.run(...)`` and :func:`asyncio.wrap_future`. The tray sees
and steers the core through :class:`agent.control.AgentControl`, which this class
implements (those methods are safe to call from any thread).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.apdu import SmartCardConnection
from agent.backend import EventKind, ReaderBackend, ReaderEvent, ReaderInfo
from agent.cards import registry
from agent.cards.base import (
    PINPAD,
    CardInfo,
    CardSession,
    KeyRole,
    PinEntry,
    PinInfo,
    PinStatus,
    SignatureAlgorithm,
)
from agent.certinfo import holder_name
from agent.control import AgentState, CardSummary, Notice, ReaderSummary, Snapshot
from agent.core import token
from agent.core.config import AgentConfig
from agent.core.consent import ApprovalStore
from agent.core.origin import normalize_origin
from agent.core.queue import CardQueue
from agent.errors import (
    AgentError,
    CardRemovedError,
    CertificateNotFoundError,
    InvalidArgumentError,
    InvalidPinError,
    NoCardError,
    NotSupportedError,
    OriginNotAllowedError,
    PinBlockedError,
    PinChangeRequiredError,
    PinPadCancelledError,
    PinPadTimeoutError,
    UserCancelledError,
    UserTimeoutError,
)
from agent.hashes import WEB_EID_HASHES
from agent.interaction import (
    CardChoice,
    CardWaitReason,
    CardWaitRequest,
    ChoiceRequest,
    ConsentDecision,
    ConsentKind,
    ConsentRequest,
    Operation,
    PinRequest,
    UserInteraction,
    card_notice,
)
from agent.memory import release_free_memory

__all__ = ["AgentService", "ClientSession", "SessionOpener"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
SessionOpener = Callable[..., CardSession]  # (connection, cache[, known]) -> session
EventSink = Callable[[dict[str, Any]], None]


@dataclass
class _CardState:
    """What the core remembers about the card in one reader (event-loop side only).

    A new one per insertion, dropped on removal, so all of it is about one card. What an
    operation read from the card is kept so that the next one need not read it again:

    * ``known``: the driver's resume token (a session opens without the detection commands);
    * ``certificates``: per key, the certificate and its signature algorithms;
    * ``pins`` / ``pin_statuses``: the PIN of each key and its last known tries left, shown
      in the next PIN dialog without a card job. The job that sends the PIN first checks
      the card's counter is no lower (another program may have spent a try) — see
      :func:`_confirm_pin_status`.

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


@dataclass(frozen=True)
class _PinPlan:
    """Everything a PIN dialog needs, read from the card (or remembered) before asking."""

    reader: str
    epoch: int  # AgentService.card_epoch when the operation picked the card
    info: CardInfo
    pin: PinInfo
    status: PinStatus
    pinpad_verify: bool
    pinpad_modify: bool
    probed: bool = True  # status read for this request; else remembered, confirmed later


class _PinStatusChanged(Exception):
    """In the job that would send the PIN, before sending it: the card's PIN status is
    worse than the dialog showed (another program spent a try or blocked the PIN)."""

    def __init__(self, status: PinStatus) -> None:
        super().__init__(f"{status.pin.name}: {status.tries_left} tries left")
        self.status = status


def _confirm_pin_status(session: CardSession, pin: PinInfo, shown: int | None) -> None:
    """Raise :class:`_PinStatusChanged` unless the card has at least the tries ``shown``.

    Raises:
        _PinStatusChanged: fewer tries (or blocked, or a PIN that must be changed first).
    """
    status = session.pin_status(pin)
    expected = shown if shown is not None else pin.max_tries
    fewer = status.tries_left is not None and status.tries_left < expected
    if status.blocked or status.must_change or fewer:
        raise _PinStatusChanged(status)


async def _logged_off(service: AgentService, plan: _PinPlan, pin_job: Awaitable[T]) -> T:
    """Run a card job that sends a PIN; then queue LOG OFF (issue 13), whatever its end,
    unless nothing was sent (the PIN status had changed)."""
    sent = True
    try:
        return await pin_job
    except _PinStatusChanged:
        sent = False
        raise
    finally:
        if sent:
            service.log_off_after_pin(plan.reader, plan.info.serial)


def _card_json(info: CardInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"type": info.card_type, "holder": info.holder_name, "serial": info.serial}


def _b64decode(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{what} must be a non-empty base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError(f"{what} is not valid base64") from None


async def _ask(coro: Awaitable[T], timeout: float) -> T:
    """Await a user interaction, turning the agent's timeout into UserTimeoutError."""
    try:
        async with asyncio.timeout(timeout):
            return await coro
    except TimeoutError:
        raise UserTimeoutError(f"no answer from the user within {timeout:g} s") from None


class AgentService:
    """The one operations core of the process; also the tray's :class:`AgentControl`."""

    def __init__(
        self,
        backend: ReaderBackend,
        interaction: UserInteraction,
        *,
        config: AgentConfig,
        open_session: SessionOpener = registry.open_session,
        card_cache: Any = None,
    ) -> None:
        """Build the core (nothing starts until :meth:`start`).

        Args:
            backend: the readers.
            interaction: how to ask the user (dialogs, console, PIN pad notices).
            config: settings, folders and machine policy.
            open_session: the driver dispatch (tests may inject one).
            card_cache: handed to ``open_session`` as its ``cache`` (None: the driver's own
                process-wide cache).
        """
        self.backend = backend
        self.interaction = interaction
        self.config = config
        self.approvals = ApprovalStore(config.approvals_file)
        self._open_session = open_session
        self._card_cache = card_cache
        self._queue = CardQueue()
        self._cards: dict[str, _CardState] = {}
        self._sessions: set[ClientSession] = set()
        self._policy_origins = self._normalize_policy(config.policy.allowed_origins)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: asyncio.Queue[ReaderEvent] = asyncio.Queue()
        self._reader_change = asyncio.Event()  # set (and replaced) after each handled event
        self._card_epochs: dict[str, int] = {}  # reader -> count of its card changes
        self._event_task: asyncio.Task[None] | None = None
        self._shutdown = asyncio.Event()
        self._active_operations = 0
        self._listeners: list[tuple[Callable[[Snapshot], None], Callable[[Notice, str], None]]]
        self._listeners = []
        self._listeners_lock = threading.Lock()
        self._log_offs: set[asyncio.Task[None]] = set()  # LOG OFF jobs queued after PIN use

    @staticmethod
    def _normalize_policy(origins: tuple[str, ...]) -> frozenset[str]:
        normalized = set()
        for origin in origins:
            try:
                normalized.add(normalize_origin(origin))
            except OriginNotAllowedError:
                logger.error("machine policy lists an invalid origin %r; ignored", origin)
        return frozenset(normalized)

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start watching readers (reader and card events flow from now on)."""
        self._loop = asyncio.get_running_loop()
        self._event_task = asyncio.create_task(self._process_events(), name="reader-events")
        await asyncio.to_thread(self.backend.start, self._on_backend_event)
        if self.config.identify_cards:
            for reader in self.backend.readers():
                if reader.card_present and reader.name not in self._cards:
                    await self._identify(reader.name)
        logger.info("agent core started (version %s)", self.config.version)
        self._changed()

    async def stop(self) -> None:
        """Close every client session and release the readers."""
        for session in list(self._sessions):
            await session.close()
        await asyncio.gather(*self._log_offs, return_exceptions=True)  # cards logged off first
        if self._event_task is not None:
            self._event_task.cancel()
            await asyncio.gather(self._event_task, return_exceptions=True)
            self._event_task = None
        await asyncio.to_thread(self.backend.stop)
        logger.info("agent core stopped")

    async def wait_shutdown(self) -> None:
        """Return once :meth:`shutdown` was called (tray Quit)."""
        await self._shutdown.wait()

    # -- origins ---------------------------------------------------------------------------

    def origin_precheck(self, origin: str) -> None:
        """Refuse a connection whose origin is malformed or barred by machine policy.

        Raises:
            OriginNotAllowedError: bad syntax (https only; http for loopback hosts), or the
                policy allows no user approvals and does not list this origin.
        """
        normalized = normalize_origin(origin)
        if normalized in self._policy_origins:
            return
        if not self.config.policy.allow_user_approval:
            raise OriginNotAllowedError(
                f"{normalized} is not among the sites the administrator allowed"
            )

    def is_approved(self, origin: str, kind: ConsentKind = ConsentKind.SITE) -> bool:
        """Allowed by machine policy (sites only) or by a stored user approval."""
        if kind is ConsentKind.SITE and origin in self._policy_origins:
            return True
        return self.config.policy.allow_user_approval and self.approvals.is_approved(origin, kind)

    def open_client(self, origin: str) -> ClientSession:
        """A session for one connection; ``origin`` is the handshake ``Origin`` header."""
        self.origin_precheck(origin)
        session = ClientSession(self, normalize_origin(origin))
        self._sessions.add(session)
        logger.info("connection from %s", session.origin)
        self._changed()
        return session

    def _forget_session(self, session: ClientSession) -> None:
        self._sessions.discard(session)
        self._changed()
        if not self._sessions:
            release_free_memory()  # going idle: give a burst's memory back

    # -- readers and cards -----------------------------------------------------------------

    def _state(self, reader: str) -> _CardState:
        return self._cards.setdefault(reader, _CardState())

    def reader_info(self, reader: str) -> ReaderInfo | None:
        return next((r for r in self.backend.readers() if r.name == reader), None)

    def reader_change(self) -> asyncio.Event:
        """An event set once the next reader/card event has been handled.

        Take it BEFORE looking at the readers, then wait on it: no change is missed.
        """
        return self._reader_change

    def card_epoch(self, reader: str) -> int:
        """Changes so far to the card in ``reader``: a removal or insertion bumps it."""
        return self._card_epochs.get(reader, 0)

    def card_unsupported(self, reader: str) -> bool:
        """The card in ``reader`` was identified and no driver can use it."""
        state = self._cards.get(reader)
        return state is not None and state.unsupported

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
        _info, result = await self._card_job(reader, work, expect_serial=expect_serial)
        return result

    async def _card_job(
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
        opener, cache, known = self._open_session, self._card_cache, state.known

        def job(
            connection: SmartCardConnection,
        ) -> tuple[CardInfo, registry.KnownCard | None, T]:
            if known is None:
                session = opener(connection, cache)
            else:
                session = opener(connection, cache, known)
            if expect_serial is not None and session.info.serial != expect_serial:
                raise CardRemovedError("another card was put in the reader")
            return session.info, registry.known_card(session), work(session)

        try:
            info, resume, result = await asyncio.wrap_future(self.backend.run(reader, job))
        except NoCardError:
            if expect_serial is not None:
                raise CardRemovedError("the card was removed") from None
            raise
        if self._cards.get(reader) is state:
            state.seen(info, resume)
        return info, result

    # -- issue 13 item 4: LOG OFF after every PIN use (to be ported into the card book) -----

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
                await self.card_job(reader, lambda session: session.log_off(),
                                    expect_serial=serial)
            except Exception as exc:  # noqa: BLE001 - nobody waits for this job
                logger.info("no LOG OFF on %r: %s", reader, exc)

        task = asyncio.get_running_loop().create_task(log_off(), name=f"log-off {reader}")
        self._log_offs.add(task)
        task.add_done_callback(self._log_offs.discard)

    async def card_certificate(
        self, reader: str, role: KeyRole
    ) -> tuple[CardInfo, bytes | None, list[SignatureAlgorithm]]:
        """The card in ``reader``: its info, its certificate for ``role`` (None: none on
        the card) and what that key can do. Read once per inserted card."""
        state = self._state(reader)
        remembered = state.certificates.get(role)
        if state.info is not None and remembered is not None:
            return state.info, remembered[0], list(remembered[1])

        def read(session: CardSession) -> tuple[bytes | None, list[SignatureAlgorithm]]:
            return session.certificate(role), session.signature_algorithms(role)

        info, (certificate, algorithms) = await self._card_job(reader, read)
        if self._cards.get(reader) is state and state.info == info:
            state.certificates[role] = (certificate, tuple(algorithms))
        return info, certificate, algorithms

    def _remember_pin(
        self, reader: str, serial: str, pin: PinInfo, status: PinStatus | None
    ) -> None:
        state = self._cards.get(reader)
        if state is not None:
            state.remember_pin(serial, pin, status)

    async def _identify(self, reader: str) -> None:
        """Read the type, holder and serial of the card in ``reader`` (for tray and status)."""
        state = self._state(reader)
        try:
            await self.card_job(reader, lambda session: None)
        except AgentError as exc:
            state.unsupported = True
            logger.info("could not identify the card in %r: %s", reader, exc)
        except Exception:
            logger.exception("identifying the card in %r failed", reader)

    def _on_backend_event(self, event: ReaderEvent) -> None:
        """Called on the backend's thread: hand the event to the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the loop is closing
            pass

    async def _process_events(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._handle_event(event)
            except Exception:
                logger.exception("handling %s failed", event)

    async def _handle_event(self, event: ReaderEvent) -> None:
        logger.info("%s: %s", event.kind.value, event.reader)
        if event.kind is not EventKind.READER_ADDED:
            self._card_epochs[event.reader] = self.card_epoch(event.reader) + 1
        if event.kind in (EventKind.CARD_REMOVED, EventKind.READER_REMOVED):
            self._signal_change()  # close PIN prompts for this card before anything else
        if event.kind is EventKind.CARD_INSERTED:
            self._cards[event.reader] = _CardState()
            if self.config.identify_cards:
                await self._identify(event.reader)
        elif event.kind in (EventKind.CARD_REMOVED, EventKind.READER_REMOVED):
            self._cards.pop(event.reader, None)
        state = self._cards.get(event.reader)
        info = state.info if state is not None else None
        self._broadcast(
            {"type": event.kind.value, "reader": event.reader, "card": _card_json(info)}
        )
        if event.kind is EventKind.CARD_INSERTED:
            self._notice(Notice.CARD_INSERTED, (info.holder_name or "") if info else "")
        elif event.kind is EventKind.CARD_REMOVED:
            self._notice(Notice.CARD_REMOVED, event.reader)
        self._signal_change()
        self._changed()

    def _signal_change(self) -> None:
        changed, self._reader_change = self._reader_change, asyncio.Event()
        changed.set()

    def _broadcast(self, payload: dict[str, Any]) -> None:
        for session in list(self._sessions):
            session._deliver(payload)

    def _pin_blocked(self, reader: str, pin_name: str) -> None:
        state = self._cards.get(reader)
        if state is not None:
            state.pin_blocked = True
        self._notice(Notice.PIN_BLOCKED, pin_name)
        self._changed()

    # -- operations bookkeeping -----------------------------------------------------------

    def _operation_started(self) -> None:
        self._active_operations += 1
        self._changed()

    def _operation_finished(self) -> None:
        self._active_operations -= 1
        self._changed()

    # -- AgentControl (thread-safe) -------------------------------------------------------

    def snapshot(self) -> Snapshot:
        readers = self.backend.readers()
        cards = dict(self._cards)
        summaries = []
        for reader in readers:
            card = None
            if reader.card_present:
                state = cards.get(reader.name)
                info = state.info if state is not None else None
                card = CardSummary(
                    reader=reader.name,
                    card_type=info.card_type if info else None,
                    holder_first_name=None,
                    holder_name=info.holder_name if info else None,
                    serial=info.serial if info else None,
                    pin_blocked=bool(state and state.pin_blocked),
                )
            summaries.append(
                ReaderSummary(
                    reader.name, card, pinpad=bool(reader.pinpad and reader.pinpad.can_verify)
                )
            )
        if not readers:
            state_ = AgentState.NO_READER
        elif not any(r.card_present for r in readers):
            state_ = AgentState.NO_CARD  # also while a request waits for the card
        elif self._active_operations > 0:
            state_ = AgentState.BUSY
        else:
            state_ = AgentState.READY
        return Snapshot(
            state=state_,
            readers=tuple(summaries),
            connected_origins=tuple(sorted({s.origin for s in list(self._sessions)})),
            allowed_origins=self.approvals.origins()
            if self.config.policy.allow_user_approval
            else (),
            policy_origins=tuple(sorted(self._policy_origins)),
            version=self.config.version,
            port=self.config.port,
        )

    def subscribe(
        self, on_change: Callable[[Snapshot], None], on_notice: Callable[[Notice, str], None]
    ) -> Callable[[], None]:
        entry = (on_change, on_notice)
        with self._listeners_lock:
            self._listeners.append(entry)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if entry in self._listeners:
                    self._listeners.remove(entry)

        return unsubscribe

    def revoke_origin(self, origin: str) -> None:
        try:
            origin = normalize_origin(origin)
        except OriginNotAllowedError:
            pass
        self.approvals.revoke(origin)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._revoked, origin)
        else:
            self._revoked(origin)

    def _revoked(self, origin: str) -> None:
        for session in list(self._sessions):
            if session.origin == origin:
                session._approved_once = False
        self._changed()

    def log_folder(self) -> str:
        return str(self.config.log_dir)

    def shutdown(self) -> None:
        logger.info("shutdown requested")
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._shutdown.set)
        else:
            self._shutdown.set()

    def _listeners_copy(
        self,
    ) -> list[tuple[Callable[[Snapshot], None], Callable[[Notice, str], None]]]:
        with self._listeners_lock:
            return list(self._listeners)

    def _changed(self) -> None:
        listeners = self._listeners_copy()
        if not listeners:
            return
        snapshot = self.snapshot()
        for on_change, _ in listeners:
            try:
                on_change(snapshot)
            except Exception:
                logger.exception("tray state callback failed")

    def _notice(self, notice: Notice, text: str) -> None:
        for _, on_notice in self._listeners_copy():
            try:
                on_notice(notice, text)
            except Exception:
                logger.exception("tray notice callback failed")


class ClientSession:
    """One page connection, bound to its origin; the WebSocket layer's handle on the core."""

    def __init__(self, service: AgentService, origin: str) -> None:
        self.origin = origin
        self._service = service
        self._approved_once = False  # "allow once": for the life of this connection
        self._denied = False
        self._closed = False
        self._consent_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscriber: EventSink | None = None

    @property
    def approved(self) -> bool:
        return self._approved_once or self._service.is_approved(self.origin)

    # -- plumbing --------------------------------------------------------------------------

    async def _run(self, operation: Coroutine[Any, Any, T]) -> T:
        """Run one request as a task that :meth:`close` can cancel."""
        if self._closed:
            operation.close()
            raise UserCancelledError("the connection is closed")
        task = asyncio.create_task(operation)
        self._tasks.add(task)
        self._service._operation_started()
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._closed and current is not None and not current.cancelling():
                raise UserCancelledError("the page closed the connection") from None
            raise
        finally:
            self._tasks.discard(task)
            self._service._operation_finished()

    async def _ensure_approved(self, timeout: float, lang: str | None = None) -> None:
        """Make sure the origin may use the card, asking the user when needed.

        Raises:
            OriginNotAllowedError: the user or the machine policy said no.
        """
        if self.approved:
            return
        service = self._service
        if self._denied or not service.config.policy.allow_user_approval:
            raise OriginNotAllowedError(f"{self.origin} may not use the ID card")
        async with self._consent_lock:
            if self.approved:
                return
            if self._denied:
                raise OriginNotAllowedError(f"{self.origin} may not use the ID card")
            request = ConsentRequest(self.origin, ConsentKind.SITE, timeout=timeout, lang=lang)
            decision = await _ask(service.interaction.ask_consent(request), timeout)
            if decision is ConsentDecision.ALLOW_ALWAYS:
                service.approvals.approve(self.origin, ConsentKind.SITE)
                service._changed()
            elif decision is ConsentDecision.ALLOW_ONCE:
                self._approved_once = True
                logger.info("user allowed %s for this connection", self.origin)
            else:
                self._denied = True
                logger.info("user denied %s", self.origin)
                raise OriginNotAllowedError(f"the user did not allow {self.origin}")

    def _usable_readers(self) -> list[ReaderInfo] | CardWaitReason:
        """The readers holding a card the agent may use, or why there is none."""
        service = self._service
        readers = service.backend.readers()
        if not readers:
            return CardWaitReason.NO_READER
        present = [r for r in readers if r.card_present]
        if not present:
            return CardWaitReason.NO_CARD
        usable = [r for r in present if not service.card_unsupported(r.name)]
        return usable or CardWaitReason.UNRECOGNISED

    async def _until_card(
        self,
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
        service = self._service
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        changed = service.reader_change()
        found = await probe()
        while isinstance(found, CardWaitReason):
            reason = found
            logger.info("%s waits for a card (%s)", self.origin, reason.value)
            request = CardWaitRequest(
                origin=self.origin,
                operation=operation,
                reason=reason,
                timeout=max(deadline - loop.time(), 0.0),
                holder=holder,
                lang=lang,
            )
            async with card_notice(service.interaction, request):
                while found is reason:
                    try:
                        async with asyncio.timeout_at(deadline):
                            await changed.wait()
                    except TimeoutError:
                        raise self._card_wait_timeout(reason, timeout) from None
                    changed = service.reader_change()
                    found = await probe()
        return found

    @staticmethod
    def _card_wait_timeout(reason: CardWaitReason, timeout: float) -> AgentError:
        if reason is CardWaitReason.WRONG_CARD:
            return CertificateNotFoundError(
                f"no card in the readers holds that signing certificate (waited {timeout:g} s)"
            )
        what = "card reader" if reason is CardWaitReason.NO_READER else "ID card"
        return UserTimeoutError(f"no {what} was connected within {timeout:g} s")

    async def _pick_card(self, operation: Operation, timeout: float, lang: str | None) -> str:
        """The reader whose card to use: the only one, or the one the user chooses.

        Waits (with the card notice) while there is no reader or no usable card.
        """

        async def probe() -> list[ReaderInfo] | CardWaitReason:
            return self._usable_readers()

        present = await self._until_card(probe, operation, timeout, lang)
        if len(present) == 1:
            return present[0].name
        service = self._service
        choices = []
        for reader in present:
            state = service._cards.get(reader.name)
            if state is None or state.info is None:
                await service._identify(reader.name)
                state = service._cards.get(reader.name)
            info = state.info if state is not None else None
            choices.append(
                CardChoice(
                    reader=reader.name,
                    card_type=info.card_type if info else "unknown card",
                    holder=info.holder_name if info else None,
                    serial=info.serial if info else "",
                )
            )
        request = ChoiceRequest(self.origin, operation, tuple(choices), timeout, lang=lang)
        index = await _ask(service.interaction.choose_card(request), timeout)
        if not 0 <= index < len(choices):
            raise UserCancelledError("no card chosen")
        return choices[index].reader

    async def _while_card_present(self, reader: str, epoch: int, prompt: Awaitable[T]) -> T:
        """Await a PIN prompt; close it and fail when the card leaves ``reader`` meanwhile.

        ``epoch`` is :meth:`AgentService.card_epoch` when the card was read for this
        request; any removal (or swap) since then ends the prompt, and whatever PIN the
        user typed is dropped, never sent.

        Raises:
            CardRemovedError: the card was removed before or while the user answered.
        """
        service = self._service
        asking = asyncio.ensure_future(prompt)
        try:
            while True:
                changed = service.reader_change()
                if service.card_epoch(reader) != epoch:
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

    async def _plan_pin(
        self,
        reader: str,
        epoch: int,
        pin_for: Callable[[CardSession], PinInfo],
        *,
        role: KeyRole | None = None,
        info: CardInfo | None = None,
    ) -> _PinPlan:
        """The PIN to ask for and its status, for the dialog.

        With ``role`` and ``info`` (the card the operation read), a status remembered for
        that card's ``role`` PIN spares the card job (the job that sends the PIN confirms
        it first); else one card job reads it, on the card ``info`` when given.
        """
        service = self._service
        state = service._cards.get(reader)
        remembered: tuple[PinInfo, PinStatus] | None = None
        if role is not None and info is not None and state is not None and state.info == info:
            known_pin = state.pins.get(role)
            known = state.pin_statuses.get(known_pin) if known_pin is not None else None
            remembered = (known_pin, known) if known_pin is not None and known is not None else None
        if remembered is None:

            def read(session: CardSession) -> tuple[PinInfo, PinStatus]:
                chosen = pin_for(session)
                return chosen, session.pin_status(chosen)

            expect = info.serial if info is not None else None
            info, (pin, status) = await service._card_job(reader, read, expect_serial=expect)
            state = service._cards.get(reader)
            if role is not None and state is not None and state.info == info:
                state.pins[role] = pin
            service._remember_pin(reader, info.serial, pin, status)
        else:
            pin, status = remembered
        assert info is not None
        features = service.reader_info(reader)
        pinpad = features.pinpad if features is not None else None
        return _PinPlan(
            reader=reader,
            epoch=epoch,
            info=info,
            pin=pin,
            status=status,
            pinpad_verify=bool(pinpad and pinpad.can_verify),
            pinpad_modify=bool(pinpad and pinpad.modify_pin_direct is not None),
            probed=remembered is None,
        )

    async def _with_pin(
        self,
        plan: _PinPlan,
        operation: Operation,
        timeout: float,
        attempt: Callable[[PinRequest, bool], Awaitable[T]],
        detail: str | None = None,
        lang: str | None = None,
    ) -> T:
        """Ask for the PIN and run ``attempt``; after a wrong PIN ask again (tries left shown).

        Each attempt is one PIN the user typed (or typed on the PIN pad) for this request;
        the core never retries by itself. ``attempt(request, confirm)``: with ``confirm``,
        its card job first checks the card has the tries the dialog showed
        (:func:`_confirm_pin_status`: the status was remembered, not read for this request);
        when it has fewer, nothing was sent and the user is asked again with the new count.
        """
        service = self._service
        if plan.status.blocked or plan.status.tries_left == 0:
            service._pin_blocked(plan.reader, plan.pin.name)
            raise PinBlockedError(plan.pin.name)
        if plan.status.must_change:
            # Never ask for a PIN the card will refuse to use (EstEID 2025 initial PINs).
            raise PinChangeRequiredError(plan.pin.name)
        tries_left = plan.status.tries_left
        confirm = not plan.probed
        serial = plan.info.serial
        while True:
            request = PinRequest(
                origin=self.origin,
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
            except _PinStatusChanged as exc:
                status = exc.status
                service._remember_pin(plan.reader, serial, plan.pin, status)
                logger.info(
                    "%s: %s tries left, not %s as shown: the PIN was not sent",
                    plan.pin.name, status.tries_left, tries_left,
                )
                if status.blocked or status.tries_left == 0:
                    service._pin_blocked(plan.reader, plan.pin.name)
                    raise PinBlockedError(plan.pin.name) from None
                if status.must_change:
                    raise PinChangeRequiredError(plan.pin.name) from None
                tries_left, confirm = status.tries_left, False
                continue
            except InvalidPinError as exc:
                logger.info("wrong %s, %d tries left", exc.pin_name, exc.tries_left)
                status = PinStatus(plan.pin, exc.tries_left, blocked=exc.tries_left <= 0)
                service._remember_pin(plan.reader, serial, plan.pin, status)
                if exc.tries_left <= 0:
                    service._pin_blocked(plan.reader, plan.pin.name)
                    raise PinBlockedError(plan.pin.name) from None
                if not service.config.reask_wrong_pin:
                    raise
                tries_left, confirm = exc.tries_left, False
                continue
            except PinBlockedError:
                service._remember_pin(plan.reader, serial, plan.pin, None)
                service._pin_blocked(plan.reader, plan.pin.name)
                raise
            except PinPadCancelledError:
                raise UserCancelledError("cancelled on the PIN pad") from None
            except PinPadTimeoutError:
                raise UserTimeoutError("nobody typed the PIN on the PIN pad") from None
            # A PIN accepted: the card's counter is full again.
            full = PinStatus(plan.pin, plan.pin.max_tries)
            service._remember_pin(plan.reader, serial, plan.pin, full)
            return result

    def _verify_attempt(
        self,
        plan: _PinPlan,
        timeout: float,
        action: Callable[[CardSession, PinEntry], T],
    ) -> Callable[[PinRequest, bool], Awaitable[T]]:
        """One PIN entry (dialog or PIN pad) followed by ``action`` on the card, in one job
        that first confirms the PIN status when ``confirm`` (see :meth:`_with_pin`)."""
        service = self._service

        def job(request: PinRequest, confirm: bool, value: PinEntry) -> Callable[[CardSession], T]:
            def run(session: CardSession) -> T:
                if confirm:
                    _confirm_pin_status(session, plan.pin, request.tries_left)
                return action(session, value)

            return run

        async def attempt(request: PinRequest, confirm: bool) -> T:
            if plan.pinpad_verify:
                async with service.interaction.pinpad_notice(request):
                    return await _logged_off(service, plan, service.card_job(
                        plan.reader,
                        job(request, confirm, PINPAD),
                        expect_serial=plan.info.serial,
                    ))
            value = await self._while_card_present(
                plan.reader, plan.epoch, _ask(service.interaction.ask_pin(request), timeout)
            )
            return await _logged_off(service, plan, service.card_job(
                plan.reader, job(request, confirm, value), expect_serial=plan.info.serial
            ))

        return attempt

    # -- the requests ----------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """Agent version and readers; never touches a card.

        Unapproved origins learn only the version and whether readers hold cards.
        """
        service = self._service
        readers = service.backend.readers()
        if not self.approved:
            return {
                "version": service.config.version,
                "approved": False,
                "readers": [{"cardPresent": r.card_present} for r in readers],
            }
        entries = []
        for reader in readers:
            state = service._cards.get(reader.name)
            info = state.info if state is not None and reader.card_present else None
            entries.append(
                {
                    "name": reader.name,
                    "cardPresent": reader.card_present,
                    "pinpad": bool(reader.pinpad and reader.pinpad.can_verify),
                    "card": _card_json(info),
                }
            )
        return {"version": service.config.version, "approved": True, "readers": entries}

    async def get_signing_certificate(
        self, *, timeout: float | None = None, lang: str | None = None
    ) -> dict[str, Any]:
        """The signing certificate and what its key can do (web-eid.js shape)."""
        return await self._run(
            self._get_signing_certificate(self._service.config.timeout(timeout), lang)
        )

    async def _get_signing_certificate(self, timeout: float, lang: str | None) -> dict[str, Any]:
        await self._ensure_approved(timeout, lang)
        reader = await self._pick_card(Operation.GET_CERTIFICATE, timeout, lang)
        service = self._service
        async with service._queue.hold(reader, self.origin, timeout):
            _info, certificate, algorithms = await service.card_certificate(
                reader, KeyRole.SIGNING
            )
        if certificate is None:
            raise NotSupportedError("this card has no signing certificate")
        return {
            "certificate": base64.b64encode(certificate).decode("ascii"),
            "supportedSignatureAlgorithms": [a.to_json() for a in algorithms],
        }

    async def authenticate(
        self, challenge_nonce: str, *, timeout: float | None = None, lang: str | None = None
    ) -> dict[str, Any]:
        """A Web eID ``web-eid:1.0`` token over this origin and ``challenge_nonce``.

        Raises:
            InvalidArgumentError: the nonce is not 44 to 128 characters of base64.
            InvalidPinError, PinBlockedError, UserCancelledError, UserTimeoutError, ...
        """
        nonce = token.validate_nonce(challenge_nonce)
        return await self._run(
            self._authenticate(nonce, self._service.config.timeout(timeout), lang)
        )

    async def _authenticate(self, nonce: str, timeout: float, lang: str | None) -> dict[str, Any]:
        service = self._service
        await self._ensure_approved(timeout, lang)
        reader = await self._pick_card(Operation.AUTHENTICATE, timeout, lang)
        epoch = service.card_epoch(reader)
        role = KeyRole.AUTHENTICATION
        async with service._queue.hold(reader, self.origin, timeout):
            info, certificate, algorithms = await service.card_certificate(reader, role)
            if certificate is None:
                raise NotSupportedError("this card has no authentication certificate")
            algorithm = token.token_algorithm(certificate, algorithms)
            digest = token.auth_digest(self.origin, nonce, algorithm.hash_function)
            plan = await self._plan_pin(
                reader, epoch, lambda s: s.pin_for(role), role=role, info=info
            )

            def sign(session: CardSession, pin: PinEntry) -> bytes:
                return session.sign(
                    KeyRole.AUTHENTICATION,
                    digest,
                    algorithm.hash_function,
                    pin,
                    padding=algorithm.padding,
                )

            signature = await self._with_pin(
                plan,
                Operation.AUTHENTICATE,
                timeout,
                self._verify_attempt(plan, timeout, sign),
                lang=lang,
            )
        logger.info(
            "authenticated %s with the card in %r (%s)", self.origin, reader, algorithm.name
        )
        return token.build_token(certificate, algorithm, signature, service.config.app_version)

    async def sign(
        self,
        certificate: str,
        hash: str,  # noqa: A002 - web-eid.js names it so
        hash_function: str,
        *,
        timeout: float | None = None,
        lang: str | None = None,
    ) -> dict[str, Any]:
        """Sign ``hash`` with the key of ``certificate``, on whichever card holds it.

        When no inserted card holds the certificate, the user is asked to insert the
        right one (card notice, reason WRONG_CARD) until ``timeout``.

        Raises:
            InvalidArgumentError: bad base64, unknown hash function, wrong hash length.
            CertificateNotFoundError: other cards stayed in the readers until the timeout.
            UserTimeoutError: no card at all (or no reader) until the timeout.
        """
        der = _b64decode(certificate, "certificate")
        token.load_certificate(der)
        known = WEB_EID_HASHES.get(hash_function)
        if known is None:
            raise InvalidArgumentError(f"unsupported hashFunction {hash_function!r}")
        digest = _b64decode(hash, "hash")
        expected = known.length
        if len(digest) != expected:
            raise InvalidArgumentError(
                f"a {hash_function} hash is {expected} bytes, not {len(digest)}"
            )
        return await self._run(
            self._sign(der, digest, hash_function, self._service.config.timeout(timeout), lang)
        )

    async def _holding_reader(self, certificate: bytes) -> tuple[str, int] | CardWaitReason:
        """The reader (and its card epoch) whose card holds ``certificate``, or why none."""
        service = self._service
        usable = self._usable_readers()
        if isinstance(usable, CardWaitReason):
            return usable
        for reader in usable:
            epoch = service.card_epoch(reader.name)
            try:
                _info, held, _algorithms = await service.card_certificate(
                    reader.name, KeyRole.SIGNING
                )
            except AgentError as exc:
                logger.info("skipping the card in %r: %s", reader.name, exc)
                continue
            if held == certificate:
                return reader.name, epoch
        return CardWaitReason.WRONG_CARD

    async def _find_certificate(
        self, certificate: bytes, timeout: float, lang: str | None
    ) -> tuple[str, int]:
        """The reader whose card holds ``certificate``; waits for it to be inserted."""
        return await self._until_card(
            lambda: self._holding_reader(certificate),
            Operation.SIGN,
            timeout,
            lang,
            holder=holder_name(certificate, all_given_names=True),
        )

    async def _sign(
        self,
        certificate: bytes,
        digest: bytes,
        hash_function: str,
        timeout: float,
        lang: str | None,
    ) -> dict[str, Any]:
        service = self._service
        await self._ensure_approved(timeout, lang)
        reader, epoch = await self._find_certificate(certificate, timeout, lang)
        role = KeyRole.SIGNING
        async with service._queue.hold(reader, self.origin, timeout):
            info, held, algorithms = await service.card_certificate(reader, role)
            if held != certificate:
                raise CardRemovedError("the card holding the certificate was removed")
            algorithm = next((a for a in algorithms if a.hash_function == hash_function), None)
            if algorithm is None:
                raise NotSupportedError(f"this card cannot sign a {hash_function} hash")
            plan = await self._plan_pin(
                reader, epoch, lambda s: s.pin_for(role), role=role, info=info
            )
            padding = "PSS" if algorithm.padding_scheme == "PSS" else None

            def sign(session: CardSession, pin: PinEntry) -> bytes:
                return session.sign(KeyRole.SIGNING, digest, hash_function, pin, padding=padding)

            detail = f"a document ({hash_function} hash {digest.hex()[:16]}…)"
            signature = await self._with_pin(
                plan,
                Operation.SIGN,
                timeout,
                self._verify_attempt(plan, timeout, sign),
                detail,
                lang,
            )
        logger.info(
            "signed a %s hash for %s with the card in %r", hash_function, self.origin, reader
        )
        return {
            "signature": base64.b64encode(signature).decode("ascii"),
            "signatureAlgorithm": algorithm.to_json(),
        }

    async def read_identity(
        self, *, photo: bool = True, timeout: float | None = None, lang: str | None = None
    ) -> dict[str, Any]:
        """Name, address and (optionally) photo, after the user agreed for this origin."""
        return await self._run(
            self._read_identity(photo, self._service.config.timeout(timeout), lang)
        )

    async def _read_identity(
        self, photo: bool, timeout: float, lang: str | None
    ) -> dict[str, Any]:
        service = self._service
        await self._ensure_approved(timeout, lang)
        reader = await self._pick_card(Operation.READ_IDENTITY, timeout, lang)
        if not service.is_approved(self.origin, ConsentKind.IDENTITY):
            state = service._cards.get(reader)
            holder = state.info.holder_name if state is not None and state.info else None
            request = ConsentRequest(
                self.origin, ConsentKind.IDENTITY, holder, timeout, lang=lang
            )
            decision = await _ask(service.interaction.ask_consent(request), timeout)
            if decision is ConsentDecision.DENY:
                raise UserCancelledError("the user did not allow reading the identity data")
            if decision is ConsentDecision.ALLOW_ALWAYS:
                service.approvals.approve(self.origin, ConsentKind.IDENTITY)
        async with service._queue.hold(reader, self.origin, timeout):
            identity = await service.card_job(
                reader, lambda session: session.read_identity(photo=photo)
            )
        logger.info("identity read for %s from the card in %r", self.origin, reader)
        result: dict[str, Any] = identity.to_json()
        return result

    async def pin_status(
        self, *, timeout: float | None = None, lang: str | None = None
    ) -> dict[str, Any]:
        """Tries left for each PIN of the card (no try is spent)."""
        return await self._run(self._pin_status(self._service.config.timeout(timeout), lang))

    async def _pin_status(self, timeout: float, lang: str | None) -> dict[str, Any]:
        service = self._service
        await self._ensure_approved(timeout, lang)
        reader = await self._pick_card(Operation.CHANGE_PIN, timeout, lang)

        def read(session: CardSession) -> tuple[CardInfo, list[PinStatus]]:
            pins = list(session.info.pins)
            if not pins:
                for role in KeyRole:
                    pin = session.pin_for(role)
                    if pin not in pins:
                        pins.append(pin)
            return session.info, [session.pin_status(pin) for pin in pins]

        async with service._queue.hold(reader, self.origin, timeout):
            info, statuses = await service.card_job(reader, read)
        for status in statuses:
            service._remember_pin(reader, info.serial, status.pin, status)
        return {
            "pins": [
                {
                    "name": s.pin.name,
                    "triesLeft": s.tries_left,
                    "maxTries": s.pin.max_tries,
                    "blocked": s.blocked,
                    "mustChange": s.must_change,
                }
                for s in statuses
            ],
            "reader": reader,
            "cardType": info.card_type,
        }

    async def change_pin(
        self,
        *,
        timeout: float | None = None,
        pin_name: str | None = None,
        lang: str | None = None,
    ) -> dict[str, Any]:
        """Change a PIN through the agent's own dialog (or the PIN pad).

        ``pin_name`` picks the PIN on cards with several (default: the authentication PIN).
        """
        return await self._run(
            self._change_pin(pin_name, self._service.config.timeout(timeout), lang)
        )

    async def _change_pin(
        self, pin_name: str | None, timeout: float, lang: str | None
    ) -> dict[str, Any]:
        service = self._service
        await self._ensure_approved(timeout, lang)
        reader = await self._pick_card(Operation.CHANGE_PIN, timeout, lang)
        epoch = service.card_epoch(reader)

        def choose(session: CardSession) -> PinInfo:
            if pin_name is None:
                return session.pin_for(KeyRole.AUTHENTICATION)
            for pin in session.info.pins:
                if pin.name == pin_name:
                    return pin
            raise InvalidArgumentError(f"this card has no PIN named {pin_name!r}")

        async with service._queue.hold(reader, self.origin, timeout):
            plan = await self._plan_pin(reader, epoch, choose)

            async def attempt(request: PinRequest, confirm: bool) -> None:
                def change(old: PinEntry, new: str | None) -> Callable[[CardSession], None]:
                    def run(session: CardSession) -> None:
                        if confirm:
                            _confirm_pin_status(session, plan.pin, request.tries_left)
                        session.change_pin(plan.pin, old, new)

                    return run

                if plan.pinpad_modify:
                    async with service.interaction.pinpad_notice(request):
                        await _logged_off(service, plan, service.card_job(
                            reader, change(PINPAD, None), expect_serial=plan.info.serial
                        ))
                    return
                old, new = await self._while_card_present(
                    reader, plan.epoch, _ask(service.interaction.ask_pin_change(request), timeout)
                )
                await _logged_off(service, plan, service.card_job(
                    reader, change(old, new), expect_serial=plan.info.serial
                ))

            await self._with_pin(plan, Operation.CHANGE_PIN, timeout, attempt, lang=lang)
        logger.info("%s changed on the card in %r", plan.pin.name, reader)
        return {
            "pin": plan.pin.name,
            "changed": True,
            "reader": reader,
            "cardType": plan.info.card_type,
        }

    # -- events ----------------------------------------------------------------------------

    def subscribe(self, callback: EventSink) -> None:
        """Receive reader/card events (delivered only while the origin is approved)."""
        self._subscriber = callback

    def unsubscribe(self) -> None:
        self._subscriber = None

    def _deliver(self, payload: dict[str, Any]) -> None:
        callback = self._subscriber
        if callback is None or self._closed or not self.approved:
            return
        try:
            callback(dict(payload))
        except Exception:
            logger.exception("event delivery to %s failed", self.origin)

    async def close(self) -> None:
        """The page went away: cancel its pending prompts and operations."""
        if self._closed:
            return
        self._closed = True
        self._subscriber = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._service._forget_session(self)
        logger.info("connection from %s closed", self.origin)
