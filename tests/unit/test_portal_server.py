"""The reference portal's server logic and HTTP layer, without a browser or an agent.

Tokens and signatures are made here with the virtual card's own keys (the test PKI of
``eid_emulator.pki``), exactly as the card would make them, so the real validator checks
them. Time moves with an :class:`AdjustableClock`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from eid_emulator.beid import BeidCardData
from eid_emulator.pki import Holder, TestPki, make_card_data
from eid_validator import check_origin, signed_data
from eid_validator.algorithms import Algorithm

from examples.portal import AdjustableClock, CodeBook, PortalApp, PortalError
from examples.portal.codes import (
    CodeExpiredError,
    CodeLockedError,
    CodeMissingError,
    CodeWrongError,
)
from examples.portal.identity import belgian_birth_date
from examples.portal.server import SESSION_COOKIE, create_server, pick_language

ORIGIN = "http://127.0.0.1:8080"
DETAILS = {"name": "Alice Specimen", "birthDate": "1985-07-30", "email": "alice@example.be",
           "phone": "+32 470 12 34 56"}
STATIC = Path(__file__).resolve().parents[2] / "examples" / "portal" / "static"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.load_or_create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def card(pki: TestPki) -> BeidCardData:
    return make_card_data(pki, Holder(), "1.8")


@pytest.fixture(scope="module")
def other_card(pki: TestPki) -> BeidCardData:
    return make_card_data(pki, Holder(given_names="Bob", national_number="90010100123"), "1.8")


@pytest.fixture
def clock() -> AdjustableClock:
    return AdjustableClock()


@pytest.fixture
def app(pki: TestPki, clock: AdjustableClock, tmp_path: Path) -> PortalApp:
    return PortalApp(tmp_path / "accounts.sqlite", ORIGIN, pki.trust_anchors,
                     intermediates=pki.intermediates, clock=clock, test_mode=True)


# --- what the card would do ------------------------------------------------------------------

def _raw_ecdsa(der: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    r, s = decode_dss_signature(der)
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def make_token(data: BeidCardData, nonce: str, origin: str = ORIGIN) -> dict[str, str]:
    """A Web eID token as the agent returns it, signed with the card's authentication key."""
    key = data.auth_key
    name = "ES384" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    message = signed_data(Algorithm.parse(name), origin, nonce)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = _raw_ecdsa(key.sign(message, ec.ECDSA(hashes.SHA384())), key)
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {"unverifiedCertificate": base64.b64encode(data.auth_cert).decode(),
            "algorithm": name, "signature": base64.b64encode(signature).decode(),
            "format": "web-eid:1.0", "appVersion": "https://example/eid-agent/releases/test"}


def sign_hash(data: BeidCardData, digest_b64: str) -> dict[str, Any]:
    """``sign`` as the agent returns it (EC cards: SHA-384 hash, ECDSA)."""
    key = data.sign_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    digest = base64.b64decode(digest_b64)
    signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA384())))
    return {"signature": base64.b64encode(_raw_ecdsa(signature, key)).decode(),
            "signatureAlgorithm": {"cryptoAlgorithm": "ECC", "hashFunction": "SHA-384",
                                   "paddingScheme": "NONE"}}


SIGNING_ALGORITHMS = [{"cryptoAlgorithm": "ECC", "hashFunction": h, "paddingScheme": "NONE"}
                      for h in ("SHA-256", "SHA-384", "SHA-512")]


def login(app: PortalApp, data: BeidCardData) -> str:
    sid = app.new_session()
    nonce = app.issue_nonce(sid)["nonce"]
    return app.login(sid, {"token": make_token(data, nonce)}).session_id


def to_code_step(app: PortalApp, data: BeidCardData) -> str:
    sid = login(app, data)
    app.submit_details(sid, DETAILS)
    return sid


def to_sign_step(app: PortalApp, data: BeidCardData) -> str:
    sid = to_code_step(app, data)
    app.check_code(sid, {"code": app.phone_code(sid)["code"]})
    return sid


def prepare(app: PortalApp, sid: str, data: BeidCardData) -> dict[str, Any]:
    assert data.sign_cert is not None
    return app.prepare_signature(sid, {
        "certificate": base64.b64encode(data.sign_cert).decode(),
        "supportedSignatureAlgorithms": SIGNING_ALGORITHMS})


def _error(excinfo: pytest.ExceptionInfo[PortalError]) -> tuple[int, str]:
    return excinfo.value.status, excinfo.value.code


