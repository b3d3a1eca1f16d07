"""The user's approvals of sites, kept in ``<config_dir>/approved-origins.json``.

The file is rewritten atomically (a temporary file in the same folder, flushed, then
``os.replace``), so a crash never leaves half a file. An unreadable file is set aside as
``approved-origins.json.corrupt`` and treated as empty: the user is asked again, nothing is
allowed by accident. Thread-safe: the tray revokes from its own thread.

Format::

    {"version": 1, "origins": {"https://example.org": {"site": "2024-...", "identity": "..."}}}

where each key of an origin is a :class:`~agent.core.interaction.ConsentKind` value and the
value is when the user approved it (UTC, ISO 8601).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import functools
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.core.interaction import (
    ConsentDecision,
    ConsentKind,
    ConsentRequest,
    UserInteraction,
)
from agent.core.origin import normalize_origin
from agent.core.policy import MachinePolicy
from agent.core.waiting import ask_user
from agent.errors import AgentError, OriginNotAllowedError, UserCancelledError, UserTimeoutError

__all__ = ["DENIAL_MEMORY", "MAX_PROMPTS", "PROMPT_WINDOW", "ApprovalStore", "ConsentGate"]

logger = logging.getLogger(__name__)

DENIAL_MEMORY = 60.0
"""Seconds a "deny" is remembered per origin and kind: later requests are refused at once."""
MAX_PROMPTS = 10
"""Consent prompts one origin may cause per :data:`PROMPT_WINDOW`; more are refused unasked."""
PROMPT_WINDOW = 60.0

_FORMAT_VERSION = 1


class ApprovalStore:
    """Origins the user allowed "always", per kind of consent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, str]] = self._read()

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            logger.error("cannot read approvals from %s: %s", self.path, exc)
            return {}
        try:
            raw = json.loads(text)
            origins = raw["origins"]
            if not isinstance(origins, dict):
                raise ValueError("origins is not an object")
            return {
                str(origin): {str(k): str(v) for k, v in kinds.items()}
                for origin, kinds in origins.items()
                if isinstance(kinds, dict)
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            logger.error("approvals file %s is damaged (%s); moved to %s", self.path, exc, aside)
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            return {}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {"version": _FORMAT_VERSION, "origins": self._data}, indent=2, sort_keys=True
        )
        fd, tmp = tempfile.mkstemp(prefix=".approved-origins.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def is_approved(self, origin: str, kind: ConsentKind = ConsentKind.SITE) -> bool:
        with self._lock:
            return kind.value in self._data.get(origin, {})

    def approve(self, origin: str, kind: ConsentKind = ConsentKind.SITE) -> None:
        """Remember that the user allowed ``origin`` for ``kind`` "always"."""
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        with self._lock:
            self._data.setdefault(origin, {})[kind.value] = stamp
            self._write()
        logger.info("user approved %s for %s", origin, kind.value)

    def revoke(self, origin: str) -> bool:
        """Forget every approval of ``origin``; True when there was one."""
        with self._lock:
            if self._data.pop(origin, None) is None:
                return False
            self._write()
        logger.info("approval of %s revoked", origin)
        return True

    def origins(self, kind: ConsentKind = ConsentKind.SITE) -> tuple[str, ...]:
        """The origins approved for ``kind``, sorted."""
        with self._lock:
            return tuple(sorted(o for o, kinds in self._data.items() if kind.value in kinds))


class ConsentGate:
    """Which origins may use the card, and asking the user: machine policy, stored
    approvals and the consent dialogs (the per-connection "allow once" is the session's)."""

    def __init__(
        self,
        approvals: ApprovalStore,
        policy: MachinePolicy,
        interaction: UserInteraction,
        *,
        on_change: Callable[[], None],
    ) -> None:
        """Args:
        approvals: the user's stored "always" answers.
        policy: the machine policy (listed origins, whether users may approve).
        interaction: how to ask the user.
        on_change: called after the user approved a site "always" (tray state).
        """
        self.approvals = approvals
        self.policy = policy
        self.interaction = interaction
        self._on_change = on_change
        self.policy_origins = self._normalize_policy(policy.allowed_origins)
        self._prompts: dict[tuple[object, ...], _Prompt] = {}
        self._denials: dict[tuple[str, ConsentKind], float] = {}  # -> loop time it ends
        self._prompt_times: dict[str, collections.deque[float]] = {}

    @staticmethod
    def _normalize_policy(origins: tuple[str, ...]) -> frozenset[str]:
        normalized = set()
        for origin in origins:
            try:
                normalized.add(normalize_origin(origin))
            except OriginNotAllowedError:
                logger.error("machine policy lists an invalid origin %r; ignored", origin)
        return frozenset(normalized)

    @property
    def user_may_approve(self) -> bool:
        return self.policy.allow_user_approval

    def precheck(self, origin: str) -> None:
        """Refuse a connection whose origin is malformed or barred by machine policy.

        Raises:
            OriginNotAllowedError: bad syntax (https only; http for loopback hosts), or the
                policy allows no user approvals and does not list this origin.
        """
        normalized = normalize_origin(origin)
        if normalized in self.policy_origins:
            return
        if not self.policy.allow_user_approval:
            raise OriginNotAllowedError(
                f"{normalized} is not among the sites the administrator allowed"
            )

    def is_approved(self, origin: str, kind: ConsentKind = ConsentKind.SITE) -> bool:
        """Allowed by machine policy (sites only) or by a stored user approval."""
        if kind is ConsentKind.SITE and origin in self.policy_origins:
            return True
        return self.policy.allow_user_approval and self.approvals.is_approved(origin, kind)

    def allowed_origins(self) -> tuple[str, ...]:
        """The sites the user approved "always" (none when the policy forbids approvals)."""
        return self.approvals.origins() if self.policy.allow_user_approval else ()

    def revoke(self, origin: str) -> None:
        """Forget every approval of ``origin`` (event-loop side: also :meth:`forget`)."""
        self.approvals.revoke(origin)

    async def ask(
        self,
        origin: str,
        kind: ConsentKind,
        timeout: float,
        lang: str | None,
        holder: str | None = None,
        subject_id: str | None = None,
    ) -> ConsentDecision:
        """Ask the user about ``origin`` for ``kind``; an "always" answer is stored.

        One prompt per origin and kind (and card holder) at a time: a request that comes
        while one is shown waits for that answer, and gets it too. A "deny" is remembered
        for :data:`DENIAL_MEMORY` seconds (later requests are refused without a prompt),
        and an origin gets at most :data:`MAX_PROMPTS` prompts per :data:`PROMPT_WINDOW`.

        Raises:
            UserTimeoutError: no answer within ``timeout``.
            OriginNotAllowedError: (site) denied a moment ago, or too many prompts.
            UserCancelledError: (identity, certificate) denied a moment ago, or too many
                prompts.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._refuse_if_denied(origin, kind, now)
        key = (origin, kind, holder, subject_id)
        prompt = self._prompts.get(key)
        if prompt is None:
            self._count_prompt(origin, kind, now)
            request = ConsentRequest(origin, kind, holder, timeout, lang=lang, subject_id=subject_id)
            prompt = _Prompt(asyncio.ensure_future(self._prompt(request)))
            self._prompts[key] = prompt
            prompt.task.add_done_callback(functools.partial(self._prompt_done, key, prompt))
        else:
            logger.info("%s: waits for the %s prompt already shown", origin, kind.value)
        prompt.waiters += 1
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(prompt.task)
        except TimeoutError:
            raise UserTimeoutError(f"no answer from the user within {timeout:g} s") from None
        finally:
            prompt.waiters -= 1
            if prompt.waiters == 0 and not prompt.task.done():
                prompt.task.cancel()  # nobody waits for the answer any more: close the dialog

    async def _prompt(self, request: ConsentRequest) -> ConsentDecision:
        logger.info("consent prompt: %s for %s", request.origin, request.kind.value)
        decision = await ask_user(self.interaction.ask_consent(request), request.timeout)
        if decision is ConsentDecision.ALLOW_ALWAYS:
            self.approvals.approve(request.origin, request.kind)
            if request.kind is ConsentKind.SITE:
                self._on_change()
        elif decision is ConsentDecision.DENY:
            until = asyncio.get_running_loop().time() + DENIAL_MEMORY
            self._denials[(request.origin, request.kind)] = until
        return decision

    def _prompt_done(
        self, key: tuple[object, ...], prompt: _Prompt, task: asyncio.Task[ConsentDecision]
    ) -> None:
        if self._prompts.get(key) is prompt:
            del self._prompts[key]
        if not task.cancelled():
            task.exception()  # retrieved: each waiter got it through its shield

    def _refuse_if_denied(self, origin: str, kind: ConsentKind, now: float) -> None:
        until = self._denials.get((origin, kind))
        if until is None:
            return
        if now >= until:
            del self._denials[(origin, kind)]
            return
        logger.info("%s: %s denied by the user moments ago; not asked again", origin, kind.value)
        raise _refusal(kind, f"the user denied {origin} less than {DENIAL_MEMORY:g} s ago")

    def _count_prompt(self, origin: str, kind: ConsentKind, now: float) -> None:
        shown = self._prompt_times.setdefault(origin, collections.deque())
        while shown and now - shown[0] >= PROMPT_WINDOW:
            shown.popleft()
        if len(shown) >= MAX_PROMPTS:
            logger.warning("%s: too many consent prompts; refused without asking", origin)
            raise _refusal(
                kind,
                f"{origin} asked for consent {MAX_PROMPTS} times in {PROMPT_WINDOW:g} s; "
                "try again later",
            )
        shown.append(now)

    def waiting(self, origin: str) -> int:
        """Requests of ``origin`` waiting for the answer to a consent prompt now shown."""
        return sum(p.waiters for key, p in self._prompts.items() if key[0] == origin)

    def forget(self, origin: str) -> None:
        """Forget remembered denials and prompt counts of ``origin`` (revoked in the tray)."""
        for key in [k for k in self._denials if k[0] == origin]:
            del self._denials[key]
        self._prompt_times.pop(origin, None)


@dataclass
class _Prompt:
    """A consent dialog on screen, and how many requests wait for its answer."""

    task: asyncio.Task[ConsentDecision]
    waiters: int = 0


def _refusal(kind: ConsentKind, message: str) -> AgentError:
    if kind is ConsentKind.SITE:
        return OriginNotAllowedError(message)
    return UserCancelledError(message)
