"""Run the real ``eid-agent serve`` as a child process against the private pcscd (tests)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agent.emulator.pcscd import PrivatePcscd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AgentProcess:
    """``python -m agent serve`` with a scripted user, its output collected for checks."""

    def __init__(
        self,
        pcscd: PrivatePcscd,
        home: Path,
        script: dict[str, Any],
        *,
        allow_origins: tuple[str, ...] = (),
        extra_args: tuple[str, ...] = (),
        log_level: str = "TRAFFIC",
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.wss_port = free_port()
        self.home = home
        script_file = home / "script.json"
        script_file.write_text(json.dumps(script), encoding="utf-8")
        environment = pcscd.env()
        environment.update(
            EID_AGENT_ALLOW_SCRIPTED="1",
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / "config"),
            XDG_STATE_HOME=str(home / "state"),
            EID_AGENT_POLICY_FILE=str(home / "no-policy.json"),
        )
        # What a user's session has, not what this test process picked up (the offscreen
        # Qt tests set QT_QPA_PLATFORM for the whole pytest process).
        environment.pop("DISPLAY", None)
        environment.pop("QT_QPA_PLATFORM", None)
        environment.update(env or {})
        args = [
            sys.executable, "-m", "agent", "--log-level", log_level, "serve",
            "--port", str(self.port), "--wss-port", str(self.wss_port), "--no-tray",
            "--interaction", "scripted", "--script", str(script_file), *extra_args,
        ]
        for origin in allow_origins:
            args += ["--allow-origin", origin]
        self.proc = subprocess.Popen(
            args, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=Path(__file__).resolve().parent.parent,
        )
        self.lines: list[str] = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listening.wait(60):
            self.stop()
            raise RuntimeError("the agent did not start:\n" + self.output)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "listening on ws://" in line:
                self._listening.set()
        self._listening.set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def wss_url(self) -> str:
        return f"wss://127.0.0.1:{self.wss_port}"

    @property
    def ca_file(self) -> Path:
        """The agent's local CA certificate (trust anchor for ``wss_url``)."""
        return self.home / "config" / "eid-agent" / "tls" / "ca.pem"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def log_file_text(self) -> str:
        path = self.home / "state" / "eid-agent" / "logs" / "eid-agent.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.output

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


__all__ = ["AgentProcess", "free_port", "wait_until", "os"]
