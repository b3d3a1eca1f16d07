"""LOG OFF after every PIN use (issue 13): each driver's log_off() APDUs, the virtual cards
really dropping the security status, the reset fallback, and the core queueing LOG OFF after
the answer; on the real stack (pcscd + vpcd, the agent process), a second PC/SC client cannot
sign with the authentication key after ``authenticate``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from eid_emulator.backend import VirtualBackend
from eid_emulator.base import VirtualCard, VirtualConnection
from eid_emulator.beid import BeidCard
from eid_emulator.idemia import make_card as make_idemia_card
from eid_emulator.pki import Holder, TestPki, make_card_data
from eid_emulator.pki_other import OtherPki, make_pki
from eid_emulator.thales import make_card as make_thales_card

from agent.app.scripted import ScriptedInteraction
from agent.cards import idemia, thales
from agent.cards.base import CardSession, KeyRole
from agent.cards.beid import CertificateCache, PinRequiredError
from agent.cards.beid import open_session as beid_session
from agent.cards.twopin import log_off_pins
from agent.core.policy import MachinePolicy
from agent.smartcard.apdu import CardChannel, SmartCardConnection
from tests import core_support
from tests.agent_process import AgentProcess
from tests.conftest import READER_0
from tests.core_support import NONCE, ORIGIN, READER_A, make_config, verify_token
from tests.scripted import ScriptedConnection, Step

user_env = core_support.user_env
data18 = core_support.data18
pki = core_support.pki

LOG_OFF = "80E60000"
SW_SECURITY = 0x6982


@pytest.fixture(scope="module")
def pkis() -> Callable[[str], OtherPki]:
    made: dict[str, OtherPki] = {}

    def get(key: str) -> OtherPki:
        if key not in made:
            made[key] = make_pki(key)
        return made[key]

    return get


# (driver, emulator profile, PKI profile, PIN1 value)
TWO_PIN_CARDS = {
    "EE-IDEMIA": (idemia, "EE", "EE2018"),
    "LV-IDEMIA": (idemia, "LV", "LV-RSA"),
    "EE2025-Thales": (thales, "EE2025", "EE2025"),
    "FI3-Thales": (thales, "FI3", "FI3"),
}


def two_pin_card(pkis: Callable[[str], OtherPki], name: str) -> tuple[Any, VirtualCard]:
    driver, profile, pki_key = TWO_PIN_CARDS[name]
    make = make_idemia_card if driver is idemia else make_thales_card
    return driver, make(pkis(pki_key), profile)


def auth_digest(session: CardSession) -> tuple[bytes, str]:
    algorithm = session.signature_algorithms(KeyRole.AUTHENTICATION)[0]
    name = algorithm.hash_function
    return hashlib.new(name.replace("-", "").lower(), b"challenge").digest(), name


# --- the drivers' APDUs (scripted connection; the Belgian LOG OFF: test_beid_driver) -----


def test_two_pin_log_off_sends_verify_ff_per_pin_and_resets_when_refused() -> None:
    """The shared helper: ``00 20 FF <ref>`` (case 1) per PIN, in its DF; any refusal makes
    the driver ask for a card reset on release."""
    profile_pins = (idemia.PIN1,)
    selected: list[str] = []
    conn = ScriptedConnection([Step("0020FF01")])
    assert log_off_pins(CardChannel(conn), profile_pins, lambda pin: selected.append(pin.name))
    conn.assert_done()
    assert selected == ["PIN1"]
    refused = ScriptedConnection([Step("0020FF01", sw=0x6A86)])
    assert not log_off_pins(CardChannel(refused), profile_pins, lambda pin: None)
    refused.assert_done()


@pytest.mark.parametrize("name", sorted(TWO_PIN_CARDS))
def test_two_pin_driver_log_off_apdus(pkis: Callable[[str], OtherPki], name: str) -> None:
    """Each PIN of the card gets ``00 20 FF <ref>``, and nothing else but SELECTs."""
    driver, card = two_pin_card(pkis, name)
    session = driver.open_session(VirtualConnection(card), CertificateCache())
    start = len(card.commands)
    session.log_off()
    sent = [c.hex().upper() for c in card.commands[start:]]
    resets = [c for c in sent if c[2:4] == "20"]
    assert resets == [f"0020FF{pin.reference:02X}" for pin in session.info.pins]
    assert all(c[2:4] in ("20", "A4") for c in sent)  # VERIFY P1=FF and SELECTs only


class Recording(VirtualConnection):
    """Records the card's answers while a session opens, to script that part."""

    def __init__(self, card: VirtualCard) -> None:
        super().__init__(card)
        self.steps: list[Step] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        data, sw = super().send_and_receive(apdu)
        self.steps.append(Step(apdu, data, sw))
        return data, sw


def scripted_session(driver: Any, card: VirtualCard, log_off: list[Step]) -> tuple[
        ScriptedConnection, Any]:
    """A session over a scripted connection: the opening dialogue as the virtual card gave
    it, then ``log_off``, the steps under test, written out by hand."""
    recording = Recording(card)
    driver.open_session(recording, CertificateCache())
    conn = ScriptedConnection([*recording.steps, *log_off], atr=card.atr)
    return conn, driver.open_session(conn, CertificateCache())


