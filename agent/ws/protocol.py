"""Sans-I/O JSON-RPC 2.0 dispatcher: one per WebSocket connection, no sockets in here.

The server feeds every text message to :meth:`RpcProtocol.receive`, which returns either a
:class:`Call` to run (with :meth:`RpcProtocol.execute`, as its own task, so ``status`` is
answered while ``authenticate`` waits for the user), a response to send at once (an error),
or ``None`` (nothing to send). Events from the session become notifications through
:meth:`RpcProtocol.event`. Tests drive this class with strings and a fake session.

Decisions (documented in ``docs/protocol.md``):

* Params by name only (a JSON object); unknown names are refused.
* Batches (JSON arrays) are refused with one ``Invalid Request`` error.
* Notifications (requests without ``id``) are not executed and get no reply: every
  method returns a result, and running a card operation nobody waits for is never wanted.
* At most ``max_pending`` calls run at once per connection; more get ``ERR_EID_TOO_MANY_REQUESTS``.
  ``status`` does not count against that limit (it stays answerable while a prompt waits);
  it has its own, larger one (``MAX_PENDING_STATUS``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agent.core.values import (
    AuthenticateRequest,
    ChangePinRequest,
    Options,
    ReadIdentityRequest,
    SignRequest,
)
from agent.errors import InvalidArgumentError
from agent.ws import messages
from agent.ws.errors import ErrorCode, RpcError, error_object, from_exception
from agent.ws.messages import ParamsError

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MAX_PENDING",
    "MAX_PENDING_STATUS",
    "METHODS",
    "Call",
    "ClientSessionLike",
    "RpcProtocol",
    "encode",
]

logger = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 64 * 1024
"""Largest request answered with a JSON-RPC error instead of a result (bytes of UTF-8)."""
MAX_PENDING = 4
"""Calls one connection may have running at once (``status`` not counted)."""
MAX_PENDING_STATUS = 16
"""``status`` calls one connection may have running at once (they never wait for the user)."""

RequestId = str | int | float | None
EventCallback = Callable[[Any], None]


class ClientSessionLike(Protocol):
    """What the dispatcher calls: ``agent.core``'s ClientSession (see core-contract).

    Results are the core's typed values (:mod:`agent.core.values`), made JSON by
    :func:`agent.ws.messages.result_json`; events are :class:`~agent.core.values.CardEvent`.
    """

    origin: str

    async def status(self) -> object: ...
    async def get_signing_certificate(
        self, *, timeout: float | None = None, lang: str | None = None
    ) -> object: ...
    async def authenticate(
        self, challenge_nonce: str, *, timeout: float | None = None, lang: str | None = None
    ) -> object: ...
    async def sign(
        self,
        certificate: bytes,
        hash: bytes,  # noqa: A002 - the contract's name
        hash_function: str,
        *,
        timeout: float | None = None,
        lang: str | None = None,
    ) -> object: ...
    async def read_identity(
        self, *, photo: bool = True, timeout: float | None = None, lang: str | None = None
    ) -> object: ...
    async def pin_status(
        self, *, timeout: float | None = None, lang: str | None = None
    ) -> object: ...
    async def change_pin(
        self, *, timeout: float | None = None, pin_name: str | None = None, lang: str | None = None
    ) -> object: ...
    def subscribe(self, callback: EventCallback) -> None: ...
    def unsubscribe(self) -> None: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class Call:
    """A validated request, ready to run: ``request`` is the method's typed request."""

    id: RequestId
    method: str
    request: Any = None


# --- methods --------------------------------------------------------------------------

Invoker = Callable[["RpcProtocol", Any], Awaitable[object]]


async def _subscribe(proto: RpcProtocol, request: None) -> dict[str, Any]:
    proto.session.subscribe(proto.emit)
    return {"subscribed": True}


async def _unsubscribe(proto: RpcProtocol, request: None) -> dict[str, Any]:
    proto.session.unsubscribe()
    return {"subscribed": False}


def _status(proto: RpcProtocol, request: None) -> Awaitable[object]:
    return proto.session.status()


