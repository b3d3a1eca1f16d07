"""A squatted port is told to the user visibly: the tray's desktop notification.

Real ``eid-agent serve`` with its tray icon under Xvfb + trayer in a D-Bus session, inside a
private network namespace where another OS user holds ``[::1]:24847``. The agent moves to the
next slot and sends the desktop notification (``org.freedesktop.Notifications.Notify``, seen
by ``dbus-monitor`` on the session bus) naming the held address.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent.core.control import Notice
from agent.ws.ports import SLOT_BASE
from tests.e2e.test_tray import needs_x, wait_for, x_display  # noqa: F401
from tests.peer_support import NetNamespace, require_other_user, squat
from tests.tray_fakes import FakeControl
from tray.icon import TrayApp

ROOT = Path(__file__).resolve().parents[2]


def test_start_notices_are_shown_once_the_icon_is_up() -> None:
    class Icon:
        HAS_NOTIFICATION = True
        visible = False

        def __init__(self) -> None:
            self.notes: list[tuple[str, str]] = []

        def notify(self, message: str, title: str) -> None:
            assert self.visible
            self.notes.append((title, message))

    app = TrayApp(FakeControl(), None, lang="fr")
    app.notify_on_start(Notice.PORT_TAKEN, "[::1]:24847")
    icon = Icon()
    app._icon = icon
    app._setup(icon)
    assert icon.notes == [("Un autre programme occupe le port de l'agent", "[::1]:24847")]


@pytest.mark.pcsc
@needs_x
def test_squatted_port_shows_a_desktop_notification(x_display, pcscd, tmp_path) -> None:  # noqa: F811
    require_other_user()
    monitor_log = tmp_path / "notifications.txt"
    env = pcscd.env()
    for name in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"):
        env.pop(name, None)
    env.update(DISPLAY=x_display, PYSTRAY_BACKEND="gtk", HOME=str(tmp_path),
               XDG_RUNTIME_DIR=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_STATE_HOME=str(tmp_path / "state"), NO_AT_BRIDGE="1", LANG="C.UTF-8",
               EID_AGENT_POLICY_FILE=str(tmp_path / "no-policy.json"))
    script = (
        f"dbus-monitor --session \"interface='org.freedesktop.Notifications'\" > {monitor_log} &"
        " sleep 1; exec \"$@\""
    )
    with NetNamespace() as netns, squat(netns, "::1", SLOT_BASE):
        proc = subprocess.Popen(
            [*netns.prefix, "dbus-run-session", "--", "sh", "-c", script, "sh",
             sys.executable, "-m", "agent", "--log-level", "INFO", "serve",
             "--interaction", "none"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        lines: list[str] = []

        def read() -> None:
            assert proc.stdout is not None
            lines.extend(proc.stdout)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            wait_for(lambda: any("notice port-taken" in line for line in lines),
                     "the tray's port notice", timeout=60)
            wait_for(lambda: "[::1]:24847" in monitor_log.read_text(errors="replace"),
                     "the Notify call on the session bus", timeout=30)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            reader.join(5)
    output = "".join(lines)
    calls = monitor_log.read_text(errors="replace")
    assert f"listening on ws://127.0.0.1:{SLOT_BASE + 2}" in output, output
    assert "member=Notify" in calls
    assert "Another program holds the agent's port" in calls
    assert f"another program holds [::1]:{SLOT_BASE}" in calls
