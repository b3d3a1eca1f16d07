"""Thales "PKCS-15 AID" cards: Estonian ID card 2025, FinEID v3 and FinEID v4.

One driver, a table of profiles (reference digest ``other-cards.md`` sections 3 and 6;
Web eID's ``EIDThales``/``EstEIDThales``/``FinEID`` and OpenSC's ``esteid2025``):

* detection: the ATR (exact, or masked for FinEID v4), then SELECT of the application
  ``00 A4 04 0C 0C A000000063504B43532D3135``;
* certificates by path from the MF with the FCP (``00 A4 08 04``; size in tag 80 or 81),
  read with Le = 00 looping on the length the card returns;
* PINs ASCII padded with ``00`` to 12 bytes; tries left from GET DATA
  ``00 CB 00 FF 05 A0 03 83 01 <ref>`` (Le = 00 only under T=1): DF21's first byte is the
  count, DF2F = 00 means "not changed yet" (EstEID 2025 refuses the PIN until it is
  changed, as Web eID does);
* signing: VERIFY, MSE ``00 22 41 B6 06 80 01 <alg> 84 01 <key>``, PSO:HASH
  ``00 2A 90 A0 .. 90 <len> <hash>``, PSO:CDS ``00 2A 9E 9A 00``. The algorithm byte's low
  nibble is 4 (ECDSA) or 5 (RSA-PSS), its high nibble the hash (3 SHA-224 .. 6 SHA-512).

FinEID v3 authenticates with RSA-PSS SHA-256 (Web eID: PS256); the other keys are EC.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Final

from agent.cards.base import (
    PINPAD,
    CardInfo,
    KeyRole,
    PinEntry,
    PinInfo,
    PinStatus,
    SignatureAlgorithm,
    hash_for_digest,
)
from agent.cards.common import CertificateCache, PinRequiredError, shared_certificate_cache
from agent.cards.twopin import (
    PinChangeRequiredError,
    cached_certificate,
    change_pin_command,
    ecdsa_algorithms,
    encode_pin,
    fcp_file_size,
    find_tag,
    identity_not_supported,
    known_pin,
    log_off_pins,
    read_binary,
    transmit_signature_command,
    verify_pin_command,
)
from agent.errors import (
    BadResponseError,
    NotSupportedError,
    UnsupportedCardError,
)
from agent.smartcard.apdu import (
    ApduError,
    CardChannel,
    SmartCardConnection,
    StatusWord,
    encode_apdu,
)
from agent.smartcard.certinfo import holder_name
from agent.smartcard.tlv import iter_ber, trim_der

logger = logging.getLogger(__name__)

__all__ = ["PKCS15_AID", "PROFILES", "ThalesProfile", "ThalesSession", "open_session",
           "profile_for_atr"]

PKCS15_AID: Final = bytes.fromhex("A000000063504B43532D3135")
PIN_PAD_BYTE: Final = 0x00
SCARD_PROTOCOL_T1: Final = 2
INS_SELECT = 0xA4
INS_GET_DATA_ODD = 0xCB
INS_MSE = 0x22
INS_PSO = 0x2A

HASH_NIBBLES: Final = {"SHA-224": 3, "SHA-256": 4, "SHA-384": 5, "SHA-512": 6}
ALG_ECDSA: Final = 0x04
ALG_RSA_PSS: Final = 0x05


@dataclass(frozen=True)
class ThalesKey:
    path: bytes  # certificate path from the MF
    reference: int
    kind: str  # "ec" or "rsa-pss"
    hashes: tuple[str, ...] = ("SHA-224", "SHA-256", "SHA-384", "SHA-512")


@dataclass(frozen=True)
class ThalesProfile:
    name: str
    card_type: str
    atr: bytes
    atr_mask: bytes | None
    pin1: PinInfo
    pin2: PinInfo
    puk: PinInfo
    auth: ThalesKey
    sign: ThalesKey
    reports_pin_change: bool = False  # EstEID 2025: DF2F = 00 blocks the PIN's use
    serial_path: bytes = b""
    serial_is_token_info: bool = False

    def matches(self, atr: bytes) -> bool:
        if self.atr_mask is None:
            return atr == self.atr
        if len(atr) != len(self.atr):
            return False
        return all((a & m) == (b & m) for a, b, m in zip(atr, self.atr, self.atr_mask,
                                                         strict=True))

    @property
    def pins(self) -> tuple[PinInfo, ...]:
        return (self.pin1, self.pin2, self.puk)


def _pin(reference: int, name: str, minimum: int, tries: int) -> PinInfo:
    return PinInfo(reference=reference, name=name, min_length=minimum, max_length=12,
                   max_tries=tries)


_FI_V4_MASK: Final = bytes(0xFF for _ in range(12)) + b"\x00\x00" + bytes(0xFF for _ in range(6))

PROFILES: Final = {
    "EE2025": ThalesProfile(
        name="EE2025",
        card_type="EE ID card (Thales 2025)",
        atr=bytes.fromhex("3BFF9600008031FE438031B85365494464B085051012233F1D"),
        atr_mask=None,
        pin1=_pin(0x81, "PIN1", 4, 3),
        pin2=_pin(0x82, "PIN2", 5, 3),
        puk=_pin(0x83, "PUK", 8, 3),
        auth=ThalesKey(bytes.fromhex("ADF13411"), 0x01, "ec"),
        sign=ThalesKey(bytes.fromhex("ADF23421"), 0x05, "ec"),
        reports_pin_change=True,
        serial_path=bytes.fromhex("DFDD5007"),
    ),
    "FI3": ThalesProfile(
        name="FI3",
        card_type="FI FinEID v3",
        atr=bytes.fromhex("3B7F9600008031B865B08504021B1200F6829000"),
        atr_mask=None,
        pin1=_pin(0x11, "PIN1", 4, 5),
        pin2=_pin(0x82, "PIN2", 6, 5),
        puk=_pin(0x83, "PUK", 8, 5),
        auth=ThalesKey(bytes.fromhex("4331"), 0x01, "rsa-pss", ("SHA-256",)),
        sign=ThalesKey(bytes.fromhex("50164335"), 0x03, "ec", ("SHA-256", "SHA-384", "SHA-512")),
        serial_path=bytes.fromhex("5032"),
        serial_is_token_info=True,
    ),
    "FI4": ThalesProfile(
        name="FI4",
        card_type="FI FinEID v4",
        atr=bytes.fromhex("3B7F9600008031B865B085050000122460829000"),
        atr_mask=_FI_V4_MASK,
        pin1=_pin(0x11, "PIN1", 4, 5),
        pin2=_pin(0x82, "PIN2", 6, 5),
        puk=_pin(0x83, "PUK", 8, 5),
        auth=ThalesKey(bytes.fromhex("4331"), 0x01, "ec"),
        sign=ThalesKey(bytes.fromhex("50164332"), 0x02, "ec"),
        serial_path=bytes.fromhex("5032"),
        serial_is_token_info=True,
    ),
}


def profile_for_atr(atr: bytes) -> ThalesProfile | None:
    return next((p for p in PROFILES.values() if p.matches(atr)), None)


class ThalesSession:
    """A session on one Thales PKCS-15 card (implements :class:`CardSession`)."""

    @classmethod
    def open(cls, connection: SmartCardConnection, cache: CertificateCache | None = None) -> ThalesSession:
        """The registry's entry: :func:`open_session`."""
        return open_session(connection, cache)


    def __init__(self, channel: CardChannel, profile: ThalesProfile,
                 cache: CertificateCache) -> None:
        self.channel = channel
        self.profile = profile
        self._cache = cache
        self._t1 = getattr(channel.connection, "protocol", None) == SCARD_PROTOCOL_T1
        serial = self._read_serial()
        if serial is None:
            auth = self._read_certificate_uncached(KeyRole.AUTHENTICATION)
            serial = hashlib.sha256(auth or b"").hexdigest()[:16].upper()
        self._serial = serial
        self.info = CardInfo(
            card_type=profile.card_type,
            serial=serial,
            holder_name=holder_name(self.certificate(KeyRole.AUTHENTICATION)),
            pins=profile.pins,
        )

    # -- files -----------------------------------------------------------------------

    def select_application(self) -> None:
        self.channel.send_apdu(0x00, INS_SELECT, 0x04, 0x0C, PKCS15_AID)

    def _read_path(self, path: bytes) -> bytes:
        fcp = self.channel.send_apdu(0x00, INS_SELECT, 0x08, 0x04, path, le=256)
        return read_binary(self.channel, fcp_file_size(fcp), 256)

    def _read_serial(self) -> str | None:
        if not self.profile.serial_path:
            return None
        try:
            content = self._read_path(self.profile.serial_path)
        except (ApduError, BadResponseError) as exc:
            logger.debug("no serial number file: %s", exc)
            return None
        if self.profile.serial_is_token_info:
            entries = list(iter_ber(content))
            value = find_tag(entries[0][1], 0x04) if entries else None
        else:
            value = content.rstrip(b"\x00 ")
        if not value:
            return None
        text = value.decode("ascii", "replace")
        return text if text.isalnum() else value.hex().upper()

    def _key(self, role: KeyRole) -> ThalesKey:
        return self.profile.auth if role is KeyRole.AUTHENTICATION else self.profile.sign

    def _read_certificate_uncached(self, role: KeyRole) -> bytes | None:
        content = self._read_path(self._key(role).path)
        if not any(content) or content[0] != 0x30:
            return None
        return trim_der(content)

    def certificate(self, role: KeyRole) -> bytes | None:
        cache_id = int.from_bytes(self._key(role).path[-2:], "big") | 0x20000
        return cached_certificate(self._cache, self._serial, cache_id,
                                  lambda: self._read_certificate_uncached(role))

    # -- PINs ------------------------------------------------------------------------

    def pin_for(self, role: KeyRole) -> PinInfo:
        return self.profile.pin1 if role is KeyRole.AUTHENTICATION else self.profile.pin2

    def pin_status(self, pin: PinInfo) -> PinStatus:
        """GET DATA ``A0 03 83 01 <ref>``: DF21 tries left, DF2F "changed" flag."""
        pin = known_pin(self.profile.pins, pin)
        self.select_application()
        query = bytes((0xA0, 0x03, 0x83, 0x01, pin.reference))
        data = self.channel.send_apdu(0x00, INS_GET_DATA_ODD, 0x00, 0xFF, query,
                                      le=256 if self._t1 else None)
        counter = find_tag(data, 0xDF21)
        if not counter:
            raise BadResponseError(f"{pin.name} status has no tries-left counter (DF21)")
        changed = find_tag(data, 0xDF2F)
        must_change = (self.profile.reports_pin_change and pin.reference != self.profile.puk.reference
                       and changed is not None and changed[:1] == b"\x00")
        tries = counter[0]
        return PinStatus(pin=pin, tries_left=tries, blocked=tries == 0, must_change=must_change)

    def _refuse_unchanged(self, pin: PinInfo) -> None:
        """EstEID 2025: an initial PIN may not be used (Web eID refuses it too)."""
        if not self.profile.reports_pin_change or pin.reference == self.profile.puk.reference:
            return
        if self.pin_status(pin).must_change:
            if pin.reference == self.profile.pin1.reference:
                message = ("PIN1 has not been changed yet: the ID card must be activated first "
                           "(change PIN1), then try again")
            else:
                message = "PIN2 has not been changed yet: change PIN2 before signing"
            raise PinChangeRequiredError(pin.name, message)

    def verify_pin(self, pin: PinInfo, value: PinEntry) -> None:
        """VERIFY ``00 20 00 <ref> 0C <PIN || 00..>`` once.

        Raises:
            PinChangeRequiredError: EstEID 2025 PIN still the initial one (nothing verified).
            InvalidPinError, PinBlockedError, PinFormatError (nothing sent), PIN-pad errors.
        """
        pin = known_pin(self.profile.pins, pin)
        block = None if value is PINPAD else encode_pin(str(value), pin, PIN_PAD_BYTE)
        self._refuse_unchanged(pin)
        self.select_application()
        verify_pin_command(self.channel, pin, block, PIN_PAD_BYTE)

    def change_pin(self, pin: PinInfo, old: PinEntry, new: str | None) -> None:
        """CHANGE REFERENCE DATA ``00 24 00 <ref> 18 <old> <new>`` (12-byte 00-padded).

        Raises:
            NotSupportedError: the PUK (it cannot be changed on these cards).
        """
        pin = known_pin(self.profile.pins, pin)
        if pin.reference == self.profile.puk.reference:
            raise NotSupportedError("the PUK of this card cannot be changed")
        change_pin_command(self.channel, pin, old, new, PIN_PAD_BYTE, self.select_application)

    def log_off(self) -> None:
        """VERIFY ``00 20 FF <ref>`` for each PIN in the application; when the card does not
        confirm them all, it is reset when the connection is released."""
        self.select_application()
        if not log_off_pins(self.channel, self.profile.pins, lambda _pin: None):
            self.channel.connection.reset_on_release = True
        logger.info("logged off")

    # -- signing ---------------------------------------------------------------------

    def signature_algorithms(self, role: KeyRole) -> list[SignatureAlgorithm]:
        key = self._key(role)
        if key.kind == "rsa-pss":
            return [SignatureAlgorithm("RSA", name, "PSS") for name in key.hashes]
        return ecdsa_algorithms(key.hashes)

    def _algorithm(self, key: ThalesKey, digest: bytes, hash_function: str,
                   padding: str | None) -> int:
        name = hash_for_digest(digest, hash_function).name
        if name not in key.hashes or name not in HASH_NIBBLES:
            raise NotSupportedError(f"this key cannot sign a {name} hash")
        scheme = (padding or "").upper()
        if key.kind == "rsa-pss":
            if scheme not in ("", "PSS"):
                raise NotSupportedError(f"this RSA key signs with PSS only, not {padding}")
            return HASH_NIBBLES[name] << 4 | ALG_RSA_PSS
        if scheme not in ("", "NONE"):
            raise NotSupportedError(f"an EC key signs without padding, not {padding}")
        return HASH_NIBBLES[name] << 4 | ALG_ECDSA

    def sign(
        self,
        role: KeyRole,
        digest: bytes,
        hash_function: str,
        pin: PinEntry | None,
        *,
        padding: str | None = None,
    ) -> bytes:
        """VERIFY (PIN1 or PIN2), MSE SET, PSO:HASH, PSO:CDS. Raw ``r || s`` for EC keys,
        the RSA-PSS signature for FinEID v3's authentication key.

        Raises:
            PinChangeRequiredError: EstEID 2025 PIN not changed yet.
            PinRequiredError, InvalidPinError, PinBlockedError, PinFormatError.
            NotSupportedError, ValueError: a hash or padding the key cannot do.
        """
        key = self._key(role)
        algorithm = self._algorithm(key, digest, hash_function, padding)
        pin_info = self.pin_for(role)
        if role is KeyRole.SIGNING and pin is None:
            raise PinRequiredError("the signing key needs PIN2 for every signature")
        if pin is not None:
            self.verify_pin(pin_info, pin)
        else:
            self.select_application()
        self.channel.send_apdu(0x00, INS_MSE, 0x41, 0xB6,
                               bytes((0x80, 0x01, algorithm, 0x84, 0x01, key.reference)))
        self.channel.send_apdu(0x00, INS_PSO, 0x90, 0xA0,
                               bytes((0x90, len(digest))) + digest)
        return transmit_signature_command(
            self.channel, encode_apdu(0x00, INS_PSO, 0x9E, 0x9A, le=256), role, pin_info,
            key.reference, algorithm)

    def read_identity(self, *, photo: bool = True) -> object:
        identity_not_supported(self.profile.card_type)


def open_session(
    connection: SmartCardConnection, cache: CertificateCache | None = None
) -> ThalesSession:
    """Recognise a Thales PKCS-15 eID card by its ATR and the PKCS-15 AID.

    Raises:
        UnsupportedCardError: not one of the cards in :data:`PROFILES`.
    """
    profile = profile_for_atr(bytes(connection.atr))
    if profile is None:
        raise UnsupportedCardError("not a Thales PKCS-15 eID card (ATR)")
    channel = CardChannel(connection)
    _data, sw = channel.transmit(encode_apdu(0x00, INS_SELECT, 0x04, 0x0C, PKCS15_AID))
    if sw != StatusWord.OK:
        raise UnsupportedCardError(f"the PKCS-15 application cannot be selected ({sw:04X})")
    logger.debug("%s", profile.card_type)
    return ThalesSession(channel, profile, shared_certificate_cache if cache is None else cache)
