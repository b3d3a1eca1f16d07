"""Origin syntax: what a page's ``Origin`` may look like before the agent talks to it.

An origin is ``scheme://host[:port]`` exactly as browsers send it (``location.origin``):
``https`` for any host, ``http`` only for ``localhost``, ``127.0.0.1`` and ``[::1]``. No
path, query, fragment or user info; ``null`` (opaque origins) is refused.
"""

from __future__ import annotations

import re

from agent.errors import OriginNotAllowedError

__all__ = ["LOOPBACK_HOSTS", "normalize_origin"]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
_ORIGIN = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*)://"
    r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)
_DEFAULT_PORTS = {"https": 443, "http": 80}


def normalize_origin(origin: str) -> str:
    """Check an origin's syntax and return its canonical (lower-case) form.

    Raises:
        OriginNotAllowedError: not an https origin (or http on a loopback host).
    """
    if not isinstance(origin, str) or len(origin) > 255:
        raise OriginNotAllowedError("not a valid origin")
    text = origin.strip().lower()
    match = _ORIGIN.fullmatch(text)
    if match is None:
        raise OriginNotAllowedError(f"not a valid origin: {origin!r}")
    scheme, host, port = match["scheme"], match["host"], match["port"]
    if scheme == "http":
        if host not in LOOPBACK_HOSTS:
            raise OriginNotAllowedError(f"plain http is only allowed for localhost: {origin!r}")
    elif scheme != "https":
        raise OriginNotAllowedError(f"only https origins may use the agent: {origin!r}")
    if port is not None:
        number = int(port)
        if not 0 < number < 65536:
            raise OriginNotAllowedError(f"not a valid port in origin {origin!r}")
        if number == _DEFAULT_PORTS[scheme]:
            return f"{scheme}://{host}"
        return f"{scheme}://{host}:{number}"
    return f"{scheme}://{host}"
