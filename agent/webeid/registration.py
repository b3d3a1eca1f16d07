"""Register the host as ``eu.webeid`` with the browsers: manifests in each browser's folders.

Browsers find a native messaging host by name through a manifest file (Linux, macOS) or a
registry key pointing at one (Windows). The folders, per user and system wide, are those
of ``/work/shared/reference/webeid-native-messaging.md`` §1.3; ``docs/webeid.md`` lists
them. The manifests allow the Web eID extension's store IDs (Chrome Web Store, Edge
Add-ons, Firefox AMO) and any extra ``--extension-id``.

Another ``eu.webeid`` manifest at the same place (the official Web eID app's) is left alone
unless ``replace`` is asked: then it is kept as ``eu.webeid.json.eid-agent-backup`` next to
ours, and :func:`uninstall` puts it back. Ours is recognised by its ``description``.
On Windows the MSI registers the host (``docs/deploy.md``); this module writes the
per-user (HKCU) keys with ``winreg`` — untested here.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BROWSERS",
    "CHROME_STORE_IDS",
    "FIREFOX_ID",
    "HOST_NAME",
    "Outcome",
    "host_executable",
    "install",
    "locations",
    "manifest",
    "uninstall",
]

HOST_NAME = "eu.webeid"
MANIFEST_NAME = f"{HOST_NAME}.json"
BACKUP_SUFFIX = ".eid-agent-backup"
DESCRIPTION = "eid-agent: Web eID compatible host, backed by the resident agent"
CHROME_STORE_IDS = ("ncibgoaomkmdpilpocfeponihegamlic", "gnmckgbandlkacikdndelhfghdejfido")
"""Chrome Web Store and Edge Add-ons IDs of the Web eID extension."""
FIREFOX_ID = "{e68418bc-f2b0-4459-a9ea-3e72b6751b07}"
BROWSERS = ("chrome", "chromium", "edge", "firefox")
_CHROME_ID = re.compile(r"[a-p]{32}")
_FIREFOX_ID = re.compile(r"\{[0-9a-fA-F-]{36}\}|[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+")

_LINUX_USER = {
    "chrome": ".config/google-chrome/NativeMessagingHosts",
    "chromium": ".config/chromium/NativeMessagingHosts",
    "edge": ".config/microsoft-edge/NativeMessagingHosts",
    "firefox": ".mozilla/native-messaging-hosts",
}
_LINUX_SYSTEM = {
    "chrome": "/etc/opt/chrome/native-messaging-hosts",
    "chromium": "/etc/chromium/native-messaging-hosts",
    "edge": "/etc/opt/edge/native-messaging-hosts",
    "firefox": "/usr/lib/mozilla/native-messaging-hosts",
}
_MAC_USER = {
    "chrome": "Library/Application Support/Google/Chrome/NativeMessagingHosts",
    "chromium": "Library/Application Support/Chromium/NativeMessagingHosts",
    "edge": "Library/Application Support/Microsoft Edge/NativeMessagingHosts",
    "firefox": "Library/Application Support/Mozilla/NativeMessagingHosts",
}
_MAC_SYSTEM = {
    "chrome": "/Library/Google/Chrome/NativeMessagingHosts",
    "chromium": "/Library/Application Support/Chromium/NativeMessagingHosts",
    "edge": "/Library/Microsoft/Edge/NativeMessagingHosts",
    "firefox": "/Library/Application Support/Mozilla/NativeMessagingHosts",
}
_WIN_KEYS = {  # Edge reads Chrome's key too; Chromium-branded builds read Chrome's as a fallback
    "chrome": r"Software\Google\Chrome\NativeMessagingHosts",
    "chromium": r"Software\Chromium\NativeMessagingHosts",
    "edge": r"Software\Microsoft\Edge\NativeMessagingHosts",
    "firefox": r"Software\Mozilla\NativeMessagingHosts",
}


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def locations(
    browser: str, *, system: bool, env: Mapping[str, str] | None = None, platform: str | None = None
) -> list[Path]:
    """The manifest files a browser reads (POSIX), per user or system wide."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    if platform == "darwin":
        table = _MAC_SYSTEM if system else _MAC_USER
    else:
        table = _LINUX_SYSTEM if system else _LINUX_USER
    folder = Path(table[browser]) if system else _home(env) / table[browser]
    paths = [folder / MANIFEST_NAME]
    if system and browser == "firefox" and platform != "darwin":
        paths.append(Path("/usr/lib64/mozilla/native-messaging-hosts") / MANIFEST_NAME)
    return paths


