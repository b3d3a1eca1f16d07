"""clients/js/eid-agent.js in Debian's Chromium (Playwright, never a downloaded browser)
against the real WebSocket server with the fake service.

The test page is served from http://127.0.0.1:<port> (a localhost origin, which the
agent allows over plain http with its developer switch), so the browser sends its real Origin header.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.ws import WsServer
from tests.ws_fakes import FAKE_PIN, FakeService, block, wrong_pin

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js" / "eid-agent.js"
PAGE = b"""<!doctype html><meta charset="utf-8"><title>portal</title>
<script type="module">
import * as eid from "/eid-agent.js";
window.eid = eid;
window.events = [];
window.ready = true;
</script>"""
NONCE = "n" * 44


class AgentThread:
    """The WebSocket server on its own event loop thread (Playwright's sync API owns ours)."""

    def __init__(self, service: FakeService) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: WsServer | None = None

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def start(self, port: int = 0) -> int:
        self.server = WsServer(
            self.service, port=port, hosts=("127.0.0.1",), allow_http_loopback=True
        )
        self.run(self.server.start())
        return self.server.port

    def stop_server(self) -> None:
        if self.server is not None:
            self.run(self.server.close())
            self.server = None

    def shutdown(self) -> None:
        self.stop_server()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/":
            self._send(PAGE, "text/html")
        elif self.path == "/eid-agent.js":
            self._send(CLIENT.read_bytes(), "text/javascript")
        else:
            self.send_error(404)

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def web_origin() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def agent() -> Iterator[AgentThread]:
    thread = AgentThread(FakeService())
    thread.start()
    yield thread
    thread.shutdown()


@pytest.fixture
def page(browser: Any, web_origin: str, agent: AgentThread) -> Iterator[Any]:
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(web_origin + "/")
    tab.wait_for_function("window.ready === true")
    assert agent.server is not None
    tab.evaluate("url => window.eid.configure({url})", f"ws://127.0.0.1:{agent.server.port}")
    yield tab
    context.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


CATCH = """async (call) => {
  try { return {ok: await call()}; }
  catch (e) { return {name: e.name, code: e.code, data: e.data,
                      isBase: e instanceof window.eid.EidAgentError, message: e.message,
                      triesLeft: e.triesLeft}; }
}"""


def run_js(page: Any, body: str, arg: Any = None) -> dict[str, Any]:
    """Evaluate an async arrow body with ``eid`` in scope; return {ok} or the error's fields."""
    script = f"""async (arg) => {{
      const eid = window.eid;
      const wrap = {CATCH};
      return await wrap(async () => {{ {body} }});
    }}"""
    return page.evaluate(script, arg)


def test_status_from_the_page(page: Any, agent: AgentThread, web_origin: str) -> None:
    result = run_js(page, "return await eid.status();")
    assert result == {"ok": {"version": "0.1.0", "readers": [{"cardPresent": True}]}}
    assert agent.service.opened == [web_origin]  # the browser's own Origin header


def test_authenticate_sends_named_params(page: Any, agent: AgentThread, web_origin: str) -> None:
    result = run_js(
        page,
        "return await eid.authenticate(arg, {userInteractionTimeout: 60000, lang: 'nl'});",
        NONCE,
    )
    assert result["ok"]["challenge_nonce"] == NONCE
    assert agent.service.sessions[0].calls == [
        ("authenticate", {"challenge_nonce": NONCE, "timeout": 60.0, "lang": "nl"})
    ]


def test_sign_and_read_identity(page: Any, agent: AgentThread) -> None:
    signed = run_js(page, "return await eid.sign('MIIB', 'q83v', 'SHA-256');")
    assert signed["ok"]["hash_function"] == "SHA-256"
    identity = run_js(page, "return await eid.readIdentity({photo: false});")
    assert identity["ok"]["photo"] is False


def test_missing_parameter_is_thrown_before_sending(page: Any, agent: AgentThread) -> None:
    for body in (
        "return await eid.authenticate();",
        "return await eid.sign('MIIB', '', 'SHA-256');",
        "return await eid.sign('MIIB', 'q83v');",
    ):
        result = run_js(page, body)
        assert result["name"] == "MissingParameterError"
        assert result["code"] == "ERR_WEBEID_MISSING_PARAMETER"
        assert result["isBase"] is True
    assert agent.service.card_accesses == []


def test_typed_agent_errors(page: Any, agent: AgentThread) -> None:
    agent.service.scripts["authenticate"] = wrong_pin
    result = run_js(page, "return await eid.authenticate(arg);", NONCE)
    assert result["name"] == "PinInvalidError"
    assert result["code"] == "ERR_EID_PIN_INVALID"
    assert result["triesLeft"] == 2
    assert result["isBase"] is True
    assert FAKE_PIN not in str(result)


def test_agent_unavailable(page: Any, agent: AgentThread) -> None:
    agent.stop_server()
    result = run_js(page, "return await eid.status();")
    assert result["name"] == "AgentUnavailableError"
    assert result["code"] == "ERR_EID_AGENT_UNAVAILABLE"
    assert "not running" in result["message"]


def test_refused_origin_never_reaches_the_service(page: Any, agent: AgentThread, web_origin: str) -> None:
    agent.service.blocked.add(web_origin)
    result = run_js(page, "return await eid.status();")
    assert result["name"] == "AgentUnavailableError"
    assert agent.service.prechecked == [web_origin]
    assert agent.service.opened == []


def test_action_timeout(page: Any, agent: AgentThread) -> None:
    agent.service.scripts["authenticate"] = block
    assert agent.server is not None
    result = run_js(
        page,
        """const a = new eid.EidAgent({url: arg.url, timeoutMargin: 0});
           return await a.authenticate(arg.nonce, {userInteractionTimeout: 300});""",
        {"url": f"ws://127.0.0.1:{agent.server.port}", "nonce": NONCE},
    )
    assert result["name"] == "ActionTimeoutError"
    assert result["code"] == "ERR_WEBEID_ACTION_TIMEOUT"


def test_events_and_reconnection(page: Any, agent: AgentThread) -> None:
    """Events arrive; after the agent restarts, the client reconnects and resubscribes."""
    page.evaluate("() => window.eid.onEvent(e => window.events.push(e))")
    wait_for(lambda: any(s.callback is not None for s in agent.service.sessions))
    event = {"type": "card-inserted", "reader": "Virtual PCD 00 00", "card": None}
    agent.service.fire(event)
    page.wait_for_function("window.events.length === 1")

    assert agent.server is not None
    port = agent.server.port
    agent.stop_server()
    sessions_before = len(agent.service.sessions)
    agent.start(port)
    wait_for(
        lambda: (
            len(agent.service.sessions) > sessions_before and agent.service.sessions[-1].callback is not None
        )
    )
    removed = {"type": "card-removed", "reader": "Virtual PCD 00 00", "card": None}
    agent.service.fire(removed)
    page.wait_for_function("window.events.length === 2")
    assert page.evaluate("window.events") == [event, removed]
    # A call after the restart works on the new connection.
    assert "ok" in run_js(page, "return await eid.status();")


def test_pending_call_rejects_when_the_agent_goes_away(page: Any, agent: AgentThread) -> None:
    agent.service.scripts["authenticate"] = block
    page.evaluate(
        "nonce => { window.pending = window.eid.authenticate(nonce).then("
        "() => 'resolved', e => e.name + ' ' + e.code); }",
        NONCE,
    )
    wait_for(lambda: bool(agent.service.card_accesses))
    agent.stop_server()
    assert page.evaluate("window.pending") == "ConnectionLostError ERR_EID_CONNECTION_LOST"
    assert agent.service.sessions[0].closed


# --- the slot range, wss:// preference and the distinct connection errors -------------------------

def free_port_run(count: int) -> int:
    """A port p with p .. p+count-1 all free on 127.0.0.1 (checked by binding them)."""
    import socket

    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        held = []
        try:
            for offset in range(count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no run of free ports")


class TlsSink:
    """A TLS listener with a self-signed certificate: what an agent's wss:// port looks like to a
    browser that does not trust the agent's CA (the handshake fails in the browser)."""

    def __init__(self, port: int, tmp: Path) -> None:
        import socket
        import ssl

        from tests.browsers import make_test_ca

        ca = make_test_ca(tmp, "untrusted agent CA", ["127.0.0.1"])
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(ca.leaf_cert, ca.leaf_key)
        self.listener = socket.create_server(("127.0.0.1", port))
        self.handshakes = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True):
                    pass
            except OSError:
                self.handshakes += 1  # the browser aborts: unknown CA
            finally:
                conn.close()

    def close(self) -> None:
        self.listener.close()


def test_tries_the_slots_until_its_own_agent_answers(browser: Any, web_origin: str) -> None:
    """Slot 0 is another user's agent (refuses the handshake), slot 1 is ours."""
    base = free_port_run(4)
    other, ours = AgentThread(FakeService()), AgentThread(FakeService())
    other.service.blocked.add(web_origin)
    other.start(base)
    ours.start(base + 2)
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(web_origin + "/")
        tab.wait_for_function("window.ready === true")
        tab.evaluate("base => window.eid.configure({basePort: base, slots: 3})", base)
        started = time.monotonic()
        assert "ok" in run_js(tab, "return await eid.status();")
        elapsed = time.monotonic() - started
        endpoint = run_js(tab, "const a = new eid.EidAgent({basePort: arg, slots: 3});"
                               "await a.status(); const e = a.endpoint; a.close(); return e;", base)
        assert endpoint["ok"]["url"] == f"ws://127.0.0.1:{base + 2}"
        assert endpoint["ok"]["slot"] == 1
        assert other.service.prechecked and other.service.opened == []
        assert ours.service.opened == [web_origin, web_origin]
        assert elapsed < 3.0  # parallel, not one timeout per slot
        # Remembered for the session: the next page of this tab asks slot 1 first.
        assert tab.evaluate("sessionStorage.getItem('eid-agent.endpoint')") == f"ws://127.0.0.1:{base + 2}"
    finally:
        context.close()
        other.shutdown()
        ours.shutdown()


def test_local_access_state_is_reported(page: Any) -> None:
    state = page.evaluate("() => window.eid.localAccessState()")
    # A page on loopback: Chromium knows the permission; it never says "denied" here.
    assert state in ("granted", "prompt", "unsupported")
    # Chromium says "prompt" even here, but a loopback page is never asked about loopback.
    assert page.evaluate("() => window.eid.needsLocalAccessPrompt()") is False


def test_untrusted_certificate_is_its_own_error(browser: Any, web_origin: str, tmp_path: Path) -> None:
    """wss:// with a certificate the browser does not trust, ws:// fine: with transport "wss" the
    client says the certificate is the problem; in "auto" it falls back to ws:// and says so."""
    base = free_port_run(2)
    ours = AgentThread(FakeService())
    ours.start(base)
    sink = TlsSink(base + 1, tmp_path)
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(web_origin + "/")
        tab.wait_for_function("window.ready === true")
        strict = run_js(tab, "const a = new eid.EidAgent({basePort: arg, slots: 1, transport: 'wss'});"
                             "return await a.status();", base)
        assert strict["name"] == "CertificateUntrustedError"
        assert strict["code"] == "ERR_EID_CERTIFICATE_UNTRUSTED"
        assert sink.handshakes >= 1  # the browser did reach the TLS port and gave up
        auto = run_js(tab, "const a = new eid.EidAgent({basePort: arg, slots: 1});"
                           "await a.status(); const e = a.endpoint; a.close(); return e;", base)
        assert auto["ok"] == {"url": f"ws://127.0.0.1:{base}", "secure": False, "slot": 0,
                              "certificateTrusted": False}
        ours.stop_server()
        gone = run_js(tab, "const a = new eid.EidAgent({basePort: arg, slots: 1});"
                           "return await a.status();", base)
        assert gone["code"] == "ERR_EID_AGENT_UNAVAILABLE"  # nothing on ws://: not running
    finally:
        context.close()
        sink.close()
        ours.shutdown()
