"""Which loopback port the agent listens on: a slot of a small fixed range, or ``--port``.

Several users of one machine (a terminal server) each run their own agent, so agents take
the first free *slot* of a fixed range (documented in docs/protocol.md and docs/deploy.md)::

    slot k = 0..7:  ws://  port 24847 + 2k      wss:// port 24848 + 2k

A slot is used only when both of its ports can be bound on every loopback address
(127.0.0.1 and ::1). A slot whose ports are held on all addresses belongs to someone else
(usually another user's agent) and is skipped quietly, unless it is this user's own agent
(it answers us with its ``Server: eid-agent`` header, where another user's agent gives a bare
403): then a second agent would fight the first over the readers, so :func:`reserve` raises
:class:`AlreadyRunningError`. A *half-bound* slot, where one
address is held by someone else and the other is free, is never used: a page that reaches
the agent by ``ws://localhost`` could land on the other program. It is reported in
:attr:`Reservation.squats` so the user can be told, visibly, and the next slot is tried.
With an explicit port (``--port`` or machine policy) a half-bound or busy port is an error.

No I/O beyond binding sockets; the listeners are started by :mod:`agent.ws.server` on the
sockets handed over here. ``::1`` missing altogether (IPv6 switched off) is not a squat: the
agent then serves on 127.0.0.1 only.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "SLOT_BASE",
    "SLOT_COUNT",
    "AlreadyRunningError",
    "NoFreeSlotError",
    "PortSquattedError",
    "Reservation",
    "Squat",
    "bind_pair",
    "reserve",
    "slot_ports",
]

logger = logging.getLogger(__name__)

SLOT_BASE = 24847
SLOT_COUNT = 8
_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1), 10048}
_MISSING = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, getattr(errno, "WSAEADDRNOTAVAIL", -1)}


def slot_ports(slot: int) -> tuple[int, int]:
    """(ws port, wss port) of slot ``slot``."""
    return SLOT_BASE + 2 * slot, SLOT_BASE + 2 * slot + 1


@dataclass(frozen=True)
class Squat:
    """Something else holds ``host:port`` while the other loopback address is free."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class PortSquattedError(OSError):
    """An explicit port is half-bound: another program holds one of its addresses."""

    def __init__(self, squat: Squat) -> None:
        super().__init__(errno.EADDRINUSE, f"something else holds {squat}")
        self.squat = squat


class AlreadyRunningError(OSError):
    """This user's agent already serves on ``port``."""

    def __init__(self, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"eid-agent already runs for this user on port {port}")
        self.port = port


def own_agent_answers(port: int, timeout: float = 2.0) -> bool:
    """Does an eid-agent of this OS user listen on 127.0.0.1:``port``?

    A bare ``GET /`` without Origin: this user's agent refuses it with its ``Server`` header,
    another user's agent with a bare 403 (it tells other users nothing), other programs
    with anything else.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as probe:
            probe.sendall(
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            answer = b""
            while b"\r\n\r\n" not in answer and len(answer) < 8192:
                chunk = probe.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return False
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    return b"\r\nserver: eid-agent/" in head


class NoFreeSlotError(OSError):
    """Every slot of the range is taken (or half-bound)."""

    def __init__(self, squats: Sequence[Squat]) -> None:
        first, last = slot_ports(0)[0], slot_ports(SLOT_COUNT - 1)[1]
        super().__init__(errno.EADDRINUSE, f"no free port pair in {first}-{last}")
        self.squats = tuple(squats)


@dataclass
class Reservation:
    """Bound (not yet listening) sockets for the agent's listeners."""

    ws_port: int
    wss_port: int | None
    hosts: tuple[str, ...]
    ws_sockets: list[socket.socket]
    wss_sockets: list[socket.socket] = field(default_factory=list)
    squats: list[Squat] = field(default_factory=list)
    slot: int | None = None  # None: an explicit port

    def take_wss_sockets(self) -> list[socket.socket]:
        """Hand the bound wss sockets to the wss listener (the caller closes them)."""
        taken, self.wss_sockets = self.wss_sockets, []
        return taken

    def close(self) -> None:
        for sock in (*self.ws_sockets, *self.wss_sockets):
            sock.close()
        self.ws_sockets, self.wss_sockets = [], []


