"""Building blocks of the benchmarks: a counting virtual card, a WebSocket client, the
raw APDU path through ``agent.pcsc.connect``, /proc sampling and statistics.

Benchmark code never imports pyscard (``agent.pcsc`` is the only importer); it is a
WebSocket *client* of the agent, which tests and benchmarks may be.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import websockets
from eid_emulator.base import VirtualCard
from eid_emulator.beid import BeidCard

from agent.pcsc import connect
from agent.smartcard.tlv import der_length

logger = logging.getLogger(__name__)

READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")


# --------------------------------------------------------------------------- the card


@dataclass(frozen=True)
class Traffic:
    """APDUs and bytes (command + response, on the vpcd wire) of one operation."""

    apdus: int
    bytes: int

    def __sub__(self, other: Traffic) -> Traffic:
        return Traffic(self.apdus - other.apdus, self.bytes - other.bytes)


class CountingCard(VirtualCard):
    """A :class:`BeidCard` whose APDUs and bytes are counted (both directions)."""

    def __init__(self, inner: BeidCard) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._apdus = 0
        self._bytes = 0
        self.log: list[tuple[bytes, int]] = []  # every command and its wire bytes, in order

    @property
    def atr(self) -> bytes:
        return self.inner.atr

    def process(self, apdu: bytes) -> bytes:
        response = self.inner.process(apdu)
        with self._lock:
            self._apdus += 1
            self._bytes += len(apdu) + len(response)
            self.log.append((apdu, len(apdu) + len(response)))
        return response

    def power_on(self) -> None:
        self.inner.power_on()

    def power_off(self) -> None:
        self.inner.power_off()

    def reset(self) -> None:
        self.inner.reset()

    def traffic(self) -> Traffic:
        with self._lock:
            return Traffic(self._apdus, self._bytes)

    def commands_since(self, index: int) -> list[bytes]:
        return list(self.inner.commands[index:])


# --------------------------------------------------------------------------- the client


class RpcClient:
    """One WebSocket connection to the agent; calls wait for their own id."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._next = 0
        self.events: list[tuple[float, dict[str, Any]]] = []

    @classmethod
    async def open(cls, url: str, origin: str, ssl: Any = None) -> RpcClient:
        extra = {"ssl": ssl} if ssl is not None else {}
        return cls(await websockets.connect(url, origin=origin, max_size=None, **extra))

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next += 1
        request_id = self._next
        await self.ws.send(json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
        ))
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("id") == request_id:
                return message
            if message.get("method") == "event":
                self.events.append((time.perf_counter(), message["params"]))

    async def send(self, method: str, params: dict[str, Any], request_id: int) -> None:
        await self.ws.send(json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        ))

    async def next_event(self, kind: str, timeout: float = 10.0) -> float:
        """Wait for an event of ``kind``; returns its arrival time (perf_counter)."""
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self.ws.recv())
                if message.get("method") == "event" and message["params"]["type"] == kind:
                    return time.perf_counter()

    async def close(self) -> None:
        await self.ws.close()


def checked(answer: dict[str, Any], what: str) -> dict[str, Any]:
    if "result" not in answer:
        raise RuntimeError(f"{what} failed: {answer.get('error')}")
    result: dict[str, Any] = answer["result"]
    return result


# --------------------------------------------------------------------------- raw APDUs


def raw_exchange(reader: str, apdus: Sequence[bytes]) -> list[tuple[bytes, int]]:
    """Connect, run ``apdus`` in one transaction, disconnect (what one agent job does)."""
    connection = connect(reader)
    try:
        with connection.transaction():
            answers = [connection.send_and_receive(apdu) for apdu in apdus]
    finally:
        connection.close()
    for (_data, sw), apdu in zip(answers, apdus, strict=True):
        if sw != 0x9000 and sw >> 8 != 0x61:
            raise RuntimeError(f"raw APDU {apdu[:5].hex()} answered {sw:04X}")
    return answers


def select_path_apdus(df: int, ef: int) -> list[bytes]:
    return [bytes.fromhex("00A4020C02") + fid.to_bytes(2, "big") for fid in (0x3F00, df, ef)]


def raw_read_certificate(reader: str, df: int, ef: int, chunk: int = 0xFC) -> int:
    """SELECT 3F00/DF/EF and READ BINARY up to the DER end; returns the APDU count."""
    connection = connect(reader)
    count = 0
    try:
        with connection.transaction():
            for apdu in select_path_apdus(df, ef):
                connection.send_and_receive(apdu)
                count += 1
            data = b""
            total: int | None = None
            while total is None or len(data) < total:
                offset = len(data)
                want = chunk if total is None else min(chunk, total - offset)
                part, _sw = connection.send_and_receive(
                    bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, want])
                )
                count += 1
                data += part
                if total is None:
                    total = der_length(data)
                if not part:
                    break
    finally:
        connection.close()
    return count


LOG_OFF = bytes.fromhex("80E60000")
GET_CARD_DATA = bytes.fromhex("80E4")


def split_log_off(log: Sequence[tuple[bytes, int]]) -> tuple[list[tuple[bytes, int]],
                                                              list[tuple[bytes, int]]]:
    """One operation's commands, and the LOG OFF job the core queued after its answer (the
    GET CARD DATA that confirms the card, then LOG OFF), told apart by what they are."""
    for end, (command, _size) in enumerate(log):
        if command[:4] == LOG_OFF:
            start = end
            if start > 0 and log[start - 1][0][:2] == GET_CARD_DATA:
                start -= 1
            return list(log[:start]), list(log[start:end + 1])
    return list(log), []


def essential_commands(commands: Sequence[bytes]) -> list[bytes]:
    """The minimal signing sequence inside the agent's traffic of one operation: the last
    VERIFY with a PIN, MSE SET, PSO and the GET RESPONSE after it."""
    verify = [c for c in commands if c[1] == 0x20 and len(c) > 5]
    mse = [c for c in commands if c[1] == 0x22]
    pso = [c for c in commands if c[1] == 0x2A]
    response = [c for c in commands if c[1] == 0xC0]
    if not (verify and mse and pso):
        raise RuntimeError("no signing sequence in the agent's traffic")
    return [verify[-1], mse[-1], pso[-1], *response[-1:]]


# --------------------------------------------------------------------------- /proc


@dataclass(frozen=True)
class ProcSample:
    rss_kib: int
    cpu_ticks: int
    context_switches: int
    threads: int


def sample_process(pid: int) -> ProcSample:
    """RSS, user+system CPU ticks and context switches (all threads) of ``pid``."""
    status = _status_fields(f"/proc/{pid}/status")
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    switches = 0
    tasks = os.listdir(f"/proc/{pid}/task")
    for task in tasks:
        try:
            task_status = _status_fields(f"/proc/{pid}/task/{task}/status")
        except OSError:
            continue
        switches += int(task_status["voluntary_ctxt_switches"])
        switches += int(task_status["nonvoluntary_ctxt_switches"])
    return ProcSample(int(status["VmRSS"].split()[0]), ticks, switches, len(tasks))


def _status_fields(path: str) -> dict[str, str]:
    with open(path, encoding="ascii") as handle:
        return dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"
