"""One page connection: its origin, its consent, and its requests as straight-line steps.

A :class:`ClientSession` is handed its collaborators (:class:`SessionTools`: the consent
gate, the card book, the card waiter, the PIN desk, the card queue and the configuration)
and a narrow :class:`SessionHost` to report activity to; it never sees the service. Each
request reads as its steps: make sure the origin is approved, find the card, hold it in
the queue, read what is needed, ask for the PIN, use the card.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from agent.cards.base import CardInfo, CardSession, KeyRole, PinEntry, PinInfo, PinStatus
from agent.core import token
from agent.core.cards import CardBook
from agent.core.config import AgentConfig
from agent.core.consent import ConsentGate
from agent.core.interaction import ConsentDecision, ConsentKind, Operation
from agent.core.pin import PinDesk
from agent.core.queue import CardQueue
from agent.core.values import (
    AuthToken,
    CardEvent,
    CertificateResult,
    IdentityResult,
    PinChangeResult,
    PinStatusResult,
    ReaderStatus,
    SignatureResult,
    StatusResult,
)
from agent.core.waiting import CardWaiter
from agent.errors import (
    CardRemovedError,
    InvalidArgumentError,
    NotSupportedError,
    OriginNotAllowedError,
    UserCancelledError,
)
from agent.smartcard.certinfo import holder_id, holder_name
from agent.smartcard.hashes import WEB_EID_HASHES

__all__ = ["ClientSession", "EventSink", "SessionHost", "SessionTools"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
EventSink = Callable[[CardEvent], None]


class SessionHost(Protocol):
    """What a session tells the one who opened it (the service: tray state, idle memory)."""

    def operation_started(self) -> None: ...
    def operation_finished(self) -> None: ...
    def session_closed(self, session: ClientSession) -> None: ...


@dataclass(frozen=True)
class SessionTools:
    """The collaborators a session is handed."""

    config: AgentConfig
    consent: ConsentGate
    book: CardBook
    waiter: CardWaiter
    pins: PinDesk
    queue: CardQueue
    host: SessionHost


def _sign_with(
    role: KeyRole,
    digest: bytes,
    hash_function: str,
    padding: str | None,
    session: CardSession,
    pin: PinEntry,
) -> bytes:
    """The card job's action once the PIN is typed: sign ``digest`` with the key ``role``."""
    return session.sign(role, digest, hash_function, pin, padding=padding)


def _read_pin_statuses(session: CardSession) -> tuple[CardInfo, list[PinStatus]]:
    pins = list(session.info.pins)
    if not pins:
        for role in KeyRole:
            pin = session.pin_for(role)
            if pin not in pins:
                pins.append(pin)
    return session.info, [session.pin_status(pin) for pin in pins]


def _choose_pin(pin_name: str | None, session: CardSession) -> PinInfo:
    if pin_name is None:
        return session.pin_for(KeyRole.AUTHENTICATION)
    for pin in session.info.pins:
        if pin.name == pin_name:
            return pin
    raise InvalidArgumentError(f"this card has no PIN named {pin_name!r}")


def _pin_of(role: KeyRole, session: CardSession) -> PinInfo:
    return session.pin_for(role)


def _read_identity(photo: bool, session: CardSession) -> Any:
    return session.read_identity(photo=photo)


