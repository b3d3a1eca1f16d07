"""The operations core: card operations for pages, consent, PINs, per-card queue.

Knows neither sockets nor pyscard: the WebSocket layer calls :class:`ClientSession`, the
reader layer is an injected :class:`~agent.smartcard.backend.ReaderBackend`, the user is reached
through an injected :class:`~agent.core.interaction.UserInteraction`.
"""

from __future__ import annotations

from agent.core.config import DEFAULT_PORT, AgentConfig
from agent.core.service import AgentService, ClientSession

__all__ = ["DEFAULT_PORT", "AgentConfig", "AgentService", "ClientSession"]
