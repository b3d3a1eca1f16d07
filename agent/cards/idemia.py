"""IDEMIA IAS-ECC cards: Estonian ID card 2018 (Cosmo 8 and Cosmo X) and the Latvian eID.

One driver, a table of card profiles (reference digest ``other-cards.md`` sections 2 and
4; Web eID's ``EIDIDEMIA``/``LatEIDIDEMIAv2`` and OpenSC's ``esteid2018``):

* detection: the exact ATR, then SELECT of the IAS-ECC application
  ``00 A4 04 0C 10 A0000000770108000700 00FE00000100``;
* applications: ADF1 "AWP" (authentication) and ADF2 "QSCD" (signing), selected by AID
  before each PIN or key operation;
* Estonia: certificates at ``ADF1/3401`` and ``ADF2/341F`` (``00 A4 09 04``), keys 81 and
  9F, both P-384; Latvia: certificate FIDs and key references are read from PKCS#15
  inside each ADF (EF.OD ``5031`` -> CDF and PrKDF); the PrKDF entry's tag says EC
  (``A0``) or RSA-2048 (``30``);
* PINs: PIN1 reference 01 (global), PIN2 reference 85 (local to ADF2), PUK 02; ASCII
  padded with ``FF`` to 12 bytes; tries left from GET DATA ``00 CB 3F FF 0A 4D 08 70 06
  BF 81 0x 02 A0 80 00`` (tags 9A maximum, 9B left);
* authentication: MSE ``00 22 41 A4 06 80 01 <04|02> 84 01 <key>``, VERIFY PIN1, INTERNAL
  AUTHENTICATE (EC: the hash made exactly 48 bytes; RSA: SHA-256 DigestInfo);
* signing: MSE ``00 22 41 B6 06 80 01 <54|42> 84 01 <key>``, VERIFY PIN2, PSO:CDS (EC: the
  hash made exactly 48 bytes; RSA: the raw SHA-256 hash, the card pads).

EC signatures are raw ``r || s``; no secure messaging is used over the contact interface.
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
    cached_certificate,
    change_pin_command,
    ecdsa_algorithms,
    encode_pin,
    fcp_file_size,
    find_tag,
    fit_hash,
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
from agent.smartcard.hashes import HASHES
from agent.smartcard.tlv import iter_ber, trim_der

logger = logging.getLogger(__name__)

__all__ = [
    "MAIN_AID",
    "AWP_AID",
    "QSCD_AID",
    "PROFILES",
    "IdemiaProfile",
    "IdemiaSession",
    "KeySlot",
    "open_session",
    "profile_for_atr",
]

MAIN_AID: Final = bytes.fromhex("A000000077010800070000FE00000100")
AWP_AID: Final = bytes.fromhex("E828BD080FF2504F5420415750")
QSCD_AID: Final = bytes.fromhex("51534344204170706C69636174696F6E")
DOCUMENT_NUMBER_FID: Final = 0xD003
EF_OD: Final = 0x5031
READ_LE: Final = 0xC0  # the Alcor AU9540 work-around (libelectronic-id)
PIN_PAD_BYTE: Final = 0xFF
EC_INPUT_SIZE: Final = 48

INS_SELECT = 0xA4
INS_GET_DATA_ODD = 0xCB
INS_MSE = 0x22
INS_PSO = 0x2A
INS_INTERNAL_AUTHENTICATE = 0x88

ALG_EC_AUTH: Final = 0x04
ALG_EC_SIGN: Final = 0x54
ALG_RSA_AUTH: Final = 0x02
ALG_RSA_SIGN: Final = 0x42

PIN1: Final = PinInfo(reference=0x01, name="PIN1", min_length=4, max_length=12, max_tries=3)
PUK: Final = PinInfo(reference=0x02, name="PUK", min_length=8, max_length=12, max_tries=3)
EE_PIN2: Final = PinInfo(reference=0x85, name="PIN2", min_length=5, max_length=12, max_tries=3)
LV_PIN2: Final = PinInfo(reference=0x85, name="PIN2", min_length=6, max_length=12, max_tries=3)

ADF_AIDS: Final = {KeyRole.AUTHENTICATION: AWP_AID, KeyRole.SIGNING: QSCD_AID}
ADF_FIDS: Final = {KeyRole.AUTHENTICATION: 0xADF1, KeyRole.SIGNING: 0xADF2}
EC_HASHES: Final = ("SHA-224", "SHA-256", "SHA-384", "SHA-512",
                    "SHA3-224", "SHA3-256", "SHA3-384", "SHA3-512")


@dataclass(frozen=True)
class KeySlot:
    """Where one key's certificate is and how the key is addressed."""

    certificate_fid: int
    key_reference: int
    rsa: bool = False


