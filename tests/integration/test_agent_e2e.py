"""The whole agent as a user runs it: ``eid-agent serve`` on the real pcscd + vpcd with the
virtual Belgian card, a real WebSocket client, and the server-side validator checking what
comes back. The user is scripted (the only fake part)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from eid_emulator.beid import BeidCard
from eid_emulator.pki import Holder, TestPki, make_card_data
from eid_validator import AuthTokenValidator, SignatureVerificationError, verify_signature
from websockets.exceptions import InvalidStatus

from tests.agent_process import AgentProcess

pytestmark = pytest.mark.pcsc

PORTAL = "https://portal.example"
PIN = "908172"
PIN_BLOCK = "26908172ffffffff"  # the format-2 block of PIN on the card


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


def _card(pki: TestPki, applet: str, **holder: Any) -> BeidCard:
    return BeidCard(applet, make_card_data(pki, Holder(pin=PIN, **holder), applet))


async def _rpc(url: str, origin: str, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    async with websockets.connect(url, origin=origin) as ws:
        answers = []
        for number, (method, params) in enumerate(calls, 1):
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": number, "method": method, "params": params}))
            answers.append(json.loads(await ws.recv()))
        return answers


@pytest.mark.parametrize("applet", ["1.8", "1.7"])
def test_authenticate_and_sign_verify_server_side(applet, pki, pcscd, vpcd, tmp_path) -> None:
    served = vpcd(_card(pki, applet))
    nonce = base64.b64encode(os.urandom(32)).decode()
    digest = hashlib.sha256(b"registration summary").digest()
    script = {"pins": [PIN, PIN], "consents": ["allow-once"]}  # the certificate, each time
    with AgentProcess(pcscd, tmp_path, script, allow_origins=(PORTAL,)) as agent:
        token, cert, _ = asyncio.run(_rpc(agent.url, PORTAL, [
            ("authenticate", {"challengeNonce": nonce}),
            ("getSigningCertificate", {}),
            ("status", {}),
        ]))
        signing_cert = cert["result"]["certificate"]
        (signed,) = asyncio.run(_rpc(agent.url, PORTAL, [
            ("sign", {"certificate": signing_cert, "hash": base64.b64encode(digest).decode(),
                      "hashFunction": "SHA-256"}),
        ]))
        output = agent.stop()
    assert token["result"]["format"] == "web-eid:1.0"
    assert token["result"]["algorithm"] == ("ES384" if applet == "1.8" else "RS256")
    validator = AuthTokenValidator(PORTAL, pki.trust_anchors, intermediates=pki.intermediates)
    identity = validator.validate(token["result"], nonce)
    assert identity.serial_number == Holder().national_number
    with pytest.raises(SignatureVerificationError):
        AuthTokenValidator("https://evil.example", pki.trust_anchors,
                           intermediates=pki.intermediates).validate(token["result"], nonce)
    result = signed["result"]
    signer = verify_signature(
        signing_cert, digest, "SHA-256", base64.b64decode(result["signature"]),
        result["signatureAlgorithm"], trusted_cas=pki.trust_anchors,
        intermediates=pki.intermediates, authenticated=identity,
    )
    assert signer.serial_number == identity.serial_number
    # The PIN went to the card twice (one VERIFY each), and nowhere else.
    verifies = [c for c in served.card.commands if c[1] == 0x20 and len(c) > 5]
    assert len(verifies) == 2
    assert PIN_BLOCK not in output.lower()
    assert PIN not in output
    assert "redacted" in output  # the traffic log ran, with the PIN block hidden


def test_foreign_and_rebinding_origins_are_refused_before_any_card_access(pki, pcscd, vpcd, tmp_path):
    served = vpcd(_card(pki, "1.8"))
    with AgentProcess(pcscd, tmp_path, {"pins": [PIN], "consents": ["deny"]}) as agent:
        # The agent identifies a card it finds (type, holder, for the tray): let it finish.
        stable_since, before = time.monotonic(), served.apdu_count
        while time.monotonic() - stable_since < 0.5:
            time.sleep(0.05)
            if served.apdu_count != before:
                stable_since, before = time.monotonic(), served.apdu_count

        async def attempts() -> list[int]:
            statuses = []
            for origin in ("http://evil.example", "null", "https://evil.example:99999", ""):
                try:
                    async with websockets.connect(agent.url, origin=origin or None):
                        statuses.append(101)
                except InvalidStatus as exc:
                    statuses.append(exc.response.status_code)
            # DNS rebinding: right port, foreign Host name.
            try:
                async with websockets.connect(
                    agent.url, origin="https://evil.example",
                    additional_headers={"Host": f"evil.example:{agent.port}"},
                ):
                    statuses.append(101)
            except InvalidStatus as exc:
                statuses.append(exc.response.status_code)
            return statuses

        assert asyncio.run(attempts()) == [403, 403, 403, 403, 403]
        # An unknown https site may connect, but the user's "deny" stops it before the card.
        (answer,) = asyncio.run(_rpc(agent.url, "https://unknown.example", [
            ("authenticate", {"challengeNonce": base64.b64encode(os.urandom(32)).decode()}),
        ]))
        assert answer["error"]["data"]["code"] == "ERR_EID_ORIGIN_NOT_ALLOWED"
        assert served.apdu_count == before, "no APDU may reach the card before approval"


def test_wrong_pin_reports_tries_left_and_is_never_retried(pki, pcscd, vpcd, tmp_path) -> None:
    served = vpcd(_card(pki, "1.8"))
    # The user types a wrong PIN, sees "2 tries left", then cancels.
    script = {"pins": ["111111", {"cancel": True}]}
    with AgentProcess(pcscd, tmp_path, script, allow_origins=(PORTAL,)) as agent:
        (answer, status) = asyncio.run(_rpc(agent.url, PORTAL, [
            ("authenticate", {"challengeNonce": base64.b64encode(os.urandom(32)).decode()}),
            ("pinStatus", {}),
        ]))
        output = agent.stop()
    assert answer["error"]["data"]["code"] == "ERR_WEBEID_USER_CANCELLED"
    assert status["result"]["pins"][0]["triesLeft"] == 2
    verifies = [c for c in served.card.commands if c[1] == 0x20 and len(c) > 5]
    assert len(verifies) == 1
    assert "111111" not in output


def test_malformed_and_oversized_messages_get_errors(pki, pcscd, vpcd, tmp_path) -> None:
    vpcd(_card(pki, "1.8"))
    with AgentProcess(pcscd, tmp_path, {}, allow_origins=(PORTAL,)) as agent:

        async def go() -> tuple[dict[str, Any], dict[str, Any], int | None]:
            async with websockets.connect(agent.url, origin=PORTAL) as ws:
                await ws.send("{not json")
                parse_error = json.loads(await ws.recv())
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "nope"}))
                unknown = json.loads(await ws.recv())
            async with websockets.connect(agent.url, origin=PORTAL, max_size=None) as ws:
                await ws.send("x" * (1024 * 1024))
                try:
                    await ws.recv()
                except websockets.ConnectionClosed as exc:
                    return parse_error, unknown, exc.rcvd.code if exc.rcvd else None
            return parse_error, unknown, None

        parse_error, unknown, close_code = asyncio.run(go())
        (status,) = asyncio.run(_rpc(agent.url, PORTAL, [("status", {})]))
    assert parse_error["error"]["code"] == -32700
    assert unknown["error"]["code"] == -32601
    assert close_code == 1009  # message too big
    assert status["result"]["readers"][0]["cardPresent"] is True


def test_the_log_file_is_written_without_pins(pki, pcscd, vpcd, tmp_path: Path) -> None:
    vpcd(_card(pki, "1.7"))
    with AgentProcess(pcscd, tmp_path, {"pins": [PIN]}, allow_origins=(PORTAL,)) as agent:
        asyncio.run(_rpc(agent.url, PORTAL, [
            ("authenticate", {"challengeNonce": base64.b64encode(os.urandom(32)).decode()})
        ]))
        agent.stop()
        text = agent.log_file_text()
    assert "authenticated" in text
    assert PIN_BLOCK not in text.lower() and PIN not in text


def test_a_second_agent_on_the_same_port_exits_cleanly(pki, pcscd, tmp_path) -> None:
    import subprocess
    import sys

    with AgentProcess(pcscd, tmp_path, {}) as agent:
        env = pcscd.env()
        env.update(XDG_CONFIG_HOME=str(tmp_path / "c2"), XDG_STATE_HOME=str(tmp_path / "s2"))
        env.pop("DISPLAY", None)
        second = subprocess.run(
            [sys.executable, "-m", "agent", "serve", "--port", str(agent.port), "--no-tray",
             "--interaction", "none"],
            env=env, capture_output=True, text=True, timeout=60,
        )
    assert second.returncode == 3
    assert "already running" in second.stderr
    assert "Traceback" not in second.stderr


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_the_resident_agent_never_loads_cryptography(pki, pcscd, vpcd, tmp_path) -> None:
    """Cards identified, tokens built, signatures made and wss:// served (its certificate set
    made at the first start by a short-lived ``prepare-certificate`` process, then only read):
    the serving process never maps cryptography's library (docs/performance.md, Idle)."""
    vpcd(_card(pki, "1.8"))
    nonce = base64.b64encode(os.urandom(32)).decode()
    digest = hashlib.sha256(b"registration summary").digest()
    script = {"pins": [PIN, PIN], "consents": ["allow-once"]}
    for start in ("first", "second"):
        with AgentProcess(pcscd, tmp_path, script, allow_origins=(PORTAL,)) as agent:
            token, cert = asyncio.run(_rpc(agent.url, PORTAL, [
                ("authenticate", {"challengeNonce": nonce}), ("getSigningCertificate", {})]))
            (signed,) = asyncio.run(_rpc(agent.url, PORTAL, [
                ("sign", {"certificate": cert["result"]["certificate"],
                          "hash": base64.b64encode(digest).decode(), "hashFunction": "SHA-256"})]))
            maps = _maps(agent.proc.pid)
            output = agent.stop()
        assert token["result"]["algorithm"] == "ES384", start
        assert "signature" in signed["result"], start
        assert f"wss://127.0.0.1:{agent.wss_port}" in output, (start, output)
        assert "cryptography" not in maps and "_rust.abi3" not in maps, start
        assert "libpython" in maps or "python" in maps  # the probe reads the right process
    assert (tmp_path / "config" / "eid-agent" / "tls" / "ca.pem").is_file()