def check_extension_id(value: str) -> str:
    if _CHROME_ID.fullmatch(value) or _FIREFOX_ID.fullmatch(value):
        return value
    raise ValueError(
        f"not an extension ID: {value!r} (Chrome/Edge: 32 letters a-p; Firefox: {{uuid}} or name@domain)"
    )


def manifest(browser: str, host_path: str, extension_ids: Sequence[str] = ()) -> dict[str, Any]:
    """The manifest for ``browser``: Chrome-family ``allowed_origins`` or Firefox ``allowed_extensions``."""
    data: dict[str, Any] = {
        "name": HOST_NAME,
        "description": DESCRIPTION,
        "path": host_path,
        "type": "stdio",
    }
    if browser == "firefox":
        extra = [i for i in extension_ids if _FIREFOX_ID.fullmatch(i)]
        data["allowed_extensions"] = list(dict.fromkeys([FIREFOX_ID, *extra]))
    else:
        extra = [i for i in extension_ids if _CHROME_ID.fullmatch(i)]
        data["allowed_origins"] = [
            f"chrome-extension://{i}/" for i in dict.fromkeys([*CHROME_STORE_IDS, *extra])
        ]
    return data


def host_executable(config_dir: Path | None = None) -> str:
    """The absolute path the manifests name.

    The frozen ``eid-agent-webeid-host`` next to this program, else the console script
    installed with this Python, else (a source checkout) a small launcher written into the
    settings folder that runs ``python -m agent.webeid.host``.
    """
    name = "eid-agent-webeid-host" + (".exe" if sys.platform == "win32" else "")
    if getattr(sys, "frozen", False):
        return str(Path(sys.executable).with_name(name))
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found:
        return str(Path(found).absolute())
    if sys.platform == "win32":  # pragma: no cover
        raise FileNotFoundError(f"{name} is not installed")
    from agent.webeid.paths import config_dir as default_config_dir

    folder = config_dir or default_config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    launcher = folder / "webeid-host"
    launcher.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -m agent.webeid.host "$@"\n', encoding="utf-8"
    )
    launcher.chmod(0o755)
    return str(launcher)


