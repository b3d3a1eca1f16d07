"""The interface the tray (and any other local UI) uses to see and steer the agent core.

The tray imports this module only; it never touches cards, PC/SC or sockets. The core
(:mod:`agent.core`) implements :class:`AgentControl`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class AgentState(enum.Enum):
    NO_READER = "no-reader"
    NO_CARD = "no-card"  # "insert your card"
    READY = "ready"
    BUSY = "busy"
    ERROR = "error"


@dataclass(frozen=True)
class CardSummary:
    reader: str
    card_type: str | None  # None until the card was identified
    holder_first_name: str | None = None
    holder_name: str | None = None
    serial: str | None = None
    pin_blocked: bool = False


@dataclass(frozen=True)
class ReaderSummary:
    name: str
    card: CardSummary | None
    pinpad: bool = False


@dataclass(frozen=True)
class Snapshot:
    state: AgentState
    readers: tuple[ReaderSummary, ...] = field(default_factory=tuple)
    connected_origins: tuple[str, ...] = field(default_factory=tuple)
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)  # approved by the user
    policy_origins: tuple[str, ...] = field(default_factory=tuple)  # allowed by machine policy
    error: str | None = None
    version: str = ""
    port: int = 0


class Notice(enum.Enum):
    CARD_INSERTED = "card-inserted"
    CARD_REMOVED = "card-removed"
    PIN_BLOCKED = "pin-blocked"
    PORT_TAKEN = "port-taken"  # another program holds one address of the agent's port


class AgentControl(Protocol):
    def snapshot(self) -> Snapshot:
        """The current state; cheap, thread-safe."""

    def subscribe(
        self, on_change: Callable[[Snapshot], None], on_notice: Callable[[Notice, str], None]
    ) -> Callable[[], None]:
        """Call back on state changes and notices (from any thread); returns unsubscribe."""

    def revoke_origin(self, origin: str) -> None:
        """Forget a user's approval of a site (policy origins cannot be revoked here)."""

    def log_folder(self) -> str: ...

    def shutdown(self) -> None:
        """Stop serving and release the readers (tray Quit)."""
