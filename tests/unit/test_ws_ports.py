"""Binding the agent's loopback port pair (agent/ws/ports.py) with real sockets.

A half-bound pair (one address held by someone else) is never used: ``bind_pair`` and the
WebSocket server refuse it instead of falling back to IPv4 only (the old behaviour, which let
``ws://localhost`` reach a squatter on ``[::1]``).
"""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from agent.ws import serve
from agent.ws.ports import PortSquattedError, Squat, bind_pair, slot_ports
from tests.ws_fakes import FakeService

HOSTS = ("127.0.0.1", "::1")


def _listener(host: str, port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, port))
    sock.listen()
    return sock


def test_slot_ports_follow_the_agreed_scheme() -> None:
    assert [slot_ports(k) for k in (0, 1, 7)] == [(24847, 24848), (24849, 24850), (24861, 24862)]


def test_port_zero_binds_the_same_port_on_both_addresses() -> None:
    port, sockets, bound = bind_pair(HOSTS, 0)
    try:
        assert bound == list(HOSTS)
        assert {s.getsockname()[1] for s in sockets} == {port}
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("held", HOSTS)
def test_half_bound_pair_is_refused(held: str) -> None:
    squatter = _listener(held)
    port = squatter.getsockname()[1]
    try:
        with pytest.raises(PortSquattedError) as info:
            bind_pair(HOSTS, port)
        assert info.value.squat == Squat(held, port)
        # nothing of ours is left bound on the free address
        other = HOSTS[1] if held == HOSTS[0] else HOSTS[0]
        _listener(other, port).close()
    finally:
        squatter.close()


def test_pair_held_on_both_addresses_is_in_use() -> None:
    first = _listener("127.0.0.1")
    port = first.getsockname()[1]
    second = _listener("::1", port)
    try:
        with pytest.raises(OSError) as info:
            bind_pair(HOSTS, port)
        assert info.value.errno == errno.EADDRINUSE
        assert not isinstance(info.value, PortSquattedError)
    finally:
        first.close()
        second.close()


def test_server_on_a_squatted_port_refuses_to_start() -> None:
    squatter = _listener("::1")
    port = squatter.getsockname()[1]

    async def scenario() -> None:
        with pytest.raises(PortSquattedError):
            async with serve(FakeService(), port=port, hosts=HOSTS):
                pass

    try:
        asyncio.run(scenario())
    finally:
        squatter.close()


def test_refusal_logs_are_rate_limited_and_count_what_they_drop(caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from agent.ws.ratelimit import RateLimitFilter

    log = logging.getLogger("tests.ratelimit")
    limiter = RateLimitFilter(burst=3, period=0.5)
    log.addFilter(limiter)
    try:
        with caplog.at_level(logging.INFO, logger="tests.ratelimit"):
            for number in range(100):
                try:
                    raise OSError(24, "Too many open files")
                except OSError:
                    log.warning("accept failed %d", number, exc_info=True)
            import time

            time.sleep(0.6)
            log.warning("accept failed %d", 100)
    finally:
        log.removeFilter(limiter)
    records = [r for r in caplog.records if r.name == "tests.ratelimit"]
    assert [r.getMessage() for r in records] == [
        "accept failed 0", "accept failed 1", "accept failed 2",
        "accept failed 100 [97 similar messages suppressed]",
    ]
    assert [r.exc_info is not None for r in records] == [True, False, False, False]


@pytest.mark.parametrize("cheap", [True, False])
def test_peer_lookup_on_the_loop_or_in_a_thread(cheap: bool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Linux looks the peer up at accept; other systems (lsof, TCP table) in a worker thread
    once the request is in. Either way our own user gets through, another gets a bare 403."""
    import websockets
    from websockets.exceptions import InvalidStatus

    import agent.ws.server as server_module
    from agent.peercred import PeerOwner

    monkeypatch.setattr(server_module, "LOOKUP_IS_CHEAP", cheap)
    verdicts: list[bool] = [True]
    real = server_module.peer_owner

    def owner(peer, local):  # type: ignore[no-untyped-def]
        found = real(peer, local)
        assert found.same_user  # the real lookup sees this test's own socket
        return found if verdicts[0] else PeerOwner(False, "uid 65534")

    monkeypatch.setattr(server_module, "peer_owner", owner)

    async def scenario() -> None:
        async with serve(FakeService(), port=0, hosts=("127.0.0.1",)) as server:
            url = f"ws://127.0.0.1:{server.port}"
            async with websockets.connect(url, origin="https://a.example") as ws:
                await ws.send('{"jsonrpc":"2.0","id":1,"method":"status"}')
                assert "result" in await ws.recv()
            verdicts[0] = False
            with pytest.raises(InvalidStatus) as info:
                async with websockets.connect(url, origin="https://a.example"):
                    pass
            assert info.value.response.status_code == 403
            assert "Server" not in info.value.response.headers
            assert info.value.response.body == b"Forbidden\n"

    asyncio.run(scenario())
