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
import datetime
import hashlib
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from agent.emulator.beid import BeidCard
from agent.emulator.pki import Holder, TestPki, make_card_data
from agent.validator import AuthTokenValidator, verify_signature
from tests.agent_process import AgentProcess, free_port
from tests.webeid_support import ROOT, host_env

pytestmark = [pytest.mark.pcsc, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
EXTENSION = ROOT / "tests" / "data" / "webeid-test-extension"
PIN = "1234"
HOST = "portal.example"

PAGE = """<!doctype html><meta charset="utf-8"><title>Web eID test page</title>
<script>
// web-eid.js's page side, reduced: post {action, ...}, wait for the ack, then -success/-failure.
window.webeid = (action, payload) => new Promise((resolve, reject) => {
  let acked = false;
  const ackTimer = setTimeout(
    () => { if (!acked) reject(new Error("ERR_WEBEID_EXTENSION_UNAVAILABLE")); }, 5000);
  function listener(event) {
    const m = event.data;
    if (event.source !== window || !m || typeof m.action !== "string") return;
    if (m.action === action + "-ack") { acked = true; clearTimeout(ackTimer); return; }
    if (m.action === action + "-success" || m.action === action + "-failure") {
      window.removeEventListener("message", listener);
      resolve(m);
    }
  }
  window.addEventListener("message", listener);
  window.postMessage({ action, libraryVersion: "2.0.0", ...payload }, "*");
});
// With #{"nonce":…,"hash":…} the page runs a whole login and signature by itself and shows
// the results in #result (for browsers driven without page scripting, e.g. Firefox).
window.addEventListener("load", async () => {
  if (!location.hash) return;
  const input = JSON.parse(decodeURIComponent(location.hash.slice(1)));
  const out = {};
  await new Promise((r) => setTimeout(r, 1000));  // as web-eid.js waits for the extension
  try {
    out.status = await window.webeid("web-eid:status", {});
    out.token = await window.webeid("web-eid:authenticate", { challengeNonce: input.nonce });
    out.cert = await window.webeid("web-eid:get-signing-certificate", {});
    out.signed = await window.webeid("web-eid:sign", { certificate: out.cert.certificate,
                                                      hash: input.hash, hashFunction: "SHA-256" });
  } catch (e) { out.exception = String(e); }
  document.getElementById("result").textContent = JSON.stringify(out);
});
</script><p>ready</p><pre id="result"></pre>"""


def extension_id(public_der: bytes) -> str:
    """Chromium's ID of an extension with this key: sha256, first 16 bytes, hex digits as a-p."""
    return "".join(chr(ord("a") + int(c, 16)) for c in hashlib.sha256(public_der).hexdigest()[:32])


def _extension(folder: Path) -> str:
    shutil.copytree(EXTENSION, folder)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["key"] = base64.b64encode(der).decode()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return extension_id(der)


def _tls_files(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def https_page(tmp_path: Path) -> Iterator[str]:
    body = PAGE.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_tls_files(tmp_path))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://{HOST}:{port}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


@contextlib.contextmanager
def _display(typed: bool) -> Iterator[str | None]:
    """A private Xvfb for the agent's Qt dialogs when the PIN is typed in them."""
    if not typed:
        yield None
        return
    if shutil.which("Xvfb") is None or shutil.which("xdotool") is None:
        pytest.skip("Xvfb/xdotool not installed")
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        display = ":" + ready.readline().strip()
    try:
        yield display
    finally:
        xvfb.terminate()
        xvfb.wait(10)


@pytest.mark.parametrize("typed", [False, True], ids=["scripted-pin", "pin-typed-in-agent-dialog"])
def test_web_eid_frames_from_chromium_through_the_host_to_a_valid_token(
    pki, pcscd, vpcd, tmp_path, https_page, typed
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed")
    from playwright.sync_api import sync_playwright

    from tests.test_portal_browser import type_pin_in_dialog

    served = vpcd(BeidCard("1.8", make_card_data(pki, Holder(pin=PIN), "1.8")))
    short = Path(tempfile.mkdtemp(prefix="we"))
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "agent").mkdir()
    ext_id = _extension(tmp_path / "extension")
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
    script: dict[str, Any] = {} if typed else {"pins": [PIN, PIN]}
    try:
        with _display(typed) as display, AgentProcess(
            pcscd, tmp_path / "agent", script, allow_origins=(https_page,), log_level="INFO",
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
                page.goto(https_page + "/")
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
                    "challengeNonce": nonce, "origin": https_page, "padding": "x" * 9000}}])
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
    identity = AuthTokenValidator(https_page, pki.trust_anchors, intermediates=pki.intermediates).validate(
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
    assert f"Web eID host connected for {https_page}" in output
    assert PIN not in output.replace(f"pin={PIN}", "")
