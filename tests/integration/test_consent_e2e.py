"""Consent through the real agent process (``eid-agent serve``) on the private pcscd + vpcd
with the virtual Belgian card and real WebSocket clients; only the user is scripted."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from typing import Any

import pytest
import websockets
from eid_emulator.beid import BeidCard
from eid_emulator.pki import Holder, TestPki, make_card_data

from tests.agent_process import AgentProcess

pytestmark = pytest.mark.pcsc

SITE = "https://portal.example"
PIN = "908172"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


def _card(pki: TestPki) -> BeidCard:
    return BeidCard("1.8", make_card_data(pki, Holder(pin=PIN), "1.8"))


def _settle(served: Any) -> int:
    """Wait until the agent finished identifying the card; the APDU count then."""
    stable_since, before = time.monotonic(), served.apdu_count
    while time.monotonic() - stable_since < 0.5:
        time.sleep(0.05)
        if served.apdu_count != before:
            stable_since, before = time.monotonic(), served.apdu_count
    return int(before)


def _call(number: int, method: str, params: dict[str, Any] | None = None) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": number, "method": method, "params": params or {}})


def test_sixty_concurrent_requests_from_one_origin_show_one_prompt(pki, pcscd, vpcd, tmp_path):
    served = vpcd(_card(pki))
    with AgentProcess(pcscd, tmp_path, {"consents": ["deny"]}) as agent:
        before = _settle(served)

        async def page() -> list[dict[str, Any]]:
            # 15 pages of one site, 4 calls each (the per-connection limit): 60 at once.
            async with websockets.connect(agent.url, origin=SITE) as ws:
                for number in range(4):
                    await ws.send(_call(number, "getSigningCertificate"))
                return [json.loads(await ws.recv()) for _ in range(4)]

        async def sixty() -> list[dict[str, Any]]:
            pages = await asyncio.gather(*(page() for _ in range(15)))
            return [answer for answers in pages for answer in answers]

        answers = asyncio.run(sixty())
        assert len(answers) == 60
        codes = {a["error"]["data"]["code"] for a in answers}
        assert codes == {"ERR_EID_ORIGIN_NOT_ALLOWED"}
        # The denial is remembered: a page a moment later is refused without a prompt.
        async def later() -> dict[str, Any]:
            async with websockets.connect(agent.url, origin=SITE) as ws:
                await ws.send(_call(1, "authenticate", {
                    "challengeNonce": base64.b64encode(os.urandom(32)).decode()}))
                return dict(json.loads(await ws.recv()))

        assert "less than 60 s ago" in asyncio.run(later())["error"]["message"]
        output = agent.stop()
    assert output.count("consent prompt: https://portal.example for site") == 1
    assert served.apdu_count == before, "no APDU may reach the card before approval"


def test_an_unapproved_status_holds_no_card_data(pki, pcscd, vpcd, tmp_path):
    served = vpcd(_card(pki))
    with AgentProcess(pcscd, tmp_path, {"consents": ["allow-once", "allow-once"]}) as agent:
        _settle(served)

        async def go() -> tuple[dict[str, Any], list[str], dict[str, Any], dict[str, Any]]:
            async with websockets.connect(agent.url, origin=SITE) as ws:
                await ws.send(_call(1, "status"))
                unapproved = json.loads(await ws.recv())
                await ws.send(_call(2, "subscribe"))
                await ws.recv()
                await asyncio.to_thread(served.remove)  # an unapproved page hears nothing
                late: list[str] = []
                try:
                    async with asyncio.timeout(1.5):
                        late.append(await ws.recv())
                except TimeoutError:
                    pass
                await asyncio.to_thread(served.insert)
                await asyncio.sleep(1.0)
                await ws.send(_call(3, "getSigningCertificate"))  # site + certificate consent
                certificate = json.loads(await ws.recv())
                await ws.send(_call(4, "status"))
                approved = json.loads(await ws.recv())
                return unapproved, late, certificate, approved

        unapproved, late, certificate, approved = asyncio.run(go())
    assert unapproved["result"] == {"version": unapproved["result"]["version"], "approved": False}
    text = json.dumps(unapproved)
    assert "Specimen" not in text and "cardPresent" not in text and "readers" not in text
    assert late == []
    assert "certificate" in certificate["result"]
    card = approved["result"]["readers"][0]["card"]
    assert approved["result"]["approved"] is True and card["holder"]
