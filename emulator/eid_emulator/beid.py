"""A virtual Belgian eID card: the BELPIC applet 1.7 (RSA-2048) or 1.8 (ECDSA P-384).

The card follows the applet reference manuals as digested in
``/work/shared/reference/beid-card.md`` (sections 1, 2, 5 and 8):

* File system: MF 3F00 with EF(DIR) 2F00, DF00 (BELPIC PKCS#15 application: ODF,
  TokenInfo, AODF, PrKDF, CDF and the certificate files 5038..503C) and DF01 (identity
  files 4031..4035; 4038/4039 on 1.7, 4040 on 1.8). Files are zero padded as on the real
  card and SELECT never returns FCI.
* Commands: SELECT (by FID, path or AID), READ BINARY, READ RECORD (1.8), GET CARD DATA,
  VERIFY (with the Lc=0 status probe), CHANGE REFERENCE DATA, MSE SET, PSO:CDS, INTERNAL
  AUTHENTICATE (1.8), LOG OFF and GET RESPONSE, with the card's status words.
* Security: one PIN (reference 01, 3 tries). Key 82 is "PIN once", key 83 is "PIN just
  before" (1.7: no command in between; 1.8: at most one, not VERIFY/PSO/LOG OFF). After a
  signature with key 83 an authentication signature needs a new VERIFY (the "mixed"
  rule). A wrong PIN clears every access right.

Signatures are real (``cryptography``) and verify against the certificates in
:class:`BeidCardData`, which :func:`eid_emulator.pki.make_card_data` builds.

Tests can inject faults through :attr:`BeidCard.faults` (see :class:`CardFaults`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from agent.smartcard.tlv import encode_ber
from eid_emulator.iso7816 import SW_OK, Apdu, CardError, CardFaults, FaultAction, FaultRule, Node
from eid_emulator.iso7816 import sw_bytes as _sw
from eid_emulator.iso_card import IsoCard
from eid_emulator.signing import DIGEST_INFO_PREFIX, PrivateKey, ecdsa_raw
from eid_emulator.signing import EC_PREHASH as _EC_PREHASH
from eid_emulator.signing import rsa_pkcs1_raw as _rsa_pkcs1_raw

logger = logging.getLogger(__name__)

__all__ = [
    "APPLET_AID",
    "BELPIC_AID",
    "ID_AID",
    "ATR_1_7",
    "ATR_1_8",
    "PROFILES",
    "AppletProfile",
    "BeidCard",
    "BeidCardData",
    "CardError",
    "CardFaults",
    "FaultAction",
    "FaultRule",
    "PrivateKey",
    "build_files",
    "data_signature_file",
    "ecdsa_raw",
    "pin_block",
]

APPLET_AID = bytes.fromhex("A00000003029057000AD13100101FF")
BELPIC_AID = bytes.fromhex("A000000177504B43532D3135")
ID_AID = bytes.fromhex("A0000001774964466C6573")
ATR_1_8 = bytes.fromhex("3B7F96000080318065B085040120120FFF829000")
ATR_1_7 = bytes.fromhex("3B9813400AA503010101AD1311")

PIN_REFERENCE = 0x01
PIN_MAX_TRIES = 3
ADDRESS_FILE_SIZE = 117
INTERNAL_AUTH_LIMIT = 5000
# EC data-signature files (SGN#ID, SGN#Address) are fixed-length: a DER ECDSA signature
# then zero padding. The length is not given in the sources; 104 is the longest DER
# encoding of a P-384 signature.
EC_SIGNATURE_FILE_SIZE = 104


# --------------------------------------------------------------------------- card data


@dataclass(frozen=True)
class BeidCardData:
    """Everything personalised on one card (contents before the card's own padding).

    Certificates are DER. ``sign_cert``/``sign_key`` are ``None`` on cards without a
    non-repudiation certificate (kids cards, young citizens): file 5039 is then all zeros
    and the CDF omits it. ``identity`` is the full EF(ID#RN) 4031 content, ``address``
    the address TLV without padding, the signatures are the raw signature values.
    ``basic_key`` is key 81 (its public key is file 4040 on 1.8; SHA-384 of that file is
    identity tag 0x1A).
    """

    chip_serial: bytes
    auth_key: PrivateKey
    auth_cert: bytes
    sign_key: PrivateKey | None
    sign_cert: bytes | None
    ca_cert: bytes
    root_cert: bytes
    rrn_cert: bytes
    basic_key: PrivateKey
    identity: bytes
    identity_signature: bytes
    address: bytes
    address_signature: bytes
    photo: bytes
    pin: str = "1234"
    token_versions: bytes = b"\x03\x02\x00\x00"

    def __post_init__(self) -> None:
        if len(self.chip_serial) != 16:
            raise ValueError("the chip serial number is 16 bytes")
        if len(self.token_versions) != 4:
            raise ValueError("token_versions is 4 bytes")
        pin_block(self.pin)  # validates


def basic_public_key_file(key: PrivateKey) -> bytes:
    """File 4040: the DER SubjectPublicKeyInfo of the basic (card) key."""
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --------------------------------------------------------------------------- PIN blocks


def pin_block(pin: str) -> bytes:
    """The 8-byte "format 2" PIN block: ``2L`` then BCD digits padded with F."""
    if not pin.isdigit() or not 4 <= len(pin) <= 12 or not pin.isascii():
        raise ValueError("a BELPIC PIN is 4 to 12 digits")
    nibbles = pin + "F" * (14 - len(pin))
    return bytes([0x20 | len(pin)]) + bytes.fromhex(nibbles)


def _parse_pin_block(block: bytes) -> str | None:
    """The PIN in a format-2 block, or None when the block is malformed."""
    if len(block) != 8 or block[0] >> 4 != 2:
        return None
    length = block[0] & 0x0F
    if not 4 <= length <= 12:
        return None
    nibbles = block[1:].hex().upper()
    digits, pad = nibbles[:length], nibbles[length:]
    if not digits.isdigit() or set(pad) - {"F"}:
        return None
    return digits


# --------------------------------------------------------------------------- DER helpers


def _seq(*items: bytes) -> bytes:
    return encode_ber(0x30, b"".join(items))


def _path(path: bytes) -> bytes:
    return _seq(encode_ber(0x04, path))


def _utf8(text: str) -> bytes:
    return encode_ber(0x0C, text.encode())


def _int(value: int) -> bytes:
    return encode_ber(0x02, value.to_bytes((value.bit_length() + 8) // 8 or 1, "big"))


FLAGS_PRIVATE_MODIFIABLE = encode_ber(0x03, b"\x06\xc0")
AUTH_ID = encode_ber(0x04, b"\x01")
USAGE_SIGN = encode_ber(0x03, b"\x05\x20")
USAGE_NON_REPUDIATION = encode_ber(0x03, b"\x06\x00\x40")
ACCESS_FLAGS = encode_ber(0x03, b"\x03\xb8")  # sensitive, alwaysSensitive, neverExtractable, local
DF_BELPIC_PATH = bytes.fromhex("3F00DF00")


def _dir_file() -> bytes:
    return encode_ber(
        0x61,
        encode_ber(0x4F, BELPIC_AID)
        + encode_ber(0x50, b"BELPIC")
        + encode_ber(0x51, DF_BELPIC_PATH)
        + encode_ber(0x73, encode_ber(0x06, bytes.fromhex("603802"))),
    )


def _odf() -> bytes:
    return (
        encode_ber(0xA0, _path(DF_BELPIC_PATH + b"\x50\x35"))
        + encode_ber(0xA4, _path(DF_BELPIC_PATH + b"\x50\x37"))
        + encode_ber(0xA8, _path(DF_BELPIC_PATH + b"\x50\x34"))
    )


def _token_info(serial: bytes, versions: bytes) -> bytes:
    return _seq(
        encode_ber(0x02, b"\x00"),
        encode_ber(0x04, serial),
        encode_ber(0x80, b"BELPIC"),
        encode_ber(0x03, b"\x04\x30"),  # prnGeneration, eidCompliant
        encode_ber(0x9E, versions),
    )


def _aodf() -> bytes:
    pin_attrs = _seq(
        encode_ber(0x03, b"\x02\x0c"),  # initialized, needs-padding
        encode_ber(0x0A, b"\x00"),  # bcd (the card really takes format 2 blocks)
        _int(4),
        _int(8),
        encode_ber(0x80, bytes([PIN_REFERENCE])),
        encode_ber(0x04, b"\xff"),
        _path(b"\x3f\x00"),
    )
    return _seq(
        _seq(_utf8("Basic PIN"), FLAGS_PRIVATE_MODIFIABLE),
        _seq(encode_ber(0x04, bytes([PIN_REFERENCE]))),
        encode_ber(0xA1, pin_attrs),
    )


def _prkdf(profile: AppletProfile) -> bytes:
    entries = []
    for label, key_id, usage, key_ref, consent in (
        ("Authentication", 2, USAGE_SIGN, 0x82, False),
        ("Signature", 3, USAGE_NON_REPUDIATION, 0x83, True),
    ):
        common = _utf8(label) + FLAGS_PRIVATE_MODIFIABLE + AUTH_ID
        if consent:
            common += _int(1)  # userConsent
        key_attrs = _seq(encode_ber(0x04, bytes([key_id])), usage, ACCESS_FLAGS, _int(key_ref))
        type_attrs = encode_ber(0xA1, _seq(_path(DF_BELPIC_PATH), _int(profile.key_bits)))
        body = _seq(common) + key_attrs + type_attrs
        entries.append(encode_ber(profile.prkdf_tag, body))
    return b"".join(entries)


def _cdf(with_signing_cert: bool) -> tuple[bytes, int]:
    """The CDF and its fixed size (the size with all four entries)."""
    entries = []
    for label, cert_id, fid, authority in (
        ("Authentication", 2, 0x5038, False),
        ("Signature", 3, 0x5039, False),
        ("CA", 4, 0x503A, True),
        ("Root", 6, 0x503B, True),
    ):
        cert_attrs = encode_ber(0x04, bytes([cert_id]))
        if authority:
            cert_attrs += encode_ber(0x01, b"\xff")
        path = _path(DF_BELPIC_PATH + fid.to_bytes(2, "big"))
        entries.append(
            (
                fid,
                _seq(
                    _seq(_utf8(label), FLAGS_PRIVATE_MODIFIABLE, AUTH_ID),
                    _seq(cert_attrs),
                    encode_ber(0xA1, _seq(path)),
                ),
            )
        )
    full = sum(len(e) for _, e in entries)
    content = b"".join(e for fid, e in entries if with_signing_cert or fid != 0x5039)
    return content, full


# --------------------------------------------------------------------------- algorithms


class KeyKind(enum.Enum):
    RSA = "rsa"
    EC = "ec"


@dataclass(frozen=True)
class Algorithm:
    """One MSE SET algorithm reference: the DTBS lengths it accepts and how it signs."""

    name: str
    dtbs_lengths: frozenset[int] | None  # None: 1 to max_dtbs (RSA with DigestInfo)
    sign: Callable[[PrivateKey, bytes], bytes]
    max_dtbs: int = 0

    def accepts(self, dtbs: bytes) -> bool:
        if self.dtbs_lengths is None:
            return 0 < len(dtbs) <= self.max_dtbs
        return len(dtbs) in self.dtbs_lengths


def _rsa_pkcs1_hash(name: str) -> Callable[[PrivateKey, bytes], bytes]:
    prefix = DIGEST_INFO_PREFIX[name]
    return lambda key, digest: _rsa_pkcs1_raw(key, prefix + digest)


def _rsa_pss(hash_alg: hashes.HashAlgorithm) -> Callable[[PrivateKey, bytes], bytes]:
    def sign(key: PrivateKey, digest: bytes) -> bytes:
        assert isinstance(key, rsa.RSAPrivateKey)
        pss = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
        return key.sign(digest, pss, Prehashed(hash_alg))

    return sign


RSA_ALGORITHMS: Mapping[int, Algorithm] = {
    0x01: Algorithm("RSASSA-PKCS1-v1_5 (DigestInfo)", None, _rsa_pkcs1_raw, max_dtbs=245),
    0x02: Algorithm("RSASSA-PKCS1-v1_5 SHA-1", frozenset({20}), _rsa_pkcs1_hash("sha1")),
    0x04: Algorithm("RSASSA-PKCS1-v1_5 MD5", frozenset({16}), _rsa_pkcs1_hash("md5")),
    0x08: Algorithm("RSASSA-PKCS1-v1_5 SHA-256", frozenset({32}), _rsa_pkcs1_hash("sha256")),
    0x10: Algorithm("RSASSA-PSS SHA-1", frozenset({20}), _rsa_pss(hashes.SHA1())),  # noqa: S303
    0x20: Algorithm("RSASSA-PSS SHA-256", frozenset({32}), _rsa_pss(hashes.SHA256())),
}

EC_ALGORITHMS: Mapping[int, Algorithm] = {
    0x01: Algorithm("ECDSA SHA-256", frozenset({32}), ecdsa_raw),
    0x02: Algorithm("ECDSA SHA-384", frozenset({48}), ecdsa_raw),
    0x04: Algorithm("ECDSA SHA-512", frozenset({64}), ecdsa_raw),
    0x08: Algorithm("ECDSA SHA3-256", frozenset({32}), ecdsa_raw),
    0x10: Algorithm("ECDSA SHA3-384", frozenset({48}), ecdsa_raw),
    0x20: Algorithm("ECDSA SHA3-512", frozenset({64}), ecdsa_raw),
    0x40: Algorithm("ECDSA (hash not specified)", frozenset(_EC_PREHASH), ecdsa_raw),
}


# --------------------------------------------------------------------------- applet table


@dataclass(frozen=True)
class AppletProfile:
    """What differs between applet 1.7 and 1.8."""

    version: str
    atr: bytes
    applet_byte: int
    key_kind: KeyKind
    key_bits: int
    prkdf_tag: int
    card_data_tail: bytes  # GET CARD DATA bytes 16..27 except the applet version at 21
    cert_padding: int
    empty_cert_size: int
    algorithms: Mapping[int, Algorithm]
    max_between_verify_and_nonrep: int
    has_read_record: bool
    has_internal_authenticate: bool
    get_card_data_p2: frozenset[int]


PROFILES: Mapping[str, AppletProfile] = {
    "1.7": AppletProfile(
        version="1.7",
        atr=ATR_1_7,
        applet_byte=0x17,
        key_kind=KeyKind.RSA,
        key_bits=2048,
        prkdf_tag=0x30,
        # component F3, OS 36 v01, softmask 25 v01, [applet], global OS 0003,
        # interface 00, PKCS#1 v2.1 (0x21), key exchange 01, life cycle 0F
        card_data_tail=bytes.fromhex("F3360125011700030021010F"),
        cert_padding=50,
        empty_cert_size=1300,
        algorithms=RSA_ALGORITHMS,
        max_between_verify_and_nonrep=0,
        has_read_record=False,
        has_internal_authenticate=False,
        get_card_data_p2=frozenset({0x00}),
    ),
    "1.8": AppletProfile(
        version="1.8",
        atr=ATR_1_8,
        applet_byte=0x18,
        key_kind=KeyKind.EC,
        key_bits=384,
        prkdf_tag=0xA0,
        card_data_tail=bytes.fromhex("F3360125011800010000020F"),
        cert_padding=1100,
        empty_cert_size=2500,
        algorithms=EC_ALGORITHMS,
        max_between_verify_and_nonrep=1,
        has_read_record=True,
        has_internal_authenticate=True,
        get_card_data_p2=frozenset({0x00, 0x01}),
    ),
}


# --------------------------------------------------------------------------- file system


def _pad(content: bytes, size: int) -> bytes:
    return content + bytes(max(0, size - len(content)))


def _cert_file(der: bytes | None, profile: AppletProfile) -> bytes:
    if der is None:
        return bytes(profile.empty_cert_size)
    return der + bytes(profile.cert_padding)


def data_signature_file(signature: bytes) -> bytes:
    """EF(SGN#ID)/EF(SGN#Address) content: EC (DER) signatures are zero padded."""
    if signature[:1] == b"\x30":  # DER ECDSA: fixed-length file, zero padded
        return _pad(signature, EC_SIGNATURE_FILE_SIZE)
    return signature


def build_files(profile: AppletProfile, data: BeidCardData) -> dict[tuple[int, ...], bytes]:
    """Every EF of the card, by full path (FIDs from 3F00), with the card's padding."""
    cdf, cdf_size = _cdf(data.sign_cert is not None)
    belpic = (0x3F00, 0xDF00)
    ident = (0x3F00, 0xDF01)
    files: dict[tuple[int, ...], bytes] = {
        (0x3F00, 0x2F00): _dir_file(),
        belpic + (0x5031,): _odf(),
        belpic + (0x5032,): _token_info(data.chip_serial, data.token_versions),
        belpic + (0x5034,): _aodf(),
        belpic + (0x5035,): _prkdf(profile),
        belpic + (0x5037,): _pad(cdf, cdf_size),
        belpic + (0x5038,): _cert_file(data.auth_cert, profile),
        belpic + (0x5039,): _cert_file(data.sign_cert, profile),
        belpic + (0x503A,): _cert_file(data.ca_cert, profile),
        belpic + (0x503B,): _cert_file(data.root_cert, profile),
        belpic + (0x503C,): _cert_file(data.rrn_cert, profile),
        ident + (0x4031,): data.identity,
        ident + (0x4032,): data_signature_file(data.identity_signature),
        ident + (0x4033,): _pad(data.address, ADDRESS_FILE_SIZE),
        ident + (0x4034,): data_signature_file(data.address_signature),
        ident + (0x4035,): data.photo,
    }
    if profile.version == "1.7":
        # PuK#7 (role key; 20 bytes on the VSCB test card) and the Preferences file.
        files[ident + (0x4038,)] = bytes(20)
        files[ident + (0x4039,)] = bytes(100)
    else:
        files[ident + (0x4040,)] = basic_public_key_file(data.basic_key)
    return files


def _build_tree(files: Mapping[tuple[int, ...], bytes]) -> Node:
    mf = Node(0x3F00)
    mf.add(Node(0xDF00, aid=BELPIC_AID))
    mf.add(Node(0xDF01, aid=ID_AID))
    for path, content in files.items():
        parent = mf
        for fid in path[1:-1]:
            found = parent.child(fid)
            assert found is not None
            parent = found
        parent.add(Node(path[-1], content=content))
    return mf


# --------------------------------------------------------------------------- the card


INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_READ_RECORD = 0xB2
INS_GET_CARD_DATA = 0xE4
INS_VERIFY = 0x20
INS_CHANGE = 0x24
INS_MSE = 0x22
INS_PSO = 0x2A
INS_INTERNAL_AUTH = 0x88
INS_LOG_OFF = 0xE6
INS_GET_RESPONSE = 0xC0

# Commands that may not come between VERIFY and a key-83 signature on 1.8.
_NONREP_FORBIDDEN_BETWEEN = frozenset({INS_VERIFY, INS_PSO, INS_LOG_OFF, INS_CHANGE})


class BeidCard(IsoCard):
    """A Belgian eID card with applet 1.7 or 1.8 (see the module docstring).

    Attributes a test may look at: :attr:`faults`, :attr:`tries_left`, :attr:`commands`
    (every command APDU received), :attr:`files` (EF contents by path).
    """

    def __init__(self, applet: str = "1.8", data: BeidCardData | None = None) -> None:
        if applet not in PROFILES:
            raise ValueError(f"unknown applet {applet!r}; known: {sorted(PROFILES)}")
        if data is None:
            raise ValueError("BeidCard needs BeidCardData (see eid_emulator.pki)")
        self.profile = PROFILES[applet]
        self.data = data
        self._check_keys()
        self.files = build_files(self.profile, data)
        self._pin = data.pin
        self.tries_left = PIN_MAX_TRIES
        self.internal_auth_count = 0
        super().__init__(self.profile.atr, _build_tree(self.files))
        self._handlers = {
            INS_SELECT: (0x00, self._select),
            INS_READ_BINARY: (0x00, self._read_binary),
            INS_GET_RESPONSE: (0x00, self._get_response),
            INS_VERIFY: (0x00, self._verify),
            INS_CHANGE: (0x00, self._change_pin),
            INS_MSE: (0x00, self._mse_set),
            INS_PSO: (0x00, self._pso),
            INS_GET_CARD_DATA: (0x80, self._get_card_data),
            INS_LOG_OFF: (0x80, self._log_off),
        }
        if self.profile.has_read_record:
            self._handlers[INS_READ_RECORD] = (0x80, self._read_record)
        if self.profile.has_internal_authenticate:
            self._handlers[INS_INTERNAL_AUTH] = (0x00, self._internal_authenticate)

    # ---- state

    def _reset_security(self) -> None:
        self._verified = False
        self._since_verify: list[int] = []  # INS of commands after the last good VERIFY
        self._se: tuple[int, int] | None = None  # (algorithm, key reference)

    @property
    def pin_verified(self) -> bool:
        return self._verified

    def _check_keys(self) -> None:
        kind = rsa.RSAPrivateKey if self.profile.key_kind is KeyKind.RSA else (
            ec.EllipticCurvePrivateKey)
        for name in ("auth_key", "sign_key", "basic_key"):
            key = getattr(self.data, name)
            if key is not None and not isinstance(key, kind):
                raise ValueError(f"applet {self.profile.version} needs {kind.__name__} {name}")

    def _clear_access(self) -> None:
        self._verified = False
        self._since_verify = []

    # ---- dispatch (the loop, faults and the command log: IsoCard)

    classes = frozenset({0x00, 0x80})

    def _note(self, ins: int) -> None:
        # Counted for the "PIN just before" rule; a successful VERIFY empties the list.
        self._since_verify.append(ins)

    def _respond(self, data: bytes) -> bytes:
        """Data for a case-4 command: ``61xx`` and the data kept for GET RESPONSE."""
        self._pending = data
        return _sw(0x6100 | (min(len(data), 256) & 0xFF))

    # ---- SELECT

    def _select(self, apdu: Apdu) -> bytes:
        if apdu.p2 not in (0x00, 0x0C):
            raise CardError(0x6A86)
        if apdu.p1 == 0x02:
            target = self._select_fid(apdu.data)
        elif apdu.p1 == 0x08:
            target = self._select_path(apdu.data)
        elif apdu.p1 == 0x04:
            target = self._select_aid(apdu.data)
        else:
            raise CardError(0x6A86)
        self._current = target
        return _sw(SW_OK)

    def _current_df(self) -> Node:
        return self.current_df()

    def _select_fid(self, data: bytes) -> Node:
        if len(data) != 2:
            raise CardError(0x6A87)
        fid = int.from_bytes(data, "big")
        if fid == 0x3F00:
            return self._mf
        df = self._current_df()
        if df.fid == fid:
            return df
        found = df.child(fid)
        if found is None and df.parent is not None:
            sibling = df.parent.child(fid)  # DF00 <-> DF01 ("looser than ISO")
            found = sibling if sibling is not None and sibling.is_df else None
        if found is None:
            raise CardError(0x6A82)
        return found

    def _select_path(self, data: bytes) -> Node:
        if not data or len(data) % 2:
            raise CardError(0x6A87)
        fids = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
        if fids[0] == 0x3F00:
            fids = fids[1:]
        node = self._mf
        for fid in fids:
            child = node.child(fid) if node.is_df else None
            if child is None:
                raise CardError(0x6A82)
            node = child
        return node

    def _select_aid(self, data: bytes) -> Node:
        if not 5 <= len(data) <= 16:
            raise CardError(0x6A87)
        if data.startswith(APPLET_AID):
            return self._mf
        for node in self._mf.walk():
            if node.aid is not None and data.startswith(node.aid):
                return node
        raise CardError(0x6A82)

    # ---- READ BINARY / READ RECORD / GET RESPONSE

    def _current_ef(self) -> Node:
        if self._current.is_df:
            raise CardError(0x6986)
        return self._current

    def _read_binary(self, apdu: Apdu) -> bytes:
        if apdu.p1 & 0x80:
            raise CardError(0x6B00)  # no short EF identifiers
        content = self._current_ef().content or b""
        offset = apdu.p1 << 8 | apdu.p2
        le = apdu.le or 256
        if offset >= len(content):
            raise CardError(0x6B00)
        remaining = len(content) - offset
        if le > remaining:
            raise CardError(0x6C00 | remaining)
        return content[offset : offset + le] + _sw(SW_OK)

    def _read_record(self, apdu: Apdu) -> bytes:
        ef = self._current_ef()
        if ef.fid not in (0x4031, 0x4033):
            raise CardError(0x6981)
        if apdu.p2 < apdu.p1:
            raise CardError(0x6A83)
        records = [raw for tag, raw in _iter_tlv(ef.content or b"") if apdu.p1 <= tag <= apdu.p2]
        if not records:
            raise CardError(0x6A83)
        out = b"".join(records)
        le = apdu.le
        if le is None or le == 256:
            if len(out) <= 256:
                return out + _sw(SW_OK)
            self._pending = out[256:]
            return out[:256] + _sw(0x6100 | (min(len(self._pending), 256) & 0xFF))
        if le != len(out):
            raise CardError(0x6C00 | (len(out) & 0xFF))
        return out + _sw(SW_OK)

    def _get_response(self, apdu: Apdu) -> bytes:
        if not self._pending:
            raise CardError(0x6985)
        if (apdu.p1, apdu.p2) != (0, 0):
            raise CardError(0x6B00)
        le = apdu.le or 256
        if le > len(self._pending):
            raise CardError(0x6C00 | (len(self._pending) & 0xFF))
        out, self._pending = self._pending[:le], self._pending[le:]
        if self._pending:
            return out + _sw(0x6100 | (min(len(self._pending), 256) & 0xFF))
        return out + _sw(SW_OK)

    # ---- GET CARD DATA / LOG OFF

    def card_data(self, p2: int = 0) -> bytes:
        tail = bytearray(self.profile.card_data_tail)
        tail[5] = self.profile.applet_byte
        out = self.data.chip_serial + bytes(tail)
        if p2 == 0x01:
            out += bytes([self.tries_left]) + b"\xff\xff"
        return out

    def _get_card_data(self, apdu: Apdu) -> bytes:
        if apdu.p1 != 0 or apdu.p2 not in self.profile.get_card_data_p2:
            raise CardError(0x6B00)
        out = self.card_data(apdu.p2)
        if apdu.le != len(out):
            raise CardError(0x6C00 | len(out))
        return out + _sw(SW_OK)

    def _log_off(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0, 0):
            raise CardError(0x6B00)
        self._clear_access()
        return _sw(SW_OK)

    # ---- PIN

    def _pin_reference(self, apdu: Apdu) -> None:
        if apdu.p1 != 0:
            raise CardError(0x6A86)
        if apdu.p2 != PIN_REFERENCE:
            raise CardError(0x6A88)

    def _tries_sw(self) -> int:
        return 0x6983 if self.tries_left == 0 else 0x63C0 | self.tries_left

    def _wrong_pin(self) -> bytes:
        self.tries_left = max(0, self.tries_left - 1)
        self._clear_access()
        return _sw(self._tries_sw())

    def _pin_ok(self) -> None:
        self.tries_left = PIN_MAX_TRIES
        self._verified = True
        self._since_verify = []

    def _verify(self, apdu: Apdu) -> bytes:
        self._pin_reference(apdu)
        if not apdu.has_lc:
            # Status probe: no try is spent.
            if self.tries_left == 0:
                return _sw(0x6983)
            return _sw(SW_OK if self._verified else self._tries_sw())
        if len(apdu.data) != 8:
            raise CardError(0x6700)
        if self.tries_left == 0:
            raise CardError(0x6983)
        pin = _parse_pin_block(apdu.data)
        if pin is None:
            raise CardError(0x6A80)
        if pin != self._pin:
            return self._wrong_pin()
        self._pin_ok()
        return _sw(SW_OK)

    def _change_pin(self, apdu: Apdu) -> bytes:
        self._pin_reference(apdu)
        if len(apdu.data) != 16:
            raise CardError(0x6700)
        if self.tries_left == 0:
            raise CardError(0x6983)
        old, new = _parse_pin_block(apdu.data[:8]), _parse_pin_block(apdu.data[8:])
        if old is None or new is None:
            raise CardError(0x6A80)
        if old != self._pin:
            return self._wrong_pin()
        self._pin = new
        self._pin_ok()
        return _sw(SW_OK)

    @property
    def pin(self) -> str:
        """The current PIN (after CHANGE REFERENCE DATA, the new one)."""
        return self._pin

    # ---- signing

    def _mse_set(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0x41, 0xB6):
            raise CardError(0x6B00)
        data = apdu.data
        if len(data) != 5:
            raise CardError(0x6700)
        if data[0] != 0x04 or data[1] != 0x80 or data[3] != 0x84:
            raise CardError(0x6A80)
        algorithm, key_ref = data[2], data[4]
        if algorithm not in self.profile.algorithms:
            raise CardError(0x6A80)
        if key_ref not in (0x82, 0x83):
            raise CardError(0x6A88)
        if self._current_df().fid != 0xDF00:
            # eid-mw: the BELPIC DF must be current for MSE SET (applet >= 1.7); the keys
            # belong to DF00 (PrKDF), so elsewhere the key is not found.
            raise CardError(0x6A88)
        if key_ref == 0x83 and self.data.sign_key is None:
            raise CardError(0x6A88)
        self._se = (algorithm, key_ref)
        return _sw(SW_OK)

    def _nonrep_allowed(self) -> bool:
        between = self._since_verify[:-1]  # the PSO itself is the last entry
        if len(between) > self.profile.max_between_verify_and_nonrep:
            return False
        return not any(ins in _NONREP_FORBIDDEN_BETWEEN for ins in between)

    def _pso(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0x9E, 0x9A):
            raise CardError(0x6A86)
        if self._se is None:
            raise CardError(0x6985)
        algorithm_ref, key_ref = self._se
        if not self._verified or (key_ref == 0x83 and not self._nonrep_allowed()):
            raise CardError(0x6982)
        algorithm = self.profile.algorithms[algorithm_ref]
        if not apdu.data or not algorithm.accepts(apdu.data):
            raise CardError(0x6700)
        key = self.data.auth_key if key_ref == 0x82 else self.data.sign_key
        assert key is not None
        signature = algorithm.sign(key, apdu.data)
        if key_ref == 0x83:
            self._clear_access()  # "PIN just before", and the mixed rule for key 82
        logger.debug("signed with key %02X, %s", key_ref, algorithm.name)
        return self._respond(signature)

    def _internal_authenticate(self, apdu: Apdu) -> bytes:
        lengths = {0x01: 32, 0x02: 48, 0x04: 64}
        if apdu.p1 not in lengths:
            raise CardError(0x6A86)
        if apdu.p2 != 0x81:
            raise CardError(0x6A88)
        data = apdu.data
        if len(data) < 2 or data[0] != 0x94 or data[1] != len(data) - 2:
            raise CardError(0x6A80)
        if data[1] != lengths[apdu.p1]:
            raise CardError(0x6700)
        if self.internal_auth_count >= INTERNAL_AUTH_LIMIT and not self._verified:
            raise CardError(0x6985)
        self.internal_auth_count += 1
        signature = ecdsa_raw(self.data.basic_key, data[2:])
        self._se = None
        return self._respond(signature)


def _iter_tlv(content: bytes) -> Iterator[tuple[int, bytes]]:
    """(tag, raw TLV) of a BELPIC identity/address file (FF-run long lengths)."""
    i = 0
    while i < len(content):
        start, tag = i, content[i]
        i += 1
        length = 0
        while i < len(content) and content[i] == 0xFF:
            length += 255
            i += 1
        if i >= len(content):
            return
        length += content[i]
        i += 1
        if tag == 0 and length == 0 and start > 0:
            return  # zero padding
        yield tag, content[start : i + length]
        i += length