MAIN = "00A4040C10A000000077010800070000FE00000100"  # IDEMIA main application
QSCD = "00A4040C1051534344204170706C69636174696F6E"  # IDEMIA ADF2 (PIN2 lives there)
PKCS15 = "00A4040C0CA000000063504B43532D3135"  # Thales application


def test_idemia_log_off_apdus_scripted(pkis: Callable[[str], OtherPki]) -> None:
    _driver, card = two_pin_card(pkis, "EE-IDEMIA")
    conn, session = scripted_session(idemia, card, [
        Step(MAIN), Step("0020FF01"),  # PIN1, global
        Step(MAIN), Step(QSCD), Step("0020FF85"),  # PIN2, in ADF2
        Step(MAIN), Step("0020FF02"),  # PUK, global
    ])
    session.log_off()
    conn.assert_done()
    assert not conn.reset_on_release


def test_idemia_log_off_refused_asks_for_a_reset(pkis: Callable[[str], OtherPki]) -> None:
    _driver, card = two_pin_card(pkis, "EE-IDEMIA")
    conn, session = scripted_session(idemia, card, [
        Step(MAIN), Step("0020FF01", sw=0x6A86),
        Step(MAIN), Step(QSCD), Step("0020FF85", sw=0x6A86),
        Step(MAIN), Step("0020FF02", sw=0x6A86),
    ])
    session.log_off()
    conn.assert_done()
    assert conn.reset_on_release


def test_thales_log_off_apdus_scripted(pkis: Callable[[str], OtherPki]) -> None:
    _driver, card = two_pin_card(pkis, "EE2025-Thales")
    refs = [pin.reference for pin in thales.PROFILES["EE2025"].pins]
    assert refs[:2] == [0x81, 0x82]  # PIN1, PIN2 (other-cards.md 3.3)
    conn, session = scripted_session(thales, card, [
        Step(PKCS15), *[Step(f"0020FF{ref:02X}") for ref in refs],
    ])
    session.log_off()
    conn.assert_done()
    assert not conn.reset_on_release


# --- the virtual cards drop the security status ----------------------------------------


def test_beid_card_forgets_the_pin_after_log_off(data18: Any) -> None:
    card = BeidCard("1.8", data18)
    session = beid_session(VirtualConnection(card), CertificateCache())
    digest = hashlib.sha384(b"challenge").digest()
    session.sign(KeyRole.AUTHENTICATION, digest, "SHA-384", "1234")
    session.sign(KeyRole.AUTHENTICATION, digest, "SHA-384", None)  # "PIN once": still in
    session.log_off()
    assert not card.pin_verified
    with pytest.raises(PinRequiredError):  # the card answered 6982
        session.sign(KeyRole.AUTHENTICATION, digest, "SHA-384", None)


@pytest.mark.parametrize("name", sorted(TWO_PIN_CARDS))
def test_two_pin_card_forgets_the_pin_after_log_off(pkis: Callable[[str], OtherPki],
                                                    name: str) -> None:
    driver, card = two_pin_card(pkis, name)
    session = driver.open_session(VirtualConnection(card), CertificateCache())
    digest, hash_function = auth_digest(session)
    pin1 = card.pin_value(session.pin_for(KeyRole.AUTHENTICATION).name)
    session.sign(KeyRole.AUTHENTICATION, digest, hash_function, pin1)
    session.sign(KeyRole.AUTHENTICATION, digest, hash_function, None)  # control: still in
    session.log_off()
    before = len(card.commands)
    with pytest.raises(PinRequiredError):  # the card answered 6982
        session.sign(KeyRole.AUTHENTICATION, digest, hash_function, None)
    assert card.commands[before:]  # the card was asked, and refused


@pytest.mark.parametrize("name", ["EE-IDEMIA", "EE2025-Thales"])
def test_card_without_verify_ff_is_reset_on_release(pkis: Callable[[str], OtherPki],
                                                    name: str) -> None:
    driver, card = two_pin_card(pkis, name)
    card.verify_resets_status = False  # type: ignore[attr-defined]
    connection = VirtualConnection(card)
    session = driver.open_session(connection, CertificateCache())
    digest, hash_function = auth_digest(session)
    pin1 = card.pin_value(session.pin_for(KeyRole.AUTHENTICATION).name)
    session.sign(KeyRole.AUTHENTICATION, digest, hash_function, pin1)
    session.log_off()
    assert connection.reset_on_release
    connection.close()  # the card is reset, as pcscd does for SCARD_RESET_CARD
    again = driver.open_session(VirtualConnection(card), CertificateCache())
    with pytest.raises(PinRequiredError):  # the card answered 6982
        again.sign(KeyRole.AUTHENTICATION, digest, hash_function, None)


# --- the core queues LOG OFF after the answer --------------------------------------------


