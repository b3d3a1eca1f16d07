"""Browser plumbing for the public-origin tests: a test CA for the portal's https certificate,
NSS databases, a private Xvfb, and two small WebDriver clients in the standard library:

- :class:`Marionette`: Firefox's built-in Marionette protocol over TCP (no geckodriver);
- :class:`WebDriverHttp`: classic W3C WebDriver over HTTP (``WebKitWebDriver``).

Both speak the same W3C commands (``Navigate``, ``FindElement``, ``ElementClick`` …), so the
registration flow is written once on :class:`Driver`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element identifier


# --- certificates ---------------------------------------------------------------------------------

@dataclass
class TestCa:
    ca_cert: Path  # PEM
    leaf_cert: Path  # PEM: leaf then CA
    leaf_key: Path  # PEM
    spki_sha256: str  # base64 SHA-256 of the leaf's SubjectPublicKeyInfo

    __test__ = False  # not a pytest class


def make_test_ca(folder: Path, name: str, hosts: list[str]) -> TestCa:
    """A throw-away CA and a server certificate for ``hosts`` (names or IP addresses)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(pem))
    leaf_path = folder / "server.pem"
    leaf_path.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_path = folder / "server.key"
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return TestCa(ca_path, leaf_path, key_path, base64.b64encode(hashlib.sha256(spki).digest()).decode())


