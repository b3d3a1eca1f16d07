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


def start_to_serving(folder: Path, pcscd: PrivatePcscd, home: Path, runs: int) -> list[float]:
    times = []
    for run in range(runs):
        port = free_port()
        env = pcscd.env()
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / f"c{run}"),
                   XDG_STATE_HOME=str(home / f"s{run}"))
        env.pop("DISPLAY", None)
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(folder / EXE), "serve", "--port", str(port), "--no-tray", "--interaction", "none",
             "--allow-http-loopback"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            answer = asyncio.run(_first_status(port, started + 60))
            times.append(time.monotonic() - started)
            assert "result" in answer, answer
        finally:
            proc.terminate()
            proc.wait(10)
    return times


def measure(runs: int = 5) -> list[tuple[str, str]]:
    """Rows (name, value) for the benchmark table."""
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
        with PrivatePcscd() as pcscd:
            times = start_to_serving(folder, pcscd, work, runs)
    rows = [
        ("frozen one-folder size", f"{size / 2**20:.1f} MiB in {len(files)} files; "
         f"executable {executable / 2**20:.1f} MiB"),
        ("frozen start to first `status` answer, median / max",
         f"{statistics.median(times) * 1e3:.0f} / {max(times) * 1e3:.0f} ms ({runs} runs)"),
    ]
    if build_time is not None:
        rows.append(("PyInstaller build time", f"{build_time:.0f} s"))
    return rows
