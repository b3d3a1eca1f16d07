"""Debian's Firefox ESR (driven through its own Marionette, no geckodriver): the test
extension as a temporary add-on, the host found through the per-user manifest that
``eid-agent install-webeid-host --browser firefox`` writes in ``~/.mozilla/native-messaging-hosts``
(Firefox starts it with the manifest path and the add-on ID as arguments), the real agent and
the virtual Belgian card; the token and signature validated."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from eid_emulator.beid import BeidCard
from eid_emulator.pki import Holder, TestPki, make_card_data
from eid_validator import AuthTokenValidator, verify_signature

from tests.agent_process import AgentProcess, free_port
from tests.marionette import Marionette
from tests.webeid_browser import FIREFOX_ADDON_ID, HOST, firefox_addon, https_page
from tests.webeid_support import ROOT, host_env

pytestmark = [pytest.mark.pcsc, pytest.mark.browser]

FIREFOX = "/usr/bin/firefox-esr"
ADDON_ID = FIREFOX_ADDON_ID
PIN = "1234"


@pytest.fixture
def page_url(tmp_path: Path) -> Iterator[str]:
    with https_page(tmp_path) as url:
        yield url


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


def _profile(folder: Path, marionette_port: int) -> None:
    folder.mkdir()
    prefs = {
        "marionette.port": marionette_port,
        "network.dns.localDomains": HOST,  # portal.example resolves to this machine
        "browser.shell.checkDefaultBrowser": False,
        "browser.startup.homepage_override.mstone": "ignore",
        "datareporting.policy.dataSubmissionEnabled": False,
        "toolkit.telemetry.reportingpolicy.firstRun": False,
        "app.update.disabledForTesting": True,
        "network.captive-portal-service.enabled": False,
        "network.connectivity-service.enabled": False,
        "extensions.update.enabled": False,
        "browser.safebrowsing.update.enabled": False,
    }
    (folder / "user.js").write_text(
        "".join(f'user_pref("{k}", {json.dumps(v)});\n' for k, v in prefs.items()), encoding="utf-8")


def test_web_eid_frames_from_firefox_through_the_host_to_a_valid_token(
    pki, pcscd, vpcd, tmp_path, page_url
) -> None:
    if not os.path.exists(FIREFOX):
        pytest.skip(f"{FIREFOX} not installed")
    served = vpcd(BeidCard("1.8", make_card_data(pki, Holder(pin=PIN), "1.8")))
    short = Path(tempfile.mkdtemp(prefix="wf"))
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "agent").mkdir()
    firefox_addon(tmp_path / "addon")
    env = host_env(short / "config", TMPDIR=str(short), XDG_RUNTIME_DIR="", HOME=str(home))
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("DISPLAY", None)
    installed = subprocess.run(
        [sys.executable, "-m", "agent", "install-webeid-host", "--browser", "firefox",
         "--extension-id", ADDON_ID], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    manifest = json.loads((home / ".mozilla/native-messaging-hosts/eu.webeid.json").read_text())
    assert manifest["allowed_extensions"] == ["{e68418bc-f2b0-4459-a9ea-3e72b6751b07}", ADDON_ID]

    nonce = base64.b64encode(os.urandom(32)).decode()
    digest = hashlib.sha256(b"contract").digest()
    port = free_port()
    _profile(tmp_path / "profile", port)
    agent_env = {"EID_AGENT_CONFIG_DIR": str(short / "config"), "TMPDIR": str(short), "XDG_RUNTIME_DIR": ""}
    firefox = None
    try:
        script = {"pins": [PIN, PIN], "consents": ["allow-once"]}  # the certificate's own consent
        with AgentProcess(pcscd, tmp_path / "agent", script, allow_origins=(page_url,),
                          env=agent_env, log_level="INFO") as agent:
            firefox = subprocess.Popen(
                [FIREFOX, "--headless", "--marionette", "--no-remote", "--profile", str(tmp_path / "profile"),
                 "about:blank"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            client = Marionette(port)
            try:
                session = client.call("WebDriver:NewSession", {"acceptInsecureCerts": True})
                assert session["capabilities"]["acceptInsecureCerts"] is True, session
                client.call("Addon:Install", {"path": str(tmp_path / "addon"), "temporary": True})
                fragment = urllib.parse.quote(json.dumps(
                    {"nonce": nonce, "hash": base64.b64encode(digest).decode()}))
                client.call("WebDriver:Navigate", {"url": f"{page_url}/#{fragment}"})
                deadline = time.monotonic() + 90
                text = ""
                while not text and time.monotonic() < deadline:
                    time.sleep(0.3)
                    script = "return document.getElementById('result').textContent"
                    text = client.call("WebDriver:ExecuteScript", {"script": script, "args": []})["value"]
            finally:
                client.close()
            output = agent.stop()
    finally:
        if firefox is not None:
            firefox.terminate()
            try:
                firefox.wait(15)
            except subprocess.TimeoutExpired:
                firefox.kill()
        shutil.rmtree(short, ignore_errors=True)

    assert text, "the page never finished:\n" + output[-3000:]
    result = json.loads(text)
    assert "exception" not in result, result
    assert result["status"]["action"] == "web-eid:status-success", result["status"]
    assert result["status"]["nativeApp"].startswith("2.")
    token = result["token"]
    assert token["action"] == "web-eid:authenticate-success", token
    names = ("unverifiedCertificate", "algorithm", "signature", "format", "appVersion")
    identity = AuthTokenValidator(page_url, pki.trust_anchors, intermediates=pki.intermediates).validate(
        {k: token[k] for k in names}, nonce)
    signed = result["signed"]
    assert signed["action"] == "web-eid:sign-success", signed
    verify_signature(result["cert"]["certificate"], digest, "SHA-256", base64.b64decode(signed["signature"]),
                     signed["signatureAlgorithm"], trusted_cas=pki.trust_anchors,
                     intermediates=pki.intermediates, authenticated=identity)
    assert len([c for c in served.card.commands if c[1] == 0x20 and len(c) > 5]) == 2
    assert f"Web eID host connected for {page_url}" in output
