"""APDU mechanics that every card driver shares, with no I/O of its own.

A driver talks to a card through a :class:`SmartCardConnection` (bytes in, data and
status word out). :class:`CardChannel` sits on top and handles what ISO 7816-4 leaves to
the terminal: GET RESPONSE on ``61xx`` (T=0 response chaining) and re-sending with the
right Le on ``6Cxx``. It raises :class:`~agent.errors.ApduError` for any other status word
than ``9000`` and counts what it sends, for benchmarks.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import logging
import time
from collections.abc import Iterator
from types import TracebackType

from agent.errors import CardError
from agent.logging import TRAFFIC

logger = logging.getLogger(__name__)

__all__ = [
    "SmartCardConnection",
    "StatusWord",
    "CardChannel",
    "encode_apdu",
    "redact_apdu",
    "describe_sw",
    "INS_VERIFY",
    "INS_CHANGE_REFERENCE_DATA",
    "INS_RESET_RETRY_COUNTER",
]

INS_VERIFY = 0x20
INS_CHANGE_REFERENCE_DATA = 0x24
INS_RESET_RETRY_COUNTER = 0x2C
INS_GET_RESPONSE = 0xC0
# Commands whose data field carries PIN material: never logged.
SECRET_INS = frozenset({INS_VERIFY, 0x21, INS_CHANGE_REFERENCE_DATA, 0x25, INS_RESET_RETRY_COUNTER})


class StatusWord(enum.IntEnum):
    """Status words (ISO 7816-4) the agent gives a name to."""

    OK = 0x9000
    WARNING_NOT_ACTIVATED = 0x6283
    PINPAD_TIMEOUT = 0x6400
    PINPAD_CANCELLED = 0x6401
    PINPAD_PIN_MISMATCH = 0x6402
    PINPAD_PIN_FORMAT = 0x6403
    EEPROM_CORRUPTED = 0x6581
    WRONG_LENGTH = 0x6700
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    COMMAND_NOT_ALLOWED = 0x6900
    NOT_A_STRUCTURED_EF = 0x6981
    SECURITY_CONDITION_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCE_DATA_NOT_USABLE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    NO_CURRENT_EF = 0x6986
    INCORRECT_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    INCORRECT_P1_P2 = 0x6A86
    LC_INCONSISTENT = 0x6A87
    REFERENCE_NOT_FOUND = 0x6A88
    WRONG_P1_P2 = 0x6B00
    PINPAD_ERROR = 0x6B80
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00


def describe_sw(sw: int) -> str:
    """A short name for a status word, for messages and logs."""
    try:
        return StatusWord(sw).name.lower().replace("_", " ")
    except ValueError:
        pass
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} bytes available"
    if sw1 == 0x6C:
        return f"wrong Le, {sw2 or 256} bytes available"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left"
    return "unknown status"


class ApduError(CardError):
    """The card answered a status word other than the one expected."""

    def __init__(self, sw: int, data: bytes = b"", message: str | None = None) -> None:
        self.sw = sw
        self.data = data
        super().__init__(message or f"card answered {sw:04X} ({describe_sw(sw)})")


def encode_apdu(
    cla: int,
    ins: int,
    p1: int,
    p2: int,
    data: bytes = b"",
    le: int | None = None,
) -> bytes:
    """Encode a short APDU (ISO 7816-4 cases 1 to 4).

    ``le`` is the expected length, 1 to 256 (256 is encoded as ``00``); ``None`` omits Le.
    """
    if len(data) > 255:
        raise ValueError("short APDUs carry at most 255 bytes of data")
    apdu = bytes((cla, ins, p1, p2))
    if data:
        apdu += bytes((len(data),)) + data
    if le is not None:
        if not 0 < le <= 256:
            raise ValueError("Le must be 1..256")
        apdu += bytes((le & 0xFF,))
    return apdu


def redact_apdu(apdu: bytes) -> str:
    """Hex of a command APDU for logs, with the data field of PIN commands hidden."""
    if len(apdu) > 5 and apdu[1] in SECRET_INS:
        return f"{apdu[:5].hex()} <{len(apdu) - 5} bytes redacted>"
    return apdu.hex()


class SmartCardConnection(abc.ABC):
    """A connection to one card: bytes in, response data and status word out.

    Drivers speak only through this; the pyscard implementation lives in
    :mod:`agent.pcsc`, and the emulator offers an in-process one.
    """

    atr: bytes = b""
    reader: str = ""
    # Reader PIN-pad control codes (agent.smartcard.backend.PinPadFeatures), or None.
    pinpad: object | None = None
    # Set by a driver whose card could not drop its PIN status by command (log_off): the
    # connection then resets the card when it is released (PC/SC: SCARD_RESET_CARD).
    reset_on_release: bool = False

    @abc.abstractmethod
    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one command APDU; return the response data and the status word."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection (the card stays powered)."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Exclusive access to the card for the duration of the block."""
        yield

    def control(self, code: int, data: bytes = b"") -> bytes:
        """Send a reader control command (PC/SC part 10). Not every connection has one."""
        raise NotImplementedError("this connection has no reader control channel")

    def __enter__(self) -> SmartCardConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def log_traffic(direction: str, payload: bytes, sw: int | None = None) -> None:
    """Log one APDU at TRAFFIC level; command data of PIN commands is redacted."""
    if not logger.isEnabledFor(TRAFFIC):
        return
    if sw is None:
        logger.log(TRAFFIC, "%s %s", direction, redact_apdu(payload))
    else:
        logger.log(TRAFFIC, "%s %s SW=%04X", direction, payload.hex(), sw)


