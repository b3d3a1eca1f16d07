"""Belgian eID card driver (BELPIC applet 1.7 RSA-2048 and 1.8 ECDSA P-384).

Speaks APDUs through a :class:`~agent.smartcard.apdu.CardChannel` (T=0: ``61xx`` GET RESPONSE and
``6Cxx`` re-send are handled there) and follows eid-mw's command order (reference digest
``beid-card.md``):

* detection: SELECT the applet by AID (``00 A4 04 00``, as eid-mw; the BELPIC PKCS#15 AID
  as a fallback), then GET CARD DATA ``80 E4 00 00 1C`` (and ``80 E4 00 01 1F`` on 1.8);
* files: SELECT by FID (``00 A4 02 0C``), walking ``3F00 / DFxx / EF`` when the DF is not
  known to be current; READ BINARY in 252-byte chunks, a short answer or ``6B00`` at a
  non-zero offset is the end of the file (the card gives no file length);
* certificates are trimmed to their DER length; an all-zero file means "not issued";
* one PIN (reference 01) for both keys, format-2 PIN block ``2L`` + BCD + ``F`` padding;
* signing: MSE SET ``00 22 41 B6 05 04 80 <alg> 84 <key>`` (when the card refuses it
  because another DF is current: SELECT ``DF00`` by path ``00 A4 08 0C 02 DF 00`` and MSE
  SET again), VERIFY, PSO:CDS ``00 2A 9E 9A`` (no Le). The signing key 83 needs the PIN
  right before each signature;
* a card identified before in the same reader resumes with one GET CARD DATA instead of
  the detection (:func:`resume_session`), which also gives the serial to check and, on
  1.8, the PIN counter.
"""

from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

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
from agent.cards.beid_identity import (
    TAG_BASIC_KEY_HASH,
    Address,
    BeidIdentity,
    Identity,
    IdentitySignatureError,
    check_basic_key_hash,
    verify_identity_files,
)
from agent.cards.common import CertificateCache, PinRequiredError, ecdsa_raw_to_der, shared_certificate_cache
from agent.errors import (
    BadResponseError,
    InvalidPinError,
    NotSupportedError,
    PinBlockedError,
    PinFormatError,
    PinPadCancelledError,
    PinPadTimeoutError,
    UnsupportedCardError,
)
from agent.smartcard.apdu import ApduError, CardChannel, SmartCardConnection, StatusWord, encode_apdu
from agent.smartcard.certinfo import holder_name
from agent.smartcard.hashes import HASHES
from agent.smartcard.tlv import der_length, parse_simple_tlv, trim_der

if TYPE_CHECKING:
    from agent.smartcard.pinpad import PinFormat

logger = logging.getLogger(__name__)

__all__ = [
    "APPLET_AID",
    "BELPIC_AID",
    "PIN",
    "BeidFile",
    "CardData",
    "CertificateCache",
    "BeidSession",
    "PinRequiredError",
    "IdentitySignatureError",
    "open_session",
    "resume_session",
    "encode_pin_block",
    "validate_pin",
    "ecdsa_raw_to_der",
    "shared_certificate_cache",
]

APPLET_AID: Final = bytes.fromhex("A00000003029057000AD13100101FF")
BELPIC_AID: Final = bytes.fromhex("A000000177504B43532D3135")
MF: Final = 0x3F00
DF_BELPIC: Final = 0xDF00
DF_ID: Final = 0xDF01

READ_CHUNK: Final = 252  # eid-mw's block size
RESEND_DELAY: Final = 0.04  # OpenSC waits 40 ms before re-sending after 6Cxx on BELPIC

INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_VERIFY = 0x20
INS_CHANGE_REFERENCE_DATA = 0x24
INS_MSE = 0x22
INS_PSO = 0x2A
INS_GET_CARD_DATA = 0xE4
INS_LOG_OFF = 0xE6
INS_INTERNAL_AUTHENTICATE = 0x88
CLA_PROPRIETARY = 0x80

PIN_REFERENCE: Final = 0x01
PIN: Final = PinInfo(reference=PIN_REFERENCE, name="PIN", min_length=4, max_length=12, max_tries=3)
PIN_BLOCK_EMPTY: Final = bytes.fromhex("20FFFFFFFFFFFFFF")  # what a PIN pad fills in

KEY_REFERENCES: Final = {KeyRole.AUTHENTICATION: 0x82, KeyRole.SIGNING: 0x83}

