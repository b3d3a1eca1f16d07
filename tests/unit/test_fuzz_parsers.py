"""Hypothesis on the card-response parsers: BER-TLV and the Belgian simple TLV
(``agent/smartcard/tlv.py``), certificate trimming (``trim_der`` and the driver's certificate read
through a card that answers arbitrary file contents), GET CARD DATA (``CardData.parse``)
and identity/address parsing (``agent/cards/beid_identity.py``).

Property: whatever bytes a card answers, the parsers return a value or raise the typed
``BadResponseError`` (the driver: an ``AgentError``), never anything else, and what they
return serialises to JSON. The number of examples per test comes from the Hypothesis
profile (``EID_FUZZ_PROFILE=long`` selects the long one, see bench/fuzz_profiles.py).
"""

from __future__ import annotations

import json

import pytest
from eid_emulator.base import VirtualCard, VirtualConnection
from hypothesis import example, given
from hypothesis import strategies as st

from agent.cards.base import KeyRole
from agent.cards.beid import CardData, open_session
from agent.cards.beid_identity import Address, BeidIdentity, Identity, parse_birth_date
from agent.cards.common import CertificateCache
from agent.errors import AgentError, BadResponseError
from agent.smartcard.certinfo import holder_name
from agent.smartcard.tlv import (
    der_length,
    encode_ber,
    encode_simple_tlv,
    iter_ber,
    parse_ber_header,
    parse_simple_tlv,
    trim_der,
)
from agent.ws.identity import identity_json
from bench.fuzz_profiles import load_profile

load_profile()

# ------------------------------------------------------------------------------ BER


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=310))
def test_ber_header_raises_only_bad_response(data: bytes, offset: int) -> None:
    try:
        tag, length, header = parse_ber_header(data, offset)
    except BadResponseError:
        return
    assert header >= 2 and length >= 0 and tag >= 0
    assert offset + header <= len(data)


@given(st.binary(max_size=600))
def test_iter_ber_and_trim_der_raise_only_bad_response(data: bytes) -> None:
    try:
        items = list(iter_ber(data))
    except BadResponseError:
        items = None
    if items is not None:
        assert sum(len(value) for _tag, value in items) <= len(data)
    try:
        trimmed = trim_der(data)
    except BadResponseError:
        return
    assert data.startswith(trimmed) and len(trimmed) == der_length(data)


@given(st.binary(max_size=1200), st.integers(min_value=0, max_value=300))
def test_trim_der_removes_exactly_the_padding(value: bytes, padding: int) -> None:
    der = encode_ber(0x30, value)
    assert trim_der(der + b"\x00" * padding) == der
    assert der_length(der) == len(der)


# ------------------------------------------------------------------------------ simple TLV


@given(st.binary(max_size=600))
@example(b"\x01\xff")  # truncated long length
@example(b"\x01\xff\xff\xff")
def test_simple_tlv_raises_only_bad_response(data: bytes) -> None:
    try:
        items = parse_simple_tlv(data)
    except BadResponseError:
        return
    assert all(0 <= tag <= 0xFF for tag, _ in items)


simple_items = st.lists(
    st.tuples(st.integers(min_value=1, max_value=0xFF), st.binary(max_size=700)),
    max_size=12, unique_by=lambda item: item[0],
).map(lambda items: sorted(items))


@given(simple_items, st.integers(min_value=0, max_value=64))
def test_simple_tlv_round_trip_with_padding(items: list[tuple[int, bytes]], padding: int) -> None:
    data = b"".join(encode_simple_tlv(tag, value) for tag, value in items) + b"\x00" * padding
    assert parse_simple_tlv(data) == items


# ------------------------------------------------------------------------------ GET CARD DATA


@given(st.binary(max_size=40))
def test_card_data_parse(data: bytes) -> None:
    try:
        parsed = CardData.parse(data)
    except BadResponseError:
        assert len(data) < 28
        return
    assert parsed.serial == data[:16] and len(parsed.serial_hex) == 32
    assert parsed.applet_label.count(".") == 1


# ------------------------------------------------------------------------------ identity

