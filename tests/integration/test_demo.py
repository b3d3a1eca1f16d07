"""The README's main command: ``eid-emulator demo`` (``make demo``) brings up the virtual card, the agent and
the reference portal together (here on the private pcscd and free ports)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import websockets

from tests.agent_process import free_port

pytestmark = pytest.mark.pcsc
ROOT = Path(__file__).resolve().parents[2]


def test_demo_serves_the_card_the_agent_and_the_portal(pcscd, tmp_path) -> None:
    port, portal_port = free_port(), free_port()
    env = pcscd.env()
    env.pop("DISPLAY", None)
    env.update(EID_AGENT_DEMO_DIR=str(tmp_path / "demo"), HOME=str(tmp_path),
               XDG_CONFIG_HOME=str(tmp_path / "c"), XDG_STATE_HOME=str(tmp_path / "s"),
               EID_AGENT_POLICY_FILE=str(tmp_path / "no-policy.json"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "eid_emulator.cli", "demo", "--interaction", "none", "--port", str(port),
         "--portal-port", str(portal_port), "--vpcd-port", str(pcscd.ports[0])],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        page = None
        while page is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{portal_port}/", timeout=2) as r:
                    page = r.read().decode()
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
                time.sleep(0.2)

        async def status() -> dict:
            origin = f"http://localhost:{portal_port}"  # pre-approved by the demo
            async with websockets.connect(f"ws://127.0.0.1:{port}", origin=origin) as ws:
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"}))
                return json.loads(await ws.recv())

        while True:
            try:  # the agent listens once its wss:// certificate is made (a first start)
                answer = asyncio.run(status())["result"]
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
                time.sleep(0.2)
                continue
            card = answer["readers"][0]["card"]
            if card is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(30)
    assert "<html" in page.lower()
    assert answer["approved"] is True
    assert card is not None and card["type"] == "BE eID (applet 1.8)", answer
    output = "".join(lines)
    assert "PIN 1234" in output and "Traceback" not in output
