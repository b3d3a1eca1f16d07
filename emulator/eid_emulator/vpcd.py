"""Serve a :class:`~eid_emulator.base.VirtualCard` to pcscd through vsmartcard's vpcd.

vpcd (the pcscd driver) listens on TCP, by default 127.0.0.1:35963 for reader
"Virtual PCD 00 00". The card side connects; every message in either direction is a
2-byte big-endian length and a payload. A 1-byte payload from vpcd is a control
command (0 power off, 1 power on, 2 reset, 4 get ATR, answered with the ATR); anything
else is a command APDU, answered with response data and SW1 SW2.

Connecting inserts the card into the virtual reader; closing the socket removes it.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable

from eid_emulator.base import VirtualCard

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963

CTRL_POWER_OFF = 0
CTRL_POWER_ON = 1
CTRL_RESET = 2
CTRL_GET_ATR = 4

# A fault hook sees each command APDU before the card does. It returns None to let the
# card answer, bytes to answer in its place (data + SW), or REMOVE to pull the card out.
REMOVE = object()
FaultHook = Callable[[bytes], "bytes | object | None"]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("vpcd closed the connection")
        _quickack(sock)
        buf += chunk
    return bytes(buf)


def _quickack(sock: socket.socket) -> None:
    # TCP_QUICKACK is not sticky on Linux: set it again after every read, or delayed ACK
    # adds ~40 ms to every APDU.
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        except OSError:
            pass


class VpcdCard:
    """A virtual card inserted into a vpcd reader, served on a background thread.

    Args:
        card: the card to serve.
        host, port: where vpcd listens (port 35963 is reader "Virtual PCD 00 00",
            35964 is "00 01").
        latency: seconds to wait before each APDU answer, to model a real card.
    """

    def __init__(
        self,
        card: VirtualCard,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        latency: float = 0.0,
    ) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.latency = latency
        self.fault_hook: FaultHook | None = None
        self.apdu_count = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.powered = threading.Event()

    @property
    def inserted(self) -> bool:
        return self._sock is not None

    def insert(self, timeout: float = 10.0) -> None:
        """Connect to vpcd (the card appears in the reader). Retries until ``timeout``."""
        with self._lock:
            if self._sock is not None:
                return
            deadline = time.monotonic() + timeout
            while True:
                try:
                    sock = socket.create_connection((self.host, self.port), timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _quickack(sock)
            self._sock = sock
            self.powered.clear()
            self._thread = threading.Thread(
                target=self._serve, args=(sock,), name=f"vpcd-card:{self.port}", daemon=True
            )
            self._thread.start()
        logger.info("virtual card inserted into vpcd %s:%d", self.host, self.port)

    def remove(self) -> None:
        """Disconnect from vpcd (the card leaves the reader)."""
        with self._lock:
            sock, self._sock = self._sock, None
            thread, self._thread = self._thread, None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.card.power_off()
        logger.info("virtual card removed from vpcd %s:%d", self.host, self.port)

    def _send(self, sock: socket.socket, payload: bytes) -> None:
        sock.sendall(struct.pack(">H", len(payload)) + payload)

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                (length,) = struct.unpack(">H", _recv_exact(sock, 2))
                payload = _recv_exact(sock, length)
                if length == 1:
                    self._control(sock, payload[0])
                    continue
                self.apdu_count += 1
                if self.fault_hook is not None:
                    verdict = self.fault_hook(payload)
                    if verdict is REMOVE:
                        threading.Thread(target=self.remove, daemon=True).start()
                        return
                    if isinstance(verdict, bytes):
                        self._send(sock, verdict)
                        continue
                if self.latency:
                    time.sleep(self.latency)
                self._send(sock, self.card.process(payload))
        except (ConnectionError, OSError):
            pass
        finally:
            with self._lock:
                if self._sock is sock:
                    self._sock = None
                    sock.close()

    def _control(self, sock: socket.socket, code: int) -> None:
        if code == CTRL_POWER_OFF:
            self.card.power_off()
            self.powered.clear()
        elif code == CTRL_POWER_ON:
            self.card.power_on()
            self.powered.set()
        elif code == CTRL_RESET:
            self.card.reset()
        elif code == CTRL_GET_ATR:
            self._send(sock, self.card.atr)
        else:
            logger.warning("unknown vpcd control byte %02x", code)

    def __enter__(self) -> VpcdCard:
        self.insert()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
