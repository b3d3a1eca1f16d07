"""Machine policy: what an administrator decided for every user of this computer.

Keys (the MSI writes the same names; keep them exactly):

* ``AllowedOrigins``: list of origins allowed without asking the user.
* ``Port``: the WebSocket port.
* ``AllowUserApproval``: may users approve other sites themselves? (default true)
* ``LogLevel``: ``TRAFFIC``, ``DEBUG``, ``INFO``, ...

Where: Linux ``/etc/eid-agent/policy.json`` (``EID_AGENT_POLICY_FILE`` overrides the path,
for tests), macOS ``/Library/Application Support/eid-agent/policy.json``, Windows the
registry key ``HKLM\\SOFTWARE\\Policies\\eid-agent`` (REG_MULTI_SZ ``AllowedOrigins``, REG_DWORD
``Port`` and ``AllowUserApproval``, REG_SZ ``LogLevel``). Machine policy overrides user
settings. A policy that cannot be read is logged and ignored key by key, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MachinePolicy",
    "POLICY_ENV",
    "REGISTRY_KEY",
    "load_policy",
    "parse_policy",
    "policy_file",
]

logger = logging.getLogger(__name__)

POLICY_ENV = "EID_AGENT_POLICY_FILE"
REGISTRY_KEY = r"SOFTWARE\Policies\eid-agent"
_LINUX_FILE = Path("/etc/eid-agent/policy.json")
_MACOS_FILE = Path("/Library/Application Support/eid-agent/policy.json")


@dataclass(frozen=True)
class MachinePolicy:
    """The administrator's settings; ``None`` means "not set, use the user's or the default"."""

    allowed_origins: tuple[str, ...] = ()
    port: int | None = None
    allow_user_approval: bool = True
    log_level: str | None = None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    return None


def parse_policy(data: Mapping[str, Any]) -> MachinePolicy:
    """Build a policy from raw key/values (JSON or registry); bad values are skipped."""
    origins: tuple[str, ...] = ()
    raw_origins = data.get("AllowedOrigins")
    if isinstance(raw_origins, str):
        raw_origins = [raw_origins]
    if isinstance(raw_origins, list | tuple):
        # An MSI property cannot be a multi-string: the installer writes REG_SZ with origins
        # separated by spaces or semicolons. Accept that form in every item.
        origins = tuple(
            origin
            for item in raw_origins
            if isinstance(item, str)
            for origin in re.split(r"[\s;]+", item)
            if origin
        )
    elif raw_origins is not None:
        logger.warning("policy: AllowedOrigins is not a list, ignored")

    port = data.get("Port")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
    ):
        logger.warning("policy: Port %r is not a TCP port, ignored", port)
        port = None

    allow = True
    if "AllowUserApproval" in data:
        parsed = _as_bool(data["AllowUserApproval"])
        if parsed is None:
            logger.warning("policy: AllowUserApproval is not a boolean, ignored")
        else:
            allow = parsed

    level = data.get("LogLevel")
    if level is not None and not isinstance(level, str):
        logger.warning("policy: LogLevel is not a string, ignored")
        level = None
    return MachinePolicy(
        allowed_origins=origins, port=port, allow_user_approval=allow, log_level=level
    )


def policy_file() -> Path | None:
    """The policy file for this platform (None on Windows, which uses the registry)."""
    override = os.environ.get(POLICY_ENV)
    if override:
        return Path(override)
    if sys.platform == "win32":
        return None
    if sys.platform == "darwin":
        return _MACOS_FILE
    return _LINUX_FILE


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        logger.warning("policy: cannot read %s: %s", path, exc)
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        logger.error("policy: %s is not valid JSON (%s); ignoring the machine policy", path, exc)
        return {}
    if not isinstance(data, dict):
        logger.error("policy: %s is not a JSON object; ignoring the machine policy", path)
        return {}
    return data


def _read_registry() -> dict[str, Any]:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        return {}
    import winreg

    values: dict[str, Any] = {}
    try:
        key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, REGISTRY_KEY)
    except OSError:
        return values
    with key:
        for name in ("AllowedOrigins", "Port", "AllowUserApproval", "LogLevel"):
            try:
                value, _type = winreg.QueryValueEx(key, name)
            except OSError:
                continue
            values[name] = value
    return values


def load_policy() -> MachinePolicy:
    """Read the machine policy of this platform (an empty policy when there is none)."""
    path = policy_file()
    data = _read_registry() if path is None else _read_file(path)
    policy = parse_policy(data)
    if data:
        logger.info(
            "machine policy: %d allowed origins, port %s, user approval %s",
            len(policy.allowed_origins),
            policy.port,
            "allowed" if policy.allow_user_approval else "disabled",
        )
    return policy
