"""A virtual IDEMIA IAS-ECC card: the Estonian ID card 2018 or the Latvian eID.

Shaped after the reference digest (``other-cards.md`` sections 2 and 4) and the
recorded Web eID / OpenSC dialogues:

* exact ATRs (Cosmo 8 and Cosmo X, ``23 3F`` for EE, ``42 8F`` for LV);
* MF = the IAS-ECC application (AID ``A0 00 00 00 77 01 08 00 07 00 00 FE 00 00 01 00``)
  with ``D003`` (document number, tag 04), ADF1 ``AWP`` (FID ADF1) and ADF2 ``QSCD``
  (FID ADF2);
* EE: certificates ``ADF1/3401`` and ``ADF2/341F``, keys 81 and 9F (P-384);
  LV: each ADF also holds EF.OD ``5031`` -> CDF ``7005`` and PrKDF ``7001``; the
  certificate / key pair is 3401/81 + 341F/9F, or 3402/82 + 341E/9E on later cards; keys
  are RSA-2048 (PrKDF tag 30) or P-384 (tag A0);
* PIN1 (01, global), PIN2 (85, local to ADF2), PUK (02, global): 3 tries, ASCII padded
  with FF; GET DATA ``00 CB 3F FF`` answers the 32-byte security object OpenSC expects
  (tries left at byte 13);
* MSE SET ``A4`` (authentication key) / ``B6`` (signing key) with the algorithm as one
  byte (04, 54; RSA 02, 42) or OpenSC 0.23's 4-byte forms (``FF 20 08 00``,
  ``FF 15 08 00``); INTERNAL AUTHENTICATE needs PIN1, PSO:CDS needs PIN2 right before
  each signature.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.smartcard.tlv import encode_ber
from eid_emulator.iso_card import Apdu, CardError, IsoPinCard, Node, PinState, sw_bytes
from eid_emulator.pki_other import HolderKeys, OtherPki, document_number
from eid_emulator.signing import DIGEST_INFO_PREFIX, ecdsa_raw, rsa_pkcs1_raw

logger = logging.getLogger(__name__)

__all__ = ["CARD_PROFILES", "IdemiaCard", "IdemiaCardData", "IdemiaCardProfile", "make_card"]

MAIN_AID: Final = bytes.fromhex("A000000077010800070000FE00000100")
AWP_AID: Final = bytes.fromhex("E828BD080FF2504F5420415750")
QSCD_AID: Final = bytes.fromhex("51534344204170706C69636174696F6E")
ADF1: Final = 0xADF1
ADF2: Final = 0xADF2

ATR_EE_COSMO8: Final = bytes.fromhex("3BDB960080B1FE451F830012233F536549440F9000F1")
ATR_EE_COSMOX: Final = bytes.fromhex("3BDC960080B1FE451F830012233F54654944320F9000C3")
ATR_LV_COSMO8: Final = bytes.fromhex("3BDB960080B1FE451F830012428F536549440F900020")
ATR_LV_COSMOX: Final = bytes.fromhex("3BDC960080B1FE451F830012428F54654944320F900012")

PIN1_REF: Final = 0x01
PUK_REF: Final = 0x02
PIN2_REF: Final = 0x85

EC_AUTH_ALGORITHMS: Final = (b"\x04", bytes.fromhex("FF200800"))
EC_SIGN_ALGORITHMS: Final = (b"\x54", bytes.fromhex("FF150800"))
RSA_AUTH_ALGORITHM: Final = b"\x02"
RSA_SIGN_ALGORITHM: Final = b"\x42"


@dataclass(frozen=True)
class IdemiaCardProfile:
    name: str
    atr: bytes
    pin2_min: int
    pkcs15: bool  # Latvian cards describe their keys in PKCS#15 inside each ADF


CARD_PROFILES: Final = {
    "EE": IdemiaCardProfile("EE", ATR_EE_COSMO8, 5, pkcs15=False),
    "EE-X": IdemiaCardProfile("EE-X", ATR_EE_COSMOX, 5, pkcs15=False),
    "LV": IdemiaCardProfile("LV", ATR_LV_COSMO8, 6, pkcs15=True),
    "LV-X": IdemiaCardProfile("LV-X", ATR_LV_COSMOX, 6, pkcs15=True),
}


@dataclass(frozen=True)
class IdemiaCardData:
    """What is personalised on one card."""

    keys: HolderKeys
    document_number: str = "AB0012345"
    pin1: str = "1234"
    pin2: str = "12345"
    puk: str = "12345678"
    slot_variant: int = 1  # LV: 1 = 3401/81 + 341F/9F, 2 = 3402/82 + 341E/9E


def _pkcs15_files(cert_fid: int, key_ref: int, rsa_key: bool, label: str) -> list[Node]:
    """EF.OD, CDF and PrKDF of one ADF, the way the Latvian card has them."""
    od = encode_ber(0xA4, encode_ber(0x30, encode_ber(0x04, b"\x70\x05"))) + encode_ber(
        0xA0, encode_ber(0x30, encode_ber(0x04, b"\x70\x01")))
    common = encode_ber(0x30, encode_ber(0x0C, label.encode()))
    cdf = encode_ber(0x30, common + encode_ber(0x30, encode_ber(0x04, bytes((key_ref,)))) + encode_ber(
        0xA1, encode_ber(0x30, encode_ber(0x30, encode_ber(0x04, cert_fid.to_bytes(2, "big"))))))
    key_attrs = encode_ber(0x30, encode_ber(0x02, bytes((0x00, key_ref))))
    prkdf = encode_ber(0x30 if rsa_key else 0xA0, common + key_attrs)
    return [Node(0x5031, content=od), Node(0x7005, content=cdf), Node(0x7001, content=prkdf)]


class IdemiaCard(IsoPinCard):
    """The virtual IAS-ECC card (see the module docstring)."""

    def __init__(self, profile: str, data: IdemiaCardData) -> None:
        if profile not in CARD_PROFILES:
            raise ValueError(f"unknown IDEMIA card {profile!r}; known: {sorted(CARD_PROFILES)}")
        self.profile = CARD_PROFILES[profile]
        self.data = data
        variant2 = self.profile.pkcs15 and data.slot_variant == 2
        self.auth_ref, self.sign_ref = (0x82, 0x9E) if variant2 else (0x81, 0x9F)
        auth_fid, sign_fid = (0x3402, 0x341E) if variant2 else (0x3401, 0x341F)
        self.rsa = isinstance(data.keys.auth.key, rsa.RSAPrivateKey)
        if not self.rsa and not self.profile.pkcs15 and not isinstance(
                data.keys.auth.key, ec.EllipticCurvePrivateKey):
            raise ValueError("the Estonian card has EC keys")
        mf = Node(0x3F00, aid=MAIN_AID)
        mf.add(Node(0xD003, content=encode_ber(0x04, data.document_number.encode())))
        adf1 = mf.add(Node(ADF1, aid=AWP_AID))
        adf2 = mf.add(Node(ADF2, aid=QSCD_AID))
        adf1.add(Node(auth_fid, content=data.keys.auth_der))
        adf2.add(Node(sign_fid, content=data.keys.sign_der))
        if self.profile.pkcs15:
            for node in _pkcs15_files(auth_fid, self.auth_ref, self.rsa, "Authentication"):
                adf1.add(node)
            for node in _pkcs15_files(sign_fid, self.sign_ref, self.rsa, "Signature"):
                adf2.add(node)
        pins = {
            PIN1_REF: PinState("PIN1", data.pin1, min_length=4),
            PIN2_REF: PinState("PIN2", data.pin2, min_length=self.profile.pin2_min,
                               local_df=ADF2),
            PUK_REF: PinState("PUK", data.puk, min_length=8),
        }
        super().__init__(self.profile.atr, mf, pins, pad=0xFF, puk_reference=PUK_REF)
        self._handlers.update({
            0xCB: (0x00, self._get_data),
            0x22: (0x00, self._mse_set),
            0x88: (0x00, self._internal_authenticate),
            0x2A: (0x00, self._pso),
        })

    def _reset_security(self) -> None:
        self._se: tuple[int, bytes, int] | None = None  # (template, algorithm, key)

    # ---- GET DATA: PIN security objects

    def _get_data(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0x3F, 0xFF):
            raise CardError(0x6A86)
        data = apdu.data
        if len(data) != 10 or data[:6] != bytes.fromhex("4D087006BF81") or data[7:] != bytes(
                (0x02, 0xA0, 0x80)):
            raise CardError(0x6A80)
        reference = {0x01: PIN1_REF, 0x02: PUK_REF, 0x05: PIN2_REF}.get(data[6])
        if reference is None:
            raise CardError(0x6A88)
        pin = self.pin_state(reference)
        inner = (bytes((0x9A, 0x01, pin.max_tries, 0x9B, 0x01, pin.tries))
                 + bytes.fromhex("A1108C06F300007343009C06F30000734300"))
        body = bytes((0xBF, 0x81, data[6], len(inner) + 2, 0xA0, len(inner))) + inner
        return self.respond(bytes((0x70, len(body))) + body, apdu.le)

    # ---- keys

    def _mse_set(self, apdu: Apdu) -> bytes:
        if apdu.p1 != 0x41 or apdu.p2 not in (0xA4, 0xB6):
            raise CardError(0x6A86)
        fields: dict[int, bytes] = {}
        data, i = apdu.data, 0
        while i + 2 <= len(data):
            tag, length = data[i], data[i + 1]
            fields[tag] = data[i + 2 : i + 2 + length]
            i += 2 + length
        if i != len(data) or 0x80 not in fields or len(fields.get(0x84, b"")) != 1:
            raise CardError(0x6A80)
        algorithm, key = fields[0x80], fields[0x84][0]
        if apdu.p2 == 0xA4:
            if key != self.auth_ref or not self.in_df(ADF1):
                raise CardError(0x6A88)
            allowed = (RSA_AUTH_ALGORITHM,) if self.rsa else EC_AUTH_ALGORITHMS
        else:
            if key != self.sign_ref or not self.in_df(ADF2):
                raise CardError(0x6A88)
            allowed = (RSA_SIGN_ALGORITHM,) if self.rsa else EC_SIGN_ALGORITHMS
        if algorithm not in allowed:
            raise CardError(0x6A80)
        self._se = (apdu.p2, algorithm, key)
        return sw_bytes(0x9000)

    def _compute(self, data: bytes, signing: bool) -> bytes:
        key = self.data.keys.sign.key if signing else self.data.keys.auth.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if len(data) != 48:
                raise CardError(0x6700)
            return ecdsa_raw(key, data)
        if signing:  # the card builds the SHA-256 DigestInfo itself
            if len(data) != 32:
                raise CardError(0x6700)
            data = DIGEST_INFO_PREFIX["sha256"] + data
        return rsa_pkcs1_raw(key, data)

    def _internal_authenticate(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0x00, 0x00):
            raise CardError(0x6A86)
        if self._se is None or self._se[0] != 0xA4:
            raise CardError(0x6985)
        if not self.pins[PIN1_REF].verified:
            raise CardError(0x6982)
        return self.respond(self._compute(apdu.data, signing=False), apdu.le)

    def _pso(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0x9E, 0x9A):
            raise CardError(0x6A86)
        if self._se is None or self._se[0] != 0xB6:
            raise CardError(0x6985)
        pin2 = self.pins[PIN2_REF]
        if not pin2.verified:
            raise CardError(0x6982)
        signature = self._compute(apdu.data, signing=True)
        pin2.verified = False  # PIN2 right before every signature
        return self.respond(signature, apdu.le)


def make_card(pki: OtherPki, profile: str = "EE", **data: object) -> IdemiaCard:
    """A card with fresh keys issued by ``pki`` (``data``: IdemiaCardData fields).

    PIN2 defaults to 12345 on Estonian and 123456 on Latvian cards (6 digits at least).
    """
    if CARD_PROFILES[profile].pin2_min > 5:
        data.setdefault("pin2", "123456")
    keys = pki.issue()
    data.setdefault("document_number", document_number("AB", keys))
    return IdemiaCard(profile, IdemiaCardData(keys=keys, **data))  # type: ignore[arg-type]