def _is_ours(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("description") == DESCRIPTION


def _describe(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return f"{path} (runs {data.get('path')})"
    except (OSError, ValueError):
        return str(path)


@dataclass
class Outcome:
    """What install/uninstall did, as lines for the user, and whether all went well."""

    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def say(self, line: str) -> None:
        self.lines.append(line)


def _selected(browsers: Iterable[str]) -> list[str]:
    chosen = list(browsers)
    return list(BROWSERS) if not chosen or "all" in chosen else chosen


def _others(browser: str, system: bool, env: Mapping[str, str] | None) -> list[Path]:
    """Foreign ``eu.webeid`` manifests at this browser's other level (shadowed or shadowing)."""
    return [p for p in locations(browser, system=not system, env=env) if p.exists() and not _is_ours(p)]


def install(
    *,
    system: bool = False,
    browsers: Iterable[str] = (),
    extension_ids: Sequence[str] = (),
    replace: bool = False,
    host_path: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """Write the manifests; a foreign manifest in the way is replaced only with ``replace``."""
    outcome = Outcome()
    if sys.platform == "win32":  # pragma: no cover
        return _install_windows(system, _selected(browsers), extension_ids, replace, host_path, outcome)
    host = host_path or host_executable()
    for browser in _selected(browsers):
        for path in locations(browser, system=system, env=env)[:1]:
            if path.exists() or path.is_symlink():
                if not _is_ours(path):
                    if not replace:
                        outcome.ok = False
                        outcome.say(
                            f"{browser}: another eu.webeid host is registered: {_describe(path)}; "
                            "left alone (use --replace to replace it; uninstall restores it)"
                        )
                        continue
                    backup = path.with_name(path.name + BACKUP_SUFFIX)
                    os.replace(path, backup)
                    outcome.say(f"{browser}: replaced {_describe(backup)}; kept as {backup}")
            path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(manifest(browser, host, extension_ids), indent=2) + "\n"
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text(text, encoding="utf-8")
            temporary.chmod(0o644)
            os.replace(temporary, path)
            outcome.say(f"{browser}: {path}")
        for other in _others(browser, system, env):
            if system:
                outcome.say(f"{browser}: note: a per-user eu.webeid host is registered too, and wins for "
                            f"its user: {_describe(other)}")
            else:
                outcome.say(f"{browser}: note: the system-wide eu.webeid host {_describe(other)} stays; "
                            "ours takes precedence for this user (unless policy disables per-user hosts)")
    return outcome


def uninstall(
    *, system: bool = False, browsers: Iterable[str] = (), env: Mapping[str, str] | None = None
) -> Outcome:
    """Remove our manifests and put back what ``install --replace`` kept."""
    outcome = Outcome()
    if sys.platform == "win32":  # pragma: no cover
        return _uninstall_windows(system, _selected(browsers), outcome)
    for browser in _selected(browsers):
        for path in locations(browser, system=system, env=env)[:1]:
            backup = path.with_name(path.name + BACKUP_SUFFIX)
            if (path.exists() or path.is_symlink()) and not _is_ours(path):
                outcome.say(f"{browser}: {path} is not ours; left alone")
                continue
            if path.exists():
                path.unlink()
                outcome.say(f"{browser}: removed {path}")
            if backup.exists() or backup.is_symlink():
                os.replace(backup, path)
                outcome.say(f"{browser}: restored {_describe(path)}")
    return outcome


# --- Windows (untested here: the MSI is the supported way) --------------------------------


def _install_windows(  # pragma: no cover
    system: bool, browsers: list[str], extension_ids: Sequence[str], replace: bool,
    host_path: str | None, outcome: Outcome,
) -> Outcome:
    winreg: Any = importlib.import_module("winreg")

    host = host_path or host_executable()
    folder = Path(host).parent if system else Path(os.environ.get("LOCALAPPDATA", ".")) / "eid-agent"
    hive = winreg.HKEY_LOCAL_MACHINE if system else winreg.HKEY_CURRENT_USER
    for browser in browsers:
        target = folder / (f"{HOST_NAME}.firefox.json" if browser == "firefox" else MANIFEST_NAME)
        key_path = _WIN_KEYS[browser] + "\\" + HOST_NAME
        previous = _read_default(hive, key_path)
        if previous and Path(previous) != target:
            if not replace:
                outcome.ok = False
                outcome.say(f"{browser}: another eu.webeid host is registered: {previous}; left alone "
                            "(use --replace)")
                continue
            with winreg.CreateKey(hive, key_path) as key:
                winreg.SetValueEx(key, "eid-agent-backup", 0, winreg.REG_SZ, previous)
        folder.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(manifest(browser, host, extension_ids), indent=2), encoding="utf-8")
        with winreg.CreateKey(hive, key_path) as key:
            winreg.SetValueEx(key, "", 0, winreg.REG_SZ, str(target))
        outcome.say(f"{browser}: {key_path} -> {target}")
    return outcome


def _read_default(hive: Any, key_path: str, name: str = "") -> str | None:  # pragma: no cover
    winreg: Any = importlib.import_module("winreg")

    try:
        with winreg.OpenKey(hive, key_path) as key:
            value, _kind = winreg.QueryValueEx(key, name)
            return str(value)
    except OSError:
        return None


def _uninstall_windows(system: bool, browsers: list[str], outcome: Outcome) -> Outcome:  # pragma: no cover
    winreg: Any = importlib.import_module("winreg")

    hive = winreg.HKEY_LOCAL_MACHINE if system else winreg.HKEY_CURRENT_USER
    for browser in browsers:
        key_path = _WIN_KEYS[browser] + "\\" + HOST_NAME
        current = _read_default(hive, key_path)
        if current is None or not _is_ours(Path(current)):
            continue
        backup = _read_default(hive, key_path, "eid-agent-backup")
        if backup:
            with winreg.CreateKey(hive, key_path) as key:
                winreg.SetValueEx(key, "", 0, winreg.REG_SZ, backup)
                winreg.DeleteValue(key, "eid-agent-backup")
            outcome.say(f"{browser}: restored {backup}")
        else:
            winreg.DeleteKey(hive, key_path)
            outcome.say(f"{browser}: removed {key_path}")
    return outcome
