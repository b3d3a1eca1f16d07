"""The reference portal from a PUBLIC https origin in Debian's Chromium, against the real agent
(``python -m agent serve``) on the private pcscd + vpcd with the virtual Belgian eID.

The portal is https://portal.example:PORT (``--host-resolver-rules`` maps the name to 127.0.0.1)
with a test CA trusted in Chromium's NSS database (``$HOME/.pki/nssdb``, the normal place), and
``--ip-address-space-overrides`` makes Chromium treat it as a public site: opening the agent's
loopback socket is then subject to Local Network Access, as on a real portal. Three paths:

- the managed policies ``LocalNetworkAccessAllowedForUrls`` / ``LoopbackNetworkAllowedForUrls``
  list the portal: no prompt, the registration goes through;
- no policy, headed Chromium under Xvfb: the portal explains the prompt first, the real prompt
  appears and the test answers Allow with the keyboard (Alt+Shift+A focuses the bubble);
- the same, answering Block: ``ERR_EID_LOCAL_ACCESS_BLOCKED`` and the portal's recovery text,
  and nothing reaches the agent.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eid_emulator.pcscd import PrivatePcscd
from eid_emulator.pki import Holder, TestPki

from examples.portal import AdjustableClock, PortalApp
from examples.portal.server import PortalServer, create_server
from tests.agent_process import AgentProcess
from tests.browsers import TestCa, make_test_ca, nss_trust, screenshot_display, xvfb
from tests.e2e.test_portal_browser import (
    PIN,
    WAIT,
    enter_code,
    expect_message,
    expect_step,
    fill_details,
    insert,
    phone_code,
)

pytestmark = [pytest.mark.pcsc, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PORTAL_HOST = "portal.example"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browsers" / "chromium"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def portal_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return make_test_ca(tmp_path_factory.mktemp("portal-ca"), "eid-agent test portal CA",
                        [PORTAL_HOST])


@dataclass
class PublicPortal:
    server: PortalServer
    ca: TestCa
    home: Path | None = None  # HOME of the browser (= the agent's: one desktop user)

    @property
    def app(self) -> PortalApp:
        return self.server.app

    @property
    def origin(self) -> str:
        return self.app.site_origin

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


@pytest.fixture
def portal(pki: TestPki, portal_ca: TestCa, tmp_path: Path) -> Iterator[PublicPortal]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    clock = AdjustableClock()

    def make_app(origins: list[str]) -> PortalApp:
        public = origins[0].replace("://127.0.0.1:", f"://{PORTAL_HOST}:")
        return PortalApp(tmp_path / "accounts.sqlite", public, pki.trust_anchors,
                         intermediates=pki.intermediates, clock=clock, test_mode=True)

    httpd = create_server("127.0.0.1", 0, make_app, tls=(portal_ca.leaf_cert, portal_ca.leaf_key))
    httpd.agent_slots = 1  # the test agent's port; the slot range is tested in test_js_client
    assert httpd.app.site_origin.startswith(f"https://{PORTAL_HOST}:")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield PublicPortal(httpd, portal_ca)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def agent(pcscd: PrivatePcscd, portal: PublicPortal, tmp_path: Path) -> Iterator[AgentProcess]:
    home = tmp_path / "agent-home"
    home.mkdir()
    process = AgentProcess(pcscd, home, {"pins": [PIN, PIN], "consents": ["allow-once"]},
                           allow_origins=(portal.origin,))
    portal.app.agent_url = process.url
    portal.server.agent_urls = [process.wss_url, process.url]
    # The browser runs as the same user: the agent added its CA to $HOME/.pki/nssdb at first start
    # (as its installer does); the portal's test CA goes there too, as any site's CA would be.
    portal.home = home
    nss_trust(home / ".pki" / "nssdb", {"eid-agent test portal CA": portal.ca.ca_cert})
    yield process
    print(f"--- agent output ---\n{process.stop()[-30000:]}")


def launch(playwright: Any, portal: PublicPortal, *, display: str | None = None,
           executable: Path | None = None) -> Any:
    assert portal.home is not None
    env = {**os.environ, "HOME": str(portal.home)}
    if display:
        env["DISPLAY"] = display
    return playwright.chromium.launch(
        executable_path=str(executable or CHROMIUM), headless=display is None, env=env,
        args=[*ARGS, f"--host-resolver-rules=MAP {PORTAL_HOST} 127.0.0.1",
              f"--ip-address-space-overrides=127.0.0.1:{portal.port}=public"])


def open_page(browser: Any) -> Any:
    context = browser.new_context(locale="en-GB", viewport={"width": 900, "height": 700})
    context.set_default_timeout(WAIT)
    page = context.new_page()
    page.on("console", lambda m: print(f"console {m.type}: {m.text}"))
    return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def permission(page: Any) -> str:
    return str(page.evaluate("navigator.permissions.query({name: 'loopback-network'}).then(s => s.state)"))


def register(page: Any, portal: PublicPortal, prefix: str) -> None:
    """The whole registration once the agent is reachable: card login, questions, code, signature."""
    from playwright.sync_api import expect

    expect(page.locator("#agent-line")).to_have_attribute("data-state", "running", timeout=WAIT)
    # over wss://: the agent's CA is trusted in the user's NSS database
    expect(page.locator("#agent-line")).to_have_attribute("data-transport", "wss")
    expect(page.locator("#readers li[data-state=card]")).to_have_count(1, timeout=WAIT)
    page.click("#login")
    expect_step(page, "details")
    holder = Holder()
    expect(page.locator("#user-name")).to_have_text(f"{holder.given_names} {holder.surname}")
    fill_details(page)
    enter_code(page, phone_code(page, portal))  # type: ignore[arg-type]  # needs .origin only
    expect_step(page, "sign")
    page.click("#sign")
    expect_step(page, "done")
    shot(page, prefix + "-done")
    account = portal.app.accounts.get(holder.national_number)
    assert account is not None and account.email == "alice@example.be"


def connections_from(process: AgentProcess, origin: str) -> int:
    return len(re.findall(rf"connection from '{re.escape(origin)}'(?! closed)", process.output))


# --- (a) the administrator's policy -----------------------------------------------------------

# Chromium in a private mount namespace whose /etc/chromium/policies is the folder that
# `eid-agent write-browser-policy --root DIR` wrote: the real policy files, and no change to the
# machine's own policy folder (other test runs share it).
NAMESPACED_CHROMIUM = """#!/bin/sh
mkdir -p /etc/chromium/policies
exec unshare -m --propagation private sh -c \
  'mount --bind "$0" /etc/chromium/policies && exec /usr/bin/chromium "$@"' "POLICIES" "$@"
