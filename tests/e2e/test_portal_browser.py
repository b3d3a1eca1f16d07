"""The reference portal in Debian's Chromium (headless, Playwright) against the real agent
(``python -m agent serve``) on the private pcscd + vpcd with the virtual Belgian eID.

The user at the agent's side is scripted (``--interaction scripted``): the only fake part.
Screenshots of every step go to ``artifacts/portal/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eid_emulator.beid import BeidCard
from eid_emulator.pcscd import PrivatePcscd
from eid_emulator.pki import Holder, TestPki, make_card_data
from eid_emulator.vpcd import REMOVE

from examples.portal import AdjustableClock, PortalApp
from examples.portal.server import create_server
from tests.agent_process import AgentProcess, free_port

pytestmark = [pytest.mark.pcsc, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "portal"
PIN = "1234"
WAIT = 60_000  # ms: generous, the machine is shared
INS_VERIFY = 0x20


def _browser_available() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} not installed"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python playwright not installed"
    return None


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = _browser_available()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Portal:
    app: PortalApp
    clock: AdjustableClock

    @property
    def origin(self) -> str:
        return self.app.site_origin


@pytest.fixture
def portal(pki: TestPki, tmp_path: Path) -> Iterator[Portal]:
    """The portal server in this process (test mode: its clock can be moved)."""
    clock = AdjustableClock()

    def make_app(origins: list[str]) -> PortalApp:
        return PortalApp(tmp_path / "accounts.sqlite", origins[0], pki.trust_anchors,
                         intermediates=pki.intermediates, clock=clock, test_mode=True,
                         agent_url=f"ws://127.0.0.1:{free_port()}")

    httpd = create_server("127.0.0.1", 0, make_app)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Portal(httpd.app, clock)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


AgentFactory = Callable[..., AgentProcess]


@pytest.fixture
def agent(pcscd: PrivatePcscd, portal: Portal, tmp_path: Path) -> Iterator[AgentFactory]:
    """Start ``python -m agent serve`` with a script; the portal's origin is pre-approved."""
    started: list[AgentProcess] = []

    def start(script: dict[str, Any], **kwargs: Any) -> AgentProcess:
        home = tmp_path / f"agent-home-{len(started)}"
        home.mkdir()
        # the test portal is served over http://127.0.0.1: the agent's developer switch
        extra_args = ("--allow-http-loopback", *kwargs.pop("extra_args", ()))
        process = AgentProcess(pcscd, home, script, allow_origins=(portal.origin,),
                               extra_args=extra_args, **kwargs)
        started.append(process)
        portal.app.agent_url = process.url
        return process

    yield start
    for process in started:
        output = process.stop()
        print(f"--- agent output ---\n{output[-60000:]}")  # shown when the test fails


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(locale="en-GB", viewport={"width": 900, "height": 1000})
    context.set_default_timeout(WAIT)
    tab = context.new_page()
    messages: list[str] = []
    tab.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    tab.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    yield tab
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print("browser console:\n" + "\n".join(messages))
    context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def insert(vpcd: Any, pki: TestPki, applet: str = "1.8") -> Any:
    return vpcd(BeidCard(applet, make_card_data(pki, Holder(pin=PIN), applet)))


def expect_step(page: Any, step: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(f"#step-{step}")).to_be_visible(timeout=WAIT)


def expect_message(page: Any, code: str, text: str | re.Pattern[str]) -> None:
    from playwright.sync_api import expect

    message = page.locator("#message")
    expect(message).to_have_attribute("data-code", code, timeout=WAIT)
    expect(message).to_contain_text(text)


def open_landing(page: Any, portal: Portal) -> None:
    from playwright.sync_api import expect

    page.goto(portal.origin + "/")
    expect(page.locator("#agent-line")).to_have_attribute("data-state", "running", timeout=WAIT)
    expect(page.locator("#readers li[data-state=card]")).to_have_count(1, timeout=WAIT)
    expect_step(page, "login")


def log_in(page: Any) -> None:
    page.click("#login")
    expect_step(page, "details")


def fill_details(page: Any) -> None:
    page.fill("#field-email", "alice@example.be")
    page.fill("#field-phone", "+32 470 12 34 56")
    page.click("#details-submit")
    expect_step(page, "code")


