"""The operations core's service: life cycle, reader events, the tray's control interface.

One :class:`AgentService` per process owns the reader backend and the user-interaction
provider, and builds the collaborators every :class:`~agent.core.session.ClientSession`
is handed: the consent gate (:mod:`agent.core.consent`), the card book
(:mod:`agent.core.cards`), the card waiter (:mod:`agent.core.waiting`), the PIN desk
(:mod:`agent.core.pin`) and the card queue (:mod:`agent.core.queue`). Each WebSocket
connection gets a session bound to the handshake ``Origin``.

Everything here runs on the asyncio event loop; card work goes to the backend's single
worker thread. The tray sees and steers the core through
:class:`agent.core.control.AgentControl`, which this class implements (those methods are safe
to call from any thread).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from agent.cards import registry
from agent.core.cards import CardBook, SessionOpener
from agent.core.config import AgentConfig
from agent.core.consent import ApprovalStore, ConsentGate
from agent.core.control import AgentState, CardSummary, Notice, ReaderSummary, Snapshot
from agent.core.interaction import ConsentKind, UserInteraction
from agent.core.origin import normalize_origin
from agent.core.pin import PinDesk
from agent.core.queue import CardQueue
from agent.core.session import ClientSession, SessionTools
from agent.core.values import CardEvent
from agent.core.waiting import CardWaiter
from agent.errors import OriginNotAllowedError
from agent.smartcard.backend import EventKind, ReaderBackend, ReaderEvent

__all__ = ["AgentService", "ClientSession", "SessionOpener"]

logger = logging.getLogger(__name__)


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
        on_idle: Callable[[], object] | None = None,
    ) -> None:
        """Build the core (nothing starts until :meth:`start`).

        Args:
            backend: the readers.
            interaction: how to ask the user (dialogs, console, PIN pad notices).
            config: settings, folders and machine policy.
            open_session: the driver dispatch (tests may inject one).
            card_cache: handed to ``open_session`` as its ``cache`` (None: the driver's own
                process-wide cache).
            on_idle: called when the last client session closes (the resident agent gives a
                burst's memory back to the system there).
        """
        self._on_idle = on_idle
        self.backend = backend
        self.interaction = interaction
        self.config = config
        self.approvals = ApprovalStore(config.approvals_file)
        self.consent = ConsentGate(
            self.approvals, config.policy, interaction, on_change=self._changed
        )
        self.cards = CardBook(backend, open_session=open_session, card_cache=card_cache)
        waiter = CardWaiter(self.cards, interaction)
        pins = PinDesk(
            self.cards,
            waiter,
            interaction,
            on_blocked=self._pin_blocked,
            reask_wrong_pin=config.reask_wrong_pin,
        )
        self._tools = SessionTools(
            config=config,
            consent=self.consent,
            book=self.cards,
            waiter=waiter,
            pins=pins,
            queue=CardQueue(),
            host=self,
        )
        self._sessions: set[ClientSession] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: asyncio.Queue[ReaderEvent] = asyncio.Queue()
        self._event_task: asyncio.Task[None] | None = None
        self._shutdown = asyncio.Event()
        self._active_operations = 0
        self._listeners: list[tuple[Callable[[Snapshot], None], Callable[[Notice, str], None]]]
        self._listeners = []
        self._listeners_lock = threading.Lock()

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start watching readers (reader and card events flow from now on)."""
        self._loop = asyncio.get_running_loop()
        self._event_task = asyncio.create_task(self._process_events(), name="reader-events")
        await asyncio.to_thread(self.backend.start, self._on_backend_event)
        if self.config.identify_cards:
            for reader in self.backend.readers():
                if reader.card_present and self.cards.state(reader.name) is None:
                    await self.cards.identify(reader.name)
        logger.info("agent core started (version %s)", self.config.version)
        self._changed()

    async def stop(self) -> None:
        """Close every client session and release the readers."""
        for session in list(self._sessions):
            await session.close()
        await self.cards.log_offs_done()  # cards logged off first
        if self._event_task is not None:
            self._event_task.cancel()
            await asyncio.gather(self._event_task, return_exceptions=True)
            self._event_task = None
        await asyncio.to_thread(self.backend.stop)
        logger.info("agent core stopped")

    async def wait_shutdown(self) -> None:
        """Return once :meth:`shutdown` was called (tray Quit)."""
        await self._shutdown.wait()

    def events_pending(self) -> bool:
        """Reader events received and not yet handled."""
        return not self._events.empty()

    # -- origins and sessions --------------------------------------------------------------

    def origin_precheck(self, origin: str) -> None:
        """Refuse a connection whose origin is malformed or barred by machine policy.

        Raises:
            OriginNotAllowedError: see :meth:`ConsentGate.precheck`.
        """
        self.consent.precheck(origin)

    def is_approved(self, origin: str, kind: ConsentKind = ConsentKind.SITE) -> bool:
        """Allowed by machine policy (sites only) or by a stored user approval."""
        return self.consent.is_approved(origin, kind)

    def open_client(self, origin: str) -> ClientSession:
        """A session for one connection; ``origin`` is the handshake ``Origin`` header."""
        self.consent.precheck(origin)
        session = ClientSession(normalize_origin(origin), self._tools)
        self._sessions.add(session)
        logger.info("connection from %s", session.origin)
        self._changed()
        return session

    # SessionHost: what sessions report.

    def operation_started(self) -> None:
        self._active_operations += 1
        self._changed()

    def operation_finished(self) -> None:
        self._active_operations -= 1
        self._changed()

    def session_closed(self, session: ClientSession) -> None:
        self._sessions.discard(session)
        self._changed()
        if not self._sessions and self._on_idle is not None:
            self._on_idle()

    # -- reader events ---------------------------------------------------------------------

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
        self.cards.card_event(event)  # a removal closes PIN prompts for it before anything else
        if event.kind is EventKind.CARD_INSERTED and self.config.identify_cards:
            await self.cards.identify(event.reader)
        info = self.cards.info(event.reader)
        for session in list(self._sessions):
            session.deliver(CardEvent(event.kind, event.reader, info))
        if event.kind is EventKind.CARD_INSERTED:
            self._notice(Notice.CARD_INSERTED, (info.holder_name or "") if info else "")
        elif event.kind is EventKind.CARD_REMOVED:
            self._notice(Notice.CARD_REMOVED, event.reader)
        self.cards.signal_change()
        self._changed()

    def _pin_blocked(self, reader: str, pin_name: str) -> None:
        self.cards.mark_pin_blocked(reader)
        self._notice(Notice.PIN_BLOCKED, pin_name)
        self._changed()

    # -- AgentControl (thread-safe) -------------------------------------------------------

    def snapshot(self) -> Snapshot:
        readers = self.backend.readers()
        summaries = []
        for reader in readers:
            card = None
            if reader.card_present:
                info = self.cards.info(reader.name)
                card = CardSummary(
                    reader=reader.name,
                    card_type=info.card_type if info else None,
                    holder_first_name=None,
                    holder_name=info.holder_name if info else None,
                    serial=info.serial if info else None,
                    pin_blocked=self.cards.pin_blocked(reader.name),
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
            allowed_origins=self.consent.allowed_origins(),
            policy_origins=tuple(sorted(self.consent.policy_origins)),
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
        self.consent.revoke(origin)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._revoked, origin)
        else:
            self._revoked(origin)

    def _revoked(self, origin: str) -> None:
        self.consent.forget(origin)
        for session in list(self._sessions):
            if session.origin == origin:
                session.revoke()
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
