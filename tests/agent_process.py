"""Run the real ``eid-agent serve`` as a child process against the private pcscd (tests)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from eid_emulator.pcscd import PrivatePcscd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_LISTENING = re.compile(r"listening on ws://[^ ]*?:(\d+)")
_LISTENING_WSS = re.compile(r"listening on wss://[^ ]*?:(\d+)")


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
        prefix: tuple[str, ...] = (),
        port: int | None | str = "free",
    ) -> None:
        """``prefix``: run the agent under another command (``nsenter``, ``prlimit``);
        ``port``: ``"free"`` a free port, a number, or None for the agent's own slot choice
        (then the wss port is the slot's too; otherwise a free port is passed as --wss-port)."""
        self.port = free_port() if port == "free" else int(port or 0)
        self.wss_port = free_port() if self.port else 0
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
            *prefix, sys.executable, "-m", "agent", "--log-level", log_level, "serve",
            *(["--port", str(self.port)] if self.port else []),
            *(["--wss-port", str(self.wss_port)] if self.wss_port else []), "--no-tray",
            "--interaction", "scripted", "--script", str(script_file), *extra_args,
        ]
        for origin in allow_origins:
            args += ["--allow-origin", origin]
        self.proc = subprocess.Popen(
            args, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=Path(__file__).resolve().parent.parent,
        )
        self.lines: list[str] = []
        self.listening = False
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listening.wait(60) or not self.listening:
            self.stop()
            raise RuntimeError("the agent did not start:\n" + self.output)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            wss = _LISTENING_WSS.search(line)
            if wss:  # printed before the ws line
                self.wss_port = int(wss.group(1))
            found = _LISTENING.search(line)
            if found:  # a log line (stderr) may follow on the same line: take the digits only
                self.port = int(found.group(1))
                self.listening = True
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