# --- login -----------------------------------------------------------------------------------

def test_login_with_valid_token_rotates_the_session(app: PortalApp, card: BeidCardData) -> None:
    sid = app.new_session()
    nonce = app.issue_nonce(sid)["nonce"]
    result = app.login(sid, {"token": make_token(card, nonce)})
    assert result.session_id != sid
    assert not app.has_session(sid)
    state = app.state(result.session_id)
    assert state["step"] == "details"
    assert state["user"]["personId"] == Holder().national_number
    assert state["user"]["birthDate"] == "1985-07-30"  # from the national number
    assert state["user"]["name"] == "Alice Geneviève Specimen"


def test_nonce_is_bound_to_the_session_that_asked_for_it(app: PortalApp, card: BeidCardData) -> None:
    first, second = app.new_session(), app.new_session()
    nonce = app.issue_nonce(first)["nonce"]
    with pytest.raises(PortalError) as excinfo:
        app.login(second, {"token": make_token(card, nonce)})
    assert _error(excinfo) == (401, "auth-failed")
    assert excinfo.value.data["check"] == "nonce-not-found"
    # The other session got its own nonce: a token for the first one does not verify.
    app.issue_nonce(second)
    with pytest.raises(PortalError) as excinfo:
        app.login(second, {"token": make_token(card, nonce)})
    assert _error(excinfo) == (401, "auth-failed")


def test_nonce_is_single_use_even_after_a_failed_login(app: PortalApp, card: BeidCardData) -> None:
    sid = app.new_session()
    nonce = app.issue_nonce(sid)["nonce"]
    with pytest.raises(PortalError):
        app.login(sid, {"token": make_token(card, nonce, origin="http://127.0.0.1:9999")})
    with pytest.raises(PortalError) as excinfo:
        app.login(sid, {"token": make_token(card, nonce)})
    assert excinfo.value.data["check"] == "nonce-not-found"


def test_nonce_expires(app: PortalApp, card: BeidCardData, clock: AdjustableClock) -> None:
    sid = app.new_session()
    nonce = app.issue_nonce(sid)["nonce"]
    clock.advance(dt.timedelta(minutes=6))
    with pytest.raises(PortalError) as excinfo:
        app.login(sid, {"token": make_token(card, nonce)})
    assert excinfo.value.data["check"] == "nonce-expired"


def test_token_for_another_origin_is_refused(app: PortalApp, card: BeidCardData) -> None:
    sid = app.new_session()
    nonce = app.issue_nonce(sid)["nonce"]
    with pytest.raises(PortalError) as excinfo:
        app.login(sid, {"token": make_token(card, nonce, origin="https://evil.example")})
    assert _error(excinfo) == (401, "auth-failed")


def test_untrusted_certificate_is_refused(card: BeidCardData, tmp_path: Path,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    other_pki = TestPki.load_or_create(tmp_path_factory.mktemp("other-pki"))
    app = PortalApp(tmp_path / "a.sqlite", ORIGIN, other_pki.trust_anchors,
                    intermediates=other_pki.intermediates)
    sid = app.new_session()
    with pytest.raises(PortalError) as excinfo:
        app.login(sid, {"token": make_token(card, app.issue_nonce(sid)["nonce"])})
    assert _error(excinfo) == (401, "auth-failed")


def test_steps_need_a_login(app: PortalApp) -> None:
    sid = app.new_session()
    for call in (lambda: app.submit_details(sid, DETAILS), lambda: app.phone_code(sid),
                 lambda: app.check_code(sid, {"code": "123456"})):
        with pytest.raises(PortalError) as excinfo:
            call()
        assert _error(excinfo) == (401, "not-logged-in")


def test_http_origin_needs_the_localhost_option(pki: TestPki, tmp_path: Path) -> None:
    assert check_origin(ORIGIN, allow_http_localhost=True) == ORIGIN
    with pytest.raises(ValueError):
        check_origin(ORIGIN)
    with pytest.raises(ValueError):
        check_origin("http://portal.example", allow_http_localhost=True)
    with pytest.raises(ValueError):
        PortalApp(tmp_path / "a.sqlite", ORIGIN, pki.trust_anchors, allow_http_localhost=False)


# --- details and codes -----------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("email", "not-an-address"), ("phone", "call me"), ("birthDate", "30/07/1985"),
    ("birthDate", "2999-01-01"), ("name", "  ")])
