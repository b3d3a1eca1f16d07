"""A minimal Marionette client (Firefox's own remote protocol; no geckodriver): enough to
install a temporary add-on, open a page and run a script in it."""

from __future__ import annotations

import json
import socket
import time
from typing import Any


class Marionette:
    def __init__(self, port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.buffer = b""
        self._id = 0
        self.hello = self._read()

    def _read(self) -> Any:
        while b":" not in self.buffer:
            self.buffer += self._recv()
        length, _, rest = self.buffer.partition(b":")
        size = int(length)
        while len(rest) < size:
            rest += self._recv()
        self.buffer = rest[size:]
        return json.loads(rest[:size])

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Marionette closed the connection")
        return chunk

    def call(self, command: str, params: dict[str, Any] | None = None) -> Any:
        self._id += 1
        data = json.dumps([0, self._id, command, params or {}]).encode()
        self.sock.sendall(str(len(data)).encode() + b":" + data)
        while True:
            message = self._read()
            if message[0] == 1 and message[1] == self._id:
                if message[2]:
                    raise RuntimeError(f"{command}: {message[2]}")
                return message[3]

    def close(self) -> None:
        self.sock.close()
