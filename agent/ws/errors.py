"""The one table that turns agent errors into JSON-RPC error objects.

Every error the socket carries is
``{"code": <int>, "message": <str>, "data": {"code": "ERR_..."}}``.
Portals act on ``data.code`` (web-eid.js names where the meaning matches, ``ERR_EID_*`` for ours);
the numeric ``code`` follows JSON-RPC 2.0: the reserved -32700..-32603 codes for protocol errors
and the implementation-defined server range -32000..-32099 for the agent's own errors.

Nothing else in the agent turns exceptions into codes; ``docs/protocol.md`` lists this table.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from agent import errors

__all__ = [
    "ErrorCode",
    "RpcError",
    "error_object",
    "from_exception",
]

logger = logging.getLogger(__name__)


class ErrorCode(enum.Enum):
    """A string error code and its JSON-RPC numeric code."""

    # JSON-RPC 2.0 protocol errors.
    PARSE_ERROR = ("ERR_EID_PARSE_ERROR", -32700)
    INVALID_REQUEST = ("ERR_EID_INVALID_REQUEST", -32600)
    METHOD_NOT_FOUND = ("ERR_EID_METHOD_NOT_FOUND", -32601)
    INVALID_ARGUMENT = ("ERR_WEBEID_NATIVE_INVALID_ARGUMENT", -32602)
    FATAL = ("ERR_WEBEID_NATIVE_FATAL", -32603)
    # The agent's own errors (JSON-RPC server-error range).
    USER_CANCELLED = ("ERR_WEBEID_USER_CANCELLED", -32001)
    USER_TIMEOUT = ("ERR_WEBEID_USER_TIMEOUT", -32002)
    ORIGIN_NOT_ALLOWED = ("ERR_EID_ORIGIN_NOT_ALLOWED", -32003)
    NO_READER = ("ERR_EID_NO_READER", -32004)
    NO_CARD = ("ERR_EID_NO_CARD", -32005)
    CARD_REMOVED = ("ERR_EID_CARD_REMOVED", -32006)
    PIN_INVALID = ("ERR_EID_PIN_INVALID", -32007)
    PIN_BLOCKED = ("ERR_EID_PIN_BLOCKED", -32008)
    BUSY = ("ERR_EID_BUSY", -32009)
    UNSUPPORTED_CARD = ("ERR_EID_UNSUPPORTED_CARD", -32010)
    CERTIFICATE_NOT_FOUND = ("ERR_EID_CERTIFICATE_NOT_FOUND", -32011)
    NOT_SUPPORTED = ("ERR_EID_NOT_SUPPORTED", -32012)
    CARD_ERROR = ("ERR_EID_CARD_ERROR", -32013)
    TOO_MANY_REQUESTS = ("ERR_EID_TOO_MANY_REQUESTS", -32014)
    PIN_CHANGE_REQUIRED = ("ERR_EID_PIN_CHANGE_REQUIRED", -32015)

    @property
    def name_code(self) -> str:
        """The string code portals switch on, e.g. ``ERR_WEBEID_USER_CANCELLED``."""
        return self.value[0]

    @property
    def rpc_code(self) -> int:
        """The JSON-RPC numeric code."""
        return self.value[1]


@dataclass(frozen=True)
class RpcError:
    """An error ready for the wire: code, human message and extra data fields."""

    code: ErrorCode
    message: str
    extra: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return error_object(self.code, self.message, **dict(self.extra))


def error_object(code: ErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    """Build the JSON-RPC ``error`` member: ``{code, message, data: {code, **extra}}``."""
    return {"code": code.rpc_code, "message": message, "data": {"code": code.name_code, **extra}}


# Most specific classes first: the first isinstance match wins.
_TABLE: tuple[tuple[type[BaseException], ErrorCode, str], ...] = (
    (errors.InvalidArgumentError, ErrorCode.INVALID_ARGUMENT, "Invalid argument"),
    (
        errors.CertificateNotFoundError,
        ErrorCode.CERTIFICATE_NOT_FOUND,
        "No card holds that certificate",
    ),
    (errors.UserCancelledError, ErrorCode.USER_CANCELLED, "The user cancelled"),
    (errors.PinPadCancelledError, ErrorCode.USER_CANCELLED, "The user cancelled on the PIN pad"),
    (errors.UserTimeoutError, ErrorCode.USER_TIMEOUT, "The user did not respond in time"),
    (errors.PinPadTimeoutError, ErrorCode.USER_TIMEOUT, "Nobody typed the PIN on the PIN pad"),
    (errors.OriginNotAllowedError, ErrorCode.ORIGIN_NOT_ALLOWED, "This site may not use the card"),
    (errors.NoReaderError, ErrorCode.NO_READER, "No card reader is connected"),
    (errors.NoCardError, ErrorCode.NO_CARD, "No ID card in the reader"),
    (errors.CardRemovedError, ErrorCode.CARD_REMOVED, "The card was removed"),
    (errors.PinBlockedError, ErrorCode.PIN_BLOCKED, "The PIN is blocked"),
    (
        errors.PinChangeRequiredError,
        ErrorCode.PIN_CHANGE_REQUIRED,
        "The PIN is still the initial one: change it first",
    ),
    (errors.InvalidPinError, ErrorCode.PIN_INVALID, "Wrong PIN"),
    (errors.PinFormatError, ErrorCode.PIN_INVALID, "The PIN does not fit the card's rules"),
    (errors.BusyError, ErrorCode.BUSY, "The card is busy with another request"),
    (errors.UnsupportedCardError, ErrorCode.UNSUPPORTED_CARD, "This card is not supported"),
    (errors.NotSupportedError, ErrorCode.NOT_SUPPORTED, "The card cannot do this"),
    (errors.CardError, ErrorCode.CARD_ERROR, "The card or reader failed"),
)


def from_exception(exc: BaseException) -> RpcError:
    """Map an exception raised by a ClientSession to the error the page sees.

    Agent errors keep their own message (it never holds a PIN: the error tree carries
    only counters and names). Anything unexpected becomes ``ERR_WEBEID_NATIVE_FATAL``
    with a generic message; the details go to the log, not to the page.
    """
    for cls, code, default in _TABLE:
        if isinstance(exc, cls):
            extra: list[tuple[str, Any]] = []
            if isinstance(exc, errors.InvalidPinError):
                extra += [("triesLeft", exc.tries_left), ("pinName", exc.pin_name)]
            elif isinstance(exc, errors.PinBlockedError | errors.PinChangeRequiredError):
                extra.append(("pinName", exc.pin_name))
            return RpcError(code, str(exc) or default, tuple(extra))
    if isinstance(exc, errors.AgentError):
        return RpcError(ErrorCode.FATAL, str(exc) or "Agent error")
    logger.error("unexpected error in a request", exc_info=exc)
    return RpcError(ErrorCode.FATAL, "Technical error, see the agent's log")
