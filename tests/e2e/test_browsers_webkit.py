"""The reference portal from a PUBLIC https origin in WebKitGTK (Safari's engine): Debian's
``WebKitWebDriver`` driving MiniBrowser ``--automation`` under Xvfb, through classic W3C
WebDriver over HTTP (tests/browsers.py), against the real agent on the private pcscd + vpcd.

WebKit blocks ``ws://`` from an https page as mixed content, with no prompt and no policy: the
page reaches the agent only over ``wss://`` with a certificate the system trusts. WebKitGTK
trusts the system bundle (GnuTLS, ``/etc/ssl/certs/ca-certificates.crt``), so the browser runs
in a private mount namespace where the agent's local CA (and the portal's test CA) are
installed the way a system-wide install does it: ``eid-agent install-certificate --system``
(``/usr/local/share/ca-certificates`` + ``update-ca-certificates``; the portal's test CA the
same way). Nothing changes outside that namespace; ``portal.example`` is mapped to 127.0.0.1 in
the namespace's ``/etc/hosts``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eid_emulator.pcscd import PrivatePcscd
from eid_emulator.pki import TestPki

from examples.portal import AdjustableClock, PortalApp
from examples.portal.server import create_server
from tests.agent_process import AgentProcess
from tests.browsers import WebDriverHttp, free_port, make_test_ca, xvfb
from tests.e2e.test_browsers_firefox import run_flow
from tests.e2e.test_portal_browser import PIN, insert

pytestmark = [pytest.mark.pcsc, pytest.mark.browser]

DRIVER = "/usr/bin/WebKitWebDriver"
MINIBROWSER = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"
PORTAL_HOST = "portal.example"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browsers" / "webkit"

# Runs as root inside `unshare -m`: private copies of the trust store and /etc/hosts.
NAMESPACE_SETUP = r"""
set -eu
work="$1"; shift
mkdir -p "$work/etc-ssl-certs" "$work/local-ca"
cp -a /etc/ssl/certs/. "$work/etc-ssl-certs/"
cp -a /usr/local/share/ca-certificates/. "$work/local-ca/"
mount --bind "$work/etc-ssl-certs" /etc/ssl/certs
mount --bind "$work/local-ca" /usr/local/share/ca-certificates
for pem in "$work"/trust/*.pem; do
  cp "$pem" "/usr/local/share/ca-certificates/$(basename "$pem" .pem).crt"
done
update-ca-certificates >"$work/update-ca-certificates.log" 2>&1
if [ -n "${EID_AGENT_CONFIG:-}" ]; then
  # the agent's own system-wide install step (what the package's postinst runs)
  "$EID_PYTHON" -m agent install-certificate --system --config-dir "$EID_AGENT_CONFIG" \
    >"$work/install-certificate.log" 2>&1
fi
cp /etc/hosts "$work/hosts"
echo "127.0.0.1 PORTAL_HOST" >>"$work/hosts"
mount --bind "$work/hosts" /etc/hosts
exec "$@"
"""


def _skip_reason() -> str | None:
    for path in (DRIVER, MINIBROWSER):
        if not os.path.exists(path):
            return f"{path} not installed (Debian webkit2gtk-driver)"
    for tool in ("Xvfb", "unshare", "update-ca-certificates"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if os.geteuid() != 0:
        return "a private mount namespace for the system trust store needs root"
    return None


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


@contextmanager
def webkit(home: Path, work: Path, trusted: dict[str, Path],
           agent_config: Path | None = None) -> Iterator[WebDriverHttp]:
    """MiniBrowser under Xvfb in a mount namespace whose system trust store has ``trusted`` added
    and, with ``agent_config``, the agent's CA installed by ``install-certificate --system``."""
    (work / "trust").mkdir(parents=True)
    for name, pem in trusted.items():
        shutil.copy(pem, work / "trust" / f"{name}.pem")
    port = free_port()
    driver = WebDriverHttp(port)
    with xvfb() as display:
        env = {**os.environ, "DISPLAY": display, "HOME": str(home),
               # WebKit's bubblewrap sandbox cannot start as root in a container
               "WEBKIT_DISABLE_SANDBOX_THIS_IS_DANGEROUS": "1",
               "EID_PYTHON": sys.executable, "EID_AGENT_CONFIG": str(agent_config or "")}
        browser = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             NAMESPACE_SETUP.replace("PORTAL_HOST", PORTAL_HOST), "setup", str(work),
             DRIVER, f"--port={port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            driver.wait_ready()
            driver.new_session({
                "browserName": "MiniBrowser",
                "webkitgtk:browserOptions": {"binary": MINIBROWSER, "args": ["--automation"]},
            })
            yield driver
        finally:
            driver.close()
            browser.terminate()
            try:
                browser.wait(20)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()


@dataclass
class Setup:
    origin: str
    app: PortalApp
    agent: AgentProcess
    portal_ca: Path
    home: Path


@pytest.fixture
def setup(pki: TestPki, vpcd: Any, pcscd: PrivatePcscd, tmp_path: Path) -> Iterator[Setup]:
    """The card, the https portal at portal.example and the real agent (wss:// and ws://)."""
    why = _skip_reason()
    if why:
        pytest.skip(why)
    insert(vpcd, pki)
    ca = make_test_ca(tmp_path / "portal-ca", "eid-agent test portal CA", [PORTAL_HOST])
    clock = AdjustableClock()

    def make_app(origins: list[str]) -> PortalApp:
        public = origins[0].replace("://127.0.0.1:", f"://{PORTAL_HOST}:")
        return PortalApp(tmp_path / "accounts.sqlite", public, pki.trust_anchors,
                         intermediates=pki.intermediates, clock=clock, test_mode=True)

    httpd = create_server("127.0.0.1", 0, make_app, tls=(ca.leaf_cert, ca.leaf_key))
    origin = httpd.app.site_origin
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    home = tmp_path / "home"
    home.mkdir()
    process = AgentProcess(pcscd, home, {"pins": [PIN, PIN], "consents": ["allow-once"]},
                           allow_origins=(origin,))
    httpd.app.agent_url = process.url
    httpd.agent_urls = [process.wss_url, process.url]
    try:
        yield Setup(origin, httpd.app, process, ca.ca_cert, home)
    finally:
        print(f"--- agent output ---\n{process.stop()[-20000:]}")
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_registration_in_webkit_over_wss(setup: Setup, tmp_path: Path) -> None:
    config = setup.agent.ca_file.parent.parent  # <config dir>/tls/ca.pem
    work = tmp_path / "namespace"
    with webkit(setup.home, work, {"eid-agent-test-portal-ca": setup.portal_ca}, config) as driver:
        installed = (work / "install-certificate.log").read_text(encoding="utf-8")
        bundle = (work / "etc-ssl-certs" / "ca-certificates.crt").read_text(encoding="ascii")
        ca_pem = setup.agent.ca_file.read_text(encoding="ascii").strip()
        assert ca_pem in bundle, installed  # the namespace's system bundle, not the machine's
        assert ca_pem not in Path("/etc/ssl/certs/ca-certificates.crt").read_text(encoding="ascii")
        run_flow(driver, setup.origin, setup.app, ARTIFACTS)
        # ws:// from this https page is mixed content in WebKit: blocked, silently.
        blocked = driver.execute(
            "return (async () => { const eid = await import('/clients/js/eid-agent.js');"
            " const a = new eid.EidAgent({url: arguments[0], transport: 'ws'});"
            " try { await a.status(); return 'connected'; }"
            " catch (e) { return e.code; } })();", setup.agent.url)
        assert blocked == "ERR_EID_AGENT_UNAVAILABLE"
    assert re.search(rf"connection from '{re.escape(setup.origin)}'", setup.agent.output)


def test_webkit_without_the_agents_ca_says_what_to_do(setup: Setup, tmp_path: Path) -> None:
    """The agent runs but its CA is not in the system store: WebKit refuses wss:// and blocks
    ws://; the portal says "not running, or its certificate is not trusted" and to reinstall."""
    with webkit(setup.home, tmp_path / "namespace", {"eid-agent-test-portal-ca": setup.portal_ca}) as driver:
        driver.navigate(setup.origin + "/")
        driver.wait_js("document.querySelector('#agent-line').dataset.state === 'missing'")
        assert "does not trust its certificate" in driver.text("#agent-line")
        driver.wait_visible("#untrusted-help")
        assert "Reinstall the eID agent" in driver.text("#untrusted-help")
        driver.screenshot(ARTIFACTS / "untrusted.png")
        driver.click("#login")
        driver.wait_js("document.querySelector('#message').dataset.code === 'ERR_EID_AGENT_UNAVAILABLE'")
        assert "does not trust its certificate" in driver.text("#message")
    assert not re.search(rf"connection from '{re.escape(setup.origin)}'", setup.agent.output)