def _authenticate(proto: RpcProtocol, r: AuthenticateRequest) -> Awaitable[object]:
    return proto.session.authenticate(
        r.challenge_nonce, timeout=r.options.timeout, lang=r.options.lang
    )


def _get_signing_certificate(proto: RpcProtocol, r: Options) -> Awaitable[object]:
    return proto.session.get_signing_certificate(timeout=r.timeout, lang=r.lang)


def _sign(proto: RpcProtocol, r: SignRequest) -> Awaitable[object]:
    return proto.session.sign(
        r.certificate, r.hash, r.hash_function, timeout=r.options.timeout, lang=r.options.lang
    )


def _read_identity(proto: RpcProtocol, r: ReadIdentityRequest) -> Awaitable[object]:
    return proto.session.read_identity(
        photo=r.photo, timeout=r.options.timeout, lang=r.options.lang
    )


def _pin_status(proto: RpcProtocol, r: Options) -> Awaitable[object]:
    return proto.session.pin_status(timeout=r.timeout, lang=r.lang)


def _change_pin(proto: RpcProtocol, r: ChangePinRequest) -> Awaitable[object]:
    if r.pin_name is None:
        return proto.session.change_pin(timeout=r.options.timeout, lang=r.options.lang)
    return proto.session.change_pin(
        timeout=r.options.timeout, lang=r.options.lang, pin_name=r.pin_name
    )


@dataclass(frozen=True)
class _Method:
    parse: Callable[[Mapping[str, Any]], Any]
    invoke: Invoker


METHODS: Mapping[str, _Method] = {
    "status": _Method(messages.parse_none, _status),
    "authenticate": _Method(messages.parse_authenticate, _authenticate),
    "getSigningCertificate": _Method(messages.parse_only_options, _get_signing_certificate),
    "sign": _Method(messages.parse_sign, _sign),
    "readIdentity": _Method(messages.parse_read_identity, _read_identity),
    "pinStatus": _Method(messages.parse_only_options, _pin_status),
    "changePin": _Method(messages.parse_change_pin, _change_pin),
    "subscribe": _Method(messages.parse_none, _subscribe),
    "unsubscribe": _Method(messages.parse_none, _unsubscribe),
}
"""The socket's methods, by their JSON-RPC names."""


# --- messages -------------------------------------------------------------------------


