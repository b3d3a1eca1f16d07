"""The localhost WebSocket server: moves JSON between ``websockets`` and :class:`RpcProtocol`.

Binds 127.0.0.1 and ::1 explicitly (never a name, never 0.0.0.0) on sockets reserved by
:mod:`agent.ws.ports` (a slot of the fixed range, or an explicit port; a half-bound pair is
never used). With an ``ssl_context`` the same server also listens for ``wss://`` on the
slot's wss port (the reservation's wss sockets): one handler, one set of checks and limits
for both schemes; Host must name the port the connection came in on. Every connection's
peer is looked up at accept time (:mod:`agent.peercred`): a socket owned by another OS user
gets a bare 403 before its request is even looked at.
Every handshake is then checked before the service sees it: path ``/``, Host (DNS
rebinding), Origin syntax and ``service.origin_precheck`` (403), connection limits, total
and per origin (503). Only then is ``service.open_client(origin)`` called, so a refused page
never reaches anything that could touch a card.

Resources are bounded: unfinished handshakes (``max_handshakes``; more are dropped at
accept), connections per origin, and the replies waiting for a page that does not read them
(``MAX_OUTGOING_BYTES``; the connection is closed past it). Refusals and accept errors are
logged through :mod:`agent.ws.ratelimit`.

Each connection gets its ClientSession and an :class:`RpcProtocol`; calls run as tasks so
they can overlap (up to the pending limit); one writer task sends responses and events in
order. On disconnect the session is closed (which cancels its prompt) and the tasks are
cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import socket
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
from agent.peercred import LOOKUP_IS_CHEAP, PeerOwner, peer_owner
from agent.ws import ratelimit
from agent.ws.handshake import HandshakeRefused, check_bind_host, check_host, check_origin
from agent.ws.ports import Reservation, bind_pair
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
refusals = logging.getLogger(__name__ + ".refused")
"""Per-connection refusals and drops: rate-limited (a flood writes a few lines, not thousands)."""
WS_LOGGER = "agent.ws.websockets"
"""The logger handed to ``websockets`` (rate-limited too)."""

DEFAULT_PORT = 24847
DEFAULT_HOSTS = ("127.0.0.1", "::1")
MAX_CONNECTIONS = 256
"""Open WebSocket connections at once (all origins together): many tabs of many portals
fit; a flood past this gets 503 before any work is done."""
HARD_SIZE_FACTOR = 4
"""Messages above ``max_message_size * HARD_SIZE_FACTOR`` close the connection (1009)."""
MAX_QUEUED_EVENTS = 64
"""Events waiting to be written to one connection before further ones are dropped."""
MAX_PER_ORIGIN = 32
"""Open connections of one origin: one site's tabs cannot lock out the others (503)."""
MAX_HANDSHAKES = 64
"""TCP connections accepted whose WebSocket handshake is not finished; more are dropped."""
MAX_FOREIGN = 16
"""Connections of other OS users waiting for their 403; more are dropped at accept."""
MAX_OUTGOING_BYTES = 256 * 1024
"""Replies and events queued for one connection (encoded JSON). A page that does not read
past this is disconnected (1008), so it cannot grow the agent (see docs/protocol.md)."""
MAX_INCOMING_FRAMES = 4
"""Frames websockets buffers per connection before it stops reading the socket."""
HANDSHAKE_TIMEOUT = 10.0
"""Seconds a connection may take to finish its WebSocket handshake."""


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
        reservation: Reservation | None = None,
        max_per_origin: int = MAX_PER_ORIGIN,
        max_handshakes: int = MAX_HANDSHAKES,
        max_outgoing_bytes: int = MAX_OUTGOING_BYTES,
        allow_http_loopback: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not hosts:
            raise ValueError("no address to bind")
        self.service = service
        self.hosts = tuple(check_bind_host(host) for host in hosts)
        self.port = reservation.ws_port if reservation else port
        self.reservation = reservation
        self.max_connections = max_connections
        self.max_message_size = max_message_size
        self.max_pending = max_pending
        self.ping_interval = ping_interval
        self.max_per_origin = max_per_origin
        self.max_handshakes = max_handshakes
        self.max_outgoing_bytes = max_outgoing_bytes
        self.allow_http_loopback = allow_http_loopback
        self.ssl_context = ssl_context
        """With a context, ``wss://`` is served too, on the reservation's wss sockets."""
        self.wss_port: int | None = None
        """The ``wss://`` port once listening (None: ws only)."""
        self.bound: list[str] = []
        self._servers: list[Server] = []
        self._connections: set[ServerConnection] = set()
        self._per_origin: dict[str, int] = {}
        self._handshaking: set[_GuardedConnection] = set()
        self._foreign: set[_GuardedConnection] = set()
        self._connection_class = type("_Guarded", (_GuardedConnection,), {"guard": self})

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on the reserved sockets (or bind ``port`` on every host, all or nothing;
        port 0 picks a free one).

        Raises:
            agent.ws.ports.PortSquattedError: the port is held on one loopback address only.
            OSError: the port is taken.
        """
        ratelimit.install(refusals.name, WS_LOGGER, "asyncio")
        if self.reservation is None:
            port, sockets, bound = bind_pair(self.hosts, self.port)
            self.reservation = Reservation(port, None, tuple(bound), sockets)
        sockets = list(self.reservation.ws_sockets)
        self.port = self.reservation.ws_port
        try:
            for sock in sockets:
                server = await ws_serve(
                    self._handler,
                    sock=sock,
                    **self._serve_options(),
                )
                self._servers.append(server)
                self.bound.append(_host_of(sock))
            if self.ssl_context is not None:
                await self._start_wss(self.reservation.take_wss_sockets())
        except BaseException:
            await self.close()
            raise
        logger.info(
            "listening on %s, port %d%s", ", ".join(self.bound), self.port,
            f" (wss {self.wss_port})" if self.wss_port else "",
        )

    def _serve_options(self) -> dict[str, Any]:
        """What ws:// and wss:// listeners share: the same checks, limits and connection class."""
        return {
            "process_request": self._process_request,
            "process_response": self._process_response,
            "max_size": self.max_message_size * HARD_SIZE_FACTOR,
            "max_queue": MAX_INCOMING_FRAMES,
            "open_timeout": HANDSHAKE_TIMEOUT,
            "ping_interval": self.ping_interval,
            "server_header": f"eid-agent/{__version__}",
            # No permessage-deflate: on loopback it only costs CPU per message and a zlib
            # context per connection (memory), and the large answers (photo, signatures,
            # certificates) hardly compress.
            "compression": None,
            "create_connection": self._connection_class,
            "logger": logging.getLogger(WS_LOGGER),
        }

    async def _start_wss(self, sockets: list[socket.socket]) -> None:
        """``wss://`` on the slot's wss sockets: the same handler, checks, limits and
        connection class as ``ws://`` (limits count both together); TLS is finished before
        the connection counts as a handshake, within ``HANDSHAKE_TIMEOUT``. Where the peer
        lookup is cheap, another OS user's connection is closed at accept, before TLS
        (:class:`_OwnUserListener`)."""
        assert self.reservation is not None
        if not sockets:
            logger.warning("no wss:// port reserved: ws:// only")
            return
        if LOOKUP_IS_CHEAP:
            sockets = [_OwnUserListener.adopt(sock) for sock in sockets]
        try:
            for sock in sockets:
                server = await ws_serve(
                    self._handler,
                    sock=sock,
                    **self._serve_options(),
                    ssl=self.ssl_context,
                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                )
                self._servers.append(server)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self.wss_port = self.reservation.wss_port

    async def close(self) -> None:
        """Stop listening and close every connection (1001); sessions get closed."""
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self.reservation is not None:
            self.reservation.close()

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

    def _admit(self, connection: _GuardedConnection, transport: Any) -> None:
        """At accept: whose socket is it, and is there room for another handshake?"""
        if not LOOKUP_IS_CHEAP:  # looked up in a thread when the request is in
            self._handshaking_add(connection, transport)
            return
        owner = _lookup(transport.get_extra_info("peername"), transport.get_extra_info("sockname"))
        connection.owner = owner
        if not owner.same_user:
            if len(self._foreign) >= MAX_FOREIGN:
                refusals.warning("dropped connections of another OS user (%s)", owner.detail)
                transport.abort()
                return
            self._foreign.add(connection)
            return
        self._handshaking_add(connection, transport)

    def _handshaking_add(self, connection: _GuardedConnection, transport: Any) -> None:
        if len(self._handshaking) >= self.max_handshakes:
            refusals.warning("dropped a connection: %d handshakes unfinished", len(self._handshaking))
            transport.abort()
            return
        self._handshaking.add(connection)

    def _done_handshaking(self, connection: ServerConnection) -> None:
        self._handshaking.discard(connection)  # type: ignore[arg-type]
        self._foreign.discard(connection)  # type: ignore[arg-type]

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        owner: PeerOwner | None = getattr(connection, "owner", None)
        if owner is None and not LOOKUP_IS_CHEAP:
            owner = await asyncio.to_thread(
                _lookup, connection.remote_address, connection.local_address
            )
            connection.owner = owner  # type: ignore[attr-defined]
        if owner is None or not owner.same_user:
            # Another OS user: no reason, no version, nothing about origins or cards.
            refusals.warning(
                "refused a connection of another OS user (%s)", owner.detail if owner else "unknown"
            )
            return connection.respond(403, "Forbidden\n")
        try:
            self._check_request(request, _port_of(connection.local_address, self.port))
        except HandshakeRefused as exc:
            refusals.warning("refused a connection: %s", exc.reason)
            return connection.respond(exc.status, exc.reason + "\n")
        return None

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        self._done_handshaking(connection)
        owner: PeerOwner | None = getattr(connection, "owner", None)
        if owner is None or not owner.same_user:
            del response.headers["Server"]
        return None

    def _check_request(self, request: Request, port: int) -> None:
        """``port``: the one the connection came in on (ws or wss): Host must name it."""
        if request.path != "/":
            raise HandshakeRefused(404, "not found")
        check_host(request.headers.get_all("Host"), port)
        origin = check_origin(
            request.headers.get_all("Origin"), allow_http_loopback=self.allow_http_loopback
        )
        try:
            self.service.origin_precheck(origin)
        except OriginNotAllowedError as exc:
            raise HandshakeRefused(403, f"origin {origin!r} refused: {exc}") from None
        if len(self._connections) >= self.max_connections:
            raise HandshakeRefused(503, "too many connections")
        if self._per_origin.get(origin, 0) >= self.max_per_origin:
            raise HandshakeRefused(503, f"too many connections from {origin}")

    # --- connection --------------------------------------------------------------------

    async def _handler(self, connection: ServerConnection) -> None:
        self._done_handshaking(connection)
        assert connection.request is not None
        origin = connection.request.headers["Origin"]
        if (  # raced past the handshake check
            len(self._connections) >= self.max_connections
            or self._per_origin.get(origin, 0) >= self.max_per_origin
        ):
            await connection.close(1013, "too many connections")
            return
        self._connections.add(connection)
        self._per_origin[origin] = self._per_origin.get(origin, 0) + 1
        try:
            await _Connection(self, connection, origin).run()
        finally:
            self._connections.discard(connection)
            left = self._per_origin.pop(origin, 1) - 1
            if left > 0:
                self._per_origin[origin] = left


