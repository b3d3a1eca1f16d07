"""Drive ``eid-agent-webeid-host`` as a browser does: one process per action, the caller's
origin as argument, 4-byte native-order frames on pipes, one command, then close and kill."""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXTENSION_ORIGIN = "chrome-extension://ncibgoaomkmdpilpocfeponihegamlic/"


def frame(message: Any) -> bytes:
    data = message if isinstance(message, bytes) else json.dumps(message).encode("utf-8")
    return struct.pack("=I", len(data)) + data


def read_frame(stream: Any, timeout: float) -> dict[str, Any] | None:
    """One frame from the host, or None when it closed stdout; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    buffer = b""
    size: int | None = None
    fd = stream.fileno()
    while True:
        want = 4 if size is None else size
        if len(buffer) >= want:
            if size is None:
                (size,) = struct.unpack("=I", buffer[:4])
                buffer = buffer[4:]
                continue
            return json.loads(buffer[:size].decode("utf-8"))
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no frame from the host in time")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            buffer += chunk


class Host:
    """One host process, started as Chromium starts it."""

    def __init__(self, env: dict[str, str], *, argv: tuple[str, ...] = (EXTENSION_ORIGIN,)) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.webeid.host", *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=ROOT,
        )
        self.version: dict[str, Any] | None = None

    def handshake(self, timeout: float = 5.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        version = read_frame(self.proc.stdout, timeout)
        assert version is not None, self.stderr()
        self.version = version
        return version

    def send(self, message: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(frame(message))
        self.proc.stdin.flush()

    def reply(self, timeout: float = 30.0) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        return read_frame(self.proc.stdout, timeout)

    def close(self, grace: float = 2.0) -> int:
        """Close the port as Chromium does: stdin closed, SIGKILL if still alive after ``grace``."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            return self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read().decode("utf-8", "replace")


def host_env(config_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["EID_AGENT_CONFIG_DIR"] = str(config_dir)
    # this checkout first (and its sibling distributions), whatever the venv has installed
    paths = [str(ROOT), str(ROOT / "validator"), str(ROOT / "emulator")]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                 if p and p not in paths])
    env.update(extra)
    return env


def action(
    env: dict[str, str], command: str, arguments: dict[str, Any], timeout: float = 30.0
) -> dict[str, Any]:
    """One whole action: start, version, command, reply, close."""
    host = Host(env)
    try:
        host.handshake()
        host.send({"command": command, "arguments": arguments})
        reply = host.reply(timeout)
        assert reply is not None, host.stderr()
        return reply
    finally:
        host.close()
