"""Start the agent at login: a systemd user unit and an XDG autostart entry on Linux.

``install()`` writes ``~/.config/systemd/user/eid-agent.service`` (enabled for
``graphical-session.target`` by the same symlink ``systemctl --user enable`` makes) and
``~/.config/autostart/eid-agent.desktop``, both running ``eid-agent serve`` with the current
executable (the frozen binary, or ``python -m agent``). The desktop entry is marked to be
skipped by sessions that systemd manages, so one login starts one agent: systemd sessions
use the unit, other desktops the entry. ``uninstall()`` removes both. Both are idempotent.

On Windows and macOS the installer (MSI, pkg) owns autostart for every user; these
functions change nothing there and say so. The templates are ``packaging/linux/*.in``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "AutostartResult",
    "AutostartStatus",
    "agent_command",
    "desktop_entry_path",
    "install",
    "is_enabled",
    "status",
    "systemd_unit_path",
    "uninstall",
]

logger = logging.getLogger(__name__)

UNIT_NAME = "eid-agent.service"
DESKTOP_NAME = "eid-agent.desktop"
WANTED_BY = "graphical-session.target"
INSTALLER_MESSAGE = (
    "On {system}, the eid-agent installer starts the agent at logon for every user; "
    "ask your IT department or reinstall to change it."
)
_RUN_KEY = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Run"


@dataclass(frozen=True)
class AutostartResult:
    """What ``install``/``uninstall`` did."""

    supported: bool
    changed: bool
    message: str
    paths: tuple[Path, ...] = ()


@dataclass(frozen=True)
class AutostartStatus:
    """Whether the agent starts at login, and whether this user can change that here."""

    enabled: bool
    can_change: bool
    message: str


def _is_linux() -> bool:
    return sys.platform.startswith("linux")


def _system_name() -> str:
    return {"win32": "Windows", "darwin": "macOS"}.get(sys.platform, sys.platform)


def _config_home() -> Path:
    value = os.environ.get("XDG_CONFIG_HOME", "")
    return Path(value) if os.path.isabs(value) else Path.home() / ".config"


def systemd_unit_path() -> Path:
    return _config_home() / "systemd" / "user" / UNIT_NAME


def _wants_link() -> Path:
    return _config_home() / "systemd" / "user" / f"{WANTED_BY}.wants" / UNIT_NAME


def desktop_entry_path() -> Path:
    return _config_home() / "autostart" / DESKTOP_NAME


def agent_command(command: str = "serve") -> list[str]:
    """The command that runs this agent (``command``: its subcommand): the frozen binary, or
    this Python with ``-m agent``."""
    if getattr(sys, "frozen", False):
        return [sys.executable, command]
    return [sys.executable, "-m", "agent", command]


def _source_root() -> Path | None:
    """Folder to put on PYTHONPATH when not frozen (the parent of the ``agent`` package)."""
    if getattr(sys, "frozen", False):
        return None
    return Path(__file__).resolve().parents[2]


def _template(name: str) -> str:
    bases = [Path(getattr(sys, "_MEIPASS", "")), Path(__file__).resolve().parents[2]]
    for base in bases:
        path = base / "packaging" / "linux" / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise FileNotFoundError(f"autostart template {name} not found (packaging/linux/)")


def _needs_quotes(arg: str) -> bool:
    return not arg or any(c in arg for c in " \t\n\"'\\`$;&|<>()*?#~=%")


def _systemd_quote(arg: str, *, exec_line: bool = True) -> str:
    """One word of ExecStart (or Environment): C escapes, %% for specifiers, $$ in arguments."""
    arg = arg.replace("%", "%%")
    if exec_line:
        arg = arg.replace("$", "$$")
    if not _needs_quotes(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _desktop_quote(arg: str) -> str:
    """One argument of a desktop entry's Exec key (Desktop Entry Specification, "Exec")."""
    if _needs_quotes(arg):
        escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
        arg = f'"{escaped}"'
    # The key is a string value first: backslashes are doubled again; % is a field code.
    return arg.replace("\\", "\\\\").replace("%", "%%")


