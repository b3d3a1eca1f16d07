"""What the operations core needs from a card driver, whatever the card.

A driver module offers ``open_session(connection) -> CardSession`` (raising
:class:`~agent.errors.UnsupportedCardError` when the card is not its kind). A session is
used inside one card transaction, on the PC/SC worker thread.

The PIN model is general: a card has one or more PINs (:class:`PinInfo`), and each key
names the PIN that guards it. The Belgian card has one PIN for both keys; Estonian and
Latvian cards have PIN1 for authentication and PIN2 for signing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from agent.errors import NotSupportedError
from agent.smartcard.hashes import WEB_EID_HASHES, HashFunction, lookup


class KeyRole(enum.Enum):
    AUTHENTICATION = "authentication"
    SIGNING = "signing"


class _PinPad:
    """Marker: let the reader's PIN pad collect the PIN (secure PIN entry)."""

    _instance: _PinPad | None = None

    def __new__(cls) -> _PinPad:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "PINPAD"


PINPAD: Final = _PinPad()
"""Pass as the PIN to have the PIN typed on the reader's keypad."""

PinEntry = str | _PinPad


@dataclass(frozen=True)
class PinInfo:
    """One PIN of a card, as the user and the dialogs know it."""

    reference: int
    name: str  # "PIN" on the Belgian card, "PIN1"/"PIN2" on Baltic cards
    min_length: int = 4
    max_length: int = 12
    max_tries: int = 3


@dataclass(frozen=True)
class PinStatus:
    pin: PinInfo
    tries_left: int | None  # None: the card cannot tell without spending a try
    blocked: bool = False
    verified: bool = False
    must_change: bool = False  # e.g. an initial PIN that must be changed first


@dataclass(frozen=True)
class SignatureAlgorithm:
    """As web-eid.js names them: cryptoAlgorithm ECC|RSA, paddingScheme NONE|PKCS1.5|PSS."""

    crypto_algorithm: str
    hash_function: str  # "SHA-256", "SHA-384", "SHA-512", ...
    padding_scheme: str


def hash_for_digest(
    digest: bytes, hash_function: str, known: Mapping[str, HashFunction] = WEB_EID_HASHES
) -> HashFunction:
    """The hash function named (loosely spelt) ``hash_function``, once ``digest`` is
    checked to have its length.

    Raises:
        NotSupportedError: a hash function not in ``known``.
        ValueError: the digest length does not match the hash function.
    """
    found = lookup(hash_function, known)
    if found is None:
        raise NotSupportedError(f"unknown hash function {hash_function!r}")
    if len(digest) != found.length:
        raise ValueError(f"a {found.name} digest has {found.length} bytes, got {len(digest)}")
    return found


@dataclass(frozen=True)
class CardInfo:
    card_type: str  # e.g. "BE eID (applet 1.8)"
    serial: str  # hex or printable card serial, stable per card
    holder_name: str | None = None
    pins: tuple[PinInfo, ...] = field(default_factory=tuple)


class CardSession(Protocol):
    """A driver session on one card, inside one transaction."""

    info: CardInfo

    def certificate(self, role: KeyRole) -> bytes | None:
        """The DER certificate for the key, or None when the card has none (kids' cards)."""

    def pin_for(self, role: KeyRole) -> PinInfo:
        """The PIN that guards this key."""

    def pin_status(self, pin: PinInfo) -> PinStatus:
        """Tries left and state, without spending a try."""

    def verify_pin(self, pin: PinInfo, value: PinEntry) -> None:
        """VERIFY once. Raises InvalidPinError(tries_left), PinBlockedError, PinFormatError.

        Never retried by the driver.
        """

    def change_pin(self, pin: PinInfo, old: PinEntry, new: str | None) -> None:
        """CHANGE REFERENCE DATA (``old=PINPAD, new=None`` lets the PIN pad collect both)."""

    def signature_algorithms(self, role: KeyRole) -> list[SignatureAlgorithm]:
        """What the key can do, for getSigningCertificate."""

    def sign(
        self,
        role: KeyRole,
        digest: bytes,
        hash_function: str,
        pin: PinEntry | None,
        *,
        padding: str | None = None,
    ) -> bytes:
        """Sign a digest with the key; ``pin`` is verified right before when given.

        Returns the signature as Web eID carries it: raw ``r || s`` for ECDSA, the
        PKCS#1 v1.5 (or PSS when ``padding == "PSS"``) signature for RSA.
        """

    def read_identity(self, *, photo: bool = True) -> Any:
        """Identity data, signatures checked: a card-specific dataclass (``agent.ws.identity``
        gives its wire form)."""

    def log_off(self) -> None:
        """Drop every verified PIN, so no other program can use the keys without a PIN.

        The core calls it after each card job that sent a PIN (after the answer went to
        the page). Belgian eID: LOG OFF ``80 E6 00 00``. IDEMIA and Thales cards: VERIFY
        with ``P1 = FF`` for each PIN (ISO 7816-4: reset the verification status); when the
        card does not confirm it, the driver sets the connection's ``reset_on_release`` and
        the card is reset when the job's connection is released.
        """