def _new_socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto given explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listener's proto is IPPROTO_TCP (0 would leave Nagle on: +40 ms per TLS handshake).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if sys.platform == "win32":
            # Nobody may bind our port on top of us (Windows lets SO_REUSEADDR steal it).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_all(hosts: Sequence[str], port: int) -> tuple[list[socket.socket], list[str], list[str]]:
    """Bind ``port`` on each host: (sockets, bound hosts, hosts held by someone else).

    A host that does not exist here (no IPv6) is left out; other errors propagate.
    """
    sockets: list[socket.socket] = []
    bound: list[str] = []
    held: list[str] = []
    try:
        for host in hosts:
            try:
                sock = _new_socket(host)
            except OSError as exc:
                if exc.errno in _MISSING and host != hosts[0]:
                    logger.info("no %s on this machine (%s)", host, exc)
                    continue
                raise
            try:
                sock.bind((host, port))
            except OSError as exc:
                sock.close()
                if exc.errno in _IN_USE:
                    held.append(host)
                    continue
                if exc.errno in _MISSING and host != hosts[0]:
                    logger.info("cannot bind %s (%s); serving without it", host, exc)
                    continue
                raise
            sockets.append(sock)
            bound.append(host)
            if port == 0:
                port = sock.getsockname()[1]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets, bound, held


def bind_pair(hosts: Sequence[str], port: int) -> tuple[int, list[socket.socket], list[str]]:
    """Bind one port on every loopback host, all or nothing; ``port`` 0 picks a free one.

    Returns:
        (port, sockets, hosts bound).

    Raises:
        PortSquattedError: the port is held on some hosts but free on others.
        OSError(EADDRINUSE): the port is held on every host.
    """
    for _ in range(8 if port == 0 else 1):
        sockets, bound, held = _bind_all(hosts, port)
        if not held:
            return sockets[0].getsockname()[1], sockets, bound
        for sock in sockets:
            sock.close()
        if port == 0:
            continue  # the random port was taken on another address: pick again
        if bound:
            raise PortSquattedError(Squat(held[0], port))
        raise OSError(errno.EADDRINUSE, f"port {port} is in use")
    raise OSError(errno.EADDRINUSE, "no free port")


def _try_slot(hosts: Sequence[str], ws_port: int, wss_port: int) -> Reservation:
    port, ws_sockets, bound = bind_pair(hosts, ws_port)
    try:
        _, wss_sockets, _ = bind_pair(bound, wss_port)
    except OSError:
        for sock in ws_sockets:
            sock.close()
        raise
    return Reservation(port, wss_port, tuple(bound), ws_sockets, wss_sockets)


def reserve(
    hosts: Sequence[str], port: int | None = None, wss_port: int | None = None
) -> Reservation:
    """Bind the agent's ports: ``port`` if given (strict), else the first free slot.

    The wss port is the slot's (or ``port + 1`` next to an explicit port, when free), unless
    ``wss_port`` names one (0: any free port); a wss port that cannot be bound leaves
    ``ws://`` alone (logged, ``wss_port`` None).

    Raises:
        PortSquattedError: the explicit ``port`` is half-bound.
        OSError(EADDRINUSE): the explicit ``port`` is in use on every address.
        AlreadyRunningError: this user's agent holds a slot already.
        NoFreeSlotError: no slot of the range is free.
    """
    reservation = _reserve_ws(hosts, port, next_wss=wss_port is None)
    if wss_port is not None:
        for sock in reservation.take_wss_sockets():
            sock.close()
        reservation.wss_port = None
        _bind_wss(reservation, wss_port)
    return reservation


def _bind_wss(reservation: Reservation, wss_port: int) -> None:
    try:
        reservation.wss_port, reservation.wss_sockets, _ = bind_pair(reservation.hosts, wss_port)
    except OSError as exc:
        logger.warning("port %d (for wss) is not free: %s", wss_port, exc)


def _reserve_ws(hosts: Sequence[str], port: int | None, next_wss: bool) -> Reservation:
    if port is not None:
        chosen, sockets, bound = bind_pair(hosts, port)
        reservation = Reservation(chosen, None, tuple(bound), sockets)
        if next_wss and port and port < 65535:  # the wss port next to an explicit one, when it is free
            _bind_wss(reservation, port + 1)
        return reservation
    squats: list[Squat] = []
    for slot in range(SLOT_COUNT):
        ws_port, wss_port = slot_ports(slot)
        try:
            reservation = _try_slot(hosts, ws_port, wss_port)
        except PortSquattedError as exc:
            logger.warning(
                "%s is held by another program while the other loopback address is free: "
                "not using ports %d/%d", exc.squat, ws_port, wss_port,
            )
            squats.append(exc.squat)
            continue
        except OSError as exc:
            if exc.errno not in _IN_USE:
                raise
            if own_agent_answers(ws_port):
                raise AlreadyRunningError(ws_port) from None
            logger.info("ports %d/%d are in use (another user's agent?): next slot", ws_port, wss_port)
            continue
        reservation.slot = slot
        reservation.squats = squats
        return reservation
    raise NoFreeSlotError(squats)