class _OwnUserListener(socket.socket):
    """A ``wss://`` listening socket whose ``accept`` closes the connections of other OS users
    at once, before any TLS: they can neither hold TLS handshakes open (which the handshake
    cap only counts once TLS is done) nor see the agent's certificate. asyncio's selector
    loop (Linux, macOS) accepts through this method; Windows' proactor accepts by itself, and
    there the peer is checked after TLS, with the request."""

    @classmethod
    def adopt(cls, sock: socket.socket) -> _OwnUserListener:
        return cls(sock.family, sock.type, sock.proto, fileno=sock.detach())

    def accept(self) -> tuple[socket.socket, Any]:
        while True:
            conn, address = super().accept()  # BlockingIOError when none is left: asyncio's cue
            try:
                owner = _lookup(address, conn.getsockname())
            except OSError:
                owner = PeerOwner(False, "unknown")
            if owner.same_user:
                return conn, address
            refusals.warning("closed a wss:// connection of another OS user before TLS (%s)",
                             owner.detail)
            conn.close()


class _GuardedConnection(ServerConnection):
    """A websockets connection checked at accept time (peer's OS user, handshake cap)."""

    guard: WsServer
    owner: PeerOwner | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.guard._admit(self, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard._done_handshaking(self)
        super().connection_lost(exc)


def _lookup(peer: Any, local: Any) -> PeerOwner:
    if not peer or not local:
        return PeerOwner(False, "unknown")
    return peer_owner(peer[:2], local[:2])


def _port_of(local: Any, default: int) -> int:
    return int(local[1]) if local else default


def _host_of(sock: socket.socket) -> str:
    return str(sock.getsockname()[0])


class _Connection:
    """One page: its session, protocol state, call tasks and writer."""

    def __init__(self, server: WsServer, connection: ServerConnection, origin: str) -> None:
        self.server = server
        self.connection = connection
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.outbox: asyncio.Queue[tuple[bool, str]] = asyncio.Queue()
        self.queued_events = 0
        self.queued_bytes = 0
        self.overflowed = False
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
                if isinstance(outcome, Call) and outcome.method == "status":
                    # status never waits (no card, no user): answered in place, without a
                    # task of its own (a burst of them is the common load).
                    self._enqueue(False, await protocol.execute(outcome))
                elif isinstance(outcome, Call):
                    task = asyncio.create_task(self._run_call(protocol, outcome))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                elif outcome is not None:
                    self._enqueue(False, outcome)
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
        self._enqueue(False, response)

    def _emit_threadsafe(self, notification: dict[str, Any]) -> None:
        """Session callback: may be called from any thread."""
        self.loop.call_soon_threadsafe(self._enqueue_event, notification)

    def _enqueue_event(self, notification: dict[str, Any]) -> None:
        if self.queued_events >= MAX_QUEUED_EVENTS:
            logger.warning("dropping an event for %r: the page does not read", self.origin)
            return
        if self._enqueue(True, notification):
            self.queued_events += 1

    def _enqueue(self, is_event: bool, message: dict[str, Any]) -> bool:
        """Queue a message for the writer; past the byte bound, drop the connection."""
        if self.overflowed:
            return False
        text = encode(message)
        if self.queued_bytes and self.queued_bytes + len(text) > self.server.max_outgoing_bytes:
            self.overflowed = True
            refusals.warning(
                "closing a connection from %r: %d bytes of replies unread", self.origin,
                self.queued_bytes,
            )
            self._drop()
            return False
        self.queued_bytes += len(text)
        self.outbox.put_nowait((is_event, text))
        return True

    def _drop(self) -> None:
        """Close at once: a page that does not read would not read a close frame either."""
        while not self.outbox.empty():
            self.outbox.get_nowait()
        self.queued_bytes = 0
        transport = self.connection.transport
        if transport is not None:
            transport.abort()

    async def _write(self) -> None:
        while True:
            is_event, text = await self.outbox.get()
            if is_event:
                self.queued_events -= 1
            try:
                await self.connection.send(text)
            except ConnectionClosed:
                return
            finally:
                self.queued_bytes = max(0, self.queued_bytes - len(text))


def serve(
    service: AgentServiceLike,
    *,
    port: int = DEFAULT_PORT,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    **limits: Any,
) -> WsServer:
    """Build the server; use as ``async with serve(service, port=...) as server: ...``.

    ``limits``: ``max_connections``, ``max_message_size``, ``max_pending``, ``ping_interval``,
    ``max_per_origin``, ``max_handshakes``, ``max_outgoing_bytes``, ``reservation`` (sockets
    from :func:`agent.ws.ports.reserve`), ``allow_http_loopback``, ``ssl_context`` (serve
    ``wss://`` too, on the reservation's wss port).
    """
    return WsServer(service, port=port, hosts=hosts, **limits)
