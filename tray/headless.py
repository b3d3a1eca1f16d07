"""Pick how the agent asks the user: Qt dialogs, the console, or nothing (clear errors).

- A display and PySide6: :class:`tray.interaction.DialogInteraction`.
- Otherwise, with a terminal on stdin: :class:`agent.app.console.ConsoleInteraction`.
- Otherwise :class:`NoUserInterface`: PIN-pad readers still work (the PIN is typed on the
  reader); every question raises :class:`~agent.errors.NotSupportedError` with a message
  the portal can show. The agent keeps serving in every case.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from agent.core.interaction import (
    CardWaitRequest,
    ChoiceRequest,
    ConsentDecision,
    ConsentRequest,
    PinRequest,
    UserInteraction,
    no_notice,
)
from agent.errors import NotSupportedError

logger = logging.getLogger(__name__)

__all__ = ["NoUserInterface", "choose_interaction", "dialogs_available", "has_display"]

NO_UI_MESSAGE = (
    "eid-agent runs without a screen or console, so it cannot ask for a PIN or a consent. "
    "Use a PIN-pad reader, or start the agent in a desktop session."
)


def has_display(env: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether windows can be shown: always on Windows/macOS, DISPLAY/WAYLAND on others."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform in ("win32", "darwin"):
        return True
    if env.get("QT_QPA_PLATFORM", "").startswith("offscreen"):
        return False  # nobody would see the dialog
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def dialogs_available() -> bool:
    """Whether PySide6's widgets can be imported (without importing them here)."""
    try:
        return importlib.util.find_spec("PySide6.QtWidgets") is not None
    except ModuleNotFoundError:
        return False


class NoUserInterface:
    """No way to ask anyone: questions fail clearly, PIN pads still work."""

    def __init__(self, message: str = NO_UI_MESSAGE) -> None:
        self.message = message

    async def ask_pin(self, request: PinRequest) -> str:
        raise NotSupportedError(self.message)

    async def ask_pin_change(self, request: PinRequest) -> tuple[str, str]:
        raise NotSupportedError(self.message)

    def pinpad_notice(self, request: PinRequest) -> contextlib.AbstractAsyncContextManager[None]:
        return no_notice(request)

    def card_notice(
        self, request: CardWaitRequest
    ) -> contextlib.AbstractAsyncContextManager[None]:
        return no_notice(request)

    async def ask_consent(self, request: ConsentRequest) -> ConsentDecision:
        raise NotSupportedError(self.message)

    async def choose_card(self, request: ChoiceRequest) -> int:
        raise NotSupportedError(self.message)


def choose_interaction(
    *,
    env: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    lang: str | None = None,
    dialog_log: Path | None = None,
) -> UserInteraction:
    """The best available provider for this session (see the module docstring)."""
    if has_display(env) and dialogs_available():
        from tray.interaction import DialogInteraction

        logger.info("asking the user with the Qt dialogs")
        return DialogInteraction(lang=lang, stderr_path=dialog_log,
                                 env=dict(env) if env is not None else None)
    stream = sys.stdin if stdin is None else stdin
    if stream is not None and stream.isatty():
        from agent.app.console import ConsoleInteraction

        logger.info("no display: asking the user on the console")
        return ConsoleInteraction()
    logger.warning("no display and no console: only PIN-pad readers can be used")
    return NoUserInterface()
