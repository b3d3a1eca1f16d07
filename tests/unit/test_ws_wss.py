"""``wss://`` is served by the same WsServer as ``ws://`` (issues 13 + 14 together).

Real sockets and a real TLS handshake with the agent's own local CA (agent/tls/localca): the
wss listener takes its sockets from the port reservation (agent/ws/ports), runs the same
request checks (Host names the port that was connected to, Origin, policy) and shares the
connection limits with ``ws://``, so a site cannot double its share by using both schemes.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from agent.tls import localca
from agent.ws import serve
from agent.ws.ports import reserve
from tests.ws_fakes import FakeService

HOSTS = ("127.0.0.1", "::1")
PORTAL = "https://portal.example"


def _client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


async def _status(url: str, origin: str = PORTAL, **kwargs: Any) -> dict[str, Any]:
    async with websockets.connect(url, origin=origin, **kwargs) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status", "params": {}}))
        reply: dict[str, Any] = json.loads(await ws.recv())
        return reply


def test_wss_uses_the_reserved_wss_sockets_and_the_same_checks(tmp_path: Path) -> None:
    tls = localca.ensure(tmp_path)
    service = FakeService(blocked={"https://blocked.example"})

    async def scenario() -> None:
        reservation = reserve(HOSTS, 0, wss_port=0)
        wss_port = reservation.wss_port
        assert wss_port and reservation.wss_sockets
        async with serve(service, reservation=reservation, ssl_context=tls.context()) as server:
            assert server.wss_port == wss_port and server.port == reservation.ws_port
            assert reservation.wss_sockets == []  # handed over to the listener
            client = _client_context(tls.files.ca)
            for host in ("127.0.0.1", "[::1]", "localhost"):
                reply = await _status(f"wss://{host}:{wss_port}/", ssl=client)
                assert reply["id"] == 1 and "result" in reply, reply
            reply = await _status(f"ws://127.0.0.1:{server.port}/")
            assert "result" in reply
            # Host must name the port connected to: a wss connection claiming the ws port is
            # refused (DNS rebinding checks hold per listener).
            with pytest.raises(InvalidStatus) as info:
                await _status(f"wss://127.0.0.1:{wss_port}/", ssl=client,
                              additional_headers={"Host": f"127.0.0.1:{server.port}"})
            assert info.value.response.status_code == 403
            # the same Origin policy
            with pytest.raises(InvalidStatus) as info:
                await _status(f"wss://127.0.0.1:{wss_port}/", origin="https://blocked.example",
                              ssl=client)
            assert info.value.response.status_code == 403
            # plain ws:// on the wss port gets no WebSocket
            with pytest.raises((OSError, websockets.exceptions.InvalidMessage, EOFError)):
                await _status(f"ws://127.0.0.1:{wss_port}/", open_timeout=5)
            # a certificate nobody vouched for: refused by the client
            with pytest.raises(ssl.SSLCertVerificationError):
                await _status(f"wss://127.0.0.1:{wss_port}/", ssl=ssl.create_default_context())
        assert "https://blocked.example" in service.prechecked

    asyncio.run(scenario())


def test_limits_count_ws_and_wss_together(tmp_path: Path) -> None:
    tls = localca.ensure(tmp_path)

    async def scenario() -> None:
        reservation = reserve(HOSTS, 0, wss_port=0)
        async with serve(FakeService(), reservation=reservation, ssl_context=tls.context(),
                         max_per_origin=2) as server:
            client = _client_context(tls.files.ca)
            wss_url = f"wss://127.0.0.1:{server.wss_port}/"
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/", origin=PORTAL), \
                    websockets.connect(wss_url, origin=PORTAL, ssl=client):  # type: ignore[arg-type]
                for url, extra in ((wss_url, {"ssl": client}), (f"ws://127.0.0.1:{server.port}/", {})):
                    with pytest.raises(InvalidStatus) as info:
                        await _status(url, **extra)
                    assert info.value.response.status_code == 503
                # another site still gets in, over either scheme
                reply = await _status(wss_url, origin="https://other.example", ssl=client)
                assert "result" in reply

    asyncio.run(scenario())


def test_without_a_context_the_wss_sockets_stay_unused(tmp_path: Path) -> None:
    async def scenario() -> None:
        reservation = reserve(HOSTS, 0, wss_port=0)
        async with serve(FakeService(), reservation=reservation) as server:
            assert server.wss_port is None
            reply = await _status(f"ws://127.0.0.1:{server.port}/")
            assert "result" in reply

    asyncio.run(scenario())


def test_accepted_connections_have_nagle_off(tmp_path: Path) -> None:
    """The reserved sockets are IPPROTO_TCP sockets, so asyncio turns Nagle off on what they
    accept (with proto 0 it did not, and every wss:// open and close waited for a delayed ACK:
    44 ms each instead of 2 ms, see docs/performance.md)."""
    import socket

    tls = localca.ensure(tmp_path)

    async def scenario() -> None:
        reservation = reserve(HOSTS, 0, wss_port=0)
        async with serve(FakeService(), reservation=reservation, ssl_context=tls.context()) as server:
            client = _client_context(tls.files.ca)
            for url, extra in ((f"ws://127.0.0.1:{server.port}/", {}),
                               (f"wss://127.0.0.1:{server.wss_port}/", {"ssl": client})):
                async with websockets.connect(url, origin=PORTAL, **extra):  # type: ignore[arg-type]
                    await asyncio.sleep(0.05)
                    (connection,) = server._connections
                    sock = connection.transport.get_extra_info("socket")
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0, url

    asyncio.run(scenario())
