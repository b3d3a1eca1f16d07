"""Debian's Chromium, a test extension sending the Web eID extension's native frames through
``chrome.runtime.connectNative("eu.webeid")``, the manifest written by
``eid-agent install-webeid-host`` where Chromium reads per-user manifests, the host, the real
agent on the private pcscd + vpcd with the virtual Belgian eID, and the validator.

The page is https (``https://portal.example:<port>``, mapped to 127.0.0.1, self-signed
certificate) so the extension computes an https origin, as on a real portal. The extension
(tests/data/webeid-test-extension) gets a fresh ``key`` per run, so its ID is known.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eid_emulator.beid import BeidCard
from eid_emulator.pki import Holder, TestPki, make_card_data
from eid_validator import AuthTokenValidator, verify_signature

from tests.agent_process import AgentProcess
from tests.webeid_browser import HOST, chromium_extension, https_page, type_pin_in_dialog, xvfb_display
from tests.webeid_support import ROOT, host_env

pytestmark = [pytest.mark.pcsc, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
PIN = "1234"


@pytest.fixture
def page_url(tmp_path: Path) -> Iterator[str]:
    with https_page(tmp_path) as url:
        yield url


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


@contextlib.contextmanager
def _display(typed: bool) -> Iterator[str | None]:
    """A private Xvfb for the agent's Qt dialogs when the PIN is typed in them."""
    if not typed:
        yield None
        return
    with xvfb_display() as display:
        yield display


