"""Origin syntax: what a page's ``Origin`` may look like before the agent talks to it.

The rule is the Web eID contract's (``eid_validator.contract``), so the origin the agent
binds into a token is the one a validator accepts: ``https://host[:port]`` as browsers send
it, ``http`` only on ``localhost``, ``127.0.0.1`` and ``[::1]``; compared in canonical form
(lower case, no default port).
"""

from __future__ import annotations

from eid_validator import contract

from agent.errors import OriginNotAllowedError

__all__ = ["LOOPBACK_HOSTS", "normalize_origin"]

LOOPBACK_HOSTS = contract.LOOPBACK_HOSTS


def normalize_origin(origin: str) -> str:
    """Check an origin's syntax and return its canonical (lower-case) form.

    Raises:
        OriginNotAllowedError: not an https origin (or http on a loopback host).
    """
    try:
        return contract.canonical_origin(origin, allow_http_loopback=True)
    except ValueError as exc:
        raise OriginNotAllowedError(str(exc)) from None
