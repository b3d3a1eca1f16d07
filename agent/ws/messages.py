"""The wire format of the socket's messages: typed core values <-> camelCase JSON and base64.

The only place where the core's requests are parsed from a page's ``params`` and its
results and events become JSON (``docs/protocol.md`` is the contract). Parsing checks
form only (names, types, lengths, base64); what a value means (the nonce rule, hash
lengths, the certificate) is the core's to check.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from agent.cards.base import CardInfo, PinStatus, SignatureAlgorithm
from agent.core.values import (
    AuthenticateRequest,
    AuthToken,
    CardEvent,
    CertificateResult,
    ChangePinRequest,
    IdentityResult,
    Options,
    PinChangeResult,
    PinStatusResult,
    ReadIdentityRequest,
    SignatureResult,
    SignRequest,
    StatusResult,
)
from agent.errors import InvalidArgumentError
from agent.ws.identity import identity_json

__all__ = [
    "MAX_STRING",
    "ParamsError",
    "event_json",
    "parse_authenticate",
    "parse_change_pin",
    "parse_none",
    "parse_options",
    "parse_read_identity",
    "parse_sign",
    "result_json",
]

MAX_STRING = 16 * 1024
"""Longest string parameter (a base64 certificate is about 2-3 KiB)."""

_LANG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


class ParamsError(Exception):
    """A request's params do not fit the method (becomes ERR_WEBEID_NATIVE_INVALID_ARGUMENT)."""

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


# --- params -> typed requests -----------------------------------------------------------


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


def _b64decode(value: str, what: str) -> bytes:
    """Standard base64 (with padding).

    Raises:
        InvalidArgumentError: not base64 (the page gets it as an invalid argument).
    """
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError(f"{what} is not valid base64") from None


def parse_options(params: Mapping[str, Any]) -> Options:
    """``options: {userInteractionTimeout (ms), lang}`` → ``Options(timeout (s), lang)``."""
    options = params.get("options")
    if options is None:
        return Options()
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
    return Options(timeout, lang)


def parse_none(params: Mapping[str, Any]) -> None:
    _check_names(params, ())


def parse_only_options(params: Mapping[str, Any]) -> Options:
    _check_names(params, ("options",))
    return parse_options(params)


def parse_authenticate(params: Mapping[str, Any]) -> AuthenticateRequest:
    _check_names(params, ("challengeNonce", "options"))
    return AuthenticateRequest(_string(params, "challengeNonce"), parse_options(params))


def parse_sign(params: Mapping[str, Any]) -> SignRequest:
    _check_names(params, ("certificate", "hash", "hashFunction", "options"))
    certificate = _string(params, "certificate")
    digest = _string(params, "hash")
    hash_function = _string(params, "hashFunction")
    options = parse_options(params)
    return SignRequest(
        _b64decode(certificate, "certificate"), _b64decode(digest, "hash"), hash_function, options
    )


def parse_read_identity(params: Mapping[str, Any]) -> ReadIdentityRequest:
    _check_names(params, ("photo", "options"))
    photo = params.get("photo", True)
    if not isinstance(photo, bool):
        raise ParamsError("'photo' must be true or false", "photo")
    return ReadIdentityRequest(photo, parse_options(params))


def parse_change_pin(params: Mapping[str, Any]) -> ChangePinRequest:
    _check_names(params, ("pinName", "options"))
    options = parse_options(params)
    pin_name = None
    if params.get("pinName") is not None:  # cards with several PINs: "PIN1", "PIN2"
        pin_name = _string(params, "pinName")
    return ChangePinRequest(pin_name, options)


# --- typed results -> JSON ----------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def card_json(info: CardInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"type": info.card_type, "holder": info.holder_name, "serial": info.serial}


def algorithm_json(algorithm: SignatureAlgorithm) -> dict[str, str]:
    return {
        "cryptoAlgorithm": algorithm.crypto_algorithm,
        "hashFunction": algorithm.hash_function,
        "paddingScheme": algorithm.padding_scheme,
    }


def _pin_json(status: PinStatus) -> dict[str, Any]:
    return {
        "name": status.pin.name,
        "triesLeft": status.tries_left,
        "maxTries": status.pin.max_tries,
        "blocked": status.blocked,
        "mustChange": status.must_change,
    }


def _status_json(result: StatusResult) -> dict[str, Any]:
    if not result.approved:
        return {"version": result.version, "approved": False}
    readers = [
        {
            "name": r.name,
            "cardPresent": r.card_present,
            "pinpad": r.pinpad,
            "card": card_json(r.card),
        }
        for r in result.readers
    ]
    return {"version": result.version, "approved": True, "readers": readers}


def token_json(token: AuthToken) -> dict[str, str]:
    """The token as web-eid.js returns it from ``authenticate``."""
    return {
        "unverifiedCertificate": _b64(token.certificate),
        "algorithm": token.algorithm,
        "signature": _b64(token.signature),
        "format": token.format,
        "appVersion": token.app_version,
    }


def result_json(result: object) -> dict[str, Any]:
    """The JSON ``result`` member for a core result (a dict is the ws layer's own answer,
    e.g. ``subscribe``'s, and goes as it is).

    Raises:
        TypeError: not a result the wire knows.
    """
    if isinstance(result, dict):
        return result
    if isinstance(result, StatusResult):
        return _status_json(result)
    if isinstance(result, CertificateResult):
        return {
            "certificate": _b64(result.certificate),
            "supportedSignatureAlgorithms": [algorithm_json(a) for a in result.algorithms],
        }
    if isinstance(result, AuthToken):
        return token_json(result)
    if isinstance(result, SignatureResult):
        return {
            "signature": _b64(result.signature),
            "signatureAlgorithm": algorithm_json(result.algorithm),
        }
    if isinstance(result, IdentityResult):
        return identity_json(result.identity)
    if isinstance(result, PinStatusResult):
        return {
            "pins": [_pin_json(s) for s in result.pins],
            "reader": result.reader,
            "cardType": result.card_type,
        }
    if isinstance(result, PinChangeResult):
        return {
            "pin": result.pin_name,
            "changed": True,
            "reader": result.reader,
            "cardType": result.card_type,
        }
    raise TypeError(f"no wire form for {type(result).__name__}")


def event_json(event: CardEvent | Mapping[str, Any]) -> dict[str, Any]:
    """The ``params`` of an ``event`` notification."""
    if isinstance(event, CardEvent):
        return {"type": event.kind.value, "reader": event.reader, "card": card_json(event.card)}
    return dict(event)
