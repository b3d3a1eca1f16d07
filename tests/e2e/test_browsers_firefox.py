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

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eid_emulator.pcscd import PrivatePcscd
from eid_emulator.pki import Holder, TestPki

from examples.portal import AdjustableClock, PortalApp
from examples.portal.server import create_server
from tests.agent_process import AgentProcess
from tests.browsers import Driver, Marionette, TestCa, free_port, make_test_ca, nss_trust
from tests.e2e.test_portal_browser import PIN, insert

pytestmark = [pytest.mark.pcsc, pytest.mark.browser]

FIREFOX = "/usr/bin/firefox-esr"
PORTAL_HOST = "portal.example"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browsers" / "firefox"


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


@dataclass
class Setup:
    origin: str
    port: int
    app: PortalApp
    agent: AgentProcess
    profile: Path
    home: Path


@pytest.fixture
def setup(pki: TestPki, vpcd: Any, pcscd: PrivatePcscd, firefox_home: Path,
          tmp_path: Path) -> Iterator[Setup]:
    """The card, the https portal at portal.example, the real agent, the Firefox profile."""
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
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    process = AgentProcess(pcscd, firefox_home, {"pins": [PIN, PIN], "consents": ["allow-once"]},
                           allow_origins=(origin,))
    httpd.app.agent_url = process.url
    httpd.agent_urls = [process.wss_url, process.url]
    nss_trust(profile, {"eid-agent test portal CA": ca.ca_cert})
    try:
        yield Setup(origin, int(httpd.server_address[1]), httpd.app, process, profile, firefox_home)
    finally:
        print(f"--- agent output ---\n{process.stop()[-20000:]}")
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# Firefox in a private mount namespace whose /etc/firefox/policies is the folder that
# `eid-agent write-browser-policy --root DIR` wrote (no change to the machine's policies).
NAMESPACED = """mkdir -p /etc/firefox/policies
mount --bind "$0" /etc/firefox/policies
exec "$@"
"""