def render_unit(command: Sequence[str], pythonpath: Path | None) -> str:
    environment = ""
    if pythonpath is not None:
        value = _systemd_quote(f"PYTHONPATH={pythonpath}", exec_line=False)
        environment = f"Environment={value}\n"
    text = _template("eid-agent.service.in")
    # "$" is expanded in arguments only, not in the program path.
    words = [_systemd_quote(command[0], exec_line=False)]
    words += [_systemd_quote(a) for a in command[1:]]
    return text.replace("@EXEC@", " ".join(words)).replace("@ENVIRONMENT@", environment)


def render_desktop_entry(command: Sequence[str], pythonpath: Path | None) -> str:
    words = list(command)
    if pythonpath is not None:
        words = ["env", f"PYTHONPATH={pythonpath}", *words]
    return _template("eid-agent.desktop.in").replace(
        "@EXEC@", " ".join(_desktop_quote(w) for w in words)
    )


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


def _link_if_missing(link: Path, target: Path) -> bool:
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return False
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
    return True


def _reload_systemd() -> None:
    """Tell a running systemd user manager about the change; harmless when there is none."""
    systemctl = shutil.which("systemctl")
    if systemctl is None or not os.environ.get("XDG_RUNTIME_DIR"):
        return
    try:
        subprocess.run(
            [systemctl, "--user", "daemon-reload"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.debug("systemctl --user daemon-reload: %s", exc)


def _unsupported() -> AutostartResult:
    return AutostartResult(False, False, INSTALLER_MESSAGE.format(system=_system_name()))


def install(command: Sequence[str] | None = None) -> AutostartResult:
    """Start the agent at login for this user (Linux); idempotent."""
    if not _is_linux():
        return _unsupported()
    pythonpath = _source_root() if command is None else None
    command = list(command or agent_command())
    unit, desktop = systemd_unit_path(), desktop_entry_path()
    changed = _write_if_changed(unit, render_unit(command, pythonpath))
    changed |= _link_if_missing(_wants_link(), unit)
    changed |= _write_if_changed(desktop, render_desktop_entry(command, pythonpath))
    if changed:
        _reload_systemd()
        logger.info("autostart installed: %s, %s", unit, desktop)
    message = "eid-agent will start at login." if changed else "Autostart was already on."
    return AutostartResult(True, changed, message, (unit, desktop))


def uninstall() -> AutostartResult:
    """Stop starting the agent at login (Linux); idempotent. Settings and logs are kept."""
    if not _is_linux():
        return _unsupported()
    removed: list[Path] = []
    for path in (_wants_link(), systemd_unit_path(), desktop_entry_path()):
        if path.is_symlink() or path.exists():
            path.unlink()
            removed.append(path)
    if removed:
        _reload_systemd()
        logger.info("autostart removed: %s", ", ".join(map(str, removed)))
    message = "eid-agent will no longer start at login." if removed else "Autostart was off."
    return AutostartResult(True, bool(removed), message, tuple(removed))


def _windows_run_value() -> bool:
    """True when the MSI's per-machine Run value (or a per-user one) is present."""
    if sys.platform != "win32":
        return False
    import winreg

    for hive in (winreg.HKEY_LOCAL_MACHINE, winreg.HKEY_CURRENT_USER):
        try:
            with winreg.OpenKey(hive, _RUN_KEY) as key:
                winreg.QueryValueEx(key, "eid-agent")
                return True
        except OSError:
            continue
    return False


def status() -> AutostartStatus:
    """Autostart state for the tray's "Start at login" item."""
    if _is_linux():
        enabled = desktop_entry_path().is_file() or _wants_link().is_symlink()
        return AutostartStatus(enabled, True, "")
    message = INSTALLER_MESSAGE.format(system=_system_name())
    if sys.platform == "win32":
        return AutostartStatus(_windows_run_value(), False, message)
    launch_agent = Path("/Library/LaunchAgents/eid-agent.plist")
    return AutostartStatus(launch_agent.is_file(), False, message)


def is_enabled() -> bool:
    """True when the agent starts at login for this user."""
    return status().enabled
