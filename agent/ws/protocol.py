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
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.ws.errors import ErrorCode, RpcError, error_object, from_exception

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
MAX_STRING = 16 * 1024
"""Longest string parameter (a base64 certificate is about 2-3 KiB)."""

RequestId = str | int | float | None
EventCallback = Callable[[dict[str, Any]], None]

_LANG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


class ClientSessionLike(Protocol):
    """What the dispatcher calls: ``agent.core``'s ClientSession (see core-contract)."""

    origin: str

    async def status(self) -> dict[str, Any]: ...
    async def get_signing_certificate(
        self, *, timeout: float | None = None, lang: str | None = None
    ) -> dict[str, Any]: ...
    async def authenticate(
        self, challenge_nonce: str, *, timeout: float | None = None, lang: str | None = None
    ) -> dict[str, Any]: ...
    async def sign(
        self,
        certificate: str,
        hash: str,  # noqa: A002 - the contract's name
        hash_function: str,
        *,
        timeout: float | None = None,
        lang: str | None = None,
    ) -> dict[str, Any]: ...
    async def read_identity(
        self, *, photo: bool = True, timeout: float | None = None, lang: str | None = None
    ) -> dict[str, Any]: ...
    async def pin_status(
        self, *, timeout: float | None = None, lang: str | None = None
    ) -> dict[str, Any]: ...
    async def change_pin(
        self, *, timeout: float | None = None, pin_name: str | None = None, lang: str | None = None
    ) -> dict[str, Any]: ...
    def subscribe(self, callback: EventCallback) -> None: ...
    def unsubscribe(self) -> None: ...
    async def close(self) -> None: ...


class ParamsError(Exception):
    """A request's params do not fit the method (becomes ERR_WEBEID_NATIVE_INVALID_ARGUMENT)."""

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class Call:
    """A validated request, ready to run."""

    id: RequestId
    method: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


# --- parameter validation -------------------------------------------------------------


def _check_names(params: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for name in params:
        if name not in allowed:
            raise ParamsError(f"unknown parameter {name!r}", name)


def _string(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise ParamsError(f"missing parameter {name!r}", name)
    if not isinstance(value, str):
        raise ParamsError(f"parameter {name!r} must be a string", name)
    if len(value) > MAX_STRING:
        raise ParamsError(f"parameter {name!r} is too long", name)
    return value


def _options(params: Mapping[str, Any]) -> dict[str, Any]:
    """``options: {userInteractionTimeout (ms), lang}`` → ``{timeout (s), lang}``."""
    options = params.get("options")
    if options is None:
        return {"timeout": None, "lang": None}
    if not isinstance(options, dict):
        raise ParamsError("'options' must be an object", "options")
    _check_names(options, ("userInteractionTimeout", "lang"))
    timeout: float | None = None
    raw = options.get("userInteractionTimeout")
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw > 0:
            raise ParamsError(
                "'userInteractionTimeout' must be a positive number of milliseconds",
                "userInteractionTimeout",
            )
        timeout = float(raw) / 1000.0
    lang = options.get("lang")
    if lang is not None and (not isinstance(lang, str) or not _LANG.fullmatch(lang)):
        raise ParamsError("'lang' must be a language code such as 'en' or 'fr'", "lang")
    return {"timeout": timeout, "lang": lang}


def _bind_none(params: Mapping[str, Any]) -> dict[str, Any]:
    _check_names(params, ())
    return {}


def _bind_options(params: Mapping[str, Any]) -> dict[str, Any]:
    _check_names(params, ("options",))
    return _options(params)


def _bind_authenticate(params: Mapping[str, Any]) -> dict[str, Any]:
    _check_names(params, ("challengeNonce", "options"))
    return {"challenge_nonce": _string(params, "challengeNonce"), **_options(params)}


def _bind_sign(params: Mapping[str, Any]) -> dict[str, Any]:
    _check_names(params, ("certificate", "hash", "hashFunction", "options"))
    return {
        "certificate": _string(params, "certificate"),
        "hash": _string(params, "hash"),
        "hash_function": _string(params, "hashFunction"),
        **_options(params),
    }


def _bind_read_identity(params: Mapping[str, Any]) -> dict[str, Any]:
    _check_names(params, ("photo", "options"))
    photo = params.get("photo", True)
    if not isinstance(photo, bool):
        raise ParamsError("'photo' must be true or false", "photo")
    return {"photo": photo, **_options(params)}


def _bind_change_pin(params: Mapping[str, Any]) -> dict[str, Any]:
    _check_names(params, ("pinName", "options"))
    kwargs: dict[str, Any] = dict(_options(params))
    if params.get("pinName") is not None:  # cards with several PINs: "PIN1", "PIN2"
        kwargs["pin_name"] = _string(params, "pinName")
    return kwargs


# --- methods --------------------------------------------------------------------------

Invoker = Callable[["RpcProtocol", Mapping[str, Any]], Awaitable[dict[str, Any]]]


async def _subscribe(proto: RpcProtocol, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    proto.session.subscribe(proto.emit)
    return {"subscribed": True}


async def _unsubscribe(proto: RpcProtocol, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    proto.session.unsubscribe()
    return {"subscribed": False}


@dataclass(frozen=True)
class _Method:
    bind: Callable[[Mapping[str, Any]], dict[str, Any]]
    invoke: Invoker


METHODS: Mapping[str, _Method] = {
    "status": _Method(_bind_none, lambda p, k: p.session.status()),
    "authenticate": _Method(_bind_authenticate, lambda p, k: p.session.authenticate(**k)),
    "getSigningCertificate": _Method(_bind_options, lambda p, k: p.session.get_signing_certificate(**k)),
    "sign": _Method(_bind_sign, lambda p, k: p.session.sign(**k)),
    "readIdentity": _Method(_bind_read_identity, lambda p, k: p.session.read_identity(**k)),
    "pinStatus": _Method(_bind_options, lambda p, k: p.session.pin_status(**k)),
    "changePin": _Method(_bind_change_pin, lambda p, k: p.session.change_pin(**k)),
    "subscribe": _Method(_bind_none, _subscribe),
    "unsubscribe": _Method(_bind_none, _unsubscribe),
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

    def emit(self, payload: dict[str, Any]) -> None:
        """Send a session event to the page as a notification."""
        self._emit(self.event(payload))

    @staticmethod
    def event(payload: dict[str, Any]) -> dict[str, Any]:
        """The notification carrying one reader/card event."""
        return {"jsonrpc": "2.0", "method": "event", "params": payload}

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
            kwargs = method.bind(params)
        except ParamsError as exc:
            extra = {"parameter": exc.parameter} if exc.parameter else {}
            return _error(request_id, error_object(ErrorCode.INVALID_ARGUMENT, str(exc), **extra))
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
        return Call(request_id, request["method"], kwargs)

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
            result = await METHODS[call.method].invoke(self, call.kwargs)
            return _response(call.id, result)
        except Exception as exc:  # noqa: BLE001 - every error becomes a JSON-RPC error
            error: RpcError = from_exception(exc)
            logger.info("%s: %s failed: %s", self.session.origin, call.method, error.code.name_code)
            return _error(call.id, error.to_json())
        finally:
            if call.method == "status":
                self.pending_status -= 1
            else:
                self.pending -= 1