APPLET_17: Final = 0x17
APPLET_18: Final = 0x18


class BeidFile(enum.IntEnum):
    """Elementary files the agent reads; the DF follows from the FID."""

    TOKEN_INFO = 0x5032
    CERT_AUTHENTICATION = 0x5038
    CERT_SIGNING = 0x5039
    CERT_CA = 0x503A
    CERT_ROOT = 0x503B
    CERT_RRN = 0x503C
    IDENTITY = 0x4031
    IDENTITY_SIGNATURE = 0x4032
    ADDRESS = 0x4033
    ADDRESS_SIGNATURE = 0x4034
    PHOTO = 0x4035
    BASIC_PUBLIC_KEY = 0x4040  # applet 1.8

    @property
    def df(self) -> int:
        return DF_BELPIC if self.value >> 8 == 0x50 else DF_ID


CERTIFICATE_FILES: Final = {
    KeyRole.AUTHENTICATION: BeidFile.CERT_AUTHENTICATION,
    KeyRole.SIGNING: BeidFile.CERT_SIGNING,
}

# Applet 1.7 (RSA): raw-hash algorithms; others go through 01 with the RFC 8017 DigestInfo
# prefix of agent.smartcard.hashes (the card pads, the caller sends DigestInfo).
RSA_PKCS1_RAW_ALGORITHMS: Final = {"SHA-1": 0x02, "SHA-256": 0x08}
RSA_PKCS1_DIGEST_INFO_ALGORITHM: Final = 0x01
RSA_PSS_ALGORITHMS: Final = {"SHA-1": 0x10, "SHA-256": 0x20}
# Applet 1.8 (ECDSA).
ECDSA_ALGORITHMS: Final = {
    "SHA-256": 0x01,
    "SHA-384": 0x02,
    "SHA-512": 0x04,
    "SHA3-256": 0x08,
    "SHA3-384": 0x10,
    "SHA3-512": 0x20,
}


def validate_pin(pin: str, info: PinInfo = PIN) -> None:
    """Raise :class:`PinFormatError` unless ``pin`` is ASCII digits of an allowed length."""
    if not (pin.isascii() and pin.isdigit()):
        raise PinFormatError(f"the {info.name} must consist of digits only")
    if not info.min_length <= len(pin) <= info.max_length:
        raise PinFormatError(f"the {info.name} must have {info.min_length} to {info.max_length} digits")


def encode_pin_block(pin: str) -> bytes:
    """The 8-byte format-2 PIN block: ``2L``, BCD digits, ``F`` padding.

    ``"1234"`` -> ``24 12 34 FF FF FF FF FF``; ``"12345"`` -> ``25 12 34 5F FF FF FF FF``.

    Raises:
        PinFormatError: not 4 to 12 digits.
    """
    validate_pin(pin)
    return bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))


@dataclass(frozen=True)
class CardData:
    """The GET CARD DATA answer (RM17 §6.9, RM18 §6.14)."""

    serial: bytes
    component_code: int
    os_number: int
    os_version: int
    softmask_number: int
    softmask_version: int
    applet_version: int
    global_os_version: int
    applet_interface_version: int
    pkcs1_support: int
    key_exchange_version: int
    life_cycle: int
    pin_tries_left: int | None = None  # 1.8, P2=01 only; None when unknown or no PIN

    @classmethod
    def parse(cls, data: bytes) -> CardData:
        if len(data) < 28:
            raise BadResponseError(f"GET CARD DATA answered {len(data)} bytes, expected 28")
        tries = data[28] if len(data) > 28 and data[28] != 0xFF else None
        return cls(
            serial=data[:16],
            component_code=data[16],
            os_number=data[17],
            os_version=data[18],
            softmask_number=data[19],
            softmask_version=data[20],
            applet_version=data[21],
            global_os_version=int.from_bytes(data[22:24], "big"),
            applet_interface_version=data[24],
            pkcs1_support=data[25],
            key_exchange_version=data[26],
            life_cycle=data[27],
            pin_tries_left=tries,
        )

    @property
    def serial_hex(self) -> str:
        return self.serial.hex().upper()

    @property
    def applet_label(self) -> str:
        """``"1.7"``, ``"1.8"`` (the version byte is BCD-like: 0x17 -> 1.7)."""
        return f"{self.applet_version >> 4}.{self.applet_version & 0x0F}"


