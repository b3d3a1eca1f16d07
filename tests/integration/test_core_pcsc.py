"""The operations core on the real PC/SC backend: private pcscd, vpcd, Belgian virtual cards."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from eid_emulator.beid import BeidCard

from agent.app.scripted import ScriptedInteraction
from agent.cards.common import CertificateCache
from agent.core import AgentService
from agent.core.policy import MachinePolicy
from agent.errors import OriginNotAllowedError
from tests import core_support
from tests.conftest import READER_0, READER_1
from tests.core_support import NONCE, ORIGIN, OTHER_ORIGIN, make_config, run, verify_token, wire

pytestmark = [pytest.mark.pcsc, pytest.mark.usefixtures("user_env")]

user_env = core_support.user_env
pki = core_support.pki
data18 = core_support.data18
data18_second = core_support.data18_second


def _pcsc_backend() -> Any:
    from agent.pcsc import PcscBackend

    return PcscBackend()


async def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def test_core_through_pcscd(vpcd: Any, data18: Any, data18_second: Any) -> None:
    first, second = BeidCard("1.8", data18), BeidCard("1.8", data18_second)
    vpcd(first, slot=0)
    served_second = vpcd(second, slot=1)
    digest = bytes(range(48))

    async def scenario() -> None:
        interaction = ScriptedInteraction({"consents": ["deny"], "pins": ["1234", "1234"]})
        service = AgentService(
            _pcsc_backend(),
            interaction,
            config=make_config(policy=MachinePolicy(allowed_origins=(ORIGIN,))),
            card_cache=CertificateCache(),
        )
        await service.start()
        try:
            await _wait_for(lambda: sum(r.card_present for r in service.backend.readers()) == 2)
            # An unapproved origin that the user denies: no APDU reaches either card.
            before = (len(first.commands), len(second.commands))
            with pytest.raises(OriginNotAllowedError):
                await service.open_client(OTHER_ORIGIN).get_signing_certificate()
            assert (len(first.commands), len(second.commands)) == before

            session = service.open_client(ORIGIN)
            events: list[dict[str, Any]] = []
            session.subscribe(lambda e: events.append(wire(e)))
            # Signing picks the card that holds the certificate, among two readers.
            result = wire(await session.sign(
                data18_second.sign_cert,
                digest,
                "SHA-384",
            ))
            assert len(base64.b64decode(result["signature"])) == 96
            assert interaction.records[-1].request.reader == READER_1
            # The second card leaves: the approved subscriber hears it, and authentication
            # then uses the only card left without asking which one.
            served_second.remove()
            await _wait_for(lambda: any(e["type"] == "card-removed" for e in events))
            assert events[-1]["reader"] == READER_1
            token = wire(await session.authenticate(NONCE))
            verify_token(token, ORIGIN, NONCE)
            assert base64.b64decode(token["unverifiedCertificate"]) == data18.auth_cert
            assert interaction.records[-1].request.reader == READER_0
        finally:
            await service.stop()

    run(scenario())
