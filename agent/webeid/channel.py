r"""The agent's side of the Web eID channel: a per-user Unix socket the host connects to.

Wire: newline-delimited JSON. The host's first line names the page's origin, as the
browser extension computed it: ``{"origin": "https://portal.example"}``. Every further
line is a JSON-RPC 2.0 request of the WebSocket protocol (:class:`agent.ws.protocol.RpcProtocol`,
the same dispatcher, the same core session, consent and PIN rules); each response is one
line. When the host goes away (the browser closed the port and killed it), the session is
closed, which cancels its operation: the dialog closes, no PIN goes to the card.

Who may connect: the socket lives in a folder only this user can enter (0700, checked at
start), the socket itself is 0600, and each peer's uid (``SO_PEERCRED`` on Linux,
``LOCAL_PEERCRED`` on macOS) must be the agent's own. Only https origins are accepted
(the Web eID rule: ``http://localhost`` is refused here, unlike on the WebSocket), and
machine policy applies as for WebSocket callers (``service.open_client``).

Windows: a named pipe ``\\.\pipe\eid-agent-webeid-<user>`` served by the proactor event
loop; its first instance is created by the agent (so another process cannot take the name
while the agent runs), and each client's process must run as the agent's own user
(:mod:`agent.webeid.winpeer`). Written carefully, untested here (no Windows machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from agent.core.origin import normalize_origin
from agent.errors import OriginNotAllowedError
from agent.webeid.paths import channel_path, make_private_dir
from agent.ws.errors import ErrorCode, error_object
from agent.ws.protocol import Call, ClientSessionLike, RpcProtocol, encode

__all__ = ["MAX_LINE", "WebEidChannel", "peer_uid", "serve_channel"]

logger = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
"""Longest line (a Web eID request is at most 8 KiB; the reply a few KiB)."""
MAX_CONNECTIONS = 64


class AgentServiceLike(Protocol):
    """What the channel uses of the core's AgentService: its public session factory (machine
    policy checked there); consent and PIN rules then live in the ClientSession, as for
    WebSocket callers."""

    def open_client(self, origin: str) -> ClientSessionLike: ...


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket, or None if unknown."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return int(uid)
    if sys.platform == "darwin":  # pragma: no cover - macOS: struct xucred (version, uid, ...)
        local_peercred = 0x001
        sol_local = 0
        creds = sock.getsockopt(sol_local, local_peercred, struct.calcsize("2I"))
        _version, uid = struct.unpack("2I", creds[:8])
        return int(uid)
    return None  # pragma: no cover


def _https_origin(value: Any) -> str:
    """The normalized origin of a hello line; https only (Web eID's rule)."""
    if not isinstance(value, str):
        raise OriginNotAllowedError("the hello line names no origin")
    origin = normalize_origin(value)
    if not origin.startswith("https://"):
        raise OriginNotAllowedError(f"only https origins may use Web eID: {value!r}")
    return origin


class WebEidChannel:
    """The Unix-socket server; ``service`` is the agent's AgentService."""

    def __init__(self, service: AgentServiceLike, path: str) -> None:
        self.service = service
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._pipe_servers: list[Any] = []
        self._connections = 0

    async def start(self) -> None:
        """Create the private folder and listen.

        Raises:
            OSError: another agent answers on this socket, or the folder is not private.
        """
        if sys.platform == "win32":  # pragma: no cover - untested here
            await self._start_pipe()
            return
        folder = Path(self.path).parent
        make_private_dir(folder)
        if os.path.lexists(self.path):
            if await self._answers():
                raise OSError(errno.EADDRINUSE, f"another agent serves {self.path}")
            os.unlink(self.path)  # left over by an agent that died
        self._server = await asyncio.start_unix_server(self._handle, path=self.path, limit=MAX_LINE)
        os.chmod(self.path, 0o600)
        logger.info("Web eID channel on %s", self.path)

    async def _start_pipe(self) -> None:  # pragma: no cover - Windows only, untested here
        loop = asyncio.get_running_loop()
        start_serving_pipe = getattr(loop, "start_serving_pipe", None)
        if start_serving_pipe is None:
            raise OSError(errno.ENOSYS, "the Web eID pipe needs asyncio's proactor event loop")

        def factory() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=MAX_LINE)
            return asyncio.StreamReaderProtocol(reader, self._handle)

        self._pipe_servers = await start_serving_pipe(factory, self.path)
        logger.info("Web eID channel on %s", self.path)

    async def _answers(self) -> bool:
        try:
            _reader, writer = await asyncio.open_unix_connection(self.path)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def close(self) -> None:
        for pipe_server in self._pipe_servers:  # pragma: no cover - Windows
            pipe_server.close()
        self._pipe_servers = []
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not self._same_user(writer):
                return
            if self._connections >= MAX_CONNECTIONS:
                logger.warning("refused a Web eID channel connection: too many")
                return
            self._connections += 1
            try:
                await _Connection(self.service, reader, writer).run()
            finally:
                self._connections -= 1
        except Exception:
            logger.exception("Web eID channel connection failed")
        finally:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()


    @staticmethod
    def _same_user(writer: asyncio.StreamWriter) -> bool:
        """Is the peer this user's process? (refusals are logged)"""
        if sys.platform == "win32":  # pragma: no cover - untested here
            from agent.webeid import winpeer

            pipe = writer.get_extra_info("pipe")
            try:
                pid = winpeer.client_pid(pipe.handle)
            except (AttributeError, OSError) as exc:
                logger.warning("refused a Web eID channel connection: %s", exc)
                return False
            if not winpeer.same_user(pid):
                logger.warning("refused a Web eID channel connection from process %d (another user)", pid)
                return False
            return True
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        if uid is not None and uid != os.getuid():
            logger.warning("refused a Web eID channel connection from uid %d", uid)
            return False
        return True