def _pinpad_format() -> PinFormat:
    """The format-2 block for the reader to fill in (eid-mw: 0x89, 0x47, 0x04, 4..12)."""
    from agent.smartcard.pinpad import PinFormat

    return PinFormat(
        format_string=0x89,
        pin_block_string=0x47,
        length_format=0x04,
        min_length=PIN.min_length,
        max_length=PIN.max_length,
    )


def _apdu_error(sw: int, data: bytes, what: str) -> ApduError:
    return ApduError(sw, data, f"{what}: card answered {sw:04X}")


class BeidSession:
    """A session on one Belgian eID card, inside one card transaction.

    Create with :func:`open_session`. Implements :class:`agent.cards.base.CardSession`.
    """

    @classmethod
    def open(cls, connection: SmartCardConnection, cache: CertificateCache | None = None) -> BeidSession:
        """The registry's entry: :func:`open_session`."""
        return open_session(connection, cache)

    @classmethod
    def resume(cls, connection: SmartCardConnection, cache: CertificateCache | None,
               known: CardData) -> BeidSession:
        """The registry's fast path on a card identified before: :func:`resume_session`."""
        return resume_session(connection, cache, known)


    def __init__(
        self,
        channel: CardChannel,
        card_data: CardData,
        cache: CertificateCache,
    ) -> None:
        self.channel = channel
        self.card_data = card_data
        self._cache = cache
        self._current_df: int | None = None  # unknown until we select it ourselves
        # card_data.pin_tries_left was read in this transaction and no PIN command was
        # sent since: pin_status() answers from it without a command.
        self._tries_fresh = card_data.pin_tries_left is not None
        auth = self.read_certificate(BeidFile.CERT_AUTHENTICATION)
        self.info = CardInfo(
            card_type=f"BE eID (applet {card_data.applet_label})",
            serial=card_data.serial_hex,
            holder_name=holder_name(auth),
            pins=(PIN,),
        )

    # -- properties ------------------------------------------------------------------

    @property
    def connection(self) -> SmartCardConnection:
        return self.channel.connection

    @property
    def resume_state(self) -> CardData:
        """What :func:`resume_session` needs to skip the detection next time."""
        return self.card_data

    @property
    def applet_version(self) -> int:
        return self.card_data.applet_version

    @property
    def is_ecc(self) -> bool:
        return self.applet_version >= APPLET_18

    # -- files -----------------------------------------------------------------------

    def _select_fid(self, fid: int) -> int:
        _data, sw = self.channel.transmit(encode_apdu(0x00, INS_SELECT, 0x02, 0x0C, fid.to_bytes(2, "big")))
        return sw

    def _select_df(self, df: int) -> None:
        """Make ``df`` current: ``3F00`` then the DF, by FID."""
        for fid in (MF, df):
            sw = self._select_fid(fid)
            if sw != StatusWord.OK:
                self._current_df = None
                raise _apdu_error(sw, b"", f"SELECT {fid:04X}")
        self._current_df = df

    def _select_belpic_df(self) -> None:
        """Make the BELPIC DF current with one SELECT by path (``00 A4 08 0C 02 DF 00``;
        the MF left out, as RM17/RM18 write paths). If the card refuses paths (6A86/6A87)
        the FID walk ``3F00 / DF00``; if it does not find the DF (6A82) or no longer knows
        the command (6D00/6E00: another program selected something else), the applet is
        selected again and the path retried once."""
        apdu = encode_apdu(0x00, INS_SELECT, 0x08, 0x0C, DF_BELPIC.to_bytes(2, "big"))
        _data, sw = self.channel.transmit(apdu)
        if sw in (StatusWord.FILE_NOT_FOUND, StatusWord.INS_NOT_SUPPORTED, StatusWord.CLA_NOT_SUPPORTED):
            logger.info("SELECT DF00 by path answered %04X: selecting the applet again", sw)
            _select_application(self.channel)
            _data, sw = self.channel.transmit(apdu)
        if sw in (StatusWord.INCORRECT_P1_P2, StatusWord.LC_INCONSISTENT):
            self._select_df(DF_BELPIC)
            return
        if sw != StatusWord.OK:
            self._current_df = None
            raise _apdu_error(sw, b"", "SELECT DF00")
        self._current_df = DF_BELPIC

    def select_file(self, file: BeidFile) -> None:
        """SELECT an EF by FID, first walking ``3F00 / DFxx`` unless that DF is current."""
        if self._current_df == file.df:
            sw = self._select_fid(file)
            if sw == StatusWord.OK:
                return
            if sw not in (StatusWord.FILE_NOT_FOUND, StatusWord.INCORRECT_P1_P2):
                raise _apdu_error(sw, b"", f"SELECT {file.value:04X}")
        self._select_df(file.df)
        sw = self._select_fid(file)
        if sw != StatusWord.OK:
            raise _apdu_error(sw, b"", f"SELECT {file.value:04X}")

    def _read_current(self, offset: int = 0, limit: int | None = None) -> bytes:
        """READ BINARY the selected EF from ``offset`` until its end or ``limit`` bytes."""
        out = bytearray()
        while limit is None or len(out) < limit:
            position = offset + len(out)
            if position > 0x7FFF:
                raise BadResponseError("file longer than READ BINARY can address")
            want = READ_CHUNK if limit is None else min(READ_CHUNK, limit - len(out))
            data, sw = self.channel.transmit(
                encode_apdu(0x00, INS_READ_BINARY, position >> 8, position & 0xFF, le=want)
            )
            if sw == StatusWord.OK:
                out += data
                if len(data) < want:
                    break
            elif sw == 0x6282:  # end of file reached before Le bytes
                out += data
                break
            elif sw == StatusWord.WRONG_P1_P2 and position > 0:
                break  # the file is a multiple of the chunk size
            else:
                raise _apdu_error(sw, data, f"READ BINARY at {position}")
        return bytes(out)

    def read_file(self, file: BeidFile) -> bytes:
        """The whole content of an EF (zero padding included)."""
        self.select_file(file)
        content = self._read_current()
        logger.debug("read %04X: %d bytes", file.value, len(content))
        return content

    def read_der_file(self, file: BeidFile) -> bytes | None:
        """An EF holding one DER object plus zero padding: the object, or None if all zero.

        Reads only as far as the DER length says.
        """
        self.select_file(file)
        head = self._read_current(0, READ_CHUNK)
        if not any(head):
            logger.debug("%04X is empty (not issued)", file.value)
            return None
        total = der_length(head)
        if total > len(head):
            head += self._read_current(len(head), total - len(head))
        if len(head) < total:
            raise BadResponseError(f"{file.value:04X} is shorter than its DER length {total}")
        return head[:total]

    def read_certificate(self, file: BeidFile) -> bytes | None:
        """A certificate file (5038..503C) as DER, None when not issued; cached by serial."""
        serial = self.card_data.serial_hex
        found, cached = self._cache.get(serial, file)
        if found:
            return cached
        certificate = self.read_der_file(file)
        if certificate is not None and certificate[0] != 0x30:
            raise BadResponseError(f"{file.value:04X} does not hold a certificate")
        self._cache.put(serial, file, certificate)
        return certificate

    # -- CardSession: certificates ---------------------------------------------------

    def certificate(self, role: KeyRole) -> bytes | None:
        return self.read_certificate(CERTIFICATE_FILES[role])

    def ca_certificate(self) -> bytes | None:
        return self.read_certificate(BeidFile.CERT_CA)

    def root_certificate(self) -> bytes | None:
        return self.read_certificate(BeidFile.CERT_ROOT)

    def rrn_certificate(self) -> bytes | None:
        return self.read_certificate(BeidFile.CERT_RRN)

    # -- CardSession: PIN ------------------------------------------------------------

    def pin_for(self, role: KeyRole) -> PinInfo:
        return PIN

    @staticmethod
    def _check_pin(pin: PinInfo) -> None:
        if pin.reference != PIN_REFERENCE:
            raise NotSupportedError(f"the Belgian eID has no PIN with reference {pin.reference}")

    def pin_status(self, pin: PinInfo = PIN) -> PinStatus:
        """Tries left and whether the PIN is verified, via VERIFY with no data (Lc=0),
        which does not spend a try on applets 1.7 and 1.8.

        On 1.8, when this session read the counter with GET CARD DATA (P2=01) and sent no
        PIN command since, the answer comes from there (no command; ``verified`` is then
        not known and given as False).
        """
        self._check_pin(pin)
        tries = self.card_data.pin_tries_left
        if self._tries_fresh and tries is not None:
            return PinStatus(pin=PIN, tries_left=tries, blocked=tries == 0)
        _data, sw = self.channel.transmit(encode_apdu(0x00, INS_VERIFY, 0x00, PIN_REFERENCE))
        if sw == StatusWord.OK:
            return PinStatus(pin=PIN, tries_left=PIN.max_tries, verified=True)
        if sw == StatusWord.AUTH_METHOD_BLOCKED:
            return PinStatus(pin=PIN, tries_left=0, blocked=True)
        if sw & 0xFFF0 == 0x63C0:
            return PinStatus(pin=PIN, tries_left=sw & 0x0F, blocked=sw & 0x0F == 0)
        if self.is_ecc:
            tries = self._card_data_pin_tries()
            return PinStatus(pin=PIN, tries_left=tries, blocked=tries == 0)
        raise _apdu_error(sw, b"", "PIN status")

    def _card_data_pin_tries(self) -> int | None:
        data = self.channel.send_apdu(CLA_PROPRIETARY, INS_GET_CARD_DATA, 0x00, 0x01, le=0x1F)
        return CardData.parse(data).pin_tries_left

    @staticmethod
    def _raise_for_pin_sw(sw: int, data: bytes = b"") -> None:
        if sw == StatusWord.OK:
            return
        if sw & 0xFFF0 == 0x63C0:
            tries = sw & 0x0F
            logger.info("wrong PIN, %d tries left", tries)
            if tries == 0:
                raise PinBlockedError("PIN")
            raise InvalidPinError(tries_left=tries, pin_name="PIN")
        if sw == StatusWord.AUTH_METHOD_BLOCKED:
            raise PinBlockedError("PIN")
        if sw == StatusWord.PINPAD_TIMEOUT:
            raise PinPadTimeoutError("nobody entered the PIN on the PIN pad in time")
        if sw == StatusWord.PINPAD_CANCELLED:
            raise PinPadCancelledError("the PIN entry was cancelled on the PIN pad")
        if sw == StatusWord.PINPAD_PIN_MISMATCH:
            raise PinFormatError("the new PINs entered on the PIN pad differ")
        if sw in (StatusWord.PINPAD_PIN_FORMAT, StatusWord.INCORRECT_DATA):
            raise PinFormatError("the card refused the PIN format")
        raise _apdu_error(sw, data, "PIN command")

    def verify_pin(self, pin: PinInfo, value: PinEntry) -> None:
        """VERIFY once (never retried). ``value`` may be :data:`PINPAD`.

        Raises:
            InvalidPinError: wrong PIN (``tries_left``).
            PinBlockedError: no tries left.
            PinFormatError: not 4..12 digits (nothing sent).
            PinPadTimeoutError, PinPadCancelledError: PIN-pad outcomes.
        """
        self._check_pin(pin)
        self._tries_fresh = False
        if value is PINPAD:
            data, sw = self._pinpad_verify()
        else:
            assert isinstance(value, str)
            block = encode_pin_block(value)
            data, sw = self.channel.transmit(encode_apdu(0x00, INS_VERIFY, 0x00, PIN_REFERENCE, block))
        self._raise_for_pin_sw(sw, data)
        logger.info("PIN verified")

    def change_pin(self, pin: PinInfo, old: PinEntry, new: str | None) -> None:
        """CHANGE REFERENCE DATA ``00 24 00 01 10 <old block> <new block>``.

        ``old=PINPAD, new=None`` lets the PIN pad collect both.

        Raises:
            InvalidPinError, PinBlockedError, PinFormatError (nothing sent), PIN-pad errors.
        """
        self._check_pin(pin)
        self._tries_fresh = False
        if old is PINPAD:
            if new is not None:
                raise PinFormatError("with a PIN pad both PINs are entered on the reader")
            data, sw = self._pinpad_modify()
        else:
            assert isinstance(old, str)
            if not isinstance(new, str):
                raise PinFormatError("the new PIN is missing")
            blocks = encode_pin_block(old) + encode_pin_block(new)
            data, sw = self.channel.transmit(
                encode_apdu(0x00, INS_CHANGE_REFERENCE_DATA, 0x00, PIN_REFERENCE, blocks)
            )
        self._raise_for_pin_sw(sw, data)
        logger.info("PIN changed")

    def _pinpad_verify(self) -> tuple[bytes, int]:
        from agent.smartcard import pinpad

        template = encode_apdu(0x00, INS_VERIFY, 0x00, PIN_REFERENCE, PIN_BLOCK_EMPTY)
        logger.debug("PIN-pad VERIFY")
        return pinpad.pinpad_verify(self.connection, template, _pinpad_format())

    def _pinpad_modify(self) -> tuple[bytes, int]:
        from agent.smartcard import pinpad

        template = encode_apdu(0x00, INS_CHANGE_REFERENCE_DATA, 0x00, PIN_REFERENCE, PIN_BLOCK_EMPTY * 2)
        logger.debug("PIN-pad CHANGE REFERENCE DATA")
        return pinpad.pinpad_modify(
            self.connection,
            template,
            _pinpad_format(),
            offset_old=0,
            offset_new=8,
        )

    # -- CardSession: signing --------------------------------------------------------

    def signature_algorithms(self, role: KeyRole) -> list[SignatureAlgorithm]:
        if self.is_ecc:
            return [SignatureAlgorithm("ECC", name, "NONE") for name in ECDSA_ALGORITHMS]
        pkcs1 = ["SHA-224", "SHA-256", "SHA-384", "SHA-512"]
        return [SignatureAlgorithm("RSA", name, "PKCS1.5") for name in pkcs1] + [
            SignatureAlgorithm("RSA", "SHA-256", "PSS")
        ]

    def signature_input(
        self, digest: bytes, hash_function: str, padding: str | None = None
    ) -> tuple[int, bytes]:
        """The MSE SET algorithm byte and the PSO:CDS data for a digest.

        Raises:
            NotSupportedError: hash or padding the applet cannot do.
            ValueError: the digest length does not match the hash function.
        """
        hash_entry = hash_for_digest(digest, hash_function, HASHES)  # SHA-1 too (applet 1.7)
        name = hash_entry.name
        scheme = (padding or "").upper()
        if self.is_ecc:
            if scheme not in ("", "NONE") or name not in ECDSA_ALGORITHMS:
                raise NotSupportedError(f"applet 1.8 cannot sign {name} with padding {padding}")
            return ECDSA_ALGORITHMS[name], digest
        if scheme == "PSS":
            if name not in RSA_PSS_ALGORITHMS:
                raise NotSupportedError(f"applet 1.7 cannot do PSS with {name}")
            return RSA_PSS_ALGORITHMS[name], digest
        if scheme not in ("", "PKCS1.5", "PKCS1", "PKCS1V15"):
            raise NotSupportedError(f"unknown padding scheme {padding!r}")
        if name in RSA_PKCS1_RAW_ALGORITHMS:
            return RSA_PKCS1_RAW_ALGORITHMS[name], digest
        if hash_entry.digest_info_prefix is not None:
            return RSA_PKCS1_DIGEST_INFO_ALGORITHM, hash_entry.digest_info(digest)
        raise NotSupportedError(f"applet 1.7 cannot sign {name}")

    def _set_security_environment(self, algorithm: int, key: int) -> None:
        """MSE SET with the BELPIC DF current (eid-mw: it must be, on applet >= 1.7).

        The DF is not selected first: it stays current between our transactions unless
        another program (or a reset) changed it, and then the card refuses the key (6A88,
        key not found, or another error). On any refusal DF00 is selected by path and MSE
        SET sent once more, whose answer counts. Nothing depends on the DF before this
        point, and the PIN goes out only after an MSE SET the card accepted.
        """
        mse = encode_apdu(0x00, INS_MSE, 0x41, 0xB6, bytes((0x04, 0x80, algorithm, 0x84, key)))
        if self._current_df is None or self._current_df == DF_BELPIC:
            data, sw = self.channel.transmit(mse)
            if sw == StatusWord.OK:
                self._current_df = DF_BELPIC
                return
            logger.info("MSE SET answered %04X: selecting DF00 and setting it again", sw)
        self._select_belpic_df()
        data, sw = self.channel.transmit(mse)
        if sw != StatusWord.OK:
            raise _apdu_error(sw, data, "MSE SET")

    def sign(
        self,
        role: KeyRole,
        digest: bytes,
        hash_function: str,
        pin: PinEntry | None,
        *,
        padding: str | None = None,
    ) -> bytes:
        """Sign a digest: MSE SET (SELECT DF00 by path first when the card needs it, see
        :meth:`_set_security_environment`), VERIFY (when ``pin``), PSO:CDS.

        Returns raw ``r || s`` on applet 1.8 (see :func:`ecdsa_raw_to_der`), the RSA
        signature on 1.7. The signing key needs ``pin`` every time.

        Raises:
            PinRequiredError: no PIN for the signing key, or the card wants one (6982).
            InvalidPinError, PinBlockedError, PinFormatError: as :meth:`verify_pin`.
            NotSupportedError, ValueError: see :meth:`signature_input`.
        """
        key = KEY_REFERENCES[role]
        algorithm, dtbs = self.signature_input(digest, hash_function, padding)
        if role is KeyRole.SIGNING and pin is None:
            raise PinRequiredError("the signing key needs the PIN for every signature")
        if isinstance(pin, str):
            validate_pin(pin)
        self._set_security_environment(algorithm, key)
        if pin is not None:
            self.verify_pin(PIN, pin)
        data, sw = self.channel.transmit(encode_apdu(0x00, INS_PSO, 0x9E, 0x9A, dtbs))
        if sw == StatusWord.SECURITY_CONDITION_NOT_SATISFIED and pin is None:
            raise PinRequiredError("the card needs the PIN before this signature")
        if sw != StatusWord.OK or not data:
            raise _apdu_error(sw, data, "PSO: COMPUTE DIGITAL SIGNATURE")
        logger.info("signed with key %02X (algorithm %02X)", key, algorithm)
        return data

    def authenticate_card(self, challenge: bytes | None = None) -> None:
        """Applet 1.8: prove the card is genuine (eid-mw ``do_challenge``).

        Checks SHA-384(4040) against ID tag 0x1A, then INTERNAL AUTHENTICATE
        ``00 88 02 81 32 94 30 <48 bytes>`` with the basic key 81 and verifies the raw
        ``r || s`` against 4040. No PIN. Not done automatically: the card allows 5000 calls
        before it wants a PIN VERIFY, and it clears the security environment.

        Raises:
            NotSupportedError: applet 1.7 (no public basic key on the card).
            IdentitySignatureError: the hash or the signature does not verify.
        """
        if not self.is_ecc:
            raise NotSupportedError("card authentication needs applet 1.8")
        challenge = os.urandom(48) if challenge is None else challenge
        if len(challenge) != 48:
            raise ValueError("the challenge is 48 bytes (SHA-384 sized)")
        tags = dict(parse_simple_tlv(self.read_file(BeidFile.IDENTITY)))
        key_file = self.read_file(BeidFile.BASIC_PUBLIC_KEY)
        check_basic_key_hash(tags.get(TAG_BASIC_KEY_HASH), key_file)
        key_der = trim_der(key_file)
        raw = self.channel.send_apdu(0x00, INS_INTERNAL_AUTHENTICATE, 0x02, 0x81, b"\x94\x30" + challenge)
        # Imported here: the resident agent needs cryptography only for such checks.
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed  # noqa: PLC0415

        key = serialization.load_der_public_key(key_der)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise IdentitySignatureError("the card key (4040) is not an EC key")
        try:
            key.verify(ecdsa_raw_to_der(raw), challenge, ec.ECDSA(Prehashed(hashes.SHA384())))
        except (InvalidSignature, ValueError) as exc:
            raise IdentitySignatureError("the card failed its authentication") from exc
        logger.info("card authenticated with its basic key")

    def log_off(self) -> None:
        """LOG OFF ``80 E6 00 00``: the card forgets the verified PIN."""
        self.channel.send_apdu(CLA_PROPRIETARY, INS_LOG_OFF, 0x00, 0x00)
        logger.info("logged off")

    # -- CardSession: identity -------------------------------------------------------

    def read_identity(self, *, photo: bool = True) -> BeidIdentity:
        """Identity, address (and photo), with the RRN signatures, photo hash and (1.8)
        card key hash verified.

        Raises:
            IdentitySignatureError: a signature or hash does not verify.
        """
        identity_file = self.read_file(BeidFile.IDENTITY)
        identity_signature = self.read_file(BeidFile.IDENTITY_SIGNATURE)
        address_file = self.read_file(BeidFile.ADDRESS)
        address_signature = self.read_file(BeidFile.ADDRESS_SIGNATURE)
        photo_file = self.read_file(BeidFile.PHOTO) if photo else None
        basic_key = None
        if any(tag == TAG_BASIC_KEY_HASH for tag, _ in parse_simple_tlv(identity_file)):
            basic_key = self.read_file(BeidFile.BASIC_PUBLIC_KEY)
        elif self.is_ecc:
            logger.warning("applet 1.8 ID file without the card key hash (tag 1A)")
        rrn = self.rrn_certificate()
        if rrn is None:
            raise IdentitySignatureError("the card has no RRN certificate")
        verify_identity_files(
            rrn_certificate=rrn,
            identity_file=identity_file,
            identity_signature=identity_signature,
            address_file=address_file,
            address_signature=address_signature,
            photo=photo_file,
            basic_key_file=basic_key,
            root_certificate=self.root_certificate(),
        )
        return BeidIdentity(
            identity=Identity.parse(identity_file),
            address=Address.parse(address_file),
            photo=photo_file,
            card_serial=self.card_data.serial_hex,
        )