def phone_code(page: Any, portal: Portal, new: bool = False) -> str:
    """Read the code from the simulated phone app (another tab of the same browser)."""
    from playwright.sync_api import expect

    phone = page.context.new_page()
    phone.goto(portal.origin + "/phone")
    code = phone.locator("#phone-code")
    if new:
        expect(phone.locator("#phone-new")).to_be_visible()
        expect(phone.locator("#phone-none")).to_be_visible()  # the old code is dead
        shot(phone, "phone-no-code")
        phone.click("#phone-new")
    expect(code).to_have_attribute("data-code", re.compile(r"^\d{6}$"))
    value = code.get_attribute("data-code") or ""
    shot(phone, "phone")
    phone.close()
    return value


def enter_code(page: Any, code: str) -> None:
    page.fill("#field-code", code)
    page.click("#code-submit")


# --- the whole registration -------------------------------------------------------------------

@pytest.mark.parametrize("applet", ["1.8", "1.7"])
def test_full_registration(applet: str, pki: TestPki, vpcd: Any, portal: Portal,
                           agent: AgentFactory, page: Any) -> None:
    from playwright.sync_api import expect

    insert(vpcd, pki, applet)
    # Consents: the identity file, then the signing certificate (asked each time).
    process = agent({"pins": [PIN, PIN], "consents": ["allow-once", "allow-once"]})
    prefix = f"{applet}-"
    open_landing(page, portal)
    shot(page, prefix + "1-landing")

    log_in(page)
    holder = Holder()
    expect(page.locator("#user-name")).to_have_text(f"{holder.given_names} {holder.surname}")
    expect(page.locator("#field-name")).to_have_value(f"{holder.given_names} {holder.surname}")
    expect(page.locator("#field-birthDate")).to_have_value(holder.birth_date.isoformat())
    page.fill("#field-name", "")
    page.fill("#field-birthDate", "")
    page.click("#read-identity")  # identity file, after the agent's consent prompt
    expect_message(page, "identity-read", "read from your ID card")
    expect(page.locator("#field-name")).to_have_value(re.compile(rf"^{holder.given_names}.*{holder.surname}$"))
    expect(page.locator("#field-birthDate")).to_have_value(holder.birth_date.isoformat())
    shot(page, prefix + "2-details")

    fill_details(page)
    shot(page, prefix + "3-code")
    enter_code(page, phone_code(page, portal))
    expect_step(page, "sign")
    expect(page.locator("#summary")).to_contain_text("alice@example.be")
    expect(page.locator("#summary")).to_contain_text(holder.national_number)
    shot(page, prefix + "4-sign")

    page.click("#sign")
    expect_step(page, "done")
    expect(page.locator("#summary-hash")).to_contain_text("SHA-384")
    expect(page.locator("#account")).to_contain_text("alice@example.be")
    shot(page, prefix + "5-done")

    account = portal.app.accounts.get(holder.national_number)
    assert account is not None
    assert account.email == "alice@example.be" and account.phone == "+32 470 12 34 56"
    assert account.hash_function == "SHA-384"  # both applets offer it; the portal prefers it
    assert '"registrationId"' in account.summary
    assert not re.search(r"SEND 0020000108[0-9a-f]", process.stop())  # PIN blocks redacted


def test_language_switch_and_accept_language(pki: TestPki, portal: Portal, browser: Any) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(locale="nl-BE")
    try:
        tab = context.new_page()
        tab.goto(portal.origin + "/")
        expect(tab.locator("#login")).to_have_text("Aanmelden met eID", timeout=WAIT)
        # No agent on the configured port: the landing page says how to get one.
        expect(tab.locator("#agent-line")).to_have_attribute("data-state", "missing", timeout=WAIT)
        expect(tab.locator("#agent-help")).to_be_visible()
        expect(tab.locator("#agent-line")).to_contain_text("draait niet")
        tab.click("[data-lang=en]")
        expect(tab.locator("#login")).to_have_text("Log in with ID card")
        expect(tab.locator("#agent-line")).to_contain_text("not running")
        shot(tab, "no-agent")
        tab.reload()
        expect(tab.locator("#login")).to_have_text("Log in with ID card", timeout=WAIT)
    finally:
        context.close()


# --- failure paths ------------------------------------------------------------------------------

def test_pin_cancelled(pki: TestPki, vpcd: Any, portal: Portal, agent: AgentFactory,
                       page: Any) -> None:
    insert(vpcd, pki)
    agent({"pins": [{"cancel": True}, PIN]})
    open_landing(page, portal)
    page.click("#login")
    expect_message(page, "ERR_WEBEID_USER_CANCELLED", "You cancelled the PIN entry")
    expect_step(page, "login")
    shot(page, "error-pin-cancelled")
    log_in(page)  # and it works on the next try


