"""EstEID 2025 with its initial PINs: the agent refuses before asking for a PIN, says why
in a typed error (ERR_EID_PIN_CHANGE_REQUIRED), and pinStatus tells the page."""

from __future__ import annotations

import base64
import os

import pytest
from eid_emulator.pki_other import make_pki
from eid_emulator.thales import make_card

from agent.errors import PinChangeRequiredError
from agent.ws.errors import from_exception
from tests.core_support import run, running_core, user_env, wire  # noqa: F401 - fixture

ORIGIN = "https://portal.example"


def test_initial_pin_is_refused_without_a_prompt(user_env) -> None:  # noqa: F811
    card = make_card(make_pki("EE2025"), "EE2025", pins_changed=False)

    async def go() -> tuple[PinChangeRequiredError, dict, list[str]]:
        async with running_core({"consents": ["allow-once"], "pins": ["1234"]},
                                {"Reader A": card}) as (service, interaction, _backend):
            client = service.open_client(ORIGIN)
            with pytest.raises(PinChangeRequiredError) as refused:
                await client.authenticate(base64.b64encode(os.urandom(32)).decode(), timeout=5)
            status = wire(await client.pin_status(timeout=5))
            return refused.value, status, interaction.kinds()

    error, status, prompts = run(go())
    assert error.pin_name == "PIN1"
    assert "pin" not in prompts, "no PIN dialog for a PIN the card will refuse"
    assert not [c for c in card.commands if c[1] == 0x20 and len(c) > 5], "no VERIFY sent"
    rpc = from_exception(error)
    assert rpc.code.name_code == "ERR_EID_PIN_CHANGE_REQUIRED"
    assert rpc.to_json()["data"] == {"code": "ERR_EID_PIN_CHANGE_REQUIRED", "pinName": "PIN1"}
    assert [p["mustChange"] for p in status["pins"]][:2] == [True, True]
