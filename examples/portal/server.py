"""HTTP side of the reference portal: ``http.server`` with JSON endpoints and static files.

Endpoints (JSON in and out; POST needs ``Content-Type: application/json`` and, when the
browser sends one, an ``Origin`` equal to the portal's origin):

=========================  ====  ============================================================
``/api/config``            GET   agent URL and slot range, language (cookie, else Accept-Language), test mode
``/api/state``             GET   the session's step, user, details, account
``/api/nonce``             POST  a challenge nonce bound to the session cookie
``/api/login``             POST  ``{token}``: Web eID token -> new session cookie
``/api/details``           POST  ``{name, birthDate, email, phone}`` -> code issued
``/api/code``              POST  ``{code}``
``/api/sign/prepare``      POST  ``{certificate, supportedSignatureAlgorithms}`` -> hash
``/api/sign/finish``       POST  ``{signature, signatureAlgorithm}`` -> account stored
``/api/logout``            POST
``/api/phone/code``        GET   the simulated phone app: the registration's live code
``/api/phone/new``         POST  the phone app issues a new code
``/api/test/advance-clock`` POST ``{seconds}``; only with ``--test-mode``
=========================  ====  ============================================================

The session cookie is HttpOnly and SameSite=Strict (Secure as well on https origins).
With ``--tls-cert``/``--tls-key`` the portal serves https, as a real public portal does.
"""

from __future__ import annotations

import argparse
import contextlib
import http.cookies
import http.server
import json
import logging
import mimetypes
import signal
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eid_validator import load_trusted_cas

from examples.portal.app import DEFAULT_AGENT_URL, LoginResult, PortalApp, PortalError
from examples.portal.clock import AdjustableClock, system_clock

__all__ = [
    "LANGUAGES",
    "PortalServer",
    "SESSION_COOKIE",
    "create_server",
    "local_origins",
    "main",
    "pick_language",
]

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STATIC = HERE / "static"
SESSION_COOKIE = "eidportal_session"
LANG_COOKIE = "eidportal_lang"
LANGUAGES = ("en", "nl", "fr", "de")
AGENT_SLOTS = 8  # the agent's slot range (docs/protocol.md): ws 24847+2k, wss 24848+2k
MAX_BODY = 64 * 1024

STATIC_FILES: dict[str, Path] = {
    "/": STATIC / "index.html",
    "/index.html": STATIC / "index.html",
    "/phone": STATIC / "phone.html",
    "/portal.js": STATIC / "portal.js",
    "/phone.js": STATIC / "phone.js",
    "/i18n.js": STATIC / "i18n.js",
    "/style.css": STATIC / "style.css",
    "/clients/js/eid-agent.js": REPO / "clients" / "js" / "eid-agent.js",
}


def pick_language(accept_language: str | None, cookie: str | None = None) -> str:
    """The page language: the ``eidportal_lang`` cookie, else the best Accept-Language match."""
    if cookie in LANGUAGES:
        return cookie
    best, best_q = LANGUAGES[0], 0.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best


def _agent_sources(agent_url: str) -> str:
    """CSP sources for the agent: ws:// and wss:// on its loopback host, any port of the range."""
    host = urllib.parse.urlsplit(agent_url).hostname or "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"ws://{shown}:* wss://{shown}:*"


def _agent_base_port(agent_url: str) -> int:
    return urllib.parse.urlsplit(agent_url).port or 24847


