"""What the operations core needs from the reader layer, with no PC/SC in sight.

:class:`agent.pcsc.PcscBackend` implements it on pcscd; the emulator has an in-process one
for unit tests. All blocking card work runs on the backend's single worker thread.
"""

from __future__ import annotations

import concurrent.futures
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from agent.smartcard.apdu import SmartCardConnection

T = TypeVar("T")


@dataclass(frozen=True)
class PinPadFeatures:
    verify_pin_direct: int | None = None  # control codes, when the reader has them
    modify_pin_direct: int | None = None

    @property
    def can_verify(self) -> bool:
        return self.verify_pin_direct is not None


@dataclass(frozen=True)
class ReaderInfo:
    name: str
    card_present: bool
    atr: bytes | None = None
    pinpad: PinPadFeatures | None = None  # None: not a PIN-pad reader (or unknown yet)


class EventKind(enum.Enum):
    READER_ADDED = "reader-added"
    READER_REMOVED = "reader-removed"
    CARD_INSERTED = "card-inserted"
    CARD_REMOVED = "card-removed"


@dataclass(frozen=True)
class ReaderEvent:
    kind: EventKind
    reader: str
    atr: bytes | None = None
    timestamp: float = 0.0  # time.monotonic() when the backend saw it


EventCallback = Callable[[ReaderEvent], None]


class ReaderBackend(Protocol):
    def start(self, on_event: EventCallback) -> None:
        """Start watching readers; ``on_event`` is called from the worker thread."""

    def stop(self) -> None: ...

    def readers(self) -> list[ReaderInfo]:
        """The current readers and cards (a snapshot: no PC/SC call, never blocks)."""

    def run(
        self, reader: str, job: Callable[[SmartCardConnection], T]
    ) -> concurrent.futures.Future[T]:
        """Run ``job(connection)`` on the worker, inside one card transaction.

        The future fails with NoReaderError, NoCardError, CardRemovedError or
        CardCommunicationError when the card cannot be reached.
        """