def test_details_are_checked(app: PortalApp, card: BeidCardData, field: str, value: str) -> None:
    sid = login(app, card)
    with pytest.raises(PortalError) as excinfo:
        app.submit_details(sid, {**DETAILS, field: value})
    assert _error(excinfo) == (400, "invalid-input")
    assert excinfo.value.data["field"] == field


def test_code_flow_and_single_use(app: PortalApp, card: BeidCardData) -> None:
    sid = to_code_step(app, card)
    shown = app.phone_code(sid)
    assert re.fullmatch(r"\d{6}", shown["code"])
    state = app.check_code(sid, {"code": shown["code"]})
    assert state["step"] == "sign"
    with pytest.raises(CodeMissingError):
        app.codes.check(sid, shown["code"])


def test_code_expires_after_15_minutes(app: PortalApp, card: BeidCardData,
                                       clock: AdjustableClock) -> None:
    sid = to_code_step(app, card)
    code = app.phone_code(sid)["code"]
    clock.advance(dt.timedelta(minutes=15, seconds=1))
    assert app.phone_code(sid) == {"code": None}
    with pytest.raises(PortalError) as excinfo:
        app.check_code(sid, {"code": code})
    assert _error(excinfo) == (400, "code-expired")
    fresh = app.phone_new_code(sid)["code"]
    assert app.check_code(sid, {"code": fresh})["step"] == "sign"


def test_three_wrong_codes_lock_it(app: PortalApp, card: BeidCardData) -> None:
    sid = to_code_step(app, card)
    code = app.phone_code(sid)["code"]
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    lefts = []
    for _ in range(2):
        with pytest.raises(PortalError) as excinfo:
            app.check_code(sid, {"code": wrong})
        assert excinfo.value.code == "code-wrong"
        lefts.append(excinfo.value.data["attemptsLeft"])
    assert lefts == [2, 1]
    with pytest.raises(PortalError) as excinfo:
        app.check_code(sid, {"code": wrong})
    assert excinfo.value.code == "code-locked"
    with pytest.raises(PortalError) as excinfo:  # the right code is void now too
        app.check_code(sid, {"code": code})
    assert excinfo.value.code == "code-locked"


def test_codebook_boundaries() -> None:
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    clock = AdjustableClock(lambda: start)
    book = CodeBook(clock=clock)
    issued = book.issue("r")
    assert issued.expires_at - issued.issued_at == dt.timedelta(minutes=15)
    clock.advance(dt.timedelta(minutes=15))
    assert book.current("r") == issued  # still valid at the very end
    with pytest.raises(CodeWrongError) as excinfo:
        book.check("r", "x")
    assert excinfo.value.attempts_left == 2
    clock.advance(dt.timedelta(microseconds=1))
    with pytest.raises(CodeExpiredError):
        book.check("r", issued.code)
    replaced = book.issue("r")
    book.check("r", " " + replaced.code + " ")
    with pytest.raises(CodeMissingError):
        book.check("r", replaced.code)
    with pytest.raises(CodeMissingError):
        book.check("never-issued", "000000")
    one_try = CodeBook(clock=clock, max_attempts=1)
    one_try.issue("r")
    with pytest.raises(CodeLockedError):
        one_try.check("r", "no")


# --- signature -------------------------------------------------------------------------------

def test_signed_registration_is_verified_and_stored(app: PortalApp, card: BeidCardData) -> None:
    sid = to_sign_step(app, card)
    prepared = prepare(app, sid, card)
    assert prepared["hashFunction"] == "SHA-384"
    assert base64.b64decode(prepared["hash"]) == hashlib.sha384(
        prepared["summaryText"].encode()).digest()
    assert json.loads(prepared["summaryText"]) == prepared["summary"]
    assert prepared["summary"]["details"] == DETAILS
    assert prepared["summary"]["portal"] == ORIGIN
    state = app.finish_signature(sid, sign_hash(card, prepared["hash"]))
    assert state["step"] == "done"
    account = app.accounts.get(Holder().national_number)
    assert account is not None and account.email == DETAILS["email"]
    assert account.summary == prepared["summaryText"]
    assert state["account"]["id"] == account.id
    assert app.accounts.count() == 1


def test_signature_over_another_hash_is_refused(app: PortalApp, card: BeidCardData) -> None:
    sid = to_sign_step(app, card)
    prepare(app, sid, card)
    forged = base64.b64encode(hashlib.sha384(b"something else").digest()).decode()
    with pytest.raises(PortalError) as excinfo:
        app.finish_signature(sid, sign_hash(card, forged))
    assert _error(excinfo) == (400, "sign-failed")
    assert app.accounts.count() == 0


