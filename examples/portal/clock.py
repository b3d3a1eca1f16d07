"""The portal's notion of "now": injectable so tests can make codes and nonces expire."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["AdjustableClock", "Clock", "system_clock"]

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware UTC."""


def system_clock() -> datetime:
    return datetime.now(UTC)


class AdjustableClock:
    """The system time plus an offset that only moves forward (tests and the demo's test mode).

    Args:
        base: the clock to follow (default the system clock).
    """

    def __init__(self, base: Clock = system_clock) -> None:
        self._base = base
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._base() + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and return the new time."""
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += delta
            return self._base() + self._offset
