"""Browser-side helpers of the Web eID tests: the test extension, an https page on
``portal.example`` (self-signed, mapped to 127.0.0.1), a private Xvfb and the agent's PIN
dialog typed into with xdotool. Stays in tests/ (shared by the Chromium, Firefox and agent tests)."""

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
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.agent_process import free_port
from tests.webeid_support import ROOT

EXTENSION = ROOT / "tests" / "data" / "webeid-test-extension"
ARTIFACTS = ROOT / "artifacts" / "webeid"
HOST = "portal.example"
FIREFOX_ADDON_ID = "webeid-test@eid-agent.example"

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


def chromium_extension(folder: Path) -> str:
    """The test extension with a fresh ``key`` in ``folder``; returns its Chromium ID."""
    shutil.copytree(EXTENSION, folder)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["key"] = base64.b64encode(der).decode()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return extension_id(der)


def firefox_addon(folder: Path) -> str:
    """The test extension in Firefox's form (Manifest V2, background scripts, a gecko ID)."""
    shutil.copytree(EXTENSION, folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest.update(manifest_version=2, background={"scripts": ["background.js"]},
                    browser_specific_settings={"gecko": {"id": FIREFOX_ADDON_ID}})
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return FIREFOX_ADDON_ID


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


@contextlib.contextmanager
def https_page(folder: Path) -> Iterator[str]:
    """Serve PAGE over https on 127.0.0.1; yields ``https://portal.example:<port>``."""
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
    context.load_cert_chain(*_tls_files(folder))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://{HOST}:{port}"
    finally:
        server.shutdown()


@contextlib.contextmanager
def xvfb_display() -> Iterator[str]:
    """A private X server for the agent's Qt dialogs (skips when Xvfb/xdotool are missing)."""
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


def xdotool(display: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display},
                          capture_output=True, text=True, timeout=30, check=False)


def pin_dialogs(display: str) -> list[str]:
    """The agent's visible PIN dialogs (English titles)."""
    return xdotool(display, "search", "--onlyvisible", "--name", "Enter your PIN").stdout.split()


def grab_window(display: str, window: str, name: str) -> Path:
    from PIL import ImageGrab

    geometry = dict(line.split("=", 1) for line in
                    xdotool(display, "getwindowgeometry", "--shell", window).stdout.split())
    x, y, w, h = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=display).save(path)
    return path


def wait_pin_dialog(display: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while not (windows := pin_dialogs(display)):
        if time.monotonic() > deadline:
            raise AssertionError("the agent's PIN dialog never appeared")
        time.sleep(0.1)
    time.sleep(0.3)  # let it paint and take focus
    return windows[-1]


def type_pin_in_dialog(display: str, pin: str, shot: str) -> None:
    """Wait for the agent's PIN dialog, keep a screenshot, type the PIN like a person, Enter."""
    window = wait_pin_dialog(display)
    grab_window(display, window, shot)
    assert xdotool(display, "windowfocus", "--sync", window).returncode == 0
    assert xdotool(display, "type", "--delay", "40", pin).returncode == 0
    assert xdotool(display, "key", "Return").returncode == 0