texts = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda s: s.encode("utf-8")),
    st.sampled_from([b"01 JAN 1980", b"31.FEB.2001", b"   1980", b"29 FEV 2000", b"00.00.0000",
                     b"12.12.12", b"M", b"V", b"W", b"1", b"19", b"99999999999999999999",
                     b"\xff\xfe", b"01.13.2020", b"31.04.2021", b"\x00\x00"]),
)
identity_items = st.lists(
    st.tuples(st.integers(min_value=0, max_value=0x25), texts), max_size=25,
    unique_by=lambda item: item[0],
).map(lambda items: sorted(items))


def _assert_json(obj: object) -> None:
    json.dumps(obj, allow_nan=False)


@given(st.one_of(st.binary(max_size=400),
                 identity_items.map(lambda items: b"".join(encode_simple_tlv(t, v) for t, v in items))))
def test_identity_and_address_parse(data: bytes) -> None:
    for parser in (Identity.parse, Address.parse):
        try:
            parsed = parser(data)
        except BadResponseError:
            continue
        _assert_json(identity_json(BeidIdentity(parsed, Address(), None))
                     if isinstance(parsed, Identity)
                     else identity_json(BeidIdentity(Identity(), parsed, None)))


@pytest.mark.parametrize("raw", ["²", "¹ JAN 1980", "01.³.1980", "01 ٣ 1980"])
def test_birth_date_with_non_ascii_digits(raw: str) -> None:
    """Found by fuzzing: "²".isdigit() is true but int("²") raises ValueError, which made
    Identity.parse crash (ERR_WEBEID_NATIVE_FATAL) on such a birth date."""
    day, month, _year = parse_birth_date(raw)
    assert day is None or day == 1
    assert month is None
    identity = Identity.parse(encode_simple_tlv(0x0C, raw.encode()) + encode_simple_tlv(0x0F, "²".encode()))
    assert identity.birth_date is None and identity.document_type is None


@given(st.text(max_size=30))
@example("01.MÄR.1980")
@example("²")
@example("99 ABC 0000")
def test_birth_date_parse(raw: str) -> None:
    day, month, year = parse_birth_date(raw)
    assert day is None or 1 <= day <= 31
    assert month is None or 1 <= month <= 12
    assert year is None or 0 <= year <= 9999


@given(st.binary(max_size=300))
def test_holder_name_from_garbage_certificate(data: bytes) -> None:
    assert holder_name(data) is None or isinstance(holder_name(data), str)


# ------------------------------------------------------------------------------ the driver


class GarbageFileCard(VirtualCard):
    """Answers SELECT and GET CARD DATA like a 1.7 card; every EF holds ``content``."""

    def __init__(self, content: bytes, card_data: bytes) -> None:
        self.content = content
        self.card_data = card_data

    @property
    def atr(self) -> bytes:
        return bytes.fromhex("3B9813400AA503010101AD1311")

    def process(self, apdu: bytes) -> bytes:
        ins = apdu[1]
        if ins == 0xA4:
            return b"\x90\x00"
        if ins == 0xE4:
            return self.card_data + b"\x90\x00"
        if ins == 0xB0:
            offset = apdu[2] << 8 | apdu[3]
            le = apdu[4] if len(apdu) > 4 else 0
            if offset >= len(self.content):
                return b"\x6b\x00"
            return self.content[offset: offset + (le or 256)] + b"\x90\x00"
        return b"\x6d\x00"


CARD_DATA_17 = bytes(16) + bytes([0x01, 0x01, 0x01, 0x01, 0x01, 0x17, 0x00, 0x01, 0x01,
                                  0x01, 0x01, 0x0F])


@given(st.one_of(
    st.binary(max_size=1200),
    st.binary(max_size=900).map(lambda v: encode_ber(0x30, v) + b"\x00" * 20),
    st.binary(max_size=900).map(lambda v: encode_ber(0x30, v)[:-5]),  # shorter than it claims
    st.binary(max_size=10).map(lambda v: b"\x30\x84\xff\xff\xff\xff" + v),
))
def test_certificate_read_of_arbitrary_files(content: bytes) -> None:
    connection = VirtualConnection(GarbageFileCard(content, CARD_DATA_17))
    try:
        session = open_session(connection, CertificateCache(), resend_delay=0)
    except AgentError:
        return
    auth = session.certificate(KeyRole.AUTHENTICATION)
    assert auth is None or (content.startswith(auth) and auth[0] == 0x30)
