"""The reference portal from a PUBLIC https origin in Debian's Firefox ESR, driven through its
built-in Marionette protocol (tests/browsers.py; no geckodriver), against the real agent on the
private pcscd + vpcd with the virtual Belgian eID.

The portal is https://portal.example:PORT (pref ``network.dns.localDomains`` resolves the name to
loopback) and the pref ``network.lna.address_space.public.override`` makes Firefox treat it as a
public site. The Firefox profile lives in the agent user's HOME with an NSS
database, so the agent adds its local CA there at first start (as it does for real users); the
portal's test CA is added the same way (certutil). The page reaches the agent over wss://.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.emulator.pcscd import PrivatePcscd
from agent.emulator.pki import Holder, TestPki
from examples.portal import AdjustableClock, PortalApp
from examples.portal.server import create_server
from tests.agent_process import AgentProcess
from tests.browsers import Driver, Marionette, TestCa, free_port, make_test_ca, nss_trust
from tests.test_portal_browser import PIN, insert

pytestmark = [pytest.mark.pcsc, pytest.mark.browser]

FIREFOX = "/usr/bin/firefox-esr"
PORTAL_HOST = "portal.example"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "browsers" / "firefox"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


def run_flow(driver: Driver, origin: str, portal: PortalApp, shots: Path) -> None:
    """The whole registration through WebDriver: card login, questions, code, signature."""
    driver.navigate(origin + "/")
    driver.wait_js("document.body.dataset.ready === 'true'")
    driver.wait_js("document.querySelector('#agent-line').dataset.state === 'running'")
    assert driver.execute("return document.querySelector('#local-access').hidden") is True
    assert driver.attribute("#agent-line", "data-transport") == "wss"
    driver.wait_js("document.querySelectorAll('#readers li[data-state=card]').length === 1")
    driver.screenshot(shots / "1-landing.png")
    driver.click("#login")
    driver.wait_visible("#step-details")
    holder = Holder()
    assert driver.text("#user-name") == f"{holder.given_names} {holder.surname}"
    driver.type("#field-email", "alice@example.be")
    driver.type("#field-phone", "+32 470 12 34 56")
    driver.click("#details-submit")
    driver.wait_visible("#step-code")
    driver.screenshot(shots / "2-code.png")
    # The simulated phone app (same browser, same session), then back to the portal.
    driver.navigate(origin + "/phone")
    code = driver.wait_js("(document.querySelector('#phone-code') || {dataset: {}}).dataset.code")
    assert re.fullmatch(r"\d{6}", str(code))
    driver.navigate(origin + "/")
    driver.wait_visible("#step-code")
    driver.type("#field-code", str(code))
    driver.click("#code-submit")
    driver.wait_visible("#step-sign")
    assert holder.national_number in driver.text("#summary")
    driver.click("#sign")
    driver.wait_visible("#step-done")
    assert "alice@example.be" in driver.text("#account")
    driver.screenshot(shots / "3-done.png")
    account = portal.accounts.get(holder.national_number)
    assert account is not None and account.email == "alice@example.be"


@pytest.fixture
def firefox_home(tmp_path: Path) -> Path:
    """The desktop user's HOME with a Firefox profile that has an NSS database."""
    if not os.path.exists(FIREFOX):
        pytest.skip("Debian's firefox-esr is not installed")
    if shutil.which("certutil") is None:
        pytest.skip("certutil (libnss3-tools) is not installed")
    home = tmp_path / "home"
    profile = home / ".mozilla" / "firefox" / "test.default"
    nss_trust(profile, {})
    return home


def test_registration_in_firefox_from_a_public_origin(pki: TestPki, vpcd: Any, pcscd: PrivatePcscd,
                                                     firefox_home: Path, tmp_path: Path) -> None:
    insert(vpcd, pki)
    ca: TestCa = make_test_ca(tmp_path / "portal-ca", "eid-agent test portal CA", [PORTAL_HOST])
    profile = firefox_home / ".mozilla" / "firefox" / "test.default"
    clock = AdjustableClock()

    def make_app(origins: list[str]) -> PortalApp:
        public = origins[0].replace("://127.0.0.1:", f"://{PORTAL_HOST}:")
        return PortalApp(tmp_path / "accounts.sqlite", public, pki.trust_anchors,
                         intermediates=pki.intermediates, clock=clock, test_mode=True)

    httpd = create_server("127.0.0.1", 0, make_app, tls=(ca.leaf_cert, ca.leaf_key))
    origin = httpd.app.site_origin
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    process = AgentProcess(pcscd, firefox_home, {"pins": [PIN, PIN], "consents": []},
                           allow_origins=(origin,))
    httpd.app.agent_url = process.url
    httpd.agent_urls = [process.wss_url, process.url]
    nss_trust(profile, {"eid-agent test portal CA": ca.ca_cert})
    listed = subprocess.run(["certutil", "-L", "-d", f"sql:{profile}"], capture_output=True, text=True)
    assert "eid-agent" in listed.stdout  # the agent's own CA, added by the agent at first start
    marionette_port = free_port()
    (profile / "user.js").write_text("\n".join([
        f'user_pref("marionette.port", {marionette_port});',
        f'user_pref("network.dns.localDomains", "{PORTAL_HOST}");',
        f'user_pref("network.lna.address_space.public.override", "127.0.0.1:{port}");',
        'user_pref("intl.accept_languages", "en-GB");',
        'user_pref("browser.shell.checkDefaultBrowser", false);',
        'user_pref("datareporting.policy.dataSubmissionEnabled", false);',
        'user_pref("toolkit.telemetry.reporter", false);',
        'user_pref("app.update.disabledForTesting", true);',
        'user_pref("network.captive-portal-service.enabled", false);',
        'user_pref("network.connectivity-service.enabled", false);',
        'user_pref("browser.safebrowsing.update.enabled", false);',
        "",
    ]), encoding="utf-8")
    env = {**os.environ, "HOME": str(firefox_home), "MOZ_HEADLESS": "1"}
    env.pop("DISPLAY", None)
    browser = subprocess.Popen(
        [FIREFOX, "--marionette", "--headless", "--no-remote", "--profile", str(profile)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    driver = None
    try:
        driver = Marionette(marionette_port)
        driver.new_session({"acceptInsecureCerts": False})  # the real certificate checks
        run_flow(driver, origin, httpd.app, ARTIFACTS)
        # Firefox says "prompt" for loopback-network but exempts WebSockets from its local
        # network access checks: no prompt appeared, and the portal did not announce one.
        state = driver.execute("return (async () => (await navigator.permissions"
                               ".query({name: 'loopback-network'})).state)();")
        assert state == "prompt"
    finally:
        if driver is not None:
            driver.close()
        browser.terminate()
        try:
            browser.wait(20)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()
        output = process.stop()
        print(f"--- agent output ---\n{output[-20000:]}")
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    assert re.search(rf"connection from '{re.escape(origin)}'", output)