def _select_application(channel: CardChannel) -> None:
    """SELECT the BELPIC applet by instance AID (eid-mw: P2=00), else the PKCS#15 DF AID."""
    _data, sw = channel.transmit(encode_apdu(0x00, INS_SELECT, 0x04, 0x00, APPLET_AID))
    if sw >> 8 == 0x90:
        return
    logger.debug("applet AID not selectable (%04X), trying the BELPIC AID", sw)
    _data, sw = channel.transmit(encode_apdu(0x00, INS_SELECT, 0x04, 0x0C, BELPIC_AID))
    if sw >> 8 != 0x90:
        raise UnsupportedCardError("not a Belgian eID card (BELPIC cannot be selected)")


def _get_card_data(channel: CardChannel) -> CardData:
    data, sw = channel.transmit(encode_apdu(CLA_PROPRIETARY, INS_GET_CARD_DATA, 0, 0, le=0x1C))
    if sw != StatusWord.OK:
        raise UnsupportedCardError(f"GET CARD DATA failed ({sw:04X}): not a Belgian eID card")
    card_data = CardData.parse(data)
    if card_data.applet_version >= APPLET_18:
        data, sw = channel.transmit(encode_apdu(CLA_PROPRIETARY, INS_GET_CARD_DATA, 0, 1, le=0x1F))
        if sw == StatusWord.OK:
            card_data = CardData.parse(data)
    return card_data


