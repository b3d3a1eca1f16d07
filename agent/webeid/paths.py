"""Where the agent's per-user Web eID channel lives; standard library only (the host uses it).

The channel is a Unix socket ``webeid.sock`` in a private folder (0700, owned by the user):
``$XDG_RUNTIME_DIR/eid-agent`` when the session has one, else ``<tmp>/eid-agent-<uid>``
(``<tmp>`` is ``$TMPDIR`` or ``/tmp``; on macOS ``$TMPDIR`` is already per user). An agent
with another settings folder (``EID_AGENT_CONFIG_DIR``) gets its own channel: the folder
name carries a short hash of the settings path, so several agents can run side by side.
The same holds for a settings folder moved by ``XDG_CONFIG_HOME``.

:func:`config_dir` is :func:`agent.folders.config_dir`, the agent's own rule (standard library
only, so the host does not import the core).
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from agent.folders import APP_NAME, CONFIG_DIR_ENV, config_dir

__all__ = [
    "CONFIG_DIR_ENV",
    "SOCKET_NAME",
    "UnsafeChannelError",
    "channel_dir",
    "channel_path",
    "check_private_dir",
    "config_dir",
    "make_private_dir",
]

SOCKET_NAME = "webeid.sock"


class UnsafeChannelError(OSError):
    """The channel's folder is not private to this user (owner, mode, or a symlink)."""


def _suffix(config: Path, env: Mapping[str, str]) -> str:
    """Empty for the user's plain default settings folder, else ``-<hash>`` of the folder's path
    (a moved ``XDG_CONFIG_HOME`` counts as moved: test agents with their own HOME and XDG
    folders then get their own channels too)."""
    plain = {k: v for k, v in env.items() if k in ("HOME", "APPDATA")}
    default = config_dir(plain)
    if Path(config).absolute() == default.absolute():
        return ""
    digest = hashlib.sha256(str(Path(config).absolute()).encode("utf-8")).hexdigest()
    return "-" + digest[:12]


def channel_dir(config: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The private folder holding the socket (POSIX), for the agent using settings ``config``."""
    env = os.environ if env is None else env
    suffix = _suffix(config_dir(env) if config is None else config, env)
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / f"{APP_NAME}{suffix}"
    base = env.get("TMPDIR") or tempfile.gettempdir()
    return Path(base) / f"{APP_NAME}-{os.getuid()}{suffix}"


def channel_path(config: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """The socket path (POSIX) or the pipe name (Windows) of the agent's Web eID channel."""
    env = os.environ if env is None else env
    if sys.platform == "win32":
        suffix = _suffix(config_dir(env) if config is None else config, env)
        user = env.get("USERNAME", "user").replace("\\", "_")
        return rf"\\.\pipe\{APP_NAME}-webeid-{user}{suffix}"
    return str(channel_dir(config, env) / SOCKET_NAME)


def check_private_dir(path: Path) -> None:
    """Raise :class:`UnsafeChannelError` unless ``path`` is a real folder of this user, 0700."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeChannelError(f"{path} is not a folder (or is a symlink)")
    if info.st_uid != os.getuid():
        raise UnsafeChannelError(f"{path} belongs to another user")
    if info.st_mode & 0o077:
        raise UnsafeChannelError(f"{path} is open to other users (mode {info.st_mode & 0o777:o})")


def make_private_dir(path: Path) -> None:
    """Create ``path`` 0700 (parents as needed) or check an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    check_private_dir(path)
