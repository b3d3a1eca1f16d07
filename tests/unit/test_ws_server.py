"""A real ``websockets`` client against the real server (ephemeral port, fake service).

Proves the handshake refuses foreign and rebinding requests before the service opens a
session (so before any card access), that bad frames get errors, limits hold, a disconnect
closes the session, and events arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent.ws import WsServer, serve
from tests.ws_fakes import FAKE_PIN, FakeService, block, wrong_pin

ORIGIN = "https://portal.example"
NONCE = "n" * 44


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@contextlib.asynccontextmanager
async def running(service: FakeService, **limits: Any) -> AsyncIterator[WsServer]:
    async with serve(service, port=0, hosts=("127.0.0.1", "::1"), **limits) as server:
        yield server


def client(
    server: WsServer,
    *,
    origin: str | None = ORIGIN,
    host: str | None = None,
    path: str = "/",
    address: str = "127.0.0.1",
    headers: list[tuple[str, str]] | None = None,
    **kwargs: Any,
) -> connect:
    name = host or f"127.0.0.1:{server.port}"
    return connect(
        f"ws://{name}{path}",
        host=address,
        port=server.port,
        origin=origin,  # type: ignore[arg-type]
        additional_headers=headers,
        proxy=None,
        open_timeout=10,
        **kwargs,
    )


async def call(ws: ClientConnection, method: str, params: Any = None, id: Any = 1) -> dict:  # noqa: A002
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    await ws.send(json.dumps(message))
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def refused_status(server: WsServer, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with client(server, **kwargs):
            pass
    return info.value.response.status_code


def test_accepted_connection_answers_status() -> None:
    async def scenario() -> None:
        service = FakeService()
        async with running(service) as server, client(server) as ws:
            response = await call(ws, "status")
            assert response == {
                "jsonrpc": "2.0",
                "id": 1,
                "result": {"version": "0.1.0", "readers": [{"cardPresent": True}]},
            }
            assert service.opened == [ORIGIN]
            assert service.prechecked == [ORIGIN]

    asyncio.run(scenario())


def test_no_compression_is_negotiated() -> None:
    """Browsers offer permessage-deflate; on loopback it costs CPU per message and a zlib
    context per connection, so the agent declines it and frames go uncompressed."""
    async def scenario() -> None:
        async with running(FakeService()) as server, client(server) as ws:
            assert ws.request is not None and ws.response is not None
            assert "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            assert (await call(ws, "status"))["id"] == 1

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "host",
    [
        "evil.example:{port}",
        "attacker.example",
        "127.0.0.1:1",
        "localhost",
        "127.0.0.2:{port}",
        "rebind.127.0.0.1.nip.io:{port}",
    ],
)
def test_dns_rebinding_host_is_refused_before_the_service(host: str) -> None:
    async def scenario() -> None:
        service = FakeService()
        async with running(service) as server:
            status = await refused_status(server, host=host.format(port=server.port))
            assert status == 403
            assert service.prechecked == [] and service.opened == []
            assert service.card_accesses == []

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "null",
        "http://evil.example",
        "https://portal.example/login",
        "file://",
        "HTTPS://PORTAL.EXAMPLE",
        "chrome-extension://abcdefgh",
    ],
)
def test_foreign_or_malformed_origin_is_refused_before_the_service(origin: str | None) -> None:
    async def scenario() -> None:
        service = FakeService()
        async with running(service) as server:
            assert await refused_status(server, origin=origin) == 403
            assert service.opened == []
            assert service.card_accesses == []

    asyncio.run(scenario())


def test_repeated_origin_headers_are_refused() -> None:
    async def scenario() -> None:
        service = FakeService()
        async with running(service) as server:
            status = await refused_status(server, headers=[("Origin", "http://evil.example")])
            assert status == 403
            assert service.opened == []

    asyncio.run(scenario())


def test_policy_refusal_from_the_service_is_403() -> None:
    async def scenario() -> None:
        service = FakeService(blocked={"https://blocked.example"})
        async with running(service) as server:
            assert await refused_status(server, origin="https://blocked.example") == 403
            assert service.prechecked == ["https://blocked.example"]
            assert service.opened == []

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "origin", ["http://localhost:3000", "http://127.0.0.1:8080", "http://[::1]:5000"]
)
def test_localhost_http_origins_are_allowed_with_the_switch(origin: str) -> None:
    async def scenario() -> None:
        service = FakeService()
        async with running(service, allow_http_loopback=True) as server, client(
            server, origin=origin
        ) as ws:
            assert "result" in await call(ws, "status")
            assert service.opened == [origin]

    asyncio.run(scenario())


@pytest.mark.parametrize("host", ["localhost:{port}", "[::1]:{port}", "LocalHost:{port}"])
def test_all_loopback_host_spellings_pass(host: str) -> None:
    async def scenario() -> None:
        service = FakeService()
        async with running(service) as server:
            async with client(server, host=host.format(port=server.port)) as ws:
                assert "result" in await call(ws, "status")

    asyncio.run(scenario())


def test_other_paths_are_404() -> None:
    async def scenario() -> None:
        service = FakeService()
        async with running(service) as server:
            assert await refused_status(server, path="/admin") == 404
            assert service.opened == []

    asyncio.run(scenario())


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback here")
def test_ipv6_loopback_is_served() -> None:
    async def scenario() -> None:
        service = FakeService()
        async with running(service) as server:
            assert server.bound == ["127.0.0.1", "::1"]
            async with client(server, address="::1", host=f"[::1]:{server.port}") as ws:
                assert "result" in await call(ws, "status")

    asyncio.run(scenario())


def test_server_refuses_non_loopback_bind() -> None:
    for host in ("0.0.0.0", "localhost", "::"):
        with pytest.raises(ValueError):
            WsServer(FakeService(), hosts=(host,))


def test_malformed_frames_get_errors_and_the_connection_survives() -> None:
    async def scenario() -> None:
        service = FakeService()
        async with running(service) as server, client(server) as ws:
            for frame, code in [
                ("{not json", "ERR_EID_PARSE_ERROR"),
                (b"\xff\x00binary", "ERR_EID_PARSE_ERROR"),
                ("[]", "ERR_EID_INVALID_REQUEST"),
                ('{"jsonrpc":"2.0","id":1,"method":"nope"}', "ERR_EID_METHOD_NOT_FOUND"),
                (
                    '{"jsonrpc":"2.0","id":2,"method":"authenticate","params":{}}',
                    "ERR_WEBEID_NATIVE_INVALID_ARGUMENT",
                ),
            ]:
                await ws.send(frame)
                response = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert response["error"]["data"]["code"] == code
            assert "result" in await call(ws, "status", id=3)
            assert service.card_accesses == []

    asyncio.run(scenario())


def test_oversized_frames() -> None:
    """Above the request limit: a JSON-RPC error; far above it: close 1009."""

    async def scenario() -> None:
        service = FakeService()
        async with running(service, max_message_size=4096) as server, client(server) as ws:
            big = await call(ws, "authenticate", {"challengeNonce": "n" * 8000})
            assert big["error"]["data"]["code"] == "ERR_EID_INVALID_REQUEST"
            await ws.send("x" * (4096 * 4 + 1))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1009
            assert service.card_accesses == []
        assert service.sessions[0].closed

    asyncio.run(scenario())


def test_too_many_connections_get_503() -> None:
    async def scenario() -> None:
        service = FakeService()
        async with running(service, max_connections=2) as server:
            async with client(server) as one, client(server) as two:
                assert "result" in await call(one, "status")
                assert "result" in await call(two, "status")
                assert await refused_status(server) == 503
            # Slots free up once the pages leave.
            for _ in range(500):
                if server.connection_count == 0:
                    break
                await asyncio.sleep(0.02)
            async with client(server) as three:
                assert "result" in await call(three, "status")

    asyncio.run(scenario())


def test_pending_request_limit() -> None:
    async def scenario() -> None:
        service = FakeService(scripts={"authenticate": block})
        async with running(service, max_pending=2) as server, client(server) as ws:
            for i in range(2):
                await ws.send(
                    json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": i,
                            "method": "authenticate",
                            "params": {"challengeNonce": NONCE},
                        }
                    )
                )
            response = await call(ws, "pinStatus", id=99)
            assert response["id"] == 99
            assert response["error"]["data"]["code"] == "ERR_EID_TOO_MANY_REQUESTS"
            status = await call(ws, "status", id=100)  # never refused by the limit
            assert status["id"] == 100 and "result" in status

    asyncio.run(scenario())


def test_disconnect_closes_the_session_and_cancels_its_prompt() -> None:
    async def scenario() -> None:
        service = FakeService(scripts={"authenticate": block})
        async with running(service) as server:
            async with client(server) as ws:
                await ws.send(
                    json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": 1,
                            "method": "authenticate",
                            "params": {"challengeNonce": NONCE},
                        }
                    )
                )
                for _ in range(1000):
                    if service.card_accesses:
                        break
                    await asyncio.sleep(0.01)
            session = service.sessions[0]
            for _ in range(1000):
                if session.closed and session.cancelled:
                    break
                await asyncio.sleep(0.01)
            assert session.closed
            assert session.cancelled == 1

    asyncio.run(scenario())


def test_status_is_answered_while_a_prompt_is_open() -> None:
    async def scenario() -> None:
        service = FakeService(scripts={"authenticate": block})
        async with running(service) as server, client(server) as ws:
            await ws.send(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": "auth",
                        "method": "authenticate",
                        "params": {"challengeNonce": NONCE},
                    }
                )
            )
            response = await call(ws, "status", id="st")
            assert response["id"] == "st" and "result" in response

    asyncio.run(scenario())


def test_events_are_delivered_after_subscribe() -> None:
    async def scenario() -> None:
        service = FakeService()
        async with running(service) as server, client(server) as ws:
            assert (await call(ws, "subscribe"))["result"] == {"subscribed": True}
            event = {"type": "card-inserted", "reader": "Virtual PCD 00 00", "card": None}
            await asyncio.to_thread(service.fire, event)
            notification = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert notification == {"jsonrpc": "2.0", "method": "event", "params": event}
            assert (await call(ws, "unsubscribe", id=2))["result"] == {"subscribed": False}
            await asyncio.to_thread(service.fire, event)
            assert "result" in await call(ws, "status", id=3)  # no event in between

    asyncio.run(scenario())


def test_wrong_pin_is_typed_and_the_pin_never_reaches_the_socket() -> None:
    async def scenario() -> None:
        service = FakeService(scripts={"authenticate": wrong_pin})
        frames: list[str] = []
        async with running(service) as server, client(server) as ws:
            response = await call(ws, "authenticate", {"challengeNonce": NONCE})
            frames.append(json.dumps(response))
            assert response["error"]["data"] == {
                "code": "ERR_EID_PIN_INVALID",
                "triesLeft": 2,
                "pinName": "PIN",
            }
            assert response["error"]["code"] == -32007
        assert all(FAKE_PIN not in frame for frame in frames)

    asyncio.run(scenario())


def test_port_in_use_raises() -> None:
    async def scenario() -> None:
        service = FakeService()
        async with running(service) as server:
            with pytest.raises(OSError):
                async with serve(service, port=server.port, hosts=("127.0.0.1",)):
                    pass

    asyncio.run(scenario())