def open_session(
    connection: SmartCardConnection,
    cache: CertificateCache | None = None,
    *,
    resend_delay: float = RESEND_DELAY,
) -> BeidSession:
    """Detect a Belgian eID card and open a session on it.

    Sends SELECT (applet), GET CARD DATA, and reads the authentication certificate
    (unless cached) for the holder name.

    Args:
        connection: the card, inside a transaction.
        cache: certificate cache; :data:`shared_certificate_cache` when None.
        resend_delay: pause before re-sending after ``6Cxx`` (older applets need it).

    Raises:
        UnsupportedCardError: not a Belgian eID, or applet older than 1.7.
    """
    channel = CardChannel(connection, resend_delay=resend_delay)
    _select_application(channel)
    card_data = _get_card_data(channel)
    if card_data.applet_version < APPLET_17:
        raise UnsupportedCardError(
            f"Belgian eID applet {card_data.applet_label} is not supported (1.7 and 1.8 are)"
        )
    logger.debug("Belgian eID, applet %s, serial %s", card_data.applet_label, card_data.serial_hex)
    return BeidSession(channel, card_data, shared_certificate_cache if cache is None else cache)


def resume_session(
    connection: SmartCardConnection,
    cache: CertificateCache | None,
    known: CardData,
    *,
    resend_delay: float = RESEND_DELAY,
) -> BeidSession:
    """A session on a card identified before in this reader (``known``: its
    :attr:`BeidSession.resume_state`), with one command instead of the detection.

    Sends GET CARD DATA (P2=01 with the PIN counter on 1.8, P2=00 on 1.7) without selecting
    the applet first (it is the card's default, re-selected by any reset). Its answer shows
    the applet still answers and gives the serial, which may differ from ``known``'s: the
    caller compares it with the card it expects. Falls back to :func:`open_session` when the
    card answers anything else (another program selected another application, or another
    kind of card is in the reader).

    Raises:
        UnsupportedCardError: after the fallback, not a supported Belgian eID.
    """
    cache = shared_certificate_cache if cache is None else cache
    channel = CardChannel(connection, resend_delay=resend_delay)
    p2, le = (0x01, 0x1F) if known.applet_version >= APPLET_18 else (0x00, 0x1C)
    data, sw = channel.transmit(encode_apdu(CLA_PROPRIETARY, INS_GET_CARD_DATA, 0, p2, le=le))
    card_data = None
    if sw == StatusWord.OK:
        try:
            card_data = CardData.parse(data)
        except BadResponseError:
            card_data = None
    if card_data is None or card_data.applet_version != known.applet_version:
        logger.info("GET CARD DATA answered %04X: detecting the card again", sw)
        return open_session(connection, cache, resend_delay=resend_delay)
    return BeidSession(channel, card_data, cache)
