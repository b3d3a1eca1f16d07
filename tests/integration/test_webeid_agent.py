"""The ``eu.webeid`` host with the real agent process, the private pcscd + vpcd and virtual
cards (Belgian 1.8 and 1.7, Estonian): tokens and signatures checked with the validator,
consent and origin rules, the host killed mid-PIN-dialog, and the host starting the agent."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eid_emulator.beid import BeidCard
from eid_emulator.idemia import make_card as make_idemia
from eid_emulator.pki import Holder, TestPki, make_card_data
from eid_emulator.pki_other import make_pki
from eid_validator import AuthTokenValidator, verify_signature

from agent.webeid import paths
from tests.agent_process import AgentProcess, free_port, wait_until
from tests.webeid_support import Host, action, host_env

pytestmark = pytest.mark.pcsc

PORTAL = "https://portal.example"
PIN = "908172"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short folder for the socket (Unix socket paths are limited to ~107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="we") as folder:
        yield Path(folder)


def _env(short_tmp: Path) -> dict[str, str]:
    return {"EID_AGENT_CONFIG_DIR": str(short_tmp / "config"), "TMPDIR": str(short_tmp),
            "XDG_RUNTIME_DIR": ""}


def _agent(pcscd: Any, home: Path, short_tmp: Path, script: dict[str, Any], **kw: Any) -> AgentProcess:
    return AgentProcess(pcscd, home, script, env=_env(short_tmp), **kw)


def _nonce() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _approve_certificate(short_tmp: Path, origin: str) -> None:
    """The user said "always" to ``origin`` reading the signing certificate, earlier (the
    approvals file the agent keeps in its settings folder)."""
    config = short_tmp / "config"
    config.mkdir(exist_ok=True)
    approvals = {"version": 1, "origins": {origin: {"certificate": "2026-01-01T00:00:00+00:00"}}}
    (config / "approved-origins.json").write_text(json.dumps(approvals), encoding="utf-8")


def _verifies(card: Any) -> int:
    return len([c for c in card.commands if c[1] == 0x20 and len(c) > 5])


@pytest.mark.parametrize("applet", ["1.8", "1.7"])
def test_belgian_login_and_sign_through_the_host(applet, pki, pcscd, vpcd, tmp_path, short_tmp) -> None:
    served = vpcd(BeidCard(applet, make_card_data(pki, Holder(pin=PIN), applet)))
    env = host_env(short_tmp / "config", **_env(short_tmp))
    nonce = _nonce()
    digest = hashlib.sha384(b"contract").digest()
    # the site is allowed; reading the signing certificate is its own consent (as on the WebSocket)
    script = {"pins": [PIN, PIN], "consents": ["allow-once"]}
    with _agent(pcscd, tmp_path, short_tmp, script, allow_origins=(PORTAL,)) as agent:
        assert action(env, "quit", {}) == {}
        token = action(env, "authenticate", {"challengeNonce": nonce, "origin": PORTAL, "lang": "fr"})
        cert = action(env, "get-signing-certificate", {"origin": PORTAL})
        signed = action(env, "sign", {"hash": base64.b64encode(digest).decode(), "hashFunction": "SHA-384",
                                      "certificate": cert["certificate"], "origin": PORTAL})
        output = agent.stop()
    assert set(token) == {"unverifiedCertificate", "algorithm", "signature", "format", "appVersion"}
    assert token["algorithm"] == ("ES384" if applet == "1.8" else "RS256")
    validator = AuthTokenValidator(PORTAL, pki.trust_anchors, intermediates=pki.intermediates)
    identity = validator.validate(token, nonce)
    assert identity.serial_number == Holder().national_number
    assert cert["supportedSignatureAlgorithms"]
    assert set(signed) == {"signature", "signatureAlgorithm"}
    signer = verify_signature(cert["certificate"], digest, "SHA-384", base64.b64decode(signed["signature"]),
                              signed["signatureAlgorithm"], trusted_cas=pki.trust_anchors,
                              intermediates=pki.intermediates, authenticated=identity)
    assert signer.serial_number == identity.serial_number
    assert _verifies(served.card) == 2
    assert PIN not in output
    assert "Web eID host connected for https://portal.example" in output
    assert "consent prompt: https://portal.example for certificate" in output


def test_estonian_login_through_the_host(pcscd, vpcd, tmp_path, short_tmp) -> None:
    ee = make_pki("EE2018")
    card = make_idemia(ee, "EE")
    vpcd(card)
    env = host_env(short_tmp / "config", **_env(short_tmp))
    nonce = _nonce()
    with _agent(pcscd, tmp_path, short_tmp, {"pins": ["1234"]}, allow_origins=(PORTAL,)):
        token = action(env, "authenticate", {"challengeNonce": nonce, "origin": PORTAL})
    assert token["algorithm"] == "ES384", token
    identity = AuthTokenValidator(PORTAL, ee.trust_anchors, intermediates=[ee.ca.cert]).validate(token, nonce)
    assert identity.serial_number == "PNOEE-38001085718"
    assert card.tries_left("PIN1") == 3


def test_consent_applies_and_bad_origins_never_reach_the_card(pki, pcscd, vpcd, tmp_path, short_tmp) -> None:
    served = vpcd(BeidCard("1.8", make_card_data(pki, Holder(pin=PIN), "1.8")))
    env = host_env(short_tmp / "config", **_env(short_tmp))
    with _agent(pcscd, tmp_path, short_tmp, {"consents": ["deny"], "pins": []}) as agent:
        wait_until(lambda: "card" in agent.output.lower() or served.apdu_count > 0, 10)
        time.sleep(1.0)  # let the agent finish identifying the inserted card
        before = served.apdu_count
        for origin in ("http://localhost:8080", "https://portal.example/login", "http://portal.example"):
            reply = action(env, "authenticate", {"challengeNonce": _nonce(), "origin": origin})
            assert reply["error"]["code"] == "ERR_WEBEID_NATIVE_INVALID_ARGUMENT"
        # An unknown https site: the agent asks the user (site consent, as on the WebSocket); "deny".
        reply = action(env, "authenticate", {"challengeNonce": _nonce(), "origin": "https://unknown.example"})
        output = agent.stop()
    assert reply["error"]["code"] == "ERR_WEBEID_USER_CANCELLED"
    assert reply["error"]["eidAgentCode"] == "ERR_EID_ORIGIN_NOT_ALLOWED"
    assert served.apdu_count == before, "no APDU before the user approved the site"
    assert "scripted consent prompt shown for https://unknown.example" in output
    assert "localhost:8080" not in output


def test_the_channel_refuses_http_origins_itself(pki, pcscd, vpcd, tmp_path, short_tmp) -> None:
    with _agent(pcscd, tmp_path, short_tmp, {}, allow_origins=("http://localhost:8080",)):
        path = paths.channel_path(short_tmp / "config", dict(os.environ) | _env(short_tmp))
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            stream = sock.makefile("rwb", buffering=0)
            stream.write(b'{"origin":"http://localhost:8080"}\n')
            answer = json.loads(stream.readline())
    assert answer["error"]["data"]["code"] == "ERR_EID_ORIGIN_NOT_ALLOWED"


def test_killing_the_host_mid_pin_dialog_closes_it_and_sends_no_pin(pki, pcscd, vpcd, tmp_path,
                                                                     short_tmp) -> None:
    served = vpcd(BeidCard("1.8", make_card_data(pki, Holder(pin=PIN), "1.8")))
    env = host_env(short_tmp / "config", **_env(short_tmp))
    script = {"pins": [{"hang": True}, PIN]}
    with _agent(pcscd, tmp_path, short_tmp, script, allow_origins=(PORTAL,)) as agent:
        host = Host(env)
        host.handshake()
        host.send({"command": "authenticate", "arguments": {"challengeNonce": _nonce(), "origin": PORTAL}})
        wait_until(lambda: "scripted pin prompt shown for https://portal.example" in agent.output, 20)
        os.kill(host.proc.pid, signal.SIGKILL)  # what Chromium does ~2 s after the port closes
        host.proc.wait()
        wait_until(lambda: "pin prompt for https://portal.example closed by the agent" in agent.output, 5)
        assert _verifies(served.card) == 0
        assert served.card.tries_left == 3
        # The card is free again: the next action goes through.
        nonce = _nonce()
        token = action(env, "authenticate", {"challengeNonce": nonce, "origin": PORTAL})
        agent.stop()
    AuthTokenValidator(PORTAL, pki.trust_anchors, intermediates=pki.intermediates).validate(token, nonce)
    assert _verifies(served.card) == 1


def test_the_host_starts_the_agent_when_it_is_not_running(pki, pcscd, vpcd, tmp_path, short_tmp) -> None:
    vpcd(BeidCard("1.8", make_card_data(pki, Holder(pin=PIN), "1.8")))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"AllowedOrigins": [PORTAL], "Port": free_port()}), encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    env = host_env(short_tmp / "config", **(pcscd.env() | _env(short_tmp) | {
        "HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "EID_AGENT_POLICY_FILE": str(policy),
    }))
    env.pop("DISPLAY", None)
    _approve_certificate(short_tmp, PORTAL)
    path = paths.channel_path(short_tmp / "config", env)
    assert not os.path.exists(path)
    # webeid.status() (the extension's quit) answers at once and starts the agent meanwhile.
    started = time.monotonic()
    assert action(env, "quit", {}) == {}
    assert time.monotonic() - started < 2  # the extension's limit for quit
    try:
        wait_until(lambda: os.path.exists(path), 15)
        reply = action(env, "get-signing-certificate", {"origin": PORTAL}, timeout=30)
        assert reply.get("certificate"), reply
        # The agent outlives the host (its own session): it still answers, as this user.
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        assert uid == os.getuid()
        assert os.getsid(pid) != os.getsid(0)
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        assert oct(os.stat(Path(path).parent).st_mode & 0o777) == "0o700"
        # A second action finds the running agent.
        again = action(env, "get-signing-certificate", {"origin": PORTAL})
        assert again["certificate"] == reply["certificate"]
    finally:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not os.path.exists(path), 15)


def test_the_host_starts_the_agent_on_demand_and_waits_for_it(pki, pcscd, vpcd, tmp_path, short_tmp) -> None:
    """No agent: the first card action starts it and waits (bounded) for it."""
    vpcd(BeidCard("1.8", make_card_data(pki, Holder(pin=PIN), "1.8")))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"AllowedOrigins": [PORTAL], "Port": free_port()}), encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    env = host_env(short_tmp / "config", **(pcscd.env() | _env(short_tmp) | {
        "HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "EID_AGENT_POLICY_FILE": str(policy),
    }))
    env.pop("DISPLAY", None)
    _approve_certificate(short_tmp, PORTAL)
    path = paths.channel_path(short_tmp / "config", env)
    started = time.monotonic()
    reply = action(env, "get-signing-certificate", {"origin": PORTAL}, timeout=30)
    elapsed = time.monotonic() - started
    try:
        assert reply.get("certificate"), reply
        assert elapsed < 12  # the host waits at most 10 s for the agent it started
    finally:
        if os.path.exists(path):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
                pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not os.path.exists(path), 15)


def test_killing_the_host_closes_the_real_pin_dialog(pki, pcscd, vpcd, tmp_path, short_tmp) -> None:
    """The agent's own Qt dialog under Xvfb: it names the site; the host is SIGKILLed while it
    is open; the dialog goes away and no PIN reaches the card."""
    from tests.webeid_browser import grab_window, pin_dialogs, xvfb_display

    served = vpcd(BeidCard("1.8", make_card_data(pki, Holder(pin=PIN), "1.8")))
    env = host_env(short_tmp / "config", **_env(short_tmp))
    with xvfb_display() as display, AgentProcess(
        pcscd, tmp_path, {}, allow_origins=(PORTAL,), env=_env(short_tmp) | {"DISPLAY": display},
        extra_args=("--interaction", "dialogs"),
    ) as agent:
        host = Host(env)
        host.handshake()
        host.send({"command": "authenticate", "arguments": {"challengeNonce": _nonce(), "origin": PORTAL}})
        wait_until(lambda: bool(pin_dialogs(display)), 60)
        time.sleep(0.5)  # let it paint
        shot = grab_window(display, pin_dialogs(display)[-1], "webeid-pin-dialog")
        assert shot.is_file()
        os.kill(host.proc.pid, signal.SIGKILL)
        host.proc.wait()
        wait_until(lambda: not pin_dialogs(display), 10)
        assert agent.proc.poll() is None  # the agent carries on
        output = agent.stop()
    assert _verifies(served.card) == 0
    assert served.card.tries_left == 3
    assert "Web eID host for https://portal.example gone" in output
