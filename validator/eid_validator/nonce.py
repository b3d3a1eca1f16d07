"""Challenge nonces: issued per session, single use, 5-minute TTL (as Web eID's Java library)."""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eid_validator.errors import NonceExpiredError, NonceMismatchError, NonceNotFoundError

__all__ = ["DEFAULT_NONCE_TTL", "NONCE_BYTES", "NonceStore", "utc_now"]

logger = logging.getLogger(__name__)

NONCE_BYTES = 32
DEFAULT_NONCE_TTL = timedelta(minutes=5)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Issued:
    nonce: str
    expires: datetime


class NonceStore:
    """In-memory, thread-safe, session-bound nonce store.

    ``issue`` replaces any earlier nonce of the session. ``consume`` removes the session's nonce
    whatever the outcome, so a nonce is never usable twice (not even after a failed attempt).
    """

    def __init__(self, *, ttl: timedelta = DEFAULT_NONCE_TTL,
                 clock: Callable[[], datetime] = utc_now) -> None:
        if ttl <= timedelta(0):
            raise ValueError("nonce TTL must be positive")
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._issued: dict[str, _Issued] = {}

    def issue(self, session_id: str) -> str:
        """Make a fresh nonce for ``session_id``: base64 of 32 random bytes (44 characters)."""
        if not session_id:
            raise ValueError("session_id must not be empty")
        nonce = base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode("ascii")
        now = self._clock()
        with self._lock:
            self._drop_expired(now)
            self._issued[session_id] = _Issued(nonce, now + self._ttl)
        logger.debug("issued a challenge nonce")
        return nonce

    def consume(self, session_id: str, nonce: str | None = None) -> str:
        """Take the session's nonce out of the store and return it.

        Args:
            session_id: the server-side session the nonce was issued to.
            nonce: if given, it must equal the issued nonce.

        Raises:
            NonceNotFoundError: nothing issued to this session, or already consumed.
            NonceExpiredError: the TTL has passed.
            NonceMismatchError: ``nonce`` is not the one issued to this session.
        """
        with self._lock:
            issued = self._issued.pop(session_id, None)
        if issued is None:
            raise NonceNotFoundError("no challenge nonce for this session (missing or used)",
                                     check="nonce-not-found")
        if self._clock() > issued.expires:
            raise NonceExpiredError("the challenge nonce has expired", check="nonce-expired")
        if nonce is not None and not hmac.compare_digest(nonce.encode(), issued.nonce.encode()):
            raise NonceMismatchError("the challenge nonce does not match this session's",
                                     check="nonce-mismatch")
        return issued.nonce

    def __len__(self) -> int:
        with self._lock:
            return len(self._issued)

    def _drop_expired(self, now: datetime) -> None:
        for key in [k for k, v in self._issued.items() if now > v.expires]:
            del self._issued[key]
