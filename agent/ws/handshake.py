"""Handshake checks for the localhost WebSocket, without I/O: Host and Origin headers.

* Host must name loopback with our port (``127.0.0.1:PORT``, ``localhost:PORT``,
  ``[::1]:PORT``). Anything else is DNS rebinding: an attacker's name that resolves to
  127.0.0.1 makes the browser send ``Host: evil.example:PORT``.
* Origin must be present once, be a canonical serialised origin (scheme, host, optional
  non-default port; no path, no userinfo), use https. Plain http only for localhost,
  127.0.0.1 and [::1], and only when the agent was started with the developer switch
  ``--allow-http-loopback`` (the demo passes it): in production any local program could
  serve such a page. ``null`` (sandboxed frames, file: pages) is refused.
  Machine policy is checked afterwards by the service (``origin_precheck``).
"""

from __future__ import annotations

import ipaddress

from agent.core.origin import LOOPBACK_HOSTS, normalize_origin
from agent.errors import OriginNotAllowedError

__all__ = [
    "HandshakeRefused",
    "check_bind_host",
    "check_host",
    "check_origin",
]


class HandshakeRefused(Exception):
    """The handshake is refused; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_host(values: list[str], port: int) -> None:
    """Refuse (403) unless there is exactly one Host header naming loopback:port."""
    if len(values) != 1:
        raise HandshakeRefused(403, "exactly one Host header is required")
    allowed = {f"{name}:{port}" for name in LOOPBACK_HOSTS}
    if values[0].strip().lower() not in allowed:
        raise HandshakeRefused(403, f"Host {values[0]!r} is not this agent")


def check_origin(values: list[str], *, allow_http_loopback: bool = False) -> str:
    """Return the one Origin header if its syntax is acceptable, else refuse (403).

    ``allow_http_loopback``: accept ``http://localhost[:port]`` (and 127.0.0.1, [::1]).

    Raises:
        HandshakeRefused: missing, repeated, malformed, ``null``, or insecure origin.
    """
    if len(values) != 1:
        raise HandshakeRefused(403, "exactly one Origin header is required")
    origin = values[0]
    try:
        canonical = normalize_origin(origin)
    except OriginNotAllowedError as exc:
        raise HandshakeRefused(403, str(exc)) from None
    if canonical != origin:  # browsers send the canonical form; anything else is forged
        raise HandshakeRefused(403, f"origin {origin!r} is not in canonical form")
    if origin.startswith("http://") and not allow_http_loopback:
        raise HandshakeRefused(
            403, f"plain http origin {origin!r} needs the agent's --allow-http-loopback switch"
        )
    return origin


def check_bind_host(host: str) -> str:
    """Only loopback IP literals may be bound (never a name, never 0.0.0.0)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"bind address must be a loopback IP literal, not {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"refusing to bind non-loopback address {host!r}")
    return str(address)
