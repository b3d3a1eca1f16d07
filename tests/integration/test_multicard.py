"""Several cards of different countries in two readers ("Virtual PCD 00 00" and "00 01"),
through the real pcscd + vpcd: first the core in-process (to see what the dialogs are
asked: which PIN, which cards), then the real agent process with a WebSocket client and
the server-side validator."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from typing import Any

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from eid_emulator.idemia import make_card as make_idemia
from eid_emulator.pki_other import OtherPki, make_pki
from eid_emulator.thales import make_card as make_thales
from eid_validator import AuthTokenValidator

from agent.app.scripted import ScriptedInteraction
from agent.cards.common import CertificateCache
from agent.cards.twopin import PinChangeRequiredError
from agent.core import AgentService
from agent.core.policy import MachinePolicy
from agent.errors import UserCancelledError
from tests import core_support
from tests.agent_process import AgentProcess
from tests.conftest import READER_0, READER_1
from tests.core_support import NONCE, ORIGIN, make_config, verify_token, wire
from tests.integration.test_idemia import verify

pytestmark = pytest.mark.pcsc

user_env = core_support.user_env


@pytest.fixture(scope="module")
def pkis() -> dict[str, OtherPki]:
    return {key: make_pki(key) for key in ("EE2018", "EE2025", "LV-RSA", "FI3")}


async def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _core(script: dict[str, Any]) -> tuple[AgentService, ScriptedInteraction]:
    from agent.pcsc import PcscBackend

    interaction = ScriptedInteraction(script)
    service = AgentService(PcscBackend(), interaction,
                           config=make_config(policy=MachinePolicy(allowed_origins=(ORIGIN,))),
                           card_cache=CertificateCache())
    await service.start()
    return service, interaction


@pytest.mark.usefixtures("user_env")
def test_core_with_an_estonian_and_a_finnish_card(pkis: dict[str, OtherPki], vpcd) -> None:
    estonian = make_idemia(pkis["EE2018"], "EE")
    finnish = make_thales(pkis["FI3"], "FI3")
    digest = hashlib.sha256(b"contract").digest()

    async def scenario() -> None:
        service, interaction = await _core({
            "choices": [1, 0], "pins": ["1234", "000000", "12345", "1234"]})
        try:
            session = service.open_client(ORIGIN)
            events: list[dict[str, Any]] = []
            session.subscribe(lambda e: events.append(wire(e)))
            vpcd(estonian, slot=0)
            vpcd(finnish, slot=1)
            await _wait_for(lambda: sum(e["type"] == "card-inserted" for e in events) == 2)
            named = {e["reader"]: e["card"] for e in events if e["type"] == "card-inserted"}
            assert named[READER_0]["type"] == "EE ID card (IDEMIA 2018)"
            assert named[READER_1]["type"] == "FI FinEID v3"
            assert named[READER_0]["serial"] == estonian.data.document_number

            # authenticate: the user chooses the Finnish card; its PIN1 is asked for; PS256.
            token = wire(await session.authenticate(NONCE))
            choice = interaction.records[0]
            assert choice.kind == "choice"
            assert [(c.reader, c.card_type) for c in choice.request.choices] == [
                (READER_0, "EE ID card (IDEMIA 2018)"), (READER_1, "FI FinEID v3")]
            assert token["algorithm"] == "PS256"
            verify_token(token, ORIGIN, NONCE)
            pin_prompt = interaction.records[1]
            assert (pin_prompt.request.pin.name, pin_prompt.request.reader) == ("PIN1", READER_1)

            # sign: the card holding the certificate is found; PIN2 asked, a wrong one
            # spends a try and the dialog comes back with the tries left.
            result = wire(await session.sign(estonian.data.keys.sign_der, digest,
                                        "SHA-256"))
            prompts = [r.request for r in interaction.records[2:] if r.kind == "pin"]
            assert [(p.pin.name, p.reader, p.tries_left) for p in prompts] == [
                ("PIN2", READER_0, 3), ("PIN2", READER_0, 2)]
            assert result["signatureAlgorithm"]["cryptoAlgorithm"] == "ECC"
            verify(estonian.data.keys.sign_der, base64.b64decode(result["signature"]), digest)
            assert estonian.tries_left("PIN2") == 3

            # authenticate again, the Estonian card: ES384 with its PIN1.
            token = wire(await session.authenticate(NONCE))
            assert token["algorithm"] == "ES384"
            cert = x509.load_der_x509_certificate(base64.b64decode(token["unverifiedCertificate"]))
            assert cert.public_bytes(Encoding.DER) == estonian.data.keys.auth_der
            assert interaction.records[-1].request.pin.name == "PIN1"

            # Two cards and no answer left in the script: the choice dialog is cancelled.
            with pytest.raises(UserCancelledError):
                await session.pin_status()
        finally:
            await service.stop()

    asyncio.run(scenario())


@pytest.mark.usefixtures("user_env")
def test_core_refuses_an_unchanged_estonian_2025_pin2(pkis: dict[str, OtherPki], vpcd) -> None:
    card = make_thales(pkis["EE2025"], "EE2025", pins_changed=False)
    vpcd(card, slot=0)

    async def scenario() -> None:
        service, _interaction = await _core({"pins": ["123456"]})
        try:
            await _wait_for(lambda: any(r.card_present for r in service.backend.readers()))
            session = service.open_client(ORIGIN)
            status = wire(await session.pin_status())
            assert [p["name"] for p in status["pins"]] == ["PIN1", "PIN2", "PUK"]
            with pytest.raises(PinChangeRequiredError, match="change PIN2"):
                await session.sign(card.data.keys.sign_der, bytes(32), "SHA-256")
        finally:
            await service.stop()

    asyncio.run(scenario())
    assert not any(c[1] == 0x20 and len(c) > 5 for c in card.commands)


# -- the agent process ----------------------------------------------------------------------


async def _rpc(url: str, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    async with websockets.connect(url, origin=ORIGIN) as ws:
        answers = []
        for number, (method, params) in enumerate(calls, 1):
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": number, "method": method,
                                      "params": params}))
            while True:
                message = json.loads(await ws.recv())
                if message.get("id") == number:
                    answers.append(message)
                    break
        return answers


def test_agent_process_with_estonian_and_latvian_cards(pkis: dict[str, OtherPki], pcscd, vpcd,
                                                       tmp_path) -> None:
    estonian = make_idemia(pkis["EE2018"], "EE")
    latvian = make_idemia(pkis["LV-RSA"], "LV")
    vpcd(estonian, slot=0)
    vpcd(latvian, slot=1)
    nonce = _b64(os.urandom(32))
    digest = hashlib.sha256(b"registration").digest()
    script = {"choices": [1, 0], "pins": ["1234", "999999", {"cancel": True}, "1234"]}
    with AgentProcess(pcscd, tmp_path, script, allow_origins=(ORIGIN,)) as agent:
        lv_token, wrong, ee_token, status = asyncio.run(_rpc(agent.url, [
            ("authenticate", {"challengeNonce": nonce}),  # chooses the Latvian card
            ("sign", {"certificate": _b64(latvian.data.keys.sign_der), "hash": _b64(digest),
                      "hashFunction": "SHA-256"}),
            ("authenticate", {"challengeNonce": nonce}),  # chooses the Estonian card
            ("status", {}),
        ]))
        output = agent.stop()
    token = lv_token["result"]
    assert token["algorithm"] == "RS256"
    validator = AuthTokenValidator(ORIGIN, pkis["LV-RSA"].trust_anchors,
                                   intermediates=[pkis["LV-RSA"].ca.cert])
    assert validator.validate(token, nonce).serial_number == "PNOLV-38001085718"
    assert wrong["error"]["data"]["code"] == "ERR_WEBEID_USER_CANCELLED"
    assert latvian.tries_left("PIN2") == 2
    token = ee_token["result"]
    assert token["algorithm"] == "ES384"
    validator = AuthTokenValidator(ORIGIN, pkis["EE2018"].trust_anchors,
                                   intermediates=[pkis["EE2018"].ca.cert])
    assert validator.validate(token, nonce).serial_number == "PNOEE-38001085718"
    cards = {r["name"]: r["card"] for r in status["result"]["readers"]}
    assert cards[READER_0]["type"] == "EE ID card (IDEMIA 2018)"
    assert cards[READER_1]["type"] == "LV eID (IDEMIA)"
    assert "999999" not in output
    # Each PIN the user typed went to the card once: PIN1 (LV), PIN2 (LV, wrong), PIN1 (EE).
    verifies = [c[:4].hex() for card in (latvian, estonian) for c in card.commands
                if c[1] == 0x20 and len(c) > 5]
    assert sorted(verifies) == sorted(["00200001", "00200085", "00200001"])