class _Handler(http.server.BaseHTTPRequestHandler):
    """One request; the :class:`PortalApp` is on the server object."""

    server: PortalServer
    protocol_version = "HTTP/1.1"

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def app(self) -> PortalApp:
        return self.server.app

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s %s", self.address_string(), format % args)

    def _cookie(self, name: str) -> str | None:
        jar = http.cookies.SimpleCookie()
        with contextlib.suppress(http.cookies.CookieError):
            jar.load(self.headers.get("Cookie", ""))
        morsel = jar.get(name)
        return morsel.value if morsel else None

    def _security_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {_agent_sources(self.app.agent_url)}; frame-ancestors 'none'")

    def _send(self, status: int, body: bytes, content_type: str,
              cookie: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._security_headers()
        if cookie is not None:
            secure = "; Secure" if self.app.site_origin.startswith("https:") else ""
            value = f"{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict{secure}"
            if cookie == "":
                value += "; Max-Age=0"
            self.send_header("Set-Cookie", value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any, cookie: str | None = None) -> None:
        self._send(status, json.dumps(value).encode(), "application/json; charset=utf-8", cookie)

    def _body(self) -> dict[str, Any]:
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.app.origins:
            raise PortalError(403, "bad-origin", "request from another site")
        if self.headers.get_content_type() != "application/json":
            raise PortalError(415, "invalid-input", "send JSON")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            raise PortalError(413, "invalid-input", "body too large")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            value = json.loads(raw)
        except ValueError:
            raise PortalError(400, "invalid-input", "body is not JSON") from None
        if not isinstance(value, dict):
            raise PortalError(400, "invalid-input", "body must be a JSON object")
        return value

    # -- verbs ---------------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = urllib.parse.urlsplit(self.path).path
        session = self._cookie(SESSION_COOKIE)
        try:
            if path == "/api/config":
                self._json(200, {
                    "agentUrl": self.app.agent_url,
                    "agentBasePort": _agent_base_port(self.app.agent_url),
                    "agentSlots": self.server.agent_slots,
                    "agentUrls": self.server.agent_urls,
                    "siteOrigin": self.app.site_origin,
                    "lang": pick_language(self.headers.get("Accept-Language"),
                                          self._cookie(LANG_COOKIE)),
                    "languages": list(LANGUAGES),
                    "testMode": self.app.test_mode,
                })
            elif path == "/api/state":
                self._json(200, self.app.state(session))
            elif path == "/api/phone/code":
                self._json(200, self.app.phone_code(session or ""))
            elif path in STATIC_FILES:
                self._static(STATIC_FILES[path])
            else:
                self._json(404, PortalError(404, "not-found", "no such page").to_json())
        except PortalError as exc:
            self._json(exc.status, exc.to_json())

    def _static(self, file: Path) -> None:
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix == ".js":
            content_type = "text/javascript"
        self._send(200, file.read_bytes(), f"{content_type}; charset=utf-8")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        path = urllib.parse.urlsplit(self.path).path
        session = self._cookie(SESSION_COOKIE) or ""
        try:
            body = self._body()
            if path == "/api/nonce":
                cookie = None
                if not self.app.has_session(session):
                    session = cookie = self.app.new_session()
                self._json(200, self.app.issue_nonce(session), cookie)
                return
            if path == "/api/logout":
                self.app.logout(session)
                self._json(200, {"step": "login"}, cookie="")
                return
            handler = self._post_routes().get(path)
            if handler is None:
                raise PortalError(404, "not-found", "no such endpoint")
            result = handler(session, body)
            if isinstance(result, LoginResult):
                self._json(200, result.body, cookie=result.session_id)
            else:
                self._json(200, result)
        except PortalError as exc:
            self._json(exc.status, exc.to_json())
        except Exception:
            logger.exception("portal request %s failed", path)
            self._json(500, PortalError(500, "internal", "internal error").to_json())

    def _post_routes(self) -> dict[str, Callable[[str, dict[str, Any]], Any]]:
        app = self.app
        return {
            "/api/login": lambda s, b: app.login(s, b, self.headers.get("Origin")),
            "/api/details": app.submit_details,
            "/api/code": app.check_code,
            "/api/sign/prepare": app.prepare_signature,
            "/api/sign/finish": app.finish_signature,
            "/api/phone/new": lambda s, _b: app.phone_new_code(s),
            "/api/test/advance-clock": lambda _s, b: app.advance_clock(b),
        }


class PortalServer(http.server.ThreadingHTTPServer):
    """The HTTP server; ``app`` is the :class:`PortalApp` it serves."""

    daemon_threads = True
    app: PortalApp
    agent_slots: int = AGENT_SLOTS
    agent_urls: list[str] | None = None  # explicit agent URLs instead of the slot range


def local_origins(host: str, port: int, scheme: str = "http") -> list[str]:
    """``<scheme>://<host>:<port>``, then the other loopback spellings a browser may use."""
    shown = f"[{host}]" if ":" in host else host
    origins = [f"{scheme}://{shown}:{port}"]
    if host in ("127.0.0.1", "localhost"):
        other = "localhost" if host == "127.0.0.1" else "127.0.0.1"
        origins.append(f"{scheme}://{other}:{port}")
    return origins


def create_server(host: str, port: int,
                  make_app: Callable[[list[str]], PortalApp],
                  tls: tuple[Path, Path] | None = None) -> PortalServer:
    """Bind ``host:port`` (0 = any free port), then build the app for the bound origin.

    ``make_app`` receives the origins (:func:`local_origins`) the app must accept. With
    ``tls`` = (certificate chain PEM, key PEM) the server speaks https.
    """
    server = PortalServer((host, port), _Handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    server.app = make_app(local_origins(host, server.server_address[1], scheme))
    return server


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.portal",
        description="eid-agent reference portal: register with a Belgian eID card")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    parser.add_argument("--agent-url", default=DEFAULT_AGENT_URL,
                        help=f"the agent's WebSocket URL (default {DEFAULT_AGENT_URL})")
    parser.add_argument("--trust", action="append", type=Path, default=[], metavar="PEM",
                        help="trusted CA certificate(s) (PEM/DER file; repeat)")
    parser.add_argument("--intermediate", action="append", type=Path, default=[], metavar="PEM",
                        help="extra intermediate CA certificate(s) for path building")
    parser.add_argument("--pki-dir", type=Path,
                        help="trust the virtual card's test PKI in this folder "
                             "(eid_emulator.pki layout: ca/root.crt.pem, ca/citizen-ca.crt.pem)")
    parser.add_argument("--data-dir", type=Path, default=Path("var/portal"),
                        help="folder for the accounts database (default var/portal)")
    parser.add_argument("--db", type=Path, help="SQLite file (default <data-dir>/accounts.sqlite)")
    parser.add_argument("--origin", help="the origin browsers use (default http://<host>:<port>)")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM",
                        help="serve https with this certificate chain (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's private key")
    parser.add_argument("--test-mode", action="store_true",
                        help="TESTS ONLY: enable /api/test/advance-clock")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    trust, intermediate = list(args.trust), list(args.intermediate)
    if args.pki_dir is not None:
        trust.append(args.pki_dir / "ca" / "root.crt.pem")
        intermediate.append(args.pki_dir / "ca" / "citizen-ca.crt.pem")
    if not trust:
        raise SystemExit("give the trusted CA certificates: --trust PEM (or --pki-dir DIR)")
    try:
        anchors = load_trusted_cas(p.read_bytes() for p in trust)
        intermediates = load_trusted_cas(p.read_bytes() for p in intermediate)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read the CA certificates: {exc}") from exc
    db = args.db or args.data_dir / "accounts.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    clock = AdjustableClock() if args.test_mode else system_clock

    def make_app(origins: list[str]) -> PortalApp:
        if args.origin:
            origins = [args.origin]
        return PortalApp(db, origins[0], anchors, intermediates=intermediates, clock=clock,
                         agent_url=args.agent_url, test_mode=args.test_mode,
                         also_origins=origins[1:])

    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit("give both --tls-cert and --tls-key")
    tls = (args.tls_cert, args.tls_key) if args.tls_cert is not None else None
    server = create_server(args.host, args.port, make_app, tls)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"portal: {server.app.site_origin}/  (agent {args.agent_url})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
