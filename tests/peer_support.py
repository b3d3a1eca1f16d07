"""Helpers for tests with other OS users and the agent's fixed port range.

* :func:`raw_client`: the stdlib WebSocket client (tests/raw_ws_client.py), optionally run as
  another OS user (``runuser -u nobody``) and inside a network namespace.
* :class:`NetNamespace`: a private network namespace with only a loopback interface, so tests
  of the fixed slot range (ports 24847...) cannot meet another developer's agent on this
  machine and leave the real ports alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CLIENT_SOURCE = Path(__file__).with_name("raw_ws_client.py").read_text(encoding="utf-8")
SYSTEM_PYTHON = "/usr/bin/python3"
OTHER_USER = "nobody"


def require_other_user() -> None:
    if os.geteuid() != 0 or not shutil.which("runuser") or not Path(SYSTEM_PYTHON).exists():
        pytest.skip("needs root, runuser and /usr/bin/python3 to act as another OS user")


def raw_client(
    host: str,
    port: int,
    origin: str,
    *methods: str,
    user: str | None = None,
    netns: NetNamespace | None = None,
    tls_ca: str | None = None,
    host_port: int | None = None,
) -> dict[str, Any]:
    """``tls_ca``: connect over TLS trusting only this CA (PEM text); ``host_port``: the port
    the Host header names (default: the one connected to)."""
    command: list[str] = [*(netns.prefix if netns else ())]
    if user:
        command += ["runuser", "-u", user, "--"]
    options = [*(["--tls", tls_ca] if tls_ca else []),
               *(["--host-port", str(host_port)] if host_port else [])]
    command += [SYSTEM_PYTHON, "-c", CLIENT_SOURCE, *options, host, str(port), origin, *methods]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class NetNamespace:
    """``unshare --net`` holding a namespace open; ``prefix`` runs a command inside it."""

    def __init__(self) -> None:
        if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
            pytest.skip("needs root, unshare and nsenter for a private network namespace")
        self.proc = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"])
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self.proc.pid}/ns/net") == own:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                pytest.skip("cannot create a network namespace here")
            time.sleep(0.01)
        self.prefix: tuple[str, ...] = ("nsenter", "-t", str(self.proc.pid), "-n")
        subprocess.run([*self.prefix, "ip", "link", "set", "lo", "up"], check=True)

    def run(self, *command: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, *command], text=True, **kwargs)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> NetNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# What ``python -m agent serve --no-tray`` imports from the venv (the rest is the stdlib).
AGENT_RUNTIME_PACKAGES = ("websockets", "smartcard", "cryptography", "cffi", "pycparser",
                          "_cffi_backend.*")


def other_user_agent_command(home: Path, *args: str) -> list[str]:
    """``eid-agent serve`` as the other OS user with the system Python. The checkout and the
    venv may be unreadable by that user (a clone in a 0700 folder, as CI makes), so the
    agent, the tray package, the validator and the few venv packages it needs are copied once into a
    world-readable folder, and ``PYTHONPATH`` points there."""
    tree = _readable_runtime()
    env = [
        f"PYTHONPATH={tree}", f"HOME={home}", f"XDG_CONFIG_HOME={home}/config",
        f"XDG_STATE_HOME={home}/state", f"EID_AGENT_POLICY_FILE={home}/no-policy.json",
        "EID_AGENT_ALLOW_SCRIPTED=1",
    ]
    return ["runuser", "-u", OTHER_USER, "--", "env", "-i", *env, SYSTEM_PYTHON, "-m", "agent",
            "--log-level", "INFO", "serve", "--no-tray", *args]


_RUNTIME: list[Path] = []


def _readable_runtime() -> Path:
    if _RUNTIME:
        return _RUNTIME[0]
    import atexit
    import tempfile

    site = Path(next(p for p in sys.path if p.endswith("site-packages") and ".venv" in p))
    root = Path(__file__).resolve().parent.parent
    tree = Path(tempfile.mkdtemp(prefix="eid-agent-other-user-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(root / "agent", tree / "agent", ignore=ignore)
    shutil.copytree(root / "tray", tree / "tray", ignore=ignore)  # tray.headless, the catalogs
    shutil.copytree(root / "validator" / "eid_validator", tree / "eid_validator", ignore=ignore)
    for pattern in AGENT_RUNTIME_PACKAGES:
        for path in site.glob(pattern):
            if path.is_dir():
                shutil.copytree(path, tree / path.name, ignore=ignore)
            else:
                shutil.copy2(path, tree / path.name)
    for path in (tree, *tree.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644 | (path.stat().st_mode & 0o111))
    atexit.register(shutil.rmtree, tree, ignore_errors=True)
    _RUNTIME.append(tree)
    return tree


@contextlib.contextmanager
def squat(netns: NetNamespace, host: str, port: int) -> Iterator[None]:
    """Another OS user (``nobody``) listening on one loopback address of ``port``."""
    family = "AF_INET6" if ":" in host else "AF_INET"
    code = (
        "import socket, time\n"
        f"s = socket.socket(socket.{family}); s.bind(({host!r}, {port})); s.listen()\n"
        "print('bound', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen([*netns.prefix, "runuser", "-u", OTHER_USER, "--", SYSTEM_PYTHON,
                             "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "bound"
        yield
    finally:
        proc.kill()
        proc.wait()
