"""The localhost WebSocket server: moves JSON between ``websockets`` and :class:`RpcProtocol`.

Binds 127.0.0.1 and ::1 explicitly (never a name, never 0.0.0.0); if ::1 cannot be bound the
server carries on with 127.0.0.1 and logs it. Every handshake is checked before the service
sees it: path ``/``, Host (DNS rebinding), Origin syntax and ``service.origin_precheck``
(403), connection limit (503). Only then is ``service.open_client(origin)`` called, so a
refused page never reaches anything that could touch a card.

Each connection gets its ClientSession and an :class:`RpcProtocol`; calls run as tasks so
they can overlap (up to the pending limit); one writer task sends responses and events in
order. On disconnect the session is closed (which cancels its prompt) and the tasks are
cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent import __version__
from agent.errors import OriginNotAllowedError
from agent.ws.handshake import HandshakeRefused, check_bind_host, check_host, check_origin
from agent.ws.protocol import (
    MAX_MESSAGE_SIZE,
    MAX_PENDING,
    Call,
    ClientSessionLike,
    RpcProtocol,
    encode,
)

__all__ = [
    "DEFAULT_HOSTS",
    "DEFAULT_PORT",
    "MAX_CONNECTIONS",
    "AgentServiceLike",
    "WsServer",
    "serve",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 24847
DEFAULT_HOSTS = ("127.0.0.1", "::1")
MAX_CONNECTIONS = 256
"""Open WebSocket connections at once (all origins together): many tabs of many portals
fit; a flood past this gets 503 before any work is done."""
HARD_SIZE_FACTOR = 4
"""Messages above ``max_message_size * HARD_SIZE_FACTOR`` close the connection (1009)."""
MAX_QUEUED_EVENTS = 64
"""Events waiting to be written to one connection before further ones are dropped."""


class AgentServiceLike(Protocol):
    """The part of ``agent.core.service.AgentService`` the server uses."""

    def origin_precheck(self, origin: str) -> None: ...
    def open_client(self, origin: str) -> ClientSessionLike: ...


class WsServer:
    """The agent's WebSocket endpoint.

    Use ``async with serve(service, port=...) as server:`` (or ``await server.start()`` and
    ``await server.close()``). ``server.port`` is the bound port (useful with ``port=0``).
    """

    def __init__(
        self,
        service: AgentServiceLike,
        *,
        port: int = DEFAULT_PORT,
        hosts: Sequence[str] = DEFAULT_HOSTS,
        max_connections: int = MAX_CONNECTIONS,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_pending: int = MAX_PENDING,
        ping_interval: float | None = 20.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not hosts:
            raise ValueError("no address to bind")
        self.service = service
        self.hosts = tuple(check_bind_host(host) for host in hosts)
        self.port = port
        self.max_connections = max_connections
        self.max_message_size = max_message_size
        self.max_pending = max_pending
        self.ping_interval = ping_interval
        self.ssl_context = ssl_context
        """With a context the listener is ``wss://`` (same handler and checks; Host names its port)."""
        self.bound: list[str] = []
        self._servers: list[Server] = []
        self._connections: set[ServerConnection] = set()

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every host; with port 0 the first bound host picks the port for the rest.

        Raises:
            OSError: the port is taken (or no host at all could be bound).
        """
        first_error: OSError | None = None
        for host in self.hosts:
            try:
                server = await ws_serve(
                    self._handler,
                    host,
                    self.port,
                    process_request=self._process_request,
                    max_size=self.max_message_size * HARD_SIZE_FACTOR,
                    ping_interval=self.ping_interval,
                    server_header=f"eid-agent/{__version__}",
                    ssl=self.ssl_context,
                )
            except OSError as exc:
                if host == "::1" and self._servers:
                    logger.warning("cannot listen on [::1]:%d (%s); IPv4 only", self.port, exc)
                    continue
                first_error = first_error or exc
                if host == "127.0.0.1":
                    await self.close()
                    raise
                continue
            self._servers.append(server)
            self.bound.append(host)
            if self.port == 0:
                self.port = server.sockets[0].getsockname()[1]
        if not self._servers:
            assert first_error is not None
            raise first_error
        logger.info(
            "listening on %s, port %d%s", ", ".join(self.bound), self.port,
            " (wss)" if self.ssl_context else "",
        )

    async def close(self) -> None:
        """Stop listening and close every connection (1001); sessions get closed."""
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def serve_forever(self) -> None:
        """Wait until :meth:`close` is called from elsewhere (e.g. the tray's Quit)."""
        await asyncio.gather(*(server.wait_closed() for server in self._servers))

    async def __aenter__(self) -> WsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # --- handshake ---------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            self._check_request(request)
        except HandshakeRefused as exc:
            logger.warning("refused a connection: %s", exc.reason)
            return connection.respond(exc.status, exc.reason + "\n")
        return None

    def _check_request(self, request: Request) -> None:
        if request.path != "/":
            raise HandshakeRefused(404, "not found")
        check_host(request.headers.get_all("Host"), self.port)
        origin = check_origin(request.headers.get_all("Origin"))
        try:
            self.service.origin_precheck(origin)
        except OriginNotAllowedError as exc:
            raise HandshakeRefused(403, f"origin {origin!r} refused: {exc}") from None
        if len(self._connections) >= self.max_connections:
            raise HandshakeRefused(503, "too many connections")

    # --- connection --------------------------------------------------------------------

    async def _handler(self, connection: ServerConnection) -> None:
        if len(self._connections) >= self.max_connections:  # raced past the handshake check
            await connection.close(1013, "too many connections")
            return
        assert connection.request is not None
        origin = connection.request.headers["Origin"]
        self._connections.add(connection)
        try:
            await _Connection(self, connection, origin).run()
        finally:
            self._connections.discard(connection)


class _Connection:
    """One page: its session, protocol state, call tasks and writer."""

    def __init__(self, server: WsServer, connection: ServerConnection, origin: str) -> None:
        self.server = server
        self.connection = connection
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.outbox: asyncio.Queue[tuple[bool, dict[str, Any]]] = asyncio.Queue()
        self.queued_events = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        session = self.server.service.open_client(self.origin)
        protocol = RpcProtocol(
            session,
            emit=self._emit_threadsafe,
            max_message_size=self.server.max_message_size,
            max_pending=self.server.max_pending,
        )
        logger.info("connection from %r", self.origin)
        writer = asyncio.create_task(self._write())
        try:
            async for message in self.connection:
                outcome = protocol.receive(message)
                if isinstance(outcome, Call):
                    task = asyncio.create_task(self._run_call(protocol, outcome))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                elif outcome is not None:
                    self.outbox.put_nowait((False, outcome))
        except ConnectionClosed:
            pass
        finally:
            logger.info("connection from %r closed", self.origin)
            await self._shutdown(session, writer)

    async def _shutdown(self, session: ClientSessionLike, writer: asyncio.Task[None]) -> None:
        try:
            await session.close()
        except Exception:
            logger.exception("closing the session of %r failed", self.origin)
        for task in (*self.tasks, writer):
            task.cancel()
        await asyncio.gather(*self.tasks, writer, return_exceptions=True)

    async def _run_call(self, protocol: RpcProtocol, call: Call) -> None:
        response = await protocol.execute(call)
        self.outbox.put_nowait((False, response))

    def _emit_threadsafe(self, notification: dict[str, Any]) -> None:
        """Session callback: may be called from any thread."""
        self.loop.call_soon_threadsafe(self._enqueue_event, notification)

    def _enqueue_event(self, notification: dict[str, Any]) -> None:
        if self.queued_events >= MAX_QUEUED_EVENTS:
            logger.warning("dropping an event for %r: the page does not read", self.origin)
            return
        self.queued_events += 1
        self.outbox.put_nowait((True, notification))

    async def _write(self) -> None:
        while True:
            is_event, message = await self.outbox.get()
            if is_event:
                self.queued_events -= 1
            try:
                await self.connection.send(encode(message))
            except ConnectionClosed:
                return


def serve(
    service: AgentServiceLike,
    *,
    port: int = DEFAULT_PORT,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    **limits: Any,
) -> WsServer:
    """Build the server; use as ``async with serve(service, port=...) as server: ...``.

    ``limits``: ``max_connections``, ``max_message_size``, ``max_pending``, ``ping_interval``;
    ``ssl_context`` makes it the ``wss://`` listener.
    """
    return WsServer(service, port=port, hosts=hosts, **limits)