class ClientSession:
    """One page connection, bound to its origin; the WebSocket layer's handle on the core."""

    def __init__(self, origin: str, tools: SessionTools) -> None:
        self.origin = origin
        self._tools = tools
        self._approved_once = False  # "allow once": for the life of this connection
        self._denied = False
        self._closed = False
        self._consent_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscriber: EventSink | None = None

    @property
    def approved(self) -> bool:
        return self._approved_once or self._tools.consent.is_approved(self.origin)

    def revoke(self) -> None:
        """The user revoked this origin in the tray: "allow once" ends too."""
        self._approved_once = False

    # -- plumbing --------------------------------------------------------------------------

    async def _run(self, operation: Coroutine[Any, Any, T]) -> T:
        """Run one request as a task that :meth:`close` can cancel."""
        if self._closed:
            operation.close()
            raise UserCancelledError("the connection is closed")
        task = asyncio.create_task(operation)
        self._tasks.add(task)
        self._tools.host.operation_started()
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._closed and current is not None and not current.cancelling():
                raise UserCancelledError("the page closed the connection") from None
            raise
        finally:
            self._tasks.discard(task)
            self._tools.host.operation_finished()

    async def _ensure_approved(self, timeout: float, lang: str | None = None) -> None:
        """Make sure the origin may use the card, asking the user when needed.

        Raises:
            OriginNotAllowedError: the user or the machine policy said no.
        """
        if self.approved:
            return
        consent = self._tools.consent
        if self._denied or not consent.user_may_approve:
            raise OriginNotAllowedError(f"{self.origin} may not use the ID card")
        async with self._consent_lock:
            if self.approved:
                return
            if self._denied:
                raise OriginNotAllowedError(f"{self.origin} may not use the ID card")
            decision = await consent.ask(self.origin, ConsentKind.SITE, timeout, lang)
            if decision is ConsentDecision.ALLOW_ONCE:
                self._approved_once = True
                logger.info("user allowed %s for this connection", self.origin)
            elif decision is ConsentDecision.DENY:
                self._denied = True
                logger.info("user denied %s", self.origin)
                raise OriginNotAllowedError(f"the user did not allow {self.origin}")

    # -- the requests ----------------------------------------------------------------------

    async def status(self) -> StatusResult:
        """Agent version and readers; never touches a card.

        Unapproved origins learn only the version: nothing about readers or cards.
        """
        tools = self._tools
        if not self.approved:
            return StatusResult(tools.config.version, approved=False)
        readers = tools.book.readers()
        entries = tuple(
            ReaderStatus(
                name=reader.name,
                card_present=reader.card_present,
                pinpad=bool(reader.pinpad and reader.pinpad.can_verify),
                card=tools.book.info(reader.name) if reader.card_present else None,
            )
            for reader in readers
        )
        return StatusResult(tools.config.version, True, entries)

    async def get_signing_certificate(
        self, *, timeout: float | None = None, lang: str | None = None
    ) -> CertificateResult:
        """The signing certificate and what its key can do.

        The user is asked each time (the dialog shows the holder's name and national
        number, which the certificate carries) unless they chose "always" for this site.
        """
        return await self._run(
            self._get_signing_certificate(self._tools.config.timeout(timeout), lang)
        )

    async def _get_signing_certificate(self, timeout: float, lang: str | None) -> CertificateResult:
        tools = self._tools
        await self._ensure_approved(timeout, lang)
        reader = await tools.waiter.pick_card(self.origin, Operation.GET_CERTIFICATE, timeout, lang)
        async with tools.queue.hold(reader, self.origin, timeout):
            _info, certificate, algorithms = await tools.book.card_certificate(
                reader, KeyRole.SIGNING
            )
        if certificate is None:
            raise NotSupportedError("this card has no signing certificate")
        if not tools.consent.is_approved(self.origin, ConsentKind.CERTIFICATE):
            decision = await tools.consent.ask(
                self.origin,
                ConsentKind.CERTIFICATE,
                timeout,
                lang,
                holder=holder_name(certificate, all_given_names=True),
                subject_id=holder_id(certificate),
            )
            if decision is ConsentDecision.DENY:
                raise UserCancelledError("the user did not allow reading the signing certificate")
        return CertificateResult(certificate, tuple(algorithms))

    async def authenticate(
        self, challenge_nonce: str, *, timeout: float | None = None, lang: str | None = None
    ) -> AuthToken:
        """A Web eID ``web-eid:1.0`` token over this origin and ``challenge_nonce``.

        Raises:
            InvalidArgumentError: the nonce is not 44 to 128 characters of base64.
            InvalidPinError, PinBlockedError, UserCancelledError, UserTimeoutError, ...
        """
        nonce = token.validate_nonce(challenge_nonce)
        return await self._run(
            self._authenticate(nonce, self._tools.config.timeout(timeout), lang)
        )

    async def _authenticate(self, nonce: str, timeout: float, lang: str | None) -> AuthToken:
        tools = self._tools
        await self._ensure_approved(timeout, lang)
        reader = await tools.waiter.pick_card(self.origin, Operation.AUTHENTICATE, timeout, lang)
        epoch = tools.book.card_epoch(reader)
        role = KeyRole.AUTHENTICATION
        async with tools.queue.hold(reader, self.origin, timeout):
            info, certificate, algorithms = await tools.book.card_certificate(reader, role)
            if certificate is None:
                raise NotSupportedError("this card has no authentication certificate")
            algorithm = token.token_algorithm(certificate, algorithms)
            digest = token.auth_digest(self.origin, nonce, algorithm.hash_function)
            plan = await tools.pins.plan(
                reader, epoch, functools.partial(_pin_of, role), role=role, info=info
            )
            action = functools.partial(
                _sign_with, role, digest, algorithm.hash_function, algorithm.padding
            )
            signature = await tools.pins.verify(
                self.origin, plan, Operation.AUTHENTICATE, timeout, action, lang=lang
            )
        logger.info(
            "authenticated %s with the card in %r (%s)", self.origin, reader, algorithm.name
        )
        return token.build_token(certificate, algorithm, signature, tools.config.app_version)

    async def sign(
        self,
        certificate: bytes,
        hash: bytes,  # noqa: A002 - web-eid.js names it so
        hash_function: str,
        *,
        timeout: float | None = None,
        lang: str | None = None,
    ) -> SignatureResult:
        """Sign ``hash`` with the key of ``certificate``, on whichever card holds it.

        When no inserted card holds the certificate, the user is asked to insert the
        right one (card notice, reason WRONG_CARD) until ``timeout``.

        Raises:
            InvalidArgumentError: not a certificate, unknown hash function, wrong hash length.
            CertificateNotFoundError: other cards stayed in the readers until the timeout.
            UserTimeoutError: no card at all (or no reader) until the timeout.
        """
        der, digest = certificate, hash
        token.load_certificate(der)
        known = WEB_EID_HASHES.get(hash_function)
        if known is None:
            raise InvalidArgumentError(f"unsupported hashFunction {hash_function!r}")
        expected = known.length
        if len(digest) != expected:
            raise InvalidArgumentError(
                f"a {hash_function} hash is {expected} bytes, not {len(digest)}"
            )
        return await self._run(
            self._sign(der, digest, hash_function, self._tools.config.timeout(timeout), lang)
        )

    async def _sign(
        self,
        certificate: bytes,
        digest: bytes,
        hash_function: str,
        timeout: float,
        lang: str | None,
    ) -> SignatureResult:
        tools = self._tools
        await self._ensure_approved(timeout, lang)
        reader, epoch = await tools.waiter.find_certificate(self.origin, certificate, timeout, lang)
        role = KeyRole.SIGNING
        async with tools.queue.hold(reader, self.origin, timeout):
            info, held, algorithms = await tools.book.card_certificate(reader, role)
            if held != certificate:
                raise CardRemovedError("the card holding the certificate was removed")
            algorithm = next((a for a in algorithms if a.hash_function == hash_function), None)
            if algorithm is None:
                raise NotSupportedError(f"this card cannot sign a {hash_function} hash")
            plan = await tools.pins.plan(
                reader, epoch, functools.partial(_pin_of, role), role=role, info=info
            )
            padding = "PSS" if algorithm.padding_scheme == "PSS" else None
            action = functools.partial(_sign_with, role, digest, hash_function, padding)
            detail = f"a document ({hash_function} hash {digest.hex()[:16]}…)"
            signature = await tools.pins.verify(
                self.origin, plan, Operation.SIGN, timeout, action, detail=detail, lang=lang
            )
        logger.info(
            "signed a %s hash for %s with the card in %r", hash_function, self.origin, reader
        )
        return SignatureResult(signature, algorithm)

    async def read_identity(
        self, *, photo: bool = True, timeout: float | None = None, lang: str | None = None
    ) -> IdentityResult:
        """Name, address and (optionally) photo, after the user agreed for this origin."""
        return await self._run(
            self._read_identity(photo, self._tools.config.timeout(timeout), lang)
        )

    async def _read_identity(
        self, photo: bool, timeout: float, lang: str | None
    ) -> IdentityResult:
        tools = self._tools
        await self._ensure_approved(timeout, lang)
        reader = await tools.waiter.pick_card(self.origin, Operation.READ_IDENTITY, timeout, lang)
        if not tools.consent.is_approved(self.origin, ConsentKind.IDENTITY):
            info = tools.book.info(reader)
            holder = info.holder_name if info is not None else None
            decision = await tools.consent.ask(
                self.origin, ConsentKind.IDENTITY, timeout, lang, holder
            )
            if decision is ConsentDecision.DENY:
                raise UserCancelledError("the user did not allow reading the identity data")
        async with tools.queue.hold(reader, self.origin, timeout):
            identity = await tools.book.card_job(reader, functools.partial(_read_identity, photo))
        logger.info("identity read for %s from the card in %r", self.origin, reader)
        return IdentityResult(identity)

    async def pin_status(
        self, *, timeout: float | None = None, lang: str | None = None
    ) -> PinStatusResult:
        """Tries left for each PIN of the card (no try is spent)."""
        return await self._run(self._pin_status(self._tools.config.timeout(timeout), lang))

    async def _pin_status(self, timeout: float, lang: str | None) -> PinStatusResult:
        tools = self._tools
        await self._ensure_approved(timeout, lang)
        reader = await tools.waiter.pick_card(self.origin, Operation.CHANGE_PIN, timeout, lang)
        async with tools.queue.hold(reader, self.origin, timeout):
            info, statuses = await tools.book.card_job(reader, _read_pin_statuses)
        for status in statuses:
            tools.book.remember_pin(reader, info.serial, status.pin, status)
        return PinStatusResult(reader, info.card_type, tuple(statuses))

    async def change_pin(
        self,
        *,
        timeout: float | None = None,
        pin_name: str | None = None,
        lang: str | None = None,
    ) -> PinChangeResult:
        """Change a PIN through the agent's own dialog (or the PIN pad).

        ``pin_name`` picks the PIN on cards with several (default: the authentication PIN).
        """
        return await self._run(
            self._change_pin(pin_name, self._tools.config.timeout(timeout), lang)
        )

    async def _change_pin(
        self, pin_name: str | None, timeout: float, lang: str | None
    ) -> PinChangeResult:
        tools = self._tools
        await self._ensure_approved(timeout, lang)
        reader = await tools.waiter.pick_card(self.origin, Operation.CHANGE_PIN, timeout, lang)
        epoch = tools.book.card_epoch(reader)
        async with tools.queue.hold(reader, self.origin, timeout):
            plan = await tools.pins.plan(reader, epoch, functools.partial(_choose_pin, pin_name))
            await tools.pins.change(self.origin, plan, timeout, lang=lang)
        logger.info("%s changed on the card in %r", plan.pin.name, reader)
        return PinChangeResult(plan.pin.name, reader, plan.info.card_type)

    # -- events ----------------------------------------------------------------------------

    def subscribe(self, callback: EventSink) -> None:
        """Receive reader/card events (delivered only while the origin is approved)."""
        self._subscriber = callback

    def unsubscribe(self) -> None:
        self._subscriber = None

    def deliver(self, event: CardEvent) -> None:
        """A reader/card event, for the subscriber if any and the origin is approved."""
        callback = self._subscriber
        if callback is None or self._closed or not self.approved:
            return
        try:
            callback(event)
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
        self._tools.host.session_closed(self)
        logger.info("connection from %s closed", self.origin)