def test_signature_by_another_person_is_refused(app: PortalApp, card: BeidCardData,
                                                other_card: BeidCardData) -> None:
    sid = to_sign_step(app, card)
    prepared = prepare(app, sid, other_card)
    with pytest.raises(PortalError) as excinfo:
        app.finish_signature(sid, sign_hash(other_card, prepared["hash"]))
    assert _error(excinfo) == (403, "not-same-person")
    assert app.accounts.count() == 0


def test_authentication_certificate_cannot_sign(app: PortalApp, card: BeidCardData) -> None:
    sid = to_sign_step(app, card)
    prepared = app.prepare_signature(sid, {
        "certificate": base64.b64encode(card.auth_cert).decode(),
        "supportedSignatureAlgorithms": SIGNING_ALGORITHMS})
    digest = base64.b64decode(prepared["hash"])
    key = card.auth_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = _raw_ecdsa(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA384()))), key)
    with pytest.raises(PortalError) as excinfo:
        app.finish_signature(sid, {"signature": base64.b64encode(signature).decode(),
                                   "signatureAlgorithm": SIGNING_ALGORITHMS[1]})
    assert _error(excinfo) == (400, "sign-failed")


def test_sign_step_order(app: PortalApp, card: BeidCardData) -> None:
    sid = to_code_step(app, card)
    with pytest.raises(PortalError) as excinfo:
        prepare(app, sid, card)
    assert _error(excinfo) == (409, "wrong-step")
    app.check_code(sid, {"code": app.phone_code(sid)["code"]})
    with pytest.raises(PortalError) as excinfo:
        app.finish_signature(sid, {"signature": "AAAA", "signatureAlgorithm": {}})
    assert _error(excinfo) == (409, "no-pending-signature")
    with pytest.raises(PortalError) as excinfo:
        app.prepare_signature(sid, {"certificate": "AAAA", "supportedSignatureAlgorithms": [
            {"cryptoAlgorithm": "ECC", "hashFunction": "SHA-1", "paddingScheme": "NONE"}]})
    assert excinfo.value.code == "sign-unsupported"


def test_mismatched_signature_algorithm_is_refused(app: PortalApp, card: BeidCardData) -> None:
    sid = to_sign_step(app, card)
    prepared = prepare(app, sid, card)
    signed = sign_hash(card, prepared["hash"])
    signed["signatureAlgorithm"] = {**signed["signatureAlgorithm"], "hashFunction": "SHA-256"}
    with pytest.raises(PortalError) as excinfo:
        app.finish_signature(sid, signed)
    assert _error(excinfo) == (400, "sign-failed")


# --- helpers ---------------------------------------------------------------------------------

def test_belgian_birth_date() -> None:
    assert belgian_birth_date("85073003328") == dt.date(1985, 7, 30)
    # Born in 2001: the check digits are computed over "2" + the first nine digits.
    body = "010203123"
    check = 97 - int("2" + body) % 97
    assert belgian_birth_date(f"{body}{check:02d}") == dt.date(2001, 2, 3)
    assert belgian_birth_date("85073003329") is None  # bad check digits
    assert belgian_birth_date("8507300332") is None
    body = "850000123"  # unknown birth month and day
    assert belgian_birth_date(f"{body}{97 - int(body) % 97:02d}") is None


def test_pick_language() -> None:
    assert pick_language(None) == "en"
    assert pick_language("nl-BE,nl;q=0.9,en;q=0.8") == "nl"
    assert pick_language("fr-BE,fr;q=0.9,en;q=0.5,nl;q=0.7") == "fr"
    assert pick_language("de-DE") == "de"
    assert pick_language("it-IT,es;q=0.5") == "en"
    assert pick_language("nl-BE", cookie="en") == "en"


def _strings() -> dict[str, dict[str, str]]:
    text = (STATIC / "i18n.js").read_text(encoding="utf-8")
    match = re.search(r"export const STRINGS = (\{.*?\n\});", text, re.S)
    assert match
    return json.loads(match.group(1))


