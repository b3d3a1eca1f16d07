"""pyscard's low-level API wrapped into contexts and connections with typed errors."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from collections.abc import Iterator

from smartcard import scard

from agent.errors import (
    CardCommunicationError,
    CardRemovedError,
    NoCardError,
    NoReaderError,
)
from agent.smartcard.apdu import SmartCardConnection, log_traffic
from agent.smartcard.backend import PinPadFeatures, ReaderInfo
from agent.smartcard.pinpad import (
    CM_IOCTL_GET_FEATURE_REQUEST_PCSCLITE,
    CM_IOCTL_GET_FEATURE_REQUEST_WINDOWS,
    pinpad_features,
)

logger = logging.getLogger(__name__)

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"

# Errors that mean the service (pcscd) went away: the context must be re-established.
SERVICE_GONE = frozenset(
    {
        scard.SCARD_E_NO_SERVICE,
        scard.SCARD_E_SERVICE_STOPPED,
        scard.SCARD_E_INVALID_HANDLE,
        getattr(scard, "SCARD_E_COMM_DATA_LOST", 0x8010002F),
        getattr(scard, "SCARD_F_COMM_ERROR", 0x80100013),
    }
)
CARD_GONE = frozenset(
    {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_UNPOWERED_CARD}
)
READER_GONE = frozenset(
    {scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE, scard.SCARD_E_NO_READERS_AVAILABLE}
)


# SCardStatus's dwState bits (winscard/pcsc-lite); pyscard does not export them.
_SCARD_PRESENT = 0x0004


def _feature_request_code() -> int:
    import sys

    if sys.platform == "win32":
        return CM_IOCTL_GET_FEATURE_REQUEST_WINDOWS
    return CM_IOCTL_GET_FEATURE_REQUEST_PCSCLITE


def error_message(hresult: int) -> str:
    try:
        return f"{scard.SCardGetErrorMessage(hresult)} (0x{hresult & 0xFFFFFFFF:08X})"
    except Exception:  # noqa: BLE001 - diagnostics only
        return f"0x{hresult & 0xFFFFFFFF:08X}"


def raise_for(hresult: int, what: str) -> None:
    """Turn a PC/SC result code into the agent's typed errors."""
    if hresult == scard.SCARD_S_SUCCESS:
        return
    message = f"{what}: {error_message(hresult)}"
    if hresult in CARD_GONE:
        raise CardRemovedError(message)
    if hresult in READER_GONE:
        raise NoReaderError(message)
    raise CardCommunicationError(message)