def nss_trust(db_dir: Path, cas: dict[str, Path]) -> None:
    """Create (or add to) an NSS database and trust each CA for TLS servers, as installers do
    for Chromium (``~/.pki/nssdb``) and Firefox (the profile folder)."""
    if shutil.which("certutil") is None:
        raise RuntimeError("certutil (libnss3-tools) is not installed")
    db_dir.mkdir(parents=True, exist_ok=True)
    if not (db_dir / "cert9.db").exists():
        subprocess.run(["certutil", "-N", "-d", f"sql:{db_dir}", "--empty-password"], check=True,
                       capture_output=True)
    for nickname, pem in cas.items():
        subprocess.run(["certutil", "-A", "-d", f"sql:{db_dir}", "-n", nickname, "-t", "C,,",
                        "-i", str(pem)], check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- X server -------------------------------------------------------------------------------------

@contextmanager
def xvfb(size: str = "1280x900x24") -> Iterator[str]:
    """A private X server (Xvfb picks a free display number); yields ``:N``."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as ready:
            number = ready.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


def screenshot_display(display: str, path: Path) -> None:
    """The whole X screen (browser UI included, which page screenshots do not show)."""
    from PIL import ImageGrab

    path.parent.mkdir(parents=True, exist_ok=True)
    ImageGrab.grab(xdisplay=display).save(path)


# --- WebDriver ------------------------------------------------------------------------------------

class WebDriverError(RuntimeError):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(f"{error}: {message}")
        self.error = error


class Driver:
    """W3C WebDriver commands shared by both transports, and waits written on top."""

    def command(self, name: str, params: dict[str, Any] | None = None) -> Any:
        raise NotImplementedError

    def navigate(self, url: str) -> None:
        self.command("Navigate", {"url": url})

    def execute(self, script: str, *args: Any) -> Any:
        return self.command("ExecuteScript", {"script": script, "args": list(args)})

    def find(self, css: str) -> str:
        found = self.command("FindElement", {"using": "css selector", "value": css})
        if ELEMENT not in found:
            raise AssertionError(f"unexpected FindElement answer {found!r}")
        return str(found[ELEMENT])

    def click(self, css: str) -> None:
        self.command("ElementClick", {"id": self.find(css)})

    def type(self, css: str, text: str) -> None:
        element = self.find(css)
        self.command("ElementClear", {"id": element})
        self.command("ElementSendKeys", {"id": element, "text": text})

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.command("TakeScreenshot")))

    def wait_js(self, expression: str, *args: Any, timeout: float = 60.0) -> Any:
        """Wait until the JS ``expression`` (a function body's return value) is truthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.execute(f"return ({expression});", *args)
            except WebDriverError as exc:  # e.g. the page is navigating
                last = exc
            else:
                if last:
                    return last
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression!r} (last: {last!r})")

    def wait_visible(self, css: str, timeout: float = 60.0) -> None:
        self.wait_js("(() => { const e = document.querySelector(arguments[0]);"
                     " return !!e && !e.hidden && e.offsetParent !== null; })()", css, timeout=timeout)

    def attribute(self, css: str, name: str) -> str | None:
        value = self.execute("const e = document.querySelector(arguments[0]);"
                             " return e ? e.getAttribute(arguments[1]) : null;", css, name)
        return None if value is None else str(value)

    def text(self, css: str) -> str:
        return str(self.execute("const e = document.querySelector(arguments[0]);"
                                " return e ? e.textContent : '';", css))


class Marionette(Driver):
    """Firefox's Marionette protocol: ``<length>:<json>`` frames; commands are
    ``[0, id, "WebDriver:Name", params]`` and answers ``[1, id, error, result]``."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.buffer = b""
        hello = self._receive()
        if hello.get("marionetteProtocol", 0) < 3:
            raise RuntimeError(f"unexpected Marionette hello {hello}")
        self.next_id = 1

    def _receive(self) -> Any:
        while b":" not in self.buffer:
            self._fill()
        length, _, rest = self.buffer.partition(b":")
        size = int(length)
        self.buffer = rest
        while len(self.buffer) < size:
            self._fill()
        frame, self.buffer = self.buffer[:size], self.buffer[size:]
        return json.loads(frame)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Marionette closed the connection")
        self.buffer += chunk

    def command(self, name: str, params: dict[str, Any] | None = None) -> Any:
        return self.raw(f"WebDriver:{name}", params)

    def raw(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """Any Marionette command by its full name (e.g. ``Marionette:SetContext``)."""
        message_id = self.next_id
        self.next_id += 1
        body = json.dumps([0, message_id, name, params or {}]).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body)
        while True:
            kind, answer_id, error, result = self._receive()
            if kind == 1 and answer_id == message_id:
                break
        if error:
            raise WebDriverError(error.get("error", "error"), error.get("message", ""))
        if isinstance(result, dict) and set(result) == {"value"}:
            return result["value"]
        return result

    def new_session(self, capabilities: dict[str, Any] | None = None) -> Any:
        return self.command("NewSession", {"capabilities": {"alwaysMatch": capabilities or {}}})

    def close(self) -> None:
        try:
            self.command("DeleteSession")
        except (OSError, WebDriverError, ConnectionError):
            pass
        self.sock.close()


class WebDriverHttp(Driver):
    """Classic W3C WebDriver over HTTP (WebKitWebDriver)."""

    ROUTES = {
        "Navigate": ("POST", "url"),
        "ExecuteScript": ("POST", "execute/sync"),
        "FindElement": ("POST", "element"),
        "ElementClick": ("POST", "element/{id}/click"),
        "ElementClear": ("POST", "element/{id}/clear"),
        "ElementSendKeys": ("POST", "element/{id}/value"),
        "TakeScreenshot": ("GET", "screenshot"),
    }

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session: str | None = None

    def _http(self, method: str, path: str, body: dict[str, Any] | None = None,
              timeout: float = 120.0) -> Any:
        data = None if method == "GET" else json.dumps(body or {}).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            answer = json.loads(exc.read() or b"{}")
        value = answer.get("value")
        if isinstance(value, dict) and "error" in value:
            raise WebDriverError(value["error"], value.get("message", ""))
        return value

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._http("GET", "/status", timeout=5)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def new_session(self, capabilities: dict[str, Any]) -> Any:
        value = self._http("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session = value["sessionId"]
        return value

    def command(self, name: str, params: dict[str, Any] | None = None) -> Any:
        method, route = self.ROUTES[name]
        params = dict(params or {})
        if "{id}" in route:
            route = route.replace("{id}", params.pop("id"))
        return self._http(method, f"/session/{self.session}/{route}", params)

    def close(self) -> None:
        if self.session:
            try:
                self._http("DELETE", f"/session/{self.session}", timeout=30)
            except (OSError, WebDriverError):
                pass
            self.session = None
