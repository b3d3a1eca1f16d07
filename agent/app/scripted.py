"""A scripted :class:`~agent.core.interaction.UserInteraction` for automated tests.

It answers PIN, consent and card-choice prompts from a script, so it must never be active
by accident: constructing it requires ``EID_AGENT_ALLOW_SCRIPTED=1`` in the environment,
and the agent only uses it when explicitly told to. It logs a loud warning, records every
request (for assertions) and never logs PIN values.

A script is a mapping (or a JSON file holding one) with answer lists, consumed in order::

    {"pins": ["1234", {"cancel": true}], "pinChanges": [["1234", "5678"]],
     "consents": ["allow-once", "allow-always", "deny"], "choices": [1]}

An answer may be ``{"cancel": true}`` (raise UserCancelledError) or ``{"hang": true}``
(never answer: for timeout and cancellation tests). An exhausted list cancels.

Notices (PIN pad, "insert your card") need no answer: they are recorded when shown and,
for card notices, again when closed ("closed", or "cancelled" when the core's task was
cancelled), so tests can check that no notice stays open. ``on_request`` is called when
a notice opens, so a test can insert a card meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.core.interaction import (
    CardWaitRequest,
    ChoiceRequest,
    ConsentDecision,
    ConsentRequest,
    PinRequest,
)
from agent.errors import UserCancelledError

__all__ = [
    "CANCEL",
    "ENABLE_ENV",
    "HANG",
    "Recorded",
    "ScriptedInteraction",
    "ScriptedInteractionDisabledError",
]

logger = logging.getLogger(__name__)

ENABLE_ENV = "EID_AGENT_ALLOW_SCRIPTED"
CANCEL: Mapping[str, bool] = {"cancel": True}
HANG: Mapping[str, bool] = {"hang": True}


class ScriptedInteractionDisabledError(RuntimeError):
    """The scripted provider was requested without EID_AGENT_ALLOW_SCRIPTED=1."""


@dataclass(frozen=True)
class Recorded:
    """One prompt the core made: its kind, the request, and how it ended."""

    kind: str  # "pin", "pin-change", "consent", "choice", "pinpad", "card-notice"
    request: PinRequest | ConsentRequest | ChoiceRequest | CardWaitRequest
    outcome: str  # "answered", "cancelled-by-script", "cancelled" (task cancelled), "shown",
    # "closed" (a card notice whose block ended without cancellation)


class ScriptedInteraction:
    """Answers prompts from a script; for tests only."""

    def __init__(
        self,
        script: Mapping[str, Any] | str | Path,
        *,
        on_request: Callable[[str, Any], None] | None = None,
    ) -> None:
        if os.environ.get(ENABLE_ENV) != "1":
            raise ScriptedInteractionDisabledError(
                f"the scripted user interaction is for tests only; set {ENABLE_ENV}=1 to use it"
            )
        if isinstance(script, str | Path):
            script = json.loads(Path(script).read_text(encoding="utf-8"))
        assert isinstance(script, Mapping)
        self._pins: list[Any] = list(script.get("pins", ()))
        self._pin_changes: list[Any] = list(script.get("pinChanges", ()))
        self._consents: list[Any] = list(script.get("consents", ()))
        self._choices: list[Any] = list(script.get("choices", ()))
        self._on_request = on_request
        self.records: list[Recorded] = []
        logger.warning(
            "SCRIPTED USER INTERACTION IS ACTIVE: PINs and consents come from a test script, "
            "not from a person. This must never happen outside automated tests."
        )

    # -- helpers ---------------------------------------------------------------------------

    def kinds(self, outcome: str | None = None) -> list[str]:
        """The kinds of the recorded prompts (optionally only those with ``outcome``)."""
        return [r.kind for r in self.records if outcome is None or r.outcome == outcome]

    async def _answer(self, kind: str, queue: list[Any], request: Any) -> Any:
        if self._on_request is not None:
            self._on_request(kind, request)
        answer = queue.pop(0) if queue else CANCEL
        logger.info("scripted %s prompt shown for %s", kind, request.origin)
        try:
            if isinstance(answer, Mapping) and answer.get("hang"):
                await asyncio.Event().wait()
            if isinstance(answer, Mapping) and answer.get("cancel"):
                self.records.append(Recorded(kind, request, "cancelled-by-script"))
                raise UserCancelledError(f"scripted {kind} prompt cancelled")
        except asyncio.CancelledError:
            self.records.append(Recorded(kind, request, "cancelled"))
            logger.info("scripted %s prompt for %s closed by the agent (cancelled)", kind, request.origin)
            raise
        self.records.append(Recorded(kind, request, "answered"))
        logger.info("scripted answer to a %s prompt for %s", kind, request.origin)
        return answer

    # -- UserInteraction -----------------------------------------------------------------

    async def ask_pin(self, request: PinRequest) -> str:
        return str(await self._answer("pin", self._pins, request))

    async def ask_pin_change(self, request: PinRequest) -> tuple[str, str]:
        old, new = await self._answer("pin-change", self._pin_changes, request)
        return str(old), str(new)

    @contextlib.asynccontextmanager
    async def pinpad_notice(self, request: PinRequest) -> AsyncIterator[None]:
        if self._on_request is not None:
            self._on_request("pinpad", request)
        self.records.append(Recorded("pinpad", request, "shown"))
        yield

    @contextlib.asynccontextmanager
    async def card_notice(self, request: CardWaitRequest) -> AsyncIterator[None]:
        self.records.append(Recorded("card-notice", request, "shown"))
        logger.info(
            "scripted card notice shown for %s: %s", request.origin, request.reason.value
        )
        if self._on_request is not None:
            self._on_request("card-notice", request)
        outcome = "closed"
        try:
            yield
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self.records.append(Recorded("card-notice", request, outcome))

    def open_card_notices(self) -> int:
        """Card notices shown and not (yet) closed."""
        outcomes = [r.outcome for r in self.records if r.kind == "card-notice"]
        shown = outcomes.count("shown")
        return shown - (len(outcomes) - shown)

    async def ask_consent(self, request: ConsentRequest) -> ConsentDecision:
        return ConsentDecision(await self._answer("consent", self._consents, request))

    async def choose_card(self, request: ChoiceRequest) -> int:
        return int(await self._answer("choice", self._choices, request))