class _Connection:
    """One host process: its origin, session, and calls."""

    def __init__(
        self, service: AgentServiceLike, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.service = service
        self.reader = reader
        self.writer = writer
        self.tasks: set[asyncio.Task[None]] = set()

    async def _line(self) -> bytes | None:
        try:
            line = await self.reader.readline()
        except (ValueError, asyncio.LimitOverrunError, ConnectionError):
            return None  # too long, or the host died mid-line
        return line or None

    async def _send(self, message: dict[str, Any]) -> None:
        self.writer.write(encode(message).encode("utf-8") + b"\n")
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def run(self) -> None:
        hello = await self._line()
        if hello is None:
            return
        try:
            data = json.loads(hello)
            origin = _https_origin(data.get("origin") if isinstance(data, dict) else None)
            session = self.service.open_client(origin)
        except (ValueError, OriginNotAllowedError) as exc:
            message = str(exc) if isinstance(exc, OriginNotAllowedError) else "bad hello line"
            await self._send({"jsonrpc": "2.0", "id": None,
                              "error": error_object(ErrorCode.ORIGIN_NOT_ALLOWED, message)})
            return
        await self._send({"ready": True})
        protocol = RpcProtocol(session, emit=lambda _event: None)
        logger.info("Web eID host connected for %s", session.origin)
        try:
            while (line := await self._line()) is not None:
                outcome = protocol.receive(line.rstrip(b"\n"))
                if isinstance(outcome, Call):
                    task = asyncio.create_task(self._run_call(protocol, outcome))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                elif outcome is not None:
                    await self._send(outcome)
        finally:
            logger.info("Web eID host for %s gone", session.origin)
            await session.close()  # cancels a pending prompt: the host died or finished
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _run_call(self, protocol: RpcProtocol, call: Call) -> None:
        await self._send(await protocol.execute(call))


@contextlib.asynccontextmanager
async def serve_channel(service: AgentServiceLike, config_dir: Path) -> AsyncIterator[WebEidChannel | None]:
    """Serve the Web eID channel for the agent using settings ``config_dir``.

    Yields None (and logs why) when the channel cannot be served: the WebSocket edge
    works all the same.
    """
    channel = WebEidChannel(service, channel_path(config_dir))
    try:
        await channel.start()
    except Exception as exc:  # noqa: BLE001 - the WebSocket edge must serve regardless
        logger.warning("no Web eID channel: %s", exc)
        yield None
        return
    try:
        yield channel
    finally:
        await channel.close()