"""


@pytest.fixture
def managed_policy(portal: PublicPortal, tmp_path: Path) -> Path:
    """`eid-agent write-browser-policy --origin <portal>` into a folder; a Chromium wrapper that
    sees it as /etc/chromium/policies. Returns the wrapper (Playwright's executable_path)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a private mount namespace for Chromium's policy folder needs root and unshare")
    root = tmp_path / "policy-root"
    written = subprocess.run(
        [sys.executable, "-m", "agent", "write-browser-policy", "--origin", portal.origin,
         "--root", str(root)], capture_output=True, text=True, timeout=60, check=True)
    policy = root / "etc" / "chromium" / "policies" / "managed" / "eid-agent.json"
    assert str(policy) in written.stdout
    assert json.loads(policy.read_text(encoding="utf-8")) == {
        "LocalNetworkAccessAllowedForUrls": [portal.origin],
        "LoopbackNetworkAllowedForUrls": [portal.origin],
    }
    wrapper = tmp_path / "chromium-with-policy"
    wrapper.write_text(NAMESPACED_CHROMIUM.replace("POLICIES", str(policy.parent.parent)),
                       encoding="utf-8")
    wrapper.chmod(0o755)
    return wrapper


def test_registration_with_the_managed_policy(pki: TestPki, vpcd: Any, portal: PublicPortal,
                                              agent: AgentProcess, managed_policy: Path) -> None:
    """`write-browser-policy` lists the portal: Chromium never asks, the page connects."""
    from playwright.sync_api import sync_playwright

    insert(vpcd, pki)
    with sync_playwright() as playwright:
        browser = launch(playwright, portal, executable=managed_policy)
        try:
            page = open_page(browser)
            page.goto(portal.origin + "/")
            assert permission(page) == "granted"  # the policy pre-approves the portal
            register(page, portal, "policy")
            assert page.locator("#local-access").is_hidden()  # nothing to explain
        finally:
            browser.close()
    assert connections_from(agent, portal.origin) >= 1


# --- (b) and (c): the real prompt, answered with the keyboard under Xvfb ----------------------

def answer_prompt(display: str, allow: bool, name: str, agent: AgentProcess, origin: str) -> None:
    """Focus Chromium's permission bubble (Alt+Shift+A focuses it on Block), then answer."""
    env = {**os.environ, "DISPLAY": display}
    time.sleep(1.0)  # the bubble ignores input right after it appears
    screenshot_display(display, ARTIFACTS / f"{name}-prompt.png")
    assert connections_from(agent, origin) == 0  # the socket waits for the user's answer
    keys = ["alt+shift+a", "Tab", "Return"] if allow else ["alt+shift+a", "Return"]
    for key in keys:
        subprocess.run(["xdotool", "key", key], env=env, check=True, timeout=30)
        time.sleep(0.4)
    screenshot_display(display, ARTIFACTS / f"{name}-answered.png")


def explain_then_connect(page: Any, portal: PublicPortal, agent: AgentProcess) -> None:
    """Before the prompt: the portal says what the browser will ask, and has not connected yet."""
    from playwright.sync_api import expect

    page.goto(portal.origin + "/")
    assert permission(page) == "prompt"
    expect(page.locator("#local-access")).to_be_visible()
    expect(page.locator("#local-access")).to_contain_text("Access other apps and services on this device",
                                                          ignore_case=True)
    expect(page.locator("#agent-line")).to_have_attribute("data-state", "ask-first")
    assert connections_from(agent, portal.origin) == 0
    page.click("#connect-agent")


def test_registration_after_allowing_the_prompt(pki: TestPki, vpcd: Any, portal: PublicPortal,
                                                agent: AgentProcess) -> None:
    from playwright.sync_api import sync_playwright

    insert(vpcd, pki)
    with xvfb() as display, sync_playwright() as playwright:
        browser = launch(playwright, portal, display=display)
        try:
            page = open_page(browser)
            explain_then_connect(page, portal, agent)
            answer_prompt(display, allow=True, name="allow", agent=agent, origin=portal.origin)
            assert permission(page) == "granted"
            register(page, portal, "prompt-allow")
        finally:
            browser.close()


def test_block_gives_the_distinct_error_and_recovery_text(pki: TestPki, vpcd: Any,
                                                           portal: PublicPortal,
                                                           agent: AgentProcess) -> None:
    from playwright.sync_api import expect, sync_playwright

    insert(vpcd, pki)
    with xvfb() as display, sync_playwright() as playwright:
        browser = launch(playwright, portal, display=display)
        try:
            page = open_page(browser)
            explain_then_connect(page, portal, agent)
            answer_prompt(display, allow=False, name="block", agent=agent, origin=portal.origin)
            assert permission(page) == "denied"
            line = page.locator("#agent-line")
            expect(line).to_have_attribute("data-state", "blocked", timeout=WAIT)
            expect(line).to_contain_text("blocks this site")
            help_text = page.locator("#blocked-help-text")
            expect(help_text).to_be_visible()
            expect(help_text).to_have_attribute("data-browser", "chrome")
            expect(help_text).to_contain_text("Local network access")
            expect(page.locator("#agent-help")).to_be_hidden()  # not "install the agent"
            page.click("#login")
            expect_message(page, "ERR_EID_LOCAL_ACCESS_BLOCKED", "blocked the connection")
            shot(page, "block-recovery")
            page.click("[data-lang=fr]")
            expect(help_text).to_contain_text("Accès au réseau local")
            page.click("[data-lang=de]")
            expect(help_text).to_contain_text("Zugriff auf lokales Netzwerk")
            shot(page, "block-recovery-de")
        finally:
            browser.close()
    # The browser stopped every attempt before the WebSocket handshake: no session in the agent.
    assert connections_from(agent, portal.origin) == 0
    assert portal.app.accounts.get(Holder().national_number) is None


def test_headless_denial_is_a_local_access_error(pki: TestPki, vpcd: Any, portal: PublicPortal,
                                                 agent: AgentProcess) -> None:
    """Headless Chromium cannot show the prompt and denies at once (the permission becomes
    "denied"): the client says LocalAccessBlockedError right away, not "install the agent"."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright, portal)
        try:
            page = open_page(browser)
            page.goto(portal.origin + "/")
            assert permission(page) == "prompt"
            result = page.evaluate("""async (urls) => {
              const eid = await import('/clients/js/eid-agent.js');
              const agent = new eid.EidAgent({urls, promptTimeout: 3000});
              const started = performance.now();
              try { await agent.status(); return {ok: true}; }
              catch (e) { return {name: e.name, code: e.code, permission: e.data.permission,
                                  ms: performance.now() - started}; }
            }""", portal.server.agent_urls)
        finally:
            browser.close()
    assert result["name"] == "LocalAccessBlockedError", result
    assert result["code"] == "ERR_EID_LOCAL_ACCESS_BLOCKED"
    assert result["permission"] == "denied"
    assert result["ms"] < 2500  # no wait for the (never shown) prompt
    assert connections_from(agent, portal.origin) == 0
