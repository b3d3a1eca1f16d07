"""What the core sends to the card, counted at the virtual card through the real pcscd + vpcd.

* A warm ``authenticate`` or ``sign`` (card identified since its insertion, certificate read
  before) is one card job of at most 5 APDUs on applet 1.8: GET CARD DATA (confirms the card,
  its serial and the PIN counter), MSE SET, VERIFY, PSO:CDS, GET RESPONSE. The BELPIC DF is
  selected (by path) only when the card refuses MSE SET because another DF is current: another
  program selected one, or reset the card, between the agent's transactions.
* After it, once the answer is back, the core sends LOG OFF in a follow-up job: GET CARD
  DATA (the same card?) and ``80 E6 00 00``, not counted in the 5 since the page already has
  its answer.
* The PIN dialog may show a remembered tries-left count; when another program spent a try
  meanwhile, the PIN the user typed is not sent and the dialog is shown again with the count
  the card gives.
* A card swapped in the reader while the PIN prompt is open never receives the PIN, whether
  the core saw the swap (the prompt closes) or not yet (the signing job meets another serial).
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest
from eid_emulator.beid import BeidCard

from agent.app.scripted import HANG, ScriptedInteraction
from agent.cards.beid import encode_pin_block
from agent.cards.common import CertificateCache
from agent.core import AgentService
from agent.core.interaction import PinRequest
from agent.core.policy import MachinePolicy
from agent.errors import CardRemovedError
from agent.pcsc import connect, wait_for_card
from agent.smartcard.backend import EventCallback, ReaderEvent
from tests import core_support
from tests.conftest import READER_0
from tests.core_support import NONCE, ORIGIN, make_config, verify_token, wire

pytestmark = [pytest.mark.pcsc, pytest.mark.usefixtures("user_env")]

user_env = core_support.user_env
pki = core_support.pki
data18 = core_support.data18
data17 = core_support.data17
data18_second = core_support.data18_second

PIN = "1234"  # the test PKI's default holder PIN
WARM_BUDGET = 5
SELECT_DF01 = bytes.fromhex("00A4080C02DF01")


class HoldingBackend:
    """A PcscBackend whose events can be held back from the core, as when they are still
    on their way (the worker busy with another reader's job, the loop not yet there)."""

    def __init__(self) -> None:
        from agent.pcsc import PcscBackend

        self.inner = PcscBackend()
        self.holding = False
        self._held: list[ReaderEvent] = []
        self._on_event: EventCallback | None = None
        self._lock = threading.Lock()

    def start(self, on_event: EventCallback) -> None:
        self._on_event = on_event
        self.inner.start(self._event)

    def _event(self, event: ReaderEvent) -> None:
        with self._lock:
            if self.holding:
                self._held.append(event)
                return
        assert self._on_event is not None
        self._on_event(event)

    def release(self) -> None:
        with self._lock:
            self.holding = False
            held, self._held = self._held, []
        assert self._on_event is not None
        for event in held:
            self._on_event(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _service(interaction: ScriptedInteraction, backend: Any = None) -> AgentService:
    if backend is None:
        from agent.pcsc import PcscBackend

        backend = PcscBackend()
    return AgentService(
        backend,
        interaction,
        config=make_config(policy=MachinePolicy(allowed_origins=(ORIGIN,))),
        card_cache=CertificateCache(),
    )


def _shown_tries(interaction: ScriptedInteraction) -> list[int | None]:
    """The tries-left count each PIN dialog showed."""
    return [r.request.tries_left for r in interaction.records if isinstance(r.request, PinRequest)]


def _headers(commands: list[bytes]) -> list[str]:
    return [command[:4].hex().upper() for command in commands]


def _pin_commands(commands: list[bytes]) -> list[bytes]:
    """VERIFY commands that carry a PIN (the Lc=0 status probe carries none)."""
    return [c for c in commands if c[1] == 0x20 and len(c) > 4]


def _sign_params(certificate: bytes) -> tuple[bytes, bytes, str]:
    return certificate, bytes(range(32)), "SHA-256"


async def _answered_then_logged_off(
    service: AgentService, card: BeidCard, operation: Any
) -> tuple[Any, list[bytes], list[bytes]]:
    """The answer, the commands the card got before it, and those of the follow-up LOG OFF
    job (the core queues it when the operation returns, so none can precede the answer)."""
    start = len(card.commands)
    answer = await operation
    at_answer = card.commands[start:]
    await service.cards.log_offs_done()
    return answer, at_answer, card.commands[start + len(at_answer):]


async def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def test_warm_authenticate_and_sign_within_budget(vpcd: Any, data18: Any) -> None:
    card = BeidCard("1.8", data18)
    vpcd(card, slot=0)

    async def scenario() -> None:
        interaction = ScriptedInteraction({"pins": [PIN] * 4})
        service = _service(interaction)
        await service.start()
        try:
            client = service.open_client(ORIGIN)
            verify_token(await client.authenticate(NONCE), ORIGIN, NONCE)  # reads the cert
            await service.cards.log_offs_done()
            token, warm_auth, auth_off = await _answered_then_logged_off(
                service, card, client.authenticate(NONCE))
            verify_token(token, ORIGIN, NONCE)

            await client.sign(*_sign_params(data18.sign_cert))  # reads the signing cert
            await service.cards.log_offs_done()
            result, warm_sign, sign_off = await _answered_then_logged_off(
                service, card, client.sign(*_sign_params(data18.sign_cert)))
            result = wire(result)
        finally:
            await service.stop()

        lean = ["80E40001", "002241B6", "00200001", "002A9E9A", "00C00000"]
        assert _headers(warm_auth) == lean
        # LOG OFF after the answer, in its own job: confirm the card, log off. Never before.
        assert _headers(auth_off) == _headers(sign_off) == ["80E40001", "80E60000"]
        assert not card.pin_verified
        assert warm_auth[1].endswith(b"\x84\x82") and warm_sign[1].endswith(b"\x84\x83")
        assert _headers(warm_sign) == lean
        assert len(warm_auth) <= WARM_BUDGET and len(warm_sign) <= WARM_BUDGET
        assert len(base64.b64decode(result["signature"])) == 96
        # The dialog showed the counter the card gave (3), remembered or confirmed.
        assert _shown_tries(interaction) == [3, 3, 3, 3]

    asyncio.run(scenario())


def test_warm_authenticate_on_applet_17(vpcd: Any, data17: Any) -> None:
    """1.7 has no PIN counter in GET CARD DATA: the status is confirmed with VERIFY Lc=0."""
    card = BeidCard("1.7", data17)
    vpcd(card, slot=0)

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        service = _service(ScriptedInteraction({"pins": [PIN] * 2}))
        await service.start()
        try:
            client = service.open_client(ORIGIN)
            await client.authenticate(NONCE)
            await service.cards.log_offs_done()
            token, warm, off = await _answered_then_logged_off(
                service, card, client.authenticate(NONCE))
            verify_token(token, ORIGIN, NONCE)
            return warm, off
        finally:
            await service.stop()

    warm, off = asyncio.run(scenario())
    assert _headers(warm) == [
        "80E40000", "00200001", "002241B6", "00200001", "002A9E9A", "00C00000"
    ]
    assert _headers(off) == ["80E40000", "80E60000"]


def _other_program(*apdus: bytes) -> list[int]:
    """Another PC/SC client sends ``apdus`` in a transaction of its own; their SWs."""
    other = connect(READER_0)
    try:
        with other.transaction():
            return [other.send_and_receive(apdu)[1] for apdu in apdus]
    finally:
        other.close()


@pytest.mark.parametrize("method", ["authenticate", "sign"])
def test_another_program_selects_another_df_between_operations(
    vpcd: Any, data18: Any, method: str
) -> None:
    """The agent does not SELECT DF00 before MSE SET; when another program left DF01
    current, the card refuses MSE SET (key not found) and the agent selects DF00 and sets
    the environment again, before the PIN goes out: one VERIFY, a valid signature."""
    card = BeidCard("1.8", data18)
    vpcd(card, slot=0)

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        service = _service(ScriptedInteraction({"pins": [PIN] * 3}))
        await service.start()
        try:
            client = service.open_client(ORIGIN)

            async def operation() -> None:
                if method == "authenticate":
                    verify_token(await client.authenticate(NONCE), ORIGIN, NONCE)
                else:
                    result = wire(await client.sign(*_sign_params(data18.sign_cert)))
                    assert len(base64.b64decode(result["signature"])) == 96
                await service.cards.log_offs_done()  # LOG OFF follows the answer

            await operation()
            assert _other_program(SELECT_DF01) == [0x9000]
            start = len(card.commands)
            await operation()
            after_df_change = card.commands[start:]
            start = len(card.commands)
            await operation()
            return after_df_change, card.commands[start:]
        finally:
            await service.stop()

    after_df_change, next_one = asyncio.run(scenario())
    assert _headers(after_df_change) == [
        "80E40001", "002241B6", "00A4080C", "002241B6", "00200001", "002A9E9A", "00C00000",
        "80E40001", "80E60000",
    ]
    assert after_df_change[2] == bytes.fromhex("00A4080C02DF00")
    assert len(_pin_commands(after_df_change)) == 1
    # DF00 is current again: back to the lean sequence.
    assert _headers(next_one) == ["80E40001", "002241B6", "00200001", "002A9E9A", "00C00000",
                                  "80E40001", "80E60000"]
    assert card.tries_left == 3


@pytest.mark.skipif(shutil.which("opensc-tool") is None, reason="needs OpenSC's opensc-tool")
def test_another_program_resets_the_card_between_operations(vpcd: Any, data18: Any) -> None:
    """A reset by another program (MF current, PIN state and security environment gone)
    between two operations: the next authenticate still works with one VERIFY."""
    card = BeidCard("1.8", data18)
    vpcd(card, slot=0)

    def reset() -> None:
        # Another program: OpenSC's tool, SCardDisconnect(SCARD_RESET_CARD) underneath.
        done = subprocess.run(["opensc-tool", "--reader", "0", "--reset", "warm"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    async def scenario() -> list[bytes]:
        service = _service(ScriptedInteraction({"pins": [PIN] * 2}))
        await service.start()
        try:
            client = service.open_client(ORIGIN)
            verify_token(await client.authenticate(NONCE), ORIGIN, NONCE)
            assert card.pin_verified
            await asyncio.to_thread(reset)
            assert not card.pin_verified, "the card was not reset"
            start = len(card.commands)
            verify_token(await client.authenticate(NONCE), ORIGIN, NONCE)
            return card.commands[start:]
        finally:
            await service.stop()

    sent = asyncio.run(scenario())
    assert len(_pin_commands(sent)) == 1
    assert "00A4080C" in _headers(sent)  # the MF was current: DF00 selected before VERIFY
    assert _headers(sent).index("00A4080C") < _headers(sent).index("00200001")
    assert card.tries_left == 3


def test_try_spent_by_another_program_is_shown_before_the_pin_is_sent(
    vpcd: Any, data18: Any
) -> None:
    card = BeidCard("1.8", data18)
    vpcd(card, slot=0)

    async def scenario() -> None:
        # The first PIN typed after the other program's try is wrong: it must not be sent.
        interaction = ScriptedInteraction({"pins": [PIN, "0000", PIN]})
        service = _service(interaction)
        await service.start()
        try:
            client = service.open_client(ORIGIN)
            await client.authenticate(NONCE)  # the core now remembers 3 tries
            other = connect(READER_0)  # another program, between the agent's transactions
            try:
                with other.transaction():
                    _data, sw = other.send_and_receive(
                        bytes.fromhex("0020000108") + encode_pin_block("9999")
                    )
            finally:
                other.close()
            assert sw == 0x63C2
            start = len(card.commands)
            verify_token(await client.authenticate(NONCE), ORIGIN, NONCE)
            sent = card.commands[start:]
        finally:
            await service.stop()

        # Remembered 3, then the card's 2, before any PIN went out.
        assert _shown_tries(interaction) == [3, 3, 2]
        assert _pin_commands(sent) == [bytes.fromhex("0020000108") + encode_pin_block(PIN)]
        assert card.tries_left == 3

    asyncio.run(scenario())


def test_swap_seen_while_the_pin_prompt_is_open(vpcd: Any, data18: Any, data18_second: Any) -> None:
    first, second = BeidCard("1.8", data18), BeidCard("1.8", data18_second)
    served = vpcd(first, slot=0)
    prompt_open = threading.Event()

    def on_request(kind: str, _request: Any) -> None:
        if kind == "pin":
            prompt_open.set()

    async def scenario() -> None:
        interaction = ScriptedInteraction({"pins": [PIN, HANG, PIN]}, on_request=on_request)
        service = _service(interaction)
        await service.start()
        try:
            client = service.open_client(ORIGIN)
            await client.authenticate(NONCE)
            prompt_open.clear()
            pending = asyncio.ensure_future(client.authenticate(NONCE))
            await asyncio.to_thread(prompt_open.wait, 10)

            def swap() -> None:
                served.remove()
                wait_for_card(READER_0, present=False)
                vpcd(second, slot=0)

            before = len(first.commands)
            await asyncio.to_thread(swap)
            with pytest.raises(CardRemovedError):
                await asyncio.wait_for(pending, 10)
            assert interaction.records[-1].outcome == "cancelled"  # the prompt was closed
            assert _pin_commands(first.commands[before:]) == []
            assert _pin_commands(second.commands) == []
            # The new card is identified; the next request shows its holder and works.
            token = wire(await client.authenticate(NONCE))
            verify_token(token, ORIGIN, NONCE)
            assert base64.b64decode(token["unverifiedCertificate"]) == data18_second.auth_cert
            last = interaction.records[-1].request
            assert isinstance(last, PinRequest) and last.holder == "Bob Tester"
        finally:
            await service.stop()

    asyncio.run(scenario())


def test_swap_not_yet_seen_never_gets_the_pin(vpcd: Any, data18: Any, data18_second: Any) -> None:
    """The core has not heard of the swap when the user answers: the signing job finds
    another serial (GET CARD DATA) and stops before VERIFY."""
    first, second = BeidCard("1.8", data18), BeidCard("1.8", data18_second)
    served = vpcd(first, slot=0)
    backend = HoldingBackend()
    swapped: list[int] = []

    def on_request(kind: str, _request: Any) -> None:
        if kind == "pin" and backend.holding and not swapped:
            # While the user types: the card is swapped, the core not told yet.
            served.remove()
            wait_for_card(READER_0, present=False)
            vpcd(second, slot=0)
            swapped.append(len(second.commands))

    async def scenario() -> None:
        interaction = ScriptedInteraction({"pins": [PIN, PIN, PIN]}, on_request=on_request)
        service = _service(interaction, backend)
        await service.start()
        try:
            client = service.open_client(ORIGIN)
            await client.authenticate(NONCE)
            backend.holding = True
            before = len(first.commands)
            with pytest.raises(CardRemovedError, match="another card"):
                await client.authenticate(NONCE)
            assert swapped, "the PIN prompt was not shown"
            assert _pin_commands(first.commands[before:]) == []
            assert _pin_commands(second.commands) == []
            # GET CARD DATA, then the new card's certificate read for its holder name:
            # no MSE SET, no VERIFY, no signature.
            sent = second.commands[swapped[0]:]
            assert _headers(sent)[0] == "80E40001"
            assert {c[1] for c in sent} <= {0xE4, 0xA4, 0xB0}
            # The events arrive: the core re-identifies the card and works with it.
            backend.release()
            def identified() -> bool:
                state = service.cards.state(READER_0)
                return state is not None and state.info is not None and (
                    state.info.holder_name == "Bob Tester")

            await _wait_for(identified)
            token = wire(await client.authenticate(NONCE))
            assert base64.b64decode(token["unverifiedCertificate"]) == data18_second.auth_cert
            assert len(_pin_commands(second.commands)) == 1
        finally:
            await service.stop()

    asyncio.run(scenario())
