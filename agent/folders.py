"""The user's settings and log folders on each platform (standard library only).

One rule for the resident agent (``agent.core.config``) and the Web eID host
(``agent.webeid.paths``), which must find the agent that uses the same settings folder;
``EID_AGENT_CONFIG_DIR`` overrides the settings folder (several agents side by side).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["APP_NAME", "CONFIG_DIR_ENV", "config_dir", "log_dir"]

APP_NAME = "eid-agent"
CONFIG_DIR_ENV = "EID_AGENT_CONFIG_DIR"


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def config_dir(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """Where the user's settings and approvals live (``EID_AGENT_CONFIG_DIR`` wins)."""
    env = os.environ if env is None else env
    if env.get(CONFIG_DIR_ENV):
        return Path(env[CONFIG_DIR_ENV])
    platform = platform or sys.platform
    if platform == "win32":
        base = env.get("APPDATA")
        return Path(base) / APP_NAME if base else _home(env) / "AppData" / "Roaming" / APP_NAME
    if platform == "darwin":
        return _home(env) / "Library" / "Application Support" / APP_NAME
    base = env.get("XDG_CONFIG_HOME")
    return (Path(base) if base else _home(env) / ".config") / APP_NAME


def log_dir(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """Where the agent writes its log files."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    if platform == "win32":
        base = env.get("LOCALAPPDATA")
        root = Path(base) if base else _home(env) / "AppData" / "Local"
        return root / APP_NAME / "logs"
    if platform == "darwin":
        return _home(env) / "Library" / "Logs" / APP_NAME
    base = env.get("XDG_STATE_HOME")
    return (Path(base) if base else _home(env) / ".local" / "state") / APP_NAME / "logs"
