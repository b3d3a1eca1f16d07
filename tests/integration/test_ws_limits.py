"""Bounded resources and the smaller hardening of issue 13, against the real agent process.

Real ``eid-agent serve`` on the private pcscd, real sockets: one origin's 256 connections do
not lock out another origin; a client that sends requests and never reads replies is
disconnected before the agent grows past the documented bound (measured as the agent's RSS);
1,100 half-open connections write a handful of log lines, not a traceback each; plain http
loopback origins need the developer switch; the log file is private (0600).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import struct
import threading
import time
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import InvalidMessage, InvalidStatus

from tests.agent_process import AgentProcess, wait_until
from tests.peer_support import raw_client

pytestmark = pytest.mark.pcsc

SITE_A = "https://a.example"
SITE_B = "https://b.example"
RSS_BOUND_MIB = 24
"""docs/protocol.md: a connection that does not read costs the agent at most its reply queue
(256 KiB) plus socket buffers; the whole agent must not grow by more than this."""


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_one_origin_cannot_lock_out_another(pcscd, tmp_path) -> None:
    async def scenario(url: str) -> tuple[int, int, dict]:
        async def one() -> websockets.ClientConnection | None:
            try:
                return await websockets.connect(url, origin=SITE_A, open_timeout=20)
            except InvalidStatus as exc:
                assert exc.response.status_code == 503  # per-origin cap
                return None
            except (InvalidMessage, OSError):
                return None  # dropped at accept: too many unfinished handshakes at once

        results = await asyncio.gather(*(one() for _ in range(256)))
        opened = [ws for ws in results if ws is not None]
        try:
            async with websockets.connect(url, origin=SITE_B) as other:
                await other.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"}))
                reply = json.loads(await other.recv())
        finally:
            await asyncio.gather(*(ws.close() for ws in opened))
        return len(opened), len(results) - len(opened), reply

    with AgentProcess(pcscd, tmp_path, {}, log_level="INFO") as agent:
        opened, refused, reply = asyncio.run(scenario(agent.url))
        assert opened == 32 and refused == 224
        assert "result" in reply
        assert agent.output.count("too many connections from https://a.example") <= 6  # rate-limited


def _handshake(sock: socket.socket, port: int, origin: str) -> None:
    sock.sendall(
        (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n").encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head


def _masked(text: str) -> bytes:
    payload = text.encode()
    mask = b"\x01\x02\x03\x04"
    return (bytes([0x81, 0x80 | len(payload)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def test_a_client_that_never_reads_cannot_grow_the_agent(pcscd, tmp_path) -> None:
    with AgentProcess(pcscd, tmp_path, {}, log_level="INFO") as agent:
        pid = agent.proc.pid
        # warm up: one normal client, so imports and caches are in the baseline
        assert raw_client("127.0.0.1", agent.port, SITE_A, "status")["status"] == 101
        before = _rss_mib(pid)
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_mib(pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        sent = 0
        closed_by_agent = False
        try:
            with socket.create_connection(("127.0.0.1", agent.port)) as sock:
                _handshake(sock, agent.port, SITE_A)
                sock.settimeout(20)
                try:
                    for sent in range(1, 400_000):  # noqa: B007 - counted for the report
                        sock.sendall(_masked(json.dumps(
                            {"jsonrpc": "2.0", "id": sent, "method": "status"})))
                except (ConnectionResetError, BrokenPipeError):
                    closed_by_agent = True
        finally:
            done.set()
            sampler.join()
        growth = peak[0] - before
        print(f"\nnon-reading client: {sent} requests sent; agent RSS {before:.1f} MiB -> "
              f"peak {peak[0]:.1f} MiB (+{growth:.1f} MiB, bound {RSS_BOUND_MIB} MiB)")
        assert closed_by_agent, f"the agent kept a non-reading client after {sent} requests"
        assert growth < RSS_BOUND_MIB
        wait_until(lambda: "replies unread" in agent.output)
        assert raw_client("127.0.0.1", agent.port, SITE_A, "status")["status"] == 101


def test_eleven_hundred_half_open_connections_write_a_few_lines(pcscd, tmp_path) -> None:
    with AgentProcess(pcscd, tmp_path, {}, log_level="INFO",
                      prefix=("prlimit", "--nofile=1024:1024")) as agent:
        before = len(agent.lines)
        sockets = []
        try:
            for _ in range(1100):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                try:
                    sock.connect(("127.0.0.1", agent.port))
                    sock.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
                except OSError:
                    pass
                sockets.append(sock)
            time.sleep(2)
        finally:
            for sock in sockets:
                sock.close()
        time.sleep(1)
        # the agent still serves a real page
        assert raw_client("127.0.0.1", agent.port, SITE_A, "status")["status"] == 101
        flood = agent.lines[before:]
        print(f"\n1,100 half-open connections: {len(flood)} log lines")
        assert sum("Traceback" in line for line in flood) <= 2
        assert len(flood) <= 40, "".join(flood)


def test_http_loopback_origins_need_the_developer_switch(pcscd, tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with AgentProcess(pcscd, tmp_path / "a", {}, log_level="INFO") as agent:
        refused = raw_client("127.0.0.1", agent.port, "http://localhost:8080", "status")
        assert refused["status"] == 403 and "--allow-http-loopback" in refused["raw"]
        assert raw_client("127.0.0.1", agent.port, SITE_A, "status")["status"] == 101
    with AgentProcess(pcscd, tmp_path / "b", {}, extra_args=("--allow-http-loopback",)) as agent:
        for origin in ("http://localhost:8080", "http://127.0.0.1:3000"):
            assert raw_client("127.0.0.1", agent.port, origin, "status")["status"] == 101


def test_log_file_is_private(pcscd, tmp_path) -> None:
    logs = tmp_path / "state" / "eid-agent" / "logs"
    logs.mkdir(parents=True)
    old = logs / "eid-agent.log"
    old.write_text("an older run\n")
    os.chmod(old, 0o644)  # as earlier versions left it
    with AgentProcess(pcscd, tmp_path, {}, log_level="INFO") as agent:
        assert raw_client("127.0.0.1", agent.port, SITE_A, "status")["status"] == 101
        wait_until(lambda: "connection from" in agent.log_file_text())
        assert stat.S_IMODE(old.stat().st_mode) == 0o600
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with AgentProcess(pcscd, fresh, {}, log_level="INFO") as agent:
        wait_until(lambda: (fresh / "state" / "eid-agent" / "logs" / "eid-agent.log").exists())
        made = fresh / "state" / "eid-agent" / "logs" / "eid-agent.log"
        assert stat.S_IMODE(made.stat().st_mode) == 0o600
        assert stat.S_IMODE(made.parent.stat().st_mode) & 0o077 == 0
