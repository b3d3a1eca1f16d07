"""Registration codes as a phone app would show them: 6 digits, 15 minutes, single use,
3 attempts. One live code per registration; issuing a new one replaces the old one.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from examples.portal.clock import Clock, system_clock

__all__ = [
    "CODE_DIGITS",
    "CODE_VALIDITY",
    "MAX_ATTEMPTS",
    "CodeBook",
    "CodeError",
    "CodeExpiredError",
    "CodeLockedError",
    "CodeMissingError",
    "CodeWrongError",
    "IssuedCode",
]

logger = logging.getLogger(__name__)

CODE_DIGITS = 6
CODE_VALIDITY = timedelta(minutes=15)
MAX_ATTEMPTS = 3


class CodeError(Exception):
    """A registration code was not accepted; ``reason`` is a stable machine name."""

    reason = "code-error"


class CodeMissingError(CodeError):
    """No code was issued for this registration, or it was already used."""

    reason = "code-missing"


class CodeExpiredError(CodeError):
    """The code is older than its validity."""

    reason = "code-expired"


class CodeLockedError(CodeError):
    """Too many wrong attempts: the code is void, ask the phone app for a new one."""

    reason = "code-locked"


class CodeWrongError(CodeError):
    """Not the code the phone app shows; ``attempts_left`` more tries on this code."""

    reason = "code-wrong"

    def __init__(self, attempts_left: int) -> None:
        super().__init__(f"wrong code, {attempts_left} attempts left")
        self.attempts_left = attempts_left


@dataclass(frozen=True)
class IssuedCode:
    """One code and its life: it dies when used, expired or out of attempts."""

    code: str
    issued_at: datetime
    expires_at: datetime
    attempts_left: int = MAX_ATTEMPTS
    used: bool = False

    def live(self, now: datetime) -> bool:
        return not self.used and self.attempts_left > 0 and now <= self.expires_at


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


class CodeBook:
    """Thread-safe store of registration codes keyed by registration id.

    Args:
        clock: the current time (inject an :class:`AdjustableClock` to test expiry).
        validity: how long a code is valid.
        max_attempts: wrong guesses before a code is void.
    """

    def __init__(self, *, clock: Clock = system_clock, validity: timedelta = CODE_VALIDITY,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        if validity <= timedelta(0) or max_attempts < 1:
            raise ValueError("validity must be positive and max_attempts at least 1")
        self._clock = clock
        self._validity = validity
        self._max_attempts = max_attempts
        self._lock = threading.Lock()
        self._codes: dict[str, IssuedCode] = {}

    def issue(self, key: str) -> IssuedCode:
        """A fresh code for ``key`` (replacing any earlier one)."""
        now = self._clock()
        issued = IssuedCode(new_code(), now, now + self._validity, self._max_attempts)
        with self._lock:
            self._codes[key] = issued
        logger.info("registration code issued, valid until %s", issued.expires_at.isoformat())
        return issued

    def current(self, key: str) -> IssuedCode | None:
        """The live code of ``key``, if any (what the phone app shows)."""
        with self._lock:
            issued = self._codes.get(key)
        return issued if issued is not None and issued.live(self._clock()) else None

    def check(self, key: str, code: str) -> None:
        """Accept ``code`` for ``key`` once; every wrong guess costs an attempt.

        Raises:
            CodeMissingError, CodeExpiredError, CodeLockedError, CodeWrongError.
        """
        now = self._clock()
        with self._lock:
            issued = self._codes.get(key)
            if issued is None or issued.used:
                raise CodeMissingError("no registration code to check (none issued or already used)")
            if now > issued.expires_at:
                raise CodeExpiredError("the registration code has expired")
            if issued.attempts_left <= 0:
                raise CodeLockedError("too many wrong registration codes")
            if hmac.compare_digest(code.strip().encode(), issued.code.encode()):
                self._codes[key] = replace(issued, used=True)
                logger.info("registration code accepted")
                return
            left = issued.attempts_left - 1
            self._codes[key] = replace(issued, attempts_left=left)
        logger.info("wrong registration code, %d attempts left", left)
        if left <= 0:
            raise CodeLockedError("too many wrong registration codes")
        raise CodeWrongError(left)

    def forget(self, key: str) -> None:
        with self._lock:
            self._codes.pop(key, None)
