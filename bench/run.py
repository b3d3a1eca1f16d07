"""The agent's benchmarks on the real pcscd + vpcd with the virtual Belgian card.

``make bench`` (or ``.venv/bin/python bench/run.py [--quick]``) starts a private pcscd,
virtual cards and the real agent process (``eid-agent serve`` with the scripted PIN
provider), measures everything side by side in one run, prints a markdown table
(measured value, target, pass/fail) and writes it into ``docs/performance.md`` between
the ``bench`` markers, with machine information and method notes.

Baselines measured in the same run: the minimal raw APDU sequence through
``agent.pcsc.connect`` (no agent), OpenSC's ``pkcs11-tool`` for the same signature (1.7
card, the only one OpenSC 0.23 signs with), and pcscd's own insertion report through
``agent.pcsc.wait_for_card``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import os
import platform
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eid_emulator.beid import BeidCard  # noqa: E402
from eid_emulator.pcscd import PrivatePcscd  # noqa: E402
from eid_emulator.pki import Holder, TestPki, make_card_data  # noqa: E402
from eid_emulator.vpcd import VpcdCard  # noqa: E402
from websockets.exceptions import InvalidMessage, InvalidStatus  # noqa: E402, TID251 - a client

from agent.pcsc import wait_for_card  # noqa: E402
from bench.harness import (  # noqa: E402
    CLOCK_TICKS,
    READERS,
    CountingCard,
    RpcClient,
    Traffic,
    checked,
    essential_commands,
    median,
    ms,
    percentile,
    raw_exchange,
    raw_read_certificate,
    sample_process,
    split_log_off,
)
from bench.report import Row, write_report  # noqa: E402
from tests.agent_process import AgentProcess, free_port  # noqa: E402

PORTAL = "https://portal.example"
LOG_OFF_HEADER = bytes.fromhex("80E60000")
TAB_ORIGINS = tuple(f"https://site{k}.example" for k in range(8))
"""The concurrent-connections phase spreads its tabs over these sites: the agent allows 32
connections per origin (docs/protocol.md §6), so 200 tabs of one site would be refused."""
OPENING_AT_ONCE = 32
"""Handshakes the concurrent phase has in flight at once (the agent drops connections past
64 unfinished handshakes; browsers do not open 200 tabs in the same millisecond)."""
PIN = "908172"
HANG = {"hang": True}
PKCS11_MODULE = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
REAL_CARD_LATENCY = 0.020  # seconds per APDU, see docs/performance.md "method"
DF_BELPIC, EF_AUTH_CERT = 0xDF00, 0x5038
# Targets (issue 16)
WARM_APDUS = 5  # per warm authenticate / sign on 1.8
LATENCY_RATIO = 1.25  # agent / raw at 20 ms per APDU
BURST_P99 = 0.005  # 200 connections asking status at once, sign pending
BURST_ROUNDS = 3  # bursts against the agent and, alternately, the bare websockets floor
IDLE_RSS_MB = 40
FROZEN_MIB = 80


@dataclass(frozen=True)
class Sizes:
    status: int
    ops: int
    cold: int
    insert: int
    idle_seconds: float
    concurrent: int
    latency_ops: int
    pkcs11: int


FULL = Sizes(status=1000, ops=30, cold=3, insert=20, idle_seconds=60, concurrent=200,
             latency_ops=5, pkcs11=10)
QUICK = Sizes(status=200, ops=8, cold=1, insert=5, idle_seconds=10, concurrent=200,
              latency_ops=2, pkcs11=3)


@dataclass
class OpStats:
    """Wall times and traffic of repeated runs of one operation."""

    times: list[float] = field(default_factory=list)
    traffic: list[Traffic] = field(default_factory=list)

    def add(self, seconds: float, traffic: Traffic) -> None:
        self.times.append(seconds)
        self.traffic.append(traffic)

    @property
    def p50(self) -> float:
        return median(self.times)

    @property
    def apdus(self) -> int:
        """The median run's APDUs (a warm series' first run may still fill a cache)."""
        return statistics.median_low(t.apdus for t in self.traffic) if self.traffic else 0

    @property
    def bytes(self) -> int:
        return statistics.median_low(t.bytes for t in self.traffic) if self.traffic else 0

    def describe(self) -> str:
        return f"{ms(self.p50)} (n={len(self.times)}), {self.apdus} APDUs, {self.bytes} B"


def _count(log: list[tuple[bytes, int]]) -> tuple[int, int]:
    return len(log), sum(size for _command, size in log)


class Bench:
    def __init__(self, sizes: Sizes, work: Path) -> None:
        self.sizes = sizes
        self.work = work
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.pcscd = PrivatePcscd()
        self.pki = TestPki.load_or_create(work / "pki")
        self._agents = 0
        self.log_off = OpStats()  # answer -> LOG OFF seen at the card, and its APDUs

    # -- plumbing ---------------------------------------------------------------------

    def card(self, applet: str) -> CountingCard:
        return CountingCard(BeidCard(applet, make_card_data(self.pki, Holder(pin=PIN), applet)))

    @contextmanager
    def inserted(self, card: CountingCard, latency: float = 0.0) -> Iterator[VpcdCard]:
        served = VpcdCard(card, port=self.pcscd.ports[0], latency=latency)
        served.insert()
        wait_for_card(READERS[0], present=True, timeout=10)
        try:
            yield served
        finally:
            served.remove()
            wait_for_card(READERS[0], present=False, timeout=10)

    @contextmanager
    def agent(self, card: CountingCard, pins: list[Any]) -> Iterator[AgentProcess]:
        self._agents += 1
        home = self.work / f"agent-{self._agents}"
        home.mkdir()
        with AgentProcess(self.pcscd, home, {"pins": pins}, allow_origins=(PORTAL, *TAB_ORIGINS),
                          log_level=os.environ.get("BENCH_AGENT_LOG", "WARNING")) as agent:
            settle(card)  # the agent identifies the card it finds at start
            yield agent

    def row(self, name: str, value: str, target: str, ok: bool | None) -> None:
        self.rows.append(Row(name, value, target, ok))
        verdict = "-" if ok is None else ("pass" if ok else "FAIL")
        print(f"| {name} | {value} | {target} | {verdict} |", flush=True)

    # -- operations -------------------------------------------------------------------

    async def timed_op(self, client: RpcClient, card: CountingCard, method: str,
                       params: dict[str, Any]) -> tuple[float, Traffic, list[bytes]]:
        """Time to the answer, and the operation's own APDUs. The LOG OFF the agent sends
        after an operation that used the PIN comes after the answer: it is waited for here
        (so it never lands in the next sample) and counted apart (:attr:`log_off`)."""
        index = len(card.log)
        start = time.perf_counter()
        checked(await client.call(method, params), method)
        elapsed = time.perf_counter() - start
        if method in ("authenticate", "sign"):
            while not any(c[:4] == LOG_OFF_HEADER for c, _ in card.log[index:]):
                if time.perf_counter() - start > elapsed + 5:
                    raise RuntimeError(f"no LOG OFF after {method}")
                await asyncio.sleep(0.0005)
            self.log_off.add(time.perf_counter() - start - elapsed,
                             Traffic(*_count(split_log_off(card.log[index:])[1])))
        own, _tail = split_log_off(card.log[index:])
        return elapsed, Traffic(*_count(own)), [c for c, _ in own]

    @staticmethod
    def auth_params() -> dict[str, Any]:
        return {"challengeNonce": base64.b64encode(os.urandom(32)).decode()}

    @staticmethod
    def sign_params(card: CountingCard) -> dict[str, Any]:
        certificate = card.inner.data.sign_cert
        assert certificate is not None
        return {"certificate": base64.b64encode(certificate).decode(),
                "hash": base64.b64encode(os.urandom(32)).decode(), "hashFunction": "SHA-256"}

    def raw_ops(self, card: CountingCard, sequence: list[bytes], count: int,
                cold: bool = False) -> OpStats:
        stats = OpStats()
        for _ in range(count):
            before = card.traffic()
            start = time.perf_counter()
            if cold:
                raw_read_certificate(READERS[0], DF_BELPIC, EF_AUTH_CERT)
            raw_exchange(READERS[0], sequence)
            stats.add(time.perf_counter() - start, card.traffic() - before)
        return stats

    async def agent_ops(self, url: str, card: CountingCard, method: str,
                        count: int) -> tuple[OpStats, list[bytes]]:
        client = await RpcClient.open(url, PORTAL)
        stats, last = OpStats(), []
        try:
            for _ in range(count):
                params = self.auth_params() if method == "authenticate" else self.sign_params(card)
                elapsed, traffic, last = await self.timed_op(client, card, method, params)
                stats.add(elapsed, traffic)
        finally:
            await client.close()
        return stats, last

    # -- benchmarks -------------------------------------------------------------------

    async def status_times_tls(self, url: str, count: int, ca: Path) -> list[float]:
        return await self.status_times(url, count, ssl.create_default_context(cafile=str(ca)))

    async def status_times(self, url: str, count: int, context: Any = None) -> list[float]:
        client = await RpcClient.open(url, PORTAL, ssl=context)
        times = []
        try:
            for _ in range(20):
                await client.call("status")  # warm-up
            for _ in range(count):
                start = time.perf_counter()
                checked(await client.call("status"), "status")
                times.append(time.perf_counter() - start)
        finally:
            await client.close()
        return times

    async def handshake_times(self, url: str, count: int, ca: Path | None = None) -> list[float]:
        """Seconds for a new connection (TCP, TLS for wss, WebSocket upgrade) and its first
        status answer: what a page pays when it opens the agent."""
        context = ssl.create_default_context(cafile=str(ca)) if ca else None
        times = []
        for _ in range(count + 5):
            start = time.perf_counter()
            client = await RpcClient.open(url, PORTAL, ssl=context)
            checked(await client.call("status"), "status")
            times.append(time.perf_counter() - start)
            await client.close()
        return times[5:]  # the first ones warm caches (imports, session setup)

    async def pending_sign(self, url: str, card: CountingCard) -> RpcClient:
        """A connection whose sign waits in the (hanging) scripted PIN prompt."""
        client = await RpcClient.open(url, PORTAL)
        await client.send("sign", self.sign_params(card), 999)
        await asyncio.sleep(0.3)  # let it reach the prompt
        return client

    async def concurrent_status(self, url: str, connections: int) -> tuple[list[float], dict[str, int]]:
        """Open ``connections`` at once; when all are open (or refused), each asks status."""
        outcomes: dict[str, int] = {}
        times: list[float] = []
        all_open = asyncio.Event()
        settled = 0
        opening = asyncio.Semaphore(OPENING_AT_ONCE)
        numbers = iter(range(connections))

        def count(key: str) -> None:
            outcomes[key] = outcomes.get(key, 0) + 1

        def arrived() -> None:
            nonlocal settled
            settled += 1
            if settled == connections:
                all_open.set()

        async def one() -> None:
            origin = TAB_ORIGINS[next(numbers) % len(TAB_ORIGINS)]
            try:
                async with opening:
                    client = await RpcClient.open(url, origin)
            except InvalidStatus as exc:
                count(f"refused {exc.response.status_code}")
                arrived()
                return
            except InvalidMessage:  # dropped at accept (handshake cap)
                count("dropped")
                arrived()
                return
            except OSError as exc:
                count(type(exc).__name__)
                arrived()
                return
            arrived()
            try:
                await all_open.wait()
                start = time.perf_counter()
                answer = await client.call("status")
                times.append(time.perf_counter() - start)
                count("ok" if "result" in answer else answer["error"]["data"]["code"])
            except Exception as exc:  # noqa: BLE001 - counted, reported
                count(type(exc).__name__)
            finally:
                await client.close()

        await asyncio.gather(*(one() for _ in range(connections)))
        return times, outcomes

    async def bursts_with_floor(self, url: str, connections: int) -> tuple[
            list[tuple[list[float], dict[str, int]]], list[tuple[list[float], dict[str, int]]]]:
        """:data:`BURST_ROUNDS` bursts against the agent, each followed by the same burst
        against the bare websockets server of :mod:`bench.floor_server` (the floor: the
        library, loopback and this client, no agent code), so both see the same load."""
        port = free_port()
        floor_server = subprocess.Popen(
            [sys.executable, "-m", "bench.floor_server", str(port)], cwd=ROOT,
            stdout=subprocess.PIPE, text=True)
        try:
            assert floor_server.stdout is not None
            assert floor_server.stdout.readline().strip() == "ready"
            agent_runs, floor_runs = [], []
            for _ in range(BURST_ROUNDS):
                agent_runs.append(await self.concurrent_status(url, connections))
                await asyncio.sleep(0.5)
                floor_runs.append(await self.concurrent_status(f"ws://127.0.0.1:{port}", connections))
                await asyncio.sleep(0.5)
        finally:
            floor_server.terminate()
            floor_server.wait(10)
        return agent_runs, floor_runs

    async def insertion(self, url: str, served: VpcdCard, count: int) -> tuple[list[float], list[float]]:
        """Seconds from vpcd connect to (pcscd reports the card, the client gets the event)."""
        client = await RpcClient.open(url, PORTAL)
        checked(await client.call("subscribe"), "subscribe")
        agent_times: list[float] = []
        pcscd_times: list[float] = []
        try:
            for _ in range(count):
                served.remove()
                await client.next_event("card-removed")
                await asyncio.to_thread(wait_for_card, READERS[0], False, 10)
                await asyncio.sleep(random.uniform(0.05, 0.5))  # random phase vs pcscd's poll
                seen: list[float] = []
                watcher = threading.Thread(target=_report_insertion, args=(seen,))
                watcher.start()
                await asyncio.sleep(0.05)  # the watcher is blocked in SCardGetStatusChange
                start = time.perf_counter()
                served.insert()
                arrived = await client.next_event("card-inserted")
                await asyncio.to_thread(watcher.join)
                agent_times.append(arrived - start)
                pcscd_times.append(seen[0] - start)
        finally:
            await client.close()
        return agent_times, pcscd_times

    def idle(self, pid: int, seconds: float) -> tuple[int, float, int, int]:
        """(RSS KiB at the end, CPU % over the window, context switches, threads)."""
        first = sample_process(pid)
        time.sleep(seconds)
        last = sample_process(pid)
        cpu = (last.cpu_ticks - first.cpu_ticks) / CLOCK_TICKS / seconds * 100
        return last.rss_kib, cpu, last.context_switches - first.context_switches, last.threads

    # -- phases -----------------------------------------------------------------------

    async def phase_main(self) -> None:
        """1.8 card, no latency: status, warm operations, raw, pending sign, 200
        connections, insertion, idle."""
        s = self.sizes
        card = self.card("1.8")
        pins: list[Any] = [PIN] * (2 * s.ops) + [HANG] + [PIN] * 4
        with self.inserted(card) as served, self.agent(card, pins) as agent:
            idle_status = await self.status_times(agent.url, s.status)
            handshakes = max(20, s.status // 10)
            ws_open = await self.handshake_times(agent.url, handshakes)
            wss_open = await self.handshake_times(agent.wss_url, handshakes, agent.ca_file)
            wss_status = await self.status_times_tls(agent.wss_url, s.status, agent.ca_file)
            auth, auth_cmds = await self.agent_ops(agent.url, card, "authenticate", s.ops)
            sign, sign_cmds = await self.agent_ops(agent.url, card, "sign", s.ops)
            raw_auth = self.raw_ops(card, essential_commands(auth_cmds), s.ops)
            raw_sign = self.raw_ops(card, essential_commands(sign_cmds), s.ops)
            pending = await self.pending_sign(agent.url, card)
            busy_status = await self.status_times(agent.url, s.status)
            bursts, floor = await self.bursts_with_floor(agent.url, s.concurrent)
            await pending.close()
            await asyncio.sleep(0.3)
            agent_insert, pcscd_insert = await self.insertion(agent.url, served, s.insert)
            await asyncio.sleep(1.0)
            rss, cpu, switches, threads = self.idle(agent.proc.pid, s.idle_seconds)

        p50, p99 = percentile(idle_status, 50), percentile(idle_status, 99)
        self.row("status round trip, idle: p50 / p99", f"{ms(p50)} / {ms(p99)} (n={len(idle_status)})",
                 "0.5 ms / 2 ms", p50 <= 0.0005 and p99 <= 0.002)
        for label, times in (("ws://", ws_open), ("wss:// (local CA, TLS 1.3)", wss_open)):
            p50, p99 = percentile(times, 50), percentile(times, 99)
            self.row(f"connect + first status, {label}: p50 / p99",
                     f"{ms(p50)} / {ms(p99)} (n={len(times)})", "-", None)
        p50, p99 = percentile(wss_status, 50), percentile(wss_status, 99)
        self.row("status round trip over wss://, idle: p50 / p99",
                 f"{ms(p50)} / {ms(p99)} (n={len(wss_status)})", "-", None)
        p50, p99 = percentile(busy_status, 50), percentile(busy_status, 99)
        self.row("status round trip, another connection's sign pending: p50 / p99",
                 f"{ms(p50)} / {ms(p99)} (n={len(busy_status)})", "0.5 ms / 2 ms",
                 p50 <= 0.0005 and p99 <= 0.002)
        self.compare("authenticate warm (1.8, ES384)", auth, raw_auth, apdu_limit=WARM_APDUS)
        self.compare("sign warm (1.8, ECDSA SHA-256, key 83)", sign, raw_sign, apdu_limit=WARM_APDUS)
        self.row("LOG OFF after each warm authenticate / sign (sent after the answer; "
                 "the two rows above are with it on)",
                 f"{self.log_off.apdus} APDUs after the answer (GET CARD DATA, LOG OFF), "
                 f"at the card {ms(self.log_off.p50)} after it (p50, n={len(self.log_off.times)})",
                 "0 APDUs before the answer", None)
        errors = sum(s.concurrent - outcomes.get("ok", 0) for _times, outcomes in bursts)
        p99s = [percentile(times, 99) for times, _outcomes in bursts]
        floor_p99s = [percentile(times, 99) for times, _outcomes in floor]
        self.row(f"{s.concurrent} concurrent connections asking status (sign pending): errors, p99",
                 f"{errors} errors in {len(bursts)} bursts "
                 f"({format_outcomes(bursts[-1][1])} in the last); p99 of answered, median of "
                 f"the bursts {ms(median(p99s))} ({', '.join(ms(x) for x in p99s)})",
                 f"0 errors, p99 {ms(BURST_P99)}", errors == 0 and median(p99s) <= BURST_P99)
        self.row("… same burst against a bare websockets server (floor): p99",
                 f"{ms(median(floor_p99s))} ({', '.join(ms(x) for x in floor_p99s)})",
                 "(baseline)", None)
        self.row("card insertion → WebSocket event: p50 / p99",
                 f"{ms(median(agent_insert))} / {ms(percentile(agent_insert, 99))} (n={len(agent_insert)})",
                 "p50 50 ms", median(agent_insert) <= 0.050)
        share = [a - p for a, p in zip(agent_insert, pcscd_insert, strict=True)]
        self.row("… of which pcscd/vpcd (wait_for_card, same insertions): p50 / p99",
                 f"{ms(median(pcscd_insert))} / {ms(percentile(pcscd_insert, 99))}", "(baseline)", None)
        self.row("… of which the agent (event − pcscd report): p50 / p99",
                 f"{ms(median(share))} / {ms(percentile(share, 99))}", "(identification + delivery)", None)
        self.row(f"idle RSS after {s.idle_seconds:.0f} s", f"{rss / 1024:.1f} MB ({threads} threads)",
                 f"{IDLE_RSS_MB} MB", rss / 1024 <= IDLE_RSS_MB)
        self.row(f"idle CPU / wake-ups over {s.idle_seconds:.0f} s",
                 f"{cpu:.3f} % CPU, {switches} context switches (all threads)",
                 "no periodic wake-ups", switches <= 2)

    def compare(self, name: str, agent: OpStats, raw: OpStats, apdu_limit: int | None = None,
                ratio_limit: float = 1.10) -> None:
        ratio = agent.p50 / raw.p50
        limit_ok = agent.apdus <= apdu_limit if apdu_limit else None
        self.row(f"{name}: agent", agent.describe(),
                 f"≤ {apdu_limit} APDUs" if apdu_limit else "", limit_ok)
        self.row(f"{name}: raw APDUs via agent.pcsc", raw.describe(), "(baseline)", None)
        self.row(f"{name}: agent / raw", f"{ratio:.2f}x", f"≤ {ratio_limit:.2f}x",
                 ratio <= ratio_limit)

    async def phase_cold(self) -> None:
        """1.8 card; each sample a fresh agent process whose first operation is measured."""
        s = self.sizes
        card = self.card("1.8")
        auth, sign = OpStats(), OpStats()
        auth_cmds: list[bytes] = []
        with self.inserted(card):
            for _ in range(s.cold):
                for method, stats in (("authenticate", auth), ("sign", sign)):
                    with self.agent(card, [PIN]) as agent:
                        client = await RpcClient.open(agent.url, PORTAL)
                        params = self.auth_params() if method == "authenticate" else self.sign_params(card)
                        elapsed, traffic, commands = await self.timed_op(client, card, method, params)
                        await client.close()
                        stats.add(elapsed, traffic)
                        if method == "authenticate":
                            auth_cmds = commands
            raw = self.raw_ops(card, essential_commands(auth_cmds), s.cold, cold=True)
        self.compare("authenticate cold (fresh agent process, 1.8)", auth, raw)
        self.row("sign cold (fresh agent process, 1.8): agent", sign.describe(), "", None)
        self.notes.append(
            "Cold: a new agent process per sample, the card already inserted (the agent reads "
            "its type and authentication certificate at start, before the request); the raw cold "
            "baseline reads the authentication certificate (SELECT 3F00/DF00/5038 + READ BINARY) "
            "before signing.")

    async def phase_pkcs11(self) -> None:
        """1.7 card: the agent's authenticate (RS256 with key 82) against pkcs11-tool's
        SHA256-RSA-PKCS signature with the same key, and the raw sequence."""
        s = self.sizes
        card = self.card("1.7")
        with self.inserted(card), self.agent(card, [PIN] * s.ops) as agent:
            auth, commands = await self.agent_ops(agent.url, card, "authenticate", s.ops)
            raw = self.raw_ops(card, essential_commands(commands), s.ops)
            tool = self.pkcs11_tool(card, s.pkcs11)
        self.compare("authenticate warm (1.7, RS256)", auth, raw)
        self.row("same signature via OpenSC pkcs11-tool (1.7, per command)", tool.describe(),
                 "(baseline)", None)
        self.row("agent / pkcs11-tool (1.7)", f"{auth.p50 / tool.p50:.2f}x", "(lower is better)", None)

    def pkcs11_tool(self, card: CountingCard, count: int) -> OpStats:
        home = self.work / "pkcs11-home"
        home.mkdir(exist_ok=True)
        message = home / "message"
        message.write_bytes(b"benchmark message")
        env = {**self.pcscd.env(), "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache")}
        args = ["pkcs11-tool", "--module", PKCS11_MODULE, "--login", "--pin", PIN, "--sign",
                "--id", "02", "--mechanism", "SHA256-RSA-PKCS", "--input-file", str(message),
                "--output-file", str(home / "signature")]
        stats = OpStats()
        for _ in range(count):
            before = card.traffic()
            start = time.perf_counter()
            result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120,
                                    check=False)
            elapsed = time.perf_counter() - start
            if result.returncode != 0:
                raise RuntimeError(f"pkcs11-tool failed: {result.stdout}{result.stderr}")
            stats.add(elapsed, card.traffic() - before)
        return stats

    async def phase_latency(self) -> None:
        """The same warm operations with a real card's per-APDU latency."""
        s = self.sizes
        card = self.card("1.8")
        self.log_off = OpStats()
        with self.inserted(card, latency=REAL_CARD_LATENCY), \
                self.agent(card, [PIN] * (2 * s.latency_ops)) as agent:
            auth, auth_cmds = await self.agent_ops(agent.url, card, "authenticate", s.latency_ops)
            sign, sign_cmds = await self.agent_ops(agent.url, card, "sign", s.latency_ops)
            raw_auth = self.raw_ops(card, essential_commands(auth_cmds), s.latency_ops)
            raw_sign = self.raw_ops(card, essential_commands(sign_cmds), s.latency_ops)
        tag = f"{REAL_CARD_LATENCY * 1000:.0f} ms/APDU"
        self.compare(f"authenticate warm, {tag}", auth, raw_auth, apdu_limit=WARM_APDUS,
                     ratio_limit=LATENCY_RATIO)
        self.compare(f"sign warm, {tag}", sign, raw_sign, apdu_limit=WARM_APDUS,
                     ratio_limit=LATENCY_RATIO)
        self.row(f"LOG OFF after each warm authenticate / sign, {tag} (after the answer; "
                 "not in the two agent rows above)",
                 f"{self.log_off.apdus} APDUs, done {ms(self.log_off.p50)} after the answer "
                 f"(p50, n={len(self.log_off.times)})", "0 APDUs before the answer", None)
        overhead = auth.p50 - auth.apdus * REAL_CARD_LATENCY
        self.notes.append(
            f"With {tag}, the agent's authenticate spends {auth.apdus} × {tag} = "
            f"{auth.apdus * REAL_CARD_LATENCY * 1000:.0f} ms waiting for the card and about "
            f"{overhead * 1000:.0f} ms elsewhere (pcscd, WebSocket, core, crypto).")
        for name, commands in (("authenticate", auth_cmds), ("sign", sign_cmds)):
            self.notes.append(f"Agent warm {name} on 1.8, command headers: "
                              + " ".join(c[:4].hex().upper() for c in commands) + ".")

    async def phase_webeid(self) -> None:
        """The eu.webeid host spawned as a browser does, next to the WebSocket path."""
        from bench.webeid import phase_webeid

        await phase_webeid(self, PORTAL, PIN, settle)

    async def run_only(self, phase: str) -> None:
        self.pcscd.start()
        self.pcscd.use()
        try:
            await getattr(self, f"phase_{phase}")()
        finally:
            self.pcscd.stop()

    async def run(self) -> None:
        self.pcscd.start()
        self.pcscd.use()
        try:
            await self.phase_main()
            await self.phase_cold()
            await self.phase_pkcs11()
            await self.phase_latency()
            await self.phase_webeid()
        finally:
            self.pcscd.stop()


