"""The Qt dialogs as the core's :class:`~agent.interaction.UserInteraction` provider.

:class:`DialogInteraction` starts the dialog process (``python -m tray.dialogs``) on the
first request, talks JSON lines to it over a pipe (as gpg-agent talks to pinentry), and
stops it again after ``idle_timeout`` seconds without an open dialog, so the idle agent
stays light. When the process has died it is started afresh on the next request.

Cancelling a coroutine (the core's timeout, a page that went away) sends ``cancel`` for
its dialog, which closes it. The user's Cancel becomes :class:`UserCancelledError`, the
dialog's own countdown :class:`UserTimeoutError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from agent.errors import AgentError, UserCancelledError, UserTimeoutError
from agent.interaction import (
    CardWaitRequest,
    ChoiceRequest,
    ConsentDecision,
    ConsentKind,
    ConsentRequest,
    PinRequest,
)

logger = logging.getLogger(__name__)

__all__ = ["DialogInteraction", "DialogProcessError", "dialog_command"]

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE = 5.0  # seconds to wait for the dialog process after closing its stdin


class DialogProcessError(AgentError):
    """The dialog process could not be started, died, or answered nonsense."""


def dialog_command() -> list[str]:
    """How to start the dialog program: the frozen exe with ``--dialogs``, else ``-m``."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--dialogs"]
    return [sys.executable, "-m", "tray.dialogs"]


def _pin_payload(request: PinRequest) -> dict[str, Any]:
    return {
        "origin": request.origin,
        "operation": request.operation.value,
        "pinName": request.pin.name,
        "triesLeft": request.tries_left,
        "minLength": request.pin.min_length,
        "maxLength": request.pin.max_length,
        "holder": request.holder,
        "cardType": request.card_type,
        "reader": request.reader,
        "detail": request.detail,
        "timeout": request.timeout,
    }


def _check_digits(value: Any) -> str:
    if not isinstance(value, str) or not value.isdigit():
        raise DialogProcessError("the dialog returned a malformed PIN")
    return value


