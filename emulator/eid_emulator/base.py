"""The virtual-card interface and its in-process connection.

A :class:`VirtualCard` has an ATR and answers one APDU at a time. It can be served
in-process as a :class:`~agent.smartcard.apdu.SmartCardConnection` (no PC/SC at all, for unit tests)
or to a real pcscd through vsmartcard's vpcd driver (:mod:`eid_emulator.vpcd`).
"""

from __future__ import annotations

import abc
import threading

from agent.errors import CardRemovedError
from agent.smartcard.apdu import SmartCardConnection, log_traffic


class VirtualCard(abc.ABC):
    """A card that lives in software."""

    @property
    @abc.abstractmethod
    def atr(self) -> bytes:
        """The Answer To Reset."""

    @abc.abstractmethod
    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with response data followed by SW1 SW2."""

    def power_on(self) -> None:
        """Cold reset: the card's volatile state (selected files, PIN state) is lost."""
        self.reset()

    def power_off(self) -> None:
        self.reset()

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Warm reset; the default card has no volatile state."""


class VirtualConnection(SmartCardConnection):
    """A :class:`SmartCardConnection` straight to a :class:`VirtualCard`, in-process."""

    def __init__(self, card: VirtualCard, reader: str = "Virtual in-process reader") -> None:
        self.card = card
        self.atr = card.atr
        self.reader = reader
        self._lock = threading.RLock()
        self._closed = False
        self.removed = False

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        if self.removed:
            raise CardRemovedError("the virtual card was removed")
        if self._closed:
            raise RuntimeError("connection closed")
        with self._lock:
            log_traffic("SEND", apdu)
            response = self.card.process(apdu)
            if len(response) < 2:
                raise CardRemovedError("the virtual card gave no status word")
            data, sw = response[:-2], int.from_bytes(response[-2:], "big")
            log_traffic("RECV", data, sw)
            return data, sw

    def close(self) -> None:
        if self.reset_on_release and not self._closed and not self.removed:
            self.card.reset()  # as pcscd does for SCARD_RESET_CARD
        self._closed = True
