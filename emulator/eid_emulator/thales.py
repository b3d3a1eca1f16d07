"""A virtual Thales PKCS-15 card: the Estonian ID card 2025, FinEID v3 or FinEID v4.

Shaped after the reference digest (``other-cards.md`` sections 3 and 6):

* exact ATRs (FinEID v4 with bytes 12-13 of the OpenSC "FinEID 2022" ATR);
* the PKCS-15 application (AID ``A0 00 00 00 63 50 4B 43 53 2D 31 35``) is the MF; files
  by path from the MF: EE ``ADF1/3411``, ``ADF2/3421``, document number ``DFDD/5007``;
  FI ``4331``, ``5016/4332`` (v4) or ``5016/4335`` (v3), TokenInfo ``5032`` (FCP size in
  tag 81 on FinEID);
* PINs (ASCII padded with 00): EE PIN1 81, PIN2 82, PUK 83, 3 tries, PUK not changeable;
  FI PIN1 11, PIN2 82, PUK 83, 5 tries. GET DATA ``00 CB 00 FF 05 A0 03 83 01 <ref>``
  answers ``A0 { DF21 <tries left, maximum>, DF2F <changed flag> }`` (case 3: ``61xx``);
  an EstEID 2025 can be made with PINs that were never changed (DF2F = 00);
* keys: EE auth 01 / sign 05 (P-384); FI v4 auth 01 / sign 02 (P-384); FI v3 auth 01
  (RSA-2048, PSS SHA-256, algorithm 45) / sign 03 (P-256). VERIFY, MSE SET B6, PSO:HASH
  (``90 A0``, ``90 <len> <hash>``), PSO:CDS (``9E 9A``); the signing key needs PIN2 right
  before each signature.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from eid_emulator.iso_card import Apdu, CardError, IsoPinCard, Node, PinState, sw_bytes
from eid_emulator.pki_other import HolderKeys, OtherPki, document_number
from eid_emulator.signing import ecdsa_raw

logger = logging.getLogger(__name__)

__all__ = ["CARD_PROFILES", "ThalesCard", "ThalesCardData", "ThalesCardProfile", "make_card"]

PKCS15_AID: Final = bytes.fromhex("A000000063504B43532D3135")
HASH_SIZES: Final = {3: 28, 4: 32, 5: 48, 6: 64}


@dataclass(frozen=True)
class ThalesCardProfile:
    name: str
    atr: bytes
    refs: tuple[int, int, int]  # PIN1, PIN2, PUK
    pin_min: tuple[int, int, int]
    max_tries: int
    auth_path: tuple[int, ...]
    sign_path: tuple[int, ...]
    key_refs: tuple[int, int]  # auth, sign
    size_tag: int
    serial_path: tuple[int, ...]
    puk_changeable: bool


CARD_PROFILES: Final = {
    "EE2025": ThalesCardProfile(
        "EE2025", bytes.fromhex("3BFF9600008031FE438031B85365494464B085051012233F1D"),
        (0x81, 0x82, 0x83), (4, 5, 8), 3, (0xADF1, 0x3411), (0xADF2, 0x3421), (0x01, 0x05),
        0x80, (0xDFDD, 0x5007), puk_changeable=False),
    "FI3": ThalesCardProfile(
        "FI3", bytes.fromhex("3B7F9600008031B865B08504021B1200F6829000"),
        (0x11, 0x82, 0x83), (4, 6, 8), 5, (0x4331,), (0x5016, 0x4335), (0x01, 0x03),
        0x81, (0x5032,), puk_changeable=True),
    "FI4": ThalesCardProfile(
        "FI4", bytes.fromhex("3B7F9600008031B865B085050011122460829000"),
        (0x11, 0x82, 0x83), (4, 6, 8), 5, (0x4331,), (0x5016, 0x4332), (0x01, 0x02),
        0x81, (0x5032,), puk_changeable=True),
}


@dataclass(frozen=True)
class ThalesCardData:
    keys: HolderKeys
    document_number: str = "ZZ0012345"
    pin1: str = "1234"
    pin2: str = "123456"
    puk: str = "12345678"
    pins_changed: bool = True  # False: a new EstEID 2025 whose PINs are still the initial ones


def _tlv(tag: bytes, value: bytes) -> bytes:
    return tag + bytes((len(value),)) + value


def _token_info(serial: str) -> bytes:
    body = _tlv(b"\x02", b"\x00") + _tlv(b"\x04", serial.encode()) + _tlv(b"\x0c", b"FINEID")
    return _tlv(b"\x30", body)


class ThalesCard(IsoPinCard):
    """The virtual Thales card (see the module docstring)."""

    def __init__(self, profile: str, data: ThalesCardData) -> None:
        if profile not in CARD_PROFILES:
            raise ValueError(f"unknown Thales card {profile!r}; known: {sorted(CARD_PROFILES)}")
        self.profile = p = CARD_PROFILES[profile]
        self.data = data
        self.size_tag = p.size_tag
        self.puk_changeable = p.puk_changeable
        mf = Node(0x3F00, aid=PKCS15_AID)
        serial_content = (data.document_number.encode() if profile == "EE2025"
                          else _token_info(data.document_number))
        for path, content in ((p.auth_path, data.keys.auth_der), (p.sign_path, data.keys.sign_der),
                              (p.serial_path, serial_content)):
            parent = mf
            for fid in path[:-1]:
                parent = parent.child(fid) or parent.add(Node(fid))
            parent.add(Node(path[-1], content=content))
        changed = data.pins_changed
        pins = {
            p.refs[0]: PinState("PIN1", data.pin1, p.max_tries, p.pin_min[0], changed=changed),
            p.refs[1]: PinState("PIN2", data.pin2, p.max_tries, p.pin_min[1], changed=changed),
            p.refs[2]: PinState("PUK", data.puk, p.max_tries, p.pin_min[2]),
        }
        super().__init__(p.atr, mf, pins, pad=0x00, puk_reference=p.refs[2])
        self._handlers.update(
            {0xCB: (0x00, self._get_data), 0x22: (0x00, self._mse_set), 0x2A: (0x00, self._pso)}
        )

    def _reset_security(self) -> None:
        self._se: tuple[int, int] | None = None  # (algorithm, key)
        self._hash: bytes | None = None

    def _get_data(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0x00, 0xFF):
            raise CardError(0x6A86)
        if len(apdu.data) != 5 or apdu.data[:4] != bytes.fromhex("A0038301"):
            raise CardError(0x6A80)
        pin = self.pin_state(apdu.data[4])
        body = _tlv(b"\xdf\x21", bytes((pin.tries, pin.max_tries, 0xA5, 0x03)))
        body += _tlv(b"\xdf\x28", b"\x0c") + _tlv(b"\xdf\x2f", b"\x01" if pin.changed else b"\x00")
        return self.respond(_tlv(b"\xa0", body), apdu.le)

    def _key(self, reference: int) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        auth_ref, sign_ref = self.profile.key_refs
        if reference == auth_ref:
            return self.data.keys.auth.key
        if reference == sign_ref:
            return self.data.keys.sign.key
        raise CardError(0x6A88)

    def _mse_set(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0x41, 0xB6):
            raise CardError(0x6A86)
        data = apdu.data
        if len(data) != 6 or data[:2] != b"\x80\x01" or data[3:5] != b"\x84\x01":
            raise CardError(0x6A80)
        algorithm, reference = data[2], data[5]
        key = self._key(reference)
        kind = algorithm & 0x0F
        if algorithm >> 4 not in HASH_SIZES:
            raise CardError(0x6A80)
        if kind == 0x04 and not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CardError(0x6A80)
        if kind == 0x05 and (not isinstance(key, rsa.RSAPrivateKey) or algorithm != 0x45):
            raise CardError(0x6A80)
        if kind not in (0x04, 0x05):
            raise CardError(0x6A80)
        self._se = (algorithm, reference)
        self._hash = None
        return sw_bytes(0x9000)

    def _pso(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) == (0x90, 0xA0):
            return self._pso_hash(apdu)
        if (apdu.p1, apdu.p2) == (0x9E, 0x9A):
            return self._pso_cds(apdu)
        raise CardError(0x6A86)

    def _pso_hash(self, apdu: Apdu) -> bytes:
        if self._se is None:
            raise CardError(0x6985)
        data = apdu.data
        if len(data) < 2 or data[0] != 0x90 or data[1] != len(data) - 2:
            raise CardError(0x6A80)
        if len(data) - 2 != HASH_SIZES[self._se[0] >> 4]:
            raise CardError(0x6700)
        self._hash = data[2:]
        return sw_bytes(0x9000)

    def _pso_cds(self, apdu: Apdu) -> bytes:
        if self._se is None or self._hash is None:
            raise CardError(0x6985)
        algorithm, reference = self._se
        signing = reference == self.profile.key_refs[1]
        pin = self.pins[self.profile.refs[1 if signing else 0]]
        if not pin.verified:
            raise CardError(0x6982)
        key = self._key(reference)
        digest = self._hash
        if isinstance(key, rsa.RSAPrivateKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            signature = key.sign(digest, pss, Prehashed(hashes.SHA256()))
        else:
            signature = ecdsa_raw(key, digest)
        self._hash = None
        if signing:
            pin.verified = False
        return self.respond(signature, apdu.le)


def make_card(pki: OtherPki, profile: str = "EE2025", **data: object) -> ThalesCard:
    """A card with fresh keys issued by ``pki`` (``data``: ThalesCardData fields)."""
    keys = pki.issue()
    data.setdefault("document_number", document_number("ZZ", keys))
    return ThalesCard(profile, ThalesCardData(keys=keys, **data))  # type: ignore[arg-type]