def test_every_language_has_every_string() -> None:
    strings = _strings()
    assert set(strings) == {"en", "nl", "fr", "de"}
    for lang in ("nl", "fr", "de"):
        assert set(strings["en"]) == set(strings[lang]), lang
        for key, text in strings["en"].items():
            placeholders = set(re.findall(r"\{\w+\}", strings[lang][key]))
            assert set(re.findall(r"\{\w+\}", text)) == placeholders, (lang, key)
        assert strings[lang]["loginButton"] != strings["en"]["loginButton"]  # really translated
    html = "".join((STATIC / name).read_text(encoding="utf-8") for name in
                   ("index.html", "phone.html", "portal.js", "phone.js"))
    used = set(re.findall(r'data-i18n="(\w+)"', html))
    used |= set(re.findall(r'"((?:err|busy|phone|agent|blockedHelp)[A-Z]\w*)"', html))
    assert used - set(strings["en"]) == set()


# --- HTTP ------------------------------------------------------------------------------------

@pytest.fixture
def server(pki: TestPki, clock: AdjustableClock, tmp_path: Path) -> Iterator[Any]:
    def make_app(origins: list[str]) -> PortalApp:
        return PortalApp(tmp_path / "accounts.sqlite", origins[0], pki.trust_anchors,
                         intermediates=pki.intermediates, clock=clock, also_origins=origins[1:])

    httpd = create_server("127.0.0.1", 0, make_app)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _request(httpd: Any, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=10)
    try:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        all_headers.update(headers or {})
        conn.request(method, path, body=data, headers=all_headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_http_login_sets_a_strict_httponly_cookie(server: Any, card: BeidCardData) -> None:
    origin = server.app.site_origin
    status, headers, body = _request(server, "POST", "/api/nonce", {}, {"Origin": origin})
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    sid = cookie.split(";")[0].split("=", 1)[1]
    nonce = json.loads(body)["nonce"]
    status, headers, body = _request(server, "POST", "/api/login", {"token": make_token(card, nonce, origin)},
                                     {"Origin": origin, "Cookie": f"{SESSION_COOKIE}={sid}"})
    assert status == 200, body
    new_sid = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    assert new_sid != sid
    status, _, body = _request(server, "GET", "/api/state",
                               headers={"Cookie": f"{SESSION_COOKIE}={new_sid}"})
    assert json.loads(body)["step"] == "details"
    status, _, body = _request(server, "GET", "/api/state", headers={"Cookie": f"{SESSION_COOKIE}={sid}"})
    assert json.loads(body)["step"] == "login"


def test_http_login_checks_the_token_against_the_request_origin(server: Any, card: BeidCardData) -> None:
    port = server.server_address[1]
    other = f"http://localhost:{port}"  # the same portal, spelt as the demo's browser may
    status, headers, body = _request(server, "POST", "/api/nonce", {}, {"Origin": other})
    sid = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    token = make_token(card, json.loads(body)["nonce"], other)
    status, _, body = _request(server, "POST", "/api/login", {"token": token},
                               {"Origin": server.app.site_origin, "Cookie": f"{SESSION_COOKIE}={sid}"})
    assert status == 401 and json.loads(body)["error"]["code"] == "auth-failed"


def test_http_refuses_other_sites_and_non_json(server: Any) -> None:
    status, _, body = _request(server, "POST", "/api/nonce", {}, {"Origin": "https://evil.example"})
    assert status == 403 and json.loads(body)["error"]["code"] == "bad-origin"
    status, _, _ = _request(server, "POST", "/api/nonce", b"{}", {"Content-Type": "text/plain"})
    assert status == 415
    status, _, _ = _request(server, "POST", "/api/test/advance-clock", {"seconds": 1000})
    assert status == 404  # no test mode


def test_http_serves_pages_and_the_js_client(server: Any) -> None:
    status, headers, body = _request(server, "GET", "/")
    assert status == 200 and b'src="/portal.js"' in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "ws://127.0.0.1:* wss://127.0.0.1:*" in headers["Content-Security-Policy"]  # the slot range
    status, headers, body = _request(server, "GET", "/clients/js/eid-agent.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert b"export class EidAgent" in body
    status, _, _ = _request(server, "GET", "/../pyproject.toml")
    assert status == 404
    status, _, body = _request(server, "GET", "/api/config", headers={"Accept-Language": "nl-BE,nl"})
    assert json.loads(body)["lang"] == "nl"


def test_http_test_clock(pki: TestPki, tmp_path: Path) -> None:
    clock = AdjustableClock()
    app = PortalApp(tmp_path / "a.sqlite", ORIGIN, pki.trust_anchors, clock=clock, test_mode=True)
    before = clock()
    assert app.advance_clock({"seconds": 901})["now"] > before.isoformat()
    assert clock() - before >= dt.timedelta(seconds=901)
    with pytest.raises(PortalError):
        app.advance_clock({"seconds": -5})