class PcscContext:
    """A PC/SC resource manager context that re-establishes itself after pcscd restarts."""

    def __init__(self) -> None:
        self.handle: int | None = None

    def establish(self) -> int:
        if self.handle is None:
            hresult, handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if hresult != scard.SCARD_S_SUCCESS:
                raise CardCommunicationError(
                    f"the smart-card service is not available: {error_message(hresult)}"
                )
            self.handle = handle
        return self.handle

    def release(self) -> None:
        if self.handle is not None:
            try:
                scard.SCardReleaseContext(self.handle)
            except Exception as exc:  # noqa: BLE001 - the service may be gone already
                logger.debug("releasing the PC/SC context: %s", exc)
            self.handle = None

    def is_valid(self) -> bool:
        if self.handle is None:
            return False
        return scard.SCardIsValidContext(self.handle) == scard.SCARD_S_SUCCESS

    def reader_names(self) -> list[str]:
        """Reader names; [] when there are none. Re-establishes a stale context once."""
        for attempt in (1, 2):
            handle = self.establish()
            hresult, readers = scard.SCardListReaders(handle, [])
            if hresult == scard.SCARD_S_SUCCESS:
                return list(readers)
            if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
                return []
            if hresult in SERVICE_GONE and attempt == 1:
                self.release()
                continue
            raise_for(hresult, "listing readers")
        return []

    def cancel(self) -> None:
        handle = self.handle
        if handle is not None:
            scard.SCardCancel(handle)

    def __enter__(self) -> PcscContext:
        self.establish()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class PcscConnection(SmartCardConnection):
    """A connection to the card in one reader (shared mode, T=0 or T=1)."""

    def __init__(self, context: PcscContext, reader: str, *, own_context: bool = False) -> None:
        self._context = context
        self._own_context = own_context
        self.reader = reader
        handle = context.establish()
        hresult, card, protocol = scard.SCardConnect(
            handle, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        if hresult in (scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD):
            raise NoCardError(f"no card in {reader!r}")
        if hresult in READER_GONE:
            raise NoReaderError(f"reader {reader!r} not found")
        raise_for(hresult, f"connecting to {reader!r}")
        self._card: int | None = card
        self.protocol = protocol
        self._pci = scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
        self._in_transaction = False
        hresult, _name, _state, _proto, atr = scard.SCardStatus(card)
        self.atr = bytes(atr) if hresult == scard.SCARD_S_SUCCESS else b""
        self.pinpad = self._read_pinpad_features()

    def _read_pinpad_features(self) -> PinPadFeatures | None:
        try:
            response = self.control(_feature_request_code())
        except CardCommunicationError:
            return None
        try:
            return pinpad_features(response)
        except Exception:  # noqa: BLE001 - a reader with a broken feature list has no PIN pad
            logger.warning("reader %r returned a malformed feature list", self.reader)
            return None

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        if self._card is None:
            raise CardCommunicationError("connection closed")
        log_traffic("SEND", apdu)
        hresult, response = scard.SCardTransmit(self._card, self.protocol, list(apdu))
        if hresult != scard.SCARD_S_SUCCESS and hresult not in CARD_GONE and self._card_gone():
            raise CardRemovedError(f"the card left {self.reader!r} during a command")
        raise_for(hresult, "transmit")
        if len(response) < 2:
            if self._card_gone():
                raise CardRemovedError(f"the card left {self.reader!r} during a command")
            raise CardCommunicationError(f"short response from the card: {bytes(response).hex()}")
        data = bytes(response[:-2])
        sw = response[-2] << 8 | response[-1]
        log_traffic("RECV", data, sw)
        return data, sw

    def _card_gone(self, settle: float = 1.0) -> bool:
        """After a failed or empty transmit: was it because the card left the reader?

        A reader driver may report a pulled card as a generic communication error or an
        empty answer (vpcd does), and pcscd may notice the removal a moment later: wait up
        to ``settle`` seconds for the reader to say so. Only on this error path.
        """
        if self._card is None:
            return False
        hresult, _name, state, _proto, _atr = scard.SCardStatus(self._card)
        if hresult in CARD_GONE or (hresult == scard.SCARD_S_SUCCESS and not state & _SCARD_PRESENT):
            return True
        handle = self._context.handle
        if handle is None:
            return False
        current = scard.SCARD_STATE_PRESENT
        deadline = time.monotonic() + settle
        while (left := deadline - time.monotonic()) > 0:
            hresult, states = scard.SCardGetStatusChange(
                handle, int(left * 1000) + 1, [(self.reader, current)]
            )
            if hresult != scard.SCARD_S_SUCCESS:
                return False
            _reader, event, _atr = states[0]
            if event & (scard.SCARD_STATE_EMPTY | scard.SCARD_STATE_UNKNOWN):
                return True
            current = event & ~scard.SCARD_STATE_CHANGED
        return False

    def control(self, code: int, data: bytes = b"") -> bytes:
        if self._card is None:
            raise CardCommunicationError("connection closed")
        hresult, response = scard.SCardControl(self._card, code, list(data))
        raise_for(hresult, f"reader control 0x{code:08X}")
        return bytes(response)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._card is None:
            raise CardCommunicationError("connection closed")
        hresult = scard.SCardBeginTransaction(self._card)
        raise_for(hresult, "beginning a transaction")
        self._in_transaction = True
        try:
            yield
        finally:
            self._in_transaction = False
            if self._card is not None:
                scard.SCardEndTransaction(self._card, scard.SCARD_LEAVE_CARD)

    def close(self) -> None:
        card, self._card = self._card, None
        if card is not None:
            # LEAVE by default: a reset after every job would cost each next job its
            # applet selection and break other programs' sessions on the card. The PIN
            # status is dropped by the driver's log_off(); a driver whose card would not
            # confirm that asks for the reset (reset_on_release).
            disposition = scard.SCARD_RESET_CARD if self.reset_on_release else scard.SCARD_LEAVE_CARD
            scard.SCardDisconnect(card, disposition)
        if self._own_context:
            self._context.release()


def _reader_info(context: PcscContext, name: str, state: int, atr: bytes) -> ReaderInfo:
    present = bool(state & scard.SCARD_STATE_PRESENT)
    return ReaderInfo(name=name, card_present=present, atr=atr if present else None)


def reader_states(context: PcscContext, names: list[str]) -> list[tuple[str, int, bytes]]:
    """Current (name, event state, ATR) of each reader, without waiting."""
    if not names:
        return []
    handle = context.establish()
    hresult, states = scard.SCardGetStatusChange(
        handle, 0, [(name, scard.SCARD_STATE_UNAWARE) for name in names]
    )
    if hresult == scard.SCARD_E_TIMEOUT:
        return [(name, scard.SCARD_STATE_UNAWARE, b"") for name in names]
    raise_for(hresult, "reading reader states")
    return [(name, state, bytes(atr)) for name, state, atr in states]


def list_readers() -> list[ReaderInfo]:
    """Readers with card presence and ATR (one-shot; opens and releases a context)."""
    with PcscContext() as context:
        names = context.reader_names()
        return [_reader_info(context, *s) for s in reader_states(context, names)]


def connect(reader: str) -> PcscConnection:
    """Connect to the card in ``reader`` with a context of its own (closed with it)."""
    return PcscConnection(PcscContext(), reader, own_context=True)


def wait_for_card(reader: str, present: bool = True, timeout: float = 10.0) -> float:
    """Block in SCardGetStatusChange until a card is present (or absent) in ``reader``.

    Returns the seconds waited; raises TimeoutError.
    """
    start = time.monotonic()
    with PcscContext() as context:
        handle = context.establish()
        current = scard.SCARD_STATE_UNAWARE
        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                raise TimeoutError(f"card {'insertion' if present else 'removal'} in {reader!r}")
            hresult, states = scard.SCardGetStatusChange(
                handle, int(left * 1000), [(reader, current)]
            )
            if hresult == scard.SCARD_E_TIMEOUT:
                continue
            raise_for(hresult, "waiting for the card")
            _name, state, _atr = states[0]
            if bool(state & scard.SCARD_STATE_PRESENT) == present and not state & scard.SCARD_STATE_UNKNOWN:
                return time.monotonic() - start
            current = state & ~scard.SCARD_STATE_CHANGED


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        from importlib.metadata import version

        out["pyscard"] = version("pyscard")
    except Exception:  # noqa: BLE001
        out["pyscard"] = "unknown"
    try:
        text = subprocess.run(
            ["pcscd", "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
        first = text.splitlines()[0] if text else ""
        out["pcsc-lite"] = first.removeprefix("pcsc-lite version ").rstrip(".") or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["pcsc-lite"] = "unknown (pcscd not found)"
    return out
