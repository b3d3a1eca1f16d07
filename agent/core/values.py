"""The typed values the core takes and returns (no JSON keys, no base64 here).

Requests are what a page asked for, already parsed and checked for form by the WebSocket
layer (:mod:`agent.ws.messages`); results and events are what the core answers. Only
``agent.ws.messages`` turns them into the wire's camelCase JSON and base64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.cards.base import CardInfo, PinStatus, SignatureAlgorithm
from agent.smartcard.backend import EventKind

__all__ = [
    "AuthToken",
    "AuthenticateRequest",
    "CardEvent",
    "CertificateResult",
    "ChangePinRequest",
    "IdentityResult",
    "Options",
    "PinChangeResult",
    "PinStatusResult",
    "ReadIdentityRequest",
    "ReaderStatus",
    "SignRequest",
    "SignatureResult",
    "StatusResult",
]


# -- requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What every card request may carry: the page's timeout (seconds) and language."""

    timeout: float | None = None
    lang: str | None = None


@dataclass(frozen=True)
class AuthenticateRequest:
    challenge_nonce: str
    options: Options = field(default_factory=Options)


@dataclass(frozen=True)
class SignRequest:
    certificate: bytes  # DER, as the page got it from getSigningCertificate
    hash: bytes
    hash_function: str  # web-eid.js spelling, e.g. "SHA-256"
    options: Options = field(default_factory=Options)


@dataclass(frozen=True)
class ReadIdentityRequest:
    photo: bool = True
    options: Options = field(default_factory=Options)


@dataclass(frozen=True)
class ChangePinRequest:
    pin_name: str | None = None  # None: the authentication PIN
    options: Options = field(default_factory=Options)


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderStatus:
    """One reader as an approved origin sees it."""

    name: str
    card_present: bool
    pinpad: bool
    card: CardInfo | None  # None until the card was identified (or no card)


@dataclass(frozen=True)
class StatusResult:
    """``status``: readers and cards only for an approved origin (else the version only)."""

    version: str
    approved: bool
    readers: tuple[ReaderStatus, ...] = ()


@dataclass(frozen=True)
class CertificateResult:
    certificate: bytes  # DER
    algorithms: tuple[SignatureAlgorithm, ...]


@dataclass(frozen=True)
class AuthToken:
    """A Web eID authentication token (format ``web-eid:1.0``)."""

    certificate: bytes  # DER of the authentication certificate (not verified by the agent)
    algorithm: str  # JWA name: RS256, PS256, ES256, ES384, ES512
    signature: bytes
    format: str
    app_version: str


@dataclass(frozen=True)
class SignatureResult:
    signature: bytes
    algorithm: SignatureAlgorithm


@dataclass(frozen=True)
class IdentityResult:
    """The card family's identity record (its own dataclass; ``agent.ws.identity`` gives its JSON)."""

    identity: Any


@dataclass(frozen=True)
class PinStatusResult:
    reader: str
    card_type: str
    pins: tuple[PinStatus, ...]


@dataclass(frozen=True)
class PinChangeResult:
    pin_name: str
    reader: str
    card_type: str


@dataclass(frozen=True)
class CardEvent:
    """A reader or card event, as a subscribed page gets it."""

    kind: EventKind
    reader: str
    card: CardInfo | None = None