def test_core_logs_off_after_authenticate(user_env: Any, data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> tuple[list[str], list[str]]:
        backend = VirtualBackend()
        backend.insert(READER_A, card).result()
        from agent.core import AgentService

        service = AgentService(
            backend, ScriptedInteraction({"pins": ["1234", "1234"]}),
            config=make_config(policy=MachinePolicy(allowed_origins=(ORIGIN,))),
            card_cache=CertificateCache(),
        )
        await service.start()
        try:
            client = service.open_client(ORIGIN)
            start = len(card.commands)
            token = await client.authenticate(NONCE)
            at_answer = [c[:4].hex().upper() for c in card.commands[start:]]
            verify_token(token, ORIGIN, NONCE)
            await service.cards.log_offs_done()
            after = [c[:4].hex().upper() for c in card.commands[start:]]
            assert not card.pin_verified
            return at_answer, after
        finally:
            await service.stop()

    at_answer, after = asyncio.run(scenario())
    assert LOG_OFF not in at_answer  # the answer did not wait for LOG OFF
    assert after[-1] == LOG_OFF and after.count(LOG_OFF) == 1


# --- the real stack: a second PC/SC client cannot use the key ----------------------------

PIN = "908172"


async def _rpc(url: str, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    async with websockets.connect(url, origin=ORIGIN) as ws:
        answers = []
        for number, (method, params) in enumerate(calls, 1):
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": number, "method": method,
                                      "params": params}))
            answers.append(json.loads(await ws.recv()))
        return answers


def _second_client_signs(reader: str, mse: bytes, pin_block: bytes | None) -> list[int]:
    """Another program on the same card (through PC/SC, not through the agent): MSE SET
    for the authentication key, optionally VERIFY, then PSO:CDS. Its status words."""
    from agent.pcsc import connect

    connection: SmartCardConnection = connect(reader)
    try:
        with connection.transaction():
            words = [connection.send_and_receive(mse)[1]]
            if pin_block is not None:
                verify = bytes.fromhex("00200001") + bytes([len(pin_block)]) + pin_block
                words.append(connection.send_and_receive(verify)[1])
            digest = hashlib.sha384(b"another program").digest()
            pso = bytes.fromhex("002A9E9A") + bytes([len(digest)]) + digest
            words.append(connection.send_and_receive(pso)[1])
            return words
    finally:
        connection.close()


@pytest.mark.pcsc
def test_after_authenticate_another_pcsc_client_cannot_sign(pcscd: Any, vpcd: Any,
                                                            tmp_path: Any) -> None:
    the_pki = TestPki.load_or_create(tmp_path / "pki")
    card = BeidCard("1.8", make_card_data(the_pki, Holder(pin=PIN), "1.8"))
    vpcd(card, slot=0)
    nonce = base64.b64encode(os.urandom(32)).decode()
    with AgentProcess(pcscd, tmp_path, {"pins": [PIN], "consents": []},
                      allow_origins=(ORIGIN,)) as agent:
        (answer,) = asyncio.run(_rpc(agent.url, [("authenticate", {"challengeNonce": nonce})]))
        assert "result" in answer, answer
        deadline = time.monotonic() + 10
        while LOG_OFF not in [c[:4].hex().upper() for c in card.commands]:
            assert time.monotonic() < deadline, "no LOG OFF reached the card"
            time.sleep(0.05)
        mse = next(c for c in card.commands if c[:4] == bytes.fromhex("002241B6")
                   and c.endswith(b"\x84\x82"))
        reader_name = READER_0
        # The agent logged the card off: the other program's signature is refused.
        assert _second_client_signs(reader_name, mse, None)[-1] == SW_SECURITY
        assert not card.pin_verified
        # Control: the same commands with the PIN do sign (the refusal above is the PIN's).
        from agent.cards.beid import encode_pin_block

        words = _second_client_signs(reader_name, mse, encode_pin_block(PIN))
        assert words[1] == 0x9000 and (words[2] == 0x9000 or words[2] >> 8 == 0x61)


@pytest.mark.pcsc
def test_refused_log_off_resets_the_card_through_pcscd(pcscd: Any, vpcd: Any,
                                                        pkis: Callable[[str], OtherPki]) -> None:
    """A card that does not confirm VERIFY P1=FF: the PC/SC connection leaves it with
    SCARD_RESET_CARD, and pcscd resets it (the virtual card forgets PIN1)."""
    from agent.pcsc import connect

    driver, card = two_pin_card(pkis, "EE-IDEMIA")
    card.verify_resets_status = False  # type: ignore[attr-defined]
    vpcd(card, slot=0)
    connection = connect(READER_0)
    try:
        with connection.transaction():
            session = driver.open_session(connection, CertificateCache())
            digest, hash_function = auth_digest(session)
            session.sign(KeyRole.AUTHENTICATION, digest, hash_function, card.pin_value("PIN1"))
            session.log_off()
        assert connection.reset_on_release
        assert card.pins[session.pin_for(KeyRole.AUTHENTICATION).reference].verified
    finally:
        connection.close()
    assert not any(pin.verified for pin in card.pins.values())  # type: ignore[attr-defined]