def _response(request_id: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def _error(request_id: RequestId, error: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def encode(message: dict[str, Any]) -> str:
    """Serialise a response or notification; a result that is not JSON becomes a fatal error."""
    try:
        return json.dumps(message, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        logger.exception("response for %r is not JSON-serialisable", message.get("id"))
        fallback = _error(message.get("id"), from_exception(RuntimeError()).to_json())
        return json.dumps(fallback)


def _valid_id(value: Any) -> bool:
    # json.loads reads 1e999 as inf, which cannot be sent back as JSON: not a valid id.
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


class RpcProtocol:
    """JSON-RPC state for one connection: parsing, limits, dispatch to the ClientSession.

    Args:
        session: the connection's ClientSession.
        emit: called with each event notification (a dict) to send; the server
            wires this to the socket. It is handed to ``session.subscribe``.
        max_message_size: larger requests get ``Invalid Request`` (the socket's own
            hard limit closes the connection above that).
        max_pending: calls allowed to run at once.
    """

    def __init__(
        self,
        session: ClientSessionLike,
        *,
        emit: EventCallback,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.session: ClientSessionLike = session
        self._emit = emit
        self.max_message_size = max_message_size
        self.max_pending = max_pending
        self.pending = 0
        self.pending_status = 0

    def emit(self, event: object) -> None:
        """Send a session event (a :class:`~agent.core.values.CardEvent`) to the page."""
        self._emit(self.event(event))

    @staticmethod
    def event(event: Any) -> dict[str, Any]:
        """The notification carrying one reader/card event."""
        return {"jsonrpc": "2.0", "method": "event", "params": messages.event_json(event)}

    def receive(self, message: str | bytes) -> Call | dict[str, Any] | None:
        """Parse one WebSocket message.

        Returns:
            a :class:`Call`: run it with :meth:`execute` (it counts as pending until then);
            a dict: an error response to send now;
            ``None``: a notification, nothing to send.
        """
        raw = message if isinstance(message, bytes) else message.encode("utf-8", "replace")
        size = len(raw)
        if size > self.max_message_size:
            return _error(
                None,
                error_object(
                    ErrorCode.INVALID_REQUEST,
                    f"request too large ({size} bytes, limit {self.max_message_size})",
                ),
            )
        try:
            text = message.decode("utf-8") if isinstance(message, bytes) else message
            request = json.loads(text, parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _error(None, error_object(ErrorCode.PARSE_ERROR, "parse error: not JSON"))
        return self._request(request)

    def _request(self, request: Any) -> Call | dict[str, Any] | None:
        if isinstance(request, list):
            return _error(None, error_object(ErrorCode.INVALID_REQUEST, "batch requests are not supported"))
        if not isinstance(request, dict):
            return _error(None, error_object(ErrorCode.INVALID_REQUEST, "request must be an object"))
        has_id = "id" in request
        request_id = request.get("id")
        if not _valid_id(request_id):
            return _error(None, error_object(ErrorCode.INVALID_REQUEST, "id must be a string or a number"))
        problem = self._check_envelope(request)
        if problem is not None:
            return _error(request_id, error_object(ErrorCode.INVALID_REQUEST, problem))
        if not has_id:
            logger.info("ignoring notification %r: requests need an id", request["method"])
            return None
        method = METHODS.get(request["method"])
        if method is None:
            return _error(
                request_id,
                error_object(ErrorCode.METHOD_NOT_FOUND, f"unknown method {request['method']!r}"),
            )
        params = request.get("params", {})
        if not isinstance(params, dict):
            return _error(
                request_id,
                error_object(ErrorCode.INVALID_ARGUMENT, "params must be an object (by name)"),
            )
        try:
            typed = method.parse(params)
        except ParamsError as exc:
            extra = {"parameter": exc.parameter} if exc.parameter else {}
            return _error(request_id, error_object(ErrorCode.INVALID_ARGUMENT, str(exc), **extra))
        except InvalidArgumentError as exc:  # well-formed, but not base64
            return _error(request_id, from_exception(exc).to_json())
        is_status = request["method"] == "status"
        running, limit = (
            (self.pending_status, MAX_PENDING_STATUS) if is_status else (self.pending, self.max_pending)
        )
        if running >= limit:
            return _error(
                request_id,
                error_object(
                    ErrorCode.TOO_MANY_REQUESTS,
                    f"too many requests in progress (limit {limit})",
                ),
            )
        if is_status:
            self.pending_status += 1
        else:
            self.pending += 1
        return Call(request_id, request["method"], typed)

    @staticmethod
    def _check_envelope(request: dict[str, Any]) -> str | None:
        if request.get("jsonrpc") != "2.0":
            return 'jsonrpc must be "2.0"'
        if not isinstance(request.get("method"), str):
            return "method must be a string"
        if "result" in request or "error" in request:
            return "the agent accepts requests only"
        return None

    async def execute(self, call: Call) -> dict[str, Any]:
        """Run a call returned by :meth:`receive`; returns the response to send.

        Agent errors become JSON-RPC errors. Cancellation (the page went away) propagates.
        """
        try:
            logger.debug("%s: %s", self.session.origin, call.method)
            result = await METHODS[call.method].invoke(self, call.request)
            return _response(call.id, messages.result_json(result))
        except Exception as exc:  # noqa: BLE001 - every error becomes a JSON-RPC error
            error: RpcError = from_exception(exc)
            logger.info("%s: %s failed: %s", self.session.origin, call.method, error.code.name_code)
            return _error(call.id, error.to_json())
        finally:
            if call.method == "status":
                self.pending_status -= 1
            else:
                self.pending -= 1
