"""Give memory the agent no longer uses back to the operating system.

CPython keeps freed objects in its own arenas and glibc keeps freed heap pages mapped, so a
burst of work (say 200 WebSocket connections opened at once) leaves the resident size of a
long-running agent at its peak. :func:`release_free_memory` runs a garbage collection and,
with glibc, ``malloc_trim(0)``, which returns every free page of the heaps to the system. The
core calls it when the last page connection closes (the agent is going idle): an event, not
a timer, so the idle agent still never wakes up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import sys
from collections.abc import Callable

__all__ = ["freeze_startup_objects", "release_free_memory"]

logger = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim  # glibc only (not musl)
    except (OSError, AttributeError):
        return None
    return trim


def release_free_memory() -> None:
    """Collect garbage and hand free heap pages back to the system (glibc); cheap enough
    (a few milliseconds) to call whenever the agent goes idle."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    logger.debug("free memory released")


def freeze_startup_objects() -> None:
    """Move everything alive once the agent serves (modules, classes, the service) out of
    the garbage collector's generations (:func:`gc.freeze`): later collections, e.g. those
    a burst of connections triggers, then scan only the objects made since, not the tens
    of thousands that live as long as the process."""
    gc.collect()
    gc.freeze()
