"""Build the one-folder frozen agent with PyInstaller and smoke-test it.

Slow (a full PyInstaller build, ~30-60 s on 2 cores). Prints the binary's size and its
start-to-serving time for the benchmark table. ``EID_AGENT_FROZEN_DIR`` may name an existing
build (dist/eid-agent) to test instead of building one.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from eid_emulator.pcscd import PrivatePcscd

from agent import __version__
from tests.agent_process import free_port
from tests.conftest import READER_0, READER_1
from tests.e2e import test_dialogs_xvfb as xvfb
from tests.e2e.test_dialogs_xvfb import PIN as XVFB_PIN
from tests.e2e.test_dialogs_xvfb import pin_request, type_into, visible_window, xdotool
from tray.interaction import DialogInteraction

pytestmark = pytest.mark.slow
display = xvfb.display  # the private Xvfb fixture

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "packaging" / "pyinstaller" / "eid-agent.spec"
EXE_NAME = "eid-agent.exe" if sys.platform == "win32" else "eid-agent"


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def frozen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("EID_AGENT_FROZEN_DIR")
    if given:
        return Path(given)
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("pyinstaller is not installed")
        pytest.skip("pyinstaller is not installed (pip install pyinstaller)")
    work = tmp_path_factory.mktemp("pyinstaller")
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
            "--distpath", str(work / "dist"), "--workpath", str(work / "build"), str(SPEC),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = work / "dist" / "eid-agent"
    size = _folder_size(folder)
    print(f"\n[bench] pyinstaller build {time.monotonic() - started:.1f} s; one-folder size "
          f"{size / 2**20:.1f} MiB ({sum(1 for _ in folder.rglob('*'))} entries); executable "
          f"{(folder / EXE_NAME).stat().st_size / 2**10:.0f} KiB")
    return folder


@pytest.fixture
def exe(frozen_dir: Path) -> Path:
    path = frozen_dir / EXE_NAME
    assert path.is_file(), f"{path} missing"
    return path


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISPLAY")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_STATE_HOME=str(home / "state"),
        EID_AGENT_POLICY_FILE=str(home / "no-policy.json"),
    )
    return env


def test_version(exe: Path, tmp_path: Path) -> None:
    done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=_clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"eid-agent {__version__}"


def test_bundled_data(frozen_dir: Path) -> None:
    internal = frozen_dir / "_internal"
    for lang in ("de", "en", "fr", "nl"):
        assert (internal / "tray" / "locale" / lang / "LC_MESSAGES" / "eid-agent.mo").is_file()
    assert (internal / "clients" / "js" / "eid-agent.js").is_file()
    assert (internal / "packaging" / "linux" / "eid-agent.service.in").is_file()
    qt = internal / "PySide6"
    for module in ("QtCore", "QtGui", "QtWidgets"):
        assert any(qt.glob(f"{module}.*")), f"PySide6.{module} missing"
    # Only the three Qt modules the dialogs use are bundled.
    for unused in ("QtQml", "QtQuick", "QtWebEngineCore", "QtMultimedia", "QtSql"):
        assert not any(qt.glob(f"{unused}.*")), f"PySide6.{unused} should be excluded"


def test_runs_bundled_modules_only(exe: Path, tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    done = subprocess.run([exe, "-m", "agent", "--version"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"eid-agent {__version__}"
    done = subprocess.run([exe, "-m", "http.server"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 2 and "only bundled modules" in done.stderr


def test_frozen_dialog_process(exe: Path, tmp_path: Path) -> None:
    """``eid-agent --dialogs`` is the Qt dialog process: Qt and its platform plugin load."""
    env = {**_clean_env(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
    requests = [
        {"id": 1, "type": "no-such-dialog"},
        {"id": 2, "type": "consent-site", "origin": "https://portal.example", "timeout": 30},
        {"id": 2, "type": "cancel"},
    ]
    proc = subprocess.Popen([exe, "--dialogs"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        replies = []
        for request in requests:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            if request["type"] != "consent-site":  # it waits for the user, or a cancel
                replies.append(json.loads(proc.stdout.readline()))
        proc.stdin.close()
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert replies[0]["id"] == 1 and replies[0]["result"] == "error"
    assert {r["result"] for r in replies[1:]} <= {"closed", "cancel"}
    assert all(r["id"] == 2 for r in replies[1:])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux autostart")
def test_frozen_autostart_points_at_the_binary(exe: Path, tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    env.pop("XDG_RUNTIME_DIR", None)
    done = subprocess.run([exe, "install-autostart"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    unit = (tmp_path / "config" / "systemd" / "user" / "eid-agent.service").read_text()
    assert f"ExecStart={exe} serve\n" in unit
    assert "PYTHONPATH" not in unit
    desktop = (tmp_path / "config" / "autostart" / "eid-agent.desktop").read_text()
    assert f"Exec={exe} serve\n" in desktop
    done = subprocess.run([exe, "uninstall-autostart"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 0
    assert not (tmp_path / "config" / "autostart" / "eid-agent.desktop").exists()


class FrozenAgent:
    """The frozen binary running ``serve`` against the private pcscd."""

    def __init__(self, exe: Path, pcscd: PrivatePcscd, home: Path) -> None:
        self.port = free_port()
        env = {**_clean_env(home), **{k: v for k, v in pcscd.env().items()
                                      if k == "PCSCLITE_CSOCK_NAME"}}
        self.started = time.monotonic()
        self.serving_after: float | None = None
        self.proc = subprocess.Popen(
            [exe, "--log-level", "INFO", "serve", "--port", str(self.port), "--no-tray",
             "--interaction", "none", "--allow-origin", "http://localhost",
             "--allow-http-loopback",
             # leave the machine's trust stores alone (Windows would ask to confirm)
             "--trust-store", "none"],
            env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "listening on ws://" in line and not self._listening.is_set():
                self.serving_after = time.monotonic() - self.started
                self._listening.set()
        self._listening.set()

    def wait_listening(self) -> None:
        assert self._listening.wait(60), "no 'listening' line in 60 s"
        assert self.proc.poll() is None, "the agent exited:\n" + "".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


@pytest.fixture
def frozen_agent(exe: Path, pcscd: PrivatePcscd, tmp_path: Path) -> Iterator[FrozenAgent]:
    agent = FrozenAgent(exe, pcscd, tmp_path)
    try:
        yield agent
    finally:
        agent.stop()


async def _status(port: int) -> dict[str, object]:
    async with websockets.connect(f"ws://127.0.0.1:{port}", origin="http://localhost") as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert reply.get("id") == 1, reply
    assert "result" in reply, reply
    return reply["result"]


@pytest.mark.pcsc
def test_frozen_agent_serves_status(frozen_agent: FrozenAgent) -> None:
    frozen_agent.wait_listening()
    status = asyncio.run(_status(frozen_agent.port))
    assert status["version"] == __version__
    assert status["approved"] is True
    names = [r["name"] for r in status["readers"]]  # type: ignore[attr-defined]
    assert READER_0 in names and READER_1 in names, status
    print(f"\n[bench] frozen agent: start to serving {frozen_agent.serving_after:.2f} s")


def _archive_modules(executable: Path) -> set[str]:
    viewer = Path(sys.executable).with_name("pyi-archive_viewer")
    listing = subprocess.run([viewer, "-r", "-b", executable], capture_output=True, text=True,
                             timeout=120, check=True).stdout
    return {line.strip() for line in listing.splitlines()}


def _dev_modules(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in ("eid_emulator", "tests", "bench", "examples"))


def test_no_emulator_or_test_code_in_the_archive(exe: Path) -> None:
    """What users install carries no card emulator, test PKI, OCSP test responder or tests."""
    modules = _archive_modules(exe)
    assert "agent.app.cli" in modules and "eid_validator.der" in modules  # the listing is real
    assert _dev_modules(modules) == []


def test_webeid_host_archive_is_small_and_clean(frozen_dir: Path) -> None:
    """The frozen eid-agent-webeid-host collects its own stdlib-only analysis: no emulator or
    test code, and no Qt, pyscard or websockets (it starts once per browser action)."""
    modules = _archive_modules(frozen_dir / "eid-agent-webeid-host")
    assert "agent.webeid.host" in modules  # the listing is real
    assert _dev_modules(modules) == []
    heavy = sorted(m for m in modules if m.split(".")[0] in ("PySide6", "smartcard", "websockets", "tray"))
    assert heavy == []


def test_frozen_webeid_host_speaks_the_native_framing(frozen_dir: Path, tmp_path: Path) -> None:
    """eid-agent-webeid-host: a console executable next to eid-agent; version frame first,
    one command, one reply; a bad origin is refused without looking for the agent."""
    import json
    import struct

    host = frozen_dir / "eid-agent-webeid-host"
    assert host.is_file()
    env = _clean_env(tmp_path) | {"EID_AGENT_CONFIG_DIR": str(tmp_path / "cfg"), "TMPDIR": str(tmp_path)}
    request = json.dumps({"command": "authenticate", "arguments": {
        "challengeNonce": "A" * 44, "origin": "http://portal.example"}}).encode()
    started = time.monotonic()
    done = subprocess.run([host, "chrome-extension://ncibgoaomkmdpilpocfeponihegamlic/"],
                          input=struct.pack("=I", len(request)) + request, capture_output=True,
                          timeout=60, cwd=frozen_dir, env=env)
    elapsed = time.monotonic() - started
    frames = []
    data = done.stdout
    while data:
        (size,) = struct.unpack("=I", data[:4])
        frames.append(json.loads(data[4:4 + size]))
        data = data[4 + size:]
    assert frames[0]["version"].startswith("2.")
    assert frames[1]["error"]["code"] == "ERR_WEBEID_NATIVE_INVALID_ARGUMENT"
    print(f"\n[bench] frozen eid-agent-webeid-host: one whole action {elapsed * 1000:.0f} ms")


@pytest.mark.pcsc
def test_frozen_host_starts_the_frozen_agent(frozen_dir: Path, pcscd: PrivatePcscd, tmp_path: Path) -> None:
    """No agent running: the frozen host's ``quit`` answers {} and starts the eid-agent next
    to it, detached; that agent then serves the host's channel."""
    import signal
    import socket
    import struct
    import tempfile

    from agent.webeid import paths
    from tests.agent_process import free_port, wait_until

    short = Path(tempfile.mkdtemp(prefix="wz"))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"Port": free_port()}), encoding="utf-8")
    env = _clean_env(tmp_path) | pcscd.env() | {
        "EID_AGENT_CONFIG_DIR": str(short / "config"), "TMPDIR": str(short), "XDG_RUNTIME_DIR": "",
        "EID_AGENT_POLICY_FILE": str(policy)}
    env.pop("PYTHONPATH", None)
    env.pop("DISPLAY", None)
    request = json.dumps({"command": "quit", "arguments": {}}).encode()
    done = subprocess.run([frozen_dir / "eid-agent-webeid-host", "chrome-extension://x/"],
                          input=struct.pack("=I", len(request)) + request, capture_output=True,
                          timeout=60, cwd=frozen_dir, env=env)
    assert done.stdout.endswith(struct.pack("=I", 2) + b"{}")
    path = paths.channel_path(short / "config", env)
    wait_until(lambda: os.path.exists(path), 60)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
    try:
        assert Path(os.readlink(f"/proc/{pid}/exe")) == (frozen_dir / EXE_NAME).resolve()
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not os.path.exists(path), 15)


@pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                    reason="needs Xvfb and xdotool")
@pytest.mark.parametrize("lang", ["en", "fr"])
def test_frozen_pin_dialog_on_x(exe: Path, display: str, tmp_path: Path, lang: str) -> None:
    """The trimmed build's dialog process shows the real Qt PIN dialog on an X server (xcb
    platform plugin, fonts, the catalog of the language): digits typed with xdotool come
    back to the caller, and the PIN is not in the dialog process's log."""
    log = tmp_path / "dialogs.log"
    env = {**_clean_env(tmp_path), "DISPLAY": display, "QT_QPA_PLATFORM": "xcb",
           "XDG_RUNTIME_DIR": str(tmp_path)}
    env.pop("WAYLAND_DISPLAY", None)

    async def scenario() -> None:
        ui = DialogInteraction(command=[str(exe), "--dialogs"], env=env, stderr_path=log, lang=lang)
        try:
            task = asyncio.ensure_future(ui.ask_pin(pin_request(tries=2)))
            window = await visible_window(display, ui)
            title = await asyncio.to_thread(xdotool, display, "getwindowname", window)
            assert title.strip(), "the dialog window has no title"
            await type_into(display, window, text=XVFB_PIN)
            await type_into(display, window, "Return")
            assert await asyncio.wait_for(task, 30) == XVFB_PIN
        finally:
            await ui.aclose()

    asyncio.run(scenario())
    text = log.read_text()
    assert "pin dialog opened" in text, text
    assert XVFB_PIN not in text
    assert "Traceback" not in text, text
