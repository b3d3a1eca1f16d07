"""The portal's server-side logic, without HTTP: sessions, login, details, code, signature.

Steps of one registration (each needs the one before, kept in the server-side session):

1. ``issue_nonce`` then ``login`` with the Web eID token (validated against the session's
   nonce: :class:`eid_validator.NonceStore` keyed by the session id);
2. ``submit_details`` (name, birth date, e-mail, phone): issues a registration code that the
   simulated phone app shows (``phone_code``);
3. ``check_code``: 6 digits, valid 15 minutes, single use, 3 attempts;
4. ``prepare_signature`` (the page sends the signing certificate from the agent; the server
   builds the canonical-JSON summary and returns its hash) and ``finish_signature`` (the
   server checks the signature and that the signer is the authenticated person), which
   stores the account in SQLite.

Every failure is a :class:`PortalError` with an HTTP status and a stable ``code`` the page
turns into words.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from eid_validator import (
    AuthTokenValidator,
    NonceStore,
    NotSamePersonError,
    ValidatedIdentity,
    ValidationError,
)
from eid_validator import verify_signature as verify_hash_signature

from examples.portal.clock import AdjustableClock, Clock, system_clock
from examples.portal.codes import CodeBook, CodeError, CodeWrongError
from examples.portal.identity import user_view
from examples.portal.store import Account, AccountStore

__all__ = [
    "DEFAULT_AGENT_URL",
    "HASH_PREFERENCE",
    "SESSION_LIFETIME",
    "LoginResult",
    "PortalApp",
    "PortalError",
    "Step",
    "canonical_json",
]

logger = logging.getLogger(__name__)

DEFAULT_AGENT_URL = "ws://127.0.0.1:24847"
SESSION_LIFETIME = dt.timedelta(hours=1)
HASH_PREFERENCE = ("SHA-384", "SHA-256", "SHA-512")
_HASHLIB = {"SHA-256": hashlib.sha256, "SHA-384": hashlib.sha384, "SHA-512": hashlib.sha512}
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_PHONE = re.compile(r"^\+?[0-9 ./()-]{6,24}$")


class PortalError(Exception):
    """A refused request: HTTP ``status``, stable ``code`` for the page, extra ``data``."""

    def __init__(self, status: int, code: str, message: str, **data: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.data = data

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": str(self), **self.data}}


class Step:
    """Where a session stands (strings, as the page sees them)."""

    LOGIN = "login"
    DETAILS = "details"
    CODE = "code"
    SIGN = "sign"
    DONE = "done"


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no spaces: the exact bytes that get hashed and signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Details:
    name: str
    birth_date: str
    email: str
    phone: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "birthDate": self.birth_date, "email": self.email,
                "phone": self.phone}


@dataclass(frozen=True)
class PendingSignature:
    """What the page was asked to sign, kept server-side until the signature comes back."""

    summary: bytes
    digest: bytes
    hash_function: str
    certificate: bytes


@dataclass(frozen=True)
class LoginResult:
    """``session_id`` replaces the caller's (a new id after login: no session fixation)."""

    session_id: str
    body: dict[str, Any]


@dataclass
class _Session:
    """Mutable per-visitor state (only touched under the app's lock)."""

    created: dt.datetime
    registration_id: str = field(default_factory=lambda: secrets.token_hex(8))
    identity: ValidatedIdentity | None = None
    details: Details | None = None
    code_verified_at: dt.datetime | None = None
    pending: PendingSignature | None = None
    account: Account | None = None

    @property
    def step(self) -> str:
        if self.identity is None:
            return Step.LOGIN
        if self.account is not None:
            return Step.DONE
        if self.details is None:
            return Step.DETAILS
        if self.code_verified_at is None:
            return Step.CODE
        return Step.SIGN


def _text(body: Mapping[str, Any], name: str, max_length: int = 200) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise PortalError(400, "invalid-input", f"{name} is missing or too long", field=name)
    return value.strip()


def _b64(body: Mapping[str, Any], name: str) -> bytes:
    value = body.get(name)
    try:
        if not isinstance(value, str) or not value:
            raise ValueError("missing")
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PortalError(400, "invalid-input", f"{name} is not base64", field=name) from None


