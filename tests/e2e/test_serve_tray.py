"""``eid-agent serve`` as a user starts it in a desktop session: tray icon on the main
thread, the agent's loop on another, Quit in the tray menu (or SIGTERM) ends the process.
Real parts: Xvfb + trayer, a D-Bus session, the private pcscd with the virtual card."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from eid_emulator.beid import BeidCard
from eid_emulator.pki import TestPki, make_card_data
from PIL import ImageChops

from tests.agent_process import free_port
from tests.e2e.test_tray import SCREEN, TRAY_HEIGHT, grab, needs_x, wait_for, x_display  # noqa: F401

pytestmark = [pytest.mark.pcsc, needs_x]
ROOT = Path(__file__).resolve().parents[2]


def _start(display: str, pcscd, tmp_path: Path) -> tuple[subprocess.Popen[str], int, list[str]]:
    port = free_port()
    env = pcscd.env()
    env.pop("QT_QPA_PLATFORM", None)
    env.pop("WAYLAND_DISPLAY", None)
    env.update(DISPLAY=display, PYSTRAY_BACKEND="gtk", HOME=str(tmp_path),
               XDG_RUNTIME_DIR=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_STATE_HOME=str(tmp_path / "state"), NO_AT_BRIDGE="1",
               EID_AGENT_POLICY_FILE=str(tmp_path / "no-policy.json"))
    # EID_AGENT_FROZEN_DIR=dist/eid-agent: the same tests on the PyInstaller build (GTK
    # stack and pystray backends as bundled, no icon themes).
    frozen = os.environ.get("EID_AGENT_FROZEN_DIR")
    program = [str(Path(frozen) / "eid-agent")] if frozen else [sys.executable, "-m", "agent"]
    if frozen:
        env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(
        ["dbus-run-session", "--", *program, "--log-level", "INFO",
         "serve", "--port", str(port), "--allow-origin", "http://localhost", "--allow-http-loopback"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    listening = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "listening on ws://" in line:
                listening.set()
        listening.set()

    threading.Thread(target=read, daemon=True).start()
    assert listening.wait(60) and proc.poll() is None, "".join(lines)
    return proc, port, lines


def _status(port: int) -> dict:
    import asyncio

    import websockets

    async def go() -> dict:
        async with websockets.connect(f"ws://127.0.0.1:{port}", origin="http://localhost") as ws:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"}))
            return json.loads(await ws.recv())

    return asyncio.run(go())


def test_serve_shows_the_tray_and_quits_from_its_menu(x_display, pcscd, vpcd, tmp_path) -> None:  # noqa: F811
    vpcd(BeidCard("1.8", make_card_data(TestPki.load_or_create(tmp_path / "pki"), applet="1.8")))
    icon_box = (SCREEN[0] - TRAY_HEIGHT, 0, SCREEN[0], TRAY_HEIGHT)
    before = grab(x_display)
    proc, port, lines = _start(x_display, pcscd, tmp_path)
    try:
        wait_for(lambda: ImageChops.difference(grab(x_display).crop(icon_box),
                                               before.crop(icon_box)).getbbox() is not None,
                 "the agent's icon in the tray")
        assert _status(port)["result"]["readers"][0]["cardPresent"] is True
        wait_for(lambda: any("tray icon running" in line for line in lines), "the tray log line")
        env = {**os.environ, "DISPLAY": x_display}
        x, y = SCREEN[0] - TRAY_HEIGHT // 2, TRAY_HEIGHT // 2
        subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "3"], env=env,
                       check=True, timeout=30)
        wait_for(lambda: grab(x_display).crop((SCREEN[0] - 420, TRAY_HEIGHT, SCREEN[0], 320))
                 .getbbox() is not None, "the tray menu")
        # Quit is the menu's last line: Up from the top wraps to it.
        subprocess.run(["xdotool", "key", "--delay", "300", "Up", "Return"], env=env, check=True,
                       timeout=30)
        assert proc.wait(30) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines)
    assert "quit from the tray" in output
    assert "agent core stopped" in output
    assert "Traceback" not in output


def test_serve_with_tray_stops_on_sigterm(x_display, pcscd, tmp_path) -> None:  # noqa: F811
    proc, port, lines = _start(x_display, pcscd, tmp_path)
    try:
        assert "result" in _status(port)
        wait_for(lambda: any("tray icon running" in line for line in lines), "the tray")
        # dbus-run-session forwards nothing: signal the agent itself (its only child).
        child = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True,
                               check=True).stdout.split()[0]
        os.kill(int(child), signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines)
    assert "agent core stopped" in output, output
    assert "Traceback" not in output, output
