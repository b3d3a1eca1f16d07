"""Rate-limited logging for what a flood can trigger (refused handshakes, accept errors).

A burst of half-open or refused connections must not write a traceback per connection:
:class:`RateLimitFilter` lets ``burst`` records of one kind (logger name + message template)
through per ``period`` seconds, drops the rest, and says how many it dropped in the next
record of that kind that gets through. Only the first record of a kind in a period keeps its
traceback.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["RateLimitFilter", "install"]


class RateLimitFilter(logging.Filter):
    def __init__(self, burst: int = 5, period: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.period = period
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], tuple[float, int, int]] = {}  # start, passed, dropped

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            start, passed, dropped = self._windows.get(key, (now, 0, 0))
            if now - start >= self.period:
                start, passed = now, 0
            if passed >= self.burst:
                self._windows[key] = (start, passed, dropped + 1)
                return False
            self._windows[key] = (start, passed + 1, 0)
        if dropped:
            record.msg = f"{record.msg} [{dropped} similar messages suppressed]"
        if passed:  # one traceback per kind and period is enough
            record.exc_info = None
            record.exc_text = None
        return True


def install(*names: str, burst: int = 5, period: float = 60.0) -> None:
    """Rate-limit the named loggers (once per logger; safe to call again)."""
    for name in names:
        target = logging.getLogger(name)
        if not any(isinstance(f, RateLimitFilter) for f in target.filters):
            target.addFilter(RateLimitFilter(burst, period))
