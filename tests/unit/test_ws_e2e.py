"""End to end through the real core: a websockets client → WsServer → AgentService →
VirtualBackend → virtual Belgian card, with the scripted user. Verifies the Web eID token
with ``cryptography``, that refused handshakes and denied sites cause no APDU, and that
the PIN appears neither on the socket nor in the logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from eid_emulator.beid import BeidCard, BeidCardData
from eid_emulator.pki import Holder, TestPki, make_card_data
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agent.ws import WsServer, serve
from tests.core_support import (  # noqa: F401 - fixtures
    NONCE,
    ORIGIN,
    READER_A,
    pki,
    running_core,
    settle,
    user_env,
    verify_token,
)

PIN = "731904628153"
WRONG_PIN = "864209753102"
HOLDER = Holder(
    given_names="Carla",
    surname="Socket",
    national_number="85073100398",
    card_number="592000000022",
    pin=PIN,
)


@pytest.fixture(scope="module")
def card_data(pki: TestPki) -> BeidCardData:  # noqa: F811
    return make_card_data(pki, HOLDER, applet="1.8")


class Recorder:
    """A websockets client that keeps every frame in both directions."""

    def __init__(self, server: WsServer, origin: str = ORIGIN, host: str | None = None) -> None:
        self.frames: list[str] = []
        self._connect = connect(
            f"ws://{host or f'127.0.0.1:{server.port}'}/",
            host="127.0.0.1",
            port=server.port,
            origin=origin,  # type: ignore[arg-type]
            proxy=None,
        )

    async def __aenter__(self) -> Recorder:
        self.ws = await self._connect.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._connect.__aexit__(*exc)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        message = {"jsonrpc": "2.0", "id": len(self.frames), "method": method}
        if params is not None:
            message["params"] = params
        text = json.dumps(message)
        self.frames.append(text)
        await self.ws.send(text)
        while True:
            reply = await asyncio.wait_for(self.ws.recv(), 60)
            assert isinstance(reply, str)
            self.frames.append(reply)
            decoded = json.loads(reply)
            if decoded.get("id") == message["id"]:
                return decoded


def test_authenticate_through_the_real_core(
    user_env: Any,  # noqa: F811
    card_data: BeidCardData,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(1)

    async def scenario() -> None:
        card = BeidCard("1.8", card_data)
        script = {"pins": [WRONG_PIN, PIN], "consents": ["allow-once"]}
        async with running_core(script, {READER_A: card}) as (service, interaction, _):
            await settle(service)
            async with serve(service, port=0, hosts=("127.0.0.1",)) as server:
                before = len(card.commands)
                # Refused handshakes: no session, no APDU.
                for origin, host in [
                    ("http://evil.example", None),
                    ("null", None),
                    (ORIGIN, f"evil.example:{server.port}"),
                ]:
                    with pytest.raises(InvalidStatus) as info:
                        async with Recorder(server, origin, host):
                            pass
                    assert info.value.response.status_code == 403
                assert len(card.commands) == before

                async with Recorder(server) as client:
                    status = await client.call("status")
                    assert status["result"]["version"]
                    response = await client.call("authenticate", {"challengeNonce": NONCE})
                    token = response["result"]
                    certificate = verify_token(token, ORIGIN, NONCE)
                    assert "Socket" in certificate.subject.rfc4514_string()
                    assert token["format"] == "web-eid:1.0"
                    pins = await client.call("pinStatus")
                    assert pins["result"]["pins"][0]["triesLeft"] == 3  # reset by the good PIN
                assert all(PIN not in f and WRONG_PIN not in f for f in client.frames)

    asyncio.run(scenario())
    assert PIN not in caplog.text and WRONG_PIN not in caplog.text
    assert any(r.levelno <= logging.DEBUG for r in caplog.records)  # the logs were captured


def test_denied_site_gets_typed_error_and_no_card_access(
    user_env: Any,  # noqa: F811
    card_data: BeidCardData,
) -> None:
    async def scenario() -> None:
        card = BeidCard("1.8", card_data)
        script = {"pins": [PIN], "consents": ["deny"]}
        async with running_core(script, {READER_A: card}) as (service, _, _):
            await settle(service)
            async with serve(service, port=0, hosts=("127.0.0.1",)) as server:
                before = len(card.commands)
                async with Recorder(server, "https://other.example") as client:
                    response = await client.call("authenticate", {"challengeNonce": NONCE})
                    assert response["error"]["data"]["code"] == "ERR_EID_ORIGIN_NOT_ALLOWED"
                assert len(card.commands) == before

    asyncio.run(scenario())


def test_bad_nonce_and_user_cancel_are_typed(user_env: Any, card_data: BeidCardData) -> None:  # noqa: F811
    async def scenario() -> None:
        card = BeidCard("1.8", card_data)
        script = {"pins": [{"cancel": True}], "consents": ["allow-always"]}
        async with running_core(script, {READER_A: card}) as (service, _, _):
            async with (
                serve(service, port=0, hosts=("127.0.0.1",)) as server,
                Recorder(server) as client,
            ):
                short = await client.call("authenticate", {"challengeNonce": "c2hvcnQ="})
                assert short["error"]["code"] == -32602
                assert short["error"]["data"]["code"] == "ERR_WEBEID_NATIVE_INVALID_ARGUMENT"
                response = await client.call("authenticate", {"challengeNonce": NONCE})
                assert response["error"]["code"] == -32001
                assert response["error"]["data"]["code"] == "ERR_WEBEID_USER_CANCELLED"

    asyncio.run(scenario())