def test_wrong_pin_shows_tries_left(pki: TestPki, vpcd: Any, portal: Portal,
                                    agent: AgentFactory, page: Any) -> None:
    from playwright.sync_api import expect

    insert(vpcd, pki)
    # A wrong PIN; the agent asks again (showing the tries left) and the user gives up.
    process = agent({"pins": ["0000", {"cancel": True}, PIN]})
    open_landing(page, portal)
    page.click("#login")
    expect_message(page, "ERR_WEBEID_USER_CANCELLED", "2 PIN tries left")
    expect_step(page, "login")
    shot(page, "error-wrong-pin")
    log_in(page)
    expect(page.locator("#message")).to_be_hidden()
    assert not re.search(r"SEND 0020000108[0-9a-f]", process.stop())  # PIN blocks redacted


def test_card_removed_during_login(pki: TestPki, vpcd: Any, portal: Portal,
                                   agent: AgentFactory, page: Any) -> None:
    from playwright.sync_api import expect

    served = insert(vpcd, pki)
    agent({"pins": [PIN]})
    open_landing(page, portal)
    # Pulled out right after the user typed the PIN (the VERIFY that carries a PIN block).
    served.fault_hook = lambda apdu: REMOVE if len(apdu) > 5 and apdu[1] == INS_VERIFY else None
    page.click("#login")
    # The agent says ERR_EID_CARD_REMOVED, or (vpcd drops the card in the middle of an APDU)
    # ERR_EID_CARD_ERROR, after which the page sees that the card is gone.
    expect(page.locator("#message")).to_have_attribute("data-key", "errCardRemoved", timeout=WAIT)
    expect(page.locator("#message")).to_contain_text("The ID card was removed")
    expect_step(page, "login")
    expect(page.locator("#readers li[data-state=card]")).to_have_count(0, timeout=WAIT)
    shot(page, "error-card-removed")


def test_code_wrong_then_expired(pki: TestPki, vpcd: Any, portal: Portal, agent: AgentFactory,
                                 page: Any) -> None:
    insert(vpcd, pki)
    agent({"pins": [PIN]})
    open_landing(page, portal)
    log_in(page)
    fill_details(page)
    code = phone_code(page, portal)
    enter_code(page, f"{(int(code) + 1) % 10**6:06d}")
    expect_message(page, "code-wrong", "2 attempts left")
    # 16 minutes later (the portal's injectable clock, through its test-only endpoint)
    response = page.request.post(portal.origin + "/api/test/advance-clock",
                                 data={"seconds": 16 * 60},
                                 headers={"Origin": portal.origin})
    assert response.ok
    enter_code(page, code)
    expect_message(page, "code-expired", "expired")
    expect_step(page, "code")
    shot(page, "error-code-expired")
    enter_code(page, phone_code(page, portal, new=True))
    expect_step(page, "sign")


# --- the PIN typed into the agent's own dialog (Qt, under Xvfb) -------------------------------

@pytest.fixture
def xvfb() -> Iterator[str]:
    """A private X server (Xvfb picks a free display number) for the agent's Qt dialogs."""
    if shutil.which("Xvfb") is None or shutil.which("xdotool") is None:
        pytest.skip("Xvfb/xdotool not installed")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as ready:
            number = ready.readline().strip()
        if not number:
            pytest.fail("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


def xdotool(display: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display},
                          capture_output=True, text=True, timeout=30, check=False)


def type_pin_in_dialog(display: str, pin: str, name: str) -> None:
    """Wait for the agent's PIN dialog, type the PIN like a person, press Enter."""
    deadline = time.monotonic() + WAIT / 1000
    windows: list[str] = []
    while not windows:
        if time.monotonic() > deadline:
            raise AssertionError("the agent's PIN dialog never appeared")
        windows = xdotool(display, "search", "--onlyvisible", "--name", "Enter your PIN").stdout.split()
        time.sleep(0.1)
    window = windows[-1]
    time.sleep(0.3)  # let it paint and take focus
    grab_window(display, window, name)
    assert xdotool(display, "windowfocus", "--sync", window).returncode == 0
    assert xdotool(display, "type", "--delay", "40", pin).returncode == 0
    assert xdotool(display, "key", "Return").returncode == 0