def _report_insertion(seen: list[float]) -> None:
    wait_for_card(READERS[0], True, 10)
    seen.append(time.perf_counter())


def settle(card: CountingCard, quiet: float = 0.5, timeout: float = 20.0) -> None:
    """Wait until no APDU has reached the card for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = card.traffic().apdus, time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
        now = card.traffic().apdus
        if now != last:
            last, since = now, time.monotonic()


def format_outcomes(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in sorted(outcomes.items()))


def machine_info() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pcscd = subprocess.run(["pcscd", "--version"], capture_output=True, text=True,
                           check=False).stdout.splitlines()
    opensc = subprocess.run(["opensc-tool", "--info"], capture_output=True, text=True,
                            check=False).stdout.splitlines()
    return [
        f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {platform.node()}, {cpu}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start",
        f"system: {platform.platform()}, Python {platform.python_version()}",
        f"pcsc-lite: {pcscd[0] if pcscd else 'unknown'}; "
        f"OpenSC: {opensc[0] if opensc else 'unknown'}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, 10 s idle window")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--only", choices=("webeid",), help="run only this phase")
    parser.add_argument("--frozen", action="store_true",
                        help="also build the PyInstaller binary and measure its size and start time")
    args = parser.parse_args(argv)
    os.environ["EID_AGENT_ALLOW_SCRIPTED"] = "1"
    info = machine_info()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="eid-bench-") as work:
        bench = Bench(QUICK if args.quick else FULL, Path(work))
        print("| measurement | value | target | verdict |\n|---|---|---|---|", flush=True)
        asyncio.run(bench.run_only(args.only) if args.only else bench.run())
        if args.frozen:
            from bench.frozen import measure

            for name, value, target, ok in measure(FROZEN_MIB):
                bench.row(name, value, target, ok)
    info.append(f"run: {'--quick' if args.quick else 'full'}, {time.monotonic() - started:.0f} s")
    if not args.no_write:
        write_report(args.output, bench.rows, info, bench.notes)
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