class PortalApp:
    """The reference portal's logic.

    Args:
        db_path: SQLite file for the accounts.
        site_origin: this portal's origin exactly as the browser writes it
            (``http://127.0.0.1:8080``); authentication tokens are checked against it.
        trust_anchors: CA certificates the card certificates must chain to.
        intermediates: extra CA certificates for building the path.
        clock: the current time (an :class:`AdjustableClock` lets tests expire codes).
        agent_url: the agent's WebSocket URL, told to the page.
        allow_http_localhost: accept an http origin on localhost (the demo); a real portal
            runs on https and passes False.
        also_origins: other spellings of this portal's origin the browser may use (the demo
            answers on both ``http://localhost:P`` and ``http://127.0.0.1:P``); the token is
            checked against the origin the login request came from, if it is one of these.
        test_mode: enables :meth:`advance_clock` (never in production).
    """

    def __init__(self, db_path: str | Path, site_origin: str,
                 trust_anchors: Sequence[x509.Certificate], *,
                 intermediates: Sequence[x509.Certificate] = (),
                 clock: Clock = system_clock, agent_url: str = DEFAULT_AGENT_URL,
                 allow_http_localhost: bool = True, test_mode: bool = False,
                 also_origins: Sequence[str] = ()) -> None:
        self.clock = clock
        self.site_origin = site_origin
        self.agent_url = agent_url
        self.test_mode = test_mode
        self.trust_anchors = tuple(trust_anchors)
        self.intermediates = tuple(intermediates)
        self.validators = {
            origin: AuthTokenValidator(origin, self.trust_anchors, intermediates=self.intermediates,
                                       clock=clock, allow_http_localhost=allow_http_localhost)
            for origin in (site_origin, *also_origins)
        }
        self.nonces = NonceStore(clock=clock)
        self.codes = CodeBook(clock=clock)
        self.accounts = AccountStore(db_path)
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        if test_mode:
            logger.warning("portal TEST MODE: the clock can be moved by a web request")

    # -- sessions --------------------------------------------------------------------------

    def new_session(self) -> str:
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            for key in [k for k, s in self._sessions.items() if now - s.created > SESSION_LIFETIME]:
                del self._sessions[key]
            self._sessions[session_id] = _Session(created=now)
        return session_id

    def has_session(self, session_id: str | None) -> bool:
        return self._find(session_id) is not None

    def _find(self, session_id: str | None) -> _Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
        if session is not None and self.clock() - session.created > SESSION_LIFETIME:
            self.logout(session_id)
            return None
        return session

    def _session(self, session_id: str | None, *steps: str) -> _Session:
        session = self._find(session_id)
        if session is None or (session.identity is None and Step.LOGIN not in steps):
            raise PortalError(401, "not-logged-in", "log in with your ID card first")
        if steps and session.step not in steps:
            raise PortalError(409, "wrong-step", f"this is not possible at step {session.step}",
                              step=session.step)
        return session

    def logout(self, session_id: str | None) -> None:
        if not session_id:
            return
        with self._lock:
            self._sessions.pop(session_id, None)
        self.codes.forget(session_id)

    def state(self, session_id: str | None) -> dict[str, Any]:
        """The session's step and what the page needs to draw it."""
        session = self._find(session_id)
        if session is None or session.identity is None:
            return {"step": Step.LOGIN}
        out: dict[str, Any] = {"step": session.step, "user": user_view(session.identity)}
        if session.details is not None:
            out["details"] = session.details.to_json()
        if session.account is not None:
            out["account"] = self._account_view(session.account)
        return out

    # -- 1. login ----------------------------------------------------------------------------

    def issue_nonce(self, session_id: str) -> dict[str, Any]:
        self._session(session_id, Step.LOGIN)
        return {"nonce": self.nonces.issue(session_id)}

    @property
    def origins(self) -> tuple[str, ...]:
        """Every origin this portal answers on (the first is the canonical one)."""
        return tuple(self.validators)

    def login(self, session_id: str, body: Mapping[str, Any],
              origin: str | None = None) -> LoginResult:
        """Validate the Web eID token against the nonce of this session; start a fresh session.

        ``origin`` is the login request's Origin (one of :attr:`origins`; default the
        canonical one): the token must have been made for it.

        Raises:
            PortalError: 401 "auth-failed" (with the failed ``check``), 409 "wrong-step",
                403 "bad-origin".
        """
        self._session(session_id, Step.LOGIN)
        validator = self.validators.get(origin or self.site_origin)
        if validator is None:
            raise PortalError(403, "bad-origin", "request from another site")
        token = body.get("token")
        if not isinstance(token, dict | str):
            raise PortalError(400, "invalid-input", "token is missing", field="token")
        try:
            identity = validator.validate_with_store(token, self.nonces, session_id)
        except ValidationError as exc:
            logger.warning("authentication refused: %s", exc)
            raise PortalError(401, "auth-failed", str(exc), check=exc.check) from None
        new_id = self.new_session()
        with self._lock:
            self._sessions.pop(session_id, None)
            self._sessions[new_id].identity = identity
        logger.info("logged in: %s", identity.common_name)
        return LoginResult(new_id, self.state(new_id))

    # -- 2. details --------------------------------------------------------------------------

    def submit_details(self, session_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Check and keep the answers, then issue the registration code to the phone app."""
        session = self._session(session_id, Step.DETAILS, Step.CODE)
        details = self._parse_details(body)
        with self._lock:
            session.details = details
        self.codes.issue(session_id)
        return self.state(session_id)

    def _parse_details(self, body: Mapping[str, Any]) -> Details:
        name = _text(body, "name", 100)
        birth = _text(body, "birthDate", 10)
        try:
            date = dt.date.fromisoformat(birth)
        except ValueError:
            raise PortalError(400, "invalid-input", "birth date is not a date",
                              field="birthDate") from None
        if date > self.clock().date() or date.year < 1900:
            raise PortalError(400, "invalid-input", "birth date is not plausible", field="birthDate")
        email = _text(body, "email", 254)
        if not _EMAIL.match(email):
            raise PortalError(400, "invalid-input", "not an e-mail address", field="email")
        phone = _text(body, "phone", 24)
        if not _PHONE.match(phone) or sum(c.isdigit() for c in phone) < 6:
            raise PortalError(400, "invalid-input", "not a phone number", field="phone")
        return Details(name, date.isoformat(), email, phone)

    # -- 3. registration code -----------------------------------------------------------------

    def phone_code(self, session_id: str) -> dict[str, Any]:
        """What the simulated phone app shows: the live code of this registration, if any."""
        self._session(session_id, Step.CODE)
        issued = self.codes.current(session_id)
        if issued is None:
            return {"code": None}
        return {"code": issued.code, "expiresAt": issued.expires_at.isoformat(),
                "attemptsLeft": issued.attempts_left}

    def phone_new_code(self, session_id: str) -> dict[str, Any]:
        self._session(session_id, Step.CODE)
        self.codes.issue(session_id)
        return self.phone_code(session_id)

    def check_code(self, session_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session(session_id, Step.CODE)
        code = _text(body, "code", 20)
        try:
            self.codes.check(session_id, code)
        except CodeWrongError as exc:
            raise PortalError(400, exc.reason, str(exc), attemptsLeft=exc.attempts_left) from None
        except CodeError as exc:
            raise PortalError(400, exc.reason, str(exc)) from None
        with self._lock:
            session.code_verified_at = self.clock()
        return self.state(session_id)

    # -- 4. signature ------------------------------------------------------------------------

    def prepare_signature(self, session_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Build the summary, pick the hash function the card supports, return the hash.

        ``body``: ``certificate`` (base64 DER, from getSigningCertificate) and
        ``supportedSignatureAlgorithms`` as the agent reported them.
        """
        session = self._session(session_id, Step.SIGN)
        certificate = _b64(body, "certificate")
        offered = body.get("supportedSignatureAlgorithms")
        names = {a.get("hashFunction") for a in offered if isinstance(a, Mapping)} \
            if isinstance(offered, list) else set()
        hash_function = next((h for h in HASH_PREFERENCE if h in names), None)
        if hash_function is None:
            raise PortalError(400, "sign-unsupported", "the card offers no usable hash function")
        assert session.identity is not None and session.details is not None
        summary = canonical_json(self._summary(session))
        digest = _HASHLIB[hash_function](summary).digest()
        with self._lock:
            session.pending = PendingSignature(summary, digest, hash_function, certificate)
        return {"summary": json.loads(summary), "summaryText": summary.decode(),
                "hash": base64.b64encode(digest).decode(), "hashFunction": hash_function}

    def _summary(self, session: _Session) -> dict[str, Any]:
        assert session.identity is not None and session.details is not None
        assert session.code_verified_at is not None
        identity = session.identity
        return {
            "type": "eid-agent reference portal registration",
            "portal": self.site_origin,
            "registrationId": session.registration_id,
            "person": {"id": identity.serial_number, "country": identity.country,
                       "certificateName": identity.common_name},
            "details": session.details.to_json(),
            "codeVerifiedAt": session.code_verified_at.isoformat(timespec="seconds"),
            "preparedAt": self.clock().isoformat(timespec="seconds"),
        }

    def finish_signature(self, session_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Verify the signature over the pending summary hash; store the account.

        Raises:
            PortalError: 409 "no-pending-signature", 400 "sign-failed" (bad signature, wrong
                certificate) or 403 "not-same-person".
        """
        session = self._session(session_id, Step.SIGN)
        pending = session.pending
        if pending is None:
            raise PortalError(409, "no-pending-signature", "prepare the summary first")
        signature = _b64(body, "signature")
        algorithm = body.get("signatureAlgorithm")
        if not isinstance(algorithm, Mapping):
            raise PortalError(400, "invalid-input", "signatureAlgorithm is missing",
                              field="signatureAlgorithm")
        assert session.identity is not None and session.details is not None
        try:
            verify_hash_signature(pending.certificate, pending.digest, pending.hash_function,
                                  signature, algorithm, trusted_cas=self.trust_anchors,
                                  intermediates=self.intermediates,
                                  authenticated=session.identity, clock=self.clock)
        except ValidationError as exc:
            logger.warning("registration signature refused: %s", exc)
            same = not isinstance(exc, NotSamePersonError)
            raise PortalError(400 if same else 403, "sign-failed" if same else "not-same-person",
                              str(exc), check=exc.check) from None
        account = self.accounts.save(self._account(session, pending, signature))
        with self._lock:
            session.pending = None
            session.account = account
        return self.state(session_id)

    def _account(self, session: _Session, pending: PendingSignature, signature: bytes) -> Account:
        assert session.identity is not None and session.details is not None
        identity, details = session.identity, session.details
        return Account(
            person_id=identity.serial_number or "",
            country=identity.country,
            certificate_name=identity.common_name,
            name=details.name,
            birth_date=details.birth_date,
            email=details.email,
            phone=details.phone,
            summary=pending.summary.decode(),
            hash_function=pending.hash_function,
            signature=base64.b64encode(signature).decode(),
            signing_certificate=base64.b64encode(pending.certificate).decode(),
            created_at=self.clock().isoformat(timespec="seconds"),
        )

    @staticmethod
    def _account_view(account: Account) -> dict[str, Any]:
        return {"id": account.id, "name": account.name, "email": account.email,
                "phone": account.phone, "birthDate": account.birth_date,
                "personId": account.person_id, "hashFunction": account.hash_function,
                "createdAt": account.created_at}

    # -- test only ---------------------------------------------------------------------------

    def advance_clock(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Move the injectable clock forward (only with ``test_mode`` and an AdjustableClock)."""
        if not self.test_mode or not isinstance(self.clock, AdjustableClock):
            raise PortalError(404, "not-found", "no such endpoint")
        seconds = body.get("seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise PortalError(400, "invalid-input", "seconds must be a positive number",
                              field="seconds")
        now = self.clock.advance(dt.timedelta(seconds=seconds))
        logger.warning("TEST MODE: portal clock advanced by %s s", seconds)
        return {"now": now.isoformat()}