@pytest.mark.parametrize("typed", [False, True], ids=["scripted-pin", "pin-typed-in-agent-dialog"])
def test_web_eid_frames_from_chromium_through_the_host_to_a_valid_token(
    pki, pcscd, vpcd, tmp_path, page_url, typed
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed")
    from playwright.sync_api import sync_playwright


    served = vpcd(BeidCard("1.8", make_card_data(pki, Holder(pin=PIN), "1.8")))
    short = Path(tempfile.mkdtemp(prefix="we"))
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "agent").mkdir()
    ext_id = chromium_extension(tmp_path / "extension")
    env = host_env(short / "config", TMPDIR=str(short), XDG_RUNTIME_DIR="", HOME=str(home))
    env.pop("XDG_CONFIG_HOME", None)
    # Register as a user would; Chromium with --user-data-dir=~/.config/chromium reads
    # ~/.config/chromium/NativeMessagingHosts/, exactly the per-user place of Debian's Chromium.
    installed = subprocess.run(
        [sys.executable, "-m", "agent", "install-webeid-host", "--user", "--browser", "chromium",
         "--extension-id", ext_id], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    manifest_file = home / ".config" / "chromium" / "NativeMessagingHosts" / "eu.webeid.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    assert f"chrome-extension://{ext_id}/" in manifest["allowed_origins"]
    assert "chrome-extension://ncibgoaomkmdpilpocfeponihegamlic/" in manifest["allowed_origins"]

    agent_env = {"EID_AGENT_CONFIG_DIR": str(short / "config"), "TMPDIR": str(short), "XDG_RUNTIME_DIR": ""}
    nonce = base64.b64encode(os.urandom(32)).decode()
    digest = hashlib.sha256(b"contract").digest()
    # Reading the signing certificate is its own consent (as on the WebSocket): scripted
    # "allow once", or with the real dialogs an earlier "always" kept in the approvals file.
    script: dict[str, Any] = {} if typed else {"pins": [PIN, PIN], "consents": ["allow-once"]}
    if typed:
        (short / "config").mkdir(parents=True, exist_ok=True)
        approvals = {"version": 1, "origins": {page_url: {"certificate": "2026-01-01T00:00:00+00:00"}}}
        (short / "config" / "approved-origins.json").write_text(json.dumps(approvals), encoding="utf-8")
    try:
        with _display(typed) as display, AgentProcess(
            pcscd, tmp_path / "agent", script, allow_origins=(page_url,), log_level="INFO",
            env=agent_env | ({"DISPLAY": display} if display else {}),
            extra_args=("--interaction", "dialogs") if typed else (),
        ) as agent, sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(home / ".config" / "chromium"), executable_path=CHROMIUM, headless=True, env=env,
                ignore_default_args=["--disable-extensions"], ignore_https_errors=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync",
                      f"--host-resolver-rules=MAP {HOST} 127.0.0.1", "--ignore-certificate-errors",
                      f"--load-extension={tmp_path / 'extension'}",
                      f"--disable-extensions-except={tmp_path / 'extension'}"],
            )
            try:
                page = context.new_page()
                page.goto(page_url + "/")
                page.wait_for_function("typeof window.webeid === 'function'")
                call = "([a, p]) => window.webeid(a, p)"

                def with_pin(action: str, payload: dict[str, Any], shot: str) -> Any:
                    if not typed:
                        return page.evaluate(call, [action, payload])
                    # The page waits; meanwhile the user types the PIN in the agent's dialog.
                    page.evaluate("([a, p]) => { window.__r = null; window.webeid(a, p).then("
                                  "r => { window.__r = r; }); }", [action, payload])
                    assert display is not None
                    type_pin_in_dialog(display, PIN, shot)
                    page.wait_for_function("window.__r !== null", timeout=60_000)
                    return page.evaluate("window.__r")

                status = page.evaluate(call, ["web-eid:status", {}])
                options = {} if typed else {"options": {"lang": "nl"}}
                token = with_pin("web-eid:authenticate", {"challengeNonce": nonce, **options},
                                 "webeid-chromium-login")
                cert = page.evaluate(call, ["web-eid:get-signing-certificate", {}])
                signed = with_pin("web-eid:sign", {
                    "certificate": cert.get("certificate"), "hash": base64.b64encode(digest).decode(),
                    "hashFunction": "SHA-256"}, "webeid-chromium-sign")
                # Frames a page cannot make (the extension computes the origin): sent raw.
                http_origin = page.evaluate(call, ["web-eid:raw", {"command": "authenticate", "arguments": {
                    "challengeNonce": nonce, "origin": "http://portal.example"}}])
                oversized = page.evaluate(call, ["web-eid:raw", {"command": "authenticate", "arguments": {
                    "challengeNonce": nonce, "origin": page_url, "padding": "x" * 9000}}])
            finally:
                context.close()
            output = agent.stop()
    finally:
        shutil.rmtree(short, ignore_errors=True)

    assert status["action"] == "web-eid:status-success", status
    assert status["nativeApp"].startswith("2.") and status["reply"] == {}
    assert token["action"] == "web-eid:authenticate-success", token
    names = ("unverifiedCertificate", "algorithm", "signature", "format", "appVersion")
    fields = {k: token[k] for k in names}
    identity = AuthTokenValidator(page_url, pki.trust_anchors, intermediates=pki.intermediates).validate(
        fields, nonce)
    assert identity.serial_number == Holder().national_number
    assert cert["action"] == "web-eid:get-signing-certificate-success", cert
    assert signed["action"] == "web-eid:sign-success", signed
    verify_signature(cert["certificate"], digest, "SHA-256", base64.b64decode(signed["signature"]),
                     signed["signatureAlgorithm"], trusted_cas=pki.trust_anchors,
                     intermediates=pki.intermediates, authenticated=identity)
    assert http_origin["action"] == "web-eid:raw-failure"
    assert http_origin["error"]["code"] == "ERR_WEBEID_NATIVE_INVALID_ARGUMENT"
    assert oversized["error"]["code"] == "ERR_WEBEID_NATIVE_FATAL"
    assert "5 to 8192" in oversized["error"]["message"]
    assert len([c for c in served.card.commands if c[1] == 0x20 and len(c) > 5]) == 2
    assert f"Web eID host connected for {page_url}" in output
    assert PIN not in output.replace(f"pin={PIN}", "")