@dataclass(frozen=True)
class IdemiaProfile:
    """What differs between the IAS-ECC cards of one family."""

    country: str  # "EE", "LV"
    card_type: str
    atrs: tuple[tuple[bytes, str], ...]  # (ATR, chip label)
    pin2: PinInfo
    static_slots: tuple[KeySlot, KeySlot] | None  # (auth, sign); None: read PKCS#15

    @property
    def pins(self) -> tuple[PinInfo, ...]:
        return (PIN1, self.pin2, PUK)


PROFILES: Final = {
    "EE": IdemiaProfile(
        country="EE",
        card_type="EE ID card (IDEMIA 2018)",
        atrs=(
            (bytes.fromhex("3BDB960080B1FE451F830012233F536549440F9000F1"), "Cosmo 8"),
            (bytes.fromhex("3BDC960080B1FE451F830012233F54654944320F9000C3"), "Cosmo X"),
        ),
        pin2=EE_PIN2,
        static_slots=(KeySlot(0x3401, 0x81), KeySlot(0x341F, 0x9F)),
    ),
    "LV": IdemiaProfile(
        country="LV",
        card_type="LV eID (IDEMIA)",
        atrs=(
            (bytes.fromhex("3BDB960080B1FE451F830012428F536549440F900020"), "Cosmo 8"),
            (bytes.fromhex("3BDC960080B1FE451F830012428F54654944320F900012"), "Cosmo X"),
        ),
        pin2=LV_PIN2,
        static_slots=None,
    ),
}


def profile_for_atr(atr: bytes) -> tuple[IdemiaProfile, str] | None:
    """The profile and chip label for an exact ATR, or None."""
    for profile in PROFILES.values():
        for known, chip in profile.atrs:
            if atr == known:
                return profile, chip
    return None


