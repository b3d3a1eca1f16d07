"""The operations core on the in-process virtual backend with real Belgian virtual cards
(eid_emulator.beid) and the real driver (agent.cards.beid)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from eid_emulator.beid import BeidCard
from eid_emulator.pki import Holder, TestPki, make_card_data
from eid_validator import AuthTokenValidator

from agent.app.scripted import CANCEL, HANG
from agent.cards import registry
from agent.cards.base import PINPAD, CardSession
from agent.core import consent
from agent.core.interaction import ConsentKind, Operation
from agent.core.policy import MachinePolicy
from agent.errors import (
    BusyError,
    CertificateNotFoundError,
    InvalidArgumentError,
    InvalidPinError,
    OriginNotAllowedError,
    PinBlockedError,
    UserCancelledError,
    UserTimeoutError,
)
from agent.logging import TRAFFIC
from agent.smartcard.backend import PinPadFeatures
from tests import core_support
from tests.core_support import (
    NONCE,
    ORIGIN,
    OTHER_ORIGIN,
    READER_A,
    READER_B,
    run,
    running_core,
    settle,
    verbs,
    verify_token,
    wire,
)

# Fixtures shared by the core tests.
user_env = core_support.user_env
pki = core_support.pki
data18 = core_support.data18
data18_second = core_support.data18_second

pytestmark = pytest.mark.usefixtures("user_env")

INS_VERIFY = 0x20
INS_PSO = 0x2A


def pin_verifies(card: BeidCard) -> int:
    """VERIFY commands that carried a PIN (not the Lc=0 tries-left probe)."""
    return sum(1 for apdu in card.commands if apdu[1] == INS_VERIFY and len(apdu) > 5)

POLICY = MachinePolicy(allowed_origins=(ORIGIN,))


# -- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(("applet", "algorithm"), [("1.8", "ES384"), ("1.7", "RS256")])
def test_authenticate_builds_a_token_the_validator_accepts(
    pki: TestPki, applet: str, algorithm: str
) -> None:
    data = make_card_data(pki, applet=applet)
    card = BeidCard(applet, data)

    async def scenario() -> dict[str, Any]:
        async with running_core({"pins": ["1234"]}, {READER_A: card}, policy=POLICY) as (
            service, interaction, _):
            session = service.open_client(ORIGIN)
            token = wire(await session.authenticate(NONCE))
            request = interaction.records[0].request
            assert interaction.kinds() == ["pin"]  # policy origin: no consent prompt
            assert request.origin == ORIGIN and request.operation is Operation.AUTHENTICATE
            assert request.holder == "Alice Specimen" and request.tries_left == 3
            return token

    token = run(scenario())
    assert token["algorithm"] == algorithm
    assert base64.b64decode(token["unverifiedCertificate"]) == data.auth_cert
    verify_token(token, ORIGIN, NONCE)
    ca = x509.load_der_x509_certificate(data.ca_cert)
    identity = AuthTokenValidator(ORIGIN, [ca]).validate(token, NONCE)
    assert identity is not None
    with pytest.raises(Exception):  # noqa: B017 - any validation error
        AuthTokenValidator(OTHER_ORIGIN, [ca]).validate(token, NONCE)
    assert pin_verifies(card) == 1


def test_bad_nonce_is_rejected_before_anything(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        async with running_core({}, {READER_A: card}, identify_cards=False) as (
            service, interaction, _):
            with pytest.raises(InvalidArgumentError):
                await service.open_client(ORIGIN).authenticate("too-short")
            assert interaction.records == []

    run(scenario())
    assert card.commands == []


# -- consent ---------------------------------------------------------------------------------


def test_denied_origin_gets_no_card_access(data18: Any) -> None:
    card = BeidCard("1.8", data18)
    seen_at_consent: list[int] = []

    def on_request(kind: str, request: Any) -> None:
        if kind == "consent":
            seen_at_consent.append(len(card.commands))

    async def scenario() -> None:
        async with running_core({"consents": ["deny"]}, {READER_A: card},
                                on_request=on_request, identify_cards=False) as (
                service, interaction, _):
            session = service.open_client(ORIGIN)
            with pytest.raises(OriginNotAllowedError):
                await session.authenticate(NONCE)
            with pytest.raises(OriginNotAllowedError):  # not asked again on this connection
                await session.get_signing_certificate()
            assert interaction.kinds() == ["consent"]
            status = wire(await session.status())
            assert status == {"version": service.config.version, "approved": False}

    run(scenario())
    assert seen_at_consent == [0]
    assert card.commands == []


def test_allow_once_lasts_for_the_connection_only(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        async with running_core({"consents": ["allow-once"] * 3 + ["deny"]},
                                {READER_A: card}) as (service, interaction, _):
            first = service.open_client(ORIGIN)
            await first.get_signing_certificate()
            await first.get_signing_certificate()
            # The site once, then the certificate each time (it names the holder).
            assert [r.request.kind for r in interaction.records] == [
                ConsentKind.SITE, ConsentKind.CERTIFICATE, ConsentKind.CERTIFICATE]
            with pytest.raises(OriginNotAllowedError):
                await service.open_client(ORIGIN).get_signing_certificate()
            assert not service.config.approvals_file.exists()

    run(scenario())


def test_allow_always_is_stored_atomically_and_revocable(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        async with running_core({"consents": ["allow-always", "allow-always", "deny"]},
                                {READER_A: card}) as (service, interaction, _):
            result = wire(await service.open_client(ORIGIN).get_signing_certificate())
            assert base64.b64decode(result["certificate"]) == data18.sign_cert
            assert {"cryptoAlgorithm": "ECC", "hashFunction": "SHA-384",
                    "paddingScheme": "NONE"} in result["supportedSignatureAlgorithms"]
            path = service.config.approvals_file
            stored = json.loads(path.read_text())
            assert list(stored["origins"]) == [ORIGIN]
            assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp left
            assert service.snapshot().allowed_origins == (ORIGIN,)
            await service.open_client(ORIGIN).get_signing_certificate()  # not asked again
            assert [r.request.kind for r in interaction.records] == [
                ConsentKind.SITE, ConsentKind.CERTIFICATE]
            service.revoke_origin(ORIGIN)
            await asyncio.sleep(0)
            assert json.loads(path.read_text())["origins"] == {}
            with pytest.raises(OriginNotAllowedError):
                await service.open_client(ORIGIN).get_signing_certificate()
            assert interaction.kinds() == ["consent"] * 3

    run(scenario())


def test_policy_without_user_approval_refuses_other_origins_at_the_handshake() -> None:
    async def scenario() -> None:
        policy = MachinePolicy(allowed_origins=(ORIGIN,), allow_user_approval=False)
        async with running_core({}, policy=policy) as (service, _, _backend):
            service.origin_precheck(ORIGIN)
            with pytest.raises(OriginNotAllowedError):
                service.origin_precheck(OTHER_ORIGIN)
            for bad in ("http://example.org", "null", "https://a.example/path", "file://x"):
                with pytest.raises(OriginNotAllowedError):
                    service.origin_precheck(bad)

    run(scenario())


def test_identity_needs_its_own_consent(data18: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    card = BeidCard("1.8", data18)
    monkeypatch.setattr(consent, "DENIAL_MEMORY", 0.0)  # see test_a_denial_is_remembered

    async def scenario() -> None:
        async with running_core({"consents": ["deny", "allow-always"]}, {READER_A: card},
                                policy=POLICY) as (service, interaction, _):
            session = service.open_client(ORIGIN)
            before = len(card.commands)
            with pytest.raises(UserCancelledError):
                await session.read_identity()
            assert len(card.commands) == before
            identity = wire(await session.read_identity(photo=False))
            assert identity["identity"]["cardNumber"] == "592123456789"
            assert identity["photo"] is None
            await session.read_identity(photo=False)  # stored: not asked again
            kinds = [r.request.kind for r in interaction.records if r.kind == "consent"]
            assert kinds == [ConsentKind.IDENTITY, ConsentKind.IDENTITY]

    run(scenario())


# -- signing ---------------------------------------------------------------------------------


def test_sign_finds_the_card_holding_the_certificate(data18: Any, data18_second: Any) -> None:
    first, second = BeidCard("1.8", data18), BeidCard("1.8", data18_second)
    digest = bytes(range(48))

    async def scenario() -> dict[str, Any]:
        async with running_core({"pins": ["1234"]}, {READER_A: first, READER_B: second},
                                policy=POLICY) as (service, interaction, _):
            session = service.open_client(ORIGIN)
            result = wire(await session.sign(
                data18_second.sign_cert,
                digest, "SHA-384"))
            request = interaction.records[0].request
            assert request.reader == READER_B and request.operation is Operation.SIGN
            assert request.detail and "SHA-384" in request.detail
            with pytest.raises(CertificateNotFoundError):  # other cards only, until the timeout
                await session.sign(data18.auth_cert,
                                   digest, "SHA-384", timeout=0.2)
            assert [r.request.reason.value for r in interaction.records
                    if r.kind == "card-notice" and r.outcome == "shown"] == ["wrong-card"]
            assert interaction.open_card_notices() == 0
            with pytest.raises(InvalidArgumentError):
                await session.sign(data18.sign_cert,
                                   digest[:32], "SHA-384")
            return result

    result = run(scenario())
    assert result["signatureAlgorithm"] == {"cryptoAlgorithm": "ECC", "hashFunction": "SHA-384",
                                            "paddingScheme": "NONE"}
    raw = base64.b64decode(result["signature"])
    key = x509.load_der_x509_certificate(data18_second.sign_cert).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    der = encode_dss_signature(int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big"))
    key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA384())))
    assert pin_verifies(first) == 0 and pin_verifies(second) == 1


# -- PINs ------------------------------------------------------------------------------------


def test_wrong_pin_reasks_with_tries_left(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        async with running_core({"pins": ["0000", "1234"]}, {READER_A: card}, policy=POLICY) as (
                service, interaction, _):
            token = wire(await service.open_client(ORIGIN).authenticate(NONCE))
            verify_token(token, ORIGIN, NONCE)
            assert [r.request.tries_left for r in interaction.records] == [3, 2]

    run(scenario())
    assert pin_verifies(card) == 2


def test_cancel_after_a_wrong_pin_sends_nothing_more(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        async with running_core({"pins": ["0000", CANCEL]}, {READER_A: card},
                                policy=POLICY) as (service, _, _backend):
            with pytest.raises(UserCancelledError):
                await service.open_client(ORIGIN).authenticate(NONCE)

    run(scenario())
    assert pin_verifies(card) == 1 and INS_PSO not in verbs(card)
    assert card.tries_left == 2


def test_no_reask_setting_fails_at_the_first_wrong_pin(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        async with running_core({"pins": ["0000", "1234"]}, {READER_A: card}, policy=POLICY,
                                reask_wrong_pin=False) as (service, interaction, _):
            with pytest.raises(InvalidPinError) as caught:
                await service.open_client(ORIGIN).authenticate(NONCE)
            assert caught.value.tries_left == 2
            assert interaction.kinds() == ["pin"]

    run(scenario())


def test_blocked_pin(data18: Any) -> None:
    card = BeidCard("1.8", data18)
    notices: list[Any] = []

    async def scenario() -> None:
        async with running_core({"pins": ["0000", "1111", "2222", "1234"]}, {READER_A: card},
                                policy=POLICY) as (service, interaction, _):
            service.subscribe(lambda snapshot: None, lambda notice, text: notices.append(notice))
            session = service.open_client(ORIGIN)
            with pytest.raises(PinBlockedError):
                await session.authenticate(NONCE)
            assert len(interaction.records) == 3
            with pytest.raises(PinBlockedError):  # known blocked: nobody is asked
                await session.authenticate(NONCE)
            assert len(interaction.records) == 3
            status = wire(await session.pin_status())
            assert status["pins"][0]["blocked"] is True and status["pins"][0]["triesLeft"] == 0
            assert service.snapshot().readers[0].card.pin_blocked  # type: ignore[union-attr]

    run(scenario())
    assert card.tries_left == 0 and verbs(card).count(INS_PSO) == 0
    assert notices and all(n.value == "pin-blocked" for n in notices)


def test_user_timeout(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        async with running_core({"pins": [HANG]}, {READER_A: card}, policy=POLICY) as (
                service, interaction, _):
            with pytest.raises(UserTimeoutError):
                await service.open_client(ORIGIN).authenticate(NONCE, timeout=0.2)
            assert interaction.kinds("cancelled") == ["pin"]
            assert interaction.records[0].request.timeout == pytest.approx(0.2)

    run(scenario())
    assert pin_verifies(card) == 0


def test_close_cancels_the_pending_prompt(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        prompted = asyncio.Event()
        async with running_core({"pins": [HANG]}, {READER_A: card}, policy=POLICY,
                                on_request=lambda kind, request: prompted.set()) as (
                service, interaction, _):
            session = service.open_client(ORIGIN)
            pending = asyncio.create_task(session.authenticate(NONCE))
            await prompted.wait()
            await session.close()
            with pytest.raises(UserCancelledError):
                await pending
            assert interaction.kinds("cancelled") == ["pin"]
            assert service.snapshot().connected_origins == ()

    run(scenario())
    assert pin_verifies(card) == 0


def test_second_origin_waits_then_gets_busy(data18: Any) -> None:
    card = BeidCard("1.8", data18)

    async def scenario() -> None:
        prompted = asyncio.Event()
        asked: list[str] = []

        def on_request(kind: str, request: Any) -> None:
            asked.append(request.origin)
            prompted.set()

        policy = MachinePolicy(allowed_origins=(ORIGIN, OTHER_ORIGIN))
        async with running_core({"pins": [HANG, "1234"]}, {READER_A: card}, policy=policy,
                                on_request=on_request) as (service, interaction, _):
            first = service.open_client(ORIGIN)
            second = service.open_client(OTHER_ORIGIN)
            pending = asyncio.create_task(first.authenticate(NONCE))
            await prompted.wait()
            with pytest.raises(BusyError):
                await second.authenticate(NONCE, timeout=0.2)
            assert asked == [ORIGIN]  # the second page got no dialog
            waiting = asyncio.create_task(second.authenticate(NONCE))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await first.close()  # the first page goes away: the second one proceeds
            with pytest.raises(UserCancelledError):
                await pending
            verify_token(await waiting, OTHER_ORIGIN, NONCE)

    run(scenario())


def test_pin_pad_reader_uses_secure_entry(data18: Any) -> None:
    """A PIN-pad reader: the driver gets PINPAD inside pinpad_notice, no PIN dialog."""
    from eid_emulator.backend import VirtualBackend

    card = BeidCard("1.8", data18)
    entries: list[object] = []

    class KeypadSession:
        """The real session; PINPAD stands for the user typing 1234 on the keypad."""

        def __init__(self, inner: CardSession) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def sign(self, role: Any, digest: bytes, hash_function: str, pin: Any, **kw: Any) -> bytes:
            entries.append(pin)
            typed = "1234" if pin is PINPAD else pin
            return self._inner.sign(role, digest, hash_function, typed, **kw)

    def opener(connection: Any, cache: Any, known: Any = None) -> Any:
        return KeypadSession(registry.open_session(connection, cache, known))

    async def scenario() -> None:
        backend = VirtualBackend()
        backend.add_reader(READER_A, pinpad=PinPadFeatures(verify_pin_direct=0x42000DB2)).result()
        backend.insert(READER_A, card).result()
        async with running_core({}, backend=backend, policy=POLICY) as (service, interaction, _):
            service.cards.open_session = opener
            token = wire(await service.open_client(ORIGIN).authenticate(NONCE))
            verify_token(token, ORIGIN, NONCE)
            assert interaction.kinds() == ["pinpad"]
            assert wire(await service.open_client(ORIGIN).status())["readers"][0]["pinpad"] is True

    run(scenario())
    assert entries == [PINPAD]


def test_pin_status_and_change(data18: Any, pki: TestPki) -> None:
    card = BeidCard("1.8", make_card_data(pki, Holder(pin="4321"), applet="1.8"))

    async def scenario() -> None:
        async with running_core({"pinChanges": [["0000", "9999"], ["4321", "5678"]],
                                 "pins": ["5678"]}, {READER_A: card}, policy=POLICY) as (
                service, interaction, _):
            session = service.open_client(ORIGIN)
            status = wire(await session.pin_status())
            assert status == {"pins": [{"name": "PIN", "triesLeft": 3, "maxTries": 3,
                                        "blocked": False, "mustChange": False}],
                              "reader": READER_A, "cardType": "BE eID (applet 1.8)"}
            changed = wire(await session.change_pin())
            assert changed["pin"] == "PIN" and changed["changed"] is True
            assert [r.request.tries_left for r in interaction.records] == [3, 2]
            verify_token(await session.authenticate(NONCE), ORIGIN, NONCE)

    run(scenario())


def test_pin_never_in_logs(pki: TestPki, caplog: pytest.LogCaptureFixture) -> None:
    pin = "8416392"
    card = BeidCard("1.8", make_card_data(pki, Holder(pin=pin), applet="1.8"))

    async def scenario() -> None:
        async with running_core({"pins": ["6029481", pin], "pinChanges": [[pin, "7305518"]]},
                                {READER_A: card}, policy=POLICY) as (service, _, _backend):
            session = service.open_client(ORIGIN)
            await session.authenticate(NONCE)
            await session.change_pin()

    caplog.set_level(TRAFFIC)
    run(scenario())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "SEND" in text and "redacted" in text  # traffic was logged, redacted
    for secret in (pin, "7305518", "6029481"):
        assert secret not in text
        assert secret not in repr([r.args for r in caplog.records])


# -- status and events ----------------------------------------------------------------------


def test_events_reach_only_approved_subscribers(data18: Any) -> None:
    async def scenario() -> None:
        async with running_core({}, policy=POLICY) as (service, _, backend):
            approved, unapproved = service.open_client(ORIGIN), service.open_client(OTHER_ORIGIN)
            got: dict[str, list[dict[str, Any]]] = {"approved": [], "unapproved": []}
            approved.subscribe(lambda e: got["approved"].append(wire(e)))
            unapproved.subscribe(lambda e: got["unapproved"].append(wire(e)))
            backend.insert(READER_A, BeidCard("1.8", data18)).result()
            await settle(service)
            backend.remove(READER_A).result()
            await settle(service)
            assert [e["type"] for e in got["approved"]] == [
                "reader-added", "card-inserted", "card-removed"]
            assert got["approved"][1]["card"]["holder"] == "Alice Specimen"
            assert got["unapproved"] == []
            approved.unsubscribe()
            backend.remove_reader(READER_A).result()
            await settle(service)
            assert len(got["approved"]) == 3

    run(scenario())


def test_status_and_snapshot(data18: Any) -> None:
    async def scenario() -> None:
        async with running_core({}, {READER_A: BeidCard("1.8", data18)}, policy=POLICY) as (
                service, interaction, backend):
            status = wire(await service.open_client(ORIGIN).status())
            assert status["readers"] == [{"name": READER_A, "cardPresent": True, "pinpad": False,
                                          "card": {"type": "BE eID (applet 1.8)",
                                                   "holder": "Alice Specimen",
                                                   "serial": data18.chip_serial.hex().upper()}}]
            snapshot = service.snapshot()
            assert snapshot.state.value == "ready" and snapshot.policy_origins == (ORIGIN,)
            assert snapshot.connected_origins == (ORIGIN,)
            backend.remove(READER_A).result()
            await settle(service)
            assert service.snapshot().state.value == "no-card"
            with pytest.raises(UserTimeoutError):  # waited for a card that never came
                await service.open_client(ORIGIN).authenticate(NONCE, timeout=0.2)
            assert [(r.request.reason.value, r.outcome) for r in interaction.records] == [
                ("no-card", "shown"), ("no-card", "closed")]

    run(scenario())


def test_scripted_interaction_needs_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.app.scripted import ScriptedInteraction, ScriptedInteractionDisabledError

    monkeypatch.delenv("EID_AGENT_ALLOW_SCRIPTED", raising=False)
    with pytest.raises(ScriptedInteractionDisabledError):
        ScriptedInteraction({"pins": ["1234"]})
    monkeypatch.setenv("EID_AGENT_ALLOW_SCRIPTED", "true")
    with pytest.raises(ScriptedInteractionDisabledError):
        ScriptedInteraction({"pins": ["1234"]})



def test_tray_control_surface(data18: Any) -> None:
    from agent.core.control import AgentControl

    async def scenario() -> None:
        async with running_core({}, {READER_A: BeidCard("1.8", data18)}, policy=POLICY) as (
                service, _, _backend):
            control: AgentControl = service
            changes: list[Any] = []
            unsubscribe = control.subscribe(changes.append, lambda notice, text: None)
            service.open_client(ORIGIN)
            assert changes and changes[-1].connected_origins == (ORIGIN,)
            unsubscribe()
            assert control.log_folder() == str(service.config.log_dir)
            waiter = asyncio.create_task(service.wait_shutdown())
            await asyncio.sleep(0)
            assert not waiter.done()
            await asyncio.to_thread(control.shutdown)  # the tray calls it from its thread
            await asyncio.wait_for(waiter, 5)

    run(scenario())