def _with_le(apdu: bytes, le: int) -> bytes:
    """The same short command APDU with its Le replaced (or added)."""
    if len(apdu) <= 5:
        header = apdu[:4]
    else:
        header = apdu[: 5 + apdu[4]]
    return header + bytes((le,))


class CardChannel:
    """APDU exchange with T=0 response handling on top of a :class:`SmartCardConnection`.

    * ``61xx``: fetch with GET RESPONSE (Le = xx), repeatedly, concatenating the data.
    * ``6Cxx``: re-send the same command with Le = xx (after ``resend_delay`` seconds:
      some Belgian applets do not answer a re-send that comes too fast).
    """

    def __init__(
        self,
        connection: SmartCardConnection,
        *,
        cla_get_response: int = 0x00,
        resend_delay: float = 0.0,
    ) -> None:
        self.connection = connection
        self._cla_get_response = cla_get_response
        self._resend_delay = resend_delay
        self.apdu_count = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    def _exchange(self, apdu: bytes) -> tuple[bytes, int]:
        data, sw = self.connection.send_and_receive(apdu)
        self.apdu_count += 1
        self.bytes_sent += len(apdu)
        self.bytes_received += len(data) + 2
        return data, sw

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send an APDU, following 61xx and 6Cxx; return all data and the final SW."""
        data, sw = self._exchange(apdu)
        if sw >> 8 == 0x6C:
            if self._resend_delay:
                time.sleep(self._resend_delay)
            data, sw = self._exchange(_with_le(apdu, sw & 0xFF))
        collected = bytearray(data)
        while sw >> 8 == 0x61:
            data, sw = self._exchange(
                bytes((self._cla_get_response, INS_GET_RESPONSE, 0, 0, sw & 0xFF))
            )
            if sw >> 8 == 0x6C:
                data, sw = self._exchange(
                    bytes((self._cla_get_response, INS_GET_RESPONSE, 0, 0, sw & 0xFF))
                )
            collected += data
        return bytes(collected), sw

    def send_apdu(
        self,
        cla: int,
        ins: int,
        p1: int,
        p2: int,
        data: bytes = b"",
        le: int | None = None,
        *,
        expect: tuple[int, ...] = (StatusWord.OK,),
    ) -> bytes:
        """Send one command; return its data, raising ApduError for an unexpected SW."""
        response, sw = self.transmit(encode_apdu(cla, ins, p1, p2, data, le))
        if sw not in expect:
            raise ApduError(sw, response)
        return response

    def reset_counters(self) -> None:
        self.apdu_count = self.bytes_sent = self.bytes_received = 0
