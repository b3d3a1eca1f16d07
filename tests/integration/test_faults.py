"""Fault injection against the real agent process on the real pcscd + vpcd.

Each test breaks something while the agent works: the card leaves during a read, during a
sign or during VERIFY; the reader/service goes away (pcscd stopped, pcscd restarted); the
card answers garbage or unexpected status words; the page disconnects while the PIN
prompt is open. After each fault the agent must have answered a typed error (never
ERR_WEBEID_NATIVE_FATAL), still answer ``status``, authenticate normally once the card is
back, and the card's PIN try counter must show no try the (scripted) user did not type.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import pytest
from eid_emulator.beid import BeidCard
from eid_emulator.pcscd import PrivatePcscd
from eid_emulator.pki import Holder, TestPki, make_card_data
from eid_emulator.vpcd import REMOVE, VpcdCard

from agent.pcsc import wait_for_card
from bench.harness import RpcClient
from tests.agent_process import AgentProcess, wait_until
from tests.conftest import READER_0

pytestmark = pytest.mark.pcsc

PORTAL = "https://portal.example"
PIN = "908172"
HANG = {"hang": True}
INS_VERIFY, INS_READ_BINARY, INS_PSO, INS_SELECT = 0x20, 0xB0, 0x2A, 0xA4
FATAL = "ERR_WEBEID_NATIVE_FATAL"
# vpcd answers a transmit to a card that just left with an empty response, which the PC/SC
# layer reports as a card error ("short response"); a real reader says "card removed".
CARD_GONE = ("ERR_EID_CARD_REMOVED", "ERR_EID_NO_CARD", "ERR_EID_CARD_ERROR")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def card(pki: TestPki) -> BeidCard:
    return BeidCard("1.8", make_card_data(pki, Holder(pin=PIN), "1.8"))


@pytest.fixture
def served(card: BeidCard, vpcd: Any) -> VpcdCard:
    served: VpcdCard = vpcd(card)
    served.fault_hook = card.faults.vpcd_hook  # REMOVE really pulls the card out
    return served


def start_agent(pcscd: PrivatePcscd, home: Path, pins: list[Any], card: BeidCard,
                consents: list[str] | None = None) -> AgentProcess:
    agent = AgentProcess(pcscd, home, {"pins": pins, "consents": consents or []},
                         allow_origins=(PORTAL,), log_level="INFO")
    settle(card)
    return agent


def settle(card: BeidCard, quiet: float = 0.5) -> None:
    """Wait until the agent stopped talking to the card (identification at start)."""
    import time

    last, since = len(card.commands), time.monotonic()
    deadline = since + 20
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
        if len(card.commands) != last:
            last, since = len(card.commands), time.monotonic()


def verifies(card: BeidCard) -> list[bytes]:
    """VERIFY commands carrying a PIN (not the Lc=0 status probe)."""
    return [c for c in card.commands if c[1] == INS_VERIFY and len(c) > 5]


def nonce() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def call(url: str, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    client = await RpcClient.open(url, PORTAL)
    try:
        return await client.call(method, params or {})
    finally:
        await client.close()


def rpc(url: str, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return asyncio.run(call(url, method, params))


def error_code(answer: dict[str, Any]) -> str:
    assert "error" in answer, f"expected an error, got {answer}"
    code: str = answer["error"]["data"]["code"]
    assert code != FATAL, answer
    return code


def reinsert(served: VpcdCard) -> None:
    wait_for_card(READER_0, present=False, timeout=10)
    served.insert()
    wait_for_card(READER_0, present=True, timeout=10)


def assert_recovers(agent: AgentProcess, card: BeidCard, served: VpcdCard) -> None:
    """status answers with the card present and a normal authenticate works."""
    def card_present() -> bool:
        readers = rpc(agent.url, "status")["result"]["readers"]
        return any(r["cardPresent"] for r in readers)

    wait_until(card_present, timeout=15)
    settle(card)
    before = len(verifies(card))
    answer = rpc(agent.url, "authenticate", {"challengeNonce": nonce()})
    assert "result" in answer, answer
    assert answer["result"]["format"] == "web-eid:1.0"
    assert len(verifies(card)) == before + 1
    assert card.tries_left == 3


def sign_params(card: BeidCard) -> dict[str, Any]:
    assert card.data.sign_cert is not None
    return {"certificate": base64.b64encode(card.data.sign_cert).decode(),
            "hash": base64.b64encode(os.urandom(32)).decode(), "hashFunction": "SHA-256"}


# --------------------------------------------------------------------------- removal


def test_card_removed_during_a_read(pcscd, card, served, tmp_path) -> None:
    with start_agent(pcscd, tmp_path, [PIN], card, consents=["allow-once"]) as agent:
        card.faults.remove_next(ins=INS_READ_BINARY)
        answer = rpc(agent.url, "readIdentity", {"photo": True})
        assert error_code(answer) in CARD_GONE
        assert not served.inserted
        assert "result" in rpc(agent.url, "status")
        reinsert(served)
        assert_recovers(agent, card, served)
    assert verifies(card) and len(verifies(card)) == 1  # only the recovery's typed PIN


def test_card_removed_during_a_sign_spends_no_try(pcscd, card, served, tmp_path) -> None:
    with start_agent(pcscd, tmp_path, [PIN, PIN], card) as agent:
        card.faults.remove_next(ins=INS_PSO)
        answer = rpc(agent.url, "sign", sign_params(card))
        assert error_code(answer) in CARD_GONE
        assert len(verifies(card)) == 1  # the PIN the user typed, once, no retry
        assert card.tries_left == 3
        assert "result" in rpc(agent.url, "status")
        reinsert(served)
        assert_recovers(agent, card, served)


def test_card_removed_during_verify_is_not_retried(pcscd, card, served, tmp_path) -> None:
    with start_agent(pcscd, tmp_path, [PIN, PIN], card) as agent:
        # Pull the card as the PIN-carrying VERIFY reaches it (the Lc=0 probe passes).
        served.fault_hook = lambda apdu: REMOVE if apdu[1] == INS_VERIFY and len(apdu) > 5 else None
        answer = rpc(agent.url, "authenticate", {"challengeNonce": nonce()})
        assert error_code(answer) in CARD_GONE
        served.fault_hook = card.faults.vpcd_hook
        reinsert(served)
        settle(card)
        # Nothing re-sent the PIN when the card came back.
        assert verifies(card) == []
        assert card.tries_left == 3
        assert_recovers(agent, card, served)


# --------------------------------------------------------------------------- service


def test_reader_gone_when_pcscd_stops(pcscd, card, served, tmp_path) -> None:
    with start_agent(pcscd, tmp_path, [PIN], card) as agent:
        pcscd.stop_daemon()
        try:
            wait_until(lambda: rpc(agent.url, "status")["result"]["readers"] == [], timeout=15)
            # The agent waits (up to the page's timeout) for a reader to come back.
            answer = rpc(agent.url, "authenticate", {"challengeNonce": nonce(),
                                                     "options": {"userInteractionTimeout": 1500}})
            assert error_code(answer) in ("ERR_WEBEID_USER_TIMEOUT", "ERR_EID_NO_READER")
        finally:
            pcscd.start_daemon()
        served.insert()  # vpcd listens again: the card comes back
        wait_for_card(READER_0, present=True, timeout=10)
        assert_recovers(agent, card, served)
    assert card.tries_left == 3


def test_pcscd_restarted(pcscd, card, served, tmp_path) -> None:
    with start_agent(pcscd, tmp_path, [PIN, PIN], card) as agent:
        assert "result" in rpc(agent.url, "authenticate", {"challengeNonce": nonce()})
        pcscd.restart_daemon()
        wait_until(lambda: not served.inserted, timeout=10)  # vpcd dropped the card
        served.insert()
        wait_for_card(READER_0, present=True, timeout=10)
        assert_recovers(agent, card, served)
    assert len(verifies(card)) == 2


def test_pcscd_restarted_while_the_pin_prompt_is_open(pcscd, card, served, tmp_path) -> None:
    """The card (and its reader) vanish while the user types: the typed PIN never goes to
    another card session by surprise, and the agent recovers."""
    with start_agent(pcscd, tmp_path, [HANG, PIN], card) as agent:

        async def scenario() -> dict[str, Any]:
            client = await RpcClient.open(agent.url, PORTAL)
            try:
                await client.send("sign", sign_params(card), 1)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(pcscd.restart_daemon)
                status = await call(agent.url, "status")
                assert "result" in status
                await client.ws.close()  # the page gives up
                return status
            finally:
                await client.close()

        asyncio.run(scenario())
        served.insert()
        wait_for_card(READER_0, present=True, timeout=10)
        assert verifies(card) == []
        assert_recovers(agent, card, served)


# --------------------------------------------------------------------------- bad answers


@pytest.mark.parametrize(
    ("fault", "method"),
    [
        ("garble-pso", "sign"),
        ("6F00-pso", "sign"),
        ("6A82-select", "readIdentity"),
        ("6F00-read", "readIdentity"),
        ("short-read", "readIdentity"),
        ("garble-verify", "authenticate"),
        ("6E00-verify", "authenticate"),
        ("6300-verify", "authenticate"),
    ],
)
def test_garbled_or_unexpected_status_words(pcscd, card, served, tmp_path, fault, method) -> None:
    kind, ins_name = fault.rsplit("-", 1)
    ins = {"pso": INS_PSO, "select": INS_SELECT, "read": INS_READ_BINARY,
           "verify": INS_VERIFY}[ins_name]
    with start_agent(pcscd, tmp_path, [PIN, PIN, PIN], card, consents=["allow-once"]) as agent:
        if kind == "garble":
            card.faults.garble_next(ins=ins)
        elif kind == "short":
            card.faults.garble_next(ins=ins, payload=b"\x90")  # one byte: no status word
        else:
            card.faults.fail_next(int(kind, 16), ins=ins)
        params = {"sign": sign_params(card), "readIdentity": {"photo": False},
                  "authenticate": {"challengeNonce": nonce()}}[method]
        before = len(verifies(card))
        answer = rpc(agent.url, method, params)
        assert card.faults.pending == 0, "the fault never reached the card"
        if "error" in answer:
            error_code(answer)  # typed, not fatal
        # No automatic retry: at most one VERIFY per PIN the script typed for this request.
        assert len(verifies(card)) - before <= 1
        assert "result" in rpc(agent.url, "status")
        assert_recovers(agent, card, served)
    assert card.tries_left == 3


# --------------------------------------------------------------------------- the page


@pytest.mark.parametrize("method", ["authenticate", "sign"])
def test_page_disconnects_while_the_pin_prompt_is_open(pcscd, card, served, tmp_path, method) -> None:
    with start_agent(pcscd, tmp_path, [HANG, PIN], card) as agent:

        async def scenario() -> None:
            client = await RpcClient.open(agent.url, PORTAL)
            params = {"challengeNonce": nonce()} if method == "authenticate" else sign_params(card)
            await client.send(method, params, 1)
            await asyncio.sleep(0.5)  # the prompt is open (the script never answers it)
            await client.close()

        asyncio.run(scenario())
        assert "result" in rpc(agent.url, "status")
        assert verifies(card) == []  # the user typed nothing: nothing went to the card
        assert card.tries_left == 3
        assert_recovers(agent, card, served)  # the card is not left busy


def test_vpcd_disconnects_in_the_middle_of_an_answer(pcscd, card, served, tmp_path) -> None:
    """The card's socket dies while pcscd waits for an answer (reader-side failure)."""
    with start_agent(pcscd, tmp_path, [PIN, PIN], card) as agent:
        served.fault_hook = lambda apdu: REMOVE if apdu[1] == INS_PSO else None
        answer = rpc(agent.url, "authenticate", {"challengeNonce": nonce()})
        assert error_code(answer) in CARD_GONE
        served.fault_hook = card.faults.vpcd_hook
        reinsert(served)
        assert_recovers(agent, card, served)
    assert card.tries_left == 3
