"""What every card driver shares: the certificate cache, the PIN-required error, signature
format helpers. Drivers import this, never each other."""

from __future__ import annotations

import threading
from typing import Final

from agent.errors import PinError
from agent.smartcard.tlv import encode_ber

__all__ = ["CertificateCache", "PinRequiredError", "ecdsa_raw_to_der", "shared_certificate_cache"]


class PinRequiredError(PinError):
    """The key needs the PIN and none was given (signing key, or the card said 6982)."""


def ecdsa_raw_to_der(signature: bytes) -> bytes:
    """Convert a raw ``r || s`` ECDSA signature (as the 1.8 card returns) to DER
    ``SEQUENCE { INTEGER r, INTEGER s }`` for X.509, CMS or TLS users."""
    if not signature or len(signature) % 2:
        raise ValueError("a raw ECDSA signature has two halves of equal length")
    half = len(signature) // 2
    return encode_ber(0x30, _der_integer(signature[:half]) + _der_integer(signature[half:]))


def _der_integer(magnitude: bytes) -> bytes:
    """A non-negative big-endian number as a DER INTEGER (minimal, sign byte when needed)."""
    value = magnitude.lstrip(b"\x00") or b"\x00"
    if value[0] & 0x80:
        value = b"\x00" + value
    return encode_ber(0x02, value)


_MISSING = object()


class CertificateCache:
    """Certificates by card serial and file, shared by sessions and threads.

    A card's certificates do not change while it is in use, so a second operation on the
    same card reads none of them again. ``None`` (not issued) is cached too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int], bytes | None] = {}

    def get(self, serial: str, file: int) -> tuple[bool, bytes | None]:
        """``(found, certificate)``."""
        with self._lock:
            value = self._entries.get((serial, file), _MISSING)
        if value is _MISSING:
            return False, None
        return True, value  # type: ignore[return-value]

    def put(self, serial: str, file: int, certificate: bytes | None) -> None:
        with self._lock:
            self._entries[(serial, file)] = certificate

    def forget(self, serial: str) -> None:
        """Drop every entry of one card."""
        with self._lock:
            for key in [key for key in self._entries if key[0] == serial]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


shared_certificate_cache: Final = CertificateCache()
"""The cache a driver's ``open_session`` uses when given none."""
