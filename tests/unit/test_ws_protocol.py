"""Sans-I/O tests of the JSON-RPC dispatcher and the error table (no sockets)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from agent import errors
from agent.smartcard.apdu import ApduError
from agent.ws.errors import ErrorCode, from_exception
from agent.ws.handshake import HandshakeRefused, check_bind_host, check_host, check_origin
from agent.ws.protocol import METHODS, Call, RpcProtocol, encode
from tests.ws_fakes import FakeService, block, wrong_pin

ORIGIN = "https://portal.example"


def make(max_pending: int = 4, max_message_size: int = 4096) -> tuple[RpcProtocol, list, FakeService]:
    service = FakeService()
    session = service.open_client(ORIGIN)
    sent: list[dict[str, Any]] = []
    proto = RpcProtocol(session, emit=sent.append, max_pending=max_pending, max_message_size=max_message_size)
    return proto, sent, service


def roundtrip(proto: RpcProtocol, request: Any) -> dict[str, Any] | None:
    text = request if isinstance(request, str | bytes) else json.dumps(request)
    outcome = proto.receive(text)
    if isinstance(outcome, Call):
        return asyncio.run(proto.execute(outcome))
    return outcome


def error_code(response: dict[str, Any] | None) -> tuple[int, str]:
    assert response is not None and "error" in response, response
    return response["error"]["code"], response["error"]["data"]["code"]


def req(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:  # noqa: A002
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


@pytest.mark.parametrize(
    "text",
    ["{", "not json", b"\xff\xfe", "[1,", '{"a": NaN}', "[" * 100_000, ""],
)
def test_malformed_json_is_a_parse_error(text: Any) -> None:
    """Garbage, invalid UTF-8, NaN and absurd nesting answer -32700, never raise."""
    proto, _, _ = make(max_message_size=1 << 20)
    response = roundtrip(proto, text)
    assert error_code(response) == (-32700, "ERR_EID_PARSE_ERROR")
    assert response["id"] is None and response["jsonrpc"] == "2.0"


@pytest.mark.parametrize(
    "request_, expected_id",
    [
        ({"jsonrpc": "1.0", "id": 7, "method": "status"}, 7),
        ({"id": 7, "method": "status"}, 7),
        ({"jsonrpc": "2.0", "id": 7, "method": 5}, 7),
        ({"jsonrpc": "2.0", "id": {"x": 1}, "method": "status"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "status"}, None),
        ({"jsonrpc": "2.0", "id": 3, "result": {}, "method": "status"}, 3),
        (42, None),
        ('"status"', None),
        (None, None),
    ],
)
def test_invalid_requests(request_: Any, expected_id: Any) -> None:
    proto, _, _ = make()
    response = roundtrip(proto, request_)
    assert error_code(response) == (-32600, "ERR_EID_INVALID_REQUEST")
    assert response["id"] == expected_id


def test_batches_are_refused_as_one_error() -> None:
    proto, _, service = make()
    response = roundtrip(proto, [req("status"), req("authenticate", {"challengeNonce": "x" * 44})])
    assert error_code(response) == (-32600, "ERR_EID_INVALID_REQUEST")
    assert "batch" in response["error"]["message"]
    assert service.card_accesses == []


def test_unknown_method() -> None:
    proto, _, _ = make()
    response = roundtrip(proto, req("deleteAllKeys", id="abc"))
    assert error_code(response) == (-32601, "ERR_EID_METHOD_NOT_FOUND")
    assert response["id"] == "abc"


def test_notifications_are_not_executed_and_not_answered() -> None:
    proto, _, service = make()
    message = {"jsonrpc": "2.0", "method": "authenticate", "params": {"challengeNonce": "n" * 44}}
    assert roundtrip(proto, message) is None
    assert service.card_accesses == []
    assert proto.pending == 0


@pytest.mark.parametrize(
    "method, params, parameter",
    [
        ("authenticate", {}, "challengeNonce"),
        ("authenticate", {"challengeNonce": ""}, "challengeNonce"),
        ("authenticate", {"challengeNonce": 5}, "challengeNonce"),
        ("authenticate", {"challengeNonce": "n" * 44, "origin": "https://evil"}, "origin"),
        ("authenticate", {"challengeNonce": "n" * 44, "options": []}, "options"),
        (
            "authenticate",
            {"challengeNonce": "n" * 44, "options": {"userInteractionTimeout": -1}},
            "userInteractionTimeout",
        ),
        (
            "authenticate",
            {"challengeNonce": "n" * 44, "options": {"userInteractionTimeout": True}},
            "userInteractionTimeout",
        ),
        ("authenticate", {"challengeNonce": "n" * 44, "options": {"lang": "<script>"}}, "lang"),
        ("sign", {"certificate": "MII", "hash": "AAAA"}, "hashFunction"),
        (
            "sign",
            {"certificate": "x" * 20_000, "hash": "A", "hashFunction": "SHA-256"},
            "certificate",
        ),
        ("readIdentity", {"photo": "yes"}, "photo"),
        ("changePin", {"pinName": 2}, "pinName"),
        ("status", {"verbose": True}, "verbose"),
    ],
)
def test_bad_params_are_invalid_argument(method: str, params: dict, parameter: str) -> None:
    """Bad params never reach the session and name the faulty parameter."""
    proto, _, service = make(max_message_size=1 << 20)
    response = roundtrip(proto, req(method, params))
    assert error_code(response) == (-32602, "ERR_WEBEID_NATIVE_INVALID_ARGUMENT")
    assert response["error"]["data"]["parameter"] == parameter
    assert service.card_accesses == []
    assert proto.pending == 0


def test_positional_params_are_refused() -> None:
    proto, _, _ = make()
    response = roundtrip(proto, req("authenticate", ["n" * 44]))
    assert error_code(response) == (-32602, "ERR_WEBEID_NATIVE_INVALID_ARGUMENT")


def test_authenticate_maps_params_to_the_session() -> None:
    proto, _, service = make()
    nonce = "n" * 44
    response = roundtrip(
        proto,
        req(
            "authenticate",
            {"challengeNonce": nonce, "options": {"userInteractionTimeout": 30000, "lang": "fr"}},
        ),
    )
    assert response["result"]["challenge_nonce"] == nonce
    assert service.sessions[0].calls == [
        ("authenticate", {"challenge_nonce": nonce, "timeout": 30.0, "lang": "fr"})
    ]


def test_sign_and_read_identity_map_params() -> None:
    proto, _, service = make()
    roundtrip(proto, req("sign", {"certificate": "MIIB", "hash": "q83v", "hashFunction": "SHA-384"}))
    roundtrip(proto, req("readIdentity", {"photo": False, "options": {"lang": "nl"}}))
    roundtrip(proto, req("changePin", {"options": {"userInteractionTimeout": 1500}}))
    roundtrip(proto, req("changePin", {"pinName": "PIN2"}))
    assert service.sessions[0].calls == [
        (
            "sign",
            {
                "certificate": base64.b64decode("MIIB"),
                "hash": base64.b64decode("q83v"),
                "hash_function": "SHA-384",
                "timeout": None,
                "lang": None,
            },
        ),
        ("read_identity", {"photo": False, "timeout": None, "lang": "nl"}),
        ("change_pin", {"timeout": 1.5, "lang": None}),
        ("change_pin", {"timeout": None, "lang": None, "pin_name": "PIN2"}),
    ]


def test_every_method_answers() -> None:
    """Each listed method dispatches to the session and returns a result object."""
    params = {
        "authenticate": {"challengeNonce": "n" * 44},
        "sign": {"certificate": "MIIB", "hash": "q83v", "hashFunction": "SHA-256"},
    }
    proto, _, _ = make()
    for number, method in enumerate(METHODS):
        response = roundtrip(proto, req(method, params.get(method), id=number))
        assert response is not None and response["id"] == number
        assert isinstance(response["result"], dict), (method, response)


def test_oversized_request_is_an_error_not_a_crash() -> None:
    proto, _, service = make(max_message_size=1000)
    response = roundtrip(proto, req("authenticate", {"challengeNonce": "n" * 2000}))
    assert error_code(response) == (-32600, "ERR_EID_INVALID_REQUEST")
    assert "too large" in response["error"]["message"]
    assert service.card_accesses == []


def test_pending_limit() -> None:
    """Calls beyond the limit are refused at once; finishing one frees a slot."""

    async def scenario() -> None:
        proto, _, service = make(max_pending=2)
        service.scripts["authenticate"] = block
        calls = [
            proto.receive(json.dumps(req("authenticate", {"challengeNonce": "n" * 44}, id=i)))
            for i in range(2)
        ]
        assert all(isinstance(call, Call) for call in calls)
        third = proto.receive(json.dumps(req("pinStatus", id=3)))
        assert error_code(third) == (-32014, "ERR_EID_TOO_MANY_REQUESTS")
        assert third["id"] == 3
        # status stays answerable while the limit is reached (docs/protocol.md)
        status = proto.receive(json.dumps(req("status", id=5)))
        assert isinstance(status, Call)
        assert "result" in await proto.execute(status)
        assert proto.pending_status == 0
        tasks = [asyncio.create_task(proto.execute(call)) for call in calls]
        await asyncio.sleep(0)
        await service.sessions[0].close()
        responses = await asyncio.gather(*tasks)
        assert [error_code(r)[1] for r in responses] == ["ERR_WEBEID_USER_CANCELLED"] * 2
        assert proto.pending == 0
        assert isinstance(proto.receive(json.dumps(req("status", id=4))), Call)

    asyncio.run(scenario())


def test_session_errors_become_typed_errors() -> None:
    proto, _, service = make()
    service.scripts["authenticate"] = wrong_pin
    response = roundtrip(proto, req("authenticate", {"challengeNonce": "n" * 44}))
    assert error_code(response) == (-32007, "ERR_EID_PIN_INVALID")
    assert response["error"]["data"]["triesLeft"] == 2


def test_events_become_notifications() -> None:
    proto, sent, service = make()
    roundtrip(proto, req("subscribe"))
    service.sessions[0].callback({"type": "card-inserted", "reader": "R", "card": None})
    assert sent == [
        {
            "jsonrpc": "2.0",
            "method": "event",
            "params": {"type": "card-inserted", "reader": "R", "card": None},
        }
    ]
    assert roundtrip(proto, req("unsubscribe"))["result"] == {"subscribed": False}
    assert service.sessions[0].callback is None


@pytest.mark.parametrize(
    "exc, code, rpc",
    [
        (errors.UserCancelledError(), "ERR_WEBEID_USER_CANCELLED", -32001),
        (errors.PinPadCancelledError(), "ERR_WEBEID_USER_CANCELLED", -32001),
        (errors.UserTimeoutError(), "ERR_WEBEID_USER_TIMEOUT", -32002),
        (errors.PinPadTimeoutError(), "ERR_WEBEID_USER_TIMEOUT", -32002),
        (errors.OriginNotAllowedError("no"), "ERR_EID_ORIGIN_NOT_ALLOWED", -32003),
        (errors.NoReaderError(), "ERR_EID_NO_READER", -32004),
        (errors.NoCardError(), "ERR_EID_NO_CARD", -32005),
        (errors.CardRemovedError(), "ERR_EID_CARD_REMOVED", -32006),
        (errors.InvalidPinError(1), "ERR_EID_PIN_INVALID", -32007),
        (errors.PinBlockedError(), "ERR_EID_PIN_BLOCKED", -32008),
        (errors.BusyError(), "ERR_EID_BUSY", -32009),
        (errors.UnsupportedCardError(), "ERR_EID_UNSUPPORTED_CARD", -32010),
        (errors.CertificateNotFoundError(), "ERR_EID_CERTIFICATE_NOT_FOUND", -32011),
        (errors.NotSupportedError(), "ERR_EID_NOT_SUPPORTED", -32012),
        (ApduError(0x6A82), "ERR_EID_CARD_ERROR", -32013),
        (errors.CardCommunicationError(), "ERR_EID_CARD_ERROR", -32013),
        (errors.InvalidArgumentError("short nonce"), "ERR_WEBEID_NATIVE_INVALID_ARGUMENT", -32602),
        (errors.AgentError("odd"), "ERR_WEBEID_NATIVE_FATAL", -32603),
        (KeyError("secret internals"), "ERR_WEBEID_NATIVE_FATAL", -32603),
    ],
)
def test_error_table(exc: BaseException, code: str, rpc: int) -> None:
    error = from_exception(exc).to_json()
    assert (error["code"], error["data"]["code"]) == (rpc, code)
    assert error["message"]
    assert "secret internals" not in error["message"]


def test_error_codes_are_unique() -> None:
    assert len({c.name_code for c in ErrorCode}) == len({c.rpc_code for c in ErrorCode}) == len(ErrorCode)


def test_unserialisable_result_becomes_fatal() -> None:
    text = encode({"jsonrpc": "2.0", "id": 1, "result": {"raw": b"\x00"}})
    assert json.loads(text)["error"]["data"]["code"] == "ERR_WEBEID_NATIVE_FATAL"


@pytest.mark.parametrize("host", ["127.0.0.1:4000", "localhost:4000", "LOCALHOST:4000", "[::1]:4000"])
def test_loopback_hosts_pass(host: str) -> None:
    check_host([host], 4000)


@pytest.mark.parametrize(
    "hosts",
    [
        ["evil.example:4000"],
        ["127.0.0.1:4001"],
        ["127.0.0.1"],
        [],
        ["localhost:4000"] * 2,
        ["127.0.0.2:4000"],
        ["localhost.:4000"],
        ["0.0.0.0:4000"],
    ],
)
def test_other_hosts_are_refused(hosts: list[str]) -> None:
    with pytest.raises(HandshakeRefused) as info:
        check_host(hosts, 4000)
    assert info.value.status == 403


@pytest.mark.parametrize(
    "origin",
    [
        "https://portal.example",
        "https://portal.example:8443",
        "http://localhost:3000",
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
        "http://localhost",
    ],
)
def test_good_origins(origin: str) -> None:
    assert check_origin([origin], allow_http_loopback=True) == origin


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1", "http://[::1]:8080"])
def test_http_loopback_origins_need_the_developer_switch(origin: str) -> None:
    with pytest.raises(HandshakeRefused) as info:
        check_origin([origin])
    assert info.value.status == 403
    assert "--allow-http-loopback" in info.value.reason


@pytest.mark.parametrize(
    "origins",
    [
        [],
        ["null"],
        ["http://evil.example"],
        ["https://portal.example/"],
        ["HTTPS://portal.example"],
        ["https://portal.example:443"],
        ["https://user@portal.example"],
        ["file://"],
        ["chrome-extension://abcdef"],
        ["https://a.example", "https://b.example"],
        ["ws://localhost"],
        ["http://localhost.evil.example"],
        [""],
    ],
)
def test_bad_origins(origins: list[str]) -> None:
    with pytest.raises(HandshakeRefused) as info:
        check_origin(origins)
    assert info.value.status == 403


@pytest.mark.parametrize("host", ["0.0.0.0", "localhost", "::", "192.168.1.2", "example.com"])
def test_only_loopback_literals_are_bound(host: str) -> None:
    with pytest.raises(ValueError):
        check_bind_host(host)