@contextmanager
def firefox(setup: Setup, extra_prefs: dict[str, Any] | None = None,
            policies: Path | None = None) -> Iterator[Marionette]:
    """Firefox ESR (headless) on the profile, the portal counted as a public site; with
    ``policies``, that folder is Firefox's /etc/firefox/policies."""
    marionette_port = free_port()
    prefs: dict[str, Any] = {
        "marionette.port": marionette_port,
        "network.dns.localDomains": PORTAL_HOST,
        "network.lna.address_space.public.override": f"127.0.0.1:{setup.port}",
        "intl.accept_languages": "en-GB",
        "browser.shell.checkDefaultBrowser": False,
        "datareporting.policy.dataSubmissionEnabled": False,
        "toolkit.telemetry.reporter": False,
        "app.update.disabledForTesting": True,
        "network.captive-portal-service.enabled": False,
        "network.connectivity-service.enabled": False,
        "browser.safebrowsing.update.enabled": False,
        **(extra_prefs or {}),
    }
    (setup.profile / "user.js").write_text(
        "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items()),
        encoding="utf-8")
    env = {**os.environ, "HOME": str(setup.home), "MOZ_HEADLESS": "1"}
    env.pop("DISPLAY", None)
    command = [FIREFOX, "--marionette", "-remote-allow-system-access", "--headless", "--no-remote",
               "--profile", str(setup.profile)]
    if policies is not None:
        command = ["unshare", "-m", "--propagation", "private", "sh", "-c", NAMESPACED,
                   str(policies), *command]
    browser = subprocess.Popen(
        command,
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    driver = None
    try:
        driver = Marionette(marionette_port)
        driver.new_session({"acceptInsecureCerts": False})  # the real certificate checks
        yield driver
    finally:
        if driver is not None:
            driver.close()
        browser.terminate()
        try:
            browser.wait(20)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()


def test_registration_in_firefox_from_a_public_origin(setup: Setup) -> None:
    listed = subprocess.run(["certutil", "-L", "-d", f"sql:{setup.profile}"], capture_output=True,
                            text=True, check=True)
    assert "eid-agent" in listed.stdout  # the agent's own CA, added by the agent at first start
    with firefox(setup) as driver:
        run_flow(driver, setup.origin, setup.app, ARTIFACTS)
        # Firefox says "prompt" for loopback-network but exempts WebSockets from its local
        # network access checks: no prompt appeared, and the portal did not announce one.
        state = driver.execute("return (async () => (await navigator.permissions"
                               ".query({name: 'loopback-network'})).state)();")
        assert state == "prompt"
    assert re.search(rf"connection from '{re.escape(setup.origin)}'", setup.agent.output)


def answer_firefox_prompt(driver: Marionette, allow: bool, before: Any = None) -> str:
    """Wait for Firefox's own "wants to access other apps and services on this device"
    notification (browser UI: Marionette's chrome context, -remote-allow-system-access), call
    ``before()``, then press Allow or Block on it."""
    find = """const win = Services.wm.getMostRecentWindow("navigator:browser");
      const note = win.PopupNotifications.getNotification("loopback-network",
                                                          win.gBrowser.selectedBrowser);
      const element = win.document.getElementById("loopback-network-notification");"""
    driver.raw("Marionette:SetContext", {"value": "chrome"})
    try:
        shown = str(driver.wait_js(f"""(() => {{ {find}
          return note && element && (note.message + " | " + note.mainAction.label + " / " +
                                      note.secondaryActions.map(a => a.label).join(",")); }})()"""))
        if before is not None:
            before()
        driver.execute(f"""{find}
          (arguments[0] ? element.button : element.secondaryButton).click();""", allow)
        return shown
    finally:
        driver.raw("Marionette:SetContext", {"value": "content"})


@pytest.mark.parametrize("allow", [True, False], ids=["allow", "block"])
def test_firefox_with_websocket_lna_checks(setup: Setup, allow: bool) -> None:
    """With network.lna.websocket.enabled (off by default today) Firefox asks for WebSockets
    too: nothing reaches the agent until the user answers; Allow -> the registration; Block ->
    ERR_EID_LOCAL_ACCESS_BLOCKED and the Firefox recovery text."""
    with firefox(setup, {"network.lna.websocket.enabled": True}) as driver:
        driver.navigate(setup.origin + "/")
        driver.wait_js("document.body.dataset.ready === 'true'")

        def nothing_reached_the_agent() -> None:
            time.sleep(1.0)  # the socket stays pending while Firefox asks
            assert not re.search(rf"connection from '{re.escape(setup.origin)}'", setup.agent.output)

        shown = answer_firefox_prompt(driver, allow, nothing_reached_the_agent)
        assert "wants to access other apps and services on this device" in shown
        assert "Allow / Block" in shown
        if allow:
            run_flow(driver, setup.origin, setup.app, ARTIFACTS / "lna-allow")
            return
        driver.wait_js("document.querySelector('#agent-line').dataset.state === 'blocked'")
        assert driver.attribute("#blocked-help-text", "data-browser") == "firefox"
        assert "In Firefox" in driver.text("#blocked-help-text")
        driver.click("#login")
        driver.wait_js("document.querySelector('#message').dataset.code === 'ERR_EID_LOCAL_ACCESS_BLOCKED'")
        driver.screenshot(ARTIFACTS / "lna-block.png")
    assert not re.search(rf"connection from '{re.escape(setup.origin)}'", setup.agent.output)


def test_firefox_policy_skips_the_prompt(setup: Setup, tmp_path: Path) -> None:
    """WebSocket LNA checks on, and the LocalNetworkAccess SkipDomains policy written by
    `eid-agent write-browser-policy` lists the portal: no prompt, the registration goes through."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a private mount namespace for Firefox's policy folder needs root and unshare")
    root = tmp_path / "policy-root"
    subprocess.run([sys.executable, "-m", "agent", "write-browser-policy", "--origin", setup.origin,
                    "--root", str(root)], capture_output=True, text=True, timeout=60, check=True)
    policies = root / "etc" / "firefox" / "policies"
    assert json.loads((policies / "policies.json").read_text(encoding="utf-8")) == {
        "policies": {"LocalNetworkAccess": {"SkipDomains": [PORTAL_HOST]}}}
    with firefox(setup, {"network.lna.websocket.enabled": True}, policies=policies) as driver:
        driver.raw("Marionette:SetContext", {"value": "chrome"})
        active = driver.execute("return Services.policies.getActivePolicies();")
        driver.raw("Marionette:SetContext", {"value": "content"})
        assert active["LocalNetworkAccess"] == {"SkipDomains": [PORTAL_HOST]}
        run_flow(driver, setup.origin, setup.app, ARTIFACTS / "lna-policy")
