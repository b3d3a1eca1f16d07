"""End to end: the operations core asks through the real dialog process under Xvfb; the
site consent is answered and the PIN typed with xdotool; the PIN reaches the virtual
Belgian card (the token verifies) and never appears in the dialog process's log."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path

import pytest
from eid_emulator.backend import VirtualBackend
from eid_emulator.beid import BeidCard, BeidCardData

from agent.cards.common import CertificateCache
from agent.core import AgentService
from tests.core_support import (  # noqa: F401 - fixtures
    NONCE,
    ORIGIN,
    READER_A,
    data18,
    make_config,
    pki,
    user_env,
    verify_token,
)
from tests.e2e.test_dialogs_xvfb import (  # noqa: F401
    display,
    past_input_delay,
    pytestmark,
    type_into,
    visible_window,
)
from tray.interaction import DialogInteraction

PIN = "1234"  # the virtual card's PIN


def pin_verifies(commands: list[bytes]) -> list[bytes]:
    """VERIFY commands that carry a PIN (a bare VERIFY only asks for the tries left)."""
    return [apdu for apdu in commands if apdu[1] == 0x20 and len(apdu) > 5]


async def next_window(x_display: str, ui: DialogInteraction, previous: str) -> str:
    """The next dialog's window (the same process shows it, so skip the previous one)."""
    for _ in range(300):
        window = await visible_window(x_display, ui)
        if window != previous:
            return window
        await asyncio.sleep(0.1)
    raise AssertionError("the next dialog never appeared")


def test_pin_typed_in_the_dialog_reaches_the_virtual_card(
    display: str, tmp_path: Path, user_env: Path, data18: BeidCardData,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    log = tmp_path / "dialogs.log"
    env = {k: v for k, v in os.environ.items() if k != "WAYLAND_DISPLAY"}
    env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
    card = BeidCard("1.8", data18)

    async def scenario() -> dict[str, str]:
        ui = DialogInteraction(env=env, stderr_path=log, lang="en")
        backend = VirtualBackend()
        backend.insert(READER_A, card).result()
        service = AgentService(backend, ui, config=make_config(), card_cache=CertificateCache())
        await service.start()
        try:
            task = asyncio.ensure_future(service.open_client(ORIGIN).authenticate(NONCE))
            consent = await visible_window(display, ui)
            seen = len(card.commands)  # the core identified the card when it was inserted
            await type_into(display, consent, "Return")  # too early: ignored
            await past_input_delay(display, consent)
            await type_into(display, consent, "Tab", "Return")  # Deny has the focus; Tab to "Allow once"
            pin_window = await next_window(display, ui, consent)
            assert not pin_verifies(card.commands[seen:])  # no PIN sent yet
            await type_into(display, pin_window, "Return", text=PIN)
            return await asyncio.wait_for(task, 60)
        finally:
            await service.stop()
            await ui.aclose()

    token = asyncio.run(scenario())
    verify_token(token, ORIGIN, NONCE)
    assert len(pin_verifies(card.commands)) == 1  # the typed PIN reached the card, once
    text = log.read_text()
    assert "consent-site dialog opened" in text and "pin dialog opened" in text
    alone = re.compile(rf"(?<![0-9A-Za-z]){PIN}(?![0-9A-Za-z])")  # not inside a serial or pid
    assert not alone.search(text)
    assert not alone.search(caplog.text)
