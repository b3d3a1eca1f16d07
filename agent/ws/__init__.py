"""The localhost WebSocket endpoint (JSON-RPC 2.0) and the only importer of ``websockets``.

``protocol`` (sans-I/O dispatcher), ``errors`` (the error → code table) and ``handshake``
(Host/Origin checks) do no I/O; ``server`` moves messages between them and the socket.
"""

from __future__ import annotations

from agent.ws.errors import ErrorCode, from_exception
from agent.ws.protocol import RpcProtocol
from agent.ws.server import DEFAULT_HOSTS, DEFAULT_PORT, WsServer, serve

__all__ = [
    "DEFAULT_HOSTS",
    "DEFAULT_PORT",
    "ErrorCode",
    "RpcProtocol",
    "WsServer",
    "from_exception",
    "serve",
]
