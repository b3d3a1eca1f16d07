"""An in-process :class:`~agent.smartcard.backend.ReaderBackend` on virtual cards, for fast core tests.

Readers hold :class:`~eid_emulator.base.VirtualCard` objects reached through
:class:`~eid_emulator.base.VirtualConnection`; every card job and every reader change
runs on ONE worker thread, as with the real PC/SC backend, and reader events are reported
from that thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from agent.errors import NoCardError, NoReaderError
from agent.smartcard.apdu import SmartCardConnection
from agent.smartcard.backend import EventCallback, EventKind, PinPadFeatures, ReaderEvent, ReaderInfo
from eid_emulator.base import VirtualCard, VirtualConnection

__all__ = ["VirtualBackend"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Slot:
    name: str
    card: VirtualCard | None = None
    pinpad: PinPadFeatures | None = None


class VirtualBackend:
    """Virtual readers and cards behind the ReaderBackend protocol."""

    def __init__(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="virtual-readers"
        )
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._on_event: EventCallback | None = None
        self.jobs_run = 0

    # -- ReaderBackend -------------------------------------------------------------------

    def start(self, on_event: EventCallback) -> None:
        self._on_event = on_event

    def stop(self) -> None:
        self._on_event = None
        self._executor.shutdown(wait=True, cancel_futures=True)

    def readers(self) -> list[ReaderInfo]:
        with self._lock:
            return [
                ReaderInfo(
                    name=slot.name,
                    card_present=slot.card is not None,
                    atr=slot.card.atr if slot.card is not None else None,
                    pinpad=slot.pinpad,
                )
                for slot in self._slots.values()
            ]

    def run(
        self, reader: str, job: Callable[[SmartCardConnection], T]
    ) -> concurrent.futures.Future[T]:
        return self._executor.submit(self._run_job, reader, job)

    # -- test controls (thread-safe; changes happen on the worker) -----------------------

    def add_reader(
        self, name: str, *, pinpad: PinPadFeatures | None = None
    ) -> concurrent.futures.Future[None]:
        return self._executor.submit(self._add_reader, name, pinpad)

    def remove_reader(self, name: str) -> concurrent.futures.Future[None]:
        return self._executor.submit(self._remove_reader, name)

    def insert(self, reader: str, card: VirtualCard) -> concurrent.futures.Future[None]:
        """Put ``card`` in ``reader`` (adding the reader when it does not exist yet)."""
        return self._executor.submit(self._insert, reader, card)

    def remove(self, reader: str) -> concurrent.futures.Future[None]:
        """Take the card out of ``reader``."""
        return self._executor.submit(self._remove, reader)

    # -- worker side ---------------------------------------------------------------------

    def _emit(self, kind: EventKind, reader: str, atr: bytes | None = None) -> None:
        callback = self._on_event
        if callback is None:
            return
        try:
            callback(ReaderEvent(kind, reader, atr, time.monotonic()))
        except Exception:
            logger.exception("reader event callback failed")

    def _add_reader(self, name: str, pinpad: PinPadFeatures | None) -> None:
        with self._lock:
            if name in self._slots:
                return
            self._slots[name] = _Slot(name, pinpad=pinpad)
        self._emit(EventKind.READER_ADDED, name)

    def _remove_reader(self, name: str) -> None:
        self._remove(name)
        with self._lock:
            if self._slots.pop(name, None) is None:
                return
        self._emit(EventKind.READER_REMOVED, name)

    def _insert(self, reader: str, card: VirtualCard) -> None:
        self._add_reader(reader, None)
        self._remove(reader)
        with self._lock:
            self._slots[reader].card = card
        card.power_on()
        self._emit(EventKind.CARD_INSERTED, reader, card.atr)

    def _remove(self, reader: str) -> None:
        with self._lock:
            slot = self._slots.get(reader)
            if slot is None or slot.card is None:
                return
            card, slot.card = slot.card, None
        card.power_off()
        self._emit(EventKind.CARD_REMOVED, reader)

    def _run_job(self, reader: str, job: Callable[[SmartCardConnection], T]) -> T:
        with self._lock:
            slot = self._slots.get(reader)
            if slot is None:
                raise NoReaderError(f"no reader named {reader!r}")
            if slot.card is None:
                raise NoCardError(f"no card in {reader!r}")
            connection = VirtualConnection(slot.card, reader)
            connection.pinpad = slot.pinpad
        self.jobs_run += 1
        with connection, connection.transaction():
            return job(connection)
