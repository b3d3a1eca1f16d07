"""The ``eu.webeid`` host as a browser drives it: framing, limits, every command and error
path. The agent's side is a recording stand-in on the real channel path (the integration
tests in test_webeid_agent.py use the real agent)."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.webeid import paths
from tests.webeid_support import ROOT, Host, action, host_env

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
ORIGIN = "https://portal.example"
NONCE = base64.b64encode(os.urandom(32)).decode()
TOKEN = {"unverifiedCertificate": "MIIB", "algorithm": "ES384", "signature": "c2ln",
         "format": "web-eid:1.0", "appVersion": "https://example/releases/0.1.0"}


class FakeAgent:
    """Listens on the channel path of ``config_dir``; answers each call from ``replies``."""

    def __init__(self, config_dir: Path, env: dict[str, str]) -> None:
        self.path = paths.channel_path(config_dir, env)
        paths.make_private_dir(Path(self.path).parent)
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(self.path)
        self.server.listen()
        self.lines: list[dict[str, Any]] = []
        self.connections = 0
        self.disconnected = threading.Event()
        self.replies: list[dict[str, Any] | None] = []  # None: never answer
        self.hello_error: dict[str, Any] | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        stream = conn.makefile("rwb", buffering=0)
        for line in stream:
            message = json.loads(line)
            self.lines.append(message)
            if "origin" in message:
                if self.hello_error:
                    refusal = {"jsonrpc": "2.0", "id": None, "error": self.hello_error}
                    stream.write(json.dumps(refusal).encode() + b"\n")
                    break
                stream.write(b'{"ready":true}\n')
                continue
            reply = self.replies.pop(0) if self.replies else None
            if reply is not None:
                stream.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], **reply}).encode() + b"\n")
        self.disconnected.set()
        conn.close()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return host_env(tmp_path / "config", TMPDIR=str(tmp_path), XDG_RUNTIME_DIR="")


@pytest.fixture
def agent(tmp_path: Path, env: dict[str, str]) -> Any:
    fake = FakeAgent(tmp_path / "config", env)
    yield fake
    fake.close()


def test_version_frame_first_and_strict_semver_major_2(env) -> None:
    host = Host(env)
    version = host.handshake(timeout=5)
    elapsed = time.monotonic() - host.started
    assert set(version) == {"version"}
    match = SEMVER.match(version["version"])
    assert match and match.group(1) == "2", version
    assert elapsed < 5
    assert host.close() == 0  # the browser went away before sending anything


@pytest.mark.parametrize("command", ["quit", "status"])
def test_quit_and_status_answer_an_empty_object_and_exit(env, agent, command) -> None:
    host = Host(env)
    host.handshake()
    host.send({"command": command, "arguments": {}})
    assert host.reply(2) == {}
    assert host.proc.wait(2) == 0  # exits on its own after the one reply
    assert agent.lines == []  # the agent was only looked for, never asked anything


def _raw(env: dict[str, str], data: bytes) -> dict[str, Any] | None:
    host = Host(env)
    host.handshake()
    assert host.proc.stdin is not None
    host.proc.stdin.write(data)
    host.proc.stdin.flush()
    try:
        return host.reply(5)
    finally:
        host.close()


@pytest.mark.parametrize("size", [0, 4, 8193, 1 << 20, 0xFFFFFFFF])
def test_frames_outside_5_to_8192_bytes_get_an_error_reply(env, agent, size) -> None:
    reply = _raw(env, struct.pack("=I", size) + b"x" * min(size, 9000))
    assert reply == {"error": {"code": "ERR_WEBEID_NATIVE_FATAL", "message": reply["error"]["message"]}}
    assert "5 to 8192" in reply["error"]["message"]
    assert agent.connections == 0


def test_largest_allowed_frame_is_read(env, agent) -> None:
    padding = "x" * (8192 - len(json.dumps({"command": "quit", "arguments": {"p": ""}})))
    body = json.dumps({"command": "quit", "arguments": {"p": padding}}).encode()
    assert len(body) == 8192
    assert _raw(env, struct.pack("=I", len(body)) + body) == {}


@pytest.mark.parametrize("body", [b"not json", b'["command"]', b'{"command":"quit"}',
                                  b'{"command":1,"arguments":{}}', b'{"command":"quit","arguments":[]}',
                                  b"\xff\xfe\xfd\xfc\xfb"])
def test_malformed_requests_get_a_fatal_error(env, agent, body) -> None:
    reply = _raw(env, struct.pack("=I", len(body)) + body)
    assert reply is not None and reply["error"]["code"] == "ERR_WEBEID_NATIVE_FATAL"
    assert agent.connections == 0


def test_unknown_command_is_fatal(env, agent) -> None:
    reply = action(env, "read-identity", {"origin": ORIGIN})
    assert reply["error"]["code"] == "ERR_WEBEID_NATIVE_FATAL"
    assert "not supported" in reply["error"]["message"]
    assert agent.connections == 0


BAD_ORIGINS = [
    "http://portal.example", "http://localhost", "wss://portal.example", "https://portal.example/",
    "https://portal.example/path", "https://portal.example?q=1", "https://portal.example#f",
    "https://user@portal.example", "https://portal.example:99999", "chrome-extension://abc",
    "https://" + "a" * 248 + ".ee", "", "null", 42, None,
]


@pytest.mark.parametrize("origin", BAD_ORIGINS)
def test_bad_origins_are_refused_before_the_agent(env, agent, origin) -> None:
    arguments = {"challengeNonce": NONCE, "origin": origin}
    reply = action(env, "authenticate", arguments)
    assert reply["error"]["code"] == "ERR_WEBEID_NATIVE_INVALID_ARGUMENT", reply
    assert agent.connections == 0  # never reached the agent, so never a card


@pytest.mark.parametrize(("command", "arguments", "words"), [
    ("authenticate", {"origin": ORIGIN}, "missing challengeNonce"),
    ("authenticate", {"challengeNonce": NONCE, "origin": ORIGIN, "timeout": 5}, "unknown timeout"),
    ("authenticate", {"challengeNonce": "A" * 43, "origin": ORIGIN}, "44 to 128"),
    ("authenticate", {"challengeNonce": "A" * 129, "origin": ORIGIN}, "44 to 128"),
    ("authenticate", {"challengeNonce": 12345, "origin": ORIGIN}, "non-empty string"),
    ("get-signing-certificate", {"origin": ORIGIN, "x": 1}, "unknown x"),
    ("sign", {"origin": ORIGIN, "hash": base64.b64encode(b"x" * 32).decode(), "hashFunction": "SHA-384",
              "certificate": "MIIB"}, "48 bytes, not 32"),
    ("sign", {"origin": ORIGIN, "hash": base64.b64encode(b"x" * 32).decode(), "hashFunction": "MD5",
              "certificate": "MIIB"}, "unsupported hashFunction"),
    ("sign", {"origin": ORIGIN, "hash": "%%%", "hashFunction": "SHA-256", "certificate": "MIIB"},
     "not base64"),
    ("sign", {"origin": ORIGIN, "hash": base64.b64encode(b"x" * 32).decode(), "hashFunction": "SHA-256"},
     "missing certificate"),
])
def test_bad_arguments_are_refused_before_the_agent(env, agent, command, arguments, words) -> None:
    reply = action(env, command, arguments)
    assert reply["error"]["code"] == "ERR_WEBEID_NATIVE_INVALID_ARGUMENT"
    assert words in reply["error"]["message"]
    assert agent.connections == 0


def test_authenticate_is_passed_to_the_agent_with_the_extension_origin(env, agent) -> None:
    agent.replies.append({"result": {**TOKEN, "extra": "dropped"}})
    reply = action(env, "authenticate", {"challengeNonce": NONCE, "origin": ORIGIN, "lang": "nl"})
    assert reply == TOKEN
    assert agent.lines[0] == {"origin": ORIGIN}
    assert agent.lines[1]["method"] == "authenticate"
    assert agent.lines[1]["params"] == {"challengeNonce": NONCE, "options": {"lang": "nl"}}


def test_get_signing_certificate_and_sign_shapes(env, agent) -> None:
    algorithms = [{"cryptoAlgorithm": "ECC", "hashFunction": "SHA-384", "paddingScheme": "NONE"}]
    agent.replies.append({"result": {"certificate": "MIIC", "supportedSignatureAlgorithms": algorithms}})
    reply = action(env, "get-signing-certificate", {"origin": ORIGIN})
    assert reply == {"certificate": "MIIC", "supportedSignatureAlgorithms": algorithms}
    assert agent.lines[-1]["method"] == "getSigningCertificate"
    digest = base64.b64encode(b"h" * 48).decode()
    agent.replies.append({"result": {"signature": "c2ln", "signatureAlgorithm": algorithms[0]}})
    reply = action(env, "sign", {"hash": digest, "hashFunction": "SHA-384", "certificate": "MIIC",
                                 "origin": ORIGIN})
    assert reply == {"signature": "c2ln", "signatureAlgorithm": algorithms[0]}
    assert agent.lines[-1]["params"] == {"hash": digest, "hashFunction": "SHA-384", "certificate": "MIIC"}


@pytest.mark.parametrize(("agent_code", "webeid_code"), [
    ("ERR_WEBEID_USER_CANCELLED", "ERR_WEBEID_USER_CANCELLED"),
    ("ERR_WEBEID_USER_TIMEOUT", "ERR_WEBEID_USER_TIMEOUT"),
    ("ERR_WEBEID_NATIVE_INVALID_ARGUMENT", "ERR_WEBEID_NATIVE_INVALID_ARGUMENT"),
    ("ERR_EID_ORIGIN_NOT_ALLOWED", "ERR_WEBEID_USER_CANCELLED"),
    ("ERR_EID_PIN_BLOCKED", "ERR_WEBEID_NATIVE_FATAL"),
    ("ERR_EID_NO_READER", "ERR_WEBEID_NATIVE_FATAL"),
    ("ERR_EID_SOMETHING_NEW", "ERR_WEBEID_NATIVE_FATAL"),
])
def test_agent_errors_map_to_codes_web_eid_js_knows(env, agent, agent_code, webeid_code) -> None:
    error = {"code": -32000, "message": "what happened", "data": {"code": agent_code}}
    agent.replies.append({"error": error})
    reply = action(env, "authenticate", {"challengeNonce": NONCE, "origin": ORIGIN})
    assert reply == {"error": {"code": webeid_code, "message": "what happened", "eidAgentCode": agent_code}}


def test_an_incomplete_result_is_not_passed_on(env, agent) -> None:
    agent.replies.append({"result": {**TOKEN, "signature": ""}})
    reply = action(env, "authenticate", {"challengeNonce": NONCE, "origin": ORIGIN})
    assert reply["error"]["code"] == "ERR_WEBEID_NATIVE_FATAL"


def test_closing_the_port_mid_operation_drops_the_channel(env, agent) -> None:
    agent.replies.append(None)  # the user is still looking at the PIN dialog
    host = Host(env)
    host.handshake()
    host.send({"command": "authenticate", "arguments": {"challengeNonce": NONCE, "origin": ORIGIN}})
    deadline = time.monotonic() + 10
    while len(agent.lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(agent.lines) == 2
    assert not agent.disconnected.is_set()
    started = time.monotonic()
    assert host.close(grace=2.0) == 0  # left by itself when stdin closed, before the SIGKILL
    assert agent.disconnected.wait(2)
    assert time.monotonic() - started < 2


def test_sigkill_mid_operation_drops_the_channel(env, agent) -> None:
    agent.replies.append(None)
    host = Host(env)
    host.handshake()
    host.send({"command": "get-signing-certificate", "arguments": {"origin": ORIGIN}})
    deadline = time.monotonic() + 10
    while len(agent.lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    host.proc.kill()
    host.proc.wait()
    assert agent.disconnected.wait(2)


def test_a_channel_folder_open_to_others_is_refused(tmp_path, env, agent) -> None:
    os.chmod(Path(agent.path).parent, 0o755)
    agent.replies.append({"result": TOKEN})
    reply = action(env, "authenticate", {"challengeNonce": NONCE, "origin": ORIGIN})
    assert reply["error"]["code"] == "ERR_WEBEID_NATIVE_FATAL"
    assert "not safe" in reply["error"]["message"]
    assert agent.connections == 0


def test_the_host_imports_only_the_standard_library(env) -> None:
    probe = (
        "import sys, io, runpy;"
        "sys.stdin = io.TextIOWrapper(io.BytesIO());"
        "sys.argv = ['host', 'chrome-extension://x/'];"
        "import agent.webeid.host as h;"
        "h.main();"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, timeout=30)
    modules = set(result.stderr.decode().split())
    assert "agent.webeid.host" in modules
    heavy = {"PySide6", "smartcard", "websockets", "cryptography", "agent.core", "agent.ws", "agent.pcsc",
             "asyncio", "tray", "pystray"}
    assert not heavy & {m.split(".")[0] if m.split(".")[0] != "agent" else ".".join(m.split(".")[:2])
                        for m in modules}


def test_a_request_followed_by_end_of_input_still_gets_its_local_reply(env, agent) -> None:
    # As web-eid-app's own smoke test and shell pipes do: write, close, read.
    from tests.webeid_support import frame

    request = {"command": "authenticate", "arguments": {"challengeNonce": NONCE, "origin": "http://x.example"}}
    done = subprocess.run([sys.executable, "-m", "agent.webeid.host", "chrome-extension://x/"],
                          input=frame(request), capture_output=True, env=env, cwd=ROOT, timeout=30)
    size = struct.unpack("=I", done.stdout[:4])[0]
    rest = done.stdout[4 + size:]
    reply = json.loads(rest[4:4 + struct.unpack("=I", rest[:4])[0]])
    assert reply["error"]["code"] == "ERR_WEBEID_NATIVE_INVALID_ARGUMENT"
    assert agent.connections == 0


def test_an_origin_refused_by_machine_policy_is_fatal_not_a_cancel(env, agent) -> None:
    agent.hello_error = {"code": -32003, "message": "https://portal.example is not among the sites the "
                         "administrator allowed", "data": {"code": "ERR_EID_ORIGIN_NOT_ALLOWED"}}
    reply = action(env, "authenticate", {"challengeNonce": NONCE, "origin": ORIGIN})
    assert reply["error"]["code"] == "ERR_WEBEID_NATIVE_FATAL"
    assert reply["error"]["eidAgentCode"] == "ERR_EID_ORIGIN_NOT_ALLOWED"
    assert "administrator" in reply["error"]["message"]
    assert len(agent.lines) == 1  # the hello only: no request was sent


def test_the_console_script_is_declared_and_installed_with_this_checkout() -> None:
    """pyproject names eid-agent-webeid-host; where this checkout is pip-installed (CI's
    scripts/setup.sh: ``pip install -e .``), the script sits next to the interpreter."""
    import json as json_
    import tomllib
    from importlib import metadata

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["eid-agent-webeid-host"] == "agent.webeid.host:main"
    # the installed copy (a source tree's own eid_agent.egg-info has no direct_url.json)
    installed = [d for d in metadata.distributions(name="eid-agent") if d.read_text("direct_url.json")]
    if not installed:
        pytest.skip("eid-agent is not pip-installed here")
    dist = installed[0]
    url = json_.loads(dist.read_text("direct_url.json") or "{}").get("url")
    if url != ROOT.as_uri():
        pytest.skip(f"the venv's eid-agent is installed from {url}, not this checkout")
    names = {ep.name for ep in dist.entry_points if ep.group == "console_scripts"}
    assert "eid-agent-webeid-host" in names
    script = Path(sys.executable).with_name("eid-agent-webeid-host")
    assert script.is_file()
    done = subprocess.run([script, "chrome-extension://x/"], input=b"", capture_output=True, timeout=30)
    assert done.stdout[4:].startswith(b'{"version"')
