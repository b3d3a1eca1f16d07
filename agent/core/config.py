"""The core's settings and the per-user folders it keeps them in.

Folders: Linux ``$XDG_CONFIG_HOME/eid-agent`` and ``$XDG_STATE_HOME/eid-agent/logs``
(falling back to ``~/.config`` and ``~/.local/state``), Windows ``%APPDATA%\\eid-agent`` and
``%LOCALAPPDATA%\\eid-agent\\logs``, macOS ``~/Library/Application Support/eid-agent`` and
``~/Library/Logs/eid-agent``. Machine policy (:mod:`agent.core.policy`) overrides the user's port
and log level.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from agent import __version__, folders
from agent.core.policy import MachinePolicy, load_policy
from agent.folders import APP_NAME, CONFIG_DIR_ENV

__all__ = [
    "APP_NAME",
    "CONFIG_DIR_ENV",
    "DEFAULT_PORT",
    "DEFAULT_INTERACTION_TIMEOUT",
    "AgentConfig",
    "default_config_dir",
    "default_log_dir",
]

DEFAULT_PORT = 24847
DEFAULT_INTERACTION_TIMEOUT = 120.0
APP_VERSION_URL = "https://github.com/eid-agent/eid-agent/releases/"


default_config_dir = folders.config_dir
default_log_dir = folders.log_dir


@dataclass(frozen=True)
class AgentConfig:
    """Everything the core needs to know that is not a reader, a card or a dialog.

    Attributes:
        port: the WebSocket port (machine policy wins over the user's choice).
        config_dir: the user's settings folder (``approved-origins.json`` lives here).
        log_dir: where log files go.
        policy: the machine policy.
        interaction_timeout: the longest the agent waits for the user, in seconds; a page may
            ask for less, never for more.
        reask_wrong_pin: after a wrong PIN, show the PIN dialog again with the tries left
            (the user decides whether to try again); False fails the request at once.
        identify_cards: read a newly inserted card's type, holder and serial for the tray and
            for approved pages (no origin is involved in this read).
        log_level: the user's log level (machine policy wins).
    """

    port: int = DEFAULT_PORT
    config_dir: Path = field(default_factory=default_config_dir)
    log_dir: Path = field(default_factory=default_log_dir)
    policy: MachinePolicy = field(default_factory=MachinePolicy)
    interaction_timeout: float = DEFAULT_INTERACTION_TIMEOUT
    reask_wrong_pin: bool = True
    identify_cards: bool = True
    log_level: str = "INFO"
    version: str = __version__

    @property
    def app_version(self) -> str:
        """The ``appVersion`` URL of authentication tokens."""
        return f"{APP_VERSION_URL}{self.version}"

    @property
    def approvals_file(self) -> Path:
        return self.config_dir / "approved-origins.json"

    @property
    def effective_log_level(self) -> str:
        return self.policy.log_level or self.log_level

    def timeout(self, requested: float | None) -> float:
        """The timeout for one user interaction: the page's, capped at the agent's maximum."""
        if requested is None or requested <= 0:
            return self.interaction_timeout
        return min(float(requested), self.interaction_timeout)

    @classmethod
    def load(cls, *, policy: MachinePolicy | None = None, **overrides: object) -> AgentConfig:
        """The configuration for this user on this platform, with machine policy applied."""
        policy = load_policy() if policy is None else policy
        config = cls(policy=policy)
        if overrides:
            config = replace(config, **overrides)  # type: ignore[arg-type]
        if policy.port is not None:
            config = replace(config, port=policy.port)
        return config