def allow_certificate_in_dialog(display: str, name: str) -> None:
    """Wait for the certificate consent, then choose "Allow once" with the keyboard as a
    person would (focus starts on Deny; Tab moves to Allow once; Space presses it)."""
    deadline = time.monotonic() + WAIT / 1000
    windows: list[str] = []
    while not windows:
        if time.monotonic() > deadline:
            raise AssertionError("the agent's certificate consent never appeared")
        windows = xdotool(display, "search", "--onlyvisible", "--name",
                          "Share your signing certificate").stdout.split()
        time.sleep(0.1)
    window = windows[-1]
    assert xdotool(display, "windowfocus", "--sync", window).returncode == 0
    time.sleep(1.5)  # let it paint, and pass the input delay (1 s after it gains focus)
    grab_window(display, window, name)
    assert xdotool(display, "key", "Tab").returncode == 0
    assert xdotool(display, "key", "space").returncode == 0


def grab_window(display: str, window: str, name: str) -> None:
    from PIL import ImageGrab

    geometry = dict(line.split("=", 1) for line in
                    xdotool(display, "getwindowgeometry", "--shell", window).stdout.split())
    x, y, w, h = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=display).save(ARTIFACTS / f"{name}.png")


def test_full_registration_typing_the_pin_in_the_agent_dialog(
        pki: TestPki, vpcd: Any, portal: Portal, agent: AgentFactory, page: Any, xvfb: str) -> None:
    from playwright.sync_api import expect

    served = insert(vpcd, pki, "1.8")
    agent({}, extra_args=("--interaction", "dialogs"), env={"DISPLAY": xvfb})
    open_landing(page, portal)
    page.click("#login")
    expect(page.locator("#busy")).to_have_attribute("data-key", "busyPin")
    type_pin_in_dialog(xvfb, PIN, "dialog-pin-login")
    expect_step(page, "details")
    fill_details(page)
    enter_code(page, phone_code(page, portal))
    expect_step(page, "sign")
    page.click("#sign")
    allow_certificate_in_dialog(xvfb, "dialog-consent-certificate")
    type_pin_in_dialog(xvfb, PIN, "dialog-pin-sign")
    expect_step(page, "done")
    shot(page, "dialogs-done")
    assert portal.app.accounts.get(Holder().national_number) is not None
    verifies = [c for c in served.card.commands if len(c) > 5 and c[1] == INS_VERIFY]
    assert len(verifies) == 2  # one PIN typed for the login, one for the signature


# --- the same registration with an Estonian card (PIN1 to log in, PIN2 to sign) -----------------

def test_full_registration_with_an_estonian_card(vpcd: Any, pcscd: PrivatePcscd, browser: Any,
                                                 page: Any, tmp_path: Path) -> None:
    from eid_emulator.idemia import make_card
    from eid_emulator.pki_other import Person, load_or_make_pki
    from playwright.sync_api import expect

    ee_pki = load_or_make_pki("EE2018", tmp_path / "ee-pki")
    card = make_card(ee_pki, "EE")
    vpcd(card)
    person = Person()
    clock = AdjustableClock()

    def make_app(origins: list[str]) -> PortalApp:
        return PortalApp(tmp_path / "accounts.sqlite", origins[0], ee_pki.trust_anchors,
                         intermediates=[ee_pki.ca.cert], clock=clock, test_mode=True)

    httpd = create_server("127.0.0.1", 0, make_app)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    portal = Portal(httpd.app, clock)
    home = tmp_path / "agent-home"
    home.mkdir()
    process = AgentProcess(pcscd, home, {"pins": ["1234", "12345"], "consents": ["allow-once"]},
                           allow_origins=(portal.origin,), extra_args=("--allow-http-loopback",))
    portal.app.agent_url = process.url
    try:
        open_landing(page, portal)
        log_in(page)
        expect(page.locator("#field-birthDate")).to_have_value("1980-01-08")  # from the code
        fill_details(page)
        enter_code(page, phone_code(page, portal))
        expect_step(page, "sign")
        expect(page.locator("#summary")).to_contain_text(person.personal_code)
        page.click("#sign")
        expect_step(page, "done")
        shot(page, "ee-5-done")
        account = portal.app.accounts.get("PNOEE-" + person.personal_code) or \
            portal.app.accounts.get(person.personal_code)
        assert account is not None
        output = process.stop()
    finally:
        process.stop()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    prompts = re.findall(r"scripted answer to a pin prompt", output)
    assert len(prompts) == 2  # PIN1 for the login, PIN2 for the signature
    verifies = [c for c in card.commands if c[1] == INS_VERIFY and len(c) > 5]
    assert [c[3] for c in verifies] == [0x01, 0x85]  # PIN1 then PIN2, each once