class IdemiaSession:
    """A session on one IDEMIA IAS-ECC card (implements :class:`CardSession`)."""

    @classmethod
    def open(cls, connection: SmartCardConnection, cache: CertificateCache | None = None) -> IdemiaSession:
        """The registry's entry: :func:`open_session`."""
        return open_session(connection, cache)


    def __init__(
        self,
        channel: CardChannel,
        profile: IdemiaProfile,
        chip: str,
        cache: CertificateCache,
    ) -> None:
        self.channel = channel
        self.profile = profile
        self.chip = chip
        self._cache = cache
        self.document_number = self._read_document_number()
        serial = self.document_number
        if serial is None:
            auth = self._read_certificate_uncached(KeyRole.AUTHENTICATION)
            serial = hashlib.sha256(auth or b"").hexdigest()[:16].upper()
        self._serial = serial
        label = profile.card_type if chip == "Cosmo 8" else f"{profile.card_type}, {chip}"
        self.info = CardInfo(
            card_type=label,
            serial=serial,
            holder_name=holder_name(self.certificate(KeyRole.AUTHENTICATION)),
            pins=profile.pins,
        )

    # -- selection and files ---------------------------------------------------------

    def select_main(self) -> None:
        self.channel.send_apdu(0x00, INS_SELECT, 0x04, 0x0C, MAIN_AID)

    def select_adf(self, role: KeyRole) -> None:
        """SELECT the main application, then ADF1 (auth) or ADF2 (signing) by AID."""
        self.select_main()
        self.channel.send_apdu(0x00, INS_SELECT, 0x04, 0x0C, ADF_AIDS[role])

    def _select_ef(self, p1: int, path: bytes) -> int:
        """SELECT an EF with its FCP (``00 A4 <p1> 04 .. 00``); returns its size."""
        fcp = self.channel.send_apdu(0x00, INS_SELECT, p1, 0x04, path, le=256)
        return fcp_file_size(fcp)

    def _read_ef(self, p1: int, path: bytes) -> bytes:
        size = self._select_ef(p1, path)
        return read_binary(self.channel, size, READ_LE)

    def _read_document_number(self) -> str | None:
        """``3F00/D003`` tag 04 (OpenSC uses it as the token serial)."""
        self.select_main()
        try:
            content = self._read_ef(0x09, DOCUMENT_NUMBER_FID.to_bytes(2, "big"))
        except (ApduError, BadResponseError) as exc:
            logger.debug("no document number file: %s", exc)
            return None
        value = find_tag(content, 0x04)
        if not value or not value.isascii() or not value.decode().isalnum():
            return None
        return value.decode()

    # -- key slots -------------------------------------------------------------------

    def _pkcs15_slot(self, role: KeyRole) -> KeySlot:
        """Read EF.OD, the CDF and the PrKDF inside the role's ADF (Latvian cards)."""
        self.select_adf(role)
        od = self._read_ef(0x02, EF_OD.to_bytes(2, "big"))
        paths = {tag: find_tag(value, 0x04) for tag, value in iter_ber(od)}
        cdf_path, prkdf_path = paths.get(0xA4), paths.get(0xA0)
        if not cdf_path or not prkdf_path:
            raise BadResponseError("EF.OD names no CDF or no PrKDF")
        cdf = self._read_ef(0x02, cdf_path[-2:])
        entries = list(iter_ber(cdf))
        if not entries:
            raise BadResponseError("the CDF is empty")
        cert_path = find_tag(find_tag(entries[0][1], 0xA1) or b"", 0x04)
        if not cert_path or len(cert_path) < 2:
            raise BadResponseError("the CDF entry has no path")
        prkdf = self._read_ef(0x02, prkdf_path[-2:])
        keys = list(iter_ber(prkdf))
        if not keys:
            raise BadResponseError("the PrKDF is empty")
        key_tag, key_entry = keys[0]
        reference = find_tag(key_entry, 0x02)
        if not reference:
            raise BadResponseError("the PrKDF entry has no key reference")
        if key_tag not in (0x30, 0xA0):
            raise BadResponseError(f"unknown private key type (PrKDF tag {key_tag:02X})")
        return KeySlot(int.from_bytes(cert_path[-2:], "big"), reference[-1], rsa=key_tag == 0x30)

    def slot(self, role: KeyRole) -> KeySlot:
        if self.profile.static_slots is not None:
            return self.profile.static_slots[0 if role is KeyRole.AUTHENTICATION else 1]
        cache_id = 0x10000 | ADF_FIDS[role]
        found, cached = self._cache.get(self._serial, cache_id)
        if found and cached is not None and len(cached) == 4:
            return KeySlot(int.from_bytes(cached[:2], "big"), cached[2], bool(cached[3]))
        slot = self._pkcs15_slot(role)
        encoded = slot.certificate_fid.to_bytes(2, "big") + bytes((slot.key_reference, slot.rsa))
        self._cache.put(self._serial, cache_id, encoded)
        logger.debug("%s key slot from PKCS#15: %s", role.value, slot)
        return slot

    # -- CardSession: certificates ---------------------------------------------------

    def _read_certificate_uncached(self, role: KeyRole) -> bytes | None:
        if self.profile.static_slots is not None:
            slot = self.slot(role)
            self.select_main()
            path = ADF_FIDS[role].to_bytes(2, "big") + slot.certificate_fid.to_bytes(2, "big")
            content = self._read_ef(0x09, path)
        else:
            slot = self.slot(role)
            self.select_adf(role)
            content = self._read_ef(0x02, slot.certificate_fid.to_bytes(2, "big"))
        if not any(content) or content[0] != 0x30:
            return None
        return trim_der(content)

    def certificate(self, role: KeyRole) -> bytes | None:
        return cached_certificate(self._cache, self._serial, (ADF_FIDS[role] << 16) | 0x3400,
                                  lambda: self._read_certificate_uncached(role))

    # -- CardSession: PINs -----------------------------------------------------------

    def pin_for(self, role: KeyRole) -> PinInfo:
        return PIN1 if role is KeyRole.AUTHENTICATION else self.profile.pin2

    def _select_for_pin(self, pin: PinInfo) -> None:
        """PIN2 lives in ADF2; PIN1 and the PUK are global."""
        if pin.reference == self.profile.pin2.reference:
            self.select_adf(KeyRole.SIGNING)
        else:
            self.select_main()

    def pin_status(self, pin: PinInfo) -> PinStatus:
        """GET DATA (odd) of the PIN's security object: 9A maximum, 9B tries left."""
        pin = known_pin(self.profile.pins, pin)
        self._select_for_pin(pin)
        query = bytes.fromhex("4D087006BF81") + bytes((pin.reference & 0x0F,)) + bytes.fromhex(
            "02A080")
        data = self.channel.send_apdu(0x00, INS_GET_DATA_ODD, 0x3F, 0xFF, query, le=256)
        left = find_tag(data, 0x9B)
        if not left:
            raise BadResponseError(f"{pin.name} status has no tries-left counter (9B)")
        tries = left[0]
        return PinStatus(pin=pin, tries_left=tries, blocked=tries == 0)

    def verify_pin(self, pin: PinInfo, value: PinEntry) -> None:
        """VERIFY ``00 20 00 <ref> 0C <PIN || FF..>`` once, in the PIN's DF.

        Raises:
            InvalidPinError, PinBlockedError, PinFormatError (nothing sent), PIN-pad errors.
        """
        pin = known_pin(self.profile.pins, pin)
        block = None if value is PINPAD else encode_pin(str(value), pin, PIN_PAD_BYTE)
        self._select_for_pin(pin)
        verify_pin_command(self.channel, pin, block, PIN_PAD_BYTE)

    def change_pin(self, pin: PinInfo, old: PinEntry, new: str | None) -> None:
        """CHANGE REFERENCE DATA ``00 24 00 <ref> 18 <old> <new>`` (12-byte FF-padded)."""
        pin = known_pin(self.profile.pins, pin)
        change_pin_command(self.channel, pin, old, new, PIN_PAD_BYTE,
                           lambda: self._select_for_pin(pin))

    def log_off(self) -> None:
        """VERIFY ``00 20 FF <ref>`` for PIN1, PIN2 and the PUK (each in its DF); when the
        card does not confirm all three, it is reset when the connection is released."""
        if not log_off_pins(self.channel, self.profile.pins, self._select_for_pin):
            self.channel.connection.reset_on_release = True
        logger.info("logged off")

    # -- CardSession: signing --------------------------------------------------------

    def signature_algorithms(self, role: KeyRole) -> list[SignatureAlgorithm]:
        if self.slot(role).rsa:
            return [SignatureAlgorithm("RSA", "SHA-256", "PKCS1.5")]
        return ecdsa_algorithms(EC_HASHES)

    def _signature_input(self, slot: KeySlot, role: KeyRole, digest: bytes,
                         hash_function: str, padding: str | None) -> tuple[int, bytes]:
        name = hash_for_digest(digest, hash_function).name
        scheme = (padding or "").upper()
        if slot.rsa:
            if name != "SHA-256" or scheme not in ("", "PKCS1.5", "PKCS1", "PKCS1V15"):
                raise NotSupportedError(f"this RSA key signs only SHA-256 PKCS#1 v1.5, not "
                                        f"{name} {padding or ''}".rstrip())
            if role is KeyRole.AUTHENTICATION:
                return ALG_RSA_AUTH, HASHES["SHA-256"].digest_info(digest)
            return ALG_RSA_SIGN, digest
        if scheme not in ("", "NONE"):
            raise NotSupportedError(f"an EC key signs without padding, not {padding}")
        algorithm = ALG_EC_AUTH if role is KeyRole.AUTHENTICATION else ALG_EC_SIGN
        return algorithm, fit_hash(digest, EC_INPUT_SIZE)

    def sign(
        self,
        role: KeyRole,
        digest: bytes,
        hash_function: str,
        pin: PinEntry | None,
        *,
        padding: str | None = None,
    ) -> bytes:
        """SELECT the ADF, MSE SET, VERIFY (PIN1 or PIN2), then INTERNAL AUTHENTICATE
        (authentication) or PSO:CDS (signing). Returns raw ``r || s`` or the RSA signature.

        Raises:
            PinRequiredError: no PIN for the signing key, or the card wants one (6982).
            InvalidPinError, PinBlockedError, PinFormatError: as :meth:`verify_pin`.
            NotSupportedError, ValueError: a hash or padding the key cannot do.
        """
        slot = self.slot(role)
        algorithm, data = self._signature_input(slot, role, digest, hash_function, padding)
        pin_info = self.pin_for(role)
        if role is KeyRole.SIGNING and pin is None:
            raise PinRequiredError("the signing key needs PIN2 for every signature")
        block = None if pin is None or pin is PINPAD else encode_pin(str(pin), pin_info,
                                                                      PIN_PAD_BYTE)
        self.select_adf(role)
        template = 0xA4 if role is KeyRole.AUTHENTICATION else 0xB6
        self.channel.send_apdu(0x00, INS_MSE, 0x41, template,
                               bytes((0x80, 0x01, algorithm, 0x84, 0x01, slot.key_reference)))
        if pin is not None:
            verify_pin_command(self.channel, pin_info, block, PIN_PAD_BYTE)
        if role is KeyRole.AUTHENTICATION:
            apdu = encode_apdu(0x00, INS_INTERNAL_AUTHENTICATE, 0x00, 0x00, data, le=256)
        else:
            apdu = encode_apdu(0x00, INS_PSO, 0x9E, 0x9A, data, le=256)
        return transmit_signature_command(self.channel, apdu, role, pin_info,
                                          slot.key_reference, algorithm)

    def read_identity(self, *, photo: bool = True) -> object:
        identity_not_supported(self.profile.card_type)


def open_session(
    connection: SmartCardConnection, cache: CertificateCache | None = None
) -> IdemiaSession:
    """Recognise an IDEMIA IAS-ECC card by its exact ATR and the IAS-ECC AID.

    Raises:
        UnsupportedCardError: not one of the cards in :data:`PROFILES`.
    """
    found = profile_for_atr(bytes(connection.atr))
    if found is None:
        raise UnsupportedCardError("not an IDEMIA IAS-ECC eID card (ATR)")
    profile, chip = found
    channel = CardChannel(connection)
    _data, sw = channel.transmit(encode_apdu(0x00, INS_SELECT, 0x04, 0x0C, MAIN_AID))
    if sw != StatusWord.OK:
        raise UnsupportedCardError(f"the IAS-ECC application cannot be selected ({sw:04X})")
    logger.debug("%s (%s)", profile.card_type, chip)
    return IdemiaSession(channel, profile, chip,
                         shared_certificate_cache if cache is None else cache)