class DialogInteraction:
    """Asks the user through the separate Qt dialog process."""

    def __init__(
        self,
        *,
        command: Sequence[str] | None = None,
        idle_timeout: float = 60.0,
        lang: str | None = None,
        stderr_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """
        Args:
            command: the dialog program (default :func:`dialog_command`).
            idle_timeout: seconds without an open dialog before the process is stopped.
            lang: language for every dialog (default: the OS language; a request's own
                ``lang`` attribute wins when the core provides one).
            stderr_path: file for the dialog process's log (default: the agent's stderr).
            env: environment of the dialog process (default: this process's).
        """
        self.command = list(command) if command else dialog_command()
        self.idle_timeout = idle_timeout
        self.lang = lang
        self.stderr_path = stderr_path
        self.env = dict(env) if env is not None else dict(os.environ)
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._owner: dict[int, asyncio.subprocess.Process] = {}  # request id -> its process
        self._ids = itertools.count(1)
        self._start_lock = asyncio.Lock()
        self._idle_handle: asyncio.TimerHandle | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.starts = 0  # how many times the process was started (for diagnostics/tests)

    # --- UserInteraction ---------------------------------------------------------------

    async def ask_pin(self, request: PinRequest) -> str:
        reply = await self._ask("pin", _pin_payload(request), request)
        return _check_digits(reply.get("pin"))

    async def ask_pin_change(self, request: PinRequest) -> tuple[str, str]:
        reply = await self._ask("pin-change", _pin_payload(request), request)
        return _check_digits(reply.get("pin")), _check_digits(reply.get("newPin"))

    def pinpad_notice(self, request: PinRequest) -> contextlib.AbstractAsyncContextManager[None]:
        """Show "enter your PIN on the reader" while the block runs.

        The user's Cancel on the notice cancels the block (raised as UserCancelledError);
        the reader itself may keep waiting until its own timeout.
        """
        return self._notice("pinpad", _pin_payload(request), request)

    def card_notice(
        self, request: CardWaitRequest
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Show "insert your ID card" while the core waits; Cancel cancels the wait."""
        payload = {
            "origin": request.origin,
            "operation": request.operation.value,
            "reason": request.reason.value,
            "holder": request.holder,
            "timeout": request.timeout,
        }
        return self._notice("card-wait", payload, request)

    @contextlib.asynccontextmanager
    async def _notice(
        self, kind: str, payload: dict[str, Any], request: object
    ) -> AsyncIterator[None]:
        """A dialog shown while the block runs; the user's Cancel cancels the block."""
        task = asyncio.current_task()
        request_id, future = await self._open(kind, payload, request)
        cancelled_by_user = False

        def on_reply(done: asyncio.Future[dict[str, Any]]) -> None:
            nonlocal cancelled_by_user
            if not done.cancelled() and done.exception() is None and task is not None:
                if done.result().get("result") in ("cancel", "timeout"):
                    cancelled_by_user = True
                    task.cancel()

        future.add_done_callback(on_reply)
        try:
            yield
        except asyncio.CancelledError:
            if cancelled_by_user and task is not None and task.uncancel() == 0:
                raise UserCancelledError(f"cancelled on the {kind} notice") from None
            raise
        finally:
            future.remove_done_callback(on_reply)
            if not future.done():
                self._send({"type": "cancel", "id": request_id})
                future.cancel()
            self._forget(request_id)

    async def ask_consent(self, request: ConsentRequest) -> ConsentDecision:
        kind = f"consent-{request.kind.value}"  # consent-site, consent-identity, ...
        payload = {"origin": request.origin, "holder": request.holder, "timeout": request.timeout}
        national_number = getattr(request, "national_number", None)
        if national_number:
            payload["nationalNumber"] = national_number
        try:
            reply = await self._ask(kind, payload, request)
        except UserCancelledError:
            return ConsentDecision.DENY  # closing the question is no permission
        try:
            decision = ConsentDecision(reply.get("decision"))
        except ValueError:
            raise DialogProcessError("the dialog returned an unknown decision") from None
        if request.kind is ConsentKind.IDENTITY and decision is ConsentDecision.ALLOW_ALWAYS:
            decision = ConsentDecision.ALLOW_ONCE  # identity is never shared "always"
        return decision

    async def choose_card(self, request: ChoiceRequest) -> int:
        payload = {
            "origin": request.origin,
            "operation": request.operation.value,
            "timeout": request.timeout,
            "choices": [
                {"reader": c.reader, "cardType": c.card_type, "holder": c.holder,
                 "serial": c.serial}
                for c in request.choices
            ],
        }
        reply = await self._ask("choose-card", payload, request)
        index = reply.get("index")
        if not isinstance(index, int) or not 0 <= index < len(request.choices):
            raise DialogProcessError("the dialog returned an invalid choice")
        return index

    # --- requests ----------------------------------------------------------------------

    async def _ask(self, kind: str, payload: dict[str, Any], request: object) -> dict[str, Any]:
        request_id, future = await self._open(kind, payload, request)
        try:
            reply = await future
        except asyncio.CancelledError:
            logger.info("dialog %d (%s) cancelled by the agent", request_id, kind)
            self._send({"type": "cancel", "id": request_id})
            raise
        finally:
            self._forget(request_id)
        result = reply.get("result")
        if result == "ok":
            return reply
        if result == "cancel":
            raise UserCancelledError("the user cancelled the dialog")
        if result == "timeout":
            raise UserTimeoutError("nobody answered the dialog in time")
        raise DialogProcessError(f"dialog error: {reply.get('message', result)}")

    async def _open(
        self, kind: str, payload: dict[str, Any], request: object
    ) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        await self._ensure_started()
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        assert self._proc is not None
        self._owner[request_id] = self._proc
        self._cancel_idle()
        lang = getattr(request, "lang", None) or self.lang
        message = {"id": request_id, "type": kind, **payload}
        if lang:
            message["lang"] = lang
        logger.info("dialog %d (%s) for %s", request_id, kind, payload.get("origin"))
        self._send(message)
        return request_id, future

    def _forget(self, request_id: int) -> None:
        self._pending.pop(request_id, None)
        self._owner.pop(request_id, None)
        if not self._pending:
            self._schedule_idle()

    def _send(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            if message.get("type") == "cancel":
                return  # nothing left to close
            raise DialogProcessError("the dialog process is not running")
        try:
            proc.stdin.write(json.dumps(message).encode("utf-8") + b"\n")
        except (BrokenPipeError, ConnectionResetError) as exc:
            if message.get("type") != "cancel":
                raise DialogProcessError("the dialog process went away") from exc

    # --- process -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    async def _ensure_started(self) -> None:
        async with self._start_lock:
            if self.running:
                return
            if self._proc is not None:
                await self.aclose()  # a dead process: release its pipes and reader
            env = dict(self.env)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
            )
            stderr: IO[bytes] | None = None
            if self.stderr_path is not None:
                stderr = open(self.stderr_path, "ab")  # noqa: SIM115 - handed to the child
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=stderr,
                    env=env,
                )
            except OSError as exc:
                raise DialogProcessError(f"cannot start the dialogs: {exc}") from exc
            finally:
                if stderr is not None:
                    stderr.close()
            self.starts += 1
            logger.info("dialog process started (pid %d)", self._proc.pid)
            self._reader = asyncio.create_task(self._read_replies(self._proc))

    async def _read_replies(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            try:
                reply = json.loads(line)
                request_id = reply["id"]
            except (ValueError, KeyError, TypeError):
                logger.warning("ignoring a malformed line from the dialog process")
                continue
            future = self._pending.get(request_id)
            if future is not None and not future.done():
                future.set_result(reply)
        code = await proc.wait()
        logger.info("dialog process %d ended (exit code %s)", proc.pid, code)
        for request_id, future in list(self._pending.items()):
            if self._owner.get(request_id) is proc and not future.done():
                future.set_exception(DialogProcessError("the dialog process ended unexpectedly"))

    def _cancel_idle(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def _schedule_idle(self) -> None:
        self._cancel_idle()
        if self.running:
            loop = asyncio.get_running_loop()
            self._idle_handle = loop.call_later(self.idle_timeout, self._idle_stop)

    def _idle_stop(self) -> None:
        self._idle_handle = None
        if not self._pending and self.running:
            logger.info("dialog process idle; stopping it")
            task = asyncio.get_running_loop().create_task(self.aclose())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def aclose(self) -> None:
        """Stop the dialog process (closing its stdin; killing it if it lingers)."""
        self._cancel_idle()
        current = asyncio.current_task()
        for task in list(self._stopping):
            if task is not current:
                await task  # an idle stop in flight
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE)
            except TimeoutError:
                logger.warning("dialog process %d did not exit; killing it", proc.pid)
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            await self._reader
            self._reader = None
