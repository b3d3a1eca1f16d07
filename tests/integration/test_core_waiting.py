"""The core waits for the card: "Connect the card reader" / "Insert your ID card" notices
while no usable card is there, the right card for signing, PIN prompts closed when their
card leaves, and the page's language on every request. On the in-process virtual backend
with the real Belgian virtual card and driver, plus one run through the real agent process
on pcscd + vpcd."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from eid_emulator.backend import VirtualBackend
from eid_emulator.beid import BeidCard
from eid_emulator.pki import Holder, TestPki, make_card_data
from eid_emulator.testcard import TestCard
from eid_validator import AuthTokenValidator
from websockets.typing import Origin

from agent.app.scripted import HANG, ScriptedInteraction
from agent.core import AgentService
from agent.core.interaction import CardWaitReason, CardWaitRequest, Operation, PinRequest
from agent.core.policy import MachinePolicy
from agent.errors import (
    CardRemovedError,
    CertificateNotFoundError,
    UserCancelledError,
    UserTimeoutError,
)
from tests import core_support
from tests.agent_process import AgentProcess
from tests.core_support import (
    NONCE,
    ORIGIN,
    READER_A,
    READER_B,
    make_config,
    run,
    running_core,
    verify_token,
    wire,
)

user_env = core_support.user_env
pki = core_support.pki
data18 = core_support.data18
data18_second = core_support.data18_second

POLICY = MachinePolicy(allowed_origins=(ORIGIN,))
INS_VERIFY = 0x20


def pin_verifies(card: BeidCard) -> int:
    """VERIFY commands that carried a PIN (not the Lc=0 tries-left probe)."""
    return sum(1 for apdu in card.commands if apdu[1] == INS_VERIFY and len(apdu) > 5)


def notices(interaction: ScriptedInteraction) -> list[tuple[str, str]]:
    """(reason, outcome) of every card-notice record, in order."""
    return [
        (r.request.reason.value, r.outcome)
        for r in interaction.records
        if isinstance(r.request, CardWaitRequest)
    ]


def last_pin(interaction: ScriptedInteraction) -> PinRequest:
    request = interaction.records[-1].request
    assert isinstance(request, PinRequest)
    return request


class Stage:
    """An ``on_request`` hook running one action per card notice shown, in order."""

    def __init__(self, *actions: Callable[[CardWaitRequest], object]) -> None:
        self.actions = list(actions)
        self.shown = asyncio.Event()

    def __call__(self, kind: str, request: Any) -> None:
        if kind != "card-notice":
            return
        self.shown.set()
        if self.actions:
            self.actions.pop(0)(request)


# -- waiting for a card ----------------------------------------------------------------------


@pytest.mark.usefixtures("user_env")
def test_authenticate_waits_for_the_reader_then_the_card(data18: Any) -> None:
    card = BeidCard("1.8", data18)
    backend = VirtualBackend()  # no reader at all
    stage = Stage(
        lambda request: backend.add_reader(READER_A),
        lambda request: backend.insert(READER_A, card),
    )

    async def scenario() -> None:
        async with running_core({"pins": ["1234"]}, backend=backend, on_request=stage,
                                policy=POLICY) as (service, interaction, _):
            token = wire(await service.open_client(ORIGIN).authenticate(NONCE, lang="de"))
            verify_token(token, ORIGIN, NONCE)
            assert notices(interaction) == [
                ("no-reader", "shown"), ("no-reader", "closed"),
                ("no-card", "shown"), ("no-card", "closed"),
            ]
            shown = [r.request for r in interaction.records if r.kind == "card-notice"]
            assert all(isinstance(r, CardWaitRequest) and r.origin == ORIGIN
                       and r.operation is Operation.AUTHENTICATE and r.lang == "de"
                       and 0 < r.timeout <= 120 for r in shown)
            # The notice closed before the PIN was asked.
            assert interaction.kinds()[-1] == "pin"

    run(scenario())
    assert pin_verifies(card) == 1


@pytest.mark.usefixtures("user_env")
def test_every_card_operation_waits(data18: Any) -> None:
    """getSigningCertificate, readIdentity and pinStatus wait the same way."""
    backend = VirtualBackend()
    backend.add_reader(READER_A).result()  # an empty reader: one "no-card" notice each
    stage = Stage(*[lambda request: backend.insert(READER_A, BeidCard("1.8", data18))] * 3)

    async def scenario() -> None:
        async with running_core({"consents": ["allow-once"] * 2}, backend=backend,
                                on_request=stage, policy=POLICY) as (service, interaction, _):
            session = service.open_client(ORIGIN)
            certificate = wire(await session.get_signing_certificate())
            assert base64.b64decode(certificate["certificate"]) == data18.sign_cert
            backend.remove(READER_A).result()
            identity = wire(await session.read_identity(photo=False))
            assert identity["identity"]["cardNumber"] == "592123456789"
            backend.remove(READER_A).result()
            status = wire(await session.pin_status())
            assert status["pins"][0]["triesLeft"] == 3
            assert [r.request.operation for r in interaction.records
                    if isinstance(r.request, CardWaitRequest) and r.outcome == "shown"] == [
                Operation.GET_CERTIFICATE, Operation.READ_IDENTITY, Operation.CHANGE_PIN]
            assert interaction.open_card_notices() == 0

    run(scenario())


@pytest.mark.usefixtures("user_env")
def test_wait_times_out_with_the_notice_closed() -> None:
    backend = VirtualBackend()
    backend.add_reader(READER_A).result()

    async def scenario() -> None:
        async with running_core({}, backend=backend, policy=POLICY) as (
                service, interaction, _):
            with pytest.raises(UserTimeoutError):
                await service.open_client(ORIGIN).authenticate(NONCE, timeout=0.2)
            assert notices(interaction) == [("no-card", "shown"), ("no-card", "closed")]
            assert interaction.records[0].request.timeout == pytest.approx(0.2, abs=0.05)

    run(scenario())


@pytest.mark.usefixtures("user_env")
def test_disconnect_while_waiting_closes_the_notice(data18: Any) -> None:
    backend = VirtualBackend()
    stage = Stage()

    async def scenario() -> None:
        async with running_core({}, backend=backend, on_request=stage, policy=POLICY) as (
                service, interaction, _):
            session = service.open_client(ORIGIN)
            pending = asyncio.create_task(session.authenticate(NONCE))
            await stage.shown.wait()
            assert interaction.open_card_notices() == 1
            await session.close()
            with pytest.raises(UserCancelledError):
                await pending
            assert notices(interaction) == [("no-reader", "shown"), ("no-reader", "cancelled")]
            assert interaction.open_card_notices() == 0
            # A card inserted now is left alone.
            card = BeidCard("1.8", data18)
            backend.insert(READER_A, card).result()
            await core_support.settle(service)
            assert pin_verifies(card) == 0 and interaction.kinds() == [
                "card-notice", "card-notice"]

    run(scenario())


class CancellingInteraction(ScriptedInteraction):
    """The user presses Cancel on the card notice, the way tray.interaction does it:
    the notice cancels the waiting task and raises UserCancelledError from its exit."""

    @contextlib.asynccontextmanager
    async def card_notice(self, request: CardWaitRequest) -> AsyncIterator[None]:
        task = asyncio.current_task()
        assert task is not None
        async with super().card_notice(request):
            press = asyncio.get_running_loop().call_soon(task.cancel)
            try:
                yield
            except asyncio.CancelledError:
                if task.uncancel() == 0:
                    raise UserCancelledError("cancelled on the card notice") from None
                raise
            finally:
                press.cancel()


@pytest.mark.usefixtures("user_env")
def test_cancel_on_the_card_notice_ends_the_request(data18: Any) -> None:
    backend = VirtualBackend()
    backend.add_reader(READER_A).result()

    async def scenario() -> None:
        interaction = CancellingInteraction({})
        service = AgentService(backend, interaction, config=make_config(policy=POLICY))
        await service.start()
        try:
            session = service.open_client(ORIGIN)
            with pytest.raises(UserCancelledError):
                await session.authenticate(NONCE)
            assert notices(interaction) == [("no-card", "shown"), ("no-card", "closed")]
            # The connection is still usable: the next request waits afresh.
            with pytest.raises(UserCancelledError):
                await session.get_signing_certificate()
        finally:
            await service.stop()

    run(scenario())


@pytest.mark.usefixtures("user_env")
def test_unrecognised_card_is_waited_past(data18: Any) -> None:
    card = BeidCard("1.8", data18)
    backend = VirtualBackend()
    backend.insert(READER_A, TestCard()).result()
    stage = Stage(lambda request: backend.insert(READER_B, card))

    async def scenario() -> None:
        async with running_core({"pins": ["1234"]}, backend=backend, on_request=stage,
                                policy=POLICY) as (service, interaction, _):
            token = wire(await service.open_client(ORIGIN).authenticate(NONCE))
            verify_token(token, ORIGIN, NONCE)
            assert notices(interaction) == [("unrecognised", "shown"), ("unrecognised", "closed")]
            assert last_pin(interaction).reader == READER_B  # no card choice was asked

    run(scenario())


@pytest.mark.usefixtures("user_env")
def test_sign_waits_for_the_card_holding_the_certificate(
    data18: Any, data18_second: Any
) -> None:
    wrong, right = BeidCard("1.8", data18_second), BeidCard("1.8", data18)
    backend = VirtualBackend()
    backend.insert(READER_A, wrong).result()
    backend.add_reader(READER_B).result()
    stage = Stage(lambda request: backend.insert(READER_B, right))
    digest = bytes(range(48))

    async def scenario() -> dict[str, Any]:
        async with running_core({"pins": ["1234"]}, backend=backend, on_request=stage,
                                policy=POLICY) as (service, interaction, _):
            result = wire(await service.open_client(ORIGIN).sign(
                data18.sign_cert,
                digest, "SHA-384", lang="nl"))
            assert notices(interaction) == [("wrong-card", "shown"), ("wrong-card", "closed")]
            wait = interaction.records[0].request
            assert isinstance(wait, CardWaitRequest)
            assert wait.reason is CardWaitReason.WRONG_CARD and wait.operation is Operation.SIGN
            assert wait.holder == f"{Holder().given_names} {Holder().surname}"
            assert wait.lang == "nl"
            pin = last_pin(interaction)
            assert pin.reader == READER_B and pin.lang == "nl"
            return result

    result = run(scenario())
    raw = base64.b64decode(result["signature"])
    key = x509.load_der_x509_certificate(data18.sign_cert).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    der = encode_dss_signature(int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big"))
    key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA384())))
    assert pin_verifies(wrong) == 0 and pin_verifies(right) == 1


@pytest.mark.usefixtures("user_env")
def test_sign_with_only_other_cards_ends_in_certificate_not_found(
    data18: Any, data18_second: Any
) -> None:
    wrong = BeidCard("1.8", data18_second)

    async def scenario() -> None:
        async with running_core({}, {READER_A: wrong}, policy=POLICY) as (
                service, interaction, _):
            with pytest.raises(CertificateNotFoundError):
                await service.open_client(ORIGIN).sign(
                    data18.sign_cert,
                    bytes(32), "SHA-256", timeout=0.2)
            assert notices(interaction) == [("wrong-card", "shown"), ("wrong-card", "closed")]

    run(scenario())
    assert pin_verifies(wrong) == 0


# -- card removed during a PIN prompt --------------------------------------------------------


@pytest.mark.usefixtures("user_env")
@pytest.mark.parametrize("reinsert", [False, True], ids=["removed", "removed-and-reinserted"])
def test_card_removed_closes_the_pin_prompt(data18: Any, reinsert: bool) -> None:
    card = BeidCard("1.8", data18)
    backend = VirtualBackend()
    backend.insert(READER_A, card).result()

    def on_request(kind: str, request: Any) -> None:
        if kind == "pin":
            backend.remove(READER_A)
            if reinsert:  # the same card back at once: still a new insertion
                backend.insert(READER_A, card)

    async def scenario() -> None:
        async with running_core({"pins": [HANG]}, backend=backend, on_request=on_request,
                                policy=POLICY) as (service, interaction, _):
            with pytest.raises(CardRemovedError):
                await service.open_client(ORIGIN).authenticate(NONCE)
            assert interaction.kinds() == ["pin"]
            assert interaction.kinds("cancelled") == ["pin"]

    run(scenario())
    assert pin_verifies(card) == 0


@pytest.mark.usefixtures("user_env")
def test_pin_typed_as_the_card_leaves_is_never_sent(data18: Any) -> None:
    """The user confirms the PIN just as the card is pulled: the PIN goes nowhere."""
    card = BeidCard("1.8", data18)
    backend = VirtualBackend()
    backend.insert(READER_A, card).result()

    def on_request(kind: str, request: Any) -> None:
        if kind == "pin":
            backend.remove(READER_A).result()  # gone before the answer comes back

    async def scenario() -> None:
        async with running_core({"pins": ["1234"]}, backend=backend, on_request=on_request,
                                policy=POLICY) as (service, _, _backend):
            with pytest.raises(CardRemovedError):
                await service.open_client(ORIGIN).authenticate(NONCE)

    run(scenario())
    assert pin_verifies(card) == 0


@pytest.mark.usefixtures("user_env")
def test_card_removed_closes_the_pin_change_prompt(data18: Any) -> None:
    card = BeidCard("1.8", data18)
    backend = VirtualBackend()
    backend.insert(READER_A, card).result()

    def on_request(kind: str, request: Any) -> None:
        if kind == "pin-change":
            backend.remove(READER_A)

    async def scenario() -> None:
        async with running_core({"pinChanges": [HANG]}, backend=backend,
                                on_request=on_request, policy=POLICY) as (
                service, interaction, _):
            with pytest.raises(CardRemovedError):
                await service.open_client(ORIGIN).change_pin()
            assert interaction.kinds("cancelled") == ["pin-change"]

    run(scenario())
    assert pin_verifies(card) == 0 and 0x24 not in [apdu[1] for apdu in card.commands]


# -- language ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("user_env")
def test_lang_reaches_every_prompt(data18: Any, data18_second: Any) -> None:
    cards = {READER_A: BeidCard("1.8", data18), READER_B: BeidCard("1.8", data18_second)}

    async def scenario() -> None:
        async with running_core({"consents": ["allow-once"] * 4, "choices": [1, 0, 0, 0],
                                 "pins": ["1234"], "pinChanges": [["1234", "5678"]]},
                                cards) as (service, interaction, _):
            session = service.open_client(ORIGIN)
            await session.authenticate(NONCE, lang="fr")
            await session.read_identity(photo=False, lang="et")
            await session.change_pin(lang="lt")
            await service.open_client(ORIGIN).get_signing_certificate()  # no lang: OS language
            assert [(r.kind, r.request.lang) for r in interaction.records] == [
                ("consent", "fr"), ("choice", "fr"), ("pin", "fr"),
                ("choice", "et"), ("consent", "et"),
                ("choice", "lt"), ("pin-change", "lt"),
                ("consent", None), ("choice", None), ("consent", None),
            ]

    run(scenario())


# -- through the real agent process -----------------------------------------------------------


PORTAL = "https://portal.example"
PIN = "908172"


@pytest.mark.pcsc
def test_agent_waits_for_the_card_on_pcscd(pki: TestPki, pcscd: Any, vpcd: Any,
                                           tmp_path: Path) -> None:
    """authenticate first, the card 0.5 s after the notice: the token comes back."""
    card = BeidCard("1.8", make_card_data(pki, Holder(pin=PIN), "1.8"))
    nonce = base64.b64encode(os.urandom(32)).decode()

    with AgentProcess(pcscd, tmp_path, {"pins": [PIN]}, allow_origins=(PORTAL,)) as agent:

        async def go() -> dict[str, Any]:
            async with websockets.connect(agent.url, origin=Origin(PORTAL)) as ws:
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "authenticate",
                                          "params": {"challengeNonce": nonce}}))
                for _ in range(600):
                    if "scripted card notice shown" in agent.output:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(vpcd, card)
                answer: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 60))
                return answer

        answer = asyncio.run(go())
        output = agent.stop()
    assert "scripted card notice shown for https://portal.example: no-card" in output
    assert "result" in answer, answer
    validator = AuthTokenValidator(PORTAL, pki.trust_anchors, intermediates=pki.intermediates)
    identity = validator.validate(answer["result"], nonce)
    assert identity.serial_number == Holder().national_number
    assert PIN not in output
