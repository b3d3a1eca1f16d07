"""The frozen (PyInstaller one-folder) agent: size on disk and start-to-serving time.

Builds ``packaging/pyinstaller/eid-agent.spec`` into a temporary folder (about a minute on
2 cores), or measures an existing build named by ``EID_AGENT_FROZEN_DIR``. Start-to-serving
is the time from spawning ``eid-agent serve`` to the first answered ``status`` over the
WebSocket, with the reader layer up (private pcscd).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets
from eid_emulator.pcscd import PrivatePcscd

from tests.agent_process import free_port

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "pyinstaller" / "eid-agent.spec"
EXE = "eid-agent.exe" if sys.platform == "win32" else "eid-agent"


def build(work: Path) -> tuple[Path, float]:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
         "--distpath", str(work / "dist"), "--workpath", str(work / "build"), str(SPEC)],
        cwd=ROOT, check=True, capture_output=True, timeout=900,
    )
    return work / "dist" / "eid-agent", time.monotonic() - started


async def _first_status(port: int, deadline: float) -> dict[str, object]:
    while True:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}", origin="http://localhost") as ws:
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"}))
                return json.loads(await ws.recv())
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


def _start_once(folder: Path, pcscd: PrivatePcscd, home: Path, config: str) -> float:
    port = free_port()
    env = pcscd.env()
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / config),
               XDG_STATE_HOME=str(home / f"state-{config}"))
    env.pop("DISPLAY", None)
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(folder / EXE), "serve", "--port", str(port), "--no-tray", "--interaction", "none",
         "--allow-http-loopback"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        answer = asyncio.run(_first_status(port, started + 60))
        elapsed = time.monotonic() - started
        assert "result" in answer, answer
    finally:
        proc.terminate()
        proc.wait(10)
    return elapsed


def start_to_serving(folder: Path, pcscd: PrivatePcscd, home: Path,
                     runs: int) -> tuple[list[float], list[float]]:
    """(first starts, later starts): a first start in a new settings folder also has its
    ``wss://`` certificate set made (by ``eid-agent prepare-certificate``); a later start in
    the same folder only reads it."""
    first, later = [], []
    for run in range(runs):
        first.append(_start_once(folder, pcscd, home, f"c{run}"))
        later.append(_start_once(folder, pcscd, home, f"c{run}"))
    return first, later


def host_start_to_version(folder: Path, home: Path, runs: int) -> list[float]:
    """Spawn the frozen ``eid-agent-webeid-host`` as a browser does; time to its version frame."""
    host = folder / ("eid-agent-webeid-host.exe" if sys.platform == "win32" else "eid-agent-webeid-host")
    times = []
    for _ in range(runs):
        env = {**os.environ, "HOME": str(home), "EID_AGENT_CONFIG_DIR": str(home / "webeid")}
        env.pop("PYTHONPATH", None)
        started = time.monotonic()
        proc = subprocess.Popen([str(host), "chrome-extension://ncibgoaomkmdpilpocfeponihegamlic/"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None and proc.stdin is not None
        header = proc.stdout.read(4)
        body = proc.stdout.read(int.from_bytes(header, sys.byteorder))
        times.append(time.monotonic() - started)
        assert json.loads(body)["version"].startswith("2."), body
        proc.stdin.close()
        proc.wait(10)
    return times


def _shares(folder: Path) -> str:
    """The big parts of the one-folder: Qt with PySide6, cryptography, libpython (MiB)."""
    internal = folder / "_internal"

    def total(paths: list[Path]) -> float:
        return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink()) / 2**20

    parts = {
        "Qt (PySide6)": list((internal / "PySide6").rglob("*")) + list((internal / "shiboken6").rglob("*")),
        "cryptography": list((internal / "cryptography").rglob("*")),
        "libpython": list(internal.glob("libpython3*")),
    }
    return ", ".join(f"{label} {total(paths):.1f}" for label, paths in parts.items()) + " MiB"


def measure(limit_mib: float, runs: int = 5) -> list[tuple[str, str, str, bool | None]]:
    """Rows (name, value, target, verdict) for the benchmark table."""
    given = os.environ.get("EID_AGENT_FROZEN_DIR")
    with tempfile.TemporaryDirectory(prefix="eid-frozen-") as tmp:
        work = Path(tmp)
        if given:
            folder, build_time = Path(given), None
        else:
            folder, build_time = build(work)
        files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
        size = sum(p.stat().st_size for p in files)
        executable = (folder / EXE).stat().st_size
        shares = _shares(folder)
        with PrivatePcscd() as pcscd:
            first, later = start_to_serving(folder, pcscd, work, runs)
        host_times = host_start_to_version(folder, work, runs)
    rows: list[tuple[str, str, str, bool | None]] = [
        ("frozen one-folder size", f"{size / 2**20:.1f} MiB in {len(files)} files; "
         f"executable {executable / 2**20:.1f} MiB; of which {shares}",
         f"≤ {limit_mib:.0f} MiB", size / 2**20 <= limit_mib),
        ("frozen start to first `status` answer, median / max: first start (makes the wss:// "
         "certificate) / later start",
         f"{statistics.median(first) * 1e3:.0f} / {max(first) * 1e3:.0f} ms; "
         f"{statistics.median(later) * 1e3:.0f} / {max(later) * 1e3:.0f} ms ({runs} runs each)",
         "—", None),
        ("frozen eid-agent-webeid-host: start to version frame, median / max",
         f"{statistics.median(host_times) * 1e3:.0f} / {max(host_times) * 1e3:.0f} ms ({runs} runs)",
         "—", None),
    ]
    if build_time is not None:
        rows.append(("PyInstaller build time", f"{build_time:.0f} s", "—", None))
    return rows
